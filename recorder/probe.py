"""What a segment file holds, read back without decoding: streams, times, its own tags.

For checking recordings, and for rebuilding an index from the files alone: a file that a
crash cut off was never reported through `on_segment`, but its tags say whose it is and
its packets say how much of it plays.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import av


@dataclass(frozen=True)
class StreamProbe:
    kind: str  # "video" or "audio"
    codec: str
    packets: int
    keyframes: int
    start_s: float  # first presentation time
    end_s: float  # last presentation time plus its duration
    monotonic: bool  # decode timestamps strictly increase


@dataclass(frozen=True)
class ProbedSegment:
    path: Path
    streams: dict[str, StreamProbe]
    tags: dict[str, str]  # keys lower-cased (WebM upper-cases its own)
    complete: bool  # closed properly (its trailer written), not cut off by a crash

    @property
    def duration_s(self) -> float:
        if not self.streams:
            return 0.0
        start = min(s.start_s for s in self.streams.values())
        return max(s.end_s for s in self.streams.values()) - start

    @property
    def start(self) -> datetime | None:
        """UTC start, from the file's creation_time tag."""
        value = self.tags.get("creation_time")
        return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _has_trailer(path: Path, container: av.container.InputContainer) -> bool:
    if path.suffix == ".mp4":
        # a fragmented MP4 ends with its fragment index, whose last box is 'mfro'
        with path.open("rb") as file:
            file.seek(max(0, path.stat().st_size - 16))
            return file.read(16)[4:8] == b"mfro"
    # WebM: the segment's duration is written when the file is closed
    return container.duration is not None


def probe_segment(path: str | Path) -> ProbedSegment:
    path = Path(path)
    with av.open(str(path)) as container:
        complete = _has_trailer(path, container)
        tags = {k.lower(): v for k, v in container.metadata.items()}
        acc: dict[int, dict] = {}
        kinds = {s.index: s.type for s in container.streams if s.type in ("video", "audio")}
        for packet in container.demux():
            index = packet.stream.index
            if index not in kinds or packet.pts is None or packet.time_base is None:
                continue
            tb = packet.time_base
            pts = float(packet.pts * tb)
            end = float((packet.pts + (packet.duration or 0)) * tb)
            dts = packet.dts if packet.dts is not None else packet.pts
            a = acc.setdefault(
                index,
                {"n": 0, "key": 0, "start": pts, "end": end, "last_dts": None, "mono": True},
            )
            a["n"] += 1
            a["key"] += bool(packet.is_keyframe)
            a["start"] = min(a["start"], pts)
            a["end"] = max(a["end"], end)
            if a["last_dts"] is not None and dts <= a["last_dts"]:
                a["mono"] = False
            a["last_dts"] = dts
        streams: dict[str, StreamProbe] = {}
        for stream in container.streams:
            found = acc.get(stream.index)
            if found is None:
                continue
            streams[kinds[stream.index]] = StreamProbe(
                kind=kinds[stream.index],
                codec=stream.codec_context.name if stream.codec_context else "",
                packets=found["n"],
                keyframes=found["key"],
                start_s=found["start"],
                end_s=found["end"],
                monotonic=found["mono"],
            )
    return ProbedSegment(path, streams, tags, complete)
