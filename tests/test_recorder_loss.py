"""Real aiortc peers through the server, with 5% of the packets lost and some reordered
between the SFU and the recorder: the files stay monotonic, decodable and of the right
length."""

from __future__ import annotations

import asyncio
import random
import time

from aiortc import AudioStreamTrack

from recorder import Recorder, SegmentInfo
from recorder.probe import probe_segment
from signaling.client import SignalingClient

from media import PictureTrack, face_picture, similarity
from recorder_support import decode_all


class LossyLink:
    """Stands between a publication and the recorder's sink: drops `loss` of the packets
    (for good: no retransmission reaches the recorder) and delays some by one packet."""

    def __init__(self, sink, loss: float = 0.05, reorder: float = 0.05, seed: int = 11) -> None:
        self.sink = sink
        self.loss = loss
        self.reorder = reorder
        self.rng = random.Random(seed)
        self.dropped = {"audio": 0, "video": 0}
        self.reordered = 0
        self.first: float | None = None
        self.last = 0.0
        self._held: dict[str, tuple] = {}

    async def on_packet(self, kind, mime_type, clock_rate, packet, is_keyframe) -> None:
        now = time.monotonic()
        self.first = self.first or now
        self.last = now
        if self.rng.random() < self.loss:
            self.dropped[kind] += 1
            return
        if kind not in self._held and self.rng.random() < self.reorder:
            self._held[kind] = (kind, mime_type, clock_rate, packet, is_keyframe)
            self.reordered += 1
            return
        await self.sink.on_packet(kind, mime_type, clock_rate, packet, is_keyframe)
        held = self._held.pop(kind, None)
        if held is not None:
            await self.sink.on_packet(*held)

    def on_end(self, kind: str) -> None:
        self.sink.on_end(kind)


async def test_recording_through_loss_and_reordering(server, tmp_path):
    room = server.room("h264room")
    links: list[LossyLink] = []

    async def lossy(publication) -> None:
        # runs before the recorder's listener: its subscription goes through a LossyLink
        subscribe = publication.subscribe_locally

        def through_link(sink):
            links.append(LossyLink(sink))
            return subscribe(links[-1])

        publication.subscribe_locally = through_link

    segments: list[SegmentInfo] = []
    recorder = Recorder(tmp_path / "rec", segment_s=2.0, on_segment=segments.append)
    room.publication_listeners.append(lossy)
    recorder.attach(room)
    picture = face_picture()
    publisher = SignalingClient(server.base_url, server.token("main", "main", name="县委主会场"))
    await publisher.connect()
    try:
        await publisher.publish([AudioStreamTrack(), PictureTrack(picture)])
        await asyncio.sleep(6)
    finally:
        await publisher.close()
    for _ in range(50):
        if not recorder.recordings:
            break
        await asyncio.sleep(0.1)
    await recorder.close()

    (link,) = links
    recording_seconds = link.last - link.first
    assert link.dropped["video"] > 5 and link.dropped["audio"] > 5 and link.reordered > 5
    # the recorder saw every loss as one, and put every reordered packet back in its place
    stats = link.sink.stats()
    for kind in ("audio", "video"):
        assert 0.8 * link.dropped[kind] <= stats["packets_lost"][kind] <= link.dropped[kind]
    assert stats["frames_dropped"]["video"] > 0 and stats["keyframe_requests"] > 0
    assert len(segments) >= 2
    assert [s.sequence for s in segments] == list(range(len(segments)))
    total = sum(s.duration_s for s in segments)
    assert abs(total - recording_seconds) < 0.5, (total, recording_seconds)
    for segment in segments:
        assert segment.mime_type.startswith('video/mp4; codecs="avc1.42')
        probed = probe_segment(segment.path)
        assert set(probed.streams) == {"video", "audio"}
        assert all(s.monotonic for s in probed.streams.values())
        assert abs(probed.duration_s - segment.duration_s) < 0.05
        pictures, samples = decode_all(segment.path)  # whole frames only: decodes cleanly
        assert pictures and samples > 0
        assert similarity(picture, pictures[-1].to_ndarray(format="rgb24")) > 0.9
