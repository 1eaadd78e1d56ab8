"""Media on a fixed range of UDP ports, so that a county's firewall rule can be written.

aioice binds each host candidate to an ephemeral port (`local_addr=(address, 0)`) and has
no setting for a range. The server's own connections (never a test's client peers in the
same process) have their host-candidate gathering replaced, per connection, by one that
binds inside the range: ports are tried from a rotating cursor, one in use (another
worker's, another program's) is skipped. Server-reflexive candidates are gathered on those
sockets as aioice would; a TURN allocation, if the server is given one, is an outbound
socket to the TURN server and keeps an ephemeral port.

With an announced address (mediasoup's `announcedIp`, LiveKit's `node_ip`), as in a
container whose range is published (`docker run -p 40000-40099:40000-40099/udp`, no host
networking): each component binds one socket on every interface (0.0.0.0) in the range
and its one host candidate names the announced address with that port. The container's
own addresses appear in no SDP; checks sent to the announced address reach the socket
through the port mapping, and its answers go back the same way.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import random
import socket
import types
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aioice import turn
from aioice.candidate import Candidate, candidate_foundation, candidate_priority
from aioice.ice import Connection, StunProtocol, server_reflexive_candidate
from aiortc import RTCPeerConnection

logger = logging.getLogger(__name__)


class PortsExhausted(OSError):
    """Every port of the range is taken on this address."""


@dataclass(frozen=True)
class PortRange:
    first: int
    last: int

    def __post_init__(self) -> None:
        if not 1024 <= self.first <= self.last <= 65535:
            raise ValueError(f"a UDP port range is 1024-65535, first <= last: {self}")

    @classmethod
    def parse(cls, text: str) -> PortRange:
        """`"40000-40999"`."""
        first, sep, last = text.strip().partition("-")
        if not sep or not first.strip().isdigit() or not last.strip().isdigit():
            raise ValueError(f"a UDP port range is written FIRST-LAST, not {text!r}")
        return cls(int(first), int(last))

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"

    def __len__(self) -> int:
        return self.last - self.first + 1


class PortAllocator:
    """Binds datagram endpoints inside one range, for one process."""

    def __init__(self, ports: PortRange, announced_address: str | None = None) -> None:
        self.ports = ports
        self.announced_address = announced_address
        # processes start at different places, so that workers seldom try the same port
        self._cursor = random.randrange(len(ports))

    async def bind(
        self, protocol_factory: Callable[[], StunProtocol], address: str
    ) -> tuple[asyncio.DatagramTransport, StunProtocol]:
        loop = asyncio.get_running_loop()
        for _ in range(len(self.ports)):
            port = self.ports.first + self._cursor
            self._cursor = (self._cursor + 1) % len(self.ports)
            try:
                transport, protocol = await loop.create_datagram_endpoint(
                    protocol_factory, local_addr=(address, port)
                )
            except OSError as exc:
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    continue
                raise
            return transport, protocol
        raise PortsExhausted(
            errno.EADDRINUSE, f"every UDP port of {self.ports} is in use on {address}"
        )

    def confine(self, pc: RTCPeerConnection) -> None:
        """Make `pc`'s ICE gather its host candidates inside the range: call it after its
        transceivers are added and before setLocalDescription (which gathers)."""
        for transceiver in pc.getTransceivers():
            dtls = transceiver.sender.transport
            if dtls is None:
                continue
            connection: Connection = dtls.transport.iceGatherer._connection
            if getattr(connection, "_lighthouse_ports", None) is self:
                continue
            original = connection.get_component_candidates
            connection.get_component_candidates = types.MethodType(  # type: ignore[method-assign]
                _gatherer(self, original), connection
            )
            connection._lighthouse_ports = self  # type: ignore[attr-defined]


Gather = Callable[..., Awaitable[list[Candidate]]]


def _gatherer(allocator: PortAllocator, original: Gather) -> Callable[..., Any]:
    async def get_component_candidates(
        self: Connection, component: int, addresses: list[str], timeout: int = 5
    ) -> list[Candidate]:
        # aioice's own host gathering (ice.py, get_component_candidates), bound in range
        candidates: list[Candidate] = []
        protocols: list[StunProtocol] = []
        announced = allocator.announced_address
        for address in ["0.0.0.0"] if announced else addresses:
            try:
                transport, protocol = await allocator.bind(lambda: StunProtocol(self), address)
            except PortsExhausted:
                raise
            except OSError as exc:
                logger.info("could not bind to %s: %s", address, exc)
                continue
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, turn.UDP_SOCKET_BUFFER_SIZE)
            host, port = transport.get_extra_info("sockname")[:2]
            host = announced or host
            protocol.local_candidate = Candidate(
                foundation=candidate_foundation("host", "udp", host),
                component=component,
                transport="udp",
                priority=candidate_priority(component, "host"),
                host=host,
                port=port,
                type="host",
            )
            protocols.append(protocol)
            candidates.append(protocol.local_candidate)
        self._protocols += protocols
        if self.stun_server and not announced:  # the announced address is the public one
            reflexive = [
                asyncio.ensure_future(server_reflexive_candidate(p, self.stun_server))
                for p in protocols
                if ipaddress.ip_address(p.local_candidate.host).version == 4
            ]
            if reflexive:
                done, pending = await asyncio.wait(reflexive, timeout=timeout)
                candidates += [t.result()[0] for t in done if t.exception() is None]
                for task in pending:
                    task.cancel()
        # TURN (an outbound allocation) as aioice does it; no host sockets of its own
        return candidates + await original(component, [], timeout)

    return get_component_candidates
