"""How many WebSockets one client address, and everybody together, may hold open.

Each socket is a task and buffers on the server: 300 sockets that only pinged were all
kept. The per-address cap is generous because a carrier's NAT can put many villages
behind one address; the total bounds the server whatever the addresses.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

PER_ADDRESS = 200
TOTAL = 5000


class SocketCaps:
    def __init__(self, per_address: int = PER_ADDRESS, total: int = TOTAL) -> None:
        self.per_address = per_address
        self.total = total
        self._open: dict[str, int] = {}
        self._count = 0

    def admit(self, address: str) -> bool:
        """Count a new socket in, or say no (the caller answers `refusal()`)."""
        held = self._open.get(address, 0)
        if held >= self.per_address or self._count >= self.total:
            return False
        self._open[address] = held + 1
        self._count += 1
        return True

    def release(self, address: str) -> None:
        held = self._open.get(address, 0)
        if held <= 1:
            self._open.pop(address, None)
        else:
            self._open[address] = held - 1
        self._count = max(0, self._count - 1)

    async def serve(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        """Run a socket's handler if its address (and the server) have room for it; the
        place is given back when the handler returns."""
        address = request.remote or "?"
        if not self.admit(address):
            return self.refusal()
        try:
            return await handler(request)
        finally:
            self.release(address)

    @staticmethod
    def refusal() -> web.Response:
        return web.json_response(
            {
                "error": {
                    "code": "too_many_connections",
                    "message": "too many connections from this address; try again later",
                }
            },
            status=429,
            headers={"Retry-After": "10"},
        )
