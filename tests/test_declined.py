"""A subscriber that cannot decode the room's video declines it (as Firefox without
H.264 does: `m=video 0`): the subscription goes on with audio, and the reply says what
was declined. The whole answer used to be refused (bad_sdp), audio with it."""

from __future__ import annotations

import asyncio

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack

from sfu.negotiation import NegotiationError, parse_sdp
from signaling.client import SignalingClient

from media import PictureTrack, face_picture


def decline(sdp: str, kind: str) -> str:
    """Firefox's answer to a section it cannot take: port 0, no transport, out of BUNDLE."""
    sections: list[list[str]] = [[]]
    for line in sdp.splitlines():
        if line.startswith("m="):
            sections.append([])
        sections[-1].append(line)
    declined_mid = None
    out_sections = []
    for section in sections[1:]:
        if section[0].startswith(f"m={kind} "):
            declined_mid = next(x for x in section if x.startswith("a=mid:")).split(":")[1]
            first_pt = section[0].split()[3]
            section = [
                f"m={kind} 0 UDP/TLS/RTP/SAVPF {first_pt}",
                "c=IN IP4 0.0.0.0",
                "a=inactive",
                f"a=mid:{declined_mid}",
            ]
        out_sections.append(section)
    head = [
        " ".join(x for x in line.split() if x != declined_mid)
        if line.startswith("a=group:BUNDLE")
        else line
        for line in sections[0]
    ]
    return "\r\n".join(head + [x for s in out_sections for x in s]) + "\r\n"


async def test_a_subscriber_that_declines_video_still_gets_the_audio(server):
    main = SignalingClient(server.base_url, server.token("county-main", "main"))
    viewer = SignalingClient(server.base_url, server.token("firefox-tv", "terminal"))
    await main.connect()
    await viewer.connect()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        publication_id = await main.publish([AudioStreamTrack(), PictureTrack(face_picture())])
        tracks: list = []
        pc.on("track", tracks.append)
        offer = await viewer.request({"type": "subscribe", "publication_id": publication_id})
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        answer = decline(pc.localDescription.sdp, "video")
        assert "m=video 0 " in answer
        reply = await viewer.request(
            {
                "type": "subscription_answer",
                "subscription_id": offer["subscription_id"],
                "sdp": answer,
            }
        )
        assert reply["type"] == "subscribed", reply
        assert reply["declined"] == ["video"] and reply["video_codec"] == "h264"
        audio = next(t for t in tracks if t.kind == "audio")
        frame = await asyncio.wait_for(audio.recv(), 10)
        assert frame.sample_rate == 48000
        subscription = server.room("h264room").peers
        downtracks = next(
            s.downtracks
            for p in subscription.values()
            for s in p.subscriptions.values()
            if p.participant_id == "firefox-tv"
        )
        assert downtracks["audio"].packets_forwarded > 0
        assert downtracks["video"].packets_forwarded == 0  # nothing sent on what it declined
    finally:
        await pc.close()
        await main.close()
        await viewer.close()


def test_an_answer_declining_everything_is_refused_clearly():
    sdp = "\r\n".join(
        [
            "v=0",
            "o=- 1 1 IN IP4 0.0.0.0",
            "s=-",
            "t=0 0",
            "m=audio 0 UDP/TLS/RTP/SAVPF 111",
            "a=mid:0",
            "m=video 0 UDP/TLS/RTP/SAVPF 96",
            "a=mid:1",
        ]
    )
    try:
        parse_sdp(sdp + "\r\n", "answer")
    except NegotiationError as error:
        assert error.code == "codec_not_supported" and "declines every" in str(error)
    else:
        raise AssertionError("an answer declining everything was accepted")
