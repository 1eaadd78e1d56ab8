"""The WebSocket signaling endpoint: one socket per client, JSON messages per docs/protocol.md.

A message that fails validation or a request that fails gets an `error` reply; nothing a
client sends can close another client's media, the room, or the server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from sfu.negotiation import NegotiationError
from sfu.plane import WorkerUnavailable
from sfu.room import Peer, Room
from sfu.vocabulary import Role

from .caps import SocketCaps
from .schema import CONTROL_ACTIONS, MAX_FRAME_BYTES, MessageError, validate_message
from .tokens import TokenError, TokenIssuer
from .turn import IceServersForClients

logger = logging.getLogger(__name__)

# A socket must join this soon after it connects.
JOIN_TIMEOUT_S = 10.0

# Errors after which the server closes the socket: the client cannot fix them by retrying.
_FATAL_CODES = {"invalid_token", "token_expired", "unknown_room"}

# Peers moved off a dead worker come back spread over this much time per peer (at most
# MOVE_SPREAD_MAX_MS): 250 TVs over one second, one TV at once.
MOVE_SPREAD_MS_PER_PEER = 4
MOVE_SPREAD_MAX_MS = 2000


# negotiation refusals worth the IT office's eye: what a browser could not offer or take
_LOGGED_REFUSALS = frozenset({"bad_sdp", "codec_not_supported"})


@dataclass(frozen=True)
class Presence:
    """A participant joined (online) or left a room: for terminals' state and timelines."""

    room_id: str
    participant_id: str
    name: str
    online: bool
    role: str = Role.VIEWER
    # a supervisor's hidden view (and why: drop_in | patrol): audited, never a timeline event
    hidden: bool = False
    purpose: str | None = None
    room_name: str = ""
    # where the connection came from, and, when it took the seat over from another
    # connection (a second use of the same token), that one's address: audited
    remote: str | None = None
    took_over_from: str | None = None


class Connection:
    """One client's WebSocket and, once joined, its Peer."""

    def __init__(self, ws: web.WebSocketResponse, remote: str | None, user_agent: str = "") -> None:
        self.ws = ws
        self.remote = remote
        self.user_agent = user_agent
        self.peer: Peer | None = None
        self.purpose: str | None = None  # a hidden viewer's, from its token
        self.instance: str | None = None  # the client page's id, from its join
        self._send_lock = asyncio.Lock()

    async def send(self, message: Mapping[str, Any]) -> None:
        if self.ws.closed:
            return
        async with self._send_lock:
            await self.ws.send_str(json.dumps(message, ensure_ascii=False))

    async def error(self, code: str, message: str, request_id: object = None) -> None:
        reply: dict[str, Any] = {"type": "error", "code": code, "message": message}
        if request_id is not None:
            reply["id"] = request_id
        await self.send(reply)


