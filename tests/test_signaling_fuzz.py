"""10,000 generated malformed signaling frames over several sockets, joined and not: every
frame is answered (an error, or the reply a valid request gets) or the socket is closed
cleanly; afterwards the server is alive, /healthz fast, nothing logged a traceback, and
nothing was left behind (peers, sockets, publications)."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from test_signaling_errors import ROOM_EVENTS as SIGNALING_ROOM_EVENTS

from lighthouse.keys import SIGNALING_KEY

TYPES = [
    "join",
    "publish",
    "unpublish",
    "subscribe",
    "subscription_answer",
    "unsubscribe",
    "control",
    "raise_hand",
    "ping",
    "leave",
]
ROOM_EVENTS = SIGNALING_ROOM_EVENTS | {"meeting_state", "hand_raised"}
SDP_LINES = [
    "v=0",
    "o=- 1 1 IN IP4 0.0.0.0",
    "s=-",
    "t=0 0",
    "a=group:BUNDLE 0",
    "m=video 9 UDP/TLS/RTP/SAVPF 96",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111",
    "a=rtpmap:96 H264/90000",
    "a=ice-ufrag:abcd",
    "a=ice-pwd:" + "p" * 24,
    "a=fingerprint:sha-256 " + ":".join(["AB"] * 32),
    "a=setup:actpass",
    "a=sendonly",
    "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host",
    "a=candidate:2 1 udp 1 evil.example.com 53 typ relay",
    "a=candidate:garbage",
    "c=IN IP4 0.0.0.0",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
sdps = (
    st.lists(st.sampled_from(SDP_LINES), max_size=20).map("\r\n".join)
    | st.text(max_size=200)
    | json_values
)
refs = (
    st.sampled_from(["floor", "pub-00000000", "sub-00000000", ""])
    | st.text(max_size=70)
    | json_values
)
messages = st.fixed_dictionaries(
    {"type": st.sampled_from(TYPES) | st.text(max_size=12) | json_values},
    optional={
        "id": st.integers() | st.text(max_size=80) | json_values,
        "token": st.text(max_size=100) | json_values,
        "sdp": sdps,
        "publication_id": refs,
        "subscription_id": refs,
        "kinds": st.lists(st.sampled_from(["audio", "video", "data", ""]), max_size=4)
        | json_values,
        "source": st.sampled_from(["camera", "content", "screen"]) | json_values,
        "action": st.sampled_from(["mute_all", "give_floor", "roll_call", "explode"]) | json_values,
        "peer_id": refs,
        "raised": json_values,
        "extra": json_values,
    },
)
# schema-valid messages of each type, with references and SDP often wrong: these pass the
# schema and reach the handlers behind it (the joined-only ones, the SDP parser)
_ids = st.integers(0, 99) | st.text(min_size=1, max_size=8)
_pub_refs = st.sampled_from(["floor", "pub-00000000", "x"])
_sub_refs = st.sampled_from(["sub-00000000", "x"])
_valid_sdps = st.lists(st.sampled_from(SDP_LINES), min_size=1, max_size=20).map("\r\n".join)


def _typed(type_name: str, **required: st.SearchStrategy) -> st.SearchStrategy:
    return st.fixed_dictionaries({"type": st.just(type_name), **required}, optional={"id": _ids})


known = st.one_of(
    _typed("join", token=st.text(min_size=1, max_size=60)),
    _typed("publish", sdp=_valid_sdps),
    _typed("publish", sdp=_valid_sdps, source=st.sampled_from(["camera", "content"])),
    _typed("unpublish", publication_id=_pub_refs),
    _typed("subscribe", publication_id=_pub_refs),
    _typed(
        "subscribe",
        publication_id=_pub_refs,
        kinds=st.sampled_from([["audio"], ["video"], ["audio", "video"]]),
    ),
    _typed("subscription_answer", subscription_id=_sub_refs, sdp=_valid_sdps),
    _typed("unsubscribe", subscription_id=_sub_refs),
    _typed(
        "control",
        action=st.sampled_from(["mute_all", "unmute_all", "take_floor"]),
    ),
    _typed(
        "control",
        action=st.sampled_from(["give_floor", "mute", "lower_hand", "roll_call"]),
        peer_id=st.sampled_from(["p-00000000", "x"]),
    ),
    _typed("raise_hand", raised=st.booleans()),
    _typed("ping"),
)
frames = st.one_of(
    known.map(json.dumps),
    known.map(json.dumps),
    known.map(json.dumps),
    messages.map(json.dumps),  # well-formed JSON, wrong in every other way
    messages.map(lambda m: json.dumps(m)[: len(json.dumps(m)) // 2]),  # cut off
    st.text(max_size=200),  # not JSON
    st.binary(max_size=300),  # a binary frame
    st.integers(1, 50_000).map(lambda n: "[" * n + "]" * n),  # nested deep
    st.integers(1, 3).map(
        lambda n: json.dumps({"type": "publish", "sdp": "v=0" + "x" * 100_000 * n})
    ),
    json_values.map(json.dumps),  # JSON, but not an object
)


def generated_frames(count: int) -> list[str | bytes]:
    """Draw `count` frames from the strategy (hypothesis as the generator, seeded)."""
    drawn: list[str | bytes] = []

    @settings(
        max_examples=count,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        deadline=None,
    )
    @given(frames)
    def draw(frame: str | bytes) -> None:
        drawn.append(frame)

    draw()
    return drawn


class FuzzSocket:
    def __init__(self, server, session: aiohttp.ClientSession, number: int) -> None:
        self.server = server
        self.session = session
        self.number = number
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.closes = 0

    async def open(self) -> None:
        self.ws = await self.session.ws_connect(self.server.base_url.replace("http", "ws") + "/ws")
        if self.number % 2:  # half of them joined, so that joined-only paths are reached
            token = self.server.token(f"fuzz-{self.number}", "viewer")
            await self.ws.send_str(json.dumps({"type": "join", "id": "j", "token": token}))
            assert (await self.answer())["type"] == "joined"

    async def answer(self) -> dict | None:
        """The next reply that is not a room event; None if the socket closed cleanly."""
        assert self.ws is not None
        while True:
            msg = await self.ws.receive(timeout=10)
            if msg.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.CLOSING,
            ):
                # a clean close: a policy refusal or a frame too big, never a server error
                assert self.ws.close_code in (1000, 1008, 1009), self.ws.close_code
                return None
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            reply = json.loads(msg.data)
            if reply.get("type") not in ROOM_EVENTS:
                return reply

    async def send(self, frame: str | bytes) -> dict | None:
        assert self.ws is not None
        if isinstance(frame, bytes):
            await self.ws.send_bytes(frame)
        else:
            await self.ws.send_str(frame)
        reply = await self.answer()
        if reply is None:
            self.closes += 1
            await self.open()
        return reply


async def test_ten_thousand_malformed_frames_are_each_answered_and_harm_nobody(server, caplog):
    import psutil

    corpus = generated_frames(10_000)
    assert len(corpus) == 10_000
    room = server.room("h264room")
    signaling = server.app[SIGNALING_KEY]
    process = psutil.Process()
    replies: dict[str, int] = {}
    async with aiohttp.ClientSession() as session:
        sockets = [FuzzSocket(server, session, n) for n in range(8)]
        for socket in sockets:
            await socket.open()

        async def run(socket: FuzzSocket, share: list[str | bytes]) -> None:
            for frame in share:
                reply = await socket.send(frame)
                kind = "closed" if reply is None else reply.get("code") or reply["type"]
                replies[kind] = replies.get(kind, 0) + 1

        half = len(corpus) // 2
        await asyncio.gather(*(run(s, corpus[n:half:8]) for n, s in enumerate(sockets)))
        rss_before = process.memory_info().rss  # the second half must not grow it
        await asyncio.gather(*(run(s, corpus[half + n :: 8]) for n, s in enumerate(sockets)))
        rss_after = process.memory_info().rss
        started = time.perf_counter()
        async with session.get(server.base_url + "/healthz") as response:
            assert response.status == 200
        healthz_s = time.perf_counter() - started
        for socket in sockets:
            assert socket.ws is not None
            await socket.ws.close()
    print(f"replies: {dict(sorted(replies.items(), key=lambda kv: -kv[1]))}")
    growth_mib = (rss_after - rss_before) / 2**20
    print(f"rss growth over the second half: {growth_mib:.1f} MiB, /healthz {healthz_s:.4f} s")
    assert sum(replies.values()) == 10_000
    # the frames reached every layer: parsing, the schema, and the joined-only handlers
    reached = {"invalid_json", "invalid_message", "unknown_type", "not_joined", "bad_sdp"}
    reached |= {"unknown_publication", "unknown_subscription", "pong"}
    assert all(replies.get(code, 0) >= 100 for code in reached), reached - set(replies)
    assert rss_after - rss_before < 64 * 2**20
    assert healthz_s < 1.0  # generous: a stuck loop takes seconds, a busy one milliseconds
    await asyncio.sleep(0.5)
    assert not room.peers and not room.hidden_peers and not room.publications
    assert signaling.caps._count == 0
    assert not [r for r in caplog.records if r.exc_info], [
        r.getMessage() for r in caplog.records if r.exc_info
    ][:3]
