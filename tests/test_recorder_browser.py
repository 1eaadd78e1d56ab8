"""Real browsers: Chromium publishes into an H.264 room and a VP8 room at once, the server
records both (the composition root's recording service), the index holds every file, the
files hold the right picture and sound for the right time, and the console's player plays
them in Chromium."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from db.models import Recording, RecordingStatus
from lighthouse.keys import DATABASE_KEY, RECORDING_SERVICE_KEY
from recorder.probe import probe_segment

from apiclient import PASSWORD, seed_small_county
from browser import GRAB_VIDEO_JS, chromium_args, launched_chromium, write_y4m
from media import face_picture, similarity
from recorder_support import decode_all

pytestmark = pytest.mark.browser

RECORD_S = 10.0
ROOMS = {"h264room": ("mp4", "h264"), "vp8room": ("webm", "vp8")}


@pytest.fixture
async def chromium(tmp_path: Path):
    picture = face_picture()
    camera = write_y4m(tmp_path / "face.y4m", picture)
    async with launched_chromium(chromium_args(camera)) as browser:
        yield browser, picture


async def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


@pytest.mark.server_config(recording_enabled=True, recording_segment_s=4.0)
async def test_browser_publishers_are_recorded_in_both_codecs(server, chromium, tmp_path):
    browser, picture = chromium
    database = server.app[DATABASE_KEY]
    await seed_small_county(database)  # the rooms have no organiser: the county's, then
    service = server.app[RECORDING_SERVICE_KEY]
    root = service.root
    contexts = []
    pages = []
    for room in ROOMS:
        context = await browser.new_context()
        page = await context.new_page()
        page.console_messages = []
        page.on("console", lambda msg, p=page: p.console_messages.append(msg.text))
        token = server.token(f"main-{room}", "main", room, name=f"主会场 {room}")
        await page.goto(f"{server.base_url}/main#token={token}")
        contexts.append(context)
        pages.append(page)
    try:

        def video_flowing() -> bool:
            recordings = list(service.recorder.recordings.values())
            return len(recordings) == 2 and all(
                r.stats()["frames"].get("video", 0) > 0 for r in recordings
            )

        await wait_until(video_flowing, 20, "video from both browsers")
        live = {r.room_id: r for r in service.recorder.recordings.values()}
        await asyncio.sleep(RECORD_S)
        for context in contexts:
            await context.close()
        await wait_until(lambda: not service.recorder.recordings, 15, "both recordings to end")
        deadline = time.monotonic() + 15
        while True:  # the last files are indexed once closed
            async with database.session() as session:
                rows = (await session.execute(select(Recording))).scalars().all()
            if len(rows) == 2 and all(r.status == RecordingStatus.DONE for r in rows):
                break
            assert time.monotonic() < deadline, [(r.room_id, r.status) for r in rows]
            await asyncio.sleep(0.2)
    except Exception:
        for page in pages:
            print(page.url, *page.console_messages, sep="\n  ")
        raise

    indexed = {r.room_id: r for r in rows}
    for room, (container, codec) in ROOMS.items():
        recording = indexed[room]
        real_s = live[room].last_arrival - live[room].epoch
        assert real_s > RECORD_S
        assert recording.container == container and sorted(recording.kinds) == ["audio", "video"]
        assert recording.org_path == "/1/"  # no organiser, no terminal: the county's
        mine = recording.segments
        assert [s.seq for s in mine] == list(range(len(mine))) and len(mine) >= 2
        total = sum(s.duration_s for s in mine)
        assert abs(total - real_s) < 0.5, (room, total, real_s)
        samples = 0
        for segment in mine:
            path = root / segment.path
            assert path.suffix == f".{container}" and path.stat().st_size == segment.bytes
            probed = probe_segment(path)
            assert probed.streams["video"].codec == codec and set(probed.streams) == {
                "video",
                "audio",
            }
            assert all(s.monotonic for s in probed.streams.values()), (room, segment, probed)
            assert abs(probed.duration_s - segment.duration_s) < 0.1
            pictures, segment_samples = decode_all(path)
            samples += segment_samples
            # the picture is the camera's throughout: judged on every 10th frame and the
            # last, by the median (a browser's encoder starts coarse and dips under load)
            sampled = [*pictures[::10], pictures[-1]]
            scores = [similarity(picture, f.to_ndarray(format="rgb24")) for f in sampled]
            assert float(np.median(scores)) > 0.9, (segment.path, scores)
        # the whole time has sound (Chromium's fake microphone beeps)
        assert samples == pytest.approx(48000 * total, rel=0.05)
        assert max(audible_level(root / s.path) for s in mine) > 0.01

        # and the console's player plays it, as the county's staff open it
        grabbed = await play_in_console(browser, server.base_url, recording.id)
        assert grabbed["width"] == 640
        assert grabbed["duration"] == pytest.approx(total, abs=0.5)
        pixels = np.array(grabbed["pixels"], dtype=np.uint8).reshape(90, 160, 4)[..., :3]
        assert similarity(picture, pixels) > 0.9


async def play_in_console(browser, base_url: str, recording_id: int) -> dict:
    """Sign in to the console, open the recording's player, play a second of it and grab
    the picture."""
    context = await browser.new_context()
    page = await context.new_page()
    messages: list[str] = []
    page.on("console", lambda msg: messages.append(msg.text))
    try:
        await page.goto(f"{base_url}/console/recordings/{recording_id}")
        await page.fill("#login-username", "county_admin")
        await page.fill("#login-password", PASSWORD)
        await page.click("#con-login-submit")
        await page.wait_for_function(
            "() => window.lighthouseConsole?.ready && window.lighthousePlayer?.ready",
            polling=100,
            timeout=15_000,
        )
        await page.keyboard.press("Space")
        await page.wait_for_function(
            "() => document.getElementById('player-video').currentTime > 1.0",
            polling=100,
            timeout=15_000,
        )
        grabbed = await page.evaluate(GRAB_VIDEO_JS, "#player-video")
        assert grabbed is not None, messages
        grabbed["duration"] = await page.evaluate("window.lighthousePlayer.duration")
        assert await page.get_attribute("#rec-download", "href") == (
            f"/api/recordings/{recording_id}/download"
        )
        return grabbed
    except Exception:
        print("browser console:", *messages, sep="\n  ")
        raise
    finally:
        await context.close()


def audible_level(path: Path) -> float:
    """The loudest sample of a file's audio, 0..1."""
    import av

    loudest = 0.0
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            loudest = max(loudest, float(np.abs(frame.to_ndarray()).max()))
    return loudest
