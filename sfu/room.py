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
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiortc import RTCPeerConnection

from . import events
from .candidates import CandidatePolicy, screen_candidates
from .control import FLOOR_SLOT_ID, FloorSlot, MeetingControl
from .events import PeerDescription, PublicationDescription, RoomEvent
from .local import LocalSink, LocalSubscription
from .negotiation import (
    IceServer,
    NegotiationError,
    accepted_video_codecs,
    check_publish_offer,
    declined_kinds,
    parse_sdp,
    video_codecs_from,
)
from .plane import LOCAL, MediaPlane
from .refusals import RefusalLog
from .router import RoutedSubscription, RouterEvent
from .tracks import DownTrack, UpTrack
from .vocabulary import Quality, Role, Source

logger = logging.getLogger(__name__)

Listener = Callable[[RoomEvent, "Peer | None"], Awaitable[None]]


@dataclass(frozen=True)
class RoomSettings:
    room_id: str
    name: str
    video_codec: str = "h264"
    # the most a publisher may send as video; villages' downlinks are 0.5-2 Mbit/s
    max_video_kbps: int = 1000
    # a venue's lower encoding, for the villages whose link cannot carry the first
    low_video_kbps: int = 300
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
    # whether a main venue is to come (False: every venue meets in its own room): what a
    # TV shows while no main venue publishes
    main_expected: bool = True
    # each peer connection is sockets, DTLS and a share of the forwarding loop: a peer
    # may hold this many at once (a camera and a shared screen; a TV's main venue, floor
    # and content, a drop-in's page of 12); the main venue watches every venue
    max_publications: int = 2
    max_subscriptions: int = 16
    max_main_subscriptions: int = 100
    # participants at once, hidden viewers included (a county meeting: 500 sites and
    # their supervisors)
    max_peers: int = 1000


@dataclass(frozen=True)
class ServerLimits:
    """What one server takes across all its rooms."""

    # publications and subscriptions together: each is sockets, DTLS and forwarding work
    max_peer_connections: int = 5000
    candidates: CandidatePolicy = field(default_factory=CandidatePolicy)


def _new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


