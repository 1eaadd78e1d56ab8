"""Segment files: when to start a new one, and writing one with PyAV, without transcoding.

`Segmenter` (on the event loop) takes a recording's frames in presentation order and
decides where files begin and end: at a video keyframe once `segment_s` have passed (or
the source restarted, or the picture size or parameter sets changed), so that every file
plays on its own. `SegmentFile` (on the file worker's thread) is one such file:

- VP8 + Opus → WebM; clusters of at most `flush_s`.
- H.264 + Opus → fragmented MP4 (`frag_keyframe+empty_moov+default_base_moof`, fragments
  of at most `flush_s`); the Annex-B SPS/PPS become the avcC record (ffmpeg converts).
- Opus alone → WebM.

The header is written as soon as the file opens and each cluster or fragment is written
out when it ends (`flush_packets`), so a `kill -9` loses the frames of the last
`flush_s` or so: a cut-off file still plays up to its last whole cluster or fragment, and
every earlier segment was closed (and fsynced) already. Timestamps in a file start at 0;
where it lies in time is in its metadata (`creation_time`) and in `SegmentInfo`.
"""

from __future__ import annotations

import fractions
import io
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av

from sfu.media.bitstream import opus_head
from sfu.media.depacketize import Frame, VideoConfig

from .worker import FileWorker

AUDIO_CLOCK = 48000
# a video frame's duration when nothing follows it (the end of a recording)
_DEFAULT_FRAME_S = 1 / 25


def container_for(video_codec: str | None) -> str:
    """The container a segment with this video codec (None: audio only) is written in."""
    return "mp4" if video_codec == "h264" else "webm"


def mime_type(container: str, codecs: list[str]) -> str:
    """What a playback page hands to `canPlayType`, e.g. video/webm; codecs="vp8, opus"."""
    major = "video" if len(codecs) > 1 or codecs[0] != "opus" else "audio"
    return f'{major}/{container}; codecs="{", ".join(codecs)}"'


@dataclass(frozen=True, slots=True)
class StreamSpec:
    kind: str
    codec: str  # "vp8", "h264" or "opus"
    clock_rate: int
    config: VideoConfig | None = None


