"""Meeting control enforced in the SFU, with real aiortc peers: the floor slot and roll call
(checked by the decoded picture), mute-all (checked by packet counters), raised hands and
content sharing."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from aiortc import AudioStreamTrack

from lighthouse.config import RoomConfig
from signaling.client import SignalingClient, SignalingError

from conftest import BOTH_PLANES
from media import PictureTrack, face_picture, latest_picture, similarity

ROOM = "meeting"
pytestmark = [
    pytest.mark.server_config(rooms=(RoomConfig(ROOM, "党员大会", "vp8", controlled=True),)),
    BOTH_PLANES,  # whichever worker each venue is on, the meeting behaves the same
]


def pictures() -> dict[str, np.ndarray]:
    face = face_picture()
    stripes = np.zeros_like(face)
    stripes[:, (np.arange(face.shape[1]) // 40) % 2 == 0] = (230, 230, 230)
    return {"main": face, "v1": np.ascontiguousarray(face[::-1]), "v2": stripes}


async def joined(server, participant: str, role: str = "terminal") -> SignalingClient:
    client = SignalingClient(server.base_url, server.token(participant, role, ROOM))
    await client.connect()
    return client


async def shows(track, expected: np.ndarray, others: list[np.ndarray], timeout=10.0) -> bool:
    """True once the track's picture matches `expected` better than every other picture."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        seen = await latest_picture(track, 3)
        if similarity(seen, expected) > 0.9 and all(
            similarity(seen, o) < similarity(seen, expected) - 0.2 for o in others
        ):
            return True
    return False


def peer_id_of(client: SignalingClient) -> str:
    assert client.joined is not None
    return client.joined["peer_id"]


async def test_roll_call_switches_the_floor_slot_without_renegotiation(server):
    picture = pictures()
    main = await joined(server, "county", "main")
    v1, v2, v3 = [await joined(server, name) for name in ("v1", "v2", "v3")]
    try:
        main_pub = await main.publish([AudioStreamTrack(), PictureTrack(picture["main"])])
        v1_pub = await v1.publish([AudioStreamTrack(), PictureTrack(picture["v1"])])
        await v2.publish([AudioStreamTrack(), PictureTrack(picture["v2"])])
        for _ in range(3):
            await v3.next_event("publication_added")

        # a village may not pick another village's camera: only through the floor slot
        with pytest.raises(SignalingError) as refused:
            await v3.subscribe(v1_pub)
        assert refused.value.code == "not_allowed"

        main_view = await v3.subscribe(main_pub)
        floor = await v3.subscribe("floor")
        assert await shows(main_view.tracks["video"], picture["main"], [picture["v1"]])

        await main.request({"type": "control", "action": "roll_call", "peer_id": peer_id_of(v1)})
        state = await v3.state_where(lambda s: s["floor"] is not None)
        assert state["floor"]["peer_id"] == peer_id_of(v1) and state["spotlight"] is True
        others = [picture["main"], picture["v2"]]
        assert await shows(floor.tracks["video"], picture["v1"], others)

        await main.request({"type": "control", "action": "roll_call", "peer_id": peer_id_of(v2)})
        assert await shows(floor.tracks["video"], picture["v2"], [picture["main"], picture["v1"]])
        # one subscription all along: the slot moved its tracks, nothing was renegotiated
        assert list(v3.subscriptions) == [main_view.subscription_id, floor.subscription_id]
        room = server.room(ROOM)
        (slot_sub,) = room.control.slot.subscriptions
        view = await server.subscription_view(ROOM, slot_sub)
        assert view["video"]["source_switches"] >= 1

        # the floor taken back: the slot forwards nothing
        await main.request({"type": "control", "action": "take_floor"})
        await v3.state_where(lambda s: s["floor"] is None)
        view = await server.subscription_view(ROOM, slot_sub)
        assert not view["video"]["attached"]
        before = view["video"]["packets_forwarded"]
        await asyncio.sleep(0.5)
        view = await server.subscription_view(ROOM, slot_sub)
        assert view["video"]["packets_forwarded"] == before
    finally:
        for client in (main, v1, v2, v3):
            await client.close()


