"""`python -m recognition evaluate`: the server's face pipeline on a video file.

Enrols every `DIR/<name>/*.jpg|png` as member `<name>`, runs the same pipeline as the
server (sampled frames, tracking, several embeddings per face, the median decision, the
liveness check unless `--liveness off`) over any video PyAV opens, and prints one JSON
object: {"signins": [{"member", "t", "similarity"}], "unknown_faces": n}. This output is
how sign-in quality is checked: keep it stable. `--explain` adds "tracks": per face
tracked, its samples, the latest decision window's best and second-best member and
similarity, and the decision with the rule that made it (or why none was made).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import av
import numpy as np

from .engine import load_engine
from .gallery import EnrolmentError, Gallery, decode_image, enrol_photo
from .onnx_models import ModelError
from .pipeline import FacePipeline, RecognitionSettings, SignIn

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png"}
DEFAULT_SAMPLE_FPS = 2.0


def enrol_directory(engine, directory: Path, log=sys.stderr) -> Gallery:
    faces: dict[str, list[np.ndarray]] = {}
    for member_dir in sorted(p for p in directory.iterdir() if p.is_dir()):
        for photo in sorted(member_dir.iterdir()):
            if photo.suffix.lower() not in PHOTO_SUFFIXES:
                continue
            try:
                enrolled = enrol_photo(engine, decode_image(photo.read_bytes()))
            except EnrolmentError as error:
                print(f"{photo}: not enrolled: {error.message}", file=log)
                continue
            faces.setdefault(member_dir.name, []).append(enrolled.embedding)
    return Gallery(engine.model_id, faces)


def sampled_frames(video: Path, sample_fps: float):
    """(seconds, BGR frame) at about `sample_fps`; every frame is decoded (a file has no
    RTP keyframe requests to lean on), only the sampled ones are converted."""
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        next_t = 0.0
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            assert frame.time_base is not None  # a decoded frame has its stream's
            t = float(frame.pts * frame.time_base)
            if t + 1e-6 < next_t:
                continue
            next_t = t + 1.0 / sample_fps
            yield t, frame.to_ndarray(format="bgr24")


def evaluate(
    gallery_dir: Path,
    video: Path,
    *,
    liveness: bool = True,
    sample_fps: float = DEFAULT_SAMPLE_FPS,
    settings: RecognitionSettings | None = None,
    models_dir: Path | None = None,
    explain: bool = False,
) -> dict:
    engine = load_engine(models_dir)
    gallery = enrol_directory(engine, gallery_dir)
    settings = replace(settings or RecognitionSettings(), liveness=liveness)
    pipeline = FacePipeline(engine, gallery, settings)
    if explain:
        pipeline.explaining()
    signins = []
    for t, frame in sampled_frames(video, sample_fps):
        for decision in pipeline.process(frame, t):
            if isinstance(decision, SignIn):
                signins.append(
                    {"member": decision.member, "t": round(t, 3), "similarity": decision.similarity}
                )
    result: dict = {"signins": signins, "unknown_faces": pipeline.unknown_faces}
    if explain:
        result["tracks"] = pipeline.explain()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m recognition", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("evaluate", help="sign-ins found in a video")
    run.add_argument("--gallery", type=Path, required=True, help="DIR/<member>/*.jpg|png")
    run.add_argument("--video", type=Path, required=True, help="any file PyAV opens")
    run.add_argument("--json", action="store_true", help="JSON only (the default output)")
    run.add_argument("--liveness", choices=("on", "off"), default="on")
    run.add_argument("--sample-fps", type=float, default=DEFAULT_SAMPLE_FPS)
    run.add_argument(
        "--explain", action="store_true", help="per track: similarities and why it was decided"
    )
    run.add_argument(
        "--models-dir",
        type=Path,
        help="an insightface pack (SCRFD + ArcFace) instead of YuNet + SFace",
    )
    args = parser.parse_args(argv)
    if not args.gallery.is_dir():
        parser.error(f"--gallery {args.gallery} is not a directory")
    if not args.video.is_file():
        parser.error(f"--video {args.video} is not a file")
    try:
        result = evaluate(
            args.gallery,
            args.video,
            liveness=args.liveness == "on",
            sample_fps=args.sample_fps,
            models_dir=args.models_dir,
            explain=args.explain,
        )
    except av.error.FFmpegError as error:
        print(f"cannot read {args.video}: {error}", file=sys.stderr)
        return 2
    except ModelError as error:
        print(f"cannot load the face models: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result, ensure_ascii=False))
    return 0
