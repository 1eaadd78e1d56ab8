"""What the server refuses a peer is in the log with the peer's browser, rate-limited:
Firefox's refused answer and failed publish were silent on the server."""

from __future__ import annotations

import json
import logging

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection

from sfu.refusals import RefusalLog
from signaling.client import prefer_codec

from media import PictureTrack, face_picture

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:153.0) Gecko/20100101 Firefox/153.0"


def test_refusals_are_logged_at_most_ten_a_minute_per_kind_and_the_rest_counted(caplog):
    now = [0.0]
    log = RefusalLog(per_minute=10, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="sfu.refusals"):
        logged = [log.refused("bad_sdp", "tv-1", FIREFOX, "no ICE") for _ in range(13)]
        assert log.refused("ice_failed", "tv-2", "", "publication pub-1")  # its own budget
        now[0] = 61.0
        assert log.refused("bad_sdp", "tv-1", FIREFOX, "no ICE")
    assert logged == [True] * 10 + [False] * 3
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == f"refused bad_sdp for tv-1 ({FIREFOX}): no ICE"
    assert "refused ice_failed for tv-2 (no user agent): publication pub-1" in lines
    assert "3 more bad_sdp refusals in the last minute were not logged" in lines
    assert len(lines) == 10 + 1 + 2


async def test_a_refused_offer_is_logged_with_the_browser_and_the_reason(server, caplog):
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver(PictureTrack(face_picture()), direction="sendonly")
    prefer_codec(pc, "vp8")  # then made VP9: a browser with neither codec the SFU relays
    await pc.setLocalDescription(await pc.createOffer())
    url = server.base_url.replace("http", "ws") + "/ws"
    try:
        async with aiohttp.ClientSession(headers={"User-Agent": FIREFOX}) as session:
            async with session.ws_connect(url) as ws:
                token = server.token("village-firefox", "terminal")
                await ws.send_str(json.dumps({"type": "join", "id": 1, "token": token}))
                assert json.loads((await ws.receive(timeout=10)).data)["type"] == "joined"
                with caplog.at_level(logging.WARNING, logger="sfu.refusals"):
                    sdp = pc.localDescription.sdp.replace("VP8/90000", "VP9/90000")
                    offer = {"type": "publish", "id": 2, "sdp": sdp}
                    await ws.send_str(json.dumps(offer))
                    while True:
                        reply = json.loads((await ws.receive(timeout=10)).data)
                        if reply.get("id") == 2:
                            break
    finally:
        await pc.close()
    assert reply["code"] == "codec_not_supported"
    lines = [r.getMessage() for r in caplog.records if r.name == "sfu.refusals"]
    assert len(lines) == 1
    assert lines[0].startswith(f"refused codec_not_supported for village-firefox ({FIREFOX}): ")
    assert "h264" in lines[0].lower()
