"""A peer's ICE candidates are screened before the server sends STUN to any of them: at
most 10 per media section, the best of each type kept, none at loopback, link-local,
multicast, broadcast, reserved or unspecified addresses, and no DNS names."""

from __future__ import annotations

import asyncio
import random

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from hypothesis import given
from hypothesis import strategies as st

from sfu.candidates import CandidatePolicy, address_allowed, screen_candidates
from signaling.client import SignalingClient, prefer_codec

from media import PictureTrack, face_picture

POLICY = CandidatePolicy()
BLOCKED = [
    "127.0.0.1",
    "127.8.9.10",
    "::1",
    "169.254.10.20",
    "fe80::1",
    "224.0.0.251",
    "ff02::fb",
    "255.255.255.255",
    "240.0.0.1",
    "0.0.0.0",
    "::",
    "::ffff:127.0.0.1",
    "intranet.example.com",
]


def candidate(n: int, address: str, kind: str = "host", priority: int = 1000) -> str:
    return f"a=candidate:{n} 1 udp {priority} {address} {40000 + n % 20000} typ {kind}"


def sdp_with(sections: list[list[str]]) -> str:
    lines = ["v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0"]
    for number, candidates in enumerate(sections):
        lines += ["m=audio 9 UDP/TLS/RTP/SAVPF 111", f"a=mid:{number}", *candidates]
        lines.append("a=end-of-candidates")
    return "\r\n".join(lines) + "\r\n"


def candidates_of(sdp: str) -> list[list[str]]:
    sections: list[list[str]] = []
    for line in sdp.splitlines():
        if line.startswith("m="):
            sections.append([])
        elif line.startswith("a=candidate:"):
            sections[-1].append(line.split()[4])
    return sections


def test_blocked_addresses_and_dns_names_are_dropped_mdns_names_kept():
    good = ["192.168.1.20", "100.64.3.4", "203.0.113.9", "2001:db8::7", "9f3c-ab.local"]
    offered = [candidate(i, a) for i, a in enumerate(BLOCKED + good)]
    screened = screen_candidates(sdp_with([offered]), POLICY)
    assert candidates_of(screened.sdp) == [good]
    assert sorted(screened.blocked) == sorted(BLOCKED)
    # everything else is kept as it was, in order
    assert screened.sdp.splitlines()[:6] == sdp_with([[]]).splitlines()[:6]
    assert screened.sdp.splitlines()[-1] == "a=end-of-candidates"


def test_loopback_only_where_allowed():
    assert not address_allowed("127.0.0.1", POLICY)
    assert address_allowed("127.0.0.1", CandidatePolicy(allow_loopback=True))
    assert not address_allowed("169.254.1.1", CandidatePolicy(allow_loopback=True))


def test_a_long_list_keeps_ten_per_section_with_the_best_of_each_type_first():
    hosts = [
        candidate(i, f"10.9.{i // 250}.{i % 250 + 1}", priority=2_000_000 + i) for i in range(150)
    ]
    relay = candidate(900, "198.51.100.7", "relay", priority=5)  # lowest of all
    srflx = candidate(901, "198.51.100.8", "srflx", priority=7)
    screened = screen_candidates(sdp_with([[*hosts, relay, srflx], hosts[:3]]), POLICY)
    first, second = candidates_of(screened.sdp)
    assert len(first) == 10 and "198.51.100.7" in first and "198.51.100.8" in first
    # the other eight are the highest-priority hosts
    assert set(first) - {"198.51.100.7", "198.51.100.8"} == {
        f"10.9.{i // 250}.{i % 250 + 1}" for i in range(142, 150)
    }
    assert len(second) == 3 and screened.trimmed == 142


def test_malformed_candidate_lines_are_dropped_not_fatal():
    lines = [
        "a=candidate:1 1 udp",
        "a=candidate:x 1 udp high 10.0.0.1 5 typ host",
        candidate(2, "10.0.0.2"),
    ]
    screened = screen_candidates(sdp_with([lines]), POLICY)
    assert candidates_of(screened.sdp) == [["10.0.0.2"]] and screened.malformed == 2


@given(
    st.lists(
        st.tuples(
            st.ip_addresses(),
            st.sampled_from(["host", "srflx", "relay", "prflx"]),
            st.integers(0, 2**31),
        ),
        max_size=60,
    )
)
def test_whatever_is_offered_at_most_ten_allowed_candidates_remain(offered):
    lines = [candidate(i, str(ip), kind, p) for i, (ip, kind, p) in enumerate(offered)]
    screened = screen_candidates(sdp_with([lines]), POLICY)
    (kept,) = candidates_of(screened.sdp)
    allowed = [str(ip) for ip, _, _ in offered if address_allowed(str(ip), POLICY)]
    assert len(kept) == min(10, len(allowed)) and all(a in allowed for a in kept)
    kinds = {kind for ip, kind, _ in offered if address_allowed(str(ip), POLICY)}
    kept_kinds = {
        line.split()[7] for line in screened.sdp.splitlines() if line.startswith("a=candidate:")
    }
    assert kept_kinds == kinds  # every type offered keeps its best one


