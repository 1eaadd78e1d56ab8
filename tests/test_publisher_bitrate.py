"""What the server tells a publisher about its bitrate (REMB)."""

from __future__ import annotations

import asyncio

from aiortc import AudioStreamTrack
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, unpack_remb_fci

from signaling.client import SignalingClient

from media import PictureTrack, face_picture


async def test_a_still_picture_is_never_told_to_go_below_the_floor(server):
    """aiortc's receive-side estimate follows the incoming rate: a still picture keeps it
    near 80-100 kbit/s, and a publisher held there drops frames for seconds after every
    keyframe a new subscriber asks for (a TV moved off a dead worker waited 4-5 s for its
    picture). The REMB it is sent never goes below the 300 kbit/s floor."""
    publisher = SignalingClient(server.base_url, server.token("main", "main"))
    await publisher.connect()
    try:
        await publisher.publish([AudioStreamTrack(), PictureTrack(face_picture(), fps=5)])
        (pc,) = publisher.publish_pcs
        sender = next(s for s in pc.getSenders() if s.track is not None and s.kind == "video")
        told: list[int] = []
        handle = sender._handle_rtcp_packet

        async def observed(packet) -> None:
            if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
                told.append(unpack_remb_fci(packet.fci)[0])
            await handle(packet)

        sender._handle_rtcp_packet = observed
        await asyncio.sleep(6)
        assert len(told) >= 3, "the server sent the publisher no REMB"
        assert min(told) >= 300_000, f"told to send {min(told)} bit/s"
    finally:
        await publisher.close()
