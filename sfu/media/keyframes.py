"""A server-side subscriber's own keyframe requests, at most one per interval.

The recorder and the recognizer ask for a keyframe whenever they cannot go on without one
(a lost packet, a new file, a new decoding burst); while they wait, every packet would
ask again. This keeps one subscriber to one ask per `every_s`; the publication's UpTrack
then merges the asks of all its subscribers into few PLIs (sfu/keyframes.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class _AsksForKeyframes(Protocol):
    async def request_keyframe(self) -> bool: ...


class _Subscription(Protocol):
    @property
    def downtracks(self) -> Mapping[str, _AsksForKeyframes]: ...


class KeyframeAsks:
    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self.sent = 0
        self._last = -1e9

    async def ask(self, subscription: _Subscription | None, now: float) -> None:
        if subscription is None or now - self._last < self.every_s:
            return
        downtrack = subscription.downtracks.get("video")
        if downtrack is None:
            return
        self._last = now
        if await downtrack.request_keyframe():
            self.sent += 1
