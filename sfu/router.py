"""A media worker's media: the publications, subscriptions, floor slots and pipes it holds.

After mediasoup's Router: the front decides (who joins, who may subscribe to what, who
holds the floor, who is muted) and names every object; the router only holds media and
carries out those decisions. One router serves every room on its worker. In one process
the front calls it directly; with media workers each worker process has one and the front
calls it over the worker's control connection (`sfu/workers.py`) with the same methods.

A publication is either *origin* (a publisher's WebRTC connection on this worker) or
*piped* (received from the worker that holds its origin, `sfu/pipe.py`); subscribers and
floor slots cannot tell them apart. What the router notices by itself (media flowing, a
connection failing, a pipe ending) it reports through `on_event`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCPeerConnection

from .local import LocalSink, LocalSubscription
from .looplag import LoopLag
from .negotiation import (
    IceServer,
    accepted_video_codecs,
    codec_name,
    declined_kinds,
    parse_sdp,
)
from .pipe import Address, PipeEndpoint, PipeIn, PipeOut, PipeStream
from .ports import PortAllocator
from .tracks import DownTrack, UpTrack
from .vocabulary import Quality
from .webrtc import accept_answer, open_downstream, open_upstream

logger = logging.getLogger(__name__)

RouterEvent = dict[str, Any]
EventSink = Callable[[RouterEvent], Awaitable[None]]


@dataclass
class RoutedPublication:
    id: str
    room_id: str
    kinds: list[str]
    uptracks: dict[str, UpTrack]
    pc: RTCPeerConnection | None = None  # origin only
    pipe_ins: list[PipeIn] = field(default_factory=list)  # piped only
    pipe_outs: dict[Address, list[PipeOut]] = field(default_factory=dict)
    closed: bool = False
    flowing_task: asyncio.Future[None] | None = None
    video_codec: str | None = None
    # its second encodings here (a codec, or "low": the lower one in its own codec ->
    # publication id), or the one it is a second of
    encodings: dict[str, str] = field(default_factory=dict)
    encoding_of: str | None = None

    @property
    def origin(self) -> bool:
        return self.pc is not None


@dataclass
class RoutedSubscription:
    id: str
    room_id: str
    pc: RTCPeerConnection
    downtracks: dict[str, DownTrack]
    publication_id: str | None  # None: the room's floor slot
    closed: bool = False
    # the video codecs its answer accepted (None: not answered yet, or no video)
    video_codecs: set[str] | None = None
    # what its link carries: low takes a venue's lower encoding where there is one
    quality: str = Quality.HIGH


@dataclass
class SlotMedia:
    """A room's floor slot on this worker: its subscribers follow one publication."""

    room_id: str
    source: str | None = None
    subscriptions: set[str] = field(default_factory=set)


