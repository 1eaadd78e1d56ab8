"""Firefox ESR (Debian's, over WebDriver BiDi) in meetings with Chromium-less peers: what
broke when a new user tried it. In an H.264 room it has no H.264: it declined the video,
the server refused the whole answer and no audio came either. In a VP8 room it could never
publish: its candidates are all mDNS names. Both now work."""

from __future__ import annotations

import asyncio

import pytest
from aiortc.mediastreams import AudioStreamTrack
from firefox import launched_firefox

from signaling.client import SignalingClient

from media import PictureTrack, face_picture

pytestmark = pytest.mark.browser


async def main_venue(server, room: str) -> tuple[SignalingClient, str]:
    main = SignalingClient(server.base_url, server.token("county-main", "main", room, "县委"))
    await main.connect()
    publication = await main.publish([AudioStreamTrack(), PictureTrack(face_picture())])
    return main, publication


INBOUND = """(async () => {
    const counts = {};
    for (const sub of Object.values(window.lighthouse.subscriptions)) {
        const stats = await sub.pc.getStats();
        stats.forEach((r) => {
            if (r.type !== 'inbound-rtp') return;
            counts[r.kind] = (counts[r.kind] || 0) + r.packetsReceived;
        });
    }
    return counts;
})()"""


async def test_firefox_without_h264_hears_an_h264_meeting_and_says_why_it_sees_nothing(server):
    main, _ = await main_venue(server, "h264room")
    try:
        async with launched_firefox() as firefox:
            token = server.token("village-ff", "viewer", "h264room", "火狐村")
            page = await firefox.page(f"{server.base_url}/join#token={token}")
            try:
                await page.wait_for(f"({INBOUND}).then((c) => (c.audio || 0) > 20)", 25)
                counts = await page.evaluate(INBOUND)
                notice = await page.evaluate("document.getElementById('lh-notice').textContent")
            except Exception:
                print("Firefox console:", *firefox.console, sep="\n  ")
                raise
    finally:
        await main.close()
    assert counts.get("video", 0) == 0, counts  # declined, so never sent
    assert "无法播放本次会议的视频（H264）" in notice, notice


async def test_firefox_publishes_in_a_vp8_room_with_only_mdns_candidates(server):
    main, _ = await main_venue(server, "vp8room")
    watcher = SignalingClient(server.base_url, server.token("county-watch", "viewer", "vp8room"))
    await watcher.connect()
    try:
        async with launched_firefox() as firefox:
            token = server.token("village-ff", "terminal", "vp8room", "火狐村")
            page = await firefox.page(f"{server.base_url}/tv#token={token}")
            try:
                published = await page.wait_for("window.lighthouse.publicationId", 25)
                sdp = await page.evaluate("window.lighthouse._publishPc.localDescription.sdp")
                room = server.room("vp8room")
                uptrack = room.publications[published].uptracks["video"]
                await asyncio.wait_for(uptrack.first_packet.wait(), 15)
                # and a subscriber decodes what Firefox sends
                subscription = await watcher.subscribe(published, ["video"])
                for _ in range(100):
                    if "video" in subscription.tracks:
                        break
                    await asyncio.sleep(0.1)
                frame = await asyncio.wait_for(subscription.tracks["video"].recv(), 15)
                # while Firefox itself receives the main venue
                await page.wait_for(f"({INBOUND}).then((c) => (c.video || 0) > 50)", 20)
                joins = await page.evaluate("window.lighthouse.joinCount")
            except Exception:
                print("Firefox console:", *firefox.console, sep="\n  ")
                raise
    finally:
        await watcher.close()
        await main.close()
    hosts = [line.split()[4] for line in sdp.splitlines() if line.startswith("a=candidate:")]
    assert hosts and all(h.endswith(".local") for h in hosts if ":" not in h), hosts
    assert frame.width > 0
    assert joins == 1  # no session restarts on the way
