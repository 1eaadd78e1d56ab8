"""The client's address and scheme behind a reverse proxy the operator trusts.

Rate limits (logins, pairing, sockets per address), audit entries and the session cookie's
`Secure` flag all read `request.remote` and `request.secure`. Behind a TLS proxy those are
the proxy's: every village would share one login budget. So a request that comes from a
trusted proxy (`[server] trusted_proxies`: addresses or networks) is re-addressed from
its `X-Forwarded-For`, walked from the right past every trusted hop to the first address
that is not one (what nginx's `real_ip_recursive` does), and takes its scheme from the
proxy's `X-Forwarded-Proto`. From anybody else these headers are ignored: a client
cannot pick its own address.

aiohttp-remotes was considered: its XForwardedFiltered believes the headers from any
peer, and XForwardedStrict refuses (400) a request whose chain is not exactly as long as
the configured list, which a village office's own proxy would make longer.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import hdrs, web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """Addresses or CIDR networks; ValueError names a bad one."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(str(entry).strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an address or network: {entry!r}") from None
    return tuple(networks)


# the client behind a trusted proxy, kept on the original request for the access log
CLIENT_ADDRESS = web.RequestKey("client_address", str)


class TrustedProxies:
    def __init__(self, networks: Iterable[Network]) -> None:
        self.networks = tuple(networks)

    def trusts(self, address: str | None) -> bool:
        if not address:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:  # a Unix socket's peer: ''
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)

    def client_address(self, peer: str | None, forwarded_for: list[str]) -> str | None:
        """The first untrusted hop from the right; the peer itself unless it is trusted."""
        if not self.trusts(peer):
            return peer
        client = peer
        hops = [hop.strip() for header in forwarded_for for hop in header.split(",")]
        for hop in reversed(hops):
            try:
                ipaddress.ip_address(hop)
            except ValueError:  # garbage beyond here was written by someone untrusted
                break
            client = hop
            if not self.trusts(hop):
                break
        return client

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        peer = request.remote
        if not self.networks or not self.trusts(peer):
            return await handler(request)
        client = self.client_address(peer, request.headers.getall(hdrs.X_FORWARDED_FOR, []))
        changes: dict[str, str] = {}
        if client and client != peer:
            changes["remote"] = client
            # the access log is written for the original request, not the clone
            request[CLIENT_ADDRESS] = client
        protos = request.headers.getall(hdrs.X_FORWARDED_PROTO, [])
        proto = protos[-1].split(",")[-1].strip().lower() if protos else ""
        if proto in ("http", "https"):
            changes["scheme"] = proto
        return await handler(request.clone(**changes) if changes else request)  # type: ignore[arg-type]
