"""One file from a venue's segments: their packets copied, never decoded or re-encoded.

Each segment's timestamps start at 0; in the joined file a segment starts at its offset
from the recording's start, so gaps (a publisher that dropped out for a minute) stay gaps
and the file's clock is the playback timeline's. Where a segment would overlap the one
before (clock drift of a few ms), it is moved on just enough to keep time increasing.

H.264 segments carry their SPS/PPS in-band before each keyframe as well as in the file's
header, so a later segment with another picture size still decodes after the first's.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

KINDS = ("video", "audio")


@dataclass(frozen=True)
class Part:
    path: Path
    offset_s: float  # where it starts in the joined file


@dataclass(frozen=True)
class Joined:
    path: Path
    duration_s: float
    packets: int


def join_segments(parts: list[Part], out_path: Path, container: str) -> Joined:
    """Write `parts` (in order) into one `container` ("webm" or "mp4") file at `out_path`."""
    if not parts:
        raise ValueError("nothing to join")
    templates: dict[str, av.stream.Stream] = {}
    sources = [av.open(str(part.path)) for part in parts]
    try:
        for source in sources:  # every kind any part has, from the first part that has it
            for stream in source.streams:
                if stream.type in KINDS and stream.type not in templates:
                    templates[stream.type] = stream
        options = {"movflags": "+faststart"} if container == "mp4" else {}
        with av.open(str(out_path), "w", format=container, options=options) as output:
            outputs = {
                kind: output.add_stream_from_template(templates[kind])
                for kind in KINDS
                if kind in templates
            }
            end = Fraction(0)
            packets = 0
            for part, source in zip(parts, sources, strict=True):
                # a part's own timestamps start at 0; it never starts inside the one before
                shift = max(Fraction(part.offset_s).limit_denominator(1_000_000), end)
                for packet in source.demux():
                    kind = packet.stream.type
                    if kind not in outputs or packet.pts is None or packet.time_base is None:
                        continue
                    time_base = packet.time_base
                    offset = round(shift / time_base)
                    packet.pts += offset
                    if packet.dts is not None:
                        packet.dts += offset
                    end = max(end, (packet.pts + (packet.duration or 0)) * time_base)
                    packet.stream = outputs[kind]
                    packet.time_base = time_base
                    output.mux(packet)
                    packets += 1
    finally:
        for source in sources:
            source.close()
    return Joined(out_path, float(end), packets)
