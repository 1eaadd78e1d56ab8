"""H.264 and VP8 in one room, with real aiortc peers on one process and across workers.

Each publication has its codec (the room's, or the other one when the publisher has no
such encoder: a Firefox without H.264 publishes VP8). A subscriber is offered both and
answers with what it decodes; one that decodes both gets any venue as it is sent, through
one connection, a floor slot switching codec included. One that cannot decode a venue's
codec is told its video waits, the venue's client is asked for a second encoding in a
codec it decodes (encoding_wanted), and the video comes from that. Before, a VP8
publisher was refused in an H.264 room and a subscriber without H.264 got no video."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from aiortc import AudioStreamTrack

from lighthouse.config import RoomConfig
from signaling.client import SignalingClient

from conftest import BOTH_PLANES
from media import PictureTrack, face_picture, latest_picture, similarity

MEETING = "meeting"
pytestmark = [
    pytest.mark.server_config(
        rooms=(
            RoomConfig("h264room", "H.264 会议", "h264"),
            RoomConfig(MEETING, "党员大会", "h264", controlled=True),
        )
    ),
    BOTH_PLANES,
]


async def joined(server, participant: str, role: str = "terminal", room: str = "h264room"):
    client = SignalingClient(server.base_url, server.token(participant, role, room))
    await client.connect()
    return client


async def video_of(subscription, timeout: float = 15.0):
    for _ in range(int(timeout * 10)):
        if "video" in subscription.tracks:
            return subscription.tracks["video"]
        await asyncio.sleep(0.1)
    raise AssertionError("no video track")


async def sent_mime(server, room: str, client: SignalingClient, subscription) -> str | None:
    peer = server.room(room).peers[client.joined["peer_id"]]
    view = await server.subscription_view(room, peer.subscriptions[subscription.subscription_id])
    return view["video"]["mime_type"]


async def test_a_subscriber_without_h264_gets_the_venues_second_encoding_in_vp8(server):
    picture = face_picture()
    main = await joined(server, "county-main", "main")
    firefox = await joined(server, "village-ff")  # decodes VP8 only
    chromium = await joined(server, "village-tv")  # decodes both
    try:
        publication = await main.publish(
            [AudioStreamTrack(), PictureTrack(picture)], second_encodings=True
        )
        await firefox.next_event("publication_added")
        subscription = await firefox.subscribe(publication, video_codecs=["vp8"])
        paused = await firefox.next_event("video_paused")
        assert (paused["reason"], paused["video_codec"]) == ("codec", "h264")
        asked = await main.next_event("encoding_wanted")
        assert (asked["publication_id"], asked["video_codec"]) == (publication, "vp8")
        resumed = await firefox.next_event("video_resumed", timeout=20)
        assert resumed["reason"] == "codec"
        seen = await latest_picture(await video_of(subscription), 5, 20)
        assert similarity(seen, picture) > 0.9
        assert await sent_mime(server, "h264room", firefox, subscription) == "video/VP8"

        # a subscriber that decodes H.264 gets the first encoding, and nobody is told
        # of the second: it is part of its publication, no publication of its own
        direct = await chromium.subscribe(publication)
        seen = await latest_picture(await video_of(direct), 5, 20)
        assert similarity(seen, picture) > 0.9
        assert await sent_mime(server, "h264room", chromium, direct) == "video/H264"
        room = server.room("h264room")
        assert list(room.publications) == [publication]
        assert [p["publication_id"] for p in room.visible_publications()] == [publication]
        assert list(main.encodings[publication]) == ["vp8"]
        encoding_id = main.encodings[publication]["vp8"]
        assert encoding_id in room.encodings

        # the second encoding ends with its publication
        await main.request({"type": "unpublish", "publication_id": publication})
        for _ in range(50):
            if not room.encodings:
                break
            await asyncio.sleep(0.1)
        assert room.encodings == {}
    finally:
        for client in (main, firefox, chromium):
            await client.close()


async def test_a_venue_that_cannot_encode_again_leaves_the_subscriber_its_sound(server):
    main = await joined(server, "county-main", "main")
    firefox = await joined(server, "village-ff")
    try:
        publication = await main.publish([AudioStreamTrack(), PictureTrack(face_picture())])
        await firefox.next_event("publication_added")
        subscription = await firefox.subscribe(publication, video_codecs=["vp8"])
        paused = await firefox.next_event("video_paused")
        assert paused["reason"] == "codec"
        for _ in range(100):
            if "audio" in subscription.tracks:
                break
            await asyncio.sleep(0.1)
        await asyncio.wait_for(subscription.tracks["audio"].recv(), 10)
        await asyncio.sleep(1)
        view = await sent_mime(server, "h264room", firefox, subscription)
        assert view is None  # no video source: nothing undecodable is sent
    finally:
        await main.close()
        await firefox.close()


async def test_the_floor_passes_between_an_h264_and_a_vp8_venue_in_one_connection(server):
    def stripes() -> np.ndarray:
        face = face_picture()
        out = np.zeros_like(face)
        out[:, (np.arange(face.shape[1]) // 40) % 2 == 0] = (230, 230, 230)
        return out

    pictures = {"v1": face_picture(), "v2": stripes()}
    main = await joined(server, "county", "main", MEETING)
    v1 = await joined(server, "v1", room=MEETING)  # a Chromium TV: H.264
    v2 = await joined(server, "v2", room=MEETING)  # a Firefox PC: VP8, no H.264 at all
    tv = await joined(server, "tv", room=MEETING)  # watches the floor, decodes both
    ff = await joined(server, "ff", room=MEETING)  # watches the floor, VP8 only
    try:
        await v1.publish([AudioStreamTrack(), PictureTrack(pictures["v1"])], second_encodings=True)
        await v2.publish([AudioStreamTrack(), PictureTrack(pictures["v2"])], video_codec="vp8")
        floor = await tv.subscribe("floor")
        ff_floor = await ff.subscribe("floor", video_codecs=["vp8"])
        shown = {}
        for venue in ("v1", "v2", "v1"):
            peer_id = venue_peer = (v1 if venue == "v1" else v2).joined["peer_id"]
            await main.request({"type": "control", "action": "give_floor", "peer_id": peer_id})
            await main.state_where(
                lambda s, p=venue_peer: s["floor"] is not None and s["floor"]["peer_id"] == p
            )
            for client, subscription in ((tv, floor), (ff, ff_floor)):
                expected, other = pictures[venue], pictures["v2" if venue == "v1" else "v1"]
                for _ in range(20):
                    seen = await latest_picture(await video_of(subscription), 3, 20)
                    if similarity(seen, expected) > 0.9 > similarity(seen, other):
                        break
                else:
                    raise AssertionError(f"{client.token[:8]} never showed {venue}")
                mime = await sent_mime(server, MEETING, client, subscription)
                shown.setdefault(venue, []).append(mime)
        # the TV took each venue as sent; the VP8-only PC took v1's second encoding
        assert shown["v1"] == ["video/H264", "video/VP8", "video/H264", "video/VP8"]
        assert shown["v2"] == ["video/VP8", "video/VP8"]
        assert [list(codecs) for codecs in v1.encodings.values()] == [["vp8"]]
    finally:
        for client in (main, v1, v2, tv, ff):
            await client.close()
