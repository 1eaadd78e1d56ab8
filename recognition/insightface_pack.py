"""The optional engine: an insightface model pack (SCRFD + ArcFace) an operator installs.

insightface's packs (buffalo_l: `det_10g.onnx` + `w600k_r50.onnx`; buffalo_s / buffalo_sc:
`det_500m.onnx` + `w600k_mbf.onnx`; antelopev2) are more accurate than the bundled YuNet +
SFace, but their weights are released for **non-commercial research only**, so Lighthouse
never ships or downloads them: an operator who has the right to use them unpacks one into
a directory and points `[recognition] models_dir` at it (docs/recognition.md).

The directory is read as insightface's own `model_zoo` reads it, by what each graph takes
and gives, not by file name: a detector is an SCRFD graph with five landmarks (nine
outputs: scores, boxes and keypoints at strides 8, 16 and 32, two anchors per cell); an
embedder takes 112x112 faces. Other graphs of a pack (landmarks-106, gender-age) are left
alone. Exactly one of each is needed. The embedder's file name and the first bytes of its
SHA-256 make the `model_id`, so faces enrolled with another file ask for re-enrolment.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import cv2
import numpy as np

from .engine import DetectedFace, best_faces, normalise
from .onnx_models import ModelError, inference_session

SCRFD_STRIDES = (8, 16, 32)
SCRFD_ANCHORS = 2  # anchors per grid cell in every SCRFD-*_kps model
DETECTOR_INPUT = 640  # the frame is letterboxed into a square of this side


class InsightfacePack:
    # SCRFD scores a clear portrait 0.7-0.9 (YuNet higher): t1.jpg's six 0.82-0.88, a
    # tight 112 px portrait 0.72
    enrol_min_score = 0.6

    def __init__(
        self,
        models_dir: Path,
        *,
        score_threshold: float = 0.5,
        nms_threshold: float = 0.4,
        threads: int = 1,
        providers: list[str] | None = None,
    ) -> None:
        detector, embedder = find_pack_models(Path(models_dir))
        self.detector = inference_session(detector, threads, providers, fix=False)
        self.embedder = inference_session(embedder, threads, providers, fix=False)
        # fits the 64 characters of face_enrolments.model_id, the hash never cut off
        self.model_id = f"arcface-{embedder.stem[:45]}-{_sha256(embedder)[:8]}"
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self._detector_input = self.detector.get_inputs()[0].name
        self._embedder_input = self.embedder.get_inputs()[0].name
        # Graphs converted from MXNet normalise inside (their first nodes subtract and
        # scale); the PyTorch-trained w600k graphs want (x - 127.5) / 127.5 from us.
        self._mean, self._std = _embedder_normalisation(embedder)
        self._centres: dict[tuple[int, int], np.ndarray] = {}
        self._lock = threading.Lock()

    def detect(self, bgr: np.ndarray) -> list[DetectedFace]:
        height, width = bgr.shape[:2]
        # smaller pictures are not enlarged: SCRFD misses a face that fills the whole input
        # (a tight portrait), and finds it with a margin of empty canvas around it
        scale = min(1.0, DETECTOR_INPUT / max(height, width))
        resized = (
            bgr
            if scale == 1.0
            else cv2.resize(
                bgr, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA
            )
        )
        canvas = np.zeros((DETECTOR_INPUT, DETECTOR_INPUT, 3), np.uint8)
        canvas[: resized.shape[0], : resized.shape[1]] = resized
        blob = cv2.dnn.blobFromImage(
            canvas, 1.0 / 128, (DETECTOR_INPUT, DETECTOR_INPUT), (127.5, 127.5, 127.5), True
        )
        outputs = self.detector.run(None, {self._detector_input: blob})
        levels = len(SCRFD_STRIDES)
        boxes, scores, marks = [], [], []
        for level, stride in enumerate(SCRFD_STRIDES):
            score = outputs[level].reshape(-1)
            keep = score >= self.score_threshold
            if not keep.any():
                continue
            centres = self._anchor_centres(stride)[keep]
            distances = outputs[levels + level].reshape(-1, 4)[keep] * stride
            offsets = outputs[2 * levels + level].reshape(-1, 5, 2)[keep] * stride
            x1y1 = centres - distances[:, :2]
            x2y2 = centres + distances[:, 2:]
            boxes.append(np.concatenate([x1y1, x2y2 - x1y1], axis=1))
            scores.append(score[keep])
            marks.append(centres[:, None, :] + offsets)
        return best_faces(boxes, scores, marks, scale, self.score_threshold, self.nms_threshold)

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        if not crops:
            return np.zeros((0, self.embedder.get_outputs()[0].shape[-1]), np.float32)
        # ArcFace graphs take a batch: one run for all the faces of a frame
        blob = cv2.dnn.blobFromImages(
            crops, 1.0 / self._std, (112, 112), (self._mean,) * 3, swapRB=True
        )
        return normalise(self.embedder.run(None, {self._embedder_input: blob})[0])

    def _anchor_centres(self, stride: int) -> np.ndarray:
        cells = DETECTOR_INPUT // stride
        key = (stride, cells)
        with self._lock:
            if key not in self._centres:
                rows, cols = np.mgrid[:cells, :cells]
                centres = np.stack([cols, rows], axis=-1).reshape(-1, 2).astype(np.float32)
                self._centres[key] = np.repeat(centres * stride, SCRFD_ANCHORS, axis=0)
            return self._centres[key]


def find_pack_models(directory: Path) -> tuple[Path, Path]:
    """The SCRFD detector (with landmarks) and the 112x112 embedder in `directory`."""
    import onnxruntime as ort

    if not directory.is_dir():
        raise ModelError(f"models_dir {directory} is not a directory")
    detectors, embedders, other = [], [], []
    for path in sorted(directory.glob("*.onnx")):
        try:
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as error:
            raise ModelError(f"{path.name} is not a loadable ONNX model: {error}") from error
        shape = session.get_inputs()[0].shape
        outputs = len(session.get_outputs())
        if len(shape) == 4 and shape[2:] == [112, 112]:
            embedders.append(path)
        elif outputs == 3 * len(SCRFD_STRIDES):
            detectors.append(path)
        elif outputs == 2 * len(SCRFD_STRIDES):
            other.append(f"{path.name} (an SCRFD detector without landmarks: use a *_kps one)")
        else:
            other.append(path.name)
    if len(detectors) != 1 or len(embedders) != 1:
        raise ModelError(
            f"{directory} must hold one SCRFD detector with landmarks and one 112x112 "
            f"ArcFace embedder (an insightface pack such as buffalo_l); found detectors "
            f"{[p.name for p in detectors]}, embedders {[p.name for p in embedders]}, "
            f"other {other}"
        )
    return detectors[0], embedders[0]


def _embedder_normalisation(path: Path) -> tuple[float, float]:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    first = {node.op_type for node in graph.node[:8]}
    return (0.0, 1.0) if {"Sub", "Mul"} <= first else (127.5, 127.5)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
