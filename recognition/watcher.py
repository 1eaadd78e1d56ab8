"""One venue's camera watched for faces: a server-side subscriber (`sfu.local.LocalSink`).

The SFU hands the watcher the publisher's RTP packets, as it hands them to a TV. The
watcher puts them back in order and into whole encoded frames (the recorder's reorder
buffer and depacketizers), and decides which frames to decode:

- **sign-in window** (the first `signin_window_s` of the camera): every frame is decoded
  (a P-frame cannot be decoded without the frames before it) but only one every
  1/`signin_fps` s is converted to pixels and searched for faces;
- **patrol**, afterwards: nothing is decoded between short bursts. Every `burst_every_s`
  the watcher asks the publisher for a keyframe and decodes from it for `burst_s`,
  sampling at `signin_fps`: enough frames for a late-comer's decision (several samples,
  the liveness check), about a fifth of the decoding, and one extra keyframe per burst
  on the village's uplink.

Decoding and the face pipeline run in a worker pool, one job at a time per camera. While a
job runs, new frames wait; when more than `max_backlog_s` of them wait, they are dropped,
decoding starts again at the next keyframe, and `frames_dropped` says so: the watcher falls
behind by at most that much, never more. Results come back to the event loop through
`on_result`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import av
import cv2
import numpy as np
from aiortc.rtp import RtpPacket

from sfu.local import LocalSubscription
from sfu.media.depacketize import Depacketizer, Frame, depacketizer_for
from sfu.media.keyframes import KeyframeAsks
from sfu.media.reorder import ReorderBuffer

from .gallery import Gallery
from .pipeline import FacePipeline, Rejected, Seen, SignIn

logger = logging.getLogger(__name__)

DECODERS = {"video/h264": "h264", "video/vp8": "vp8"}
# a keyframe that does not come is asked for again this often
KEYFRAME_RETRY_S = 1.0


@dataclass(frozen=True)
class SamplingSettings:
    signin_window_s: float = 900.0  # from the camera's first frame
    signin_fps: float = 2.0  # frames searched for faces per second while decoding
    burst_every_s: float = 15.0  # after the window: a burst starts this often
    burst_s: float = 2.5  # decoded from the keyframe that starts a burst
    # while a new face is undecided, the next burst comes this soon (None: burst_every_s)
    quick_every_s: float | None = None
    snapshot_every_s: float = 300.0  # a scene picture at the start and this often
    max_backlog_s: float = 1.0  # frames waiting for the worker before they are dropped
    scene_max_width: int = 960  # scene pictures are scaled down to this
    reorder_wait_s: float = 0.2  # for a lost packet's retransmission


@dataclass
class WatchResult:
    """What one sampled frame gave: decisions, and the scene picture when one is due."""

    t: float  # seconds since the camera's first frame
    at: float  # time.monotonic() of the sampled frame's arrival
    decisions: list[SignIn | Rejected | Seen] = field(default_factory=list)
    scene_jpeg: bytes | None = None  # a due snapshot, or the scene of a rejection
    scheduled_snapshot: bool = False


def encode_scene(bgr: np.ndarray, max_width: int, quality: int = 80) -> bytes:
    height, width = bgr.shape[:2]
    if width > max_width:
        size = (max_width, round(height * max_width / width))
        # by keyword: resize's third positional parameter is `dst`. INTER_AREA averages
        # the pixels it folds together; INTER_LINEAR samples and aliases fine detail
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return encoded.tobytes() if ok else b""


class CameraWatcher:
    """A `LocalSink` for one camera publication; see the module's docstring."""

    def __init__(
        self,
        pipeline: FacePipeline,
        executor: Executor,
        on_result: Callable[[CameraWatcher, WatchResult], None],
        settings: SamplingSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        name: str = "",
        codec: str | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.executor = executor
        self.on_result = on_result
        self.settings = settings or SamplingSettings()
        self.clock = clock
        self.name = name
        self.subscription: LocalSubscription | None = None
        self.ended = False
        self.started: float | None = None  # arrival of the first video frame
        # counters (also what the benchmark reads)
        self.frames_received = 0
        self.frames_decoded = 0
        self.frames_skipped = 0  # outside the decoding periods, or before a keyframe
        self.frames_dropped = 0  # waited too long for the worker
        self.samples = 0
        self.keyframe_asks = KeyframeAsks(KEYFRAME_RETRY_S)
        self.decode_errors = 0
        self.worker_s = 0.0  # time in the worker pool
        self._reorder = ReorderBuffer(self.settings.reorder_wait_s)
        self._depacketizer: Depacketizer | None = None
        # "h264" or "vp8": from the negotiated MIME type, or given for frames pushed directly
        self.codec = codec
        self._decoder: av.VideoCodecContext | None = None
        self._decodable = False  # the decoder has seen a keyframe and every frame since
        self._pending: list[Frame] = []
        self._sample_due = False
        self._next_sample_t = 0.0
        self._next_snapshot_t = 0.0
        self._burst_start: float | None = None  # arrival of the keyframe that opened it
        self._next_burst_t: float | None = None  # when patrol asks for the next burst
        self._job: asyncio.Future | None = None
        self._new_gallery: Gallery | None = None

    # -- LocalSink ---------------------------------------------------------------------
    async def on_packet(
        self, kind: str, mime_type: str, clock_rate: int, packet: RtpPacket, is_keyframe: bool
    ) -> None:
        if kind != "video" or self.ended:
            return
        if self._depacketizer is None:
            codec = DECODERS.get(mime_type.lower())
            if codec is None:
                logger.warning("cannot watch %s: %s is not supported", self.name, mime_type)
                self.ended = True
                return
            self._depacketizer = depacketizer_for(mime_type)
            self.codec = codec
        now = self.clock()
        for item in self._reorder.push(packet, now):
            for frame in self._depacketizer.push(item):  # type: ignore[union-attr]
                self.push_frame(frame, now)
        if self._depacketizer.waiting_for_keyframe:  # type: ignore[union-attr]
            await self.keyframe_asks.ask(self.subscription, now)
        elif self._keyframe_wanted(now):
            await self.keyframe_asks.ask(self.subscription, now)

    def on_end(self, kind: str) -> None:
        if kind == "video":
            self.ended = True
            self._pending.clear()

    # -- which frames are decoded ------------------------------------------------------
    def in_signin_window(self, now: float) -> bool:
        return self.started is None or now - self.started < self.settings.signin_window_s

    def push_frame(self, frame: Frame, now: float) -> None:
        """One whole encoded frame (also the benchmark's entry point, past the RTP)."""
        if self.started is None:
            self.started = frame.arrival
        if self._decoder is None:
            self._decoder = _decoder(self.codec or "h264")
        self.frames_received += 1
        if frame.dropped:  # lost a packet: the decoder must start again at a keyframe
            self._decodable = False
            self.frames_skipped += 1
            return
        if not self._decoding_period(frame):
            # a burst is over: what it left unsampled is not worth decoding later
            self.frames_skipped += 1 + len(self._pending)
            self._pending.clear()
            self._sample_due = False
            self._decodable = False
            return
        if not self._decodable:
            if not frame.keyframe:
                self.frames_skipped += 1
                return
            self._decodable = True
        self._pending.append(frame)
        t = frame.arrival - self.started
        if t >= self._next_sample_t:
            self._sample_due = True
            # from this sample on (after a gap between bursts, not at once again)
            self._next_sample_t = t + 1 / self.settings.signin_fps
        if self._job is None and self._sample_due:
            self._submit()
        elif self._pending[-1].arrival - self._pending[0].arrival > self.settings.max_backlog_s:
            # the worker is behind: drop, and start again from a keyframe
            self.frames_dropped += len(self._pending)
            self._pending.clear()
            self._sample_due = False
            self._decodable = False

    def _decoding_period(self, frame: Frame) -> bool:
        assert self.started is not None
        if self.in_signin_window(frame.arrival):
            return True
        settings = self.settings
        if self._burst_start is not None:
            if frame.arrival - self._burst_start < settings.burst_s:
                return True
            quick = settings.quick_every_s is not None and self.pipeline.new_face_in_view
            every = settings.quick_every_s if quick else settings.burst_every_s
            self._next_burst_t = self._burst_start + (every or settings.burst_every_s)
            self._burst_start = None
        if self._next_burst_t is None:  # the window has just ended
            self._next_burst_t = frame.arrival + settings.burst_every_s
        if frame.arrival >= self._next_burst_t and frame.keyframe:
            self._burst_start = frame.arrival
            return True
        return False

    def _keyframe_wanted(self, now: float) -> bool:
        """Patrol: a burst is due and waits for its keyframe (the window needs none: the
        subscription starts at one, and a loss asks through the depacketizer)."""
        return (
            self.started is not None
            and not self.in_signin_window(now)
            and self._burst_start is None
            and self._next_burst_t is not None
            and now >= self._next_burst_t
        )

    # -- the worker ----------------------------------------------------------------------
    def replace_gallery(self, gallery: Gallery) -> None:
        """Enrolments changed: the next job uses this gallery (never one mid-job)."""
        self._new_gallery = gallery
        if self._job is None:
            self._swap_gallery()

    def _swap_gallery(self) -> None:
        if self._new_gallery is not None:
            self.pipeline.gallery, self._new_gallery = self._new_gallery, None

    def _submit(self) -> None:
        assert self.started is not None
        frames, self._pending = self._pending, []
        self._sample_due = False
        sample = frames[-1]
        t = sample.arrival - self.started
        snapshot = t >= self._next_snapshot_t
        if snapshot:
            self._next_snapshot_t = t + self.settings.snapshot_every_s
        self._swap_gallery()
        loop = asyncio.get_running_loop()
        self._job = loop.run_in_executor(self.executor, self._work, frames, t, snapshot)
        self._job.add_done_callback(self._job_done)

    def _work(self, frames: list[Frame], t: float, snapshot: bool) -> WatchResult | None:
        """In the worker pool: decode the frames, search the last one for faces."""
        started = time.perf_counter()
        try:
            picture = None
            assert self._decoder is not None
            for frame in frames:
                for decoded in self._decoder.decode(av.Packet(frame.data)):
                    picture = decoded
            self.frames_decoded += len(frames)
            if picture is None:
                return None
            bgr = picture.to_ndarray(format="bgr24")
            self.samples += 1
            result = WatchResult(t, frames[-1].arrival, self.pipeline.process(bgr, t))
            rejected = any(isinstance(d, Rejected) for d in result.decisions)
            if snapshot or rejected:
                result.scene_jpeg = encode_scene(bgr, self.settings.scene_max_width)
                result.scheduled_snapshot = snapshot
            return result
        finally:
            self.worker_s += time.perf_counter() - started

    def _job_done(self, job: asyncio.Future) -> None:
        self._job = None
        if job.cancelled():
            return
        error = job.exception()
        if isinstance(error, av.error.FFmpegError):
            self.decode_errors += 1
            self._decodable = False  # start again at a keyframe
        elif error is not None:
            logger.error("face pipeline failed on %s", self.name, exc_info=error)
        elif (result := job.result()) is not None:
            try:
                self.on_result(self, result)
            except Exception:
                logger.exception("face result handler failed on %s", self.name)
        if not self.ended and self._sample_due and self._pending:
            self._submit()

    async def drain(self) -> None:
        """Wait for the job in flight (tests and shutdown)."""
        while self._job is not None:
            await asyncio.wait([self._job])
            await asyncio.sleep(0)

    def stats(self) -> dict[str, object]:
        return {
            "frames_received": self.frames_received,
            "frames_decoded": self.frames_decoded,
            "frames_skipped": self.frames_skipped,
            "frames_dropped": self.frames_dropped,
            "samples": self.samples,
            "keyframe_requests": self.keyframe_asks.sent,
            "decode_errors": self.decode_errors,
            "faces_embedded": self.pipeline.faces_embedded,
            "worker_s": round(self.worker_s, 3),
        }


def _decoder(codec: str) -> av.VideoCodecContext:
    decoder = av.CodecContext.create(codec, "r")
    assert isinstance(decoder, av.VideoCodecContext)  # the camera's video codec
    # frame threading would hold pictures back by a frame per thread
    decoder.thread_count = 1
    return decoder
