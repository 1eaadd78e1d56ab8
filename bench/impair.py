"""A village link in user space: loss, delay, jitter (and so reordering) and a rate limit,
seeded, in both directions of one aiortc peer's connection.

This machine has no `netem` (the kernel module is missing), so the impairment sits in the
test client's datagram path instead: `impair(pc, profile)` wraps the ICE sockets of an
aiortc RTCPeerConnection, after it gathered and before media flows. Every datagram the
peer sends or receives (STUN, DTLS, RTP, RTCP alike) is dropped with the profile's loss,
otherwise delayed by its delay ± jitter (uniform, so later packets overtake earlier ones)
and queued behind a token bucket of its rate; a full queue drops the newest, as a
router's tail drop does.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class LinkProfile:
    name: str
    loss: float = 0.0  # share of datagrams dropped, each direction
    delay_s: float = 0.0  # one way
    jitter_s: float = 0.0  # ± around the delay
    rate_bps: int | None = None  # each direction; None: unlimited
    queue_s: float = 0.3  # the most the rate limit queues before it drops


PROFILES = {
    "clean": LinkProfile("clean"),
    "village_5": LinkProfile("village_5", 0.05, 0.100, 0.050, 1_000_000),
    "village_10": LinkProfile("village_10", 0.10, 0.100, 0.050, 1_000_000),
    "weak_village": LinkProfile("weak_village", 0.02, 0.080, 0.020, 500_000),
}


@dataclass
class Direction:
    """One direction of the link: its own random stream, its own bucket."""

    profile: LinkProfile
    rng: random.Random
    deliver: Callable[[bytes, Any], None]
    sent: int = 0
    dropped: int = 0
    dropped_queue: int = 0
    _free_at: float = 0.0  # when the rate limit has sent everything queued so far
    _pending: set[asyncio.TimerHandle] = field(default_factory=set)
    _closed: bool = False

    def push(self, data: bytes, addr: Any) -> None:
        if self._closed:  # the peer is closing: its last datagrams go nowhere
            return
        self.sent += 1
        profile = self.profile
        if profile.loss and self.rng.random() < profile.loss:
            self.dropped += 1
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        at = now
        if profile.rate_bps:
            start = max(now, self._free_at)
            if start - now > profile.queue_s:
                self.dropped_queue += 1
                return
            self._free_at = start + len(data) * 8 / profile.rate_bps
            at = self._free_at
        at += profile.delay_s + self.rng.uniform(-profile.jitter_s, profile.jitter_s)
        if len(self._pending) > 512:  # forget the delivered ones now and then
            self._pending = {h for h in self._pending if h.when() > now}
        self._pending.add(loop.call_at(max(at, now), self.deliver, data, addr))

    def close(self) -> None:
        self._closed = True
        for handle in self._pending:
            handle.cancel()
        self._pending.clear()


class _ImpairedTransport:
    """Stands in for an ICE socket's transport: sends go through the uplink."""

    def __init__(self, inner: asyncio.DatagramTransport, uplink: Direction) -> None:
        self._inner = inner
        self._uplink = uplink

    def sendto(self, data: bytes, addr: Any = None) -> None:
        self._uplink.push(bytes(data), addr)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@dataclass
class Impairment:
    profile: LinkProfile
    directions: list[tuple[Direction, Direction]] = field(default_factory=list)

    def stats(self) -> dict[str, int]:
        up = [u for u, _ in self.directions]
        down = [d for _, d in self.directions]
        return {
            "up_sent": sum(d.sent for d in up),
            "up_dropped": sum(d.dropped + d.dropped_queue for d in up),
            "down_sent": sum(d.sent for d in down),
            "down_dropped": sum(d.dropped + d.dropped_queue for d in down),
        }

    def close(self) -> None:
        for up, down in self.directions:
            up.close()
            down.close()


def impair(pc: Any, profile: LinkProfile, seed: int = 1) -> Impairment:
    """Impair every ICE socket `pc` has gathered (call after setLocalDescription)."""
    impairment = Impairment(profile)
    rng = random.Random(seed)
    for transceiver in pc.getTransceivers():
        dtls = transceiver.sender.transport
        if dtls is None:
            continue
        connection = dtls.transport.iceGatherer._connection
        for protocol in connection._protocols:
            if isinstance(protocol.transport, _ImpairedTransport):
                continue
            inner = protocol.transport
            uplink = Direction(profile, random.Random(rng.random()), inner.sendto)
            received = protocol.datagram_received
            downlink = Direction(profile, random.Random(rng.random()), received)
            protocol.transport = _ImpairedTransport(inner, uplink)
            protocol.datagram_received = downlink.push
            impairment.directions.append((uplink, downlink))
    return impairment
