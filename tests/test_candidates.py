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
