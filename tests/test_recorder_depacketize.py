"""Depacketization: aiortc's packetizers' output back into the encoder's frames, and what
happens to a frame that lost a packet. Also the bitstream headers the recorder reads."""

from __future__ import annotations

import re

import pytest

from sfu.media.bitstream import h264_sps_size, opus_packet_samples, vp8_keyframe_size
from sfu.media.depacketize import depacketizer_for
from sfu.media.reorder import Ordered

from recorder_support import encode_opus, encode_video, packetize


def nal_units(annexb: bytes) -> list[bytes]:
    return [n.rstrip(b"\x00") for n in re.split(b"\x00\x00\x01", annexb) if n.strip(b"\x00")]


def run(depacketizer, packets, lost: set[int] = frozenset()):
    frames = []
    pending_loss = 0
    for n, packet in enumerate(packets):
        if n in lost:
            pending_loss += 1
            continue
        frames += depacketizer.push(Ordered(packet, 0.0, pending_loss))
        pending_loss = 0
    frames += depacketizer.flush()
    # what was dropped is still reported, without data, so that time moves on
    dropped = [f for f in frames if f.dropped]
    assert all(not f.data for f in dropped)
    assert len({f.timestamp for f in dropped}) == len(dropped)
    return [f for f in frames if not f.dropped]


@pytest.mark.parametrize("codec", ["vp8", "h264"])
def test_frames_come_back_whole_with_keyframes_and_picture_size(codec):
    encoded = encode_video(codec, 60, keyframe_every=30)
    packets = packetize(codec, [f.data for f in encoded])
    assert len(packets) > len(encoded)  # keyframes span several packets
    if codec == "h264":  # all three packetizations were exercised
        assert {p.payload[0] & 0x1F for p in packets} >= {24, 28}
    frames = run(depacketizer_for({"vp8": "video/VP8", "h264": "video/H264"}[codec]), packets)
    assert len(frames) == 60
    assert [f.keyframe for f in frames] == [f.keyframe for f in encoded]
    assert [f.timestamp for f in frames] == [p.timestamp for p in packets if p.marker]
    for got, sent in zip(frames, encoded, strict=True):
        if codec == "vp8":
            assert got.data == sent.data
        else:
            assert nal_units(got.data) == nal_units(sent.data)
    config = frames[0].config
    assert config is not None and (config.width, config.height) == (320, 180)
    if codec == "h264":
        assert config.codec_string.startswith("avc1.42")
        assert [n[0] & 0x1F for n in nal_units(config.extradata)] == [7, 8]


@pytest.mark.parametrize("codec", ["vp8", "h264"])
def test_a_lost_packet_drops_frames_until_the_next_keyframe(codec):
    encoded = encode_video(codec, 60, keyframe_every=30)
    packets = packetize(codec, [f.data for f in encoded])
    # packetize() stamps frame k with 5000 + 3600 k
    victim = next(i for i, p in enumerate(packets) if p.timestamp == 5000 + 10 * 3600)
    depacketizer = depacketizer_for({"vp8": "video/VP8", "h264": "video/H264"}[codec])
    frames = run(depacketizer, packets, lost={victim})
    # frames 10..29 are gone (they predict from 10); 30 is a keyframe
    assert [(f.timestamp - 5000) // 3600 for f in frames] == [*range(10), *range(30, 60)]
    assert frames[10].keyframe
    assert depacketizer.frames_dropped == 19  # frame 10 itself (one packet) was never seen
    assert not depacketizer.waiting_for_keyframe


def test_h264_fragment_without_its_end_and_the_middle_of_a_frame_are_not_kept():
    encoded = encode_video("h264", 2, keyframe_every=30, noise=True)
    packets = packetize("h264", [f.data for f in encoded])
    fu = [i for i, p in enumerate(packets) if p.payload[0] & 0x1F == 28]
    assert len(fu) >= 2
    # the keyframe's last fragment is lost and the stream ends: nothing half-made comes out
    depacketizer = depacketizer_for("video/H264")
    last_of_key = max(i for i in fu if packets[i].timestamp == packets[0].timestamp)
    assert run(depacketizer, packets[:last_of_key]) == []
    # a stream joined in the middle of a fragmented unit waits for a keyframe
    depacketizer = depacketizer_for("video/H264")
    assert run(depacketizer, packets[fu[1] :]) == []
    assert depacketizer.waiting_for_keyframe


def test_h264_a_picture_whose_first_slice_was_lost_is_not_kept():
    # encoders cut pictures into slices; after a loss the second slice looks like a start
    encoded = encode_video("h264", 3, noise=True, slices=4)
    packets = packetize("h264", [f.data for f in encoded])
    first = next(i for i, p in enumerate(packets) if p.payload[0] & 0x1F in (5, 28))
    slice_starts = [
        i
        for i, p in enumerate(packets)
        if p.timestamp == packets[0].timestamp
        and (p.payload[0] & 0x1F == 5 or (p.payload[0] & 0x1F == 28 and p.payload[1] & 0x80))
    ]
    assert len(slice_starts) >= 2 and slice_starts[0] == first
    depacketizer = depacketizer_for("video/H264")
    assert run(depacketizer, packets, lost=set(range(first, slice_starts[1]))) == []
    assert depacketizer.waiting_for_keyframe
    assert len(run(depacketizer_for("video/H264"), packets)) == 3  # whole, it is kept


def test_opus_packets_are_frames_with_their_duration():
    packets = packetize("opus", encode_opus(5), step=960)
    frames = run(depacketizer_for("audio/opus"), packets, lost={2})
    assert [f.duration for f in frames] == [960] * 4
    assert [f.timestamp for f in frames] == [p.timestamp for i, p in enumerate(packets) if i != 2]


def test_bitstream_headers():
    vp8 = encode_video("vp8", 1, width=640, height=360)[0].data
    assert vp8_keyframe_size(vp8) == (640, 360)
    for width, height in ((640, 360), (1280, 720), (320, 180)):
        h264 = encode_video("h264", 1, width=width, height=height)[0].data
        sps = next(n for n in nal_units(h264) if n[0] & 0x1F == 7)
        assert h264_sps_size(sps) == (width, height)
    assert opus_packet_samples(bytes([0x78])) == 960  # CELT FB 20 ms, one frame
    assert opus_packet_samples(bytes([0x79])) == 1920  # two frames
    assert opus_packet_samples(bytes([0x1B, 0x02])) == 5760  # SILK 60 ms x 2 frames
    assert opus_packet_samples(bytes([0x1B, 0x03])) is None  # 180 ms: more than Opus allows
    assert opus_packet_samples(b"") is None
