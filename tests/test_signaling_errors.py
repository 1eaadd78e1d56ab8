"""Every class of bad signaling input gets a clear error and harms nobody."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import jwt
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from lighthouse.keys import SIGNALING_KEY
from signaling.client import SignalingClient, SignalingError, prefer_codec

from conftest import TEST_SECRET
from media import PictureTrack, face_picture

ROOM_EVENTS = {
    "peer_joined",
    "peer_left",
    "publication_added",
    "publication_removed",
    "subscription_ended",
}


class RawSocket:
    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse):
        self.session = session
        self.ws = ws

    @classmethod
    async def open(cls, server) -> RawSocket:
        session = aiohttp.ClientSession()
        ws = await session.ws_connect(server.base_url.replace("http", "ws") + "/ws")
        return cls(session, ws)

    async def send(self, payload) -> None:
        await self.ws.send_str(payload if isinstance(payload, str) else json.dumps(payload))

    async def recv(self, timeout: float = 10.0) -> dict:
        msg = await self.ws.receive(timeout=timeout)
        assert msg.type == aiohttp.WSMsgType.TEXT, f"expected a message, got {msg.type}"
        return json.loads(msg.data)

    async def request(self, payload) -> dict:
        """Send, then return the first message that is not a room event."""
        await self.send(payload)
        while True:
            message = await self.recv()
            if message["type"] not in ROOM_EVENTS:
                return message

    async def alive(self) -> bool:
        reply = await self.request({"type": "ping", "id": "alive?"})
        return reply == {"type": "pong", "id": "alive?"}

    async def close(self) -> None:
        await self.ws.close()
        await self.session.close()


@pytest.fixture
async def raw(server):
    socket = await RawSocket.open(server)
    yield socket
    await socket.close()


async def joined_raw(server, participant="village", role="terminal") -> RawSocket:
    socket = await RawSocket.open(server)
    reply = await socket.request(
        {"type": "join", "id": 1, "token": server.token(participant, role)}
    )
    assert reply["type"] == "joined"
    return socket


@pytest.mark.parametrize(
    ("payload", "code", "mentions"),
    [
        ("{not json", "invalid_json", "JSON"),
        ("[1, 2]", "invalid_json", "object"),
        ('"just a string"', "invalid_json", "object"),
        ({"id": 5}, "invalid_message", "type"),
        ({"type": "dance", "id": 5}, "unknown_type", "dance"),
        ({"type": "join", "id": 5}, "invalid_message", "token"),
        ({"type": "join", "id": 5, "token": 42}, "invalid_message", "token"),
        ({"type": "ping", "id": 5, "extra": 1}, "invalid_message", "extra"),
        ({"type": "ping", "id": {"nested": 1}}, "invalid_message", "id"),
        ({"type": "publish", "id": 5, "sdp": "v=0"}, "not_joined", "join"),
    ],
)
async def test_malformed_messages_get_an_error_and_the_socket_lives(raw, payload, code, mentions):
    reply = await raw.request(payload)
    assert reply["type"] == "error"
    assert reply["code"] == code
    assert mentions in reply["message"]
    if isinstance(payload, dict) and isinstance(payload.get("id"), int):
        assert reply["id"] == payload["id"]
    assert await raw.alive()


async def test_binary_frame_is_refused(raw):
    await raw.ws.send_bytes(b"\x00\x01")
    reply = await raw.recv()
    assert reply["code"] == "invalid_json"
    assert await raw.alive()


async def test_oversized_frame_closes_only_that_socket(server, raw):
    other = await joined_raw(server, "bystander")
    try:
        await raw.send({"type": "ping", "pad": "x" * (300 * 1024)})
        msg = await raw.ws.receive(timeout=10)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert raw.ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
        assert await other.alive()
        assert len(server.room("h264room").peers) == 1
    finally:
        await other.close()


def _token(claims: dict, secret: str = TEST_SECRET) -> str:
    base = {
        "typ": "meeting",
        "sub": "x",
        "name": "X",
        "room": "h264room",
        "role": "terminal",
        "exp": int(time.time()) + 600,
    }
    base.update(claims)
    return jwt.encode({k: v for k, v in base.items() if v is not None}, secret, algorithm="HS256")


OTHER_SECRET = "another-secret-that-is-long-enough-0123456789"


# tokens are made when each test runs, not when the module is collected: a token of the
# collection expired in a CI run that reached this module more than 10 minutes later
@pytest.mark.parametrize(
    ("claims", "secret", "code"),
    [
        (None, TEST_SECRET, "invalid_token"),  # not a JWT at all
        ({}, OTHER_SECRET, "invalid_token"),
        ({"exp": -5}, TEST_SECRET, "token_expired"),  # exp: seconds from now
        ({"exp": None}, TEST_SECRET, "invalid_token"),
        ({"typ": None}, TEST_SECRET, "invalid_token"),
        ({"typ": "session"}, TEST_SECRET, "invalid_token"),  # an API token is not a meeting's
        ({"role": "admin"}, TEST_SECRET, "invalid_token"),
        ({"room": "no-such-room"}, TEST_SECRET, "unknown_room"),
    ],
)
async def test_bad_tokens_are_refused_and_the_socket_closed(server, raw, claims, secret, code):
    if claims is None:
        token = "not-a-jwt"
    else:
        if isinstance(claims.get("exp"), int):
            claims = {**claims, "exp": int(time.time()) + claims["exp"]}
        token = _token(claims, secret)
    reply = await raw.request({"type": "join", "id": 9, "token": token})
    assert (reply["type"], reply["code"], reply["id"]) == ("error", code, 9)
    msg = await raw.ws.receive(timeout=5)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert server.room("h264room").peers == {}


async def test_tampered_token_is_refused(server, raw):
    header, payload, signature = server.token("village").split(".")
    claims = json.loads(jwt.utils.base64url_decode(payload))
    claims["role"] = "main"
    forged = jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
    reply = await raw.request({"type": "join", "token": f"{header}.{forged}.{signature}"})
    assert reply["code"] == "invalid_token"


async def test_second_join_on_one_socket_is_refused(server):
    socket = await joined_raw(server)
    try:
        reply = await socket.request({"type": "join", "id": 2, "token": server.token("other")})
        assert reply["code"] == "already_joined"
        assert await socket.alive()
    finally:
        await socket.close()


async def test_a_second_use_of_a_token_is_refused_unless_it_takes_over(server):
    """A logged or shared link must not silently take a seat: a second connection with the
    same token is refused in_use; one that chooses take_over moves the seat (the first is
    told `replaced`, an audit entry says from where to where); the same page reconnecting
    with its own instance id resumes silently."""
    from sqlalchemy import select

    from db.models import AuditEntry
    from lighthouse.keys import DATABASE_KEY

    token = server.token("tv-17")
    first = await RawSocket.open(server)
    joined = await first.request({"type": "join", "id": 1, "token": token, "instance": "page-aaaa"})
    assert joined["type"] == "joined"
    intruder = await RawSocket.open(server)
    second = await intruder.request({"type": "join", "id": 1, "token": token})
    assert second["code"] == "in_use", second
    assert await first.alive()  # nobody was kicked
    peers = server.room("h264room").peers.values()
    assert [p.participant_id for p in peers] == ["tv-17"]

    taking = await intruder.request({"type": "join", "id": 2, "token": token, "take_over": True})
    assert taking["type"] == "joined"
    reply = await first.recv()
    assert reply["code"] == "replaced"
    msg = await first.ws.receive(timeout=5)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert await intruder.alive()
    async with server.app[DATABASE_KEY].session() as session:
        entries = (
            await session.scalars(select(AuditEntry).where(AuditEntry.action == "seat_taken_over"))
        ).all()
    assert len(entries) == 1
    assert entries[0].target_id == "h264room" and entries[0].actor.startswith("tv-17")
    assert entries[0].remote_addr == "127.0.0.1"
    assert entries[0].detail["previous_address"] == "127.0.0.1"

    # the page that holds the seat reconnects before its old socket is seen dead: resumed
    holder = await RawSocket.open(server)
    held = {"type": "join", "id": 1, "token": token, "instance": "page-bbbb", "take_over": True}
    assert (await holder.request(held))["type"] == "joined"
    resumed = await RawSocket.open(server)
    again = await resumed.request(
        {"type": "join", "id": 1, "token": token, "instance": "page-bbbb"}
    )
    assert again["type"] == "joined"
    for socket in (first, intruder, holder, resumed):
        await socket.close()
    async with server.app[DATABASE_KEY].session() as session:
        count = len(
            (
                await session.scalars(
                    select(AuditEntry).where(AuditEntry.action == "seat_taken_over")
                )
            ).all()
        )
    assert count == 2  # the holder took it over from the intruder; the resume is silent


async def _offer(video_codec: str) -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver(PictureTrack(face_picture(64, 36)), direction="sendonly")
    prefer_codec(pc, video_codec)
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


@pytest.mark.parametrize(
    ("make_sdp", "code"),
    [
        (lambda offer: "hello", "bad_sdp"),
        (lambda offer: "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", "bad_sdp"),
        (lambda offer: offer.replace("a=ice-ufrag", "a=x-ufrag"), "bad_sdp"),
        (lambda offer: offer.replace("a=sendonly", "a=recvonly"), "bad_sdp"),
        # what a VP9-only browser would send
        (lambda offer: offer.replace("VP8/90000", "VP9/90000"), "codec_not_supported"),
    ],
)
async def test_bad_offers_are_refused_and_nothing_is_published(server, make_sdp, code):
    socket = await RawSocket.open(server)
    try:
        joined = await socket.request({"type": "join", "token": server.token("v", room="vp8room")})
        assert joined["type"] == "joined"
        offer = make_sdp(await _offer("vp8"))
        reply = await socket.request({"type": "publish", "id": 3, "sdp": offer})
        assert (reply["type"], reply["code"], reply["id"]) == ("error", code, 3)
        assert server.room("h264room").publications == {}
        assert server.room("vp8room").publications == {}
        assert await socket.alive()
    finally:
        await socket.close()


async def test_an_offer_in_neither_codec_names_both_and_the_other_codec_is_taken(server):
    socket = await joined_raw(server)
    try:
        vp9 = (await _offer("vp8")).replace("VP8/90000", "VP9/90000")
        reply = await socket.request({"type": "publish", "sdp": vp9})
        assert reply["code"] == "codec_not_supported"
        assert "h264/vp8" in reply["message"] and "vp9" in reply["message"]
        # VP8 in this H.264 room is what a Firefox without H.264 publishes: taken (it was
        # refused, and such a village could only listen)
        reply = await socket.request({"type": "publish", "sdp": await _offer("vp8")})
        assert reply["type"] == "published", reply
        publication = server.room("h264room").publications[reply["publication_id"]]
        assert publication.video_codec == "vp8"
    finally:
        await socket.close()


async def test_h264_high_profile_only_offer_is_refused(server):
    offer = (await _offer("h264")).replace("42e01f", "640c1f").replace("42001f", "640c1f")
    socket = await joined_raw(server)
    try:
        reply = await socket.request({"type": "publish", "sdp": offer})
        assert reply["code"] == "codec_not_supported"
        assert await socket.alive()
    finally:
        await socket.close()


async def test_unknown_ids_and_bad_answers(server):
    publisher = SignalingClient(server.base_url, server.token("main", "main"))
    await publisher.connect()
    socket = await joined_raw(server)
    try:
        publication_id = await publisher.publish([PictureTrack(face_picture())])
        for message, code in [
            ({"type": "subscribe", "publication_id": "pub-nope"}, "unknown_publication"),
            ({"type": "unpublish", "publication_id": publication_id}, "unknown_publication"),
            ({"type": "unsubscribe", "subscription_id": "sub-nope"}, "unknown_subscription"),
            (
                {"type": "subscription_answer", "subscription_id": "sub-nope", "sdp": "v=0"},
                "unknown_subscription",
            ),
        ]:
            reply = await socket.request(message)
            assert reply["code"] == code, message
        offer = await socket.request({"type": "subscribe", "publication_id": publication_id})
        assert offer["type"] == "subscription_offer"
        reply = await socket.request(
            {
                "type": "subscription_answer",
                "sdp": "garbage",
                "subscription_id": offer["subscription_id"],
            }
        )
        assert reply["code"] == "bad_sdp"
        # the publication and the publisher's media are untouched
        room = server.room("h264room")
        assert publication_id in room.publications
        uptrack = room.publications[publication_id].uptracks["video"]
        before = uptrack.packets_received
        await asyncio.sleep(0.5)
        assert uptrack.packets_received > before
        assert await socket.alive()
    finally:
        await socket.close()
        await publisher.close()


async def test_dropped_connection_cleans_up_the_peer(server):
    publisher = SignalingClient(server.base_url, server.token("main", "main"))
    await publisher.connect()
    watcher = await joined_raw(server, "watcher")
    try:
        publication_id = await publisher.publish([PictureTrack(face_picture())])
        room = server.room("h264room")
        assert publication_id in room.publications
        await publisher._ws.close()  # the TV loses its network
        seen = set()
        while not {"publication_removed", "peer_left"} <= seen:
            seen.add((await watcher.recv())["type"])
        assert publication_id not in room.publications
        assert [p.participant_id for p in room.peers.values()] == ["watcher"]
    finally:
        await watcher.close()
        await publisher.close()


async def test_idle_connection_is_closed(server):
    server.app[SIGNALING_KEY].idle_timeout_s = 0.5
    socket = await joined_raw(server)
    try:
        reply = await socket.recv(timeout=5)
        assert reply["code"] == "idle_timeout"
        msg = await socket.ws.receive(timeout=5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert server.room("h264room").peers == {}
    finally:
        await socket.close()


async def test_unanswered_subscription_offer_is_withdrawn(server):
    import dataclasses

    publisher = SignalingClient(server.base_url, server.token("main", "main"))
    await publisher.connect()
    socket = await joined_raw(server)
    room = server.room("h264room")
    room.settings = dataclasses.replace(room.settings, answer_timeout_s=0.5)
    try:
        publication_id = await publisher.publish([PictureTrack(face_picture())])
        offer = await socket.request({"type": "subscribe", "publication_id": publication_id})
        assert offer["type"] == "subscription_offer"
        while (event := await socket.recv())["type"] != "subscription_ended":
            pass
        assert event == {
            "type": "subscription_ended",
            "subscription_id": offer["subscription_id"],
            "reason": "answer_timeout",
        }
        assert room.publications[publication_id].subscriptions == set()
    finally:
        await socket.close()
        await publisher.close()


async def test_a_socket_that_never_joins_is_closed_though_it_pings(server):
    server.app[SIGNALING_KEY].join_timeout_s = 0.6
    socket = await RawSocket.open(server)
    try:
        started = time.monotonic()
        reply = None
        while time.monotonic() - started < 5:
            await socket.send({"type": "ping"})
            reply = await socket.recv(timeout=5)
            if reply["type"] == "error":
                break
            await asyncio.sleep(0.1)
        assert reply is not None and reply["code"] == "join_timeout", reply
        msg = await socket.ws.receive(timeout=5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    finally:
        await socket.close()


async def test_a_deeply_nested_frame_is_answered_not_a_traceback(raw, caplog):
    reply = await raw.request("[" * 100_000 + "]" * 100_000)
    assert reply["type"] == "error" and reply["code"] == "bad_message"
    assert await raw.alive()
    assert not [r for r in caplog.records if r.exc_info]


@pytest.mark.parametrize("hello", ["[1]", "null", "7", '"hello"', "[" * 3_000 + "]" * 3_000])
async def test_a_lobby_hello_that_is_not_an_object_is_refused_cleanly(server, hello, caplog):
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(server.base_url.replace("http", "ws") + "/ws/terminal")
        await ws.send_str(hello)
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        assert json.loads(msg.data)["code"] in ("invalid_message", "invalid_json")
        await ws.close()
    assert not [r for r in caplog.records if r.exc_info]


async def test_a_peer_holds_a_bounded_number_of_peer_connections(server):
    """One viewer opened 15 publications and 40 subscriptions (server sockets 31 -> 222):
    now 2 publications and 16 subscriptions at most, each refusal a clear error."""
    import dataclasses

    room = server.room("h264room")
    room.settings = dataclasses.replace(room.settings, max_subscriptions=3)
    publisher = SignalingClient(server.base_url, server.token("main", "main"))
    greedy = SignalingClient(server.base_url, server.token("greedy", "viewer"))
    await publisher.connect()
    await greedy.connect()
    try:
        publication_id = await publisher.publish([PictureTrack(face_picture())])
        await greedy.next_event("publication_added")
        for _ in range(3):
            await greedy.request(
                {"type": "subscribe", "publication_id": publication_id, "kinds": ["video"]}
            )
        with pytest.raises(SignalingError) as refused:
            await greedy.request(
                {"type": "subscribe", "publication_id": publication_id, "kinds": ["video"]}
            )
        assert refused.value.code == "too_many_subscriptions"
        await greedy.publish([PictureTrack(face_picture())])
        await greedy.publish([PictureTrack(face_picture())])
        with pytest.raises(SignalingError) as third:
            await greedy.publish([PictureTrack(face_picture())])
        assert third.value.code == "too_many_publications"
        assert len(room.peers) == 2  # nobody was dropped for asking
        assert (await greedy.request({"type": "ping"}))["type"] == "pong"
    finally:
        await greedy.close()
        await publisher.close()


async def test_a_room_and_the_server_hold_a_bounded_number_of_peers_and_connections(server):
    """Per room and per server caps: the next join is `room_full` (a participant joining
    again still gets in), the next peer connection `server_full`; nobody is dropped."""
    import dataclasses

    from sfu.room import ServerLimits

    room = server.room("h264room")
    room.settings = dataclasses.replace(room.settings, max_peers=2)
    room.limits = ServerLimits(max_peer_connections=2)
    main = SignalingClient(server.base_url, server.token("main", "main"))
    viewer = SignalingClient(server.base_url, server.token("v1", "viewer"))
    third = SignalingClient(server.base_url, server.token("v2", "viewer"))
    again = SignalingClient(server.base_url, server.token("v1", "viewer"), take_over=True)
    await main.connect()
    await viewer.connect()
    try:
        with pytest.raises(SignalingError) as full:
            await third.connect()
        assert full.value.code == "room_full"
        await again.connect()  # v1 takes its seat over from another connection: not room_full
        publication_id = await main.publish([PictureTrack(face_picture())])
        await again.subscribe(publication_id, ["video"])
        with pytest.raises(SignalingError) as busy:
            await again.subscribe(publication_id, ["video"])
        assert busy.value.code == "server_full"
        assert len(room.peers) == 2
        assert (await again.request({"type": "ping"}))["type"] == "pong"
    finally:
        for client in (main, viewer, third, again):
            await client.close()


@pytest.mark.parametrize("path", ["/ws", "/ws/terminal"])
async def test_one_address_holds_a_bounded_number_of_sockets(server, path):
    """300 sockets that only pinged were all kept: an address (and everybody together)
    holds a bounded number; the next is refused 429 before the upgrade, and a socket
    closed frees its place."""
    from lighthouse.keys import LOBBY_KEY

    service = server.app[SIGNALING_KEY] if path == "/ws" else server.app[LOBBY_KEY]
    service.caps.per_address = 3
    url = server.base_url.replace("http", "ws") + path
    async with aiohttp.ClientSession() as session:
        held = [await session.ws_connect(url) for _ in range(3)]
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(url)
        assert refused.value.status == 429
        await held.pop().close()
        await asyncio.sleep(0.2)
        held.append(await session.ws_connect(url))  # its place was freed
        for ws in held:
            await ws.close()


async def test_the_python_client_keeps_an_idle_connection_alive(server):
    """A publisher that only publishes says nothing on signaling: the client pings, as the
    browser's does, so the server's idle timeout does not end its publication (it ended
    bench/links.py's main venue after 30 s)."""
    server.app[SIGNALING_KEY].idle_timeout_s = 0.5
    client = SignalingClient(server.base_url, server.token("quiet", "main"), keepalive_s=0.2)
    await client.connect()
    try:
        await asyncio.sleep(1.5)
        assert [p.participant_id for p in server.room("h264room").peers.values()] == ["quiet"]
        pong = await client.request({"type": "ping"})
        assert pong["type"] == "pong"
    finally:
        await client.close()
