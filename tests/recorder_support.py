"""Helpers for the recorder tests: encoded clips as RTP packets, and reading segments back."""

from __future__ import annotations

import fractions
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtp import RtpPacket

VIDEO_CLOCK = 90000
AUDIO_CLOCK = 48000


@dataclass
class EncodedFrame:
    data: bytes
    keyframe: bool


def moving_picture(i: int, width: int = 320, height: int = 180, noise: bool = False) -> np.ndarray:
    """A picture that changes from frame to frame (so inter frames carry data); with
    noise, frames are large enough to be fragmented."""
    x = (np.arange(width)[None, :] + 4 * i) % 256
    y = np.arange(height)[:, None] % 256
    rgb = np.zeros((height, width, 3), dtype=np.uint8)
    rgb[..., 0] = x
    rgb[..., 1] = y
    rgb[..., 2] = (x + y) // 2
    if noise:
        rgb ^= np.random.default_rng(i).integers(0, 64, rgb.shape, dtype=np.uint8)
    return rgb


def encode_video(
    codec: str,
    count: int,
    *,
    fps: int = 25,
    keyframe_every: int = 50,
    width: int = 320,
    height: int = 180,
    start: int = 0,
    noise: bool = False,
    slices: int = 1,
) -> list[EncodedFrame]:
    """`count` frames of VP8 ("vp8") or H.264 constrained baseline ("h264"), as WebRTC
    sends them: H.264 in Annex-B with SPS/PPS before each IDR, in `slices` slices."""
    name = {"vp8": "libvpx", "h264": "libx264"}[codec]
    context = av.CodecContext.create(name, "w")
    context.width, context.height, context.pix_fmt = width, height, "yuv420p"
    context.time_base = fractions.Fraction(1, fps)
    context.framerate = fractions.Fraction(fps, 1)
    context.bit_rate = 400_000
    context.gop_size = keyframe_every
    if codec == "h264":
        context.profile = "Baseline"
        context.options = {
            "tune": "zerolatency",
            "preset": "ultrafast",
            "x264-params": f"slices={slices}",
        }
    else:
        context.options = {"deadline": "realtime", "lag-in-frames": "0", "auto-alt-ref": "0"}
    out: list[EncodedFrame] = []
    for i in range(count):
        frame = av.VideoFrame.from_ndarray(
            moving_picture(start + i, width, height, noise), format="rgb24"
        ).reformat(format="yuv420p")
        frame.pts = i
        if i % keyframe_every == 0:
            frame.pict_type = av.video.frame.PictureType.I
        out.extend(EncodedFrame(bytes(p), p.is_keyframe) for p in context.encode(frame))
    out.extend(EncodedFrame(bytes(p), p.is_keyframe) for p in context.encode(None))
    assert len(out) == count, (len(out), count)
    return out


def encode_opus(count: int) -> list[bytes]:
    """`count` 20 ms Opus packets of a 440 Hz tone, stereo, 48 kHz."""
    context = av.CodecContext.create("libopus", "w")
    context.sample_rate = AUDIO_CLOCK
    context.layout = "stereo"
    context.format = "s16"
    context.bit_rate = 32000
    out: list[bytes] = []
    for i in range(count + 5):
        t = (np.arange(960) + i * 960) / AUDIO_CLOCK
        tone = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(
            np.repeat(tone, 2).reshape(1, -1), format="s16", layout="stereo"
        )
        frame.sample_rate = AUDIO_CLOCK
        frame.pts = i * 960
        out.extend(bytes(p) for p in context.encode(frame))
    return out[:count]


def packetize(
    codec: str,
    frames: list[bytes],
    *,
    ssrc: int = 1234,
    first_seq: int = 1000,
    first_ts: int = 5000,
    step: int = 3600,
) -> list[RtpPacket]:
    """RTP packets as aiortc's own sender would make them (its packetizers)."""
    seq = first_seq
    out: list[RtpPacket] = []
    factory = {"vp8": Vp8Encoder, "h264": H264Encoder}.get(codec)
    packer = factory() if factory is not None else None
    for i, data in enumerate(frames):
        if packer is None:
            payloads = [data]
        else:
            packet = av.Packet(data)
            packet.pts = i
            packet.time_base = fractions.Fraction(1, 25)
            payloads, _ = packer.pack(packet)
        ts = (first_ts + i * step) & 0xFFFFFFFF
        for n, payload in enumerate(payloads):
            out.append(
                RtpPacket(
                    payload_type=96,
                    marker=int(n == len(payloads) - 1),
                    sequence_number=seq & 0xFFFF,
                    timestamp=ts,
                    ssrc=ssrc,
                    payload=payload,
                )
            )
            seq += 1
    return out


def segment_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix in (".webm", ".mp4"))


def decode_all(path: Path) -> tuple[list[av.VideoFrame], int]:
    """Every video frame of a file, decoded, and the number of audio samples."""
    frames: list[av.VideoFrame] = []
    samples = 0
    with av.open(str(path)) as container:
        for frame in container.decode(*container.streams):
            if isinstance(frame, av.VideoFrame):
                frames.append(frame)
            else:
                samples += frame.samples
    return frames, samples


# -- a publication without a network, for feeding a Recorder packets directly ------------


class FakeDownTrack:
    def __init__(self) -> None:
        self.keyframe_requests = 0

    async def request_keyframe(self) -> bool:
        self.keyframe_requests += 1
        return True


class FakeSubscription:
    def __init__(self, sink, kinds) -> None:
        self.sink = sink
        self.downtracks = {kind: FakeDownTrack() for kind in kinds}
        self.closed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            for kind in self.downtracks:
                self.sink.on_end(kind)


class FakePublication:
    """What the recorder reads of an sfu.room.Publication."""

    def __init__(self, room_id: str, participant_id: str, name: str, kinds) -> None:
        self.id = "pub-test"
        self.kinds = list(kinds)
        self.peer = SimpleNamespace(
            room=SimpleNamespace(id=room_id), participant_id=participant_id, name=name, role="main"
        )
        self.announced = True
        self.closed = False
        self.subscription: FakeSubscription | None = None

    def subscribe_locally(self, sink) -> FakeSubscription:
        self.subscription = FakeSubscription(sink, self.kinds)
        return self.subscription


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now
