"""Which NACKed packets are worth sending again, and which NACKs worth sending.

A receiver that lost a packet asks again and again until it arrives: aiortc repeats its
whole list of missing packets at every new gap, Chromium every round trip. Answering each
request with a copy filled a lossy village link with copies of copies; its queue grew,
the round trip with it, and a Chromium TV at 10 % loss got 5,371 copies for 462 NACKs in
8 s and showed nothing (bench/links.py). So, as mediasoup's RtpStreamSend does, a packet
is sent again only a round trip after its last copy (the subscriber's receiver reports
time it), at most `max_repeats` times, and not once it is too old to be shown
(sfu/tracks.py); and, as a breaker for what those rules cannot foresee, retransmissions
stay within twice the bytes of the stream itself. The same repeat rule keeps the SFU's own
requests to a publisher from coming faster than the publisher can answer.
"""

from __future__ import annotations

from dataclasses import dataclass

# without a measured round trip, this stands for one (mediasoup's DefaultRtt)
DEFAULT_RTT_S = 0.1
# never sooner than this, however short the measured round trip
MIN_INTERVAL_S = 0.02
# a copy is awaited this many round trips before another is sent: the copy and the next
# request each ride the link's jitter, and one round trip would often send a second copy
# of a packet whose first is still on its way
ROUND_TRIPS = 1.0
# how many sequence numbers' histories are kept before the oldest are forgotten
HISTORY = 1024
# a history older than this is another packet's: sequence numbers come round again
FORGET_S = 5.0


@dataclass
class _Asked:
    at: float
    count: int


class RepeatLimiter:
    """Per sequence number: how often and when it was last sent again (or asked for)."""

    def __init__(self, max_repeats: int = 10) -> None:
        self.max_repeats = max_repeats
        self._asked: dict[int, _Asked] = {}
        self.suppressed = 0

    def may_repeat(self, seq: int, now: float, rtt: float | None) -> bool:
        """Whether `seq` may be sent (asked for) again now."""
        asked = self._asked.get(seq)
        if asked is None or now - asked.at > FORGET_S:
            return True
        interval = max(MIN_INTERVAL_S, ROUND_TRIPS * (rtt if rtt is not None else DEFAULT_RTT_S))
        if asked.count >= self.max_repeats or now - asked.at < interval:
            self.suppressed += 1
            return False
        return True

    def record(self, seq: int, now: float) -> None:
        asked = self._asked.get(seq)
        if asked is not None and now - asked.at > FORGET_S:
            asked.count = 0
        if asked is not None:
            asked.at = now
            asked.count += 1
            return
        if len(self._asked) >= HISTORY:
            # dicts keep insertion order: the first entries are the longest asked-for
            for old in list(self._asked)[: HISTORY // 4]:
                del self._asked[old]
        self._asked[seq] = _Asked(now, 1)

    def filter(self, seqs: list[int], now: float, rtt: float | None) -> list[int]:
        """The ones of `seqs` that may be asked for again now, recorded as asked."""
        due = [seq for seq in seqs if self.may_repeat(seq, now, rtt)]
        for seq in due:
            self.record(seq, now)
        return due


class ResendBudget:
    """Retransmitted bytes stay within `share` of the bytes the stream itself sent, with a
    burst of `burst_bytes` (a lost keyframe's packets)."""

    def __init__(self, share: float = 2.0, burst_bytes: int = 128_000) -> None:
        self.share = share
        self.burst_bytes = burst_bytes
        self._credited_at = 0  # bytes forwarded when the budget was last credited
        self._available = float(burst_bytes)
        self.refused = 0

    def spend(self, size: int, bytes_forwarded: int) -> bool:
        earned = (bytes_forwarded - self._credited_at) * self.share
        self._credited_at = bytes_forwarded
        self._available = min(self.burst_bytes, self._available + earned)
        if self._available < size:
            self.refused += 1
            return False
        self._available -= size
        return True
