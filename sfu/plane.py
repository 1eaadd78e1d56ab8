"""The front's view of the media plane: which worker holds each peer's media, and the
pipes that let a room span workers.

A Room (room.py) decides; the MediaPlane finds the router that must carry a decision out.
Each peer is placed on one worker when it joins (the least loaded that is alive); its
publications and subscriptions live there. Subscribing on worker B to a publication whose
origin is worker A first pipes it A -> B (once per worker, however many subscribers), and
so does switching a floor slot that has subscribers on B. With one process there is one
router, `LOCAL`, and no pipes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .local import LocalSink, LocalSubscription
from .negotiation import IceServer
from .pipe import Address, PipeStream
from .ports import PortAllocator
from .router import MediaRouter, RouterEvent

if TYPE_CHECKING:
    from .cluster import ClusterState

logger = logging.getLogger(__name__)

LOCAL = "local"


class WorkerUnavailable(Exception):
    """No media worker can take this peer (none alive, or all full)."""


class RouterHandle(Protocol):
    """A router's methods as the front calls them: MediaRouter itself in one process, a
    control-connection client (sfu/workers.py) for a worker process."""

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
    ) -> str: ...

    async def close_publication(self, publication_id: str) -> None: ...

    async def set_muted(self, publication_id: str, muted: bool) -> None: ...

    async def pipe_out(self, publication_id: str, destination: Address) -> list[PipeStream]: ...

    async def close_pipe_out(self, publication_id: str, destination: Address) -> None: ...

    async def pipe_in(
        self,
        publication_id: str,
        room_id: str,
        streams: list[PipeStream],
        video_codec: str | None = None,
    ) -> None: ...

    async def link_encoding(self, publication_id: str, codec: str, encoding_id: str) -> None: ...

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
    ) -> str: ...

    async def answer(self, subscription_id: str, answer_sdp: str) -> None: ...

    async def close_subscription(self, subscription_id: str) -> None: ...

    async def switch_slot(self, room_id: str, publication_id: str | None) -> None: ...

    async def forget_room(self, room_id: str) -> None: ...

    async def publication_stats(self, publication_id: str) -> dict[str, Any]: ...

    async def subscription_stats(self, subscription_id: str) -> dict[str, Any]: ...

    async def loop_stats(self, reset: bool = False) -> dict[str, float | int]: ...


@dataclass
class WorkerSlot:
    """One router the front can place peers on."""

    id: str
    router: RouterHandle
    pipe_address: Address | None = None
    peers: int = 0
    capacity: int | None = None  # peers; None: no limit
    alive: bool = True


@dataclass
class _PlacedPublication:
    room_id: str
    origin: str  # worker id
    piped_to: set[str] = field(default_factory=set)
    video_codec: str | None = None
    encodings: dict[str, str] = field(default_factory=dict)  # codec -> publication id


class MediaPlane:
    def __init__(self) -> None:
        self.workers: dict[str, WorkerSlot] = {}
        self._publications: dict[str, _PlacedPublication] = {}
        # worker id -> subscriptions to each room's floor slot held there
        self._slot_subscribers: dict[str, dict[str, int]] = {}
        self._slot_sources: dict[str, str | None] = {}
        # rooms hear their objects' media events here (Room.media_event)
        self.listeners: list[Callable[[RouterEvent], Awaitable[bool]]] = []
        # the front's own router, where server-side subscribers (recorder, recognizer)
        # receive media piped from the workers; the only router in one process
        self.local: MediaRouter | None = None
        # with workers: where placements and room events are recorded (Redis)
        self.cluster: ClusterState | None = None

    @classmethod
    def single_process(cls, ports: PortAllocator | None = None) -> MediaPlane:
        plane = cls()
        plane.local = MediaRouter(on_event=plane.router_event, ports=ports)
        plane.add_worker(WorkerSlot(LOCAL, plane.local))
        return plane

    async def router_event(self, event: RouterEvent) -> None:
        for listener in tuple(self.listeners):
            if await listener(event):
                return

    def add_worker(self, worker: WorkerSlot) -> None:
        self.workers[worker.id] = worker

    # -- placement -------------------------------------------------------------------------
    def place(self) -> str:
        """The worker for a joining peer: the alive one with the fewest peers, skipping
        full ones."""
        candidates = [
            w
            for w in self.workers.values()
            if w.alive and (w.capacity is None or w.peers < w.capacity)
        ]
        if not candidates:
            raise WorkerUnavailable("no media worker can take another participant now")
        worker = min(candidates, key=lambda w: (w.peers, w.id))
        worker.peers += 1
        return worker.id

    def release(self, worker_id: str) -> None:
        worker = self.workers.get(worker_id)
        if worker is not None and worker.peers > 0:
            worker.peers -= 1

    def router(self, worker_id: str) -> RouterHandle:
        worker = self.workers.get(worker_id)
        if worker is None or not worker.alive:
            raise WorkerUnavailable(f"media worker {worker_id} is not available")
        return worker.router

    # -- publications ----------------------------------------------------------------------
    async def publish(
        self,
        worker_id: str,
        publication_id: str,
        room_id: str,
        offer_sdp: str,
        kinds: list[str],
        **options: Any,
    ) -> str:
        answer = await self.router(worker_id).publish(
            publication_id, room_id, offer_sdp, kinds, **options
        )
        video_codec = options.get("video_codec") if "video" in kinds else None
        self._publications[publication_id] = _PlacedPublication(
            room_id, worker_id, video_codec=video_codec
        )
        if self.cluster is not None:
            await self.cluster.publication_placed(room_id, publication_id, worker_id)
        return answer

    async def ensure_on(self, publication_id: str, worker_id: str) -> None:
        """Make a publication receivable on `worker_id` (a pipe from its origin)."""
        placed = self._publications.get(publication_id)
        if placed is None:
            raise LookupError(publication_id)
        if worker_id == placed.origin or worker_id in placed.piped_to:
            return
        destination = self.workers[worker_id].pipe_address
        if destination is None:
            raise WorkerUnavailable(f"worker {worker_id} has no pipe endpoint")
        streams = await self.router(placed.origin).pipe_out(publication_id, destination)
        await self.router(worker_id).pipe_in(
            publication_id, placed.room_id, streams, placed.video_codec
        )
        placed.piped_to.add(worker_id)
        for codec, encoding_id in tuple(placed.encodings.items()):
            await self._link_on(worker_id, publication_id, codec, encoding_id)

    async def link_encoding(self, publication_id: str, codec: str, encoding_id: str) -> None:
        """`encoding_id` is `publication_id`'s video in `codec` too (the same publisher's
        second encoding): wherever the publication is, that goes too, for the subscribers
        who cannot decode the first."""
        placed = self._publications.get(publication_id)
        if placed is None:
            raise LookupError(publication_id)
        placed.encodings[codec] = encoding_id
        for worker_id in (placed.origin, *placed.piped_to):
            await self._link_on(worker_id, publication_id, codec, encoding_id)

    async def _link_on(
        self, worker_id: str, publication_id: str, codec: str, encoding_id: str
    ) -> None:
        if worker_id == LOCAL and len(self.workers) > 1:
            return  # with workers the front holds only server-side subscribers
        try:
            await self.ensure_on(encoding_id, worker_id)
            await self.router(worker_id).link_encoding(publication_id, codec, encoding_id)
        except (LookupError, WorkerUnavailable):
            logger.warning("%s's %s encoding cannot reach %s", publication_id, codec, worker_id)

    async def set_muted(self, publication_id: str, muted: bool) -> None:
        placed = self._publications.get(publication_id)
        if placed is None:
            return
        for worker_id in (placed.origin, *placed.piped_to):
            await self._quietly(worker_id, "set_muted", publication_id, muted)

    async def close_publication(self, publication_id: str) -> None:
        placed = self._publications.pop(publication_id, None)
        if placed is None:
            return
        for other in self._publications.values():
            for codec, encoding_id in tuple(other.encodings.items()):
                if encoding_id == publication_id:
                    del other.encodings[codec]
        if self.cluster is not None:
            await self.cluster.publication_gone(placed.room_id, publication_id)
        for worker_id in placed.piped_to:
            await self._quietly(worker_id, "close_publication", publication_id)
        await self._quietly(placed.origin, "close_publication", publication_id)

    async def subscribe_locally(self, publication_id: str, sink: LocalSink) -> LocalSubscription:
        """A server-side subscriber in the front process (piped there from the worker)."""
        assert self.local is not None
        await self.ensure_on(publication_id, LOCAL)
        return self.local.subscribe_locally(publication_id, sink)

    async def publication_stats(self, publication_id: str) -> dict[str, dict[str, Any]]:
        """Each worker's view of a publication (origin first), for tests and health."""
        placed = self._publications.get(publication_id)
        if placed is None:
            raise LookupError(publication_id)
        return {
            worker_id: await self.router(worker_id).publication_stats(publication_id)
            for worker_id in (placed.origin, *sorted(placed.piped_to))
        }

    async def subscription_stats(self, worker_id: str, subscription_id: str) -> dict[str, Any]:
        return await self.router(worker_id).subscription_stats(subscription_id)

    # -- subscriptions ---------------------------------------------------------------------
    async def subscribe(
        self,
        worker_id: str,
        subscription_id: str,
        room_id: str,
        publication_id: str | None,
        kinds: list[str],
        **options: Any,
    ) -> str:
        if publication_id is None:
            source = self._slot_sources.get(room_id)
            if source is not None:
                await self.ensure_on(source, worker_id)
            counts = self._slot_subscribers.setdefault(worker_id, {})
            counts[room_id] = counts.get(room_id, 0) + 1
        else:
            await self.ensure_on(publication_id, worker_id)
        return await self.router(worker_id).subscribe(
            subscription_id, room_id, publication_id, kinds, **options
        )

    async def answer(self, worker_id: str, subscription_id: str, answer_sdp: str) -> None:
        await self.router(worker_id).answer(subscription_id, answer_sdp)

    async def close_subscription(
        self, worker_id: str, subscription_id: str, room_id: str, slot: bool
    ) -> None:
        if slot:
            counts = self._slot_subscribers.get(worker_id, {})
            if counts.get(room_id, 0) > 0:
                counts[room_id] -= 1
        await self._quietly(worker_id, "close_subscription", subscription_id)

    async def switch_slot(self, room_id: str, publication_id: str | None) -> None:
        """Every worker with subscribers to the room's floor slot shows `publication_id`."""
        self._slot_sources[room_id] = publication_id
        for worker_id, counts in self._slot_subscribers.items():
            if not counts.get(room_id) or not self.workers[worker_id].alive:
                continue
            if publication_id is not None:
                try:
                    await self.ensure_on(publication_id, worker_id)
                except (LookupError, WorkerUnavailable):
                    logger.warning("floor slot of %s: %s not pipeable", room_id, publication_id)
                    continue
            await self._quietly(worker_id, "switch_slot", room_id, publication_id)

    async def peer_placed(self, room_id: str, participant_id: str, worker_id: str | None) -> None:
        if self.cluster is not None:
            await self.cluster.participant_placed(room_id, participant_id, worker_id)

    async def room_event(self, room_id: str, event: Mapping[str, Any]) -> None:
        if self.cluster is not None:
            await self.cluster.room_event(room_id, event)

    async def forget_room(self, room_id: str) -> None:
        if self.cluster is not None:
            await self.cluster.room_closed(room_id)
        self._slot_sources.pop(room_id, None)
        for worker_id, counts in self._slot_subscribers.items():
            counts.pop(room_id, None)
            await self._quietly(worker_id, "forget_room", room_id)

    async def _quietly(self, worker_id: str, method: str, *args: Any) -> None:
        """A cleanup on a worker: a worker gone already has nothing left to clean."""
        worker = self.workers.get(worker_id)
        if worker is None or not worker.alive:
            return
        try:
            await getattr(worker.router, method)(*args)
        except Exception:
            logger.warning("%s on worker %s failed", method, worker_id, exc_info=True)

    # -- failure ---------------------------------------------------------------------------
    def worker_lost(self, worker_id: str) -> list[str]:
        """Forget a dead worker; return the publications whose origin it was."""
        worker = self.workers.get(worker_id)
        if worker is not None:
            worker.alive = False
            worker.peers = 0
        self._slot_subscribers.pop(worker_id, None)
        lost = []
        for publication_id, placed in list(self._publications.items()):
            placed.piped_to.discard(worker_id)
            if placed.origin == worker_id:
                lost.append(publication_id)
        return lost

    async def close(self) -> None:
        if self.local is not None:
            await self.local.close()
