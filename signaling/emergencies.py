"""Emergency calls: a village's phone camera into a room the county command sees at once.

Raising an emergency opens an uncontrolled room `emergency-<id>` (recorded, as evidence)
and tells every command view whose part of the org tree holds the place: those views
hold an event stream (`GET /api/emergencies/events`, web/api/emergencies.py) and each
gets its own bounded queue here. A view that does not read its queue is cut off rather
than let the server's memory grow; its browser reconnects and reloads the list.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sfu.negotiation import IceServer
from sfu.registry import RoomRegistry
from sfu.room import Room, RoomSettings

logger = logging.getLogger(__name__)

# events a command view may fall behind by before it is cut off
FEED_QUEUE_SIZE = 64


def emergency_room_id(emergency_id: int) -> str:
    return f"emergency-{emergency_id}"


@dataclass(eq=False)
class AlertFeed:
    """One command view's subscription: the events for places under `org_path`."""

    org_path: str
    queue: asyncio.Queue[dict[str, Any]] = field(
        default_factory=lambda: asyncio.Queue(FEED_QUEUE_SIZE)
    )
    overflowed: bool = False


@dataclass(frozen=True)
class EmergencyRoomSettings:
    video_codec: str = "h264"
    max_video_kbps: int = 1000
    record: bool = True


class EmergencyDesk:
    def __init__(
        self,
        rooms: RoomRegistry,
        *,
        ice_servers: list[IceServer],
        settings: EmergencyRoomSettings,
        on_room_opened: Callable[[Room], Awaitable[None]] | None = None,
        on_room_closed: Callable[[Room], Awaitable[None]] | None = None,
    ) -> None:
        self.rooms = rooms
        self.ice_servers = ice_servers
        self.settings = settings
        self.on_room_opened = on_room_opened
        self.on_room_closed = on_room_closed
        self.live: dict[int, Room] = {}
        self.feeds: set[AlertFeed] = set()

    # -- rooms ----------------------------------------------------------------------------
    async def open(self, emergency_id: int, *, title: str, org_code: str) -> Room:
        """The emergency's room (idempotent: a restart opens active ones again)."""
        room = self.live.get(emergency_id)
        if room is not None:
            return room
        room = self.rooms.open(
            RoomSettings(
                room_id=emergency_room_id(emergency_id),
                name=title,
                video_codec=self.settings.video_codec,
                max_video_kbps=self.settings.max_video_kbps,
                org_code=org_code,
                record=self.settings.record,
            )
        )
        self.live[emergency_id] = room
        if self.on_room_opened is not None:
            await self.on_room_opened(room)
        logger.warning("emergency %s raised: room %s", emergency_id, room.id)
        return room

    async def close(self, emergency_id: int) -> bool:
        room = self.live.pop(emergency_id, None)
        if room is None:
            return False
        await room.emit({"type": "emergency_ended", "emergency_id": emergency_id}, exclude=None)
        await self.rooms.close(room.id)
        if self.on_room_closed is not None:
            await self.on_room_closed(room)
        logger.info("emergency %s ended", emergency_id)
        return True

    async def close_all(self) -> None:
        """At shutdown: rooms close, emergencies stay active (reopened at the next start)."""
        for room in tuple(self.live.values()):
            await self.rooms.close(room.id)
        self.live.clear()
        for feed in tuple(self.feeds):
            self._cut_off(feed)

    # -- command views ---------------------------------------------------------------------
    def subscribe(self, org_path: str) -> AlertFeed:
        feed = AlertFeed(org_path)
        self.feeds.add(feed)
        return feed

    def unsubscribe(self, feed: AlertFeed) -> None:
        self.feeds.discard(feed)

    def announce(self, org_path: str, event: dict[str, Any]) -> int:
        """Queue `event` for every view whose subtree holds `org_path`; how many."""
        told = 0
        for feed in tuple(self.feeds):
            if not org_path.startswith(feed.org_path):
                continue
            try:
                feed.queue.put_nowait(event)
                told += 1
            except asyncio.QueueFull:
                logger.warning("a command view fell %d events behind: cut off", FEED_QUEUE_SIZE)
                self._cut_off(feed)
        return told

    def _cut_off(self, feed: AlertFeed) -> None:
        feed.overflowed = True
        self.feeds.discard(feed)
        # wake the stream's writer so that it notices and closes
        while not feed.queue.empty():
            feed.queue.get_nowait()
        feed.queue.put_nowait({"type": "closed"})
