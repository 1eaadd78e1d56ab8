"""Meeting control inside the SFU: the floor, mutes, raised hands and content sharing.

The main venue runs a meeting (see docs/protocol.md, "Meeting control"); what it decides
is enforced here, in the forwarding, not left to the pages:

- **Floor**: one venue at a time holds the floor. Everyone receives it through the room's
  *floor slot*, a virtual publication whose subscribers are switched from one venue's
  tracks to the next without renegotiation (like a video switcher; the rewriter keeps each
  subscriber's stream continuous). In a controlled room villages may subscribe only to the
  main venue, to shared content and to the slot, so a venue without the floor reaches
  nobody but the main venue.
- **Roll call** (点名) gives a venue the floor and puts it in everyone's main view.
- **Mute**: a muted venue's audio is withheld from every subscriber (packets counted in
  `UpTrack.packets_withheld`); the floor holder is always heard.
- **Raised hands**: a queue, first come first served; giving the floor takes a hand down.

Venues are known by participant id, so a TV that reconnects keeps its floor and its mute.
Every change is sent to the whole room as one `meeting_state` event.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from . import events
from .vocabulary import FOLLOWER_ROLES, Role, Source

if TYPE_CHECKING:
    from .room import Peer, Publication, Room, Subscription

logger = logging.getLogger(__name__)

# the publication id under which peers subscribe to whoever holds the floor
FLOOR_SLOT_ID = "floor"


class FloorSlot:
    """A virtual publication: the tracks of whichever venue holds the floor. Its
    subscribers' media follows on every worker (MediaPlane.switch_slot)."""

    id = FLOOR_SLOT_ID
    closed = False

    def __init__(self, room: Room) -> None:
        self.room = room
        self.kinds = ["audio", "video"]
        self.subscriptions: set[Subscription] = set()
        self.source: Publication | None = None

    async def switch(self, publication: Publication | None) -> None:
        if publication is self.source:
            return
        self.source = publication
        await self.room.plane.switch_slot(
            self.room.id, publication.id if publication is not None else None
        )
        for subscription in tuple(self.subscriptions):  # can each decode the new venue?
            await self.room.check_codecs(subscription)


class MeetingControl:
    """The control state of one room, and its enforcement on the room's tracks."""

    def __init__(self, room: Room) -> None:
        self.room = room
        self.slot = FloorSlot(room)
        self.floor: str | None = None  # participant id
        self.spotlight = False  # roll call: the floor venue is everyone's main view
        self.mute_all = False
        self.muted: set[str] = set()
        self.hands: list[str] = []

    # -- what everyone is told ---------------------------------------------------------
    def state(self) -> events.MeetingStateFields:
        def peer_of(participant_id: str | None) -> events.PeerDescription | None:
            if participant_id is None:
                return None
            peer = self.room.peer_by_participant(participant_id)
            return peer.describe() if peer is not None else None

        content = self.content_publication()
        return {
            "floor": peer_of(self.floor),
            "spotlight": self.spotlight and self.floor is not None,
            "mute_all": self.mute_all,
            "muted": [
                peer.id for peer in self.room.peers.values() if peer.participant_id in self.muted
            ],
            "hands": [d for d in (peer_of(p) for p in self.hands) if d is not None],
            "content": content.id if content is not None else None,
        }

    async def _changed(self) -> None:
        await self.room.emit(events.meeting_state(self.state()), exclude=None)

    # -- decisions (the main venue's) --------------------------------------------------
    async def give_floor(self, participant_id: str | None, *, roll_call: bool = False) -> None:
        """Give a venue the floor (None takes it back); a roll call also spotlights it."""
        previous = self.floor
        self.floor = participant_id
        self.spotlight = roll_call and participant_id is not None
        if participant_id is not None:
            self.muted.discard(participant_id)
            if participant_id in self.hands:
                self.hands.remove(participant_id)
        if previous is not None and previous != participant_id and self.mute_all:
            previous_peer = self.room.peer_by_participant(previous)
            if previous_peer is not None and previous_peer.role != Role.MAIN:
                self.muted.add(previous)
        await self.slot.switch(self._camera_of(participant_id))
        await self._apply_mutes()
        await self._changed()

    async def set_muted(self, participant_id: str, muted: bool) -> None:
        if muted and participant_id != self.floor:
            self.muted.add(participant_id)
        else:
            self.muted.discard(participant_id)
        await self._apply_mutes()
        await self._changed()

    async def set_mute_all(self, muted: bool) -> None:
        """Mute every venue but the main venue and the floor holder (and later joiners),
        or lift every mute."""
        self.mute_all = muted
        if muted:
            self.muted |= {
                peer.participant_id
                for peer in self.room.peers.values()
                if peer.role != Role.MAIN and peer.participant_id != self.floor
            }
        else:
            self.muted.clear()
        await self._apply_mutes()
        await self._changed()

    async def set_hand(self, participant_id: str, raised: bool) -> None:
        if raised and participant_id not in self.hands and participant_id != self.floor:
            self.hands.append(participant_id)
        elif not raised and participant_id in self.hands:
            self.hands.remove(participant_id)
        else:
            return
        await self._changed()

    # -- the room's life -----------------------------------------------------------------
    async def peer_joined(self, peer: Peer) -> None:
        if self.mute_all and peer.role != Role.MAIN and peer.participant_id != self.floor:
            self.muted.add(peer.participant_id)

    async def peer_left(self, peer: Peer) -> None:
        # the floor and a mute stay with the venue (its TV may be reconnecting); a raised
        # hand does not outlive the connection
        if peer.participant_id in self.hands:
            self.hands.remove(peer.participant_id)
        await self._changed()

    def is_muted(self, participant_id: str) -> bool:
        """Whether a venue's new publication starts muted."""
        return participant_id in self.muted

    async def publication_flowing(self, publication: Publication) -> None:
        if publication.source == Source.CONTENT:
            await self._changed()
        elif publication.peer.participant_id == self.floor and self.slot.source is None:
            await self.slot.switch(publication)  # the floor holder's TV came back

    async def publication_closed(self, publication: Publication) -> None:
        if self.slot.source is publication:
            await self.slot.switch(self._camera_of(self.floor))
        if publication.source == Source.CONTENT:
            await self._changed()

    # -- enforcement -------------------------------------------------------------------
    def may_subscribe(self, peer: Peer, publication: Publication) -> bool:
        """In a controlled room a village sees the main venue and shared content; other
        venues reach it only through the floor slot."""
        if not self.room.settings.controlled or peer.role not in FOLLOWER_ROLES:
            return True
        return publication.peer.role == Role.MAIN or publication.source == Source.CONTENT

    def content_publication(self) -> Publication | None:
        for publication in self.room.publications.values():
            if publication.source == Source.CONTENT and not publication.closed:
                return publication
        return None

    def _camera_of(self, participant_id: str | None) -> Publication | None:
        if participant_id is None:
            return None
        for publication in self.room.publications.values():
            if (
                publication.peer.participant_id == participant_id
                and publication.source == Source.CAMERA
                and not publication.closed
                and not publication.peer.closed
            ):
                return publication
        return None

    async def _apply_mutes(self) -> None:
        for publication in tuple(self.room.publications.values()):
            if "audio" in publication.kinds and publication.source == Source.CAMERA:
                await self.room.plane.set_muted(
                    publication.id, publication.peer.participant_id in self.muted
                )
