"""RTP packets (in order, losses marked) → whole encoded frames, per codec. Nothing decoded.

- VP8 (RFC 7741): a frame is the packets of one timestamp, from a partition start to the
  marker bit; aiortc's `VpxPayloadDescriptor` strips the payload descriptor.
- H.264 (RFC 6184, packetization-mode 1): single NAL units, STAP-A and FU-A become one
  Annex-B access unit per timestamp. aiortc's `h264_depayload` is not used: it returns
  bytes without NAL boundaries and never checks that a fragmented unit is whole, and the
  recorder needs both (keyframes, parameter sets for the container's header).
- Opus: one packet is one frame.

A video frame that lost a packet is dropped, and so is every frame after it up to the next
keyframe: later frames predict from the lost one, and a recording should show a short
freeze rather than smeared pictures. `waiting_for_keyframe` tells the owner to ask for one.
"""

from __future__ import annotations

import struct
from abc import ABC, abstractmethod
from dataclasses import dataclass

from aiortc.codecs.vpx import VpxPayloadDescriptor

from .bitstream import (
    NAL_IDR,
    NAL_PPS,
    NAL_SPS,
    START_CODE,
    avc_codec_string,
    h264_sps_size,
    opus_packet_samples,
    vp8_keyframe_size,
)
from .reorder import Ordered

_STAP_A = 24
_FU_A = 28


@dataclass(frozen=True, slots=True)
class VideoConfig:
    """What a container's video track header needs; a change of it starts a new file."""

    codec: str  # "vp8" or "h264"
    width: int
    height: int
    extradata: bytes = b""  # H.264: SPS and PPS, Annex-B
    codec_string: str = "vp8"  # RFC 6381, for a playback page's MIME type


@dataclass(slots=True)
class Frame:
    data: bytes
    timestamp: int  # RTP timestamp
    ssrc: int
    arrival: float  # arrival of its first packet (time.monotonic())
    keyframe: bool
    duration: int | None = None  # in RTP clock ticks, where the bitstream says (Opus)
    config: VideoConfig | None = None  # on video keyframes
    # a frame that cannot be stored (lost a packet, or waits for a keyframe): it carries
    # no data, only its time, so the streams recorded with it know that video moved on
    dropped: bool = False


class Depacketizer(ABC):
    """Common bookkeeping; subclasses assemble one codec's frames."""

    codec = ""

    def __init__(self) -> None:
        self.frames = 0
        self.frames_dropped = 0
        self.waiting_for_keyframe = False

    @abstractmethod
    def push(self, item: Ordered) -> list[Frame]: ...

    def flush(self) -> list[Frame]:
        """End of stream: a frame still in assembly never got its last packet."""
        return []


class _VideoDepacketizer(Depacketizer):
    def __init__(self) -> None:
        super().__init__()
        self.waiting_for_keyframe = True  # a recording starts at a keyframe
        self._timestamp: int | None = None  # of the frame in assembly
        self._ssrc = 0
        self._arrival = 0.0
        self._last_dropped: int | None = None

    def push(self, item: Ordered) -> list[Frame]:
        out: list[Frame] = []
        packet = item.packet
        if item.lost_before:
            self._lose(out)
        elif self._timestamp is not None and (
            packet.timestamp != self._timestamp or packet.ssrc != self._ssrc
        ):
            # the previous frame lost nothing but never set the marker: it is whole
            out.extend(self._finish())
        if self._timestamp is None:
            if not self._starts_frame(packet.payload):
                self._lose(out)  # the middle of a frame whose start we never saw
                self._dropped(out, packet.timestamp, packet.ssrc, item.arrival)
                return out
            self._timestamp = packet.timestamp
            self._ssrc = packet.ssrc
            self._arrival = item.arrival
        if not self._add(packet.payload):
            self._lose(out)
            return out
        if packet.marker:
            out.extend(self._finish())
        return out

    def flush(self) -> list[Frame]:
        out: list[Frame] = []
        if self._timestamp is not None:
            self._lose(out)
        return out

    def _dropped(self, out: list[Frame], timestamp: int, ssrc: int, arrival: float) -> None:
        if timestamp != self._last_dropped:  # one marker per frame
            self._last_dropped = timestamp
            out.append(Frame(b"", timestamp, ssrc, arrival, False, dropped=True))

    def _lose(self, out: list[Frame]) -> None:
        """The frame in assembly (if any) is lost, and what follows waits for a keyframe."""
        if self._timestamp is not None:
            self.frames_dropped += 1
            self._dropped(out, self._timestamp, self._ssrc, self._arrival)
        self._reset()
        self.waiting_for_keyframe = True

    def _finish(self) -> list[Frame]:
        timestamp, ssrc, arrival = self._timestamp, self._ssrc, self._arrival
        assert timestamp is not None
        frame = self._assemble()
        self._reset()
        out: list[Frame] = []
        if frame is None:
            self.waiting_for_keyframe = True
        elif frame.keyframe:
            self.waiting_for_keyframe = False
        if frame is None or (self.waiting_for_keyframe and not frame.keyframe):
            self.frames_dropped += 1
            self._dropped(out, timestamp, ssrc, arrival)
            return out
        self.frames += 1
        out.append(frame)
        return out

    def _frame(self, data: bytes, keyframe: bool, config: VideoConfig | None) -> Frame:
        assert self._timestamp is not None
        return Frame(data, self._timestamp, self._ssrc, self._arrival, keyframe, None, config)

    # -- per codec ----------------------------------------------------------------------
    def _reset(self) -> None:
        self._timestamp = None

    @abstractmethod
    def _starts_frame(self, payload: bytes) -> bool: ...

    @abstractmethod
    def _add(self, payload: bytes) -> bool:
        """Take one packet's payload; False if it cannot belong to a whole frame."""

    @abstractmethod
    def _assemble(self) -> Frame | None: ...


