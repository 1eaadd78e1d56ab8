"""Test faces and meeting videos made from them.

The faces ship offline: insightface's wheel holds `t1.jpg` (six people) and
`Tom_Hanks_54745.png`; scikit-image holds `data.astronaut()`. A meeting video is a plain
room-like background with faces that come and go. A "live" face is a head: its picture is
laid on a rough depth map (an ellipsoid with a nose) that turns and nods a few degrees, so
near parts move more than far ones, as no flat picture can. A "still" face is the same
picture in every frame (a printed photo held still); a "hand_held" one is a flat picture
that wobbles and tilts in a hand (a random homography each frame). Videos are encoded with
PyAV at village bitrates.
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import cv2
import numpy as np
from aiortc import VideoStreamTrack

WIDTH, HEIGHT = 640, 360


def insightface_images() -> Path:
    spec = importlib.util.find_spec("insightface")
    assert spec is not None and spec.submodule_search_locations, (
        "insightface's wheel is not installed (make installs it with --no-deps)"
    )
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "images"


def _crop(image: np.ndarray, box: tuple[int, int, int, int], margin: float) -> np.ndarray:
    x, y, w, h = box
    mx, my = int(w * margin), int(h * margin)
    y0, y1 = max(0, y - my), min(image.shape[0], y + h + my)
    x0, x1 = max(0, x - mx), min(image.shape[1], x + w + mx)
    return image[y0:y1, x0:x1].copy()


# the six faces of t1.jpg (x, y, w, h), left to right, as YuNet finds them
T1_BOXES = (
    (52, 266, 118, 134),
    (271, 147, 99, 129),
    (462, 266, 114, 151),
    (751, 346, 95, 126),
    (899, 57, 106, 140),
    (1132, 274, 95, 125),
)


def sample_faces() -> dict[str, np.ndarray]:
    """BGR head-and-shoulders pictures: tom, astronaut, t1_0 … t1_5."""
    from skimage import data

    images = insightface_images()
    faces = {
        "tom": cv2.imread(str(images / "Tom_Hanks_54745.png")),
        "astronaut": _crop(
            cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (179, 63, 91, 110), 0.6
        ),
    }
    t1 = cv2.imread(str(images / "t1.jpg"))
    for index, box in enumerate(T1_BOXES):
        faces[f"t1_{index}"] = _crop(t1, box, 0.45)
    return faces


@dataclass(frozen=True)
class Appearance:
    face: np.ndarray
    start_s: float
    end_s: float
    x: int  # where the face picture's centre is
    y: int
    height: int  # the face picture's height on screen
    motion: Literal["live", "still", "hand_held"] = "live"
    # until then the face is out of focus (the camera's focus settling, or moving): still
    # found by the detector, not recognisable
    defocused_until_s: float = 0.0


def _background() -> np.ndarray:
    rows = np.linspace(90, 150, HEIGHT, dtype=np.float32)[:, None]
    cols = np.linspace(0, 30, WIDTH, dtype=np.float32)[None, :]
    grey = rows + cols
    picture = np.stack([grey * 0.9, grey, grey * 1.1], axis=2)
    picture[300:, :] = (60, 70, 90)  # a table
    return np.clip(picture, 0, 255).astype(np.uint8)


def _turned(face: np.ndarray, t: float) -> np.ndarray:
    """The head turned (yaw, up to 14 degrees) and nodding (up to 7): each pixel moves by
    its depth times the angle's sine, an orthographic view of a rotating relief."""
    h, w = face.shape[:2]
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy, ra, rb = w / 2, h / 2, w * 0.33, h * 0.36
    dome = np.sqrt(np.clip(1 - ((cols - cx) / ra) ** 2 - ((rows - cy) / rb) ** 2, 0, 1))
    nose = np.exp(-(((cols - cx) / (w * 0.06)) ** 2 + ((rows - cy - h * 0.02) / (h * 0.1)) ** 2))
    depth = ra * (0.8 * dome + 0.35 * nose)
    yaw = 0.25 * math.sin(2 * math.pi * t / 1.7)
    nod = 0.12 * math.sin(2 * math.pi * t / 2.3 + 1.0)
    return cv2.remap(
        face,
        cols - depth * math.sin(yaw),
        rows - depth * math.sin(nod),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def _hand_held(face: np.ndarray, t: float) -> np.ndarray:
    """A flat picture in an unsteady hand: shifted by up to 6 px and its corners by up to
    4 px more (a tilt), differently in each frame."""
    h, w = face.shape[:2]
    rng = np.random.default_rng(int(t * 1000))
    corners = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    moved = corners + rng.uniform(-4, 4, (4, 2)) + rng.uniform(-6, 6, 2)
    matrix = cv2.getPerspectiveTransform(corners, moved.astype(np.float32))
    return cv2.warpPerspective(face, matrix, (w, h), borderMode=cv2.BORDER_REPLICATE)


def render_frame(appearances: list[Appearance], t: float) -> np.ndarray:
    frame = _background()
    for a in appearances:
        if not a.start_s <= t < a.end_s:
            continue
        if a.motion == "live":
            face = _turned(a.face, t)
        elif a.motion == "hand_held":
            face = _hand_held(a.face, t)
        else:
            face = a.face
        if t < a.defocused_until_s:
            face = cv2.GaussianBlur(face, (0, 0), 6)
        scale = a.height / face.shape[0]
        face = cv2.resize(face, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        fh, fw = face.shape[:2]
        x0, y0 = a.x - fw // 2, a.y - fh // 2
        xs, ys = max(0, x0), max(0, y0)
        xe, ye = min(WIDTH, x0 + fw), min(HEIGHT, y0 + fh)
        frame[ys:ye, xs:xe] = face[ys - y0 : ye - y0, xs - x0 : xe - x0]
    return frame


def write_meeting_video(
    path: Path,
    appearances: list[Appearance],
    *,
    duration_s: float,
    codec: str = "h264",
    kbps: int = 400,
    fps: int = 15,
    gop: int | None = None,  # frames between keyframes (an IP camera's: 1-2 s)
) -> Path:
    """Encode the meeting as a village camera would send it (H.264 or VP8, `kbps`)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264" if codec == "h264" else "libvpx", rate=fps)
        stream.width, stream.height = WIDTH, HEIGHT
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = kbps * 1000
        if codec == "h264":
            stream.options = {"preset": "veryfast", "tune": "zerolatency", "profile": "baseline"}
        else:
            stream.options = {"deadline": "realtime", "cpu-used": "8"}
        if gop is not None:
            stream.codec_context.gop_size = gop
        stream.time_base = Fraction(1, fps)
        for index in range(int(duration_s * fps)):
            frame = av.VideoFrame.from_ndarray(
                render_frame(appearances, index / fps)[:, :, ::-1].copy(), format="rgb24"
            )
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


class MeetingCameraTrack(VideoStreamTrack):
    """A village TV's camera, live: the composed meeting at `fps`, `t` counted from the
    first frame sent (so appearances are timed from when the camera starts)."""

    def __init__(self, appearances: list[Appearance], fps: int = 15) -> None:
        super().__init__()
        self.appearances = appearances
        self.fps = fps
        self.started: float | None = None  # time.monotonic() of the first frame
        self._count = 0

    async def recv(self) -> av.VideoFrame:
        if self.started is None:
            self.started = time.monotonic()
        delay = self.started + self._count / self.fps - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        picture = render_frame(self.appearances, self._count / self.fps)
        frame = av.VideoFrame.from_ndarray(picture[:, :, ::-1].copy(), format="rgb24")
        frame.pts = self._count * (90000 // self.fps)
        frame.time_base = Fraction(1, 90000)
        self._count += 1
        return frame


def jpeg(picture: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    return data.tobytes()


def enrolment_photo(face: np.ndarray) -> np.ndarray:
    """A member's enrolment photo, rendered differently from how the meeting video shows
    them (mirrored, brighter, larger): the camera never shows the enrolled pixels."""
    photo = cv2.convertScaleAbs(face[:, ::-1], alpha=1.1, beta=12)
    return cv2.resize(photo, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
