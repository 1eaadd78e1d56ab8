import fractions

import numpy as np
import pytest
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from av import VideoFrame

from sfu.keyframes import (
    KeyframeRequestLimiter,
    is_h264_keyframe_start,
    is_vp8_keyframe_start,
    keyframe_detector,
)

CODECS = {
    "vp8": RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96),
    "h264": RTCRtpCodecParameters(
        mimeType="video/H264",
        clockRate=90000,
        payloadType=102,
        parameters={
            "packetization-mode": "1",
            "level-asymmetry-allowed": "1",
            "profile-level-id": "42e01f",
        },
    ),
}


def encoded_frames(codec: str, count: int, keyframe_at: set[int]) -> list[list[bytes]]:
    encoder = get_encoder(CODECS[codec])
    rng = np.random.default_rng(1)
    frames = []
    for i in range(count):
        picture = rng.integers(0, 255, (360, 640, 3), dtype=np.uint8)
        frame = VideoFrame.from_ndarray(picture, format="rgb24")
        frame.pts = i * 3600
        frame.time_base = fractions.Fraction(1, 90000)
        payloads, _ = encoder.encode(frame, force_keyframe=i in keyframe_at)
        frames.append(payloads)
    return frames


@pytest.mark.parametrize("codec", ["vp8", "h264"])
def test_detects_keyframe_starts_in_real_encoder_output(codec):
    detect = keyframe_detector(CODECS[codec].mimeType)
    frames = encoded_frames(codec, 6, keyframe_at={0, 4})
    assert len(frames[0]) > 2  # a random picture spans several packets
    for index, payloads in enumerate(frames):
        starts = [detect(p) for p in payloads]
        if index in (0, 4):
            assert starts[0], f"{codec} frame {index} is a keyframe"
            # H.264 sends SPS/PPS, then the IDR's first slice: both are places to start
            assert not any(starts[2:]), "only the start of a keyframe counts"
        else:
            assert not any(starts), f"{codec} frame {index} is a delta frame"


def test_vp8_descriptor_variants():
    # extended descriptor with a 15-bit picture id, S=1, PID=0, then a keyframe header byte
    assert is_vp8_keyframe_start(bytes([0x90, 0x80, 0x81, 0x23, 0x10]))
    assert not is_vp8_keyframe_start(bytes([0x90, 0x80, 0x81, 0x23, 0x11]))  # P bit: delta
    assert not is_vp8_keyframe_start(bytes([0x80, 0x80, 0x81, 0x23, 0x10]))  # not a start
    assert not is_vp8_keyframe_start(b"")
    assert not is_vp8_keyframe_start(bytes([0x90, 0x80]))  # truncated


def test_h264_packetizations():
    assert is_h264_keyframe_start(bytes([0x65, 0x88]))  # single IDR NAL, first slice
    assert not is_h264_keyframe_start(bytes([0x65, 0x48]))  # IDR, a later slice
    assert is_h264_keyframe_start(bytes([0x67, 0x42]))  # SPS
    stap_a = bytes([0x18, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xCE])  # SPS + PPS
    assert is_h264_keyframe_start(stap_a)
    assert is_h264_keyframe_start(bytes([0x7C, 0x85, 0x88]))  # FU-A start of IDR, first slice
    assert not is_h264_keyframe_start(bytes([0x7C, 0x85, 0x44]))  # FU-A start of a later slice
    assert not is_h264_keyframe_start(bytes([0x7C, 0x05, 0x00]))  # FU-A middle of IDR
    assert not is_h264_keyframe_start(bytes([0x7C, 0x81, 0x00]))  # FU-A start of non-IDR
    assert not is_h264_keyframe_start(bytes([0x41, 0x9A]))  # non-IDR slice
    assert not is_h264_keyframe_start(bytes([0x18, 0x00]))  # truncated STAP-A
    assert keyframe_detector("audio/opus") is None


def test_limiter_deduplicates_and_rate_limits():
    limiter = KeyframeRequestLimiter(min_interval=0.2, retry_interval=0.5)
    assert limiter.should_send(0.0)
    # many subscribers asking while a request is outstanding: one PLI
    assert not any(limiter.should_send(0.01 * i) for i in range(1, 30))
    # no keyframe after retry_interval: the PLI may have been lost, ask again
    assert limiter.should_send(0.55)
    limiter.keyframe_received()
    # answered, but asked again too soon after the last PLI
    assert not limiter.should_send(0.6)
    assert limiter.should_send(0.8)
    assert limiter.sent_count == 3
    assert limiter.absorbed_count == 30