class Vp8Depacketizer(_VideoDepacketizer):
    codec = "vp8"

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []

    def _reset(self) -> None:
        super()._reset()
        self._parts = []

    def _starts_frame(self, payload: bytes) -> bool:
        # S=1 and partition 0; the descriptor itself is checked when parsed
        return len(payload) > 0 and payload[0] & 0x1F == 0x10

    def _add(self, payload: bytes) -> bool:
        try:
            _, data = VpxPayloadDescriptor.parse(payload)
        except ValueError:
            return False
        self._parts.append(data)
        return True

    def _assemble(self) -> Frame | None:
        data = b"".join(self._parts)
        if not data:
            return None
        size = vp8_keyframe_size(data)
        if size is None:
            if not data[0] & 0x01:  # a keyframe whose header is broken
                return None
            return self._frame(data, False, None)
        return self._frame(data, True, VideoConfig("vp8", size[0], size[1]))


class H264Depacketizer(_VideoDepacketizer):
    codec = "h264"

    def __init__(self) -> None:
        super().__init__()
        self._nals: list[bytes] = []
        self._fragment: bytearray | None = None  # a FU-A unit being put together
        # the last parameter sets seen: encoders may send them once, not with every IDR
        self._sps: bytes | None = None
        self._pps: bytes | None = None

    def _reset(self) -> None:
        super()._reset()
        self._nals = []
        self._fragment = None

    def _starts_frame(self, payload: bytes) -> bool:
        if not payload:
            return False
        if payload[0] & 0x1F == _FU_A:
            return len(payload) > 1 and bool(payload[1] & 0x80)
        return True

    def _add(self, payload: bytes) -> bool:
        if not payload:
            return False
        nal_type = payload[0] & 0x1F
        if 1 <= nal_type <= 23:
            if self._fragment is not None:
                return False
            self._nals.append(payload)
        elif nal_type == _STAP_A:
            if self._fragment is not None:
                return False
            pos = 1
            while pos < len(payload):
                if pos + 2 > len(payload):
                    return False
                (size,) = struct.unpack_from("!H", payload, pos)
                pos += 2
                if size == 0 or pos + size > len(payload):
                    return False
                self._nals.append(payload[pos : pos + size])
                pos += size
        elif nal_type == _FU_A:
            if len(payload) < 3:
                return False
            header = payload[1]
            if header & 0x80:  # start
                if self._fragment is not None:
                    return False
                self._fragment = bytearray(((payload[0] & 0xE0) | (header & 0x1F),))
            elif self._fragment is None:
                return False
            self._fragment += payload[2:]
            if header & 0x40:  # end
                self._nals.append(bytes(self._fragment))
                self._fragment = None
        else:
            return False  # STAP-B, MTAP, FU-B: not in packetization-mode 1
        return True

    def _assemble(self) -> Frame | None:
        if self._fragment is not None or not self._nals:
            return None  # the last fragment of a unit never came
        # After a loss a packet may look like a frame's start and be its second slice
        # (encoders cut pictures into slices): a whole picture starts with the slice whose
        # first_mb_in_slice is 0 (ue(v) 0 is the single bit 1).
        first_slice = next((n for n in self._nals if 1 <= n[0] & 0x1F <= 5), None)
        if first_slice is None or len(first_slice) < 2 or not first_slice[1] & 0x80:
            return None
        keyframe = False
        for nal in self._nals:
            nal_type = nal[0] & 0x1F
            if nal_type == NAL_SPS:
                self._sps = nal
            elif nal_type == NAL_PPS:
                self._pps = nal
            elif nal_type == NAL_IDR:
                keyframe = True
        data = b"".join(START_CODE + nal for nal in self._nals)
        config = None
        if keyframe:
            if self._sps is None or self._pps is None:
                return self._frame(data, False, None)  # undecodable: wait for a whole start
            try:
                width, height = h264_sps_size(self._sps)
            except ValueError:
                return None
            config = VideoConfig(
                "h264",
                width,
                height,
                START_CODE + self._sps + START_CODE + self._pps,
                avc_codec_string(self._sps),
            )
        return self._frame(data, keyframe, config)


class OpusDepacketizer(Depacketizer):
    codec = "opus"

    def push(self, item: Ordered) -> list[Frame]:
        # a lost audio packet is a short gap in time; nothing after it depends on it
        packet = item.packet
        samples = opus_packet_samples(packet.payload)
        if samples is None:
            self.frames_dropped += 1
            return []
        self.frames += 1
        return [Frame(packet.payload, packet.timestamp, packet.ssrc, item.arrival, True, samples)]


def depacketizer_for(mime_type: str) -> Depacketizer | None:
    """A depacketizer for a negotiated codec, or None if the recorder cannot store it."""
    factories: dict[str, type[Depacketizer]] = {
        "video/vp8": Vp8Depacketizer,
        "video/h264": H264Depacketizer,
        "audio/opus": OpusDepacketizer,
    }
    factory = factories.get(mime_type.lower())
    return factory() if factory is not None else None