class SignalingService:
    """Serves `GET /ws`. Rooms are looked up by the id in the client's token."""

    def __init__(
        self,
        rooms: Mapping[str, Room],
        tokens: TokenIssuer,
        idle_timeout_s: float = 30.0,
        join_timeout_s: float = JOIN_TIMEOUT_S,
        is_revoked: Callable[[str], Awaitable[bool]] | None = None,
        on_presence: Callable[[Presence], Awaitable[None]] | None = None,
        ice_servers: IceServersForClients | None = None,
    ) -> None:
        self.rooms = rooms
        self.tokens = tokens
        # asks the database whether the API token a meeting token came from was revoked
        self.is_revoked = is_revoked
        # told (participant id, online) when a participant joins or leaves: terminals'
        # online state in the database follows it
        self.on_presence = on_presence
        # handed to a client in `joined`, never to a page: TURN credentials are minted
        # per participant (signaling/turn.py)
        self.ice_servers = ice_servers or IceServersForClients()
        self.idle_timeout_s = idle_timeout_s
        self.join_timeout_s = join_timeout_s
        self._by_participant: dict[tuple[str, str, bool], Connection] = {}
        self.connections: set[Connection] = set()
        self.caps = SocketCaps()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        return await self.caps.serve(request, self._handle)

    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_BYTES, receive_timeout=None)
        await ws.prepare(request)
        connection = Connection(ws, request.remote, request.headers.get("User-Agent", "")[:200])
        self.connections.add(connection)
        try:
            await self._serve(connection)
        finally:
            self.connections.discard(connection)
            await self._drop(connection)
            if not ws.closed:
                await ws.close(code=WSCloseCode.GOING_AWAY)
        return ws

    async def _serve(self, connection: Connection) -> None:
        ws = connection.ws
        loop = asyncio.get_running_loop()
        # a socket that has not joined by then is closed, pings or not: sockets that only
        # ping would otherwise be held for ever
        join_by = loop.time() + self.join_timeout_s
        while not ws.closed:
            timeout = self.idle_timeout_s
            if connection.peer is None:
                timeout = min(timeout, max(0.0, join_by - loop.time()))
            try:
                msg = await ws.receive(timeout=timeout)
            except TimeoutError:
                if connection.peer is None and loop.time() >= join_by:
                    await connection.error("join_timeout", "join within 10 s of connecting")
                    return
                # the peer is dropped before the socket closes (see handle())
                await connection.error("idle_timeout", "nothing received for too long")
                return
            if msg.type == WSMsgType.TEXT:
                await self._on_text(connection, msg.data)
            elif msg.type == WSMsgType.BINARY:
                await connection.error("invalid_json", "binary frames are not accepted")
            elif msg.type == WSMsgType.ERROR:
                # aiohttp closes an oversized frame with 1009 itself
                logger.info("websocket error from %s: %s", connection.remote, ws.exception())
                return
            else:  # CLOSE, CLOSING, CLOSED
                return

    async def _on_text(self, connection: Connection, text: str) -> None:
        if len(text.encode()) > MAX_FRAME_BYTES:
            await connection.error("frame_too_large", "messages are limited to 256 KiB")
            return
        try:
            raw = json.loads(text)
        except ValueError:
            await connection.error("invalid_json", "the frame is not valid JSON")
            return
        except RecursionError:  # e.g. 100,000 nested brackets: no message is that deep
            await connection.error("bad_message", "the frame is nested too deeply")
            return
        try:
            message = validate_message(raw)
            await self._dispatch(connection, message)
        except MessageError as exc:
            await connection.error(exc.code, exc.message, exc.request_id)
            if exc.code in _FATAL_CODES:
                await connection.ws.close(code=WSCloseCode.POLICY_VIOLATION)
        except NegotiationError as exc:
            peer = connection.peer
            if peer is not None and exc.code in _LOGGED_REFUSALS:
                peer.room.refusals.refused(
                    exc.code, peer.participant_id, connection.user_agent, exc.message
                )
            await connection.error(exc.code, exc.message, raw.get("id"))
        except WorkerUnavailable as exc:
            # a media worker went away or is full: the client retries (join again)
            await connection.error("worker_unavailable", f"{exc}; try again", raw.get("id"))
        except Exception:
            logger.exception("signaling request failed: %s", raw.get("type"))
            await connection.error(
                "internal_error", "the server could not do this; it is logged", raw.get("id")
            )

    async def _dispatch(self, connection: Connection, message: dict[str, Any]) -> None:
        kind = message["type"]
        request_id = message.get("id")
        if kind == "ping":
            await connection.send(_reply("pong", request_id))
            return
        if kind == "join":
            await self._join(connection, message)
            return
        peer = connection.peer
        if peer is None or peer.closed:
            raise MessageError("not_joined", "send join first", request_id)
        if kind == "leave":
            await self._drop(connection)
            await connection.ws.close()
        elif kind == "publish":
            encoding_of = message.get("encoding_of")
            try:
                publication, answer = await peer.publish(
                    message["sdp"],
                    message.get("source", "camera"),
                    encoding_of,
                    message.get("quality", "high"),
                )
            except LookupError:
                raise MessageError(
                    "unknown_publication", f"you have no publication {encoding_of}", request_id
                ) from None
            await connection.send(
                _reply("published", request_id, publication_id=publication.id, sdp=answer)
            )
        elif kind == "control":
            if peer.role != Role.MAIN:
                raise MessageError(
                    "not_allowed", "only the main venue runs the meeting", request_id
                )
            await apply_control(peer.room, message["action"], message.get("peer_id"), request_id)
            await connection.send(_reply("control_done", request_id, action=message["action"]))
        elif kind == "raise_hand":
            if peer.hidden or peer.role == Role.MAIN:
                raise MessageError("not_allowed", "only a venue raises its hand", request_id)
            await peer.room.control.set_hand(peer.participant_id, message["raised"])
            await connection.send(_reply("hand", request_id, raised=message["raised"]))
        elif kind == "unpublish":
            pub_id = message["publication_id"]
            try:
                await peer.unpublish(pub_id)
            except LookupError:
                raise MessageError(
                    "unknown_publication", f"you have no publication {pub_id}", request_id
                ) from None
            await connection.send(_reply("unpublished", request_id, publication_id=pub_id))
        elif kind == "subscribe":
            pub_id = message["publication_id"]
            try:
                subscription, offer = await peer.subscribe(pub_id, message.get("kinds"))
            except LookupError:
                raise MessageError(
                    "unknown_publication", f"no publication {pub_id} in this room", request_id
                ) from None
            await connection.send(
                _reply(
                    "subscription_offer",
                    request_id,
                    subscription_id=subscription.id,
                    publication_id=pub_id,
                    sdp=offer,
                )
            )
        elif kind == "subscription_answer":
            sub_id = message["subscription_id"]
            try:
                declined = await peer.answer_subscription(sub_id, message["sdp"])
            except LookupError:
                raise MessageError(
                    "unknown_subscription", f"you have no subscription {sub_id}", request_id
                ) from None
            reply = _reply("subscribed", request_id, subscription_id=sub_id)
            if declined:
                # what the client could not decode, and so will not get (the rest flows)
                reply["declined"] = declined
                reply["video_codec"] = peer.room.settings.video_codec
            await connection.send(reply)
        elif kind == "unsubscribe":
            sub_id = message["subscription_id"]
            try:
                await peer.unsubscribe(sub_id)
            except LookupError:
                raise MessageError(
                    "unknown_subscription", f"you have no subscription {sub_id}", request_id
                ) from None
            await connection.send(_reply("unsubscribed", request_id, subscription_id=sub_id))

    async def _join(self, connection: Connection, message: dict[str, Any]) -> None:
        request_id = message.get("id")
        if connection.peer is not None:
            raise MessageError("already_joined", "this connection has joined already", request_id)
        try:
            grant = self.tokens.verify(message["token"])
        except TokenError as exc:
            raise MessageError(exc.code, exc.message, request_id) from exc
        if grant.source_token_id and self.is_revoked is not None:
            if await self.is_revoked(grant.source_token_id):
                raise MessageError(
                    "invalid_token", "this device's or account's access was revoked", request_id
                )
        room = self.rooms.get(grant.room_id)
        if room is None:
            raise MessageError("unknown_room", f"there is no room {grant.room_id!r}", request_id)
        # a hidden view never replaces (or is replaced by) the same person's visible join
        key = (room.id, grant.participant_id, grant.hidden)
        previous = self._by_participant.get(key)
        if previous is None and room.is_full():
            logger.warning("room %s is full (%d participants)", room.id, room.settings.max_peers)
            raise MessageError(
                "room_full",
                f"this room takes at most {room.settings.max_peers} participants",
                request_id,
            )
        instance = message.get("instance")
        took_over_from: str | None = None
        if previous is not None and previous is not connection:
            # the same page reconnecting (its old socket not yet seen dead) resumes; any
            # other holder of the token is refused unless it chose to take the seat over
            resuming = instance is not None and previous.instance == instance
            if not resuming and not message.get("take_over"):
                raise MessageError(
                    "in_use",
                    "this token is in use by another connection; join with take_over "
                    "to move it here (the other one is told)",
                    request_id,
                )
            if not resuming:
                took_over_from = previous.remote or "unknown"
                logger.warning(
                    "%s in room %s was taken over from %s by %s",
                    grant.participant_id,
                    room.id,
                    took_over_from,
                    connection.remote,
                )
            await previous.error("replaced", "this seat was taken over by another connection")
            await self._drop(previous)
            await previous.ws.close(code=WSCloseCode.POLICY_VIOLATION)
        peer = await room.add_peer(grant.participant_id, grant.name, grant.role, connection.send)
        peer.user_agent = connection.user_agent
        connection.peer = peer
        connection.purpose = grant.purpose
        connection.instance = instance
        self._by_participant[key] = connection
        presence = self._presence_of(connection, peer, online=True)
        await self._presence(replace(presence, took_over_from=took_over_from))
        others = [p.describe() for p in room.peers.values() if p is not peer]
        await connection.send(
            _reply(
                "joined",
                request_id,
                peer_id=peer.id,
                role=peer.role,
                room=room.describe(),
                peers=others,
                publications=room.visible_publications(),
                meeting_state=room.control.state(),
                ice_servers=self.ice_servers.for_participant(grant.participant_id),
            )
        )

    async def _drop(self, connection: Connection) -> None:
        peer = connection.peer
        if peer is None:
            return
        connection.peer = None
        key = (peer.room.id, peer.participant_id, peer.hidden)
        if self._by_participant.get(key) is connection:
            del self._by_participant[key]
            await self._presence(self._presence_of(connection, peer, online=False))
        await peer.close()

    @staticmethod
    def _presence_of(connection: Connection, peer: Peer, online: bool) -> Presence:
        return Presence(
            peer.room.id,
            peer.participant_id,
            peer.name,
            online,
            role=peer.role,
            hidden=peer.hidden,
            purpose=connection.purpose,
            room_name=peer.room.settings.name,
            remote=connection.remote,
        )

    async def disconnect(self, participant_id: str) -> int:
        """End every connection of a participant whose access was revoked; return how many."""
        dropped = 0
        for connection in tuple(self.connections):
            peer = connection.peer
            if peer is not None and peer.participant_id == participant_id:
                await connection.error("invalid_token", "this device's access was revoked")
                await self._drop(connection)
                await connection.ws.close(code=WSCloseCode.POLICY_VIOLATION)
                dropped += 1
        return dropped

    async def move_off_worker(self, worker_id: str) -> int:
        """A media worker died: its peers' clients are told and disconnected, so that they
        reconnect and are placed on a live worker; return how many.

        Each is told when to come back (`retry_after_ms`, instead of its own backoff),
        spread over MOVE_SPREAD_MS_PER_PEER per moved peer so that a worker's few hundred
        TVs do not all join and negotiate in the same tick."""
        moving = [
            connection
            for connection in tuple(self.connections)
            if connection.peer is not None and connection.peer.worker == worker_id
        ]
        spread_ms = min(MOVE_SPREAD_MAX_MS, MOVE_SPREAD_MS_PER_PEER * len(moving))
        await asyncio.gather(
            *(self._move(connection, round(random.uniform(0, spread_ms))) for connection in moving)
        )
        return len(moving)

    async def _move(self, connection: Connection, retry_after_ms: int) -> None:
        await connection.send(
            {
                "type": "error",
                "code": "worker_lost",
                "message": "the server moves you to another media worker; reconnect",
                "retry_after_ms": retry_after_ms,
            }
        )
        await self._drop(connection)
        await connection.ws.close(code=WSCloseCode.SERVICE_RESTART)

    async def end_room(self, room_id: str) -> int:
        """A meeting ended: close its participants' sockets (they were told `meeting_ended`,
        so clients do not reconnect); return how many."""
        ended = 0
        for connection in tuple(self.connections):
            peer = connection.peer
            if peer is not None and peer.room.id == room_id:
                await self._drop(connection)
                await connection.ws.close(code=WSCloseCode.OK, message=b"meeting ended")
                ended += 1
        return ended

    async def _presence(self, presence: Presence) -> None:
        if self.on_presence is None:
            return
        try:
            await self.on_presence(presence)
        except Exception:  # presence is bookkeeping: never fail a join or a leave over it
            logger.exception("presence update failed for %s", presence.participant_id)

    async def close(self) -> None:
        for connection in tuple(self.connections):
            await self._drop(connection)
            await connection.ws.close(code=WSCloseCode.GOING_AWAY)


async def apply_control(
    room: Room, action: str, peer_id: str | None, request_id: object = None
) -> None:
    """Carry out a main venue's decision (from signaling or the HTTP API) on the room."""
    participant_id = None
    if CONTROL_ACTIONS[action]:
        target = room.peers.get(peer_id) if peer_id else None
        if target is None:
            raise MessageError("unknown_peer", f"no venue {peer_id!r} in this meeting", request_id)
        participant_id = target.participant_id
    control = room.control
    if action == "roll_call":
        await control.give_floor(participant_id, roll_call=True)
    elif action == "give_floor":
        await control.give_floor(participant_id)
    elif action == "take_floor":
        await control.give_floor(None)
    elif action in ("mute", "unmute"):
        assert participant_id is not None
        await control.set_muted(participant_id, action == "mute")
    elif action in ("mute_all", "unmute_all"):
        await control.set_mute_all(action == "mute_all")
    elif action == "lower_hand":
        assert participant_id is not None
        await control.set_hand(participant_id, False)


def _reply(kind: str, request_id: object, **fields: Any) -> dict[str, Any]:
    reply: dict[str, Any] = {"type": kind}
    if request_id is not None:
        reply["id"] = request_id
    reply.update(fields)
    return reply
