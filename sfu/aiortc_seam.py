"""The one place where Lighthouse reaches into aiortc's private internals.

aiortc has no public API to take encoded RTP out of a receiver or to put RTP into a
sender (aiortc issues #449, #627). An SFU needs both, so this module swaps the class of
the receivers and senders aiortc creates for our peer connections:

* `ForwardingReceiver` keeps what the receiver does at the RTP level (SRTP-decrypted
  packets routed by SSRC, receiver statistics and receiver reports, RTX unwrapping,
  NACK generation upstream, the remote bitrate estimate) and hands each packet to a
  sink instead of the jitter buffer and decoder; no decoder thread is started.
* `ForwardingSender` has no track and no encoder: packets are written with
  `send_rtp()`, and the subscriber's RTCP (NACK, PLI/FIR, REMB, receiver reports) goes to
  a sink. It sends its own sender reports from the sink's NTP/RTP mapping.

Everything here depends on aiortc==1.16.0 (pinned in pyproject.toml); `check_seam()`
verifies the private names still exist, and tests/test_aiortc_seam.py runs it, so an
upgrade fails loudly instead of silently dropping media.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiortc
from aioice.ice import CandidatePair
from aiortc import clock
from aiortc.codecs import is_rtx
from aiortc.rate import RemoteBitrateEstimator
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpReceiveParameters,
    RTCRtpSendParameters,
)
from aiortc.rtcrtpreceiver import NackGenerator, RTCRtpReceiver, StreamStatistics
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    AnyRtcpPacket,
    HeaderExtensionsMap,
    RtcpByePacket,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSourceInfo,
    RtcpSrPacket,
    RtpPacket,
    pack_remb_fci,
    unpack_remb_fci,
    unwrap_rtx,
)
from aiortc.stats import RTCOutboundRtpStreamStats, RTCStatsReport

from .retransmit import RepeatLimiter

logger = logging.getLogger(__name__)

PINNED_AIORTC_VERSION = "1.16.0"

_RECEIVER_PRIVATE = (
    "_RTCRtpReceiver__codecs",
    "_RTCRtpReceiver__rtx_ssrc",
    "_RTCRtpReceiver__remote_streams",
    "_RTCRtpReceiver__nack_generator",
    "_RTCRtpReceiver__remote_bitrate_estimator",
    "_RTCRtpReceiver__rtcp_ssrc",
    "_RTCRtpReceiver__rtcp_task",
    "_RTCRtpReceiver__started",
    "_RTCRtpReceiver__transport",
    "_RTCRtpReceiver__kind",
)
_SENDER_PRIVATE = (
    "_RTCRtpSender__rtp_started",
    "_RTCRtpSender__rtp_exited",
    "_RTCRtpSender__rtcp_started",
    "_RTCRtpSender__rtcp_exited",
    "_RTCRtpSender__cname",
)
_DTLS_PRIVATE = (
    "_state",
    "_tx_srtp",
    "_RTCDtlsTransport__tx_bytes",
    "_RTCDtlsTransport__tx_packets",
)
_SEAM_METHODS = (
    (RTCRtpReceiver, "_handle_rtp_packet"),
    (RTCRtpReceiver, "_handle_rtcp_packet"),
    (RTCRtpReceiver, "_run_rtcp"),
    (RTCRtpReceiver, "_send_rtcp"),
    (RTCRtpReceiver, "receive"),
    (RTCRtpSender, "send"),
    (RTCRtpSender, "_run_rtp"),
    (RTCRtpSender, "_run_rtcp"),
    (RTCRtpSender, "_handle_rtcp_packet"),
    (RTCRtpSender, "_send_rtcp"),
)


class SeamError(RuntimeError):
    """aiortc's internals are not what this module was written against."""