class SegmentFile:
    """One segment on disk. Built on the loop; `open`, `write` and `close` run on the
    file worker's thread, in that order."""

    def __init__(
        self,
        path: Path,
        container: str,
        streams: tuple[StreamSpec, ...],
        metadata: dict[str, str],
        *,
        flush_s: float = 1.0,
        fsync: bool = True,
    ) -> None:
        self.path = path
        self.container = container
        self.streams = streams
        self.metadata = metadata
        self.flush_s = flush_s
        self.fsync = fsync
        self.size = 0
        self.failed = False
        self._file: io.FileIO | None = None
        self._output: av.container.OutputContainer | None = None
        self._av_streams: list[av.stream.Stream] = []
        self._time_bases = [fractions.Fraction(1, s.clock_rate) for s in streams]

    def _options(self) -> dict[str, str]:
        if self.container == "mp4":
            return {
                "movflags": "frag_keyframe+empty_moov+default_base_moof+use_metadata_tags",
                "frag_duration": str(int(self.flush_s * 1_000_000)),
                "flush_packets": "1",
            }
        return {"cluster_time_limit": str(int(self.flush_s * 1000)), "flush_packets": "1"}

    def _create(self) -> io.FileIO:
        # "x": two recordings of one participant may start a segment in the same second
        self.path.parent.mkdir(parents=True, exist_ok=True)
        stem, suffix = self.path.stem, self.path.suffix
        for n in range(1000):
            candidate = self.path if n == 0 else self.path.with_name(f"{stem}-{n}{suffix}")
            try:
                file = io.FileIO(candidate, "x")
            except FileExistsError:
                continue
            self.path = candidate
            return file
        raise FileExistsError(self.path)

    def open(self) -> None:
        try:
            # ffmpeg writes through a Python file (unbuffered): every write, seek and the
            # trailer then go through Python calls that release the GIL, so a slow disk
            # holds up this thread only, never the event loop
            self._file = self._create()
            output = av.open(self._file, "w", format=self.container, options=self._options())
            output.metadata.update(self.metadata)
            # PyAV sets codec parameters (extradata above all) only through a codec
            # context; a stream copied from a template has one that is never opened, so
            # no encoder runs.
            templates = av.open(io.BytesIO(), "w", format=self.container)
            try:
                for spec, time_base in zip(self.streams, self._time_bases, strict=True):
                    template: av.stream.Stream
                    if spec.codec == "opus":
                        template = templates.add_stream("opus", rate=AUDIO_CLOCK)
                    else:
                        template = templates.add_stream(spec.codec)
                    stream = output.add_stream_from_template(template)
                    context = stream.codec_context
                    if spec.codec == "opus":
                        assert isinstance(context, av.AudioCodecContext)
                        context.layout = "stereo"  # WebRTC's opus/48000/2
                        context.extradata = opus_head()
                    else:
                        assert spec.config is not None
                        assert isinstance(context, av.VideoCodecContext)
                        context.width = spec.config.width
                        context.height = spec.config.height
                        if spec.config.extradata:
                            context.extradata = spec.config.extradata
                    stream.time_base = time_base
                    self._av_streams.append(stream)
            finally:
                templates.close()
            self._output = output
            output.start_encoding()  # the header goes out now: a crash leaves it readable
        except Exception:
            self.failed = True
            raise

    def write(self, index: int, data: bytes, pts: int, duration: int, keyframe: bool) -> None:
        if self._output is None or self.failed:
            return
        packet = av.Packet(data)
        packet.stream = self._av_streams[index]
        packet.time_base = self._time_bases[index]
        packet.pts = packet.dts = pts
        packet.duration = duration
        packet.is_keyframe = keyframe
        try:
            self._output.mux_one(packet)
        except Exception:
            self.failed = True  # the frames after a refused one would not play either
            raise

    def close(self) -> int:
        output, self._output = self._output, None
        file, self._file = self._file, None
        try:
            if output is not None:
                output.close()
        finally:
            if file is not None:
                if self.fsync and not self.failed:
                    # kill -9 keeps what was written; a power cut keeps only what was synced
                    os.fsync(file.fileno())
                self.size = os.fstat(file.fileno()).st_size
                file.close()
        return self.size


@dataclass(frozen=True, slots=True)
class ClosedSegment:
    sequence: int
    path: Path
    container: str
    kinds: tuple[str, ...]
    codecs: tuple[str, ...]
    config: VideoConfig | None
    start_s: float  # on the recording's clock (seconds since its epoch)
    end_s: float
    size: int
    frames: int
    ok: bool


@dataclass
class _Segment:
    sequence: int
    file: SegmentFile
    start_s: float
    kinds: tuple[str, ...]
    index: dict[str, int]  # kind: stream index in the file
    origin: dict[str, int]  # kind: ticks at which the file's timestamps are 0
    config: VideoConfig | None
    end_s: float
    frames: int = 0
    # the last video frame waits for the next one: its duration is the gap to it
    held: tuple[Frame, int] | None = None
    video_step: int = 0


PathFor = Callable[[int, float, str], Path]  # (sequence, start_s, container) -> path
MetadataFor = Callable[[int, float], dict[str, str]]  # (sequence, start_s) -> tags


