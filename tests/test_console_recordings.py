"""The console's recordings: the list and the player pages as served, and in real Chromium a
two-part WebM recording played as one timeline, with its events marked and clickable."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from fractions import Fraction
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import av
import numpy as np
import pytest

from db.models import (
    Meeting,
    MeetingStatus,
    MeetingType,
    Recording,
    RecordingSegment,
    RecordingStatus,
    RoomEvent,
)
from lighthouse.keys import DATABASE_KEY, RECORDINGS_DIR_KEY

from apiclient import PASSWORD, seed_small_county
from browser import GRAB_VIDEO_JS, launched_chromium

SIGNED_IN = {"Cookie": "lh_session=anything"}  # the pages only look for it; the API checks it


async def fetch(server, path: str, **headers) -> tuple[int, str, dict]:
    async with aiohttp.ClientSession() as session:
        async with session.get(
            server.base_url + path, headers=headers, allow_redirects=False
        ) as response:
            return response.status, await response.text(), dict(response.headers)


def json_block(body: str, element_id: str) -> dict:
    match = re.search(
        rf'<script type="application/json" id="{element_id}">(.*?)</script>', body, re.S
    )
    assert match, element_id
    return json.loads(match.group(1))


# ---- the pages as served ---------------------------------------------------------------


async def test_recordings_list_renders_in_chinese_and_english(server):
    status, body, headers = await fetch(server, "/console/recordings?meeting=5", **SIGNED_IN)
    assert status == 200
    assert '<html lang="zh-CN"' in body
    assert 'data-nav-link="recordings">录像回放</a>' in body
    assert "会场" in body and "时长" in body and "未找到录像。" in body
    assert json_block(body, "con-config")["page"] == "recordings"
    assert json_block(body, "con-config")["meeting"] == 5
    labels = json_block(body, "con-labels")["recordingStatus"]
    assert labels == {
        "recording": "录制中",
        "done": "已完成",
        "stopped_quota": "因存储空间不足停止",
        "failed": "失败",
    }
    assert json_block(body, "con-page-strings")["recordingsOf"] == "{org}的录像"
    assert "<script>" not in body and "style=" not in body  # the CSP allows neither
    assert "script-src 'self'" in headers["Content-Security-Policy"]

    status, body, _ = await fetch(server, "/console/recordings?lang=en", **SIGNED_IN)
    assert status == 200
    assert '<html lang="en"' in body
    assert ">Recordings</a>" in body and "No recordings found." in body and "录像" not in body
    assert json_block(body, "con-config")["meeting"] is None
    assert json_block(body, "con-labels")["recordingStatus"]["stopped_quota"] == (
        "Stopped: storage space ran out"
    )


async def test_player_page_renders_in_chinese_and_english(server):
    status, body, _ = await fetch(server, "/console/recordings/7", **SIGNED_IN)
    assert status == 200
    assert "查看录像将记入审计日志。" in body
    assert '<video id="player-video"' in body and "controls" in body
    assert json_block(body, "con-config")["recordingId"] == 7
    assert json_block(body, "con-labels")["roomEvent"] == {
        "joined": "加入",
        "left": "离开",
        "signin": "签到",
        "snapshot": "抓拍",
        "recording_stopped": "录像已停止",
        "recording_resumed": "录像已恢复",
    }
    assert "下载整段录像" in body
    assert json_block(body, "con-page-strings")["part"] == "第 {part} 段，共 {parts} 段"
    assert "<script>" not in body and "style=" not in body

    status, body, _ = await fetch(server, "/console/recordings/7?lang=en", **SIGNED_IN)
    assert status == 200
    assert "Viewing a recording is recorded in the audit log." in body
    assert "审计" not in body


async def test_recording_pages_without_a_session_go_to_the_login_page(server):
    status, _, headers = await fetch(server, "/console/recordings/7")
    assert status == 302
    assert headers["Location"] == "/console/login?next=/console/recordings/7"
    status, _, _ = await fetch(server, "/console/recordings/x", **SIGNED_IN)
    assert status == 404


# ---- real Chromium: a two-part recording played as one ----------------------------------

RED = (230, 30, 30)
BLUE = (30, 30, 230)


def write_webm(path: Path, colour: tuple[int, int, int], seconds: float = 4.0) -> float:
    """A VP8 + Opus WebM of one solid colour and a quiet tone; returns its duration (s)."""
    fps = 25
    with av.open(str(path), "w", format="webm") as container:
        video = container.add_stream("libvpx", rate=fps)
        video.width, video.height, video.pix_fmt = 320, 240, "yuv420p"
        video.options = {"deadline": "realtime", "cpu-used": "8", "b": "200k"}
        audio = container.add_stream("libopus", rate=48000)
        audio.layout = "mono"
        picture = np.empty((240, 320, 3), np.uint8)
        picture[:] = colour
        for index in range(int(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = index
            frame.time_base = Fraction(1, fps)
            container.mux(video.encode(frame))
        container.mux(video.encode())
        samples = 960  # 20 ms
        tone = (0.05 * np.sin(2 * np.pi * 440 * np.arange(samples) / 48000)).astype(np.float32)
        for index in range(int(seconds * 48000 / samples)):
            frame = av.AudioFrame.from_ndarray(tone.reshape(1, -1), format="flt", layout="mono")
            frame.sample_rate = 48000
            frame.pts = index * samples
            frame.time_base = Fraction(1, 48000)
            container.mux(audio.encode(frame))
        container.mux(audio.encode())
    with av.open(str(path)) as written:
        assert written.duration is not None
        return written.duration / av.time_base


async def add_two_part_recording(server, orgs) -> tuple[int, int]:
    """A1村's recording of A镇's meeting: a red part, then a blue one; A1村 joins at +1 s and
    leaves at +6 s. Returns (recording id, meeting id)."""
    root: Path = server.app[RECORDINGS_DIR_KEY]
    folder = root / "town-a-meeting" / "a1"
    folder.mkdir(parents=True, exist_ok=True)
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=5)
    parts = []
    at = start
    for seq, colour in enumerate((RED, BLUE)):
        duration = write_webm(folder / f"{seq}.webm", colour)
        size = (folder / f"{seq}.webm").stat().st_size
        parts.append(
            RecordingSegment(
                seq=seq,
                path=f"town-a-meeting/a1/{seq}.webm",
                started_at=at,
                ended_at=at + dt.timedelta(seconds=duration),
                duration_s=duration,
                bytes=size,
            )
        )
        at += dt.timedelta(seconds=duration)
    async with server.app[DATABASE_KEY].session() as session:
        meeting = Meeting(
            type=MeetingType.TOWN_WORK,
            topic="十一月工作例会",
            organiser_id=orgs["town_a"].id,
            org_path=orgs["town_a"].path,
            status=MeetingStatus.ENDED,
            actual_start=start,
            actual_end=at,
        )
        session.add(meeting)
        await session.flush()
        recording = Recording(
            room_id="town-a-meeting",
            meeting_id=meeting.id,
            publication_id="pub-1",
            participant_id="terminal:1",
            venue_name="A1村",
            org_path=orgs["village_a1"].path,
            kinds=["audio", "video"],
            container="webm",
            status=RecordingStatus.DONE,
            started_at=start,
            ended_at=at,
            bytes=sum(p.bytes for p in parts),
            segments=parts,
        )
        session.add(recording)
        for kind, offset in (("joined", 1), ("left", 6)):
            session.add(
                RoomEvent(
                    room_id="town-a-meeting",
                    kind=kind,
                    name="A1村",
                    participant_id="terminal:1",
                    at=start + dt.timedelta(seconds=offset),
                )
            )
        await session.commit()
        return recording.id, meeting.id


@pytest.fixture
async def chromium():
    args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--autoplay-policy=no-user-gesture-required",
    ]
    async with launched_chromium(args) as browser:
        yield browser


async def wait_until(page, condition: str, timeout_ms: int = 10_000) -> None:
    await page.wait_for_function(condition, polling=100, timeout=timeout_ms)


# Whether the middle of the picture is `colour` (each channel within 60 of it).
SHOWS_JS = (
    "(colour) => { const picture = ("
    + GRAB_VIDEO_JS
    + """)('#player-video');
  if (!picture) return false;
  const i = (45 * 160 + 80) * 4;
  return [0, 1, 2].every((c) => Math.abs(picture.pixels[i + c] - colour[c]) < 60);
}"""
)


async def shows(page, colour: tuple[int, int, int]) -> bool:
    return await page.evaluate(SHOWS_JS, list(colour))


async def wait_for_colour(page, colour: tuple[int, int, int], timeout_ms: int = 5_000) -> None:
    await page.wait_for_function(SHOWS_JS, arg=list(colour), polling=100, timeout=timeout_ms)


async def test_player_plays_the_parts_as_one_timeline(server, chromium):
    orgs = await seed_small_county(server.app[DATABASE_KEY])
    recording_id, meeting_id = await add_two_part_recording(server, orgs)
    context = await chromium.new_context(viewport={"width": 1366, "height": 768})
    page = await context.new_page()
    messages: list[str] = []
    page.on("console", lambda msg: messages.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda exc: messages.append(f"pageerror: {exc}"))
    try:
        # from the meeting's record to its recordings
        await page.goto(f"{server.base_url}/console/meetings/{meeting_id}")
        await page.wait_for_url(lambda url: urlsplit(url).path == "/console/login")
        await page.fill("#login-username", "town_a_admin")
        await page.fill("#login-password", PASSWORD)
        await page.click("#con-login-submit")
        await page.wait_for_url(lambda url: urlsplit(url).path == f"/console/meetings/{meeting_id}")
        await wait_until(page, "window.lighthouseConsole.ready")
        assert await page.inner_text("#con-meeting-recordings") == "录像回放（1）"
        await page.click("#con-meeting-recordings")
        await page.wait_for_url(lambda url: urlsplit(url).path == "/console/recordings")
        await wait_until(page, "window.lighthouseConsole.ready")
        assert await page.inner_text("#con-recordings-filter-text") == "仅显示会议“十一月工作例会”"
        assert await page.get_attribute("a[data-nav-link='recordings']", "aria-current") == "page"
        cells = await page.eval_on_selector_all(
            "#con-recordings tbody tr",
            "rows => rows.map(r => Array.from(r.cells, c => c.textContent))",
        )
        assert len(cells) == 1, cells
        venue, meeting, kind, _, duration, status, size = cells[0]
        assert (venue, meeting, kind, duration, status) == (
            "A1村",
            "十一月工作例会",
            "乡镇工作会议",  # what it was: the meeting's type, not the room id
            "00:08",
            "已完成",
        )
        assert size.endswith("KB")

        if os.environ.get("LH_SCREENSHOTS"):
            shot = Path(os.environ["LH_SCREENSHOTS"]) / "console-recordings.png"
            await page.screenshot(path=str(shot))

        # a row opens the player
        await page.click("#con-recordings tbody tr td:nth-child(4)")
        await page.wait_for_url(
            lambda url: urlsplit(url).path == f"/console/recordings/{recording_id}"
        )
        await wait_until(page, "window.lighthouseConsole.ready && window.lighthousePlayer.ready")
        assert await page.inner_text("#rec-heading") == "A1村 · 录像回放"
        assert "查看录像将记入审计日志" in await page.inner_text(".con-audit-note")
        assert await page.inner_text("#rec-meeting") == "十一月工作例会"
        total = await page.evaluate("window.lighthousePlayer.duration")
        assert abs(total - 8.0) < 0.3, total
        assert (await page.inner_text("#player-time")).endswith("/ 00:08")
        assert await page.inner_text("#player-part") == "第 1 段，共 2 段"
        marks = await page.eval_on_selector_all(
            "#player-marks .con-player-mark", "marks => marks.map(m => [m.dataset.kind, m.title])"
        )
        assert [kind for kind, _ in marks] == ["joined", "left"]
        assert marks[1][1] == "00:06 · 离开：A1村"
        events = await page.eval_on_selector_all(
            "#player-events button", "items => items.map(i => i.innerText.split('\\n'))"
        )
        assert [e[:3] for e in events] == [["00:01", "加入", "A1村"], ["00:06", "离开", "A1村"]]

        # space plays: the red part runs
        await page.keyboard.press("Space")
        await wait_until(
            page,
            "window.lighthousePlayer.time > 0.6 && "
            "document.getElementById('player-video').currentTime > 0.6",
        )
        assert await page.evaluate("window.lighthousePlayer.segment") == 0
        assert await shows(page, RED)
        await page.keyboard.press("Space")  # and pauses
        await wait_until(page, "document.getElementById('player-video').paused")
        assert await page.inner_text("#player-toggle") == "播放"

        # "left" at +6 s is 2 s into the blue part: the player loads it, still paused
        await page.click("#player-events button[data-kind='left']")
        await wait_until(
            page,
            "window.lighthousePlayer.segment === 1 && "
            "Math.abs(window.lighthousePlayer.time - 6) < 0.2",
        )
        await wait_for_colour(page, BLUE)
        assert await page.evaluate("document.getElementById('player-video').paused")
        assert await page.inner_text("#player-part") == "第 2 段，共 2 段"
        if os.environ.get("LH_SCREENSHOTS"):
            await page.wait_for_timeout(1500)  # past the native controls' loading spinner
            shot = Path(os.environ["LH_SCREENSHOTS"]) / "console-recording-player.png"
            await page.screenshot(path=str(shot))
        head = await page.evaluate("getComputedStyle(document.getElementById('player-head')).left")
        bar = await page.evaluate("document.getElementById('player-bar').clientWidth")
        assert abs(float(head.removesuffix("px")) / bar - 6 / total) < 0.02

        # the "joined" mark on the bar goes back into the red part; playing there, the
        # player goes on into the blue part by itself when the red one ends
        await page.keyboard.press("Space")
        await wait_until(
            page, "window.lighthousePlayer.playing && window.lighthousePlayer.time > 6.2"
        )
        await page.click("#player-marks .con-player-mark[data-kind='joined']")
        await wait_until(
            page,
            "window.lighthousePlayer.segment === 0 && window.lighthousePlayer.time < 2.5",
        )
        await wait_for_colour(page, RED)
        await wait_until(
            page,
            "window.lighthousePlayer.segment === 1 && window.lighthousePlayer.time > 4.3 && "
            "!document.getElementById('player-video').paused",
        )
        await wait_for_colour(page, BLUE)

        # ← goes back 10 s: the start (clamped), in the red part again, still playing
        await page.keyboard.press("ArrowLeft")
        await wait_until(
            page,
            "window.lighthousePlayer.segment === 0 && window.lighthousePlayer.playing && "
            "window.lighthousePlayer.time < 3",
        )

        # each part opened is one audited viewing
        async with aiohttp.ClientSession() as session:
            async with session.post(
                server.base_url + "/api/login",
                json={"username": "county_admin", "password": PASSWORD},
            ) as response:
                token = (await response.json())["token"]
            async with session.get(
                server.base_url + "/api/audit?action=recording_played",
                headers={"Authorization": f"Bearer {token}"},
            ) as response:
                played = (await response.json())["entries"]
        assert len(played) >= 2
        assert {entry["target_id"] for entry in played} == {str(recording_id)}

        problems = [m for m in messages if "pageerror" in m or "Content Security" in m]
        assert problems == []
    except Exception:
        print("browser console:", *messages, sep="\n  ")
        raise
    finally:
        await context.close()