class Publication:
    """One publisher's camera/microphone: its media lives on its peer's worker.

    A *second encoding* is the same camera's video in another codec, published by the same
    browser when a subscriber cannot decode the first (Firefox without H.264 in an H.264
    room). It is part of its publication: never announced, subscribed to, recorded or
    given the floor by itself; a subscriber of the publication that needs it gets its
    video from it (sfu/router.py)."""

    def __init__(
        self,
        peer: Peer,
        kinds: list[str],
        source: str = Source.CAMERA,
        video_codec: str | None = None,
        encoding_of: Publication | None = None,
        quality: str = Quality.HIGH,
    ) -> None:
        self.id = _new_id("pub")
        self.peer = peer
        self.source = source  # camera | content (a shared screen, 双流)
        self.kinds = kinds
        self.video_codec = video_codec  # None: no video
        self.encoding_of = encoding_of
        self.quality = quality  # a second encoding's: low is the venue's camera lower
        # its second encodings, by key (a codec, or "low"), once flowing; the keys asked for
        self.encodings: dict[str, Publication] = {}
        self.encodings_asked: set[str] = set()
        self.replaced = False  # a second encoding a newer one of its codec replaced
        self.subscriptions: set[Subscription] = set()
        self.announced = False
        self.closed = False
        self._close_done = asyncio.Event()

    @property
    def worker(self) -> str:
        return self.peer.worker

    @property
    def encoding_key(self) -> str:
        """A second encoding's key in its publication's `encodings`: its codec, or "low"
        for the lower one in the publication's own codec."""
        if self.quality == Quality.LOW:
            return Quality.LOW
        assert self.video_codec is not None
        return self.video_codec

    @property
    def uptracks(self) -> dict[str, UpTrack]:
        """The publication's tracks in this process (one process, or piped to the front)."""
        local = self.peer.room.plane.local
        routed = local.publications.get(self.id) if local is not None else None
        return routed.uptracks if routed is not None else {}

    @property
    def pc(self) -> RTCPeerConnection | None:
        """The publisher's connection, when it is in this process."""
        local = self.peer.room.plane.local
        routed = local.publications.get(self.id) if local is not None else None
        return routed.pc if routed is not None else None

    def subscribe_locally(self, sink: LocalSink) -> LocalSubscription:
        """Subscribe a server-side sink (recorder, recognizer) to this publication's media
        (in the front process: the room pipes it there before telling its listeners)."""
        local = self.peer.room.plane.local
        assert local is not None, "this process has no router"
        return local.subscribe_locally(self.id, sink)

    def describe(self) -> PublicationDescription:
        return {
            "publication_id": self.id,
            "peer_id": self.peer.id,
            "name": self.peer.name,
            "role": self.peer.role,
            "kinds": self.kinds,
            "source": self.source,
            "video_codec": self.video_codec,
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
        room = self.peer.room
        if self.encoding_of is not None:
            await self._close_encoding()
            return
        for encoding in tuple(self.encodings.values()):
            await encoding.close()
        for subscription in tuple(self.subscriptions):
            await subscription.close(reason="publication_removed")
        self.peer.publications.pop(self.id, None)
        if room.publications.pop(self.id, None) is not None:
            await room.emit(events.publication_removed(self.id), exclude=None)
            await room.control.publication_closed(self)
        await room.plane.close_publication(self.id)

    async def _close_encoding(self) -> None:
        primary = self.encoding_of
        assert primary is not None
        key = self.encoding_key
        room = self.peer.room
        room.encodings.pop(self.id, None)
        if primary.encodings.get(key) is self:
            del primary.encodings[key]
        if not self.replaced:
            primary.encodings_asked.discard(key)
        await room.plane.close_publication(self.id)
        if (
            not primary.closed and not self.replaced
        ):  # whoever needed it waits (and it is asked for again)
            await room.check_codecs_of(primary)

    async def flowing(self) -> None:
        """Its media arrived (or waited long enough): subscribers are told now, so their
        first subscribe finds packets to forward."""
        if self.closed or self.announced:
            return
        self.announced = True
        room = self.peer.room
        primary = self.encoding_of
        if primary is not None:  # a second encoding: its publication's subscribers take it
            if primary.closed:
                return
            primary.encodings[self.encoding_key] = self
            await room.plane.link_encoding(primary.id, self.encoding_key, self.id)
            await room.check_codecs_of(primary)
            return
        await room.emit(events.publication_added(self.describe()), exclude=self.peer)
        await room.control.publication_flowing(self)
        if room.publication_listeners and not self.closed:
            try:  # server-side subscribers live in the front: pipe it there first
                await room.plane.ensure_on(self.id, LOCAL)
            except Exception:
                logger.exception("publication %s cannot reach the front", self.id)
                return
        for listener in tuple(room.publication_listeners):
            try:
                await listener(self)
            except Exception:  # one server-side subscriber must not stop the others
                logger.exception("publication listener failed")


class Subscription:
    """One publication received by one peer: a downstream connection on the peer's worker."""

    def __init__(self, peer: Peer, publication: Publication | FloorSlot) -> None:
        self.id = _new_id("sub")
        self.peer = peer
        self.publication = publication
        self.answered = False
        self.expiry: asyncio.Future[None] | None = None
        self.closed = False
        # the video codecs its answer accepted (None: not answered, or no video)
        self.video_codecs: set[str] | None = None
        # told its video waits for a second encoding in a codec it decodes
        self.waiting_for_codec = False

    @property
    def source(self) -> Publication | None:
        """The publication it shows now (a floor slot's holder, if any)."""
        if isinstance(self.publication, FloorSlot):
            return self.publication.source
        return self.publication

    @property
    def _routed(self) -> RoutedSubscription | None:
        local = self.peer.room.plane.local
        return local.subscriptions.get(self.id) if local is not None else None

    @property
    def downtracks(self) -> dict[str, DownTrack]:
        """Its tracks, when its worker is this process."""
        routed = self._routed
        return routed.downtracks if routed is not None else {}

    @property
    def pc(self) -> RTCPeerConnection | None:
        routed = self._routed
        return routed.pc if routed is not None else None

    async def close(self, reason: str = "unsubscribed") -> None:
        if self.closed:
            return
        self.closed = True
        if self.expiry is not None and self.expiry is not asyncio.current_task():
            self.expiry.cancel()
        self.publication.subscriptions.discard(self)
        self.peer.subscriptions.pop(self.id, None)
        if reason != "unsubscribed" and not self.peer.closed:
            await self.peer.send(events.subscription_ended(self.id, reason))
        await self.peer.room.plane.close_subscription(
            self.peer.worker, self.id, self.peer.room.id, isinstance(self.publication, FloorSlot)
        )


class Peer:
    """One participant's session in a room; owns its publications and subscriptions."""

    def __init__(
        self,
        room: Room,
        participant_id: str,
        name: str,
        role: str,
        send: Callable[[Mapping[str, Any]], Awaitable[None]],
        worker: str = LOCAL,
    ) -> None:
        self.id = _new_id("p")
        # the media worker holding this peer's connections (sfu/plane.py)
        self.worker = worker
        # the browser, from the WebSocket's upgrade request: for the refusal log
        self.user_agent = ""
        self.room = room
        self.participant_id = participant_id
        self.name = name
        self.role = role
        # a supervisor watching unannounced: in no peer list or event, publishes nothing,
        # and its bandwidth estimates never slow the publisher (see DownTrack)
        self.hidden = role == Role.SUPERVISOR
        self._send = send
        self.publications: dict[str, Publication] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self.closed = False

    def describe(self) -> PeerDescription:
        return {"peer_id": self.id, "name": self.name, "role": self.role}

    async def send(self, message: Mapping[str, Any]) -> None:
        if self.closed:
            return
        try:
            await self._send(message)
        except Exception:  # a dead socket must not break the sender's loop
            logger.debug("could not send to peer %s", self.id, exc_info=True)

    def _screened(self, sdp: str, what: str) -> str:
        if not isinstance(sdp, str):
            return sdp  # parse_sdp says what is wrong with it
        screened = screen_candidates(sdp, self.room.limits.candidates)
        if screened.changed:
            logger.info(
                "%s's %s: %d candidates kept, %d over the limit, %d malformed, %d at blocked "
                "addresses %s",
                self.participant_id,
                what,
                screened.kept,
                screened.trimmed,
                screened.malformed,
                len(screened.blocked),
                ", ".join(screened.blocked[:5]),
            )
        return screened.sdp

    # -- publishing ----------------------------------------------------------------------
    async def publish(
        self,
        offer_sdp: str,
        source: str = Source.CAMERA,
        encoding_of: str | None = None,
        quality: str = Quality.HIGH,
    ) -> tuple[Publication, str]:
        """Accept a publisher's offer; return the publication and the SDP answer.

        `source` "content" is a shared screen: only the main venue shares, one at a time
        (a new share replaces the last). `encoding_of` names one of this peer's
        publications: the offer is its video again in another codec, or (`quality` low)
        lower in its codec (encoding_wanted)."""
        if self.hidden:
            raise NegotiationError("not_allowed", "a hidden viewer cannot publish")
        if encoding_of is not None:
            return await self._publish_encoding(offer_sdp, encoding_of, quality)
        if source == Source.CONTENT and self.role != Role.MAIN:
            raise NegotiationError("not_allowed", "only the main venue shares content")
        settings = self.room.settings
        # a new share replaces the last one: that one does not count against the next
        held = [
            p
            for p in self.publications.values()
            if not (source == Source.CONTENT and p.source == Source.CONTENT)
        ]
        if len(held) >= settings.max_publications:
            raise NegotiationError(
                "too_many_publications",
                f"a participant publishes at most {settings.max_publications} at once",
            )
        self.room.check_server_capacity()
        offer_sdp = self._screened(offer_sdp, "offer")
        description = parse_sdp(offer_sdp, "offer")
        offer = check_publish_offer(description, settings.video_codec)
        if source == Source.CONTENT:
            previous = self.room.control.content_publication()
            if previous is not None:
                await previous.close()
        publication = Publication(self, offer.kinds, source, offer.video_codec)
        answer = await self.room.plane.publish(
            self.worker,
            publication.id,
            self.room.id,
            offer_sdp,
            offer.kinds,
            video_codec=offer.video_codec or settings.video_codec,
            max_video_kbps=settings.max_video_kbps,
            ice_servers=self.room.ice_servers,
            media_wait_s=settings.media_wait_s,
            muted=self.room.control.is_muted(self.participant_id),
        )
        self.publications[publication.id] = publication
        self.room.publications[publication.id] = publication
        return publication, answer

    async def _publish_encoding(
        self, offer_sdp: str, encoding_of: str, quality: str
    ) -> tuple[Publication, str]:
        primary = self.publications.get(encoding_of)
        if primary is None or primary.closed:
            raise LookupError(encoding_of)
        offer_sdp = self._screened(offer_sdp, "offer")
        offer = check_publish_offer(parse_sdp(offer_sdp, "offer"), primary.video_codec or "")
        low = quality == Quality.LOW
        if offer.kinds != ["video"] or (offer.video_codec == primary.video_codec) != low:
            raise NegotiationError(
                "bad_sdp",
                f"a lower encoding is video alone, in {primary.video_codec}"
                if low
                else "a second encoding is video alone, in a codec other than "
                f"{primary.video_codec}",
            )
        assert offer.video_codec is not None
        self.room.check_server_capacity()
        encoding = Publication(
            self, offer.kinds, primary.source, offer.video_codec, primary, quality
        )
        previous = primary.encodings.get(encoding.encoding_key)
        if previous is not None:
            previous.replaced = True
            await previous.close()
        primary.encodings_asked.add(encoding.encoding_key)
        settings = self.room.settings
        answer = await self.room.plane.publish(
            self.worker,
            encoding.id,
            self.room.id,
            offer_sdp,
            offer.kinds,
            video_codec=offer.video_codec,
            max_video_kbps=(
                min(settings.low_video_kbps, settings.max_video_kbps)
                if low
                else settings.max_video_kbps
            ),
            ice_servers=self.room.ice_servers,
            media_wait_s=settings.media_wait_s,
        )
        self.room.encodings[encoding.id] = encoding
        logger.info(
            "%s publishes %s %s too (%s)",
            self.participant_id,
            primary.id,
            "lower" if low else f"in {offer.video_codec}",
            encoding.id,
        )
        return encoding, answer

    async def unpublish(self, publication_id: str) -> None:
        publication = self.publications.get(publication_id)
        encoding = self.room.encodings.get(publication_id)
        if publication is None and encoding is not None and encoding.peer is self:
            publication = encoding  # a second encoding's connection failed: it asks again
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
        settings = self.room.settings
        main = self.role == Role.MAIN
        most = settings.max_main_subscriptions if main else settings.max_subscriptions
        if len(self.subscriptions) >= most:
            raise NegotiationError(
                "too_many_subscriptions",
                f"a participant receives at most {most} publications at once",
            )
        self.room.check_server_capacity()
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
        subscription = Subscription(self, publication)
        offer = await self.room.plane.subscribe(
            self.worker,
            subscription.id,
            self.room.id,
            None if isinstance(publication, FloorSlot) else publication.id,
            wanted,
            video_codec=self.room.settings.video_codec,
            ice_servers=self.room.ice_servers,
            limits_publisher=not self.hidden,
        )
        self.subscriptions[subscription.id] = subscription
        publication.subscriptions.add(subscription)
        subscription.expiry = asyncio.ensure_future(self._expire_unanswered(subscription))
        return subscription, offer

    async def _expire_unanswered(self, subscription: Subscription) -> None:
        await asyncio.sleep(self.room.settings.answer_timeout_s)
        if not subscription.answered:
            await subscription.close(reason="answer_timeout")

    async def answer_subscription(self, subscription_id: str, answer_sdp: str) -> list[str]:
        """Accept a subscriber's answer; return the kinds it declined (it cannot decode
        them): the others flow."""
        subscription = self.subscriptions.get(subscription_id)
        if subscription is None:
            raise LookupError(subscription_id)
        if subscription.answered:
            raise NegotiationError("bad_sdp", "this subscription has been answered already")
        answer_sdp = self._screened(answer_sdp, "answer")
        description = parse_sdp(answer_sdp, "answer")
        declined = declined_kinds(description)
        await self.room.plane.answer(self.worker, subscription.id, answer_sdp)
        subscription.answered = True
        has_video = any(m.kind == "video" for m in description.media)
        if has_video and "video" not in declined:
            subscription.video_codecs = accepted_video_codecs(description)
            await self.room.check_codecs(subscription)
        if declined:
            logger.info(
                "%s declined %s of %s (room codec %s)",
                self.participant_id,
                "+".join(declined),
                subscription.publication.id,
                self.room.settings.video_codec,
            )
        return declined

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
        self.room.plane.release(self.worker)
        await self.room.plane.peer_placed(self.room.id, self.participant_id, None)
        if self.room.peers.pop(self.id, None) is not None:
            await self.room.emit(events.peer_left(self.id), exclude=self)
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
    # second encodings (Publication, above), apart: nothing that lists publications sees them
    encodings: dict[str, Publication] = field(default_factory=dict)
    live_since: datetime | None = None  # UTC, since the first visible participant joined
    # told of each publication once its media flows (the recorder subscribes here)
    publication_listeners: list[Callable[[Publication], Awaitable[None]]] = field(
        default_factory=list
    )
    # where the media lives; a room alone (tests, tools) gets a one-process plane
    plane: MediaPlane = field(default_factory=MediaPlane.single_process)
    limits: ServerLimits = field(default_factory=ServerLimits)
    # the peer connections the whole server holds (its RoomRegistry counts them)
    server_connections: Callable[[], int] | None = None
    # refusals (bad SDP, codecs, ICE failures) in the log, rate-limited, server-wide
    refusals: RefusalLog = field(default_factory=RefusalLog)
    control: MeetingControl = field(init=False)

    def __post_init__(self) -> None:
        self.control = MeetingControl(self)
        self.plane.listeners.append(self.media_event)

    @property
    def id(self) -> str:
        return self.settings.room_id

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.settings.room_id,
            "name": self.settings.name,
            "video_codec": self.settings.video_codec,
            "audio_codec": "opus",
            "controlled": self.settings.controlled,
            "main_expected": self.settings.main_expected,
        }

    def peer_connections(self) -> int:
        return len(self.encodings) + sum(
            len(p.publications) + len(p.subscriptions)
            for p in (*self.peers.values(), *self.hidden_peers.values())
        )

    def check_server_capacity(self) -> None:
        held = (self.server_connections or self.peer_connections)()
        if held >= self.limits.max_peer_connections:
            logger.warning("server full: %d peer connections", held)
            raise NegotiationError(
                "server_full", "the server takes no more connections now: try again later"
            )

    def is_full(self) -> bool:
        return len(self.peers) + len(self.hidden_peers) >= self.settings.max_peers

    def peer_by_participant(self, participant_id: str) -> Peer | None:
        for peer in self.peers.values():
            if peer.participant_id == participant_id:
                return peer
        return None

    async def add_peer(
        self,
        participant_id: str,
        name: str,
        role: str,
        send: Callable[[Mapping[str, Any]], Awaitable[None]],
    ) -> Peer:
        peer = Peer(self, participant_id, name, role, send, worker=self.plane.place())
        await self.plane.peer_placed(self.id, participant_id, peer.worker)
        if peer.hidden:
            self.hidden_peers[peer.id] = peer
            return peer
        if not self.peers:
            self.live_since = datetime.now(UTC)
        self.peers[peer.id] = peer
        await self.control.peer_joined(peer)
        await self.emit(events.peer_joined(peer.describe()), exclude=peer)
        return peer

    def visible_publications(self) -> list[PublicationDescription]:
        return [p.describe() for p in self.publications.values() if not p.closed and p.announced]

    async def emit(self, event: RoomEvent, exclude: Peer | None) -> None:
        # hidden viewers hear of publications coming and going, like everyone else
        for peer in (*self.peers.values(), *self.hidden_peers.values()):
            if peer is not exclude:
                await peer.send(event)
        await self.plane.room_event(self.id, event)

    async def close(self) -> None:
        for peer in (*self.peers.values(), *self.hidden_peers.values()):
            await peer.close()
        await self.plane.forget_room(self.id)
        if self.media_event in self.plane.listeners:
            self.plane.listeners.remove(self.media_event)

    # -- codecs: who needs a second encoding ------------------------------------------------
    async def check_codecs(self, subscription: Subscription) -> None:
        """Whether `subscription` can decode the video it shows now: if not, ask that
        publication's publisher for a second encoding it decodes, and tell the subscriber
        its video waits (and when it comes)."""
        source = subscription.source
        codecs = subscription.video_codecs or set()
        waiting = (
            bool(codecs)
            and source is not None
            and source.video_codec is not None
            and source.video_codec not in codecs
            and not any(c in codecs for c in source.encodings)
        )
        if waiting:
            assert source is not None
            wanted = next(c for c in video_codecs_from(self.settings.video_codec) if c in codecs)
            await self.want_encoding(source, wanted)
        if waiting != subscription.waiting_for_codec and not subscription.closed:
            subscription.waiting_for_codec = waiting
            venue_codec = source.video_codec if source is not None else None
            await subscription.peer.send(
                events.subscription_video(
                    subscription.id, waiting, venue_codec or self.settings.video_codec
                )
            )

    async def check_codecs_of(self, publication: Publication) -> None:
        """check_codecs for everyone showing `publication` (directly or on the floor)."""
        slot = self.control.slot
        shown = set(publication.subscriptions)
        if slot.source is publication:
            shown |= slot.subscriptions
        for subscription in tuple(shown):
            await self.check_codecs(subscription)

    async def want_encoding(self, publication: Publication, key: str) -> None:
        """Ask the publisher for its video in codec `key` too, or (`key` "low") lower in
        its codec (once, until that encoding ends)."""
        if key in publication.encodings or key in publication.encodings_asked:
            return
        if publication.closed or publication.video_codec is None:
            return
        publication.encodings_asked.add(key)
        logger.info("%s: asking %s for its video %s too", self.id, publication.id, key)
        if key == Quality.LOW:
            event = events.encoding_wanted(publication.id, publication.video_codec, Quality.LOW)
        else:
            event = events.encoding_wanted(publication.id, key)
        await publication.peer.send(event)

    # -- what the media plane reports ------------------------------------------------------
    async def media_event(self, event: RouterEvent) -> bool:
        """A router's report about one of this room's objects; False if none is ours."""
        kind = event.get("event")
        if kind in ("publication_flowing", "publication_ended"):
            publication_id = event.get("publication_id", "")
            publication = self.publications.get(publication_id) or self.encodings.get(
                publication_id
            )
            if publication is None:
                return False
            if kind == "publication_flowing":
                await publication.flowing()
            else:
                if event.get("state") == "failed":
                    peer = publication.peer
                    what = f"publication {publication.id}"
                    self.refusals.refused("ice_failed", peer.participant_id, peer.user_agent, what)
                await publication.close()
            return True
        if kind == "subscription_video":
            for peer in (*self.peers.values(), *self.hidden_peers.values()):
                subscription = peer.subscriptions.get(event.get("subscription_id", ""))
                if subscription is not None:
                    await peer.send(events.subscription_video(subscription.id, event["paused"]))
                    return True
            return False
        if kind == "encoding_needed":  # a subscriber's link cannot carry this video
            publication = self.publications.get(event.get("publication_id", ""))
            if publication is None:
                return False
            await self.want_encoding(publication, Quality.LOW)
            return True
        if kind == "subscription_failed":
            for peer in (*self.peers.values(), *self.hidden_peers.values()):
                subscription = peer.subscriptions.get(event.get("subscription_id", ""))
                if subscription is not None:
                    self.refusals.refused(
                        "ice_failed",
                        peer.participant_id,
                        peer.user_agent,
                        f"subscription {subscription.id} to {subscription.publication.id}",
                    )
                    await subscription.close(reason="connection_failed")
                    return True
        return False
