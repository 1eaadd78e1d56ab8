"""The recorder: a server-side subscriber of every publication, writing segment files.

After Galène's diskwriter, the recorder is just another subscriber: `Recorder.attach(room)`
adds a publication listener, and each publication gets a `VenueRecording`, a `LocalSink`
fed the same packets a TV gets (`Publication.subscribe_locally`). Per media kind the
packets go

    ReorderBuffer → Depacketizer → StreamTimeline → Interleaver → Segmenter → FileWorker

(in sequence order → whole frames → presentation times → one time order → files → disk).
Everything up to the Segmenter is cheap pure Python on the event loop; file work runs on
the FileWorker's thread. Each closed file is reported once through `on_segment` as a
`SegmentInfo`: the seam for the index, quota and playback.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiortc.rtp import RtpPacket

from sfu.local import LocalSubscription
from sfu.media.depacketize import Depacketizer, Frame, depacketizer_for
from sfu.media.keyframes import KeyframeAsks
from sfu.media.reorder import ReorderBuffer
from sfu.room import Publication, Room

from .interleave import Interleaver
from .segments import ClosedSegment, Segmenter, mime_type
from .timeline import Placement, StreamTimeline
from .worker import FileWorker

logger = logging.getLogger(__name__)

# how often a recording may ask for a keyframe while it waits for one
KEYFRAME_RETRY_S = 0.3


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """One closed, playable segment file: what the index stores."""

    room_id: str
    publication_id: str
    participant_id: str
    venue_name: str
    role: str
    sequence: int  # 0, 1, ... within one publication's recording
    kinds: tuple[str, ...]  # what the file holds: ("video", "audio"), ("audio",), ...
    path: Path
    relative_path: str  # to the recorder's root, with "/": what an index should keep
    mime_type: str  # e.g. 'video/webm; codecs="vp8, opus"'
    start: datetime  # UTC
    end: datetime  # UTC
    duration_s: float
    size_bytes: int


OnSegment = Callable[[SegmentInfo], Awaitable[None] | None]


@dataclass(frozen=True)
class RecorderSettings:
    segment_s: float = 10.0
    # a cut-off file loses at most about this much (its last cluster or fragment)
    flush_s: float = 1.0
    fsync: bool = True
    reorder_wait_s: float = 0.5  # how long a missing packet's retransmission is awaited
    # how long the first file waits for a stream that has not shown up (video: a keyframe)
    start_wait_s: float = 2.0
    interleave_wait_s: float = 1.0
    max_backlog_bytes: int = 64 * 1024 * 1024  # queued for the disk, all recordings


def _nothing() -> None:
    return None


def safe_name(name: str) -> str:
    """A path component from an id or a name: letters (any script), digits, - _ . only."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip(".")
    return cleaned[:100] or "_"


@dataclass
class _Track:
    kind: str
    clock_rate: int
    reorder: ReorderBuffer
    depacketizer: Depacketizer
    timeline: StreamTimeline


