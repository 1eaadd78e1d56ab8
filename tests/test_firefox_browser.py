"""Firefox ESR (Debian's, over WebDriver BiDi) in meetings: what broke when a new user
tried it. In an H.264 room it has no H.264: it declined the video, the server refused the
whole answer and no audio came either; now it gets the main venue's second encoding in
VP8, and publishes VP8 there itself. In a VP8 room it could never publish: its candidates
are all mDNS names. Both now work, with Chromium in the same meeting."""

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


async def test_firefox_without_h264_hears_a_venue_that_cannot_send_vp8_and_says_why(server):
    """An aiortc main venue that does not answer encoding_wanted (an old client): Firefox
    accepts the video in VP8, is told the venue's video waits for a second encoding, and
    hears the sound meanwhile."""
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
    assert counts.get("video", 0) == 0, counts  # nothing it cannot decode is sent
    assert "本机无法播放该会场的视频格式（H264）" in notice, notice


FRAMES_DECODED = """(async () => {
    let frames = 0;
    for (const sub of Object.values(window.lighthouse.subscriptions)) {
        if (sub.publication.role !== ROLE) continue;
        const stats = await sub.pc.getStats();
        stats.forEach((r) => {
            if (r.type === 'inbound-rtp' && r.kind === 'video') frames += r.framesDecoded || 0;
        });
    }
    return frames;
})()"""


async def test_firefox_and_chromium_see_each_other_in_an_h264_meeting(server, tmp_path):
    """Issue 17's meeting: a Chromium main venue sends H.264, a village PC runs Firefox
    without H.264. The main venue's page sends its camera in VP8 too when the server asks
    (encoding_wanted), and Firefox decodes that; Firefox publishes VP8, which the server
    takes in this H.264 room and the main venue's Chromium decodes as it is."""
    from browser import chromium_args, launched_chromium, write_y4m

    camera = write_y4m(tmp_path / "main.y4m", face_picture())
    async with launched_chromium(chromium_args(camera)) as chromium:
        context = await chromium.new_context()
        main = await context.new_page()
        main_console: list[str] = []
        main.on("console", lambda msg: main_console.append(msg.text))
        token = server.token("county-main", "main", "h264room", "县委主会场")
        await main.goto(f"{server.base_url}/main#token={token}")
        async with launched_firefox() as firefox:
            token = server.token("village-ff", "terminal", "h264room", "火狐村")
            page = await firefox.page(f"{server.base_url}/tv#token={token}")
            try:
                decoded = FRAMES_DECODED.replace("ROLE", "'main'")
                await page.wait_for(f"({decoded}).then((n) => n > 30)", 40)
                await main.wait_for_function(
                    f"{FRAMES_DECODED.replace('ROLE', chr(39) + 'terminal' + chr(39))}"
                    ".then((n) => n > 30)",
                    timeout=40_000,
                )
                room = server.room("h264room")
                by_role = {
                    p.peer.role: (p.video_codec, list(p.encodings))
                    for p in room.publications.values()
                }
                codecs = await main.evaluate("window.lighthouse.encodingCodecs")
                ff_sdp = await page.evaluate("window.lighthouse._publishPc.localDescription.sdp")
            except Exception:
                print("Firefox console:", *firefox.console, sep="\n  ")
                print("main console:", *main_console, sep="\n  ")
                raise
    assert by_role["main"] == ("h264", ["vp8"])
    assert by_role["terminal"] == ("vp8", [])
    assert codecs == ["vp8"]
    assert "H264" not in ff_sdp  # this Firefox really has no H.264


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
