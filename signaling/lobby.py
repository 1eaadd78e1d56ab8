"""The terminals' lobby: `GET /ws/terminal`, one idle WebSocket per paired TV.

A TV with no meeting holds this socket open. When a meeting that invites its village
starts, the server pushes `meeting_started` with a meeting token and the TV joins by
itself (auto-answer); `meeting_ended` sends it back to its idle screen. Which terminals
are connected here is what "online" means for a meeting's invitation list.

Messages (JSON): client `hello {token}` (the terminal's API token) and `ping`; server
`welcome {terminal_id, name}`, `pong`, `meeting_started {meeting_id, room_id, room_name,
topic, token}`, `meeting_ended {meeting_id, room_id}` and `error {code, message}` (after
which the server closes the socket if the token is at fault). See docs/protocol.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from .caps import SocketCaps

logger = logging.getLogger(__name__)

MAX_LOBBY_FRAME = 8 * 1024
HELLO_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class TerminalIdentity:
    """A paired TV, as its API token says."""

    terminal_id: int
    participant_id: str  # "terminal:12"
    name: str
    org_path: str
    token_id: str
    # a token signed with the current key, when the TV's was signed with one being
    # rotated out: sent with the welcome, and the TV keeps it instead
    renewed_token: str | None = None
    # a duty kiosk (/duty) is no meeting venue: never invited, never listed
    meeting_venue: bool = True


class LobbyRefusal(Exception):
    """The hello cannot be accepted: a bad, expired or revoked terminal token."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class LobbySocket:
    def __init__(self, ws: web.WebSocketResponse, identity: TerminalIdentity) -> None:
        self.ws = ws
        self.identity = identity
        self._lock = asyncio.Lock()

    async def send(self, message: dict[str, Any]) -> None:
        if self.ws.closed:
            return
        try:
            async with self._lock:
                await self.ws.send_str(json.dumps(message, ensure_ascii=False))
        except (ConnectionError, RuntimeError):  # it is closing: its handler cleans up
            logger.debug("lobby send to terminal %s failed", self.identity.terminal_id)


Authenticate = Callable[[str], Awaitable[TerminalIdentity]]
Greeting = Callable[[TerminalIdentity], Awaitable[dict[str, Any] | None]]
OnlineChange = Callable[[TerminalIdentity, bool], Awaitable[None]]


def chain_greetings(*greetings: Greeting) -> Greeting:
    """The first of these greetings that has something for the TV (a meeting before duty)."""

    async def greeting(identity: TerminalIdentity) -> dict[str, Any] | None:
        for each in greetings:
            message = await each(identity)
            if message is not None:
                return message
        return None

    return greeting


class TerminalLobby:
    def __init__(
        self,
        authenticate: Authenticate,
        *,
        greeting: Greeting | None = None,
        on_online: OnlineChange | None = None,
        idle_timeout_s: float = 30.0,
    ) -> None:
        self.authenticate = authenticate
        # the invitation a TV gets on connecting (a meeting already running for it)
        self.greeting = greeting
        self.on_online = on_online
        self.idle_timeout_s = idle_timeout_s
        self.caps = SocketCaps()
        self.sockets: dict[int, LobbySocket] = {}

    def is_online(self, terminal_id: int) -> bool:
        return terminal_id in self.sockets

    def online(self) -> list[TerminalIdentity]:
        return [s.identity for s in self.sockets.values()]

    async def send_to(self, terminal_id: int, message: dict[str, Any]) -> bool:
        socket = self.sockets.get(terminal_id)
        if socket is None:
            return False
        await socket.send(message)
        return True

    async def handle(self, request: web.Request) -> web.StreamResponse:
        return await self.caps.serve(request, self._handle)

    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_LOBBY_FRAME, heartbeat=None)
        await ws.prepare(request)
        socket: LobbySocket | None = None
        try:
            identity = await self._hello(ws)
            if identity is None:
                return ws
            socket = LobbySocket(ws, identity)
            previous = self.sockets.get(identity.terminal_id)
            self.sockets[identity.terminal_id] = socket
            if previous is not None:  # the same TV reloaded: the old socket is stale
                await previous.send(
                    {"type": "error", "code": "replaced", "message": "connected again"}
                )
                await previous.ws.close(code=WSCloseCode.POLICY_VIOLATION)
            else:
                await self._online(identity, True)
            welcome = {
                "type": "welcome",
                "terminal_id": identity.terminal_id,
                "name": identity.name,
            }
            if identity.renewed_token:
                welcome["token"] = identity.renewed_token
            await socket.send(welcome)
            if self.greeting is not None:
                invitation = await self.greeting(identity)
                if invitation is not None:
                    await socket.send(invitation)
            await self._serve(socket)
        finally:
            if socket is not None and self.sockets.get(socket.identity.terminal_id) is socket:
                del self.sockets[socket.identity.terminal_id]
                await self._online(socket.identity, False)
            if not ws.closed:
                await ws.close()
        return ws

    async def _hello(self, ws: web.WebSocketResponse) -> TerminalIdentity | None:
        try:
            msg = await ws.receive(timeout=HELLO_TIMEOUT_S)
        except TimeoutError:
            await _refuse(ws, "hello_timeout", "send hello with the terminal token first")
            return None
        if msg.type != WSMsgType.TEXT:
            return None
        try:
            message = json.loads(msg.data)
        except (ValueError, RecursionError):
            await _refuse(ws, "invalid_json", "the frame is not valid JSON")
            return None
        if not isinstance(message, dict):  # "[1]", "null", "7": no .get() to call
            await _refuse(ws, "invalid_message", "the first message must be hello {token}")
            return None
        token = message.get("token")
        if message.get("type") != "hello" or not isinstance(token, str) or not token:
            await _refuse(ws, "invalid_message", "the first message must be hello {token}")
            return None
        try:
            return await self.authenticate(token)
        except LobbyRefusal as refusal:
            await _refuse(ws, refusal.code, refusal.message)
            return None

    async def _serve(self, socket: LobbySocket) -> None:
        ws = socket.ws
        while not ws.closed:
            try:
                msg = await ws.receive(timeout=self.idle_timeout_s)
            except TimeoutError:
                await socket.send({"type": "error", "code": "idle_timeout", "message": "silent"})
                return
            if msg.type != WSMsgType.TEXT:
                return
            try:
                message = json.loads(msg.data)
            except (ValueError, RecursionError):
                await socket.send(
                    {"type": "error", "code": "invalid_json", "message": "not valid JSON"}
                )
                continue
            if isinstance(message, dict) and message.get("type") == "ping":
                await socket.send({"type": "pong"})
            else:
                await socket.send(
                    {"type": "error", "code": "unknown_type", "message": "only ping is expected"}
                )

    async def _online(self, identity: TerminalIdentity, online: bool) -> None:
        if self.on_online is None:
            return
        try:
            await self.on_online(identity, online)
        except Exception:  # bookkeeping must never drop a TV's socket
            logger.exception("lobby presence update failed for %s", identity.participant_id)

    async def close(self) -> None:
        for socket in tuple(self.sockets.values()):
            await socket.ws.close(code=WSCloseCode.GOING_AWAY)


async def _refuse(ws: web.WebSocketResponse, code: str, message: str) -> None:
    await ws.send_str(json.dumps({"type": "error", "code": code, "message": message}))
    await ws.close(code=WSCloseCode.POLICY_VIOLATION)