class Segmenter:
    def __init__(
        self,
        worker: FileWorker,
        kinds: tuple[str, ...],
        path_for: PathFor,
        metadata_for: MetadataFor,
        on_closed: Callable[[ClosedSegment], None],
        *,
        segment_s: float = 10.0,
        start_wait_s: float = 2.0,
        flush_s: float = 1.0,
        fsync: bool = True,
        max_backlog_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.worker = worker
        self.kinds = kinds
        self.path_for = path_for
        self.metadata_for = metadata_for
        self.on_closed = on_closed
        self.segment_s = segment_s
        self.start_wait_s = start_wait_s
        self.flush_s = flush_s
        self.fsync = fsync
        self.max_backlog_bytes = max_backlog_bytes
        self.cut_pending = False
        self.frames_dropped = 0
        self.overruns = 0
        self._sequence = 0
        self._current: _Segment | None = None
        self._clocks: dict[str, int] = {}
        self._flowing: set[str] = set()
        # frames waiting for a file to open: (kind, frame, ticks), in time order
        self._preroll: list[tuple[str, Frame, int]] = []
        self._last_video_s: float | None = None

    @property
    def wants_keyframe(self) -> bool:
        """A cut waits for a video keyframe (the owner asks the publisher for one)."""
        if "video" not in self.kinds:
            return False
        current = self._current
        if current is None or self.cut_pending or "video" not in current.kinds:
            return True
        last = self._last_video_s
        return last is not None and last - current.start_s >= self.segment_s

    def push(self, kind: str, frame: Frame, ticks: int, clock_rate: int, new_source: bool) -> None:
        self._clocks.setdefault(kind, clock_rate)
        time_s = ticks / clock_rate
        if kind == "video":
            self._last_video_s = time_s
        if new_source and self._current is not None:
            self.cut_pending = True  # (a dropped frame may be the first to show it)
        if frame.dropped:
            return  # only time moved on
        self._flowing.add(kind)
        if self.worker.backlog_bytes > self.max_backlog_bytes:
            # the disk cannot keep up: end the file here (what it has plays) and drop
            # frames until the backlog clears; the next file starts at a keyframe
            if self._current is not None:
                self.overruns += 1
                self._close(None)
            self._preroll.clear()
            self.frames_dropped += 1
            return
        if self._current is None:
            self._start(kind, frame, ticks, time_s)
        elif kind == "video":
            self._push_video(frame, ticks, time_s)
        else:
            self._push_audio(frame, ticks, time_s)

    def _start(self, kind: str, frame: Frame, ticks: int, time_s: float) -> None:
        """No file is open: gather frames until every stream has shown up (video from a
        keyframe), or those missing have been awaited for `start_wait_s`."""
        video = [f for k, f, _ in self._preroll if k == "video"]
        if kind == "video" and not video and not (frame.keyframe and frame.config):
            self.frames_dropped += 1
            return
        self._preroll.append((kind, frame, ticks))
        seen = {k for k, _, _ in self._preroll}
        first_kind, _, first_ticks = self._preroll[0]
        waited = time_s - first_ticks / self._clocks[first_kind]
        if seen >= set(self.kinds) or waited >= self.start_wait_s:
            self._open((video[0] if video else frame).config if "video" in seen else None)

    def _push_video(self, frame: Frame, ticks: int, time_s: float) -> None:
        current = self._current
        assert current is not None
        if (
            frame.keyframe
            and frame.config is not None
            and (
                self.cut_pending
                or time_s - current.start_s >= self.segment_s
                or current.config != frame.config
                or "video" not in current.kinds
            )
        ):
            self._close(ticks)
            self._preroll.append(("video", frame, ticks))
            self._open(frame.config)
        elif "video" in current.kinds:
            self._write("video", frame, ticks)
        else:
            self.frames_dropped += 1  # the file has no video: wait for a keyframe to cut

    def _push_audio(self, frame: Frame, ticks: int, time_s: float) -> None:
        current = self._current
        assert current is not None
        if "audio" not in current.kinds:
            self.cut_pending = True  # audio came up after the file began: the next file
            self.frames_dropped += 1
            return
        if "video" not in current.kinds and (
            self.cut_pending or time_s - current.start_s >= self.segment_s
        ):
            self._close(None)
            self._preroll.append(("audio", frame, ticks))
            self._open(None)
            return
        self._write("audio", frame, ticks)

    def _open(self, config: VideoConfig | None) -> None:
        """Open a file for what the preroll holds (and write it there)."""
        # the soonest frame, not the first: a stream that lagged may come in behind
        start_s = min(ticks / self._clocks[kind] for kind, _, ticks in self._preroll)
        specs: list[StreamSpec] = []
        if config is not None:
            specs.append(StreamSpec("video", config.codec, self._clocks["video"], config))
        if "audio" in self._flowing and "audio" in self.kinds:
            specs.append(StreamSpec("audio", "opus", self._clocks["audio"]))
        sequence = self._sequence
        self._sequence += 1
        container = container_for(config.codec if config else None)
        file = SegmentFile(
            self.path_for(sequence, start_s, container),
            container,
            tuple(specs),
            self.metadata_for(sequence, start_s),
            flush_s=self.flush_s,
            fsync=self.fsync,
        )
        self._current = current = _Segment(
            sequence=sequence,
            file=file,
            start_s=start_s,
            kinds=tuple(s.kind for s in specs),
            index={s.kind: i for i, s in enumerate(specs)},
            # floor, nudged: start_s came from some stream's ticks / clock in floats
            origin={k: math.floor(start_s * c + 1e-6) for k, c in self._clocks.items()},
            config=config,
            end_s=start_s,
        )
        self.cut_pending = False
        self.worker.submit(file.open)
        preroll, self._preroll = self._preroll, []
        for kind, frame, ticks in preroll:
            if kind in current.index:
                self._write(kind, frame, ticks)
            else:
                self.frames_dropped += 1

    def _write(self, kind: str, frame: Frame, ticks: int) -> None:
        current = self._current
        assert current is not None
        clock = self._clocks[kind]
        if kind == "audio":
            duration = frame.duration or clock // 50
            self._submit(current, kind, frame, ticks, duration)
            current.end_s = max(current.end_s, (ticks + duration) / clock)
            return
        if current.held is not None:
            held, held_ticks = current.held
            current.video_step = ticks - held_ticks
            self._submit(current, kind, held, held_ticks, current.video_step)
        current.held = (frame, ticks)
        current.end_s = max(current.end_s, ticks / clock)

    def _submit(
        self, current: _Segment, kind: str, frame: Frame, ticks: int, duration: int
    ) -> None:
        pts = ticks - current.origin[kind]
        if pts < 0:
            # from before this file began (audio that lagged a cut by over the
            # interleaver's wait): at time 0 it would step the file's timestamps back
            self.frames_dropped += 1
            return
        current.frames += 1
        self.worker.submit(
            current.file.write,
            current.index[kind],
            frame.data,
            pts,
            max(1, duration),
            frame.keyframe,
            size=len(frame.data),
        )

    def _close(self, end_ticks: int | None) -> None:
        """Close the current file; `end_ticks` is where the next one starts (video clock)."""
        current = self._current
        if current is None:
            return
        self._current = None
        if current.held is not None:
            held, held_ticks = current.held
            clock = self._clocks["video"]
            if end_ticks is not None and end_ticks > held_ticks:
                duration = end_ticks - held_ticks
            else:
                duration = current.video_step or round(clock * _DEFAULT_FRAME_S)
            self._submit(current, "video", held, held_ticks, duration)
            current.end_s = max(current.end_s, (held_ticks + duration) / clock)
        file = current.file

        def closed(_size: object, error: BaseException | None) -> None:
            config = current.config
            codecs = tuple(
                "opus" if kind == "audio" else (config.codec_string if config else "")
                for kind in current.kinds
            )
            self.on_closed(
                ClosedSegment(
                    sequence=current.sequence,
                    path=file.path,
                    container=file.container,
                    kinds=current.kinds,
                    codecs=codecs,
                    config=config,
                    start_s=current.start_s,
                    end_s=current.end_s,
                    size=file.size,
                    frames=current.frames,
                    ok=error is None and not file.failed,
                )
            )

        self.worker.submit(file.close, then=closed)

    def end_kind(self, kind: str) -> None:
        """A stream ended for good: later files are made without it."""
        self._flowing.discard(kind)

    def close(self) -> None:
        """End of the recording: write out what is held and close the file."""
        if self._current is None and self._preroll:
            video = [f for k, f, _ in self._preroll if k == "video"]
            self._open(video[0].config if video else None)
        self._close(None)
