"""Real browsers: Chromium publishes into an H.264 room and a VP8 room at once, the recorder
writes both, and the files hold the right picture and sound for the right time, and play in
Chromium's own <video>."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from recorder import Recorder, SegmentInfo
from recorder.probe import probe_segment

from browser import chromium_args, launched_chromium, write_y4m
from media import face_picture, similarity
from recorder_support import decode_all

pytestmark = pytest.mark.browser

RECORD_S = 10.0
ROOMS = {"h264room": ("mp4", "avc1."), "vp8room": ("webm", "vp8")}

PLAYER = """<!doctype html><video id="v" muted playsinline></video><script>
const v = document.getElementById('v');
v.src = location.hash.slice(1);
v.play().catch((e) => console.log('play failed: ' + e));
</script>"""

GRAB_JS = """
() => {
  const v = document.getElementById('v');
  const c = document.createElement('canvas');
  c.width = 160; c.height = 90;
  const ctx = c.getContext('2d');
  ctx.drawImage(v, 0, 0, 160, 90);
  return {time: v.currentTime, duration: v.duration, width: v.videoWidth,
          pixels: Array.from(ctx.getImageData(0, 0, 160, 90).data)};
}
"""


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


async def play_in_chromium(browser, base_url: str, segment: SegmentInfo) -> dict:
    """Play a segment in a <video>, served from the server's origin (so the canvas is
    readable), and grab a picture once a second of it has played."""
    context = await browser.new_context()
    page = await context.new_page()
    messages: list[str] = []
    page.on("console", lambda msg: messages.append(msg.text))
    prefix = f"{base_url}/__recording-check/"
    body = segment.path.read_bytes()

    async def serve(route) -> None:
        if route.request.url.endswith("player.html"):
            await route.fulfill(body=PLAYER, content_type="text/html")
        else:
            await route.fulfill(body=body, content_type=segment.mime_type.split(";")[0])

    await page.route(prefix + "**", serve)
    try:
        can_play = await page.evaluate(
            "(type) => document.createElement('video').canPlayType(type)", segment.mime_type
        )
        assert can_play == "probably", segment.mime_type
        await page.goto(f"{prefix}player.html#{prefix}{segment.path.name}")
        await page.wait_for_function(
            "() => { const v = document.getElementById('v');"
            " return v.error || (v.readyState >= 2 && v.currentTime > 1.0); }",
            polling=100,
            timeout=15_000,
        )
        error = await page.evaluate("() => document.getElementById('v').error?.message ?? null")
        assert error is None, (error, messages)
        return await asyncio.wait_for(page.evaluate(GRAB_JS), 10)
    finally:
        await context.close()


async def test_browser_publishers_are_recorded_in_both_codecs(server, chromium, tmp_path):
    browser, picture = chromium
    segments: list[SegmentInfo] = []
    recorder = Recorder(tmp_path / "rec", segment_s=4.0, on_segment=segments.append)
    for room in ROOMS:
        recorder.attach(server.room(room))
    contexts = []
    pages = []
    for room in ROOMS:
        context = await browser.new_context()
        page = await context.new_page()
        page.console_messages = []
        page.on("console", lambda msg, p=page: p.console_messages.append(msg.text))
        token = server.token(f"main-{room}", "main", room, name=f"主会场 {room}")
        await page.goto(f"{server.base_url}/main?token={token}")
        contexts.append(context)
        pages.append(page)
    try:

        def video_flowing() -> bool:
            recordings = list(recorder.recordings.values())
            return len(recordings) == 2 and all(
                r.stats()["frames"].get("video", 0) > 0 for r in recordings
            )

        await wait_until(video_flowing, 20, "video from both browsers")
        recordings = {r.room_id: r for r in recorder.recordings.values()}
        await asyncio.sleep(RECORD_S)
        for context in contexts:
            await context.close()
        await wait_until(lambda: not recorder.recordings, 15, "both recordings to end")
        await recorder.close()
    except Exception:
        for page in pages:
            print(page.url, *page.console_messages, sep="\n  ")
        raise

    for room, (container, codec) in ROOMS.items():
        recording = recordings[room]
        real_s = recording.last_arrival - recording.epoch
        assert real_s > RECORD_S
        mine = [s for s in segments if s.room_id == room]
        assert [s.sequence for s in mine] == list(range(len(mine))) and len(mine) >= 2
        total = sum(s.duration_s for s in mine)
        assert abs(total - real_s) < 0.5, (room, total, real_s)
        samples = 0
        for segment in mine:
            assert segment.path.suffix == f".{container}"
            assert f'codecs="{codec}' in segment.mime_type and segment.kinds == ("video", "audio")
            probed = probe_segment(segment.path)
            assert all(s.monotonic for s in probed.streams.values())
            assert abs(probed.duration_s - segment.duration_s) < 0.1
            pictures, segment_samples = decode_all(segment.path)
            samples += segment_samples
            for frame in (pictures[0], pictures[-1]):
                score = similarity(picture, frame.to_ndarray(format="rgb24"))
                assert score > 0.9, (segment.relative_path, score)
        # the whole time has sound (Chromium's fake microphone beeps)
        assert samples == pytest.approx(48000 * total, rel=0.05)
        last = max(audible_level(s) for s in mine)
        assert last > 0.01

        # and a browser plays what was recorded
        grabbed = await play_in_chromium(browser, server.base_url, mine[0])
        # (browsers measure a file from its first video or its first audio frame: the
        # audio that came before the first keyframe may or may not count)
        assert grabbed["width"] == 640
        assert grabbed["duration"] == pytest.approx(mine[0].duration_s, abs=0.5)
        pixels = np.array(grabbed["pixels"], dtype=np.uint8).reshape(90, 160, 4)[..., :3]
        assert similarity(picture, pixels) > 0.9


def audible_level(segment: SegmentInfo) -> float:
    """The loudest sample of a file's audio, 0..1."""
    import av

    loudest = 0.0
    with av.open(str(segment.path)) as container:
        for frame in container.decode(audio=0):
            loudest = max(loudest, float(np.abs(frame.to_ndarray()).max()))
    return loudest