def check_seam() -> None:
    """Raise SeamError unless aiortc's private internals match what this module hooks."""
    if aiortc.__version__ != PINNED_AIORTC_VERSION:
        raise SeamError(
            f"aiortc {aiortc.__version__} installed, seam written for {PINNED_AIORTC_VERSION}"
        )
    for owner, name in _SEAM_METHODS:
        if not callable(getattr(owner, name, None)):
            raise SeamError(f"aiortc {owner.__name__}.{name} is gone")
    loop = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        dtls = _probe_dtls_transport()
        receiver = RTCRtpReceiver("video", dtls)
        sender = RTCRtpSender("video", dtls)
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    for name in _RECEIVER_PRIVATE:
        if not hasattr(receiver, name):
            raise SeamError(f"aiortc RTCRtpReceiver lost private attribute {name}")
    for name in _SENDER_PRIVATE:
        if not hasattr(sender, name):
            raise SeamError(f"aiortc RTCRtpSender lost private attribute {name}")
    # what ForwardingSender.send_rtp_now reaches through
    reached: tuple[tuple[object, tuple[str, ...]], ...] = (
        (dtls, _DTLS_PRIVATE),
        (dtls.transport, ("_connection",)),
        (dtls.transport._connection, ("_nominated",)),
    )
    for holder, names in reached:
        for name in names:
            if not hasattr(holder, name):
                raise SeamError(f"{type(holder).__name__} lost private attribute {name}")
    if "protocol" not in CandidatePair.__init__.__code__.co_names or not hasattr(
        CandidatePair, "remote_addr"
    ):
        raise SeamError("aioice CandidatePair no longer has protocol and remote_addr")


def _probe_dtls_transport() -> aiortc.RTCDtlsTransport:
    gatherer = aiortc.RTCIceGatherer(iceServers=[])
    ice = aiortc.RTCIceTransport(gatherer)
    return aiortc.RTCDtlsTransport(ice, [aiortc.RTCCertificate.generateCertificate()])


# --------------------------------------------------------------------------------------
# upstream: publisher -> SFU


class UpstreamSink(Protocol):
    """What a ForwardingReceiver hands its packets and reports to (an UpTrack)."""

    async def on_rtp(self, packet: RtpPacket, codec: RTCRtpCodecParameters) -> None: ...

    def on_sender_report(self, ssrc: int, ntp_timestamp: int, rtp_timestamp: int) -> None: ...

    def on_bye(self) -> None: ...

    def upstream_bitrate(self, estimate: int) -> int: ...

    def upstream_fraction_lost(self, own: int) -> int: ...


