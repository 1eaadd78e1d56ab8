"""Test media: a face picture as a camera, and a measure of how alike two pictures are."""

from __future__ import annotations

import asyncio
import fractions
import time

import numpy as np
from aiortc import VideoStreamTrack
from av import VideoFrame

WIDTH, HEIGHT = 640, 360


def face_picture(width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """scikit-image's astronaut portrait, letterboxed into width x height, RGB uint8."""
    from skimage import data, transform

    face = data.astronaut()  # 512x512 RGB
    scale = height / face.shape[0]
    resized = transform.resize(face, (height, int(face.shape[1] * scale)), anti_aliasing=True)
    resized = (resized * 255).astype(np.uint8)
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    canvas[:, :] = (40, 90, 160)
    x0 = (width - resized.shape[1]) // 2
    canvas[:, x0 : x0 + resized.shape[1]] = resized
    return canvas


def similarity(a: np.ndarray, b: np.ndarray, size: tuple[int, int] = (64, 36)) -> float:
    """Pearson correlation of two RGB pictures' grey levels at a coarse size (1.0 = same)."""
    from skimage import transform

    def grey(img: np.ndarray) -> np.ndarray:
        g = img[..., :3].astype(np.float64).mean(axis=2)
        return transform.resize(g, (size[1], size[0]), anti_aliasing=True).ravel()

    ga, gb = grey(a), grey(b)
    ga -= ga.mean()
    gb -= gb.mean()
    denom = float(np.sqrt((ga * ga).sum() * (gb * gb).sum()))
    return float((ga * gb).sum() / denom) if denom else 0.0


class PictureTrack(VideoStreamTrack):
    """A camera that films one picture at a fixed frame rate."""

    def __init__(self, picture: np.ndarray, fps: int = 25) -> None:
        super().__init__()
        self.picture = picture
        self.fps = fps
        self._start: float | None = None
        self._count = 0

    async def recv(self) -> VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        target = self._start + self._count / self.fps
        delay = target - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        frame = VideoFrame.from_ndarray(self.picture, format="rgb24")
        frame.pts = self._count * (90000 // self.fps)
        frame.time_base = fractions.Fraction(1, 90000)
        self._count += 1
        return frame


async def latest_picture(track, frames: int = 8, timeout: float = 10.0) -> np.ndarray:
    """The last of the next few decoded frames (the first after a switch may be stale)."""

    async def collect():
        frame = None
        for _ in range(frames):
            frame = await track.recv()
        return frame.to_ndarray(format="rgb24")

    return await asyncio.wait_for(collect(), timeout)
