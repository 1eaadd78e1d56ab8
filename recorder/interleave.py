"""A recording's streams merged into one presentation-time order.

Audio reaches the server ahead of the video captured with it (a keyframe is many paced
packets), but a segment has to be cut at a video keyframe with every earlier audio frame
before the cut and every later one after it. So a frame is let out only once every stream
that is flowing has reached its time. A stream that has sent nothing for `max_wait_s`
(muted, stalled, waiting for a keyframe) holds the others back no longer, and nothing
waits more than `max_wait_s` behind the newest frame.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Generic, TypeVar

T = TypeVar("T")


class Interleaver(Generic[T]):
    def __init__(self, max_wait_s: float = 1.0) -> None:
        self.max_wait_s = max_wait_s
        self._heap: list[tuple[float, int, str, T]] = []
        self._count = itertools.count()  # ties keep arrival order
        self._latest: dict[str, tuple[float, float]] = {}  # kind: (time, arrival)

    def push(self, kind: str, time_s: float, item: T, arrival: float) -> None:
        heapq.heappush(self._heap, (time_s, next(self._count), kind, item))
        self._latest[kind] = (time_s, arrival)

    def pop_ready(self, now: float) -> list[tuple[str, T]]:
        if not self._heap:
            return []
        if not self._latest:  # every stream has ended
            return self.flush()
        flowing = [t for t, arrival in self._latest.values() if now - arrival < self.max_wait_s]
        newest = max(t for t, _ in self._latest.values())
        horizon = max(min(flowing, default=newest), newest - self.max_wait_s)
        out: list[tuple[str, T]] = []
        while self._heap and self._heap[0][0] <= horizon:
            _, _, kind, item = heapq.heappop(self._heap)
            out.append((kind, item))
        return out

    def end(self, kind: str) -> None:
        """A stream ended: it holds nothing back any more."""
        self._latest.pop(kind, None)

    def flush(self) -> list[tuple[str, T]]:
        out = []
        while self._heap:
            _, _, kind, item = heapq.heappop(self._heap)
            out.append((kind, item))
        return out
