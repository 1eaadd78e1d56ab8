"""RTP timestamps of one stream → monotonic presentation times on the recording's clock.

A recording's streams share an epoch (a `time.monotonic()` instant). Each stream is
anchored where its first frame arrived and from then on advances by its RTP timestamps,
unwrapped past 2**32, so the sender's frame spacing is kept exactly and a loss leaves a
gap of the right length. Audio and video are each anchored on arrival, which keeps them
in step within the difference of their network delays.

A stream's first frame is often its latest: a keyframe takes the encoder longer, and a
busy sender or server delays whatever comes first. So for `settle_s` after an anchor, a
frame that arrives earlier than the anchor predicts moves the anchor back to it: the
anchor settles on the soonest frame, where the stream's delay is least, and audio and
video meet there. The frames already placed stay; the few that follow at once are
clamped (see below) until RTP time catches up.

A new source starts a new anchor and is reported, so the recording starts a new segment:
an SSRC change, or RTP time that disagrees with arrival time by more than `max_skew_s`
(a publisher whose timestamps restart). Small steps backwards (a sender's jitter) are
clamped, so presentation times only ever increase, by at least a millisecond (what WebM
stores): two frames in one millisecond would read back as a step that is not forward.
"""

from __future__ import annotations

from dataclasses import dataclass

from sfu.rewriter import ts_diff

# how fast the wall-clock reference follows the sender's clock (per frame): slow, so that
# one late burst moves it little, but clock drift over hours does not add up to a "jump"
_DRIFT_GAIN = 0.01
# an anchor is moved back only for a frame this much sooner (not for network jitter)
_SETTLE_TOLERANCE_S = 0.005


@dataclass(frozen=True, slots=True)
class Placement:
    ticks: int  # presentation time in clock ticks since the recording's epoch
    new_source: bool  # the stream restarted here: start a new segment


class StreamTimeline:
    def __init__(
        self,
        clock_rate: int,
        epoch: float,
        *,
        max_skew_s: float = 5.0,
        max_backward_s: float = 0.5,
        settle_s: float = 3.0,
    ) -> None:
        self.clock_rate = clock_rate
        self.epoch = epoch
        self.max_skew_s = max_skew_s
        self.max_backward_s = max_backward_s
        self.settle_s = settle_s
        # the smallest step that a millisecond-based container (WebM) still tells apart
        self._min_step = max(1, clock_rate // 1000)
        self.sources = 0
        self.clamped = 0
        self._ssrc: int | None = None
        self._last_ts = 0  # last RTP timestamp (32-bit)
        self._ext = 0  # its unwrapped value
        self._anchor_ext = 0  # unwrapped timestamp at the anchor
        self._anchor_ticks = 0  # presentation time at the anchor
        self._reference = 0.0  # arrival time that RTP time is compared with, at the anchor
        self._last_ticks: int | None = None

    def place(self, ssrc: int, timestamp: int, arrival: float) -> Placement:
        if self._ssrc is None or ssrc != self._ssrc:
            return self._anchor(ssrc, timestamp, arrival)
        ext = self._ext + ts_diff(timestamp, self._last_ts)
        since_anchor = (ext - self._anchor_ext) / self.clock_rate
        skew = arrival - (self._reference + since_anchor)
        if abs(skew) > self.max_skew_s:
            return self._anchor(ssrc, timestamp, arrival)
        settling = since_anchor < self.settle_s
        moved_back = settling and skew < -_SETTLE_TOLERANCE_S
        if moved_back:  # the anchor was late: settle it on this sooner frame
            self._reference += skew
            self._anchor_ticks += round(skew * self.clock_rate)
        if settling:
            skew = 0.0  # the reference follows drift only once settled
        ticks = self._anchor_ticks + ext - self._anchor_ext
        assert self._last_ticks is not None
        if ticks < self._last_ticks + self._min_step:
            if not moved_back and self._last_ticks - ticks > self.max_backward_s * self.clock_rate:
                return self._anchor(ssrc, timestamp, arrival)
            ticks = self._last_ticks + self._min_step
            self.clamped += 1
        self._reference += skew * _DRIFT_GAIN
        self._last_ts = timestamp
        self._ext = ext
        self._last_ticks = ticks
        return Placement(ticks, False)

    def _anchor(self, ssrc: int, timestamp: int, arrival: float) -> Placement:
        ticks = round((arrival - self.epoch) * self.clock_rate)
        if self._last_ticks is not None:
            ticks = max(ticks, self._last_ticks + self._min_step)
        new_source = self._ssrc is not None
        self.sources += 1
        self._ssrc = ssrc
        self._last_ts = timestamp
        self._ext = self._anchor_ext = timestamp
        self._anchor_ticks = self._last_ticks = ticks
        self._reference = self.epoch + ticks / self.clock_rate
        return Placement(ticks, new_source)
