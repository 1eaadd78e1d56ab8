"""Fan-out micro-benchmark: the server's own CPU per packet per subscriber, step by step.

The relay bench (bench/relay.py) measures whole servers against each other; on this
shared machine its windows move by ±20 % from run to run, too much to see one change.
This one takes the forwarding path apart inside one process, with real aiortc
subscribers connected over loopback (DTLS up, SRTP keys set), and times each step as
thread CPU over many packets, the variants alternated in the same run:

1. **Sending one packet**: `ForwardingSender.send_rtp()` (aiortc's path: DTLS transport →
   ICE transport → aioice connection → protocol, one coroutine each) against
   `send_rtp_now()` (SRTP-protect and write to the nominated pair's socket at once).
2. **Fanning one packet out to N subscribers**: `UpTrack.on_rtp()` as the server runs it,
   per packet per subscriber. (Making each DownTrack's `forward` a plain call instead of
   a coroutine was measured this way too: x1.00, no gain, so it was not kept.)

Nothing waits for the network inside a timed block (both paths write to the socket
synchronously), and a block is small enough for the sockets' buffers (it drains between
blocks), so every send is a real system call: the figures are the CPU of the code.
The last line of output is one JSON object.

    python bench/fanout.py            # 10 subscribers, 3 rounds of 80 blocks of 60 packets
    python bench/fanout.py --quick    # the same with 20 blocks (~10 s)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from sfu.tracks import UpTrack
from sfu.webrtc import accept_answer, open_downstream

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)


class StillUpstream:
    """An UpTrack's upstream that never sends anything on its own."""

    def __init__(self) -> None:
        self.sink: Any = None
        self.media_ssrc: int | None = 0x1234

    async def request_keyframe(self) -> bool:
        return False

    async def request_retransmission(self, sequence_numbers: Sequence[int]) -> None:
        return None


def vp8_packet(seq: int, keyframe: bool) -> RtpPacket:
    # payload descriptor S=1 PID=0, then a VP8 frame tag (P bit clear on a keyframe)
    payload = bytes([0x10, 0x00 if keyframe else 0x01]) + bytes(1100)
    return RtpPacket(
        payload_type=96,
        sequence_number=seq & 0xFFFF,
        timestamp=seq * 3600,
        ssrc=0x1234,
        payload=payload,
    )


async def connected_subscribers(uptrack: UpTrack, count: int) -> tuple[list, list]:
    servers, clients = [], []
    for _ in range(count):
        downstream = await open_downstream({"video": uptrack}, video_codec="vp8", ice_servers=[])
        client = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        await client.setRemoteDescription(RTCSessionDescription(downstream.offer_sdp, "offer"))
        await client.setLocalDescription(await client.createAnswer())
        await accept_answer(downstream.pc, client.localDescription.sdp)
        servers.append(downstream)
        clients.append(client)
    deadline = time.monotonic() + 20
    while any(
        d.downtracks["video"].sender.negotiated is None or not d.downtracks["video"].started
        for d in servers
    ):
        if time.monotonic() > deadline:
            raise RuntimeError("subscribers did not connect")
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    return servers, clients


# Packets per subscriber in one timed block: well under what a socket's send buffer holds
# (~200 KB), so every send is a real system call, never a copy into asyncio's own buffer.
BLOCK = 60


async def drain() -> None:
    """Let the subscribers' side read what was sent, so the next block finds empty
    socket buffers."""
    await asyncio.sleep(0.03)


async def per_send(senders: list, data: bytes, blocks: int) -> dict[str, float]:
    """CPU microseconds per packet sent, both ways, alternated block by block."""
    spent = {"send_rtp": 0.0, "send_rtp_now": 0.0}
    sends = blocks * BLOCK * len(senders)
    for _ in range(blocks):
        start = time.thread_time()
        for _ in range(BLOCK):
            for sender in senders:
                await sender.send_rtp(data)
        spent["send_rtp"] += time.thread_time() - start
        await drain()
        start = time.thread_time()
        for _ in range(BLOCK):
            for sender in senders:
                sender.send_rtp_now(data)
        spent["send_rtp_now"] += time.thread_time() - start
        await drain()
    return {key: value / sends * 1e6 for key, value in spent.items()}


async def per_fanout(uptrack: UpTrack, blocks: int, seq: int) -> float:
    """CPU microseconds per packet per subscriber through UpTrack.on_rtp (cache, keyframe
    check, then each DownTrack: rewrite, SRTP, send)."""
    subscribers = len(uptrack.downtracks)
    spent = 0.0
    for _ in range(blocks):
        start = time.thread_time()
        for _ in range(BLOCK):
            await uptrack.on_rtp(vp8_packet(seq, False), VP8)
            seq += 1
        spent += time.thread_time() - start
        await drain()
    return spent / (blocks * BLOCK * subscribers) * 1e6


async def run(subscribers: int, rounds: int, blocks: int) -> dict[str, Any]:
    upstream = StillUpstream()
    uptrack = UpTrack("video", upstream)  # type: ignore[arg-type]
    await uptrack.on_rtp(vp8_packet(0, True), VP8)
    servers, clients = await connected_subscribers(uptrack, subscribers)
    try:
        # every DownTrack starts at a keyframe
        await uptrack.on_rtp(vp8_packet(1, True), VP8)
        senders = [d.downtracks["video"].sender for d in servers]
        data = vp8_packet(2, False).serialize()
        sends, fanouts = [], []
        seq = 10
        for _ in range(rounds):
            sends.append(await per_send(senders, data, blocks))
            fanouts.append(await per_fanout(uptrack, blocks, seq))
            seq += blocks * BLOCK * 2
        forwarded = sum(d.downtracks["video"].packets_forwarded for d in servers)
    finally:
        for downstream in servers:
            await downstream.pc.close()
        for client in clients:
            await client.close()

    def median(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    result = {
        "bench": "fanout",
        "subscribers": subscribers,
        "rounds": rounds,
        "us_per_send_awaited": round(median(sends, "send_rtp"), 2),
        "us_per_send_direct": round(median(sends, "send_rtp_now"), 2),
        "send_speedup": round(median(sends, "send_rtp") / median(sends, "send_rtp_now"), 2),
        "us_per_packet_subscriber": round(statistics.median(fanouts), 2),
        "packets_forwarded": forwarded,
    }
    result["pkts_per_cpu_s"] = round(1e6 / result["us_per_packet_subscriber"])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--subscribers", type=int, default=10)
    args = parser.parse_args(argv)
    blocks = 20 if args.quick else 80
    result = asyncio.run(run(args.subscribers, 3, blocks))
    print(
        f"one packet sent: {result['us_per_send_awaited']} µs through aiortc's coroutines, "
        f"{result['us_per_send_direct']} µs direct (x{result['send_speedup']})",
        file=sys.stderr,
    )
    print(
        f"per packet per subscriber through UpTrack.on_rtp: {result['us_per_packet_subscriber']}"
        f" µs ({result['pkts_per_cpu_s']} per CPU-second)",
        file=sys.stderr,
    )
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