async def test_an_offer_of_150_candidates_makes_the_server_check_at_most_10(server):
    """An offer listing 150 candidates made the server send STUN to all 150 within 8 s:
    now it checks the 10 best (the publisher's own among them) and the media flows."""
    client = SignalingClient(server.base_url, server.token("scanner", "main"))
    await client.connect()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.addTransceiver(PictureTrack(face_picture()), direction="sendonly")
        prefer_codec(pc, "h264")
        await pc.setLocalDescription(await pc.createOffer())
        rng = random.Random(7)
        scan = [
            candidate(
                7000 + i,
                f"10.{rng.randrange(256)}.{rng.randrange(256)}.{i % 250 + 1}",
                priority=100 + i,
            )  # below the publisher's own host candidate
            for i in range(150)
        ]
        blocked = [candidate(8000 + i, a) for i, a in enumerate(BLOCKED)]
        lines = pc.localDescription.sdp.splitlines()
        at = next(i for i, line in enumerate(lines) if line.startswith("a=candidate:"))
        offer = "\r\n".join(lines[:at] + scan + blocked + lines[at:]) + "\r\n"
        reply = await client.request({"type": "publish", "sdp": offer})
        await pc.setRemoteDescription(RTCSessionDescription(sdp=reply["sdp"], type="answer"))
        publication = server.room("h264room").publications[reply["publication_id"]]
        connection = publication.pc.getTransceivers()[0].receiver.transport.transport._connection
        checked = {c.host for c in connection.remote_candidates}
        assert len(checked) <= 10, len(checked)
        assert not checked & set(BLOCKED)
        deadline = asyncio.get_running_loop().time() + 10
        while pc.iceConnectionState != "completed" and pc.connectionState != "connected":
            assert asyncio.get_running_loop().time() < deadline, pc.connectionState
            await asyncio.sleep(0.1)
    finally:
        await pc.close()
        await client.close()


def mdns_only(sdp: str) -> str:
    """What Firefox sends (and Chromium on a page without camera permission): every host
    address hidden behind a `<uuid>.local` name, end-of-candidates given."""
    import uuid

    out: list[str] = []
    lines = sdp.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("a=end-of-candidates"):
            continue
        if line.startswith("a=candidate:"):
            bits = line.split()
            bits[4] = f"{uuid.uuid4()}.local"
            line = " ".join(bits)
        out.append(line)
        following = lines[index + 1] if index + 1 < len(lines) else "m="
        if line.startswith("a=candidate:") and not following.startswith("a=candidate:"):
            out.append("a=end-of-candidates")
    return "\r\n".join(out) + "\r\n"


def test_mdns_names_are_set_aside_and_their_end_of_candidates_held_back():
    from sfu.candidates import hold_mdns_candidates

    hidden = sdp_with([[candidate(1, "1f2e3d.local"), candidate(2, "203.0.113.9")], []])
    held = hold_mdns_candidates(hidden)
    assert held.names == 1
    assert candidates_of(held.sdp) == [["203.0.113.9"], []]
    # the section that had a name waits for the peer's checks; the other keeps its end
    assert held.sdp.count("a=end-of-candidates") == 1
    assert held.sdp.index("a=end-of-candidates") > held.sdp.index("a=mid:1")
    plain = sdp_with([[candidate(1, "203.0.113.9")]])
    assert hold_mdns_candidates(plain).sdp == plain


async def _connected(pc: RTCPeerConnection, within_s: float) -> float:
    loop = asyncio.get_running_loop()
    started = loop.time()
    while pc.connectionState != "connected":
        assert pc.connectionState not in ("failed", "closed"), pc.connectionState
        assert loop.time() - started < within_s, pc.connectionState
        await asyncio.sleep(0.05)
    return loop.time() - started


async def test_a_publisher_and_a_subscriber_with_only_mdns_candidates_connect(server):
    """Firefox's publish never connected: its candidates were all `<uuid>.local` names,
    aioice spent a second on each, dropped the component and ICE failed. The server now
    learns such a peer from its checks (peer-reflexive), both when the peer offers (it
    publishes) and when it answers (it subscribes), and the media flows."""
    main = SignalingClient(server.base_url, server.token("firefox-main", "main"))
    viewer = SignalingClient(server.base_url, server.token("firefox-viewer", "viewer"))
    await main.connect()
    await viewer.connect()
    publisher = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    subscriber = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        publisher.addTransceiver(PictureTrack(face_picture()), direction="sendonly")
        prefer_codec(publisher, "h264")
        await publisher.setLocalDescription(await publisher.createOffer())
        offer = mdns_only(publisher.localDescription.sdp)
        assert ".local" in offer and "a=end-of-candidates" in offer
        reply = await main.request({"type": "publish", "sdp": offer})
        await publisher.setRemoteDescription(RTCSessionDescription(sdp=reply["sdp"], type="answer"))
        took = await _connected(publisher, 8)
        uptrack = server.room("h264room").publications[reply["publication_id"]].uptracks["video"]
        await asyncio.wait_for(uptrack.first_packet.wait(), 10)

        received: list = []
        subscriber.on("track", received.append)
        offered = await viewer.request(
            {"type": "subscribe", "publication_id": reply["publication_id"]}
        )
        await subscriber.setRemoteDescription(
            RTCSessionDescription(sdp=offered["sdp"], type="offer")
        )
        await subscriber.setLocalDescription(await subscriber.createAnswer())
        answer = mdns_only(subscriber.localDescription.sdp)
        await viewer.request(
            {
                "type": "subscription_answer",
                "subscription_id": offered["subscription_id"],
                "sdp": answer,
            }
        )
        took_down = await _connected(subscriber, 8)
        frame = await asyncio.wait_for(received[0].recv(), 10)
        assert frame.width > 0
        print(f"connected in {took:.2f} s (publish) and {took_down:.2f} s (subscribe)")
    finally:
        await publisher.close()
        await subscriber.close()
        await main.close()
        await viewer.close()
