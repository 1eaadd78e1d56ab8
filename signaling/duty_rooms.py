"""Duty rooms: a village TV's camera watched for the duty roster while no meeting is on.

A TV (or a `/duty` kiosk) whose village has a duty camera of its kind is sent
`duty_started {room_id, token, until}` through the lobby when the camera's window opens
(its own schedule, or the village's duty hours with half an hour either side) and no
meeting holds it, and `duty_ended {room_id}` when the window closes or the camera is
turned off. A meeting's invitation replaces it: the TV leaves the duty room for the
meeting by itself, and is sent back after it (at the meeting's end, or the next tick).

The room (`duty-<village id>`) is the SFU's like any other, so the TV publishes the way it
does in a meeting, video only and at a low rate (the room's cap); the server's duty
recognizer subscribes to it locally. Nobody else is given a token for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sfu.registry import RoomRegistry
from sfu.room import Room, RoomSettings

from .lobby import TerminalIdentity, TerminalLobby
from .tokens import TokenIssuer

logger = logging.getLogger(__name__)

DUTY_ROOM_PREFIX = "duty-"


def duty_village(room_id: str) -> int | None:
    """The village whose duty room this is; None for any other room."""
    rest = room_id.removeprefix(DUTY_ROOM_PREFIX)
    return int(rest) if rest != room_id and rest.isdigit() else None


def duty_room_id(village_id: int) -> str:
    return f"{DUTY_ROOM_PREFIX}{village_id}"


class DutyWindow(Protocol):
    """A camera due to watch now (db.duty.store.CameraWindow)."""

    @property
    def village_id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def ends_at(self) -> dt.datetime: ...


@dataclass(frozen=True)
class DutyRoomSettings:
    video_codec: str = "h264"  # TVs encode H.264 in hardware
    # a face needs pixels, not motion: a village uplink of 0.5-2 Mbit/s carries the
    # camera all day beside the village's own use
    max_video_kbps: int = 500
    tick_s: float = 30.0
    # a token outlives its window by this much: a TV that reconnects near the end keeps
    # its seat, and the window's end is what sends it back
    token_margin_s: int = 600


class DutyRooms:
    def __init__(
        self,
        rooms: RoomRegistry,
        tokens: TokenIssuer,
        lobby: TerminalLobby,
        windows: Callable[[], Awaitable[dict[int, DutyWindow]]],
        *,
        busy: Callable[[TerminalIdentity], bool],
        settings: DutyRoomSettings | None = None,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        on_room_opened: Callable[[Room], Awaitable[None]] | None = None,
        on_room_closed: Callable[[Room], Awaitable[None]] | None = None,
    ) -> None:
        self.rooms = rooms
        self.tokens = tokens
        self.lobby = lobby
        self.windows = windows
        # whether a meeting holds this TV (the meeting wins)
        self.busy = busy
        self.settings = settings or DutyRoomSettings()
        self.now = now
        self.on_room_opened = on_room_opened
        self.on_room_closed = on_room_closed
        self.on_duty: dict[int, str] = {}  # terminal id: the duty room it was sent to
        self._wanted: dict[int, DutyWindow] = {}
        self._wanted_at: float | None = None
        self._refresh_lock = asyncio.Lock()
        self._poked = asyncio.Event()
        self._task: asyncio.Task | None = None

    # -- lifetime ----------------------------------------------------------------------
    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="duty-rooms")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for room_id in self._open_rooms():
            await self._close_room(room_id)
        self.on_duty.clear()

    def poke(self) -> None:
        """Look again now (a meeting ended, a camera or the hours changed)."""
        self._wanted_at = None
        self._poked.set()

    def meeting_opened(self) -> None:
        """A meeting opened: the TVs it holds are off duty from now (they leave the duty
        room for it), so that its end sends them back, however short it was."""
        for identity in self.lobby.online():
            if identity.terminal_id in self.on_duty and self.busy(identity):
                del self.on_duty[identity.terminal_id]

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # one bad tick must not end duty for the county
                logger.exception("duty rooms: a tick failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poked.wait(), self.settings.tick_s)
            self._poked.clear()

    # -- deciding ---------------------------------------------------------------------
    async def _refresh(self) -> dict[int, DutyWindow]:
        loop = asyncio.get_running_loop()
        async with self._refresh_lock:
            fresh = self._wanted_at is not None and (
                loop.time() - self._wanted_at < self.settings.tick_s
            )
            if not fresh:
                self._wanted = await self.windows()
                self._wanted_at = loop.time()
            return self._wanted

    async def tick(self) -> None:
        self._wanted_at = None
        wanted = await self._refresh()
        online = {identity.terminal_id: identity for identity in self.lobby.online()}
        for terminal_id in tuple(self.on_duty):
            if terminal_id not in online:  # gone: its greeting sends it back
                del self.on_duty[terminal_id]
        for terminal_id, identity in online.items():
            busy = self.busy(identity)
            window = None if busy else wanted.get(terminal_id)
            sent = self.on_duty.get(terminal_id)
            if window is not None and sent is None:
                await self.lobby.send_to(terminal_id, await self._started(identity, window))
            elif window is None and sent is not None:
                del self.on_duty[terminal_id]
                if not busy:  # a meeting's TV has left for it by itself
                    await self.lobby.send_to(terminal_id, {"type": "duty_ended", "room_id": sent})
        in_use = set(self.on_duty.values())
        for room_id in self._open_rooms():
            if room_id not in in_use:
                await self._close_room(room_id)

    async def greeting(self, identity: TerminalIdentity) -> dict[str, Any] | None:
        """`duty_started` for a TV that just connected, when its camera is due now."""
        if self.busy(identity):
            return None
        window = (await self._refresh()).get(identity.terminal_id)
        if window is None:
            return None
        return await self._started(identity, window)

    async def _started(self, identity: TerminalIdentity, window: DutyWindow) -> dict[str, Any]:
        room = await self._room(window)
        self.on_duty[identity.terminal_id] = room.id
        left_s = (window.ends_at - self.now()).total_seconds()
        return {
            "type": "duty_started",
            "room_id": room.id,
            "room_name": room.settings.name,
            "until": window.ends_at.isoformat(),
            "token": self.tokens.mint(
                identity.participant_id,
                identity.name,
                room.id,
                "terminal",
                ttl_s=max(60, int(left_s)) + self.settings.token_margin_s,
                source_token_id=identity.token_id,
            ),
        }

    # -- rooms ------------------------------------------------------------------------
    def _open_rooms(self) -> list[str]:
        return [room_id for room_id in self.rooms if room_id.startswith(DUTY_ROOM_PREFIX)]

    async def _room(self, window: DutyWindow) -> Room:
        room_id = duty_room_id(window.village_id)
        room = self.rooms.get(room_id)
        if room is not None:
            return room
        room = self.rooms.open(
            RoomSettings(
                room_id=room_id,
                name=window.name,
                video_codec=self.settings.video_codec,
                max_video_kbps=self.settings.max_video_kbps,
                record=False,
                main_expected=False,
                max_publications=1,
                max_subscriptions=1,
                max_peers=8,
            )
        )
        if self.on_room_opened is not None:
            await self.on_room_opened(room)
        logger.info("duty room %s open", room_id)
        return room

    async def _close_room(self, room_id: str) -> None:
        room = await self.rooms.close(room_id)
        if room is not None and self.on_room_closed is not None:
            await self.on_room_closed(room)