async def test_mute_all_stops_forwarding_venue_audio(server):
    main = await joined(server, "county", "main")
    v1, v2 = await joined(server, "v1"), await joined(server, "v2")
    try:
        pub1 = await v1.publish([AudioStreamTrack()])
        pub2 = await v2.publish([AudioStreamTrack()])
        await main.next_event("publication_added")
        await main.next_event("publication_added")
        await main.subscribe(pub1)
        await main.subscribe(pub2)
        room = server.room(ROOM)
        publications = {"v1": pub1, "v2": pub2}

        async def audio(name: str) -> list[dict]:
            """The venue's audio as each worker holding it sees it."""
            views = await server.publication_views(ROOM, publications[name])
            return [view["audio"] for view in views.values()]

        async def forwarded(name: str) -> int:
            return sum(sum(view["forwarded"]) for view in await audio(name))

        async def flowing(name: str) -> bool:
            before = await forwarded(name)
            await asyncio.sleep(0.6)
            return await forwarded(name) > before + 10

        assert await flowing("v1") and await flowing("v2")

        # only the main venue may run the meeting
        with pytest.raises(SignalingError) as refused:
            await v1.request({"type": "control", "action": "mute_all"})
        assert refused.value.code == "not_allowed"

        await main.request({"type": "control", "action": "mute_all"})
        await asyncio.sleep(0.1)  # packets already in the loop's hands
        assert not await flowing("v1") and not await flowing("v2")
        assert sum(view["packets_withheld"] for view in await audio("v1")) > 10
        state = room.control.state()
        assert state["mute_all"] and set(state["muted"]) == {peer_id_of(v1), peer_id_of(v2)}

        # the floor holder is heard, the others stay muted
        await main.request({"type": "control", "action": "give_floor", "peer_id": peer_id_of(v1)})
        assert await flowing("v1") and not await flowing("v2")
        # a venue that reconnects during mute-all is muted again at once
        await v2.close()
        v2 = await joined(server, "v2")
        pub2 = publications["v2"] = await v2.publish([AudioStreamTrack()])
        assert all(view["muted"] for view in await audio("v2"))

        await main.request({"type": "control", "action": "unmute_all"})
        assert not any(view["muted"] for view in await audio("v2"))
        assert room.control.state()["muted"] == []
    finally:
        for client in (main, v1, v2):
            await client.close()


async def test_raised_hands_queue_and_control_errors(server):
    main = await joined(server, "county", "main")
    v1, v2 = await joined(server, "v1"), await joined(server, "v2")
    try:
        await v1.request({"type": "raise_hand", "raised": True})
        await v2.request({"type": "raise_hand", "raised": True})
        state = await main.state_where(lambda s: len(s["hands"]) == 2)
        assert [h["peer_id"] for h in state["hands"]] == [peer_id_of(v1), peer_id_of(v2)]
        # giving the floor answers the hand
        await main.request({"type": "control", "action": "give_floor", "peer_id": peer_id_of(v2)})
        state = await main.state_where(lambda s: s["floor"] is not None)
        assert [h["peer_id"] for h in state["hands"]] == [peer_id_of(v1)]
        assert state["spotlight"] is False
        await main.request({"type": "control", "action": "lower_hand", "peer_id": peer_id_of(v1)})
        assert server.room(ROOM).control.hands == []

        with pytest.raises(SignalingError) as unknown:
            await main.request({"type": "control", "action": "roll_call", "peer_id": "p-nobody"})
        assert unknown.value.code == "unknown_peer"
        with pytest.raises(SignalingError) as missing:
            await main.request({"type": "control", "action": "mute"})
        assert missing.value.code == "unknown_peer"
        with pytest.raises(SignalingError) as bad:
            await main.request({"type": "control", "action": "explode"})
        assert bad.value.code == "invalid_message"
        with pytest.raises(SignalingError) as main_hand:
            await main.request({"type": "raise_hand", "raised": True})
        assert main_hand.value.code == "not_allowed"
    finally:
        for client in (main, v1, v2):
            await client.close()


async def test_content_share_is_a_second_publication_every_venue_receives(server):
    picture = pictures()
    main = await joined(server, "county", "main")
    village = await joined(server, "v1")
    try:
        camera = await main.publish([AudioStreamTrack(), PictureTrack(picture["main"])])
        content = await main.publish([PictureTrack(picture["v2"])], source="content")
        added = {}
        for _ in range(2):
            event = await village.next_event("publication_added")
            added[event["publication_id"]] = event["source"]
        assert added == {camera: "camera", content: "content"}
        state = await village.state_where(lambda s: s["content"] is not None)
        assert state["content"] == content
        shared = await village.subscribe(content)
        assert await shows(shared.tracks["video"], picture["v2"], [picture["main"]])

        # only the main venue shares
        with pytest.raises(SignalingError) as refused:
            await village.publish([PictureTrack(picture["v1"])], source="content")
        assert refused.value.code == "not_allowed"

        # a new share replaces the last one
        second = await main.publish([PictureTrack(picture["v1"])], source="content")
        removed = await village.next_event("publication_removed")
        assert removed["publication_id"] == content
        state = await village.state_where(lambda s: s["content"] == second)
        await main.request({"type": "unpublish", "publication_id": second})
        await village.state_where(lambda s: s["content"] is None)
    finally:
        for client in (main, village):
            await client.close()
