"""Server-side subscribers: the recorder and the face recognizer subscribe to a publication
like a TV does, minus the network (after Galène's diskwriter).

A LocalSubscription gets one LocalDownTrack per media kind. Each is fed by the UpTrack's
fan-out exactly as a DownTrack is, starts video at a keyframe (asking the publisher for
one), and hands the publisher's packets, untouched, to a `LocalSink`. When the
publication closes, the sink sees `on_end()` once: an end-of-stream, never an exception.
Nothing here knows about files or faces.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from aiortc.rtp import RtpPacket

from .tracks import KEYFRAME_WAIT_RETRY_S, PacketTemplates, UpTrack

logger = logging.getLogger(__name__)


class LocalSink(Protocol):
    """What a server-side subscriber implements."""

    async def on_packet(
        self, kind: str, mime_type: str, clock_rate: int, packet: RtpPacket, is_keyframe: bool
    ) -> None: ...

    def on_end(self, kind: str) -> None: ...


class LocalDownTrack:
    """One media kind of a server-side subscription."""

    # the recorder keeps a muted venue's audio: muting is about who hears it live
    obeys_mute = False

    def __init__(self, uptrack: UpTrack, sink: LocalSink) -> None:
        self.uptrack = uptrack
        self.sink = sink
        self.kind = uptrack.kind
        self.waiting_for_keyframe = self.kind == "video"
        self.packets_delivered = 0
        self.sink_errors = 0
        # a server-side subscriber never limits the publisher's bitrate (see UpTrack)
        self.limits_publisher = False
        self.remb_bitrate: int | None = None
        self.remb_time: float | None = None
        self.fraction_lost: int | None = None  # no receiver reports of its own
        self.fraction_lost_time: float | None = None
        self._closed = False
        self._waiter: asyncio.Future[None] | None = None
        uptrack.downtracks.append(self)
        if self.waiting_for_keyframe:
            self._waiter = asyncio.ensure_future(self._ask_until_keyframe())

    async def _ask_until_keyframe(self) -> None:
        try:
            while self.waiting_for_keyframe and not self._closed:
                await self.uptrack.request_keyframe()
                await asyncio.sleep(KEYFRAME_WAIT_RETRY_S)
        except asyncio.CancelledError:
            pass

    async def forward(
        self, packet: RtpPacket, is_keyframe: bool, now: float, templates: PacketTemplates
    ) -> None:
        if self._closed:
            return
        if self.waiting_for_keyframe:
            if not is_keyframe:
                return
            self.waiting_for_keyframe = False
        try:
            await self.sink.on_packet(
                self.kind,
                self.uptrack.mime_type or "",
                self.uptrack.clock_rate,
                packet,
                is_keyframe,
            )
        except Exception:
            # a subscriber's fault must never reach the forwarding loop or other subscribers
            self.sink_errors += 1
            if self.sink_errors == 1:
                logger.exception("server-side subscriber failed on a %s packet", self.kind)
            return
        self.packets_delivered += 1

    async def request_keyframe(self) -> bool:
        return await self.uptrack.request_keyframe()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._waiter is not None:
            self._waiter.cancel()
        if self in self.uptrack.downtracks:
            self.uptrack.downtracks.remove(self)
        try:
            self.sink.on_end(self.kind)
        except Exception:
            logger.exception("server-side subscriber failed at end of stream")


class LocalSubscription:
    """A publication received inside the server, by one sink."""

    def __init__(self, uptracks: dict[str, UpTrack], sink: LocalSink) -> None:
        self.sink = sink
        self.created = time.monotonic()
        self.downtracks = {kind: LocalDownTrack(up, sink) for kind, up in uptracks.items()}

    @property
    def closed(self) -> bool:
        return all(d._closed for d in self.downtracks.values())

    def close(self) -> None:
        for downtrack in self.downtracks.values():
            downtrack.close()
