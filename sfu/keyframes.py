"""Keyframe detection in RTP payloads, and the upstream keyframe-request limiter.

The SFU never decodes, but it must know where a picture can start: a new subscriber is
fed video from the first packet of a keyframe, and a keyframe arriving answers every
outstanding picture-loss request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# H.264 NAL unit types (RFC 6184)
_NAL_IDR = 5
_NAL_SPS = 7
_STAP_A = 24
_FU_A = 28


def is_vp8_keyframe_start(payload: bytes) -> bool:
    """True if this VP8 RTP payload (RFC 7741) starts a keyframe."""
    if len(payload) < 1:
        return False
    first = payload[0]
    extended = first & 0x80
    start_of_partition = first & 0x10
    partition_id = first & 0x0F
    if not start_of_partition or partition_id != 0:
        return False
    pos = 1
    if extended:
        if len(payload) < 2:
            return False
        ext = payload[1]
        pos = 2
        if ext & 0x80:  # I: picture id present
            if len(payload) <= pos:
                return False
            pos += 2 if payload[pos] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            pos += 1
        if ext & 0x30:  # T or K: TID/KEYIDX byte
            pos += 1
    if len(payload) <= pos:
        return False
    # VP8 frame header: P bit (inverse keyframe flag) is the lowest bit of the first byte
    return (payload[pos] & 0x01) == 0


def _first_slice(slice_data_first_byte: int) -> bool:
    # first_mb_in_slice is ue(v); the value 0 is coded as the single bit 1
    return bool(slice_data_first_byte & 0x80)


def is_h264_keyframe_start(payload: bytes) -> bool:
    """True if this H.264 RTP payload (RFC 6184) starts an IDR picture or carries an SPS.

    An IDR picture may be cut into several slices; only its first slice (first_mb_in_slice
    is 0) is a place where a decoder can start.
    """
    if len(payload) < 1:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type == _NAL_SPS:
        return True
    if nal_type == _NAL_IDR:
        return len(payload) > 1 and _first_slice(payload[1])
    if nal_type == _STAP_A:
        pos = 1
        while pos + 2 < len(payload):
            size = (payload[pos] << 8) | payload[pos + 1]
            pos += 2
            if size == 0 or pos >= len(payload):
                break
            inner = payload[pos] & 0x1F
            if inner == _NAL_SPS:
                return True
            if inner == _NAL_IDR and pos + 1 < len(payload) and _first_slice(payload[pos + 1]):
                return True
            pos += size
        return False
    if nal_type == _FU_A:
        if len(payload) < 2:
            return False
        fu_header = payload[1]
        if not (fu_header & 0x80) or (fu_header & 0x1F) != _NAL_IDR:
            return False
        return len(payload) > 2 and _first_slice(payload[2])
    return False


def keyframe_detector(mime_type: str) -> Callable[[bytes], bool] | None:
    """The keyframe-start predicate for a codec's MIME type, or None for audio/unknown."""
    mime = mime_type.lower()
    if mime == "video/vp8":
        return is_vp8_keyframe_start
    if mime == "video/h264":
        return is_h264_keyframe_start
    return None


@dataclass
class KeyframeRequestLimiter:
    """Deduplicates and rate-limits picture-loss requests sent upstream to one publisher.

    Many subscribers asking at once cause one PLI. While a request is outstanding, new asks
    are absorbed (the coming keyframe answers them all) unless `retry_interval` has passed
    without a keyframe (the PLI or the keyframe may have been lost). After a keyframe
    arrives, the next ask is sent at once but never sooner than `min_interval` after the
    previous PLI, so a storm of asks cannot make the publisher send nothing but keyframes.
    """

    min_interval: float = 0.2
    retry_interval: float = 0.5
    _last_sent: float | None = None
    _outstanding: bool = False
    sent_count: int = 0
    absorbed_count: int = 0

    def should_send(self, now: float) -> bool:
        if self._last_sent is not None:
            since = now - self._last_sent
            if self._outstanding and since < self.retry_interval:
                self.absorbed_count += 1
                return False
            if since < self.min_interval:
                self.absorbed_count += 1
                return False
        self._last_sent = now
        self._outstanding = True
        self.sent_count += 1
        return True

    def keyframe_received(self) -> None:
        self._outstanding = False

    @property
    def outstanding(self) -> bool:
        return self._outstanding