class VenueRecording:
    """One publication being recorded; a `LocalSink`."""

    def __init__(
        self,
        publication: Publication,
        root: Path,
        worker: FileWorker,
        settings: RecorderSettings,
        on_closed: Callable[[VenueRecording, ClosedSegment], None],
        on_finished: Callable[[VenueRecording], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        peer = publication.peer
        self.room_id = peer.room.id
        self.publication_id = publication.id
        self.participant_id = peer.participant_id
        self.venue_name = peer.name
        self.role = peer.role
        self.kinds = tuple(publication.kinds)
        self.root = root
        self.settings = settings
        self.directory = root / safe_name(self.room_id) / safe_name(self.participant_id)
        self.epoch: float | None = None  # time.monotonic() of the first packet
        self.epoch_utc: datetime | None = None
        self.last_arrival: float | None = None  # of the latest packet
        self.subscription: LocalSubscription | None = None
        self.finished = False
        self.packets = 0
        self.keyframe_asks = KeyframeAsks(KEYFRAME_RETRY_S)
        self.loop_s = 0.0  # event-loop time spent on this recording's packets
        self._worker = worker
        self._clock = clock
        self._on_closed = on_closed
        self._on_finished = on_finished
        self._tracks: dict[str, _Track] = {}
        self._unsupported: set[str] = set()
        self._ended: set[str] = set()
        self._interleaver: Interleaver[tuple[Frame, Placement]] = Interleaver(
            settings.interleave_wait_s
        )
        self.segmenter = Segmenter(
            worker,
            self.kinds,
            self._path_for,
            self._metadata_for,
            lambda closed: on_closed(self, closed),
            segment_s=settings.segment_s,
            start_wait_s=settings.start_wait_s,
            flush_s=settings.flush_s,
            fsync=settings.fsync,
            max_backlog_bytes=settings.max_backlog_bytes,
        )

    # -- naming ------------------------------------------------------------------------
    def utc_at(self, time_s: float) -> datetime:
        """The UTC time of a point on this recording's clock."""
        assert self.epoch_utc is not None
        return self.epoch_utc + timedelta(seconds=time_s)

    def _path_for(self, sequence: int, start_s: float, container: str) -> Path:
        start = self.utc_at(start_s)
        # the container's name is its file suffix: .webm, .mp4
        return self.directory / f"{start:%Y%m%dT%H%M%S}Z-{sequence:04d}.{container}"

    def _metadata_for(self, sequence: int, start_s: float) -> dict[str, str]:
        # each file says what it is, so an index can be rebuilt from the files alone
        # (a file cut off by a crash was never reported through on_segment)
        return {
            "title": self.venue_name,
            "creation_time": self.utc_at(start_s).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "lighthouse_room": self.room_id,
            "lighthouse_publication": self.publication_id,
            "lighthouse_participant": self.participant_id,
            "lighthouse_role": self.role,
            "lighthouse_sequence": str(sequence),
        }

    # -- LocalSink ---------------------------------------------------------------------
    async def on_packet(
        self, kind: str, mime_type: str, clock_rate: int, packet: RtpPacket, is_keyframe: bool
    ) -> None:
        if self.finished:
            return
        started = time.perf_counter()  # thread_time() is a slow system call on some VMs
        now = self._clock()
        if self.epoch is None:
            self.epoch = now
            self.epoch_utc = datetime.now(UTC)
        self.last_arrival = now
        track = self._tracks.get(kind)
        if track is None:
            track = self._new_track(kind, mime_type, clock_rate)
            if track is None:
                return
        self.packets += 1
        placed = False
        for item in track.reorder.push(packet, now):
            for frame in track.depacketizer.push(item):
                self._place(track, frame)
                placed = True
        for ready_kind, (frame, placement) in self._interleaver.pop_ready(now) if placed else ():
            self.segmenter.push(
                ready_kind,
                frame,
                placement.ticks,
                self._tracks[ready_kind].clock_rate,
                placement.new_source,
            )
        wants_keyframe = kind == "video" and (
            track.depacketizer.waiting_for_keyframe or self.segmenter.wants_keyframe
        )
        self.loop_s += time.perf_counter() - started
        if wants_keyframe:
            await self.keyframe_asks.ask(self.subscription, now)

    def _new_track(self, kind: str, mime_type: str, clock_rate: int) -> _Track | None:
        depacketizer = depacketizer_for(mime_type)
        if depacketizer is None:
            if kind not in self._unsupported:
                self._unsupported.add(kind)
                logger.warning("cannot record %s: %s is not supported", kind, mime_type)
            return None
        assert self.epoch is not None
        track = _Track(
            kind,
            clock_rate,
            ReorderBuffer(self.settings.reorder_wait_s),
            depacketizer,
            StreamTimeline(clock_rate, self.epoch),
        )
        self._tracks[kind] = track
        return track

    def _place(self, track: _Track, frame: Frame) -> None:
        placement = track.timeline.place(frame.ssrc, frame.timestamp, frame.arrival)
        self._interleaver.push(
            track.kind, placement.ticks / track.clock_rate, (frame, placement), frame.arrival
        )

    def on_end(self, kind: str) -> None:
        track = self._tracks.get(kind)
        if track is not None:
            for item in track.reorder.flush():
                for frame in track.depacketizer.push(item):
                    self._place(track, frame)
            track.depacketizer.flush()
        self._interleaver.end(kind)
        self._ended.add(kind)
        if self._ended >= set(self.kinds):
            self._finish()
        else:
            self.segmenter.end_kind(kind)

    def _finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        for kind, (frame, placement) in self._interleaver.flush():
            self.segmenter.push(
                kind, frame, placement.ticks, self._tracks[kind].clock_rate, placement.new_source
            )
        self.segmenter.close()
        self._on_finished(self)

    def stop(self) -> None:
        """Stop recording: unsubscribe; the end of stream closes the last file."""
        if self.subscription is not None:
            self.subscription.close()  # on_end for every kind
        self._finish()

    def stats(self) -> dict[str, object]:
        return {
            "packets": self.packets,
            "keyframe_requests": self.keyframe_asks.sent,
            "frames": {k: t.depacketizer.frames for k, t in self._tracks.items()},
            "frames_dropped": {k: t.depacketizer.frames_dropped for k, t in self._tracks.items()},
            "packets_lost": {k: t.reorder.packets_lost for k, t in self._tracks.items()},
            "sources": {k: t.timeline.sources for k, t in self._tracks.items()},
            "segmenter_dropped": self.segmenter.frames_dropped,
        }


class Recorder:
    """Records every publication of the rooms it is attached to, one `VenueRecording` each.

    `on_segment(SegmentInfo)` is called on the event loop for every file closed whole; it
    may be a coroutine function (its task is awaited by `close()`). `on_recording_end(
    publication_id)` follows a recording's last `on_segment`. `should_record`, if given,
    decides per publication (the seam for quotas and recording policy).
    """

    def __init__(
        self,
        root_dir: str | Path,
        *,
        segment_s: float | None = None,
        on_segment: OnSegment | None = None,
        should_record: Callable[[Publication], bool] | None = None,
        on_recording_end: Callable[[str], None] | None = None,
        threaded: bool = True,
        settings: RecorderSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = Path(root_dir).resolve()
        settings = settings or RecorderSettings()
        if segment_s is not None:
            settings = replace(settings, segment_s=segment_s)
        self.settings = settings
        self.on_segment = on_segment
        self.should_record = should_record
        self.on_recording_end = on_recording_end
        self.clock = clock  # arrival times (tests feed packets faster than real time)
        self.worker = FileWorker(threaded=threaded)
        self.recordings: dict[str, VenueRecording] = {}  # active, by publication id
        self.segments_written = 0
        self.segments_failed = 0
        self.bytes_written = 0
        self.seconds_written = 0.0  # media time in the closed segments
        self._loop_finished = 0.0  # loop time of recordings that have ended
        self._rooms: list[Room] = []
        self._tasks: set[asyncio.Future] = set()
        self._closed = False

    def attach(self, room: Room) -> None:
        """Record the room's publications from now on, and those flowing already."""
        if room not in self._rooms:
            room.publication_listeners.append(self._on_publication)
            self._rooms.append(room)
        for publication in tuple(room.publications.values()):
            if publication.announced and not publication.closed:
                self._start(publication)

    def detach(self, room: Room) -> None:
        """Stop recording the room: its running recordings close their files."""
        if self._on_publication in room.publication_listeners:
            room.publication_listeners.remove(self._on_publication)
        if room in self._rooms:
            self._rooms.remove(room)
        for recording in tuple(self.recordings.values()):
            if recording.room_id == room.id:
                recording.stop()

    async def _on_publication(self, publication: Publication) -> None:
        self._start(publication)

    def _start(self, publication: Publication) -> VenueRecording | None:
        if self._closed or publication.id in self.recordings:
            return None
        if self.should_record is not None and not self.should_record(publication):
            return None
        recording = VenueRecording(
            publication,
            self.root,
            self.worker,
            self.settings,
            self._segment_closed,
            self._recording_finished,
            self.clock,
        )
        self.recordings[publication.id] = recording
        recording.subscription = publication.subscribe_locally(recording)
        return recording

    def _recording_finished(self, recording: VenueRecording) -> None:
        self.recordings.pop(recording.publication_id, None)
        self._loop_finished += recording.loop_s
        if self.on_recording_end is not None:
            # the file thread runs jobs in order: this one comes after the last file closed
            callback = self.on_recording_end
            self.worker.submit(_nothing, then=lambda *_: callback(recording.publication_id))

    def _segment_closed(self, recording: VenueRecording, closed: ClosedSegment) -> None:
        if not closed.ok:
            self.segments_failed += 1
            logger.error("recording segment %s failed; it is not indexed", closed.path)
            return
        try:
            relative = closed.path.relative_to(self.root).as_posix()
        except ValueError:
            relative = closed.path.as_posix()
        info = SegmentInfo(
            room_id=recording.room_id,
            publication_id=recording.publication_id,
            participant_id=recording.participant_id,
            venue_name=recording.venue_name,
            role=recording.role,
            sequence=closed.sequence,
            kinds=closed.kinds,
            path=closed.path,
            relative_path=relative,
            mime_type=mime_type(closed.container, list(closed.codecs)),
            start=recording.utc_at(closed.start_s),
            end=recording.utc_at(closed.end_s),
            duration_s=closed.end_s - closed.start_s,
            size_bytes=closed.size,
        )
        self.segments_written += 1
        self.bytes_written += closed.size
        self.seconds_written += info.duration_s
        if self.on_segment is None:
            return
        try:
            result = self.on_segment(info)
        except Exception:
            logger.exception("on_segment failed for %s", info.relative_path)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Future) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("on_segment failed", exc_info=task.exception())

    def stats(self) -> dict[str, object]:
        return {
            "recordings": len(self.recordings),
            "segments": self.segments_written,
            "segments_failed": self.segments_failed,
            "bytes_written": self.bytes_written,
            "seconds_written": round(self.seconds_written, 3),
            "backlog_bytes": self.worker.backlog_bytes,
            # the recorder's own cost: time on the event loop, CPU on the file thread
            "loop_busy_s": self._loop_finished + sum(r.loop_s for r in self.recordings.values()),
            "file_thread_cpu_s": self.worker.cpu_s,
        }

    async def close(self) -> None:
        """Stop every recording, close its file and wait for the disk and `on_segment`."""
        self._closed = True
        for room in tuple(self._rooms):
            self.detach(room)
        for recording in tuple(self.recordings.values()):
            recording.stop()
        await self.worker.close()
        if self._tasks:
            await asyncio.gather(*tuple(self._tasks), return_exceptions=True)
