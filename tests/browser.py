"""Debian's Chromium, driven by Playwright, as a real WebRTC client (see shared TESTING.md)."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = "/usr/lib/chromium/chromium"


def write_y4m(path: Path, picture: np.ndarray, frames: int = 30) -> Path:
    """A looping fake-camera file (640x360, 30 fps, 4:2:0) showing `picture` (RGB)."""
    return write_y4m_video(path, [picture] * frames)


def write_y4m_video(path: Path, pictures: Iterable[np.ndarray], fps: int = 30) -> Path:
    """A looping fake-camera file of these pictures (RGB, all of one size), 4:2:0."""
    with path.open("wb") as out:
        for index, picture in enumerate(pictures):
            height, width = picture.shape[:2]
            if index == 0:
                out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
            out.write(b"FRAME\n")
            out.write(_yuv420(picture))
    return path


def _yuv420(picture: np.ndarray) -> bytes:
    height, width = picture.shape[:2]
    rgb = picture.astype(np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    u = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
    v = 0.5 * r - 0.418688 * g - 0.081312 * b + 128

    def sub(plane: np.ndarray) -> np.ndarray:
        return plane.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3))

    return b"".join(np.clip(p, 0, 255).astype(np.uint8).tobytes() for p in (y, sub(u), sub(v)))


def chromium_args(camera_file: Path) -> list[str]:
    return [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--autoplay-policy=no-user-gesture-required",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={camera_file}",
        "--disable-features=WebRtcHideLocalIpsWithMdns",
        "--allow-loopback-in-peer-connection",
    ]


def chromium_env(home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_CACHE_HOME=str(home / "cache"),
        TMPDIR=str(home),
    )
    return env


# Reads the decoded picture of a <video> at a coarse size, as RGB rows, in the page.
GRAB_VIDEO_JS = """
(selector) => {
  const video = document.querySelector(selector);
  if (!video || video.videoWidth === 0) return null;
  const canvas = document.createElement('canvas');
  canvas.width = 160; canvas.height = 90;
  const ctx = canvas.getContext('2d');
  ctx.drawImage(video, 0, 0, 160, 90);
  const data = ctx.getImageData(0, 0, 160, 90).data;
  return {width: video.videoWidth, height: video.videoHeight,
          frames: video.getVideoPlaybackQuality().totalVideoFrames,
          pixels: Array.from(data)};
}
"""


@asynccontextmanager
async def launched_chromium(args: list[str]) -> AsyncIterator:
    """Debian's Chromium under Playwright, with a throwaway home; fails (never skips) if it is
    not installed: CI installs it (.ci/run), and a skipped browser suite hides failures."""
    if not os.path.exists(CHROMIUM):  # noqa: ASYNC240 - a one-off check before launch
        pytest.fail(f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.async_api import async_playwright

    # a short home: Chromium's singleton socket path must fit in 108 bytes
    home = Path(tempfile.mkdtemp(prefix="lh-chromium-"))
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=args,
            ignore_default_args=["--mute-audio"],
            env=chromium_env(home),
        )
        try:
            yield browser
        finally:
            await browser.close()
            shutil.rmtree(home, ignore_errors=True)


async def signed_in_page(browser, base_url: str, path: str, username: str, **context_options):
    """A new browser context signed in to the console as `username`, then on `path`; its
    console messages and page errors are kept in `page.messages`."""
    from urllib.parse import urlsplit

    from apiclient import PASSWORD

    options = {"viewport": {"width": 1280, "height": 800}, **context_options}
    context = await browser.new_context(**options)
    page = await context.new_page()
    page.messages = []
    page.on("console", lambda msg: page.messages.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda exc: page.messages.append(f"pageerror: {exc}"))
    await page.goto(base_url + path)
    await page.wait_for_url(lambda url: urlsplit(url).path == "/console/login")
    await page.fill("#login-username", username)
    await page.fill("#login-password", PASSWORD)
    await page.click("#con-login-submit")
    await page.wait_for_url(lambda url: urlsplit(url).path == path.split("?")[0])
    return context, page


# each village's camera shows one colour; the main venue's is yellow, its shared screen
# magenta: a TV's main view is told apart by its mean colour
COLOURS = {
    "a1": (220, 30, 30),
    "a2": (30, 200, 40),
    "b1": (30, 60, 220),
    "main": (230, 210, 20),
    "content": (220, 40, 200),
}

# A camera of one colour for this page (a canvas stream with a moving bar, so that the
# encoder always has something to send), with the fake device's microphone.
CAMERA_JS = """
([r, g, b]) => {
  const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = async (constraints) => {
    const canvas = document.createElement('canvas');
    canvas.width = 320; canvas.height = 180;
    const ctx = canvas.getContext('2d');
    let x = 0;
    setInterval(() => {
      ctx.fillStyle = `rgb(${r},${g},${b})`;
      ctx.fillRect(0, 0, 320, 180);
      ctx.fillStyle = 'rgb(128,128,128)';
      ctx.fillRect(x, 170, 20, 10);
      x = (x + 4) % 300;
    }, 66);
    const stream = canvas.captureStream(15);
    if (constraints && constraints.audio) {
      const mic = await original({audio: true});
      for (const track of mic.getAudioTracks()) stream.addTrack(track);
    }
    return stream;
  };
}
"""


def which_colour(pixels: list[int]) -> str:
    rgb = np.array(pixels, dtype=np.float64).reshape(-1, 4)[:, :3].mean(axis=0)
    return min(COLOURS, key=lambda name: float(np.linalg.norm(rgb - np.array(COLOURS[name]))))


async def wait_until(page, expression: str, timeout_ms: int = 20_000) -> None:
    await page.wait_for_function(expression, timeout=timeout_ms, polling=100)


async def main_view_colour(page) -> str | None:
    grabbed = await asyncio.wait_for(
        page.evaluate(GRAB_VIDEO_JS, ".tile.is-main-view:not([hidden]) video"), 10
    )
    return which_colour(grabbed["pixels"]) if grabbed else None


async def wait_for_main_view(page, expected: str, timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seen = None
    while loop.time() < deadline:
        seen = await main_view_colour(page)
        if seen == expected:
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"main view shows {seen}, expected {expected}")


async def new_page(browser, **context_options):
    context = await browser.new_context(**context_options)
    page = await context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))
    page.on(
        "console",
        lambda msg: problems.append(msg.text) if "Content Security" in msg.text else None,
    )
    page.problems = problems
    return page


def write_voice_wav(path: Path, seconds: float = 4.0, rate: int = 48000) -> Path:
    """A looping fake-microphone file that an encoder takes for speech: a voiced source
    (pitch gliding 110-170 Hz, its harmonics shaped by two moving formants) in syllables
    of ~4 a second, with breath noise. Chromium's fake device's beep is a pure tone, which
    Opus codes in its CELT mode, where it has no in-band FEC."""
    import wave

    rng = np.random.default_rng(11)
    t = np.arange(int(seconds * rate)) / rate
    pitch = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    formant_1 = 600 + 250 * np.sin(2 * np.pi * 1.3 * t)
    formant_2 = 1700 + 500 * np.sin(2 * np.pi * 0.9 * t + 1)
    voiced = np.zeros_like(t)
    for harmonic in range(1, 30):
        frequency = harmonic * pitch
        gain = np.exp(-(((frequency - formant_1) / 150) ** 2)) + 0.6 * np.exp(
            -(((frequency - formant_2) / 250) ** 2)
        )
        voiced += gain * np.sin(harmonic * phase) / harmonic**0.5
    syllables = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 0.7
    signal = syllables * voiced + 0.02 * rng.standard_normal(t.size)
    pcm = (signal / np.abs(signal).max() * 0.5 * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return path
