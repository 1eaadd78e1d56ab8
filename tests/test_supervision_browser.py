"""Supervision in real Chromium: a hidden drop-in that the participants' own page never
learns of (not in its frames, lists or counts) while the supervisor sees the village; and a
2x2 patrol wall that rotates through 6 live meetings with the server forwarding only what
the tiles on screen show (video only, sound for an enlarged tile)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from urllib.parse import urlsplit

import numpy as np
import pytest
from aiortc import AudioStreamTrack

from lighthouse.config import RoomConfig
from lighthouse.keys import DATABASE_KEY
from signaling.client import SignalingClient

from apiclient import seed_small_county
from browser import GRAB_VIDEO_JS, launched_chromium, signed_in_page
from media import PictureTrack, face_picture, similarity

pytestmark = pytest.mark.browser

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]
PATROL_ROOMS = tuple(
    RoomConfig(f"a-{n}", f"A镇第{n}村会议", "vp8", org_code="TA") for n in range(1, 7)
)


@pytest.fixture
async def chromium():
    async with launched_chromium(ARGS) as browser:
        yield browser


async def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


@pytest.mark.server_config(rooms=(RoomConfig("a1-meeting", "A1村党员大会", "vp8", org_code="VA1"),))
async def test_a_hidden_supervisor_is_invisible_to_the_participants_page(server, chromium):
    await seed_small_county(server.app[DATABASE_KEY])
    picture = face_picture()
    village = SignalingClient(
        server.base_url, server.token("terminal:1", room="a1-meeting", name="前进村")
    )
    await village.connect()
    await village.publish([AudioStreamTrack(), PictureTrack(picture)])
    # a second venue: supervision looks into every village room, not the main venue only
    other = SignalingClient(
        server.base_url, server.token("terminal:2", room="a1-meeting", name="红星村")
    )
    await other.connect()
    green = np.zeros((180, 320, 3), np.uint8)
    green[:] = (30, 200, 40)
    await other.publish([AudioStreamTrack(), PictureTrack(green, fps=10)])
    room = server.room("a1-meeting")
    contexts = []
    try:
        # a member's phone page in the meeting, every signaling frame it receives kept
        member_context = await chromium.new_context()
        contexts.append(member_context)
        member = await member_context.new_page()
        frames: list[str] = []
        member.on("websocket", lambda ws: ws.on("framereceived", lambda f: frames.append(f)))
        token = server.token("phone-7", "viewer", "a1-meeting", name="党员李四")
        await member.goto(f"{server.base_url}/join#token={token}")
        await member.wait_for_function(
            "() => window.lighthouse && window.lighthouse.state === 'joined'", timeout=15_000
        )
        peers_before = await member.evaluate("Object.keys(window.lighthouse.peers).length")

        # the supervisor drops in from the console
        context, page = await signed_in_page(
            chromium, server.base_url, "/console/supervision", "town_a_supervisor"
        )
        contexts.append(context)
        await page.wait_for_function("() => window.lighthouseConsole.ready", timeout=15_000)
        rows = await page.eval_on_selector_all(
            "#sup-live tbody tr", "rows => rows.map(r => Array.from(r.cells, c => c.textContent))"
        )
        assert rows and rows[0][0] == "A1村" and rows[0][4] == "3", rows
        await page.click("#sup-live tbody tr a")
        await page.wait_for_url(
            lambda url: urlsplit(url).path == "/console/supervision/watch/a1-meeting"
        )
        await page.wait_for_function(
            "() => { const v = document.querySelector('#watch-stage video');"
            " return v && v.videoWidth > 0 && v.currentTime > 0.5; }",
            timeout=20_000,
        )
        # every venue's camera in a grid (the member's phone sends one too), labelled; one
        # large and heard, chosen by a click
        await page.wait_for_function(
            "() => document.querySelectorAll('#watch-stage .con-watch-tile video').length === 3"
            " && Array.from(document.querySelectorAll('#watch-stage video'))"
            ".every((v) => v.videoWidth > 0)",
            timeout=20_000,
        )
        labels = await page.eval_on_selector_all(
            "#watch-stage .con-watch-label", "ls => ls.map((l) => l.textContent)"
        )
        assert sorted(labels) == sorted(["前进村", "红星村", "党员李四"]), labels
        large = ".con-watch-tile.is-large"
        assert await page.eval_on_selector_all(large, "ts => ts.length") == 1
        qianjin = ".con-watch-tile:has(.con-watch-label:text-is('前进村'))"
        hongxing = ".con-watch-tile:has(.con-watch-label:text-is('红星村'))"
        await page.click(hongxing)
        await page.wait_for_selector(f"{hongxing}.is-large")
        assert await page.eval_on_selector(f"{hongxing} video", "v => v.muted") is False
        assert await page.eval_on_selector(f"{qianjin} video", "v => v.muted") is True
        await page.click(qianjin)
        await page.wait_for_selector(f"{qianjin}.is-large")
        chosen = await page.get_attribute(qianjin, "data-publication-id")
        grabbed = await page.evaluate(
            GRAB_VIDEO_JS, f".con-watch-tile[data-publication-id='{chosen}'] video"
        )
        pixels = np.array(grabbed["pixels"], dtype=np.uint8).reshape(90, 160, 4)[..., :3]
        assert similarity(picture, pixels) > 0.9
        assert len(room.hidden_peers) == 1 and len(room.peers) == 3
        await asyncio.sleep(1.0)

        # the member's page never heard of the supervisor: frames, peer list, count
        assert await member.evaluate("Object.keys(window.lighthouse.peers).length") == peers_before
        everything = "\n".join(f if isinstance(f, str) else f.decode() for f in frames)
        assert "town_a_supervisor" not in everything and '"supervisor"' not in everything
        assert all(json.loads(f).get("type") != "peer_joined" for f in frames if isinstance(f, str))

        await page.click("#watch-leave")
        await page.wait_for_url(lambda url: urlsplit(url).path == "/console/supervision")

        async def view_closed() -> bool:
            return not room.hidden_peers

        await wait_for(view_closed, 10, "the hidden viewer to leave")
        # the trail, as county staff read it: one drop-in with its duration
        context, log = await signed_in_page(
            chromium, server.base_url, "/console/supervision/log", "county_admin"
        )
        contexts.append(context)
        await log.wait_for_function("() => window.lighthouseConsole.ready", timeout=15_000)
        cells = await log.eval_on_selector_all(
            "#log-views tbody tr", "rows => rows.map(r => Array.from(r.cells, c => c.textContent))"
        )
        assert len(cells) == 1, cells
        supervisor, meeting, how, _, ended, duration = cells[0]
        assert (supervisor, meeting, how) == ("town_a_supervisor", "A1村党员大会", "单点督查")
        assert ended != "仍在观看" and duration.startswith("00:")
        problems = [m for p in (page, log) for m in p.messages if "pageerror" in m]
        assert problems == []
    finally:
        for context in contexts:
            with contextlib.suppress(Exception):
                await context.close()
        await asyncio.wait_for(village.close(), 10)
        await asyncio.wait_for(other.close(), 10)


def hidden_downtracks(server) -> dict[str, list[str]]:
    """What the server forwards to hidden viewers now: room id -> kinds."""
    forwarded: dict[str, list[str]] = {}
    for config in PATROL_ROOMS:
        for peer in server.room(config.id).hidden_peers.values():
            for subscription in peer.subscriptions.values():
                forwarded.setdefault(config.id, []).extend(sorted(subscription.downtracks))
    return forwarded


@pytest.mark.server_config(rooms=PATROL_ROOMS)
async def test_the_patrol_wall_rotates_through_every_live_meeting(server, chromium):
    await seed_small_county(server.app[DATABASE_KEY])
    venues = []
    contexts = []
    try:
        for n, config in enumerate(PATROL_ROOMS):
            shade = np.zeros((90, 160, 3), np.uint8)
            shade[:] = (40 * n, 200 - 30 * n, 120)
            client = SignalingClient(
                server.base_url, server.token(f"tv-{n}", room=config.id, name=f"第{n}村")
            )
            await client.connect()
            await client.publish([AudioStreamTrack(), PictureTrack(shade, fps=10)])
            venues.append(client)
        # a venue in the first meeting with no camera: its tile says so
        silent = SignalingClient(
            server.base_url, server.token("tv-silent", room=PATROL_ROOMS[0].id, name="无画面村")
        )
        await silent.connect()
        venues.append(silent)
        context, page = await signed_in_page(
            chromium,
            server.base_url,
            "/console/supervision/patrol?grid=2&interval=3",
            "town_a_supervisor",
        )
        contexts.append(context)
        await page.wait_for_function(
            "() => window.lighthousePatrol && window.lighthousePatrol.ready", timeout=20_000
        )
        assert await page.evaluate("window.lighthousePatrol.pages") == 2
        seen: set[str] = set()
        labelled: set[str] = set()
        explained = False
        deadline = time.monotonic() + 25
        samples = 0
        # until every meeting was on the wall and every village's tile showed its camera
        while time.monotonic() < deadline and (len(seen) < 6 or len(labelled) < 6 or samples <= 5):
            shown = await page.evaluate("window.lighthousePatrol.shown")
            assert 1 <= len(shown) <= 4
            forwarded = hidden_downtracks(server)
            # only what is on screen, and only its video
            assert sum(len(kinds) for kinds in forwarded.values()) <= 4, forwarded
            assert all(kinds == ["video"] for kinds in forwarded.values()), forwarded
            samples += 1
            history = await page.evaluate("window.lighthousePatrol.history")
            seen = {room for group in history for room in group}
            for caption, live, text in await page.eval_on_selector_all(
                ".con-patrol-tile",
                "ts => ts.map((t) => [t.querySelector('.con-patrol-caption').textContent,"
                " t.classList.contains('con-patrol-live'), t.innerText])",
            ):
                if caption.startswith("无画面村"):
                    explained = "未开启摄像头" in text
                elif live:
                    labelled.add(caption.split(" · ")[0])
            await asyncio.sleep(0.5)
        assert seen == {c.id for c in PATROL_ROOMS}, seen
        assert samples > 5
        # the tiles are the village rooms, labelled with the village's name
        assert labelled == {f"第{n}村" for n in range(len(PATROL_ROOMS))}, labelled
        assert explained

        # Enter enlarges the focused tile with its sound; Esc goes back to video only
        await page.focus(".con-patrol-tile[data-slot='0']")
        await page.keyboard.press("Enter")

        async def sound_on() -> bool:
            return any("audio" in kinds for kinds in hidden_downtracks(server).values())

        await wait_for(sound_on, 10, "the enlarged tile's sound")
        assert await page.evaluate("window.lighthousePatrol.enlarged") == 0
        await page.keyboard.press("Escape")

        async def sound_off() -> bool:
            return not await sound_on()

        await wait_for(sound_off, 10, "the sound to stop")
        assert [m for m in page.messages if "pageerror" in m] == []
    finally:
        for context in contexts:
            with contextlib.suppress(Exception):
                await context.close()
        for client in venues:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 10)
