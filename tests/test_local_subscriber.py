"""Server-side subscribers (the recorder's and recognizer's way in) see the publisher's
packets from a keyframe on, and one end-of-stream when it goes, never an exception."""

from __future__ import annotations

import asyncio

from aiortc import AudioStreamTrack

from sfu.keyframes import keyframe_detector
from signaling.client import SignalingClient

from media import PictureTrack, face_picture


class CollectingSink:
    def __init__(self, fail: bool = False) -> None:
        self.packets: dict[str, list] = {"audio": [], "video": []}
        self.ended: list[str] = []
        self.fail = fail

    async def on_packet(self, kind, mime_type, clock_rate, packet, is_keyframe) -> None:
        if self.fail:
            raise RuntimeError("a broken subscriber")
        self.packets[kind].append((mime_type, clock_rate, packet, is_keyframe))

    def on_end(self, kind: str) -> None:
        self.ended.append(kind)


async def test_local_subscriber_gets_media_and_one_end_of_stream(server):
    room = server.room("h264room")
    sinks: list[CollectingSink] = []

    async def attach(publication) -> None:
        for sink in (CollectingSink(), CollectingSink(fail=True)):
            sinks.append(sink)
            publication.subscribe_locally(sink)

    room.publication_listeners.append(attach)
    publisher = SignalingClient(server.base_url, server.token("main", "main"))
    viewer = SignalingClient(server.base_url, server.token("village"))
    await publisher.connect()
    await viewer.connect()
    try:
        publication_id = await publisher.publish([AudioStreamTrack(), PictureTrack(face_picture())])
        await viewer.next_event("publication_added")
        subscription = await viewer.subscribe(publication_id)
        await asyncio.sleep(2)
        good, broken = sinks
        # the server's REMB to the publisher (every ~1 s) walks the whole fan-out, local
        # subscribers included: media must still flow well after it
        uptrack = server.room("h264room").publications[publication_id].uptracks["video"]
        assert uptrack.upstream_bitrate_cap() is None
        before = len(good.packets["video"])
        await asyncio.sleep(3)
        assert len(good.packets["video"]) > before + 20, "media stopped after a REMB"
        video = good.packets["video"]
        assert len(video) > 20 and len(good.packets["audio"]) > 20
        mime, clock_rate, first, is_keyframe = video[0]
        assert (mime, clock_rate, is_keyframe) == ("video/H264", 90000, True)
        assert keyframe_detector(mime)(first.payload)
        # the broken sink did not stop the TV's stream
        frame = await asyncio.wait_for(subscription.tracks["video"].recv(), 5)
        assert frame.width == 640
        await publisher.close()
        await asyncio.sleep(0.5)
        assert sorted(good.ended) == ["audio", "video"]
        assert sorted(broken.ended) == ["audio", "video"]
    finally:
        await viewer.close()
        await publisher.close()
