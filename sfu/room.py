"""Rooms, peers, publications and subscriptions: who owns what, and closing in order.

Ownership (after mediasoup): a Room owns its Peers; a Peer owns its Publications (each
one upstream RTCPeerConnection) and its Subscriptions (each one downstream
RTCPeerConnection). Closing a Peer closes what it owns; closing a Publication closes
every Subscription to it, on whichever peer. Each close emits one event to the room's
listeners and is safe to call twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiortc import RTCPeerConnection

from .control import CAMERA, CONTENT, FLOOR_SLOT_ID, MAIN_ROLE, FloorSlot, MeetingControl
from .local import LocalSink, LocalSubscription
from .negotiation import IceServer, NegotiationError, check_publish_offer, parse_sdp
from .tracks import DownTrack, UpTrack
from .webrtc import accept_answer, open_downstream, open_upstream

logger = logging.getLogger(__name__)

RoomEvent = dict
# the signaling role of a supervisor watching unannounced
HIDDEN_ROLE = "supervisor"
Listener = Callable[[RoomEvent, "Peer | None"], Awaitable[None]]


@dataclass(frozen=True)
class RoomSettings:
    room_id: str
    name: str
    video_codec: str = "h264"
    # the most a publisher may send as video; villages' downlinks are 0.5-2 Mbit/s
    max_video_kbps: int = 1000
    # a subscription offer not answered by then is withdrawn (its connection freed)
    answer_timeout_s: float = 30.0
    # the organising org unit's code: who may be given a token for this room
    org_code: str | None = None
    # how long a publication waits for its first packet before `publication_added` anyway
    media_wait_s: float = 5.0
    # the room's policy for the recorder (the SFU itself does not record)
    record: bool = True
    # a meeting run by its main venue: villages receive only the main venue, shared
    # content and the floor slot (sfu/control.py)
    controlled: bool = False


def _new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


class Publication:
    """One publisher's camera/microphone: an upstream peer connection and its UpTracks."""

    def __init__(
        self, peer: Peer, pc: RTCPeerConnection, kinds: list[str], source: str = CAMERA
    ) -> None:
        self.id = _new_id("pub")
        self.peer = peer
        self.source = source  # camera | content (a shared screen, 双流)
        self.pc = pc
        self.kinds = kinds
        self.uptracks: dict[str, UpTrack] = {}
        self.subscriptions: set[Subscription] = set()
        self.announced = False
        self.announce_task: asyncio.Future | None = None
        self.closed = False
        self._close_done = asyncio.Event()

    def subscribe_locally(self, sink: LocalSink) -> LocalSubscription:
        """Subscribe a server-side sink (recorder, recognizer) to this publication's media."""
        subscription = LocalSubscription(self.uptracks, sink)
        if self.closed:
            subscription.close()
        return subscription

    def describe(self) -> dict:
        return {
            "publication_id": self.id,
            "peer_id": self.peer.id,
            "name": self.peer.name,
            "role": self.peer.role,
            "kinds": self.kinds,
            "source": self.source,
        }

    async def close(self) -> None:
        # a second caller (the peer leaving while the connection's own failure is closing
        # it) waits for the first to finish, so events keep their order
        if self.closed:
            with contextlib.suppress(TimeoutError):  # never hang a leaving peer
                await asyncio.wait_for(self._close_done.wait(), 10)
            return
        self.closed = True
        try:
            await self._close()
        finally:
            self._close_done.set()

    async def _close(self) -> None:
        if self.announce_task is not None:
            self.announce_task.cancel()
        for subscription in tuple(self.subscriptions):
            await subscription.close(reason="publication_removed")
        for uptrack in self.uptracks.values():
            uptrack.close()
        self.peer.publications.pop(self.id, None)
        room = self.peer.room
        if room.publications.pop(self.id, None) is not None:
            await room.emit(
                {"type": "publication_removed", "publication_id": self.id}, exclude=None
            )
            await room.control.publication_closed(self)
        await self.pc.close()


class Subscription:
    """One publication received by one peer: a downstream connection and its DownTracks."""

    def __init__(
        self, peer: Peer, publication: Publication | FloorSlot, pc: RTCPeerConnection
    ) -> None:
        self.id = _new_id("sub")
        self.peer = peer
        self.publication = publication
        self.pc = pc
        self.downtracks: dict[str, DownTrack] = {}
        self.answered = False
        self.expiry: asyncio.Future | None = None
        self.closed = False

    async def close(self, reason: str = "unsubscribed") -> None:
        if self.closed:
            return
        self.closed = True
        if self.expiry is not None and self.expiry is not asyncio.current_task():
            self.expiry.cancel()
        for downtrack in self.downtracks.values():
            downtrack.close()
        self.publication.subscriptions.discard(self)
        self.peer.subscriptions.pop(self.id, None)
        if reason != "unsubscribed" and not self.peer.closed:
            await self.peer.send(
                {"type": "subscription_ended", "subscription_id": self.id, "reason": reason}
            )
        await self.pc.close()


