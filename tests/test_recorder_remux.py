"""Joining a venue's segments into one file (the console's download): recorder-made
segments of both codecs, with a picture-size change and a gap, joined without decoding;
every frame decodes, the sizes change where they did, and the gap stays a gap."""

from __future__ import annotations

import itertools
from pathlib import Path

import av
import pytest

from recorder import Recorder, SegmentInfo
from recorder.remux import Part, join_segments

from recorder_support import FakeClock, FakePublication, encode_opus, encode_video, packetize

MIME = {"h264": "video/H264", "vp8": "video/VP8"}


async def record(tmp_path: Path, codec: str) -> list[SegmentInfo]:
    """3 s at 320x180 then 3 s at 640x360 (a new keyframe and parameter sets), 25 fps,
    with Opus, in 2 s segments: the size change starts a new file."""
    clock = FakeClock()
    segments: list[SegmentInfo] = []
    recorder = Recorder(
        tmp_path / codec, segment_s=2, on_segment=segments.append, threaded=False, clock=clock
    )
    recording = recorder._start(FakePublication("room", "terminal:1", "红星村", ["video", "audio"]))
    frames = [f.data for f in encode_video(codec, 75)]
    frames += [f.data for f in encode_video(codec, 75, width=640, height=360, start=75)]
    packets = [
        (1000 + (p.timestamp - 5000) / 90000, "video", MIME[codec], 90000, p)
        for p in packetize(codec, frames)
    ]
    packets += [
        (1000 + (p.timestamp - 5000) / 48000, "audio", "audio/opus", 48000, p)
        for p in packetize("opus", encode_opus(300), ssrc=99, step=960)
    ]
    for arrival, kind, mime, clock_rate, packet in sorted(packets, key=lambda t: t[0]):
        clock.now = arrival
        await recording.on_packet(kind, mime, clock_rate, packet, False)
    recording.stop()
    await recorder.close()
    return segments


@pytest.mark.parametrize("codec", ["h264", "vp8"])
async def test_segments_join_into_one_file_that_decodes_throughout(tmp_path, codec):
    segments = await record(tmp_path, codec)
    assert len(segments) >= 3
    start = segments[0].start
    gap_s = 5.0  # as if the venue's last part came after a five-second outage
    parts = [
        Part(s.path, (s.start - start).total_seconds() + (gap_s if s is segments[-1] else 0))
        for s in segments
    ]
    container = "mp4" if codec == "h264" else "webm"
    joined = join_segments(parts, tmp_path / f"joined.{container}", container)
    media_s = sum(s.duration_s for s in segments)
    assert joined.duration_s == pytest.approx(media_s + gap_s, abs=0.1)

    sizes: list[tuple[int, int]] = []
    times: list[float] = []
    with av.open(str(joined.path)) as file:
        assert file.duration / 1e6 == pytest.approx(joined.duration_s, abs=0.1)
        assert {s.type for s in file.streams} == {"video", "audio"}
        for frame in file.decode(video=0):  # raises on a frame that does not decode
            sizes.append((frame.width, frame.height))
            times.append(float(frame.time))
    assert len(sizes) == 150
    assert sizes[:75] == [(320, 180)] * 75 and sizes[75:] == [(640, 360)] * 75
    assert times == sorted(times)
    steps = [b - a for a, b in itertools.pairwise(times)]
    assert max(steps) == pytest.approx(gap_s + 0.04, abs=0.05)  # the gap, and only there
    assert sorted(steps)[-2] < 0.1


def test_nothing_to_join_is_an_error(tmp_path):
    with pytest.raises(ValueError):
        join_segments([], tmp_path / "x.webm", "webm")
