"""Pipes: a publication's RTP carried to another media worker over loopback UDP.

After mediasoup's PipeTransport: a room spans worker processes by sending each
publication once to every other worker that has subscribers for it, as plain RTP
(already decrypted by the worker that received it, never re-encoded), and fanning it out
locally there. RTCP goes back on the same pipe, so the far worker's subscribers are served
as if the publisher were theirs.

- A `PipeEndpoint` is one UDP socket per process. Streams are told apart by the sending
  endpoint's address and a pipe SSRC; a packet from a source nobody announced is dropped
  and counted (`unknown_packets`).
- A `PipeOut` sits in an UpTrack's fan-out beside its DownTracks. It sends the
  publisher's packets with their own sequence numbers and timestamps (so a NACK from the
  far side needs no mapping), answers NACKs from the UpTrack's cache, turns a PLI into a
  keyframe request through the UpTrack's limiter (one PLI to the publisher however many
  workers ask), takes the far side's REMB as one more subscriber's cap on the publisher's
  bitrate, and sends a sender report every second mapped from the publisher's last, so
  the far side's subscribers keep the publisher's lip sync.
- A `PipeIn` is the upstream of an UpTrack on the receiving worker, in place of the
  ForwardingReceiver a WebRTC publisher has: that UpTrack caches, detects keyframes and
  limits keyframe requests like any other. It NACKs packets lost on the pipe itself,
  and sends the far side its own subscribers' bitrate cap once a second, and for audio
  their worst loss (a receiver report), which the origin reports to the publisher like
  its own subscribers' so that its Opus adds FEC for a village on any worker.

Mute is not applied on the pipe: each worker applies the room's mutes to its own
subscribers, so a recorder on another worker still hears a muted venue.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, SupportsBytes

from aiortc import clock
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpParameters,
)
from aiortc.rtcrtpreceiver import NackGenerator
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    HeaderExtensionsMap,
    RtcpByePacket,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    RtpPacket,
    is_rtcp,
    pack_remb_fci,
    unpack_remb_fci,
)

from .tracks import PacketTemplates, UpTrack

logger = logging.getLogger(__name__)

Address = tuple[str, int]

# Payload types on the pipe name the codec, so the far side needs no SDP.
PIPE_CODECS: dict[int, tuple[str, int]] = {
    96: ("video/VP8", 90000),
    102: ("video/H264", 90000),
    111: ("audio/opus", 48000),
}
_PIPE_PAYLOAD_TYPE = {mime.lower(): pt for pt, (mime, _) in PIPE_CODECS.items()}
# The audio level rides along (the far side's subscribers' pages show who speaks);
# abs-send-time is set anew by the far side's UpTrack for its own subscribers.
_AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
# The far side reports its subscribers' bitrate cap (and the near side its sender report)
# this often; a cap older than tracks.REMB_FRESH_S no longer counts.
REPORT_INTERVAL_S = 1.0
# A sender report older than this when read is taken as is (clocks apart, not a delay).
MAX_REPORT_AGE_S = 1.0
# Large enough for a burst of keyframes from several publishers at once.
SOCKET_BUFFER_BYTES = 4 * 1024 * 1024


def pipe_extensions() -> HeaderExtensionsMap:
    extensions = HeaderExtensionsMap()
    extensions.configure(
        RTCRtpParameters(
            headerExtensions=[RTCRtpHeaderExtensionParameters(id=1, uri=_AUDIO_LEVEL_URI)]
        )
    )
    return extensions


@dataclass(frozen=True, slots=True)
class PipeStream:
    """What the receiving worker is told about one piped track before its media arrives."""

    source: Address  # the sending endpoint
    ssrc: int  # the pipe's SSRC for this track
    kind: str


class PipeEndpoint(asyncio.DatagramProtocol):
    """One process's UDP socket for all its pipes, both directions."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.address: Address | None = None
        self.outs: dict[tuple[Address, int], PipeOut] = {}
        self.ins: dict[tuple[Address, int], PipeIn] = {}
        self.unknown_packets = 0
        self.malformed_packets = 0
        self.extensions = pipe_extensions()
        self._inbox: deque[tuple[bytes, Address]] = deque()
        self._wake = asyncio.Event()
        self._drainer: asyncio.Task[None] | None = None
        self._reporter: asyncio.Task[None] | None = None
        self._used_ssrcs: set[int] = set()

    async def open(self, host: str = "127.0.0.1", port: int = 0) -> Address:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER_BYTES)
        sock.bind((host, port))
        self.transport, _ = await loop.create_datagram_endpoint(lambda: self, sock=sock)
        self.address = self.transport.get_extra_info("sockname")[:2]
        self._drainer = asyncio.ensure_future(self._drain())
        self._reporter = asyncio.ensure_future(self._report())
        return self.address

    # -- asyncio.DatagramProtocol --------------------------------------------------------
    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        # Handled on the drainer task, a batch per wake-up: no coroutine per packet.
        self._inbox.append((data, (addr[0], addr[1])))
        self._wake.set()

    def error_received(self, exc: Exception) -> None:
        logger.debug("pipe socket error: %s", exc)

    # -- opening and closing pipes ---------------------------------------------------------
    def open_out(self, uptrack: UpTrack, destination: Address) -> PipeOut:
        """Pipe `uptrack` to the endpoint at `destination`; tell it `pipe.stream`."""
        ssrc = self._new_ssrc()
        out = PipeOut(self, uptrack, destination, ssrc)
        self.outs[(destination, ssrc)] = out
        return out

    def open_in(self, stream: PipeStream, on_end: Callable[[], None] | None = None) -> PipeIn:
        """Expect `stream`; its packets go to the returned PipeIn's UpTrack."""
        pipe_in = PipeIn(self, stream, on_end)
        self.ins[(stream.source, stream.ssrc)] = pipe_in
        return pipe_in

    def _new_ssrc(self) -> int:
        while True:
            ssrc = secrets.randbits(32)
            if ssrc and ssrc not in self._used_ssrcs:
                self._used_ssrcs.add(ssrc)
                return ssrc

    def send(self, data: bytes | bytearray, destination: Address) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, destination)

    def send_rtcp(self, packets: Sequence[SupportsBytes], destination: Address) -> None:
        self.send(b"".join(bytes(p) for p in packets), destination)

    async def close(self) -> None:
        for pipe_in in tuple(self.ins.values()):
            pipe_in.close()
        for out in tuple(self.outs.values()):
            out.close()
        for task in (self._drainer, self._reporter):
            if task is not None:
                task.cancel()
        if self.transport is not None:
            self.transport.close()

    # -- receiving -----------------------------------------------------------------------
    async def _drain(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._inbox:
                data, addr = self._inbox.popleft()
                try:
                    await self._handle(data, addr)
                except Exception:  # one bad datagram must not stop every pipe
                    logger.exception("pipe datagram from %s failed", addr)

    async def _handle(self, data: bytes, addr: Address) -> None:
        if len(data) < 8 or data[0] >> 6 != 2:
            self.malformed_packets += 1
            return
        if is_rtcp(data):
            try:
                packets = RtcpPacket.parse(data)
            except ValueError:
                self.malformed_packets += 1
                return
            for rtcp in packets:
                await self._handle_rtcp(rtcp, addr)
            return
        if len(data) < 12:
            self.malformed_packets += 1
            return
        ssrc = int.from_bytes(data[8:12], "big")
        pipe_in = self.ins.get((addr, ssrc))
        if pipe_in is None:
            self.unknown_packets += 1
            return
        try:
            packet = RtpPacket.parse(data, self.extensions)
        except ValueError:
            self.malformed_packets += 1
            return
        await pipe_in.on_rtp(packet)

    async def _handle_rtcp(self, packet: object, addr: Address) -> None:
        if isinstance(packet, RtcpSrPacket | RtcpByePacket):
            ssrcs = [packet.ssrc] if isinstance(packet, RtcpSrPacket) else packet.sources
            for ssrc in ssrcs:
                pipe_in = self.ins.get((addr, ssrc))
                if pipe_in is None:
                    self.unknown_packets += 1
                else:
                    pipe_in.on_rtcp(packet)
        elif isinstance(packet, RtcpRtpfbPacket | RtcpPsfbPacket):
            out = self.outs.get((addr, packet.media_ssrc))
            if out is None:
                self.unknown_packets += 1
            else:
                await out.on_rtcp(packet)
        elif isinstance(packet, RtcpRrPacket):
            for report in packet.reports:
                out = self.outs.get((addr, report.ssrc))
                if out is None:
                    self.unknown_packets += 1
                else:
                    out.on_receiver_report(report.fraction_lost)
        else:
            self.unknown_packets += 1

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(REPORT_INTERVAL_S)
            for out in tuple(self.outs.values()):
                out.send_sender_report()
            for pipe_in in tuple(self.ins.values()):
                pipe_in.send_bitrate_cap()


class PipeOut:
    """One UpTrack's packets, sent to one other worker."""

    # the pipe carries a muted venue's audio: the far worker applies the room's mutes
    obeys_mute = False

    def __init__(
        self, endpoint: PipeEndpoint, uptrack: UpTrack, destination: Address, ssrc: int
    ) -> None:
        assert endpoint.address is not None, "open the endpoint first"
        self.endpoint = endpoint
        self.uptrack = uptrack
        self.destination = destination
        self.stream = PipeStream(endpoint.address, ssrc, uptrack.kind)
        self.kind = uptrack.kind
        # the far worker's subscribers' cap counts like a local subscriber's REMB
        self.limits_publisher = True
        self.remb_bitrate: int | None = None
        self.remb_time: float | None = None
        self.fraction_lost: int | None = None  # no receiver reports of its own
        self.fraction_lost_time: float | None = None
        self.packets_sent = 0
        self.retransmissions = 0
        self.keyframe_requests = 0
        self._payload_type: int | None = None
        self._closed = False
        uptrack.downtracks.append(self)

    @property
    def closed(self) -> bool:
        return self._closed

    def _pipe_payload_type(self) -> int | None:
        if self._payload_type is None and self.uptrack.mime_type is not None:
            self._payload_type = _PIPE_PAYLOAD_TYPE.get(self.uptrack.mime_type.lower())
        return self._payload_type

    def _serialize(self, packet: RtpPacket, payload_type: int) -> bytearray:
        copy = RtpPacket(
            payload_type=payload_type,
            marker=packet.marker,
            sequence_number=packet.sequence_number,
            timestamp=packet.timestamp,
            ssrc=self.stream.ssrc,
            payload=packet.payload,
        )
        copy.extensions.audio_level = packet.extensions.audio_level
        copy.padding_size = packet.padding_size
        return bytearray(copy.serialize(self.endpoint.extensions))

    async def forward(
        self, packet: RtpPacket, is_keyframe: bool, now: float, templates: PacketTemplates
    ) -> None:
        if self._closed:
            return
        payload_type = self._pipe_payload_type()
        if payload_type is None:
            return
        # every pipe out of this worker sends the same bytes but for the SSRC
        data = templates.get(_PipeTemplate)
        if data is None:
            data = templates[_PipeTemplate] = self._serialize(packet, payload_type)
        else:
            data = bytearray(data)
            data[8:12] = self.stream.ssrc.to_bytes(4, "big")
        self.endpoint.send(data, self.destination)
        self.packets_sent += 1

    async def on_rtcp(self, packet: RtcpRtpfbPacket | RtcpPsfbPacket) -> None:
        if self._closed:
            return
        if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            await self._answer_nack(list(packet.lost))
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_PLI:
            if await self.uptrack.request_keyframe():
                self.keyframe_requests += 1
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, _ = unpack_remb_fci(packet.fci)
            except ValueError:
                return
            self.remb_bitrate = bitrate
            self.remb_time = time.monotonic()

    def on_receiver_report(self, fraction_lost: int) -> None:
        """The far worker's subscribers' worst loss (audio): counted as one subscriber's."""
        if not self._closed:
            self.fraction_lost = fraction_lost
            self.fraction_lost_time = time.monotonic()

    async def _answer_nack(self, sequence_numbers: list[int]) -> None:
        payload_type = self._pipe_payload_type()
        missing: list[int] = []
        for seq in sequence_numbers:
            packet = self.uptrack.cache.get(seq)
            if packet is None or payload_type is None:
                missing.append(seq)
                continue
            self.endpoint.send(self._serialize(packet, payload_type), self.destination)
            self.retransmissions += 1
        if missing:  # not here either: ask the publisher
            await self.uptrack.request_retransmission(missing)

    def send_sender_report(self) -> None:
        """The publisher's clock now, from its last sender report (see DownTrack)."""
        report = self.uptrack.sender_report
        if self._closed or report is None:
            return
        rtp_now = report[1] + int((time.monotonic() - report[0]) * self.uptrack.clock_rate)
        self.endpoint.send_rtcp(
            [
                RtcpSrPacket(
                    ssrc=self.stream.ssrc,
                    sender_info=RtcpSenderInfo(
                        ntp_timestamp=clock.current_ntp_time(),
                        rtp_timestamp=rtp_now & 0xFFFFFFFF,
                        packet_count=self.packets_sent & 0xFFFFFFFF,
                        octet_count=0,
                    ),
                )
            ],
            self.destination,
        )

    def close(self) -> None:
        """Stop sending; the far side's PipeIn ends (BYE)."""
        if self._closed:
            return
        self._closed = True
        if self in self.uptrack.downtracks:
            self.uptrack.downtracks.remove(self)
        self.endpoint.outs.pop((self.destination, self.stream.ssrc), None)
        self.endpoint.send_rtcp([RtcpByePacket(sources=[self.stream.ssrc])], self.destination)


class _PipeTemplate:
    """Key of the pipe's serialised packet in an UpTrack's per-packet templates."""


class PipeIn:
    """The upstream of an UpTrack fed by a pipe (in place of a ForwardingReceiver)."""

    def __init__(
        self, endpoint: PipeEndpoint, stream: PipeStream, on_end: Callable[[], None] | None
    ) -> None:
        self.endpoint = endpoint
        self.stream = stream
        self.kind = stream.kind
        self.sink: UpTrack | None = None
        self.media_ssrc: int | None = None
        self.packets_received = 0
        self.ended = False
        self._on_end = on_end
        self._nacks = NackGenerator()
        self._codecs: dict[int, RTCRtpCodecParameters] = {}
        self._rtcp_ssrc = secrets.randbits(32)

    def uptrack(self, **options: int) -> UpTrack:
        """The UpTrack this pipe feeds (made once)."""
        if self.sink is None:
            UpTrack(self.kind, self, **options)
        assert self.sink is not None
        return self.sink

    async def on_rtp(self, packet: RtpPacket) -> None:
        if self.ended:
            return
        codec = self._codecs.get(packet.payload_type)
        if codec is None:
            known = PIPE_CODECS.get(packet.payload_type)
            if known is None:
                self.endpoint.malformed_packets += 1
                return
            codec = self._codecs[packet.payload_type] = RTCRtpCodecParameters(
                mimeType=known[0], clockRate=known[1], payloadType=packet.payload_type
            )
        self.media_ssrc = packet.ssrc
        self.packets_received += 1
        if self._nacks.add(packet):  # lost on the pipe: the near side's cache has it
            await self.request_retransmission(sorted(self._nacks.missing))
        if self.sink is not None:
            await self.sink.on_rtp(packet, codec)

    def on_rtcp(self, packet: RtcpSrPacket | RtcpByePacket) -> None:
        if isinstance(packet, RtcpSrPacket):
            if self.sink is not None:
                info = packet.sender_info
                # The report says the publisher's clock when it was sent (by the wall clock
                # both workers share); it is read later, after the loop got to it: move it
                # on by that delay, so the far side's lip sync does not lag by it.
                delay_s = ((clock.current_ntp_time() - info.ntp_timestamp) & (2**64 - 1)) / 2**32
                ticks = int(delay_s * self.sink.clock_rate) if 0 < delay_s < MAX_REPORT_AGE_S else 0
                self.sink.on_sender_report(
                    packet.ssrc, info.ntp_timestamp, (info.rtp_timestamp + ticks) & 0xFFFFFFFF
                )
        else:
            self.close()

    # -- what the UpTrack asks of its upstream ------------------------------------------
    async def request_keyframe(self) -> bool:
        if self.media_ssrc is None or self.ended:
            return False
        self.endpoint.send_rtcp(
            [RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=self._rtcp_ssrc, media_ssrc=self.stream.ssrc)],
            self.stream.source,
        )
        return True

    async def request_retransmission(self, sequence_numbers: Sequence[int]) -> None:
        if not sequence_numbers or self.ended:
            return
        nack = RtcpRtpfbPacket(
            fmt=RTCP_RTPFB_NACK,
            ssrc=self._rtcp_ssrc,
            media_ssrc=self.stream.ssrc,
            lost=list(sequence_numbers),
        )
        self.endpoint.send_rtcp([nack], self.stream.source)

    def send_bitrate_cap(self) -> None:
        """Once a second: this worker's subscribers' bitrate cap, and for audio their worst
        loss (0 when none is fresh: the origin then forgets this worker's last)."""
        if self.ended or self.sink is None:
            return
        if self.stream.kind == "audio":
            worst = self.sink.upstream_fraction_lost(0)
            report = RtcpReceiverInfo(
                ssrc=self.stream.ssrc,
                fraction_lost=worst,
                packets_lost=0,
                highest_sequence=0,
                jitter=0,
                lsr=0,
                dlsr=0,
            )
            self.endpoint.send_rtcp(
                [RtcpRrPacket(ssrc=self._rtcp_ssrc, reports=[report])], self.stream.source
            )
        cap = self.sink.upstream_bitrate_cap()
        if cap is None:
            return
        self.endpoint.send_rtcp(
            [
                RtcpPsfbPacket(
                    fmt=RTCP_PSFB_APP,
                    ssrc=self._rtcp_ssrc,
                    media_ssrc=self.stream.ssrc,
                    fci=pack_remb_fci(cap, [self.stream.ssrc]),
                )
            ],
            self.stream.source,
        )

    def close(self) -> None:
        """The pipe ended (BYE, or the worker dropped it): its UpTrack closes."""
        if self.ended:
            return
        self.ended = True
        self.endpoint.ins.pop((self.stream.source, self.stream.ssrc), None)
        if self.sink is not None:
            self.sink.close()
        if self._on_end is not None:
            try:
                self._on_end()
            except Exception:
                logger.exception("pipe end callback failed")