class Peer:
    """One participant's session in a room; owns its publications and subscriptions."""

    def __init__(
        self,
        room: Room,
        participant_id: str,
        name: str,
        role: str,
        send: Callable[[dict], Awaitable[None]],
    ) -> None:
        self.id = _new_id("p")
        self.room = room
        self.participant_id = participant_id
        self.name = name
        self.role = role
        # a supervisor watching unannounced: in no peer list or event, publishes nothing,
        # and its bandwidth estimates never slow the publisher (see DownTrack)
        self.hidden = role == HIDDEN_ROLE
        self._send = send
        self.publications: dict[str, Publication] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self.closed = False

    def describe(self) -> dict:
        return {"peer_id": self.id, "name": self.name, "role": self.role}

    async def send(self, message: dict) -> None:
        if self.closed:
            return
        try:
            await self._send(message)
        except Exception:  # a dead socket must not break the sender's loop
            logger.debug("could not send to peer %s", self.id, exc_info=True)

    # -- publishing ----------------------------------------------------------------------
    async def publish(self, offer_sdp: str, source: str = CAMERA) -> tuple[Publication, str]:
        """Accept a publisher's offer; return the publication and the SDP answer.

        `source` "content" is a shared screen: only the main venue shares, one at a time
        (a new share replaces the last)."""
        if self.hidden:
            raise NegotiationError("not_allowed", "a hidden viewer cannot publish")
        if source == CONTENT and self.role != MAIN_ROLE:
            raise NegotiationError("not_allowed", "only the main venue shares content")
        settings = self.room.settings
        description = parse_sdp(offer_sdp, "offer")
        kinds = check_publish_offer(description, settings.video_codec)
        if source == CONTENT:
            previous = self.room.control.content_publication()
            if previous is not None:
                await previous.close()
        upstream = await open_upstream(
            offer_sdp,
            kinds,
            video_codec=settings.video_codec,
            max_video_kbps=settings.max_video_kbps,
            ice_servers=self.room.ice_servers,
        )
        pc = upstream.pc
        publication = Publication(self, pc, kinds, source)
        publication.uptracks = upstream.uptracks
        self.publications[publication.id] = publication
        self.room.publications[publication.id] = publication
        self.room.control.publication_opened(publication)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await publication.close()

        publication.announce_task = asyncio.ensure_future(self._announce_when_flowing(publication))
        return publication, upstream.answer_sdp

    async def _announce_when_flowing(self, publication: Publication) -> None:
        # Subscribers are told once media arrives, so their first subscribe finds packets
        # to forward; a publication that never sends is still announced after a while.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.room.settings.media_wait_s
        for uptrack in publication.uptracks.values():
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(uptrack.first_packet.wait(), remaining)
            except TimeoutError:
                break
        if not publication.closed:
            publication.announced = True
            await self.room.emit(
                {"type": "publication_added", **publication.describe()}, exclude=self
            )
            await self.room.control.publication_flowing(publication)
            for listener in tuple(self.room.publication_listeners):
                try:
                    await listener(publication)
                except Exception:  # one server-side subscriber must not stop the others
                    logger.exception("publication listener failed")

    async def unpublish(self, publication_id: str) -> None:
        publication = self.publications.get(publication_id)
        if publication is None:
            raise LookupError(publication_id)
        await publication.close()

    # -- subscribing ---------------------------------------------------------------------
    async def subscribe(
        self, publication_id: str, kinds: list[str] | None = None
    ) -> tuple[Subscription, str]:
        """Start a downstream connection for a publication (all its kinds, or only `kinds`,
        e.g. a wall tile's video); return it and the SDP offer.

        The publication id "floor" is the room's floor slot: whoever holds the floor."""
        publication: Publication | FloorSlot | None
        if publication_id == FLOOR_SLOT_ID:
            publication = self.room.control.slot
        else:
            publication = self.room.publications.get(publication_id)
            if publication is None or publication.closed:
                raise LookupError(publication_id)
            if not self.room.control.may_subscribe(self, publication):
                raise NegotiationError(
                    "not_allowed",
                    "in this meeting other venues are seen through the floor slot ('floor')",
                )
        wanted = [k for k in publication.kinds if kinds is None or k in kinds]
        if not wanted:
            raise NegotiationError(
                "bad_request", f"the publication has none of the kinds {', '.join(kinds or [])}"
            )
        source = publication.source if isinstance(publication, FloorSlot) else publication
        downstream = await open_downstream(
            {k: source.uptracks.get(k) if source is not None else None for k in wanted},
            video_codec=self.room.settings.video_codec,
            ice_servers=self.room.ice_servers,
            limits_publisher=not self.hidden,
        )
        pc = downstream.pc
        subscription = Subscription(self, publication, pc)
        subscription.downtracks = downstream.downtracks
        self.subscriptions[subscription.id] = subscription
        publication.subscriptions.add(subscription)
        subscription.expiry = asyncio.ensure_future(self._expire_unanswered(subscription))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState == "failed":
                await subscription.close(reason="connection_failed")

        return subscription, downstream.offer_sdp

    async def _expire_unanswered(self, subscription: Subscription) -> None:
        await asyncio.sleep(self.room.settings.answer_timeout_s)
        if not subscription.answered:
            await subscription.close(reason="answer_timeout")

    async def answer_subscription(self, subscription_id: str, answer_sdp: str) -> Subscription:
        subscription = self.subscriptions.get(subscription_id)
        if subscription is None:
            raise LookupError(subscription_id)
        if subscription.answered:
            raise NegotiationError("bad_sdp", "this subscription has been answered already")
        parse_sdp(answer_sdp, "answer")
        await accept_answer(subscription.pc, answer_sdp)
        subscription.answered = True
        return subscription

    async def unsubscribe(self, subscription_id: str) -> None:
        subscription = self.subscriptions.get(subscription_id)
        if subscription is None:
            raise LookupError(subscription_id)
        await subscription.close()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for subscription in tuple(self.subscriptions.values()):
            await subscription.close()
        for publication in tuple(self.publications.values()):
            await publication.close()
        self.room.hidden_peers.pop(self.id, None)
        if self.room.peers.pop(self.id, None) is not None:
            await self.room.emit({"type": "peer_left", "peer_id": self.id}, exclude=self)
            await self.room.control.peer_left(self)
            if not self.room.peers:
                self.room.live_since = None


