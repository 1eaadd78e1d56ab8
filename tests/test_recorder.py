"""The Recorder and a VenueRecording end to end, without a network: RTP in (lost and
reordered packets among them), segment files and SegmentInfo out."""

from __future__ import annotations

import asyncio
import io
import itertools
import random
import time
from datetime import UTC, datetime

import pytest

from recorder import Recorder, SegmentInfo
from recorder.probe import probe_segment
from recorder.segments import SegmentFile
from sfu.room import Room, RoomSettings

from recorder_support import (
    FakeClock,
    FakePublication,
    decode_all,
    encode_opus,
    encode_video,
    packetize,
)


def arrivals(seconds: float, *, loss: float, seed: int = 3):
    """(arrival time, kind, mime, clock rate, packet) of a VP8 + Opus publication sent in
    real time, with `loss` of the packets dropped and one in 30 swapped with the next."""
    rng = random.Random(seed)
    video = packetize("vp8", [f.data for f in encode_video("vp8", int(seconds * 25))])
    audio = packetize("opus", encode_opus(int(seconds * 50)), ssrc=99, step=960)
    timed = [
        (
            1000.0 + (p.timestamp - 5000) / 90000 + 0.0005 * (p.sequence_number % 7),
            "video",
            "video/VP8",
            90000,
            p,
        )
        for p in video
    ]
    timed += [
        (1000.0 + (p.timestamp - 5000) / 48000 + 0.003, "audio", "audio/opus", 48000, p)
        for p in audio
    ]
    timed.sort(key=lambda t: t[0])
    kept = [t for t in timed if rng.random() >= loss]
    for i in range(0, len(kept) - 1, 30):
        kept[i], kept[i + 1] = kept[i + 1], kept[i]
    return kept, len(timed) - len(kept)


async def test_a_venue_recording_from_packets_to_indexed_segments(tmp_path):
    clock = FakeClock()
    indexed: list[SegmentInfo] = []

    async def on_segment(info: SegmentInfo) -> None:
        await asyncio.sleep(0)  # an index write would await its database
        indexed.append(info)

    recorder = Recorder(tmp_path / "rec", segment_s=4.0, on_segment=on_segment, clock=clock)
    room = Room(RoomSettings("h264room", "会议"))
    recorder.attach(room)
    publication = FakePublication("h264room", "../village/红星", "红星村", ["audio", "video"])
    await room.publication_listeners[0](publication)
    recording = recorder.recordings["pub-test"]
    packets, dropped = arrivals(12.0, loss=0.02)
    assert dropped > 10
    started = datetime.now(UTC)
    for arrival, kind, mime, rate, packet in packets:
        clock.now = arrival
        await recording.on_packet(kind, mime, rate, packet, False)
    publication.subscription.close()
    await recorder.close()

    assert recorder.recordings == {}
    assert [i.sequence for i in indexed] == list(range(len(indexed))) and len(indexed) >= 2
    stats = recording.stats()
    assert stats["packets_lost"]["video"] > 0 and stats["frames_dropped"]["video"] > 0
    # losses made it wait for keyframes; so did each cut
    assert publication.subscription.downtracks["video"].keyframe_requests >= 2
    total = sum(i.duration_s for i in indexed)
    assert total == pytest.approx(12.0, abs=0.1)
    for before, after in itertools.pairwise(indexed):
        assert abs((after.start - before.end).total_seconds()) <= 0.02
    for info in indexed:
        assert info.room_id == "h264room" and info.venue_name == "红星村"
        assert info.participant_id == "../village/红星" and info.publication_id == "pub-test"
        assert info.mime_type == 'video/webm; codecs="vp8, opus"'
        assert info.kinds == ("video", "audio")
        # the participant id cannot lead the file out of the recorder's root
        assert info.relative_path.startswith("h264room/_village_红星/")
        assert info.path == recorder.root / info.relative_path
        assert info.size_bytes == info.path.stat().st_size
        assert abs((info.start - started).total_seconds()) < 30
        assert info.start.strftime("%Y%m%dT%H%M%SZ") == info.path.name.split("-")[0]
        probed = probe_segment(info.path)
        assert probed.streams["video"].keyframes >= 1 and probed.streams["video"].monotonic
        assert probed.streams["audio"].monotonic
        assert probed.tags["lighthouse_participant"] == info.participant_id
        assert probed.duration_s == pytest.approx(info.duration_s, abs=0.05)
        assert abs((probed.start - info.start).total_seconds()) < 0.001
        pictures, samples = decode_all(info.path)
        assert pictures and samples > 0


async def test_should_record_decides_and_a_closed_recorder_records_nothing(tmp_path):
    recorder = Recorder(tmp_path, should_record=lambda p: p.peer.role == "terminal")
    room = Room(RoomSettings("vp8room", "会议", video_codec="vp8"))
    recorder.attach(room)
    await room.publication_listeners[0](FakePublication("vp8room", "main", "主会场", ["video"]))
    assert recorder.recordings == {}
    await recorder.close()
    assert room.publication_listeners == []


class SlowDiskFile(io.FileIO):
    """A file on a disk that takes `delay` for every write."""

    delay = 0.1

    def write(self, data) -> int:
        time.sleep(self.delay)
        return super().write(data)


async def loop_lag_while_recording(tmp_path, monkeypatch, threaded: bool) -> tuple[float, int]:
    """Record 3 s of media onto a slow disk; the event loop's longest stall meanwhile."""
    original = SegmentFile._create

    def slow_create(self) -> io.FileIO:
        file = original(self)
        file.close()
        return SlowDiskFile(self.path, "w")

    monkeypatch.setattr(SegmentFile, "_create", slow_create)
    clock = FakeClock()
    recorder = Recorder(tmp_path / str(threaded), clock=clock, threaded=threaded, segment_s=2.0)
    room = Room(RoomSettings("vp8room", "会议", video_codec="vp8"))
    recorder.attach(room)
    publication = FakePublication("vp8room", "tv", "红星村", ["audio", "video"])
    await room.publication_listeners[0](publication)
    recording = recorder.recordings["pub-test"]
    worst = 0.0
    stop = asyncio.Event()

    async def watch() -> None:
        nonlocal worst
        while not stop.is_set():
            before = time.monotonic()
            await asyncio.sleep(0.005)
            worst = max(worst, time.monotonic() - before - 0.005)

    watcher = asyncio.ensure_future(watch())
    packets, _ = arrivals(3.0, loss=0.0)
    for n, (arrival, kind, mime, rate, packet) in enumerate(packets):
        clock.now = arrival
        await recording.on_packet(kind, mime, rate, packet, False)
        if n % 20 == 0:
            await asyncio.sleep(0.01)
    publication.subscription.close()
    await recorder.close()
    stop.set()
    await watcher
    return worst, recorder.segments_written


async def test_a_slow_disk_holds_up_the_file_thread_not_the_event_loop(tmp_path, monkeypatch):
    worst, segments = await loop_lag_while_recording(tmp_path, monkeypatch, threaded=True)
    assert segments == 2
    assert worst < 0.05, f"the event loop stalled for {worst * 1000:.0f} ms"
    # the same work on the event loop stalls it for as long as the disk takes
    worst_inline, _ = await loop_lag_while_recording(tmp_path, monkeypatch, threaded=False)
    assert worst_inline >= SlowDiskFile.delay
