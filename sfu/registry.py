"""The rooms a server has open, and their one owner: opening a room gives it the media
plane and the ICE servers; closing it closes its peers and forgets it."""

from __future__ import annotations

from .negotiation import IceServer
from .plane import MediaPlane
from .refusals import RefusalLog
from .room import Room, RoomSettings, ServerLimits


class RoomRegistry(dict[str, Room]):
    """room id -> Room; read like a dict, opened and closed only through its methods."""

    def __init__(
        self,
        plane: MediaPlane,
        ice_servers: list[IceServer],
        limits: ServerLimits | None = None,
    ) -> None:
        super().__init__()
        self.plane = plane
        self.ice_servers = list(ice_servers)
        self.limits = limits or ServerLimits()
        self.refusals = RefusalLog()

    def open(self, settings: RoomSettings) -> Room:
        room = self.get(settings.room_id)
        if room is None:
            room = Room(
                settings,
                ice_servers=list(self.ice_servers),
                plane=self.plane,
                limits=self.limits,
                server_connections=self.peer_connections,
                refusals=self.refusals,
            )
            self[room.id] = room
        return room

    def peer_connections(self) -> int:
        return sum(room.peer_connections() for room in self.values())

    async def close(self, room_id: str) -> Room | None:
        room = self.pop(room_id, None)
        if room is not None:
            await room.close()
        return room

    async def close_all(self) -> None:
        for room_id in tuple(self):
            await self.close(room_id)