@dataclass
class Room:
    settings: RoomSettings
    ice_servers: list[IceServer] = field(default_factory=list)
    # the participants everyone sees; hidden viewers are kept apart, so no list, count or
    # event built from `peers` can include them
    peers: dict[str, Peer] = field(default_factory=dict)
    hidden_peers: dict[str, Peer] = field(default_factory=dict)
    publications: dict[str, Publication] = field(default_factory=dict)
    live_since: datetime | None = None  # UTC, since the first visible participant joined
    # told of each publication once its media flows (the recorder subscribes here)
    publication_listeners: list[Callable[[Publication], Awaitable[None]]] = field(
        default_factory=list
    )
    control: MeetingControl = field(init=False)

    def __post_init__(self) -> None:
        self.control = MeetingControl(self)

    @property
    def id(self) -> str:
        return self.settings.room_id

    def describe(self) -> dict:
        return {
            "id": self.settings.room_id,
            "name": self.settings.name,
            "video_codec": self.settings.video_codec,
            "audio_codec": "opus",
            "controlled": self.settings.controlled,
        }

    def peer_by_participant(self, participant_id: str) -> Peer | None:
        for peer in self.peers.values():
            if peer.participant_id == participant_id:
                return peer
        return None

    async def add_peer(
        self, participant_id: str, name: str, role: str, send: Callable[[dict], Awaitable[None]]
    ) -> Peer:
        peer = Peer(self, participant_id, name, role, send)
        if peer.hidden:
            self.hidden_peers[peer.id] = peer
            return peer
        if not self.peers:
            self.live_since = datetime.now(UTC)
        self.peers[peer.id] = peer
        await self.control.peer_joined(peer)
        await self.emit({"type": "peer_joined", **peer.describe()}, exclude=peer)
        return peer

    def visible_publications(self) -> list[dict]:
        return [p.describe() for p in self.publications.values() if not p.closed and p.announced]

    async def emit(self, event: RoomEvent, exclude: Peer | None) -> None:
        # hidden viewers hear of publications coming and going, like everyone else
        for peer in (*self.peers.values(), *self.hidden_peers.values()):
            if peer is not exclude:
                await peer.send(event)

    async def close(self) -> None:
        for peer in (*self.peers.values(), *self.hidden_peers.values()):
            await peer.close()
