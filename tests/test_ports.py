"""Media on a fixed UDP port range ([server] udp_ports): every media socket of the server
is bound inside it, in one process and on media workers, and a full range is a clear
refusal, not a hang."""

from __future__ import annotations

import asyncio
import socket

import psutil
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from lighthouse.config import ConfigError, load_config
from lighthouse.keys import WORKER_POOL_KEY
from sfu.ports import PortRange
from signaling.client import SignalingClient, SignalingError, prefer_codec

from conftest import ONE_PROCESS, TEST_REDIS_URL, TWO_WORKERS
from media import PictureTrack, face_picture

FIRST, LAST = 42100, 42139


def server_ports(pcs) -> set[int]:
    ports = set()
    for pc in pcs:
        for transceiver in pc.getTransceivers():
            connection = transceiver.sender.transport.transport.iceGatherer._connection
            ports |= {p.local_candidate.port for p in connection._protocols}
    return ports


async def publish_and_watch(server) -> tuple[SignalingClient, SignalingClient]:
    main = SignalingClient(server.base_url, server.token("main", "main"))
    viewer = SignalingClient(server.base_url, server.token("village", "terminal"))
    await main.connect()
    await viewer.connect()
    publication_id = await main.publish([PictureTrack(face_picture())])
    subscription = await viewer.subscribe(publication_id, ["video"])
    for _ in range(200):
        if "video" in subscription.tracks:
            break
        await asyncio.sleep(0.05)
    frame = await asyncio.wait_for(subscription.tracks["video"].recv(), 15)
    assert frame.width > 0
    return main, viewer


@pytest.mark.server_config(udp_ports=f"{FIRST}-{LAST}")
async def test_every_media_socket_of_one_process_is_in_the_range(server):
    main, viewer = await publish_and_watch(server)
    try:
        room = server.room("h264room")
        pcs = [p.pc for p in room.publications.values()]
        pcs += [s._routed.pc for peer in room.peers.values() for s in peer.subscriptions.values()]
        ports = server_ports(pcs)
        assert ports and all(FIRST <= port <= LAST for port in ports), ports
    finally:
        await main.close()
        await viewer.close()


@pytest.mark.server_config(udp_ports=f"{FIRST}-{LAST}", workers=2, redis_url=TEST_REDIS_URL)
async def test_every_media_socket_of_the_workers_is_in_the_range(server):
    main, viewer = await publish_and_watch(server)
    try:
        pool = server.app[WORKER_POOL_KEY]
        outside = []
        media = 0
        for pid in (p.pid for p in pool.processes.values()):
            for conn in psutil.Process(pid).net_connections(kind="udp"):
                host, port = conn.laddr[:2]
                if host.startswith("127.") or host == "::1":
                    continue  # the pipe between workers and the control socket: loopback
                media += 1
                if not FIRST <= port <= LAST:
                    outside.append((pid, host, port))
        assert media and not outside, outside
    finally:
        await main.close()
        await viewer.close()


@pytest.mark.server_config(udp_ports="42200-42201")
async def test_a_full_range_is_refused_as_server_full(server):
    taken = []
    for port in (42200, 42201):  # someone else holds the whole range
        holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        holder.bind(("0.0.0.0", port))
        taken.append(holder)
    main = SignalingClient(server.base_url, server.token("main", "main"))
    await main.connect()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.addTransceiver(PictureTrack(face_picture()), direction="sendonly")
        prefer_codec(pc, "h264")
        await pc.setLocalDescription(await pc.createOffer())
        with pytest.raises(SignalingError) as refused:
            await main.request({"type": "publish", "sdp": pc.localDescription.sdp})
        assert refused.value.code == "server_full" and "42200-42201" in str(refused.value)
        assert (await main.request({"type": "ping"}))["type"] == "pong"  # still serving
    finally:
        await pc.close()
        await main.close()
        for holder in taken:
            holder.close()


def test_a_port_range_is_read_and_checked():
    assert PortRange.parse("40000-40999") == PortRange(40000, 40999)
    assert len(PortRange(40000, 40999)) == 1000
    for bad in ("40000", "40999-40000", "80-90", "a-b", "40000-70000"):
        with pytest.raises(ValueError):
            PortRange.parse(bad)


def candidates_of(sdp: str) -> list[tuple[str, int]]:
    return [
        (line.split()[4], int(line.split()[5]))
        for line in sdp.splitlines()
        if line.startswith("a=candidate:")
    ]


# The address a container's published ports are reached at: here loopback, which no
# interface of this machine's own gathering would give (aioice skips loopback), so a
# candidate naming it can only be the announced one, and media that flows came to it.
@pytest.mark.server_config(udp_ports=f"{FIRST}-{LAST}", announced_address="127.0.0.1")
@pytest.mark.parametrize("server", [ONE_PROCESS, TWO_WORKERS], indirect=True)
async def test_media_is_reached_at_the_announced_address_and_no_other(server):
    main, viewer = await publish_and_watch(server)  # a frame went through
    try:
        sdps = [pc.remoteDescription.sdp for pc in main.publish_pcs]
        sdps += [s.pc.remoteDescription.sdp for s in viewer.subscriptions.values()]
        found = [c for sdp in sdps for c in candidates_of(sdp)]
    finally:
        await main.close()
        await viewer.close()
    assert len(found) >= 2
    assert all(host == "127.0.0.1" and FIRST <= port <= LAST for host, port in found), found


def test_an_announced_address_is_one_ipv4_address_with_a_port_range():
    for settings, complaint in (
        ({"announced_address": "203.0.113.5"}, "needs udp_ports"),
        ({"announced_address": "lighthouse.example", "udp_ports": "40000-40099"}, "not an IP"),
        ({"announced_address": "2001:db8::1", "udp_ports": "40000-40099"}, "IPv4"),
        ({"announced_address": "0.0.0.0", "udp_ports": "40000-40099"}, "IPv4"),
    ):
        with pytest.raises(ConfigError, match=complaint):
            load_config(env={}, secret="s" * 40, **settings)
    config = load_config(
        env={"LIGHTHOUSE_ANNOUNCED_ADDRESS": "203.0.113.5", "LIGHTHOUSE_UDP_PORTS": "40000-40099"},
        secret="s" * 40,
    )
    assert config.announced_address == "203.0.113.5"
