"""Who is online, in the database: the terminals' lobby and the rooms' participants.

`TerminalDirectory` answers the lobby (signaling/lobby.py): is this a terminal's valid
token, is the TV online, which standing room is its own. `PresenceRecorder` answers the
signaling service (signaling/server.py): a participant joined or left a room (a
terminal's online state and the room's timeline), or a supervisor's hidden view began or
ended (the supervision trail, never a timeline event); a seat taken over by a second use
of the same token goes into the audit log.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from db import audit, supervision
from db.accounts import AuthError, TokenService, issue_terminal_token, record_presence
from db.database import Database
from db.models import OrgUnit, Role, Terminal, TerminalKind
from db.participants import ParticipantId
from db.tree import find_by_code, organiser, related
from sfu.registry import RoomRegistry
from sfu.room import Room
from signaling.lobby import LobbyRefusal, TerminalIdentity, TerminalLobby
from signaling.server import Presence

logger = logging.getLogger(__name__)


class TerminalDirectory:
    def __init__(self, database: Database, tokens: TokenService, rooms: RoomRegistry) -> None:
        self.database = database
        self.tokens = tokens
        self.rooms = rooms
        # the rooms of the config (standing rooms), not the meetings' opened later
        self.standing_room_ids = tuple(rooms)

    async def authenticate(self, token: str) -> TerminalIdentity:
        async with self.database.session() as session:
            try:
                principal = await self.tokens.verify(session, token)
            except AuthError as error:
                raise LobbyRefusal(
                    "invalid_token" if error.code != "token_expired" else error.code,
                    error.message,
                ) from None
            if principal.role != Role.TERMINAL or principal.terminal_id is None:
                raise LobbyRefusal("invalid_token", "this is not a terminal's token")
            terminal = await session.get(Terminal, principal.terminal_id)
            if terminal is None or terminal.revoked_at is not None:
                raise LobbyRefusal("invalid_token", "this terminal's access was revoked")
            renewed = None
            org = await session.get(OrgUnit, terminal.org_id) if terminal.org_id else None
            if principal.signed_with_old_key and org is not None:
                # the key is being rotated out: the TV re-keys itself, nobody re-pairs it
                renewed = (await issue_terminal_token(session, self.tokens, terminal, org)).token
                await session.commit()
                logger.info("terminal %s given a token signed with the current key", terminal.id)
            return TerminalIdentity(
                terminal_id=terminal.id,
                participant_id=principal.subject,
                name=principal.name,
                org_path=terminal.org_path or principal.org_path,
                token_id=principal.token_id,
                renewed_token=renewed,
                meeting_venue=terminal.kind is not TerminalKind.DUTY_CAMERA,
            )

    async def set_online(self, identity: TerminalIdentity, online: bool) -> None:
        """The lobby connection came or went (a TV in a room is online either way)."""
        async with self.database.session() as session:
            terminal = await session.get(Terminal, identity.terminal_id)
            if terminal is not None:
                in_room = any(
                    room.peer_by_participant(identity.participant_id)
                    for room in self.rooms.values()
                )
                terminal.online = online or in_room
                terminal.last_seen_at = datetime.now(UTC)
                await session.commit()

    async def standing_room_for(self, identity: TerminalIdentity) -> Room | None:
        async with self.database.session() as session:
            for room_id in self.standing_room_ids:
                room = self.rooms[room_id]
                code = room.settings.org_code
                org = await find_by_code(session, code) if code else None
                room_path = None if code is None else (org.path if org else None)
                if code is not None and room_path is None:
                    continue
                if related(identity.org_path, room_path):
                    return room
        return None


class PresenceRecorder:
    def __init__(self, database: Database, rooms: RoomRegistry, lobby: TerminalLobby) -> None:
        self.database = database
        self.rooms = rooms
        self.lobby = lobby

    async def __call__(self, presence: Presence) -> None:
        async with self.database.session() as session:
            if presence.hidden:  # a supervisor: into the trail, never onto a timeline
                await self._hidden_view(session, presence)
            else:
                await record_presence(
                    session,
                    presence.room_id,
                    presence.participant_id,
                    presence.name,
                    presence.online,
                    # a TV that leaves a meeting is still online in the lobby
                    terminal_online=presence.online
                    or self.lobby.is_online(
                        ParticipantId.parse(presence.participant_id).terminal_id or -1
                    ),
                )
            if presence.took_over_from is not None:
                await self._taken_over(session, presence)
            await session.commit()

    async def _taken_over(self, session: AsyncSession, presence: Presence) -> None:
        """A second use of the same token moved the seat: who, where from, where to."""
        room = self.rooms.get(presence.room_id)
        org = await organiser(session, room.settings.org_code if room else None)
        audit.record(
            session,
            None,
            "seat_taken_over",
            actor=f"{presence.participant_id} {presence.name}"[:100],
            target_type="room",
            target_id=presence.room_id,
            org_path=org.path if org else None,
            remote_addr=presence.remote,
            detail={
                "room_name": presence.room_name,
                "role": str(presence.role),
                "hidden": presence.hidden,
                "previous_address": presence.took_over_from,
            },
        )

    async def _hidden_view(self, session: AsyncSession, presence: Presence) -> None:
        if not presence.online:
            await supervision.view_ended(
                session, supervisor=presence.participant_id, room_id=presence.room_id
            )
            return
        room = self.rooms.get(presence.room_id)
        org = await organiser(session, room.settings.org_code if room else None)
        await supervision.view_started(
            session,
            supervisor=presence.participant_id,
            supervisor_name=presence.name,
            room_id=presence.room_id,
            room_name=presence.room_name,
            org_path=org.path if org else None,
            mode=presence.purpose or "drop_in",
        )
