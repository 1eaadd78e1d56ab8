"""A village link in user space: loss, delay, jitter (and so reordering) and a rate limit,
seeded, in both directions of one aiortc peer's connection.

This machine has no `netem` (the kernel module is missing), so the impairment sits in the
test client's datagram path instead: `impair(pc, profile)` wraps the ICE sockets of an
aiortc RTCPeerConnection, after it gathered and before media flows. Every datagram the
peer sends or receives (STUN, DTLS, RTP, RTCP alike) is dropped with the profile's loss,
otherwise delayed by its delay ± jitter (uniform) and queued behind a token bucket of its
rate; a full queue drops the newest, as a router's tail drop does. A path keeps its order
(a datagram never overtakes the one before it: jitter on the internet is mostly queueing,
which is first-in first-out) except for the profile's `reorder` share, which may overtake
and be overtaken. Per-datagram jitter that reordered everything would make a receiver
NACK every packet that is merely late.
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
    reorder: float = 0.0  # share of datagrams delivered out of order


PROFILES = {
    "clean": LinkProfile("clean"),
    "village_5": LinkProfile("village_5", 0.05, 0.100, 0.050, 1_000_000, reorder=0.01),
    "village_10": LinkProfile("village_10", 0.10, 0.100, 0.050, 1_000_000, reorder=0.01),
    "weak_village": LinkProfile("weak_village", 0.02, 0.080, 0.020, 500_000, reorder=0.01),
    "strong_village": LinkProfile("strong_village", 0.01, 0.050, 0.020, 2_000_000, reorder=0.01),
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
    _last_at: float = 0.0  # when the last in-order datagram is delivered
    down_until: float = 0.0  # an outage: everything is dropped until then (loop time)
    dropped_outage: int = 0
    _pending: set[asyncio.TimerHandle] = field(default_factory=set)
    _closed: bool = False

    def push(self, data: bytes, addr: Any) -> None:
        if self._closed:  # the peer is closing: its last datagrams go nowhere
            return
        self.sent += 1
        profile = self.profile
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now < self.down_until:
            self.dropped_outage += 1
            return
        if profile.loss and self.rng.random() < profile.loss:
            self.dropped += 1
            return
        at = now
        if profile.rate_bps:
            start = max(now, self._free_at)
            if start - now > profile.queue_s:
                self.dropped_queue += 1
                return
            self._free_at = start + len(data) * 8 / profile.rate_bps
            at = self._free_at
        at += profile.delay_s + self.rng.uniform(-profile.jitter_s, profile.jitter_s)
        if not (profile.reorder and self.rng.random() < profile.reorder):
            at = self._last_at = max(at, self._last_at)
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
            "up_dropped": sum(d.dropped + d.dropped_queue + d.dropped_outage for d in up),
            "down_sent": sum(d.sent for d in down),
            "up_dropped_by_queue": sum(d.dropped_queue for d in up),
            "down_dropped": sum(d.dropped + d.dropped_queue + d.dropped_outage for d in down),
        }

    def change(self, profile: LinkProfile) -> None:
        """The link becomes `profile` from now on (both ways; a village's link improves)."""
        self.profile = profile
        for up, down in self.directions:
            up.profile = down.profile = profile

    def outage(self, seconds: float) -> None:
        """Nothing gets through either way for `seconds` from now (a cable pulled)."""
        until = asyncio.get_running_loop().time() + seconds
        for up, down in self.directions:
            up.down_until = down.down_until = until

    def close(self) -> None:
        for up, down in self.directions:
            up.close()
            down.close()


def _sender(inner: asyncio.DatagramTransport) -> Callable[[bytes, Any], None]:
    """Sends on `inner` unless it closed meanwhile (ICE drops the sockets it did not pick)."""

    def send(data: bytes, addr: Any) -> None:
        if not inner.is_closing():
            inner.sendto(data, addr)

    return send


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
            uplink = Direction(profile, random.Random(rng.random()), _sender(inner))
            received = protocol.datagram_received
            downlink = Direction(profile, random.Random(rng.random()), received)
            protocol.transport = _ImpairedTransport(inner, uplink)
            protocol.datagram_received = downlink.push
            impairment.directions.append((uplink, downlink))
    return impairment