class MediaRouter:
    def __init__(
        self,
        endpoint: PipeEndpoint | None = None,
        on_event: EventSink | None = None,
        ports: PortAllocator | None = None,
    ):
        self.endpoint = endpoint
        self.on_event = on_event
        # where this process's media sockets are bound ([server] udp_ports), if fixed
        self.ports = ports
        self.publications: dict[str, RoutedPublication] = {}
        self.subscriptions: dict[str, RoutedSubscription] = {}
        self.slots: dict[str, SlotMedia] = {}
        self.closed = False
        # this process's event loop: how late it runs (sfu/looplag.py), when watched
        self.loop_lag: LoopLag | None = None
        self._tasks: set[asyncio.Future[None]] = set()

    async def _emit(self, event: RouterEvent) -> None:
        if self.on_event is None or self.closed:
            return
        try:
            await self.on_event(event)
        except Exception:
            logger.exception("router event %s not delivered", event.get("event"))

    # -- publishing ----------------------------------------------------------------------
    async def publish(
        self,
        publication_id: str,
        room_id: str,
        offer_sdp: str,
        kinds: list[str],
        *,
        video_codec: str,
        max_video_kbps: int,
        ice_servers: list[IceServer],
        media_wait_s: float = 5.0,
        muted: bool = False,
    ) -> str:
        """Accept a publisher's (checked) offer; return the answer. `flowing` is reported
        once every kind has a packet (or after `media_wait_s` anyway)."""
        upstream = await open_upstream(
            offer_sdp,
            kinds,
            video_codec=video_codec,
            max_video_kbps=max_video_kbps,
            ice_servers=ice_servers,
            ports=self.ports,
        )
        publication = RoutedPublication(
            publication_id,
            room_id,
            kinds,
            upstream.uptracks,
            pc=upstream.pc,
            video_codec=video_codec if "video" in kinds else None,
        )
        if "audio" in publication.uptracks:
            publication.uptracks["audio"].muted = muted
        self.publications[publication_id] = publication
        pc = upstream.pc

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed") and not publication.closed:
                await self._emit(
                    {
                        "event": "publication_ended",
                        "publication_id": publication_id,
                        "state": pc.connectionState,
                    }
                )

        publication.flowing_task = asyncio.ensure_future(
            self._report_flowing(publication, media_wait_s)
        )
        return upstream.answer_sdp

    async def _report_flowing(self, publication: RoutedPublication, wait_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        for uptrack in publication.uptracks.values():
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(uptrack.first_packet.wait(), remaining)
        if not publication.closed:
            await self._emit({"event": "publication_flowing", "publication_id": publication.id})

    async def close_publication(self, publication_id: str) -> None:
        publication = self.publications.pop(publication_id, None)
        if publication is None or publication.closed:
            return
        publication.closed = True
        if publication.flowing_task is not None:
            publication.flowing_task.cancel()
        primary = self.publications.get(publication.encoding_of or "")
        if primary is not None:  # a second encoding: its subscribers go back to the first
            for codec, encoding_id in tuple(primary.encodings.items()):
                if encoding_id == publication_id:
                    del primary.encodings[codec]
            for subscription in self._showing(primary.id):
                self._attach(subscription)
        # a floor slot that showed it lets go, its subscribers stay (the venue may be back)
        for slot in self.slots.values():
            if slot.source == publication_id:
                self._switch(slot, None)
        for outs in publication.pipe_outs.values():
            for out in outs:
                out.close()
        for pipe_in in publication.pipe_ins:
            pipe_in.close()  # closes its UpTrack
        for uptrack in publication.uptracks.values():
            uptrack.close()
        if publication.pc is not None:
            await publication.pc.close()

    async def set_muted(self, publication_id: str, muted: bool) -> None:
        publication = self.publications.get(publication_id)
        if publication is not None and "audio" in publication.uptracks:
            publication.uptracks["audio"].muted = muted

    def subscribe_locally(self, publication_id: str, sink: LocalSink) -> LocalSubscription:
        """A server-side subscriber (recorder, recognizer) on this worker."""
        publication = self.publications.get(publication_id)
        subscription = LocalSubscription(publication.uptracks if publication else {}, sink)
        if publication is None or publication.closed:
            subscription.close()
        return subscription

    # -- pipes -----------------------------------------------------------------------------
    async def pipe_out(self, publication_id: str, destination: Address) -> list[PipeStream]:
        """Send a publication to the worker whose pipe endpoint is `destination` (once)."""
        publication = self.publications.get(publication_id)
        if publication is None or publication.closed:
            raise LookupError(publication_id)
        assert self.endpoint is not None, "this router has no pipe endpoint"
        outs = publication.pipe_outs.get(destination)
        if outs is None:
            outs = publication.pipe_outs[destination] = [
                self.endpoint.open_out(uptrack, destination)
                for uptrack in publication.uptracks.values()
            ]
        return [out.stream for out in outs]

    async def close_pipe_out(self, publication_id: str, destination: Address) -> None:
        publication = self.publications.get(publication_id)
        if publication is not None:
            for out in publication.pipe_outs.pop(destination, []):
                out.close()

    async def pipe_in(
        self,
        publication_id: str,
        room_id: str,
        streams: list[PipeStream],
        video_codec: str | None = None,
    ) -> None:
        """Receive a publication piped from its origin worker (idempotent)."""
        if publication_id in self.publications:
            return
        assert self.endpoint is not None, "this router has no pipe endpoint"
        pipe_ins = [
            self.endpoint.open_in(stream, self._pipe_ended(publication_id)) for stream in streams
        ]
        self.publications[publication_id] = RoutedPublication(
            publication_id,
            room_id,
            [p.kind for p in pipe_ins],
            {p.kind: p.uptrack() for p in pipe_ins},
            pipe_ins=pipe_ins,
            video_codec=video_codec,
        )
        for slot in self.slots.values():  # the slot was switched to it before it arrived
            if slot.source == publication_id:
                self._switch(slot, publication_id)

    async def link_encoding(self, publication_id: str, codec: str, encoding_id: str) -> None:
        """`encoding_id` (on this worker) is `publication_id`'s video in `codec` too: its
        subscribers here that cannot decode the first take their video from it."""
        publication = self.publications.get(publication_id)
        encoding = self.publications.get(encoding_id)
        if publication is None or encoding is None or encoding.closed:
            raise LookupError(encoding_id if publication else publication_id)
        publication.encodings[codec] = encoding_id
        encoding.encoding_of = publication_id
        for subscription in self._showing(publication_id):
            self._attach(subscription)

    def _showing(self, publication_id: str) -> list[RoutedSubscription]:
        """The subscriptions here that show a publication, directly or on a floor slot."""
        return [
            s
            for s in self.subscriptions.values()
            if s.publication_id == publication_id
            or (
                s.publication_id is None
                and (slot := self.slots.get(s.room_id)) is not None
                and slot.source == publication_id
            )
        ]

    def _tracks_for(
        self,
        publication: RoutedPublication | None,
        codecs: set[str] | None,
        quality: str = Quality.HIGH,
    ) -> dict[str, UpTrack]:
        """A publication's tracks as a subscriber that decodes `codecs` (None: not known
        yet) takes them: the video of a second encoding when it cannot decode the first,
        none while there is no such encoding; at `quality` low, the lower encoding where
        the publisher sends one."""
        if publication is None:
            return {}
        tracks = dict(publication.uptracks)
        video = tracks.get("video")
        sent = publication.video_codec or (
            codec_name(video.mime_type) if video is not None and video.mime_type else None
        )
        if codecs is None or video is None or sent is None or sent in codecs:
            low = self.publications.get(publication.encodings.get(Quality.LOW, ""))
            if quality == Quality.LOW and low is not None and "video" in low.uptracks:
                tracks["video"] = low.uptracks["video"]
            return tracks
        del tracks["video"]
        for codec, encoding_id in publication.encodings.items():
            encoding = self.publications.get(encoding_id)
            if codec in codecs and encoding is not None and "video" in encoding.uptracks:
                tracks["video"] = encoding.uptracks["video"]
                break
        return tracks

    def _source_of(self, subscription: RoutedSubscription) -> RoutedPublication | None:
        """The publication a subscription shows now (its own, or its floor slot's)."""
        if subscription.publication_id is None:
            slot = self.slots.get(subscription.room_id)
            source_id = slot.source if slot is not None else None
        else:
            source_id = subscription.publication_id
        return self.publications.get(source_id) if source_id else None

    def _attach(self, subscription: RoutedSubscription) -> None:
        """Feed a subscription's tracks from what it shows now, in codecs it decodes, at
        the quality its link carries."""
        source = self._source_of(subscription)
        tracks = self._tracks_for(source, subscription.video_codecs, subscription.quality)
        for kind, downtrack in subscription.downtracks.items():
            uptrack = tracks.get(kind)
            if uptrack is None:
                downtrack.detach()
            else:
                downtrack.attach(uptrack)
        if (
            subscription.quality == Quality.LOW
            and source is not None
            and "video" in source.uptracks
            and Quality.LOW not in source.encodings
        ):  # the room asks its publisher (once) for a lower encoding
            self._spawn(self._emit({"event": "encoding_needed", "publication_id": source.id}))

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _quality_changer(self, subscription_id: str) -> Callable[[str], bool]:
        """What a subscriber's video DownTrack calls when its link cannot carry what it
        gets (low) or may carry more again (high): whether it now has, or will have, a
        lower stream to take (False: there is none to step down to; it pauses instead)."""

        def change(quality: str) -> bool:
            subscription = self.subscriptions.get(subscription_id)
            if subscription is None or subscription.closed:
                return False
            source = self._source_of(subscription)
            if quality == Quality.LOW:
                video = self._tracks_for(source, subscription.video_codecs).get("video")
                if source is None or video is not source.uptracks.get("video"):
                    return False  # nothing shown, or shown in a codec encoding: no lower one
            subscription.quality = quality
            self._attach(subscription)
            return True

        return change

    def _pipe_ended(self, publication_id: str) -> Callable[[], None]:
        def ended() -> None:
            publication = self.publications.get(publication_id)
            if publication is not None and not publication.closed:
                task = asyncio.ensure_future(self.close_publication(publication_id))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

        return ended

    def _video_paused_reporter(self, subscription_id: str) -> Callable[[bool], None]:
        """Tells the room when a subscriber's video pauses for its downlink, or resumes."""

        def report(paused: bool) -> None:
            event = {"event": "subscription_video", "subscription_id": subscription_id}
            task = asyncio.ensure_future(self._emit({**event, "paused": paused}))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        return report

    # -- subscribing -----------------------------------------------------------------------
    async def subscribe(
        self,
        subscription_id: str,
        room_id: str,
        publication_id: str | None,
        kinds: list[str],
        *,
        video_codec: str,
        ice_servers: list[IceServer],
        limits_publisher: bool = True,
    ) -> str:
        """Offer a subscriber `kinds` of a publication on this worker, or of the room's
        floor slot (`publication_id` None); return the SDP offer."""
        slot = None
        if publication_id is None:
            slot = self.slots.setdefault(room_id, SlotMedia(room_id))
            source = self.publications.get(slot.source) if slot.source else None
        else:
            source = self.publications.get(publication_id)
            if source is None or source.closed:
                raise LookupError(publication_id)
        downstream = await open_downstream(
            {kind: source.uptracks.get(kind) if source else None for kind in kinds},
            video_codec=video_codec,
            ice_servers=ice_servers,
            limits_publisher=limits_publisher,
            ports=self.ports,
        )
        subscription = RoutedSubscription(
            subscription_id, room_id, downstream.pc, downstream.downtracks, publication_id
        )
        self.subscriptions[subscription_id] = subscription
        if slot is not None:
            slot.subscriptions.add(subscription_id)
        video = downstream.downtracks.get("video")
        if video is not None:
            video.on_video_paused = self._video_paused_reporter(subscription_id)
            video.change_quality = self._quality_changer(subscription_id)
        pc = downstream.pc

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState == "failed" and not subscription.closed:
                await self._emit(
                    {"event": "subscription_failed", "subscription_id": subscription_id}
                )

        return downstream.offer_sdp

    async def answer(self, subscription_id: str, answer_sdp: str) -> None:
        subscription = self.subscriptions.get(subscription_id)
        if subscription is None:
            raise LookupError(subscription_id)
        await accept_answer(subscription.pc, answer_sdp)
        description = parse_sdp(answer_sdp, "answer")
        if "video" in subscription.downtracks and "video" not in declined_kinds(description):
            subscription.video_codecs = accepted_video_codecs(description)
            self._attach(subscription)

    async def close_subscription(self, subscription_id: str) -> None:
        subscription = self.subscriptions.pop(subscription_id, None)
        if subscription is None or subscription.closed:
            return
        subscription.closed = True
        slot = self.slots.get(subscription.room_id)
        if slot is not None:
            slot.subscriptions.discard(subscription_id)
        for downtrack in subscription.downtracks.values():
            downtrack.close()
        await subscription.pc.close()

    # -- the floor slot --------------------------------------------------------------------
    async def switch_slot(self, room_id: str, publication_id: str | None) -> None:
        """The room's floor slot shows `publication_id` (None: nobody) from now on."""
        slot = self.slots.setdefault(room_id, SlotMedia(room_id))
        self._switch(slot, publication_id)

    def _switch(self, slot: SlotMedia, publication_id: str | None) -> None:
        slot.source = publication_id
        for subscription_id in tuple(slot.subscriptions):
            subscription = self.subscriptions.get(subscription_id)
            if subscription is not None:
                self._attach(subscription)

    async def forget_room(self, room_id: str) -> None:
        self.slots.pop(room_id, None)

    # -- what tests and health checks read -------------------------------------------------
    async def publication_stats(self, publication_id: str) -> dict[str, Any]:
        publication = self.publications.get(publication_id)
        if publication is None:
            raise LookupError(publication_id)
        return {
            kind: {
                "mime_type": up.mime_type,
                "packets_received": up.packets_received,
                "packets_withheld": up.packets_withheld,
                "keyframe_requests_sent": up.keyframes.sent_count,
                "keyframes_received": up.keyframes_received,
                "muted": up.muted,
                "fanout": len(up.downtracks),
                "forwarded": [getattr(d, "packets_forwarded", 0) for d in up.downtracks],
            }
            for kind, up in publication.uptracks.items()
        }

    async def subscription_stats(self, subscription_id: str) -> dict[str, Any]:
        subscription = self.subscriptions.get(subscription_id)
        if subscription is None:
            raise LookupError(subscription_id)
        return {
            kind: {
                "attached": down.uptrack is not None,
                "limits_publisher": down.limits_publisher,
                "packets_forwarded": down.packets_forwarded,
                "packets_undecodable": down.packets_undecodable,
                "mime_type": down.uptrack.mime_type if down.uptrack else None,
                "quality": subscription.quality,
                "steps_down": down.steps_down,
                "steps_up": down.steps_up,
                "video_paused": down.video_paused,
                "bytes_forwarded": down.bytes_forwarded,
                "source_switches": down.source_switches,
                "retransmissions": down.retransmissions,
                "keyframe_requests": down.keyframe_requests,
            }
            for kind, down in subscription.downtracks.items()
        }

    async def loop_stats(self, reset: bool = False) -> dict[str, float | int]:
        """The longest stall of this router's event loop (when it is watched)."""
        return self.loop_lag.read(reset) if self.loop_lag is not None else {}

    def load(self) -> dict[str, float | int]:
        """What a heartbeat reports: media held, and the loop's longest stall since the
        last heartbeat."""
        load: dict[str, float | int] = {
            "publications": sum(1 for p in self.publications.values() if p.origin),
            "subscriptions": len(self.subscriptions),
        }
        if self.loop_lag is not None:
            load["stall_ms"] = self.loop_lag.read(reset=True)["max_stall_ms"]
        return load

    async def close(self) -> None:
        for subscription_id in tuple(self.subscriptions):
            await self.close_subscription(subscription_id)
        for publication_id in tuple(self.publications):
            await self.close_publication(publication_id)
        self.closed = True
