"""Debian's Chromium, driven by Playwright, as a real WebRTC client (see shared TESTING.md)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = "/usr/lib/chromium/chromium"


def write_y4m(path: Path, picture: np.ndarray, frames: int = 30) -> Path:
    """A looping fake-camera file (640x360, 30 fps, 4:2:0) showing `picture` (RGB)."""
    height, width = picture.shape[:2]
    rgb = picture.astype(np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    u = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
    v = 0.5 * r - 0.418688 * g - 0.081312 * b + 128

    def sub(plane: np.ndarray) -> np.ndarray:
        return plane.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3))

    planes = b"".join(np.clip(p, 0, 255).astype(np.uint8).tobytes() for p in (y, sub(u), sub(v)))
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            out.write(b"FRAME\n")
            out.write(planes)
    return path


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