class ForwardingReceiver(RTCRtpReceiver):
    """An RTCRtpReceiver that forwards RTP to a sink instead of decoding it."""

    sink: UpstreamSink | None
    media_ssrc: int | None
    packets_forwarded: int
    sink_errors: int
    # what was asked of the publisher again, and when (sfu/retransmit.py)
    upstream_asks: RepeatLimiter
    # RTCRtpReceiver's private (name-mangled) attributes used here, typed as aiortc 1.16.0's
    # RTCRtpReceiver.__init__ sets them (check_seam() checks they exist). Declarations
    # only: nothing is assigned at class level.
    _RTCRtpReceiver__codecs: dict[int, RTCRtpCodecParameters]
    _RTCRtpReceiver__rtx_ssrc: dict[int, int]
    _RTCRtpReceiver__remote_streams: dict[int, StreamStatistics]
    _RTCRtpReceiver__nack_generator: NackGenerator | None
    _RTCRtpReceiver__remote_bitrate_estimator: RemoteBitrateEstimator | None
    _RTCRtpReceiver__rtcp_ssrc: int | None
    _RTCRtpReceiver__rtcp_task: asyncio.Future[None] | None
    _RTCRtpReceiver__started: bool
    _RTCRtpReceiver__transport: RTCDtlsTransport

    @classmethod
    def install(cls, receiver: RTCRtpReceiver) -> ForwardingReceiver:
        """Turn an aiortc receiver, before it starts, into a forwarding one."""
        if getattr(receiver, "_RTCRtpReceiver__started", False):
            raise SeamError("receiver already started")
        receiver.__class__ = cls
        assert isinstance(receiver, ForwardingReceiver)
        receiver.sink = None
        receiver.media_ssrc = None
        receiver.packets_forwarded = 0
        receiver.sink_errors = 0
        receiver.upstream_asks = RepeatLimiter()
        return receiver

    async def receive(self, parameters: RTCRtpReceiveParameters) -> None:
        # Same as aiortc's, minus the decoder thread: nothing is ever decoded here.
        if self._RTCRtpReceiver__started:
            return
        for codec in parameters.codecs:
            assert codec.payloadType is not None  # negotiated codecs have their payload type
            self._RTCRtpReceiver__codecs[codec.payloadType] = codec
        for encoding in parameters.encodings:
            if encoding.rtx:
                self._RTCRtpReceiver__rtx_ssrc[encoding.rtx.ssrc] = encoding.ssrc
        self._RTCRtpReceiver__transport._register_rtp_receiver(self, parameters)
        self._RTCRtpReceiver__rtcp_task = asyncio.ensure_future(self._run_rtcp())
        self._RTCRtpReceiver__started = True

    async def _handle_rtcp_packet(self, packet: AnyRtcpPacket) -> None:
        await super()._handle_rtcp_packet(packet)
        sink = self.sink
        if sink is None:
            return
        if isinstance(packet, RtcpSrPacket):
            info = packet.sender_info
            sink.on_sender_report(packet.ssrc, info.ntp_timestamp, info.rtp_timestamp)
        elif isinstance(packet, RtcpByePacket):
            sink.on_bye()

    async def _handle_rtp_packet(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        if not self._enabled:
            return
        estimator = self._RTCRtpReceiver__remote_bitrate_estimator
        if estimator is not None and packet.extensions.abs_send_time is not None:
            remb = estimator.add(
                abs_send_time=packet.extensions.abs_send_time,
                arrival_time_ms=arrival_time_ms,
                payload_size=len(packet.payload) + packet.padding_size,
                ssrc=packet.ssrc,
            )
            if remb is not None:
                await self._send_remb(remb[0], remb[1])
        codecs = self._RTCRtpReceiver__codecs
        codec = codecs.get(packet.payload_type)
        if codec is None:
            return
        streams = self._RTCRtpReceiver__remote_streams
        stats = streams.get(packet.ssrc)
        if stats is None:
            stats = streams[packet.ssrc] = StreamStatistics(codec.clockRate)
        stats.add(packet)
        if is_rtx(codec):
            original_ssrc = self._RTCRtpReceiver__rtx_ssrc.get(packet.ssrc)
            apt = codec.parameters.get("apt")
            if original_ssrc is None or len(packet.payload) < 2 or apt not in codecs:
                return
            packet = unwrap_rtx(packet, payload_type=apt, ssrc=original_ssrc)
            codec = codecs[apt]
        nack_generator = self._RTCRtpReceiver__nack_generator
        if nack_generator is not None and nack_generator.add(packet):
            # aiortc's generator lists every packet still missing at each new gap
            await self._ask_again(packet.ssrc, sorted(nack_generator.missing))
        self.media_ssrc = packet.ssrc
        self.packets_forwarded += 1
        if self.sink is not None:
            try:
                await self.sink.on_rtp(packet, codec)
            except Exception:
                # an exception here would end aiortc's receive loop: all of this
                # publisher's media would stop, for every subscriber
                self.sink_errors += 1
                if self.sink_errors == 1:
                    logger.exception("forwarding a packet failed")

    async def _send_rtcp(self, packet: AnyRtcpPacket) -> None:
        # aiortc's receiver reports say what reached us; the sink may report worse (the
        # subscribers' losses, so that a publisher's Opus adds in-band FEC)
        if isinstance(packet, RtcpRrPacket) and self.sink is not None:
            for report in packet.reports:
                try:
                    report.fraction_lost = self.sink.upstream_fraction_lost(report.fraction_lost)
                except Exception:  # same reason as in _handle_rtp_packet
                    logger.exception("computing the reported loss failed")
        await super()._send_rtcp(packet)

    async def _send_remb(self, bitrate: int, ssrcs: list[int]) -> None:
        """Tell the publisher how fast to send: our estimate, within the sink's bounds."""
        rtcp_ssrc = self._RTCRtpReceiver__rtcp_ssrc
        if rtcp_ssrc is None:
            return
        if self.sink is not None:
            try:
                bitrate = self.sink.upstream_bitrate(bitrate)
            except Exception:  # same reason as in _handle_rtp_packet
                logger.exception("computing the upstream bitrate failed")
        await self._send_rtcp(
            RtcpPsfbPacket(
                fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0, fci=pack_remb_fci(bitrate, ssrcs)
            )
        )

    async def request_keyframe(self) -> bool:
        """Send a PLI to the publisher. False when no media has arrived yet."""
        if self.media_ssrc is None:
            return False
        await self._send_rtcp_pli(self.media_ssrc)
        return True

    async def request_retransmission(self, sequence_numbers: Sequence[int]) -> None:
        if self.media_ssrc is not None:
            await self._ask_again(self.media_ssrc, sequence_numbers)

    async def _ask_again(self, media_ssrc: int, sequence_numbers: Sequence[int]) -> None:
        """NACK what was not asked for within the last round trip (nor too often)."""
        due = self.upstream_asks.filter(list(sequence_numbers), time.monotonic(), None)
        if due:
            await self._send_rtcp_nack(media_ssrc, due)

    def received_packets(self) -> int:
        return sum(s.packets_received for s in self._RTCRtpReceiver__remote_streams.values())


# --------------------------------------------------------------------------------------
# downstream: SFU -> subscriber


class DownstreamSink(Protocol):
    """What a ForwardingSender reports to (a DownTrack)."""

    def on_started(self) -> None: ...

    async def on_nack(self, sequence_numbers: list[int]) -> None: ...

    async def on_keyframe_request(self) -> None: ...

    def on_remb(self, bitrate: int) -> None: ...

    def on_receiver_report(self, fraction_lost: int, packets_lost: int, highest: int) -> None: ...

    def sender_report_timestamps(self) -> tuple[int, int] | None: ...


@dataclass(frozen=True, slots=True)
class NegotiatedSend:
    """What the subscriber agreed to receive on one sender."""

    payload_type: int
    mime_type: str
    clock_rate: int
    rtx_payload_type: int | None
    extensions: HeaderExtensionsMap
    extensions_signature: tuple[tuple[str, int], ...]
    # every codec agreed (lower-case MIME type -> its payload type and RTX payload type),
    # the first of each: a subscriber that decodes H.264 and VP8 takes either source
    payload_types: dict[str, tuple[int, int | None]] = field(default_factory=dict)

    def for_mime(self, mime_type: str | None) -> tuple[int, int | None] | None:
        """(payload type, RTX payload type) to send a source of `mime_type` under (None
        while the source's codec is not known: the first agreed), or None if this
        subscriber cannot decode it."""
        if mime_type is None or not self.payload_types:
            return self.payload_type, self.rtx_payload_type
        return self.payload_types.get(mime_type.lower())


class ForwardingSender(RTCRtpSender):
    """An RTCRtpSender with no encoder: the SFU writes already-encoded RTP into it."""

    sink: DownstreamSink | None
    negotiated: NegotiatedSend | None
    packets_sent: int
    octets_sent: int
    rtt: float | None
    _sr_sent_at: float | None
    _sr_lsr: int | None
    # RTCRtpSender's private (name-mangled) attributes used here (see ForwardingReceiver)
    _RTCRtpSender__rtp_started: asyncio.Event
    _RTCRtpSender__rtp_exited: asyncio.Event
    _RTCRtpSender__rtcp_started: asyncio.Event
    _RTCRtpSender__rtcp_exited: asyncio.Event
    _RTCRtpSender__cname: str | None

    @classmethod
    def install(cls, sender: RTCRtpSender) -> ForwardingSender:
        if getattr(sender, "_RTCRtpSender__started", False):
            raise SeamError("sender already started")
        sender.__class__ = cls
        assert isinstance(sender, ForwardingSender)
        sender.sink = None
        sender.negotiated = None
        sender.packets_sent = 0
        sender.octets_sent = 0
        sender.rtt = None
        sender._sr_sent_at = None
        sender._sr_lsr = None
        return sender

    async def send(self, parameters: RTCRtpSendParameters) -> None:
        first = parameters.codecs[0]
        assert first.payloadType is not None  # negotiated codecs have their payload type
        payload_types: dict[str, tuple[int, int | None]] = {}
        for codec in parameters.codecs:
            if is_rtx(codec) or codec.mimeType.lower() in payload_types:
                continue
            assert codec.payloadType is not None
            rtx = next(
                (
                    c.payloadType
                    for c in parameters.codecs
                    if is_rtx(c) and c.parameters.get("apt") == codec.payloadType
                ),
                None,
            )
            payload_types[codec.mimeType.lower()] = (codec.payloadType, rtx)
        rtx_pt = payload_types[first.mimeType.lower()][1]
        extensions = HeaderExtensionsMap()
        extensions.configure(parameters)
        self.negotiated = NegotiatedSend(
            payload_type=first.payloadType,
            mime_type=first.mimeType,
            clock_rate=first.clockRate,
            rtx_payload_type=rtx_pt,
            extensions=extensions,
            extensions_signature=tuple(
                sorted((ext.uri, ext.id) for ext in parameters.headerExtensions)
            ),
            payload_types=payload_types,
        )
        await super().send(parameters)
        if self.sink is not None:
            self.sink.on_started()

    def send_rtp_now(self, data: bytes | bytearray) -> bool:
        """`send_rtp()` without its five coroutine hops (DTLS transport, ICE transport,
        aioice connection, its sendto, the protocol): SRTP-protect and write to the
        nominated candidate pair's socket at once, with the same counters. This is the
        forwarding path's per-packet, per-subscriber call: the hops were a third of its
        cost. False if the transport is not (or no longer) up."""
        dtls: Any = self.transport
        if dtls._state is not DtlsState.CONNECTED:
            return False
        pair = dtls.transport._connection._nominated.get(1)
        socket = pair.protocol.transport if pair is not None else None
        if socket is None or socket.is_closing():
            return False
        protected = dtls._tx_srtp.protect(bytes(data))
        socket.sendto(protected, pair.remote_addr)
        dtls._RTCDtlsTransport__tx_bytes += len(protected)
        dtls._RTCDtlsTransport__tx_packets += 1
        self.packets_sent += 1
        self.octets_sent += len(data) - 12
        return True

    async def send_rtp(self, data: bytes | bytearray) -> bool:
        """Encrypt and send one RTP packet. False if the transport is not (or no longer) up."""
        try:
            await self.transport._send_rtp(bytes(data))
        except ConnectionError:
            return False
        self.packets_sent += 1
        self.octets_sent += len(data) - 12
        return True

    async def _run_rtp(self, codec: RTCRtpCodecParameters) -> None:
        # No encoding loop: RTP is written by send_rtp(). Keep aiortc's start/exit events
        # so that RTCRtpSender.stop() still works.
        self._RTCRtpSender__rtp_started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            pass
        finally:
            self._RTCRtpSender__rtp_exited.set()

    async def _run_rtcp(self) -> None:
        self._RTCRtpSender__rtcp_started.set()
        try:
            while True:
                await asyncio.sleep(0.5 + random.random())
                await self._send_sender_report()
        except asyncio.CancelledError:
            pass
        try:
            await self._send_rtcp([RtcpByePacket(sources=[self._ssrc])])
        finally:
            self._RTCRtpSender__rtcp_exited.set()

    async def _send_sender_report(self) -> None:
        timestamps = self.sink.sender_report_timestamps() if self.sink else None
        if timestamps is None:
            return
        ntp, rtp_ts = timestamps
        packets: list[AnyRtcpPacket] = [
            RtcpSrPacket(
                ssrc=self._ssrc,
                sender_info=RtcpSenderInfo(
                    ntp_timestamp=ntp,
                    rtp_timestamp=rtp_ts,
                    packet_count=self.packets_sent & 0xFFFFFFFF,
                    octet_count=self.octets_sent & 0xFFFFFFFF,
                ),
            )
        ]
        self._sr_lsr = (ntp >> 16) & 0xFFFFFFFF
        self._sr_sent_at = time.time()
        cname = self._RTCRtpSender__cname
        if cname is not None:
            packets.append(
                RtcpSdesPacket(
                    chunks=[RtcpSourceInfo(ssrc=self._ssrc, items=[(1, cname.encode("utf8"))])]
                )
            )
        await self._send_rtcp(packets)

    async def _handle_rtcp_packet(self, packet: AnyRtcpPacket) -> None:
        sink = self.sink
        if isinstance(packet, RtcpRrPacket | RtcpSrPacket):
            for report in packet.reports:
                if report.ssrc != self._ssrc:
                    continue
                if sink is not None:
                    sink.on_receiver_report(
                        report.fraction_lost, report.packets_lost, report.highest_sequence
                    )
                if report.lsr and report.lsr == self._sr_lsr and self._sr_sent_at is not None:
                    rtt = time.time() - self._sr_sent_at - report.dlsr / 65536
                    if rtt >= 0:
                        self.rtt = rtt if self.rtt is None else 0.85 * self.rtt + 0.15 * rtt
        elif sink is None:
            return
        elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            await sink.on_nack(list(packet.lost))
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_FIR, RTCP_PSFB_PLI):
            await sink.on_keyframe_request()
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
            except ValueError:
                return
            if self._ssrc in ssrcs:
                sink.on_remb(bitrate)

    async def getStats(self) -> RTCStatsReport:
        report = RTCStatsReport()
        report.add(
            RTCOutboundRtpStreamStats(
                timestamp=clock.current_datetime(),
                type="outbound-rtp",
                id="outbound-rtp_" + str(id(self)),
                ssrc=self._ssrc,
                kind=self.kind,
                transportId=self.transport._stats_id,
                packetsSent=self.packets_sent,
                bytesSent=self.octets_sent,
                trackId=str(self._track_id),
            )
        )
        report.update(self.transport._get_stats())
        return report
