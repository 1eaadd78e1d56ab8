"""A pre-encoded VP8 clip and a track that sends it, so a publisher costs almost no CPU.

The clip is encoded once with PyAV (libvpx): scikit-image's astronaut, panned and zoomed
over a periodic path with a little sensor-like noise, so the bitrate is that of real
camera content. `ClipTrack.recv()` returns the encoded `av.Packet`s at the clip's frame
rate; aiortc's sender packetizes them with `encoder.pack()` instead of encoding. Like a
camera's encoder, the track answers a keyframe request (a subscriber joining) by jumping
to the clip's next keyframe instead of making the SFU wait for the periodic one.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import time
from dataclasses import dataclass

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

WIDTH, HEIGHT, FPS = 640, 360, 25
VIDEO_CLOCK = 90000


@dataclass(frozen=True)
class Clip:
    packets: list[bytes]  # one VP8 frame each, in order; packets[0] is a keyframe
    keyframe_indices: list[int]
    fps: int

    @property
    def keyframes(self) -> int:
        return len(self.keyframe_indices)

    @property
    def kbps(self) -> float:
        return sum(len(p) for p in self.packets) * 8 * self.fps / len(self.packets) / 1000


def _source_picture() -> np.ndarray:
    from skimage import data

    face = data.astronaut()  # 512x512 RGB
    # 2x2 mirrored tiles: the moving window never leaves textured content
    top = np.concatenate([face, face[:, ::-1]], axis=1)
    return np.ascontiguousarray(np.concatenate([top, top[::-1]], axis=0))


def encode_clip(
    seconds: float = 4.0,
    fps: int = FPS,
    bitrate: int = 800_000,
    keyframe_s: float = 2.0,
    size: tuple[int, int] = (WIDTH, HEIGHT),
) -> Clip:
    """Encode `seconds` of moving content once (640x360 unless `size`: a venue's lower
    encoding is smaller); the motion loops seamlessly."""
    width, height = size
    source = _source_picture()
    src_h, src_w = source.shape[:2]
    count = round(seconds * fps)
    gop = round(keyframe_s * fps)
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.time_base = fractions.Fraction(1, fps)
    codec.framerate = fractions.Fraction(fps, 1)
    codec.bit_rate = bitrate
    codec.gop_size = gop
    # WebRTC-like VP8: no alt-ref frames (no lag), constant bitrate, keyframes only every
    # `gop` frames. "good", not "realtime": realtime adapts its speed to the machine's
    # load, so the clip (and its bitrate) would differ from run to run.
    codec.options = {
        "deadline": "good",
        "cpu-used": "5",
        "lag-in-frames": "0",
        "auto-alt-ref": "0",
        "keyint_min": str(gop),
        "minrate": str(bitrate),
        "maxrate": str(bitrate),
        "bufsize": str(bitrate),
    }
    rng = np.random.default_rng(7)
    packets: list[bytes] = []
    for i in range(count):
        phase = 2 * math.pi * i / count  # one period per clip: the loop has no jump
        # at most 1.5: the window (960x540) stays inside the 1024x1024 source; a wider one
        # made numpy slice a sliver, stretched into a picture unlike its neighbours, and
        # the frame after the sliver ones was a 58 KB scene cut
        zoom = 1.0 + 0.25 * (1 - math.cos(phase))
        crop_w, crop_h = int(WIDTH * zoom), int(HEIGHT * zoom)
        cx = src_w / 2 + (src_w - crop_w) / 2 * 0.9 * math.sin(phase)
        cy = src_h / 2 + (src_h - crop_h) / 2 * 0.9 * math.sin(2 * phase)
        x0 = min(max(0, int(cx - crop_w / 2)), src_w - crop_w)
        y0 = min(max(0, int(cy - crop_h / 2)), src_h - crop_h)
        crop = source[y0 : y0 + crop_h, x0 : x0 + crop_w]
        noisy = crop.astype(np.int16) + rng.integers(-3, 4, crop.shape, dtype=np.int16)
        picture = np.clip(noisy, 0, 255).astype(np.uint8)
        frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(
            width=width, height=height, format="yuv420p"
        )
        frame.pts = i
        if i % gop == 0:
            frame.pict_type = av.video.frame.PictureType.I
        packets.extend(bytes(packet) for packet in codec.encode(frame))
    packets.extend(bytes(packet) for packet in codec.encode(None))
    if len(packets) != count:
        raise RuntimeError(f"libvpx gave {len(packets)} packets for {count} frames")
    # A VP8 keyframe has bit 0 of its frame tag clear (RFC 6386, section 9.1).
    keyframes = [i for i, p in enumerate(packets) if not p[0] & 1]
    if keyframes[:1] != [0]:
        raise RuntimeError("the clip does not start with a keyframe")
    return Clip(packets=packets, keyframe_indices=keyframes, fps=fps)


class ClipTrack(MediaStreamTrack):
    """Sends a Clip's packets in a loop at its frame rate, with ever-increasing pts."""

    kind = "video"

    def __init__(self, clip: Clip) -> None:
        super().__init__()
        self.clip = clip
        self.frames_sent = 0
        self.keyframes_requested = 0
        self._position = 0  # index into the clip of the next packet
        self._keyframe_wanted = False
        self._start: float | None = None
        self._time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self._step = VIDEO_CLOCK // clip.fps

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + self.frames_sent / self.clip.fps - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if self._keyframe_wanted:
            self._keyframe_wanted = False
            following = [i for i in self.clip.keyframe_indices if i >= self._position]
            self._position = following[0] if following else 0
        packet = av.Packet(self.clip.packets[self._position])
        self._position = (self._position + 1) % len(self.clip.packets)
        packet.pts = self.frames_sent * self._step
        packet.time_base = self._time_base
        self.frames_sent += 1
        return packet

    def request_keyframe(self) -> None:
        """Make the next packet a keyframe (wired to the sender's PLI/FIR handling)."""
        self.keyframes_requested += 1
        self._keyframe_wanted = True
