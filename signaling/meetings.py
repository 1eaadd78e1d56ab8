"""Live meetings and their rooms: a room opens when a meeting starts and closes when it ends.

Starting a meeting opens a controlled room (`meeting-<id>`, see sfu/control.py) and
invites every connected terminal of the meeting's sites through the lobby; a terminal
that connects later while the meeting runs is invited on connecting. Ending it tells the
terminals, closes the room (every venue's recording sees its end) and forgets it.
Configured rooms (`[[rooms]]` in the config) are standing rooms: a terminal related to
one is sent there when no meeting invites it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sfu.negotiation import IceServer
from sfu.registry import RoomRegistry
from sfu.room import Room, RoomSettings

from .lobby import TerminalIdentity, TerminalLobby
from .tokens import TokenIssuer

logger = logging.getLogger(__name__)

TERMINAL_TOKEN_TTL_S = 12 * 3600


def meeting_room_id(meeting_id: int) -> str:
    return f"meeting-{meeting_id}"


@dataclass
class LiveMeeting:
    meeting_id: int
    topic: str
    room: Room
    organiser_path: str
    # the org paths whose terminals are invited (a town's path invites all its villages)
    site_paths: tuple[str, ...]
    invited_terminals: set[int] = field(default_factory=set)

    def invites(self, org_path: str | None) -> bool:
        return org_path is not None and any(org_path.startswith(p) for p in self.site_paths)


@dataclass(frozen=True)
class MeetingRoomDefaults:
    video_codec: str = "h264"  # TVs decode H.264 in hardware
    max_video_kbps: int = 1000
    record: bool = True


class MeetingRooms:
    def __init__(
        self,
        rooms: RoomRegistry,
        tokens: TokenIssuer,
        lobby: TerminalLobby,
        *,
        ice_servers: list[IceServer],
        defaults: MeetingRoomDefaults,
        on_room_opened: Callable[[Room, int], Awaitable[None]] | None = None,
        on_room_closed: Callable[[Room], Awaitable[None]] | None = None,
        standing_room_for: Callable[[TerminalIdentity], Awaitable[Room | None]] | None = None,
    ) -> None:
        self.rooms = rooms
        self.tokens = tokens
        self.lobby = lobby
        self.ice_servers = ice_servers
        self.defaults = defaults
        # the recorder attaches here, so each recording knows its meeting
        self.on_room_opened = on_room_opened
        self.on_room_closed = on_room_closed
        self.standing_room_for = standing_room_for
        self.live: dict[int, LiveMeeting] = {}

    # -- a meeting's life ----------------------------------------------------------------
    async def open(
        self,
        meeting_id: int,
        *,
        topic: str,
        organiser_code: str,
        organiser_path: str,
        site_paths: list[str],
        main_expected: bool = True,
    ) -> LiveMeeting:
        """Open the meeting's room and invite its online terminals (idempotent)."""
        existing = self.live.get(meeting_id)
        if existing is not None:
            return existing
        room = self.rooms.open(
            RoomSettings(
                room_id=meeting_room_id(meeting_id),
                name=topic,
                video_codec=self.defaults.video_codec,
                max_video_kbps=self.defaults.max_video_kbps,
                org_code=organiser_code,
                record=self.defaults.record,
                controlled=True,
                main_expected=main_expected,
            )
        )
        live = LiveMeeting(
            meeting_id, topic, room, organiser_path, tuple(site_paths or [organiser_path])
        )
        self.live[meeting_id] = live
        if self.on_room_opened is not None:
            await self.on_room_opened(room, meeting_id)
        for identity in self.lobby.online():
            if identity.meeting_venue and live.invites(identity.org_path):
                live.invited_terminals.add(identity.terminal_id)
                await self.lobby.send_to(identity.terminal_id, self.invitation(live, identity))
        logger.info("meeting %s live in room %s", meeting_id, room.id)
        return live

    async def close(self, meeting_id: int) -> bool:
        live = self.live.pop(meeting_id, None)
        if live is None:
            return False
        ended = {"type": "meeting_ended", "meeting_id": meeting_id, "room_id": live.room.id}
        for identity in self.lobby.online():
            if identity.meeting_venue and live.invites(identity.org_path):
                await self.lobby.send_to(identity.terminal_id, ended)
        await live.room.emit({"type": "meeting_ended", "meeting_id": meeting_id}, exclude=None)
        await self.rooms.close(live.room.id)
        if self.on_room_closed is not None:
            await self.on_room_closed(live.room)
        logger.info("meeting %s ended", meeting_id)
        return True

    async def close_all(self) -> None:
        """At shutdown: the rooms close, the meetings stay live in the database (they are
        opened again at the next start)."""
        for live in tuple(self.live.values()):
            await self.rooms.close(live.room.id)
        self.live.clear()

    # -- terminals -------------------------------------------------------------------------
    def invitation(self, live: LiveMeeting, identity: TerminalIdentity) -> dict[str, Any]:
        return self._invitation(identity, live.room, live.meeting_id, live.topic)

    def _invitation(
        self, identity: TerminalIdentity, room: Room, meeting_id: int | None, topic: str
    ) -> dict[str, Any]:
        """`meeting_started` for one TV, with its meeting token for the room."""
        return {
            "type": "meeting_started",
            "meeting_id": meeting_id,
            "room_id": room.id,
            "room_name": room.settings.name,
            "topic": topic,
            "token": self.tokens.mint(
                identity.participant_id,
                identity.name,
                room.id,
                "terminal",
                ttl_s=TERMINAL_TOKEN_TTL_S,
                source_token_id=identity.token_id,
            ),
        }

    def meeting_for(self, org_path: str | None) -> LiveMeeting | None:
        """The latest-started live meeting that invites a place (a TV is in one at a time)."""
        for live in reversed(self.live.values()):
            if live.invites(org_path):
                return live
        return None

    async def greeting(self, identity: TerminalIdentity) -> dict[str, Any] | None:
        """What a TV that just connected should join: its live meeting, else a standing
        room it belongs to, else nothing (it waits); a duty kiosk, nothing."""
        if not identity.meeting_venue:
            return None
        live = self.meeting_for(identity.org_path)
        if live is not None:
            live.invited_terminals.add(identity.terminal_id)
            return self.invitation(live, identity)
        if self.standing_room_for is None:
            return None
        room = await self.standing_room_for(identity)
        if room is None:
            return None
        return self._invitation(identity, room, None, room.settings.name)
