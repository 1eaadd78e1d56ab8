"""One RTP stream's packets back in sequence order, and the holes that stay holes.

The SFU forwards packets as they arrive: out of order now and then, and with upstream
retransmissions arriving late. A file wants them in order. A hole is waited for (its
retransmission may come) for at most `max_wait_s` after the packet that revealed it,
then given up; whoever reads the output learns how many packets were lost before each one.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from aiortc.rtp import RtpPacket

from ..rewriter import seq_diff

# a sequence number this far ahead is a restarted stream, not a loss worth waiting out
_MAX_JUMP = 3000


@dataclass(slots=True)
class Ordered:
    packet: RtpPacket
    arrival: float  # when the packet reached the server (time.monotonic())
    lost_before: int  # packets given up as lost just before this one


class ReorderBuffer:
    def __init__(self, max_wait_s: float = 0.5, max_packets: int = 512) -> None:
        self.max_wait_s = max_wait_s
        self.max_packets = max_packets
        self._held: dict[int, tuple[RtpPacket, float]] = {}
        self._order: list[int] = []  # heap of the held extended sequence numbers
        self._next: int | None = None  # extended sequence number to release next
        self._ssrc: int | None = None
        self._lost = 0
        self.packets_lost = 0
        self.packets_late = 0  # arrived after their place was given up (or duplicates)

    def push(self, packet: RtpPacket, arrival: float) -> list[Ordered]:
        out: list[Ordered] = []
        if self._ssrc is not None and packet.ssrc != self._ssrc:
            out.extend(self.flush())  # the old source's tail, then the new source alone
            self._next = None
        self._ssrc = packet.ssrc
        if self._next is None:
            self._next = packet.sequence_number
            ext = self._next
        else:
            ext = self._next + seq_diff(packet.sequence_number, self._next & 0xFFFF)
            if ext == self._next and not self._held:  # the usual case: next, nothing held
                self._next = ext + 1
                out.append(Ordered(packet, arrival, 0))
                return out
            if ext < self._next or ext in self._held:
                self.packets_late += 1
                return out
            if ext - self._next > _MAX_JUMP:
                out.extend(self.flush())
                self._next = ext
        self._held[ext] = (packet, arrival)
        heapq.heappush(self._order, ext)
        out.extend(self._release(arrival))
        return out

    def _release(self, now: float, force: bool = False) -> list[Ordered]:
        out: list[Ordered] = []
        assert self._next is not None
        while self._order:
            first = self._order[0]
            if first != self._next:
                # a hole: wait for it while the packet after it is fresh and memory allows
                waited = now - self._held[first][1]
                if not force and waited < self.max_wait_s and len(self._held) < self.max_packets:
                    break
                self._lost += first - self._next
                self.packets_lost += first - self._next
                self._next = first
            heapq.heappop(self._order)
            packet, arrival = self._held.pop(first)
            out.append(Ordered(packet, arrival, self._lost))
            self._lost = 0
            self._next = first + 1
        return out

    def flush(self) -> list[Ordered]:
        """Everything held, in order, holes given up (end of stream or a new source)."""
        if self._next is None:
            return []
        return self._release(0.0, force=True)
