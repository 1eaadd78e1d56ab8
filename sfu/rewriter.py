"""Per-subscriber RTP header rewriting: SSRC, sequence numbers and timestamps.

A subscription sends one continuous RTP stream to its subscriber even when the packets
come from different upstream streams over time (a publisher that restarts, or a slot that
switches between publishers). The rewriter keeps the outgoing sequence numbers gap-free
across such switches and the outgoing timestamps advancing with wall-clock time, with all
arithmetic modulo 2**16 / 2**32 so wrap-around is harmless.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

SEQ_MOD = 1 << 16
TS_MOD = 1 << 32

_HEADER = struct.Struct("!BBHII")


def seq_diff(a: int, b: int) -> int:
    """Signed distance a - b between two 16-bit sequence numbers (wrap-around safe)."""
    d = (a - b) & 0xFFFF
    return d - SEQ_MOD if d >= 0x8000 else d


def ts_diff(a: int, b: int) -> int:
    """Signed distance a - b between two 32-bit RTP timestamps (wrap-around safe)."""
    d = (a - b) & 0xFFFFFFFF
    return d - TS_MOD if d >= 0x80000000 else d


def rewrite_header(
    data: bytes | bytearray, payload_type: int, sequence_number: int, timestamp: int, ssrc: int
) -> bytearray:
    """Return a copy of an RTP packet with PT, sequence number, timestamp and SSRC replaced.

    The marker bit, CSRCs, header extensions and payload are kept as they are.
    """
    out = bytearray(data)
    out[1] = (out[1] & 0x80) | (payload_type & 0x7F)
    struct.pack_into("!HII", out, 2, sequence_number & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc)
    return out


def parse_header(data: bytes | bytearray) -> tuple[int, bool, int, int, int]:
    """(payload_type, marker, sequence_number, timestamp, ssrc) of an RTP packet."""
    _, second, seq, ts, ssrc = _HEADER.unpack_from(data, 0)
    return second & 0x7F, bool(second & 0x80), seq, ts, ssrc


@dataclass(slots=True)
class _Source:
    ssrc: int
    seq_offset: int
    ts_offset: int
    highest_in_seq: int
    first_in_seq: int


class StreamRewriter:
    """Maps the packets of one or more upstream RTP streams onto one outgoing stream.

    `rewrite()` returns the outgoing (sequence_number, timestamp) for an upstream packet, or
    None for a packet that belongs to a stream the rewriter has switched away from (a late
    packet of the old publisher must not be sent under the new one's numbering).
    `original_sequence()` maps an outgoing sequence number back for answering NACKs.
    """

    def __init__(self, clock_rate: int, initial_sequence: int = 0, initial_timestamp: int = 0):
        self.clock_rate = clock_rate
        self._source: _Source | None = None
        self._next_seq = initial_sequence & 0xFFFF
        self._last_out_ts = initial_timestamp & 0xFFFFFFFF
        self._last_out_time: float | None = None
        self._started = False

    @property
    def source_ssrc(self) -> int | None:
        return self._source.ssrc if self._source else None

    def switch_source(self, ssrc: int, first_seq: int, first_ts: int, now: float) -> None:
        """Start taking packets from a new upstream stream, first packet (first_seq, first_ts).

        The outgoing sequence continues with the next number; the outgoing timestamp jumps
        by the wall-clock time elapsed since the last packet sent (at least one tick), so the
        subscriber's jitter buffer sees time move forward as it really did.
        """
        if self._started and self._last_out_time is not None:
            elapsed_ticks = max(1, int((now - self._last_out_time) * self.clock_rate))
            out_ts = (self._last_out_ts + elapsed_ticks) & 0xFFFFFFFF
        else:
            out_ts = self._last_out_ts
        self._source = _Source(
            ssrc=ssrc,
            seq_offset=(self._next_seq - first_seq) & 0xFFFF,
            ts_offset=(out_ts - first_ts) & 0xFFFFFFFF,
            highest_in_seq=(first_seq - 1) & 0xFFFF,
            first_in_seq=first_seq,
        )

    def rewrite(self, ssrc: int, seq: int, ts: int, now: float) -> tuple[int, int] | None:
        source = self._source
        if source is None or source.ssrc != ssrc:
            self.switch_source(ssrc, seq, ts, now)
            source = self._source
            assert source is not None
        if seq_diff(seq, source.first_in_seq) < 0:
            # older than the switch point: numbering it would collide with the old source
            return None
        out_seq = (seq + source.seq_offset) & 0xFFFF
        out_ts = (ts + source.ts_offset) & 0xFFFFFFFF
        if seq_diff(seq, source.highest_in_seq) > 0:
            source.highest_in_seq = seq
            self._next_seq = (out_seq + 1) & 0xFFFF
            self._last_out_ts = out_ts
            self._last_out_time = now
        self._started = True
        return out_seq, out_ts

    def original_sequence(self, out_seq: int) -> int | None:
        """The upstream sequence number of an outgoing one, if it belongs to the current source."""
        source = self._source
        if source is None:
            return None
        in_seq = (out_seq - source.seq_offset) & 0xFFFF
        if seq_diff(in_seq, source.first_in_seq) < 0 or seq_diff(in_seq, source.highest_in_seq) > 0:
            return None
        return in_seq

    def rtp_timestamp_for(self, upstream_ts: int) -> int | None:
        """Translate an upstream RTP timestamp (e.g. from a sender report) to the outgoing clock."""
        if self._source is None:
            return None
        return (upstream_ts + self._source.ts_offset) & 0xFFFFFFFF
