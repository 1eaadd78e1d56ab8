"""Embedding the faces of several cameras in one model call (for GPU hosts).

Each camera's job runs its own pipeline in the worker pool, and a frame holds a few faces
at most: on a CPU, one call per frame is as fast as any (an ArcFace batch of 8 measured
x0.98 of one by one, docs/benchmarks.md), but a GPU is only busy with big batches.
`CrossStreamBatcher` wraps an engine: concurrent `embed` calls from different jobs are
gathered for at most `max_wait_s` (or until `max_batch` faces wait) and run as one call;
each caller gets its own rows back. The first caller of a batch leads it (waits, runs the
model, hands out the rows); callers that come while a batch runs start the next one, and
what a full batch leaves over is led by its first caller, so the model is never idle
while faces wait. `detect` is passed through.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np

from .engine import DetectedFace, FaceEngine


@dataclass
class _Request:
    crops: list[np.ndarray]
    done: threading.Event = field(default_factory=threading.Event)
    rows: np.ndarray | None = None
    error: BaseException | None = None
    lead: bool = False  # this caller gathers and runs the next batch


class CrossStreamBatcher:
    def __init__(self, engine: FaceEngine, max_batch: int = 32, max_wait_s: float = 0.004):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.engine = engine
        self.model_id = engine.model_id
        self.enrol_min_score = engine.enrol_min_score
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._lock = threading.Lock()
        self._full = threading.Condition(self._lock)
        self._waiting: list[_Request] = []  # the batch being gathered
        self._gathering = False  # a leader is gathering `_waiting`
        self.calls = 0
        self.batches = 0
        self.faces = 0
        self.largest_batch = 0

    def __getattr__(self, name: str):  # detector/embedder sessions, for reports
        return getattr(self.engine, name)

    def detect(self, bgr: np.ndarray) -> list[DetectedFace]:
        return self.engine.detect(bgr)

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        if not crops:
            return self.engine.embed(crops)
        request = _Request(list(crops))
        with self._lock:
            self.calls += 1
            self._waiting.append(request)
            if not self._gathering:
                self._gathering = request.lead = True
            elif sum(len(r.crops) for r in self._waiting) >= self.max_batch:
                self._full.notify()
        while True:
            if request.lead:
                request.lead = False
                self._lead()  # our request is the first of the batch it runs
            request.done.wait()
            if not request.lead:
                break
            request.done.clear()  # promoted to lead the leftovers of a full batch
        if request.error is not None:
            raise request.error
        assert request.rows is not None
        return request.rows

    def _lead(self) -> None:
        deadline = time.monotonic() + self.max_wait_s
        with self._lock:
            while sum(len(r.crops) for r in self._waiting) < self.max_batch:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._full.wait(left)
            batch: list[_Request] = []
            size = 0
            while self._waiting and (
                not batch or size + len(self._waiting[0].crops) <= self.max_batch
            ):
                batch.append(self._waiting.pop(0))
                size += len(batch[-1].crops)
            if self._waiting:  # more than a batch waits: the first of the rest leads next
                self._waiting[0].lead = True
                self._waiting[0].done.set()
            else:
                self._gathering = False
            self.batches += 1
            self.faces += size
            self.largest_batch = max(self.largest_batch, size)
        try:
            try:
                rows = self.engine.embed([crop for r in batch for crop in r.crops])
            except Exception:  # one caller's bad crop must not fail the others
                for r in batch:
                    try:
                        r.rows = self.engine.embed(r.crops)
                    except Exception as error:  # handed to its caller
                        r.error = error
                return
            start = 0
            for r in batch:
                r.rows = rows[start : start + len(r.crops)]
                start += len(r.crops)
        except BaseException as error:  # even then, no caller may wait for ever
            for r in batch:
                if r.rows is None and r.error is None:
                    r.error = error
            raise
        finally:
            for r in batch:
                r.done.set()
