"""UpTrack (publisher -> SFU) and DownTrack (SFU -> one subscriber) for one media kind.

An UpTrack fans each packet out to its DownTracks (and to the other `FanoutMember`s:
server-side subscribers, pipes to other workers). It keeps a packet cache for NACKs,
limits keyframe requests to its publisher, and remembers the publisher's last sender
report. A DownTrack rewrites each packet into its subscriber's numbering and sends it;
video starts at a keyframe. Nothing here decodes or re-encodes media.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

from aiortc import clock
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import HeaderExtensions, RtpPacket, wrap_rtx
from aiortc.utils import random16, random32

from .aiortc_seam import ForwardingSender, UpstreamSink
from .keyframes import KeyframeRequestLimiter, keyframe_detector
from .packetcache import PacketCache
from .retransmit import RepeatLimiter, ResendBudget
from .rewriter import StreamRewriter, rewrite_header, ts_diff

logger = logging.getLogger(__name__)

# A DownTrack waiting for its first keyframe asks again this often.
KEYFRAME_WAIT_RETRY_S = 0.3
# Downstream REMBs older than this no longer cap the publisher's bitrate.
REMB_FRESH_S = 5.0
# Downstream receiver reports older than this no longer count in the loss reported upstream.
LOSS_FRESH_S = 5.0
# how long the soonest-come packet stands for its stream's clock (the publisher's and our
# clocks drift apart by ~50 ppm: 0.25 ms over this window)
FRESHEST_WINDOW_S = 5.0
# a copy of a packet older than this (media time behind the newest sent) would come too
# late to be shown (mediasoup's MaxRetransmissionDelay: 2 s video, 1 s audio; a TV's
# jitter buffer holds far less than that)
MAX_RESEND_AGE_S = {"video": 2.0, "audio": 1.0}
# A village downlink that cannot carry the video: when the subscriber's receiver reports
# say that this share of the video sent was lost, over two windows of DOWNLINK_WINDOW_S in
# a row, its queue is overflowing (bench/links.py: 61 % on a 500 kbit/s link with ~550
# kbit/s sent; 9 % at 10 % random loss, which NACKs repair). It steps down a ladder: the
# venue's lower encoding (the router has or asks for one, `change_quality`), then no
# video (paused; its audio, which then fits, plays on). Each step is tried back up after
# VIDEO_RETRY_S, doubling to VIDEO_RETRY_MAX_S while it keeps failing; a step tried
# back up falls again after one lossy window, not two. Reports that stop for
# DOWNLINK_REPORT_GAP_S (an outage, both ways) start the count again: an outage's losses
# say nothing of the link's rate. Not the REMB: a link that tail-drops at a full queue
# shows no growing delay (a TV's estimate on the 500 kbit/s link climbed to 659 kbit/s),
# and a receiver's estimate stays within 1.5 times what it gets, so on the lower stream it
# could never say that the first would fit.
DOWNLINK_LOST_SHARE = 0.25
DOWNLINK_WINDOW_S = 5.0
DOWNLINK_REPORT_GAP_S = 2.5
# never in a subscription's first seconds (a joining TV loses its first keyframe's tail)
DOWNLINK_WATCH_AFTER_S = 10.0
VIDEO_RETRY_S = 20.0
VIDEO_RETRY_MAX_S = 160.0

# a NACK this long is an outage's (a 3 s outage: ~300 video packets), not a lossy link's
# (aiortc lists every packet still missing of its last 128; Chromium its own few): the
# subscriber's picture stands still until a keyframe, which is asked for at once, and the
# packets are not sent again
OUTAGE_NACK_PACKETS = 64

# The packet being fanned out, serialised once per distinct downstream form and shared by
# the fan-out: keyed by a subscriber's header-extension signature (DownTrack, through
# UpTrack.template) or by the pipe's own key (sfu.pipe.PipeOut).
PacketTemplates = dict[object, bytes | bytearray]


class FanoutMember(Protocol):
    """What an UpTrack fans its packets out to: a DownTrack, a server-side subscriber's
    LocalDownTrack (sfu/local.py) or a PipeOut to another worker (sfu/pipe.py)."""

    # whether a muted venue's audio is withheld from it
    obeys_mute: bool
    # whether its REMB (remb_bitrate, received at remb_time) caps the publisher's bitrate
    limits_publisher: bool
    remb_bitrate: int | None
    remb_time: float | None
    # the loss its receiver reports give (RTCP fraction lost, 0-255), and when
    fraction_lost: int | None
    fraction_lost_time: float | None

    async def forward(
        self, packet: RtpPacket, is_keyframe: bool, now: float, templates: PacketTemplates
    ) -> None: ...

    def close(self) -> None: ...


class Upstream(Protocol):
    """Where an UpTrack's packets come from: a WebRTC publisher's ForwardingReceiver
    (sfu/aiortc_seam.py) or a PipeIn from another worker (sfu/pipe.py). The UpTrack makes
    itself its sink."""

    @property
    def sink(self) -> UpstreamSink | None: ...

    @sink.setter
    def sink(self, sink: UpTrack | None) -> None: ...

    @property
    def media_ssrc(self) -> int | None: ...

    async def request_keyframe(self) -> bool: ...

    async def request_retransmission(self, sequence_numbers: Sequence[int]) -> None: ...


class UpTrack:
    """One media kind of one publication, as received from the publisher."""

    def __init__(
        self,
        kind: str,
        receiver: Upstream,
        *,
        cache_size: int = 512,
        min_upstream_bitrate: int = 300_000,
    ) -> None:
        self.kind = kind
        self.receiver = receiver
        self.cache: PacketCache[RtpPacket] = PacketCache(cache_size)
        self.keyframes = KeyframeRequestLimiter()
        self.downtracks: list[FanoutMember] = []
        self.mime_type: str | None = None
        self.clock_rate: int = 90000 if kind == "video" else 48000
        self.min_upstream_bitrate = min_upstream_bitrate
        self.packets_received = 0
        self.keyframes_received = 0
        self.last_packet_time: float | None = None
        self.first_packet = asyncio.Event()
        # meeting control: a muted venue's audio reaches no subscriber (server-side ones,
        # the recorder, still get it: the record keeps what the venue said)
        self.muted = False
        self.packets_withheld = 0
        # publisher's last sender report: (local monotonic time, rtp timestamp)
        self.sender_report: tuple[float, int] | None = None
        # the packet that came soonest for its timestamp, over the last FRESHEST_WINDOW_S:
        # (local monotonic time, rtp timestamp); what "now" on this stream is at least
        self.freshest: tuple[float, int] | None = None
        self._is_keyframe: Callable[[bytes], bool] | None = None
        self._closed = False
        receiver.sink = self

    # -- UpstreamSink ----------------------------------------------------------------
    async def on_rtp(self, packet: RtpPacket, codec: RTCRtpCodecParameters) -> None:
        if self._closed:
            return
        if self.mime_type is None:
            self.mime_type = codec.mimeType
            self.clock_rate = codec.clockRate
            self._is_keyframe = keyframe_detector(codec.mimeType)
        now = time.monotonic()
        self.packets_received += 1
        self.last_packet_time = now
        freshest = self.freshest
        if (
            freshest is None
            or now - freshest[0] > FRESHEST_WINDOW_S
            or ts_diff(packet.timestamp, freshest[1]) > (now - freshest[0]) * self.clock_rate
        ):
            self.freshest = (now, packet.timestamp)
        self.cache.store(packet.sequence_number, packet)
        is_keyframe = self._is_keyframe is not None and self._is_keyframe(packet.payload)
        if is_keyframe:
            self.keyframes_received += 1
            self.keyframes.keyframe_received()
        if not self.first_packet.is_set():
            self.first_packet.set()
        if not self.downtracks:
            return
        templates: PacketTemplates = {}
        muted = self.muted
        if muted:
            self.packets_withheld += 1
        for downtrack in tuple(self.downtracks):
            if muted and downtrack.obeys_mute:
                continue
            await downtrack.forward(packet, is_keyframe, now, templates)

    def on_sender_report(self, ssrc: int, ntp_timestamp: int, rtp_timestamp: int) -> None:
        self.sender_report = (time.monotonic(), rtp_timestamp)

    def on_bye(self) -> None:
        logger.debug("publisher sent BYE on %s track", self.kind)

    def upstream_bitrate(self, estimate: int) -> int:
        """The REMB for the publisher: our own receive-side estimate, never below the floor
        (aiortc's estimate follows the incoming rate, which a still picture keeps near
        100 kbit/s; told that, the publisher's encoder drops frames for seconds after each
        keyframe a new subscriber asks for), capped by the subscribers'."""
        bitrate = max(estimate, self.min_upstream_bitrate)
        cap = self.upstream_bitrate_cap()
        return bitrate if cap is None else min(bitrate, cap)

    def upstream_fraction_lost(self, own: int) -> int:
        """The loss to report to the publisher for this track: for audio, the worst its
        subscribers report, as mediasoup does for Opus with in-band FEC. The publisher's
        encoder adds FEC in proportion to reported loss, and the SFU's own reports (a clean
        path from the main venue) say none while a village loses 10 %. Never for video:
        a browser lowers its video bitrate on reported loss, and one village's link would
        then decide everyone's picture."""
        if self.kind != "audio":
            return own
        now = time.monotonic()
        worst = own
        for d in self.downtracks:
            if (
                d.limits_publisher
                and d.fraction_lost is not None
                and d.fraction_lost_time is not None
                and now - d.fraction_lost_time < LOSS_FRESH_S
            ):
                worst = max(worst, d.fraction_lost)
        return worst

    def upstream_bitrate_cap(self) -> int | None:
        """The lowest fresh subscriber REMB, never below the configured floor."""
        now = time.monotonic()
        fresh = [
            d.remb_bitrate
            for d in self.downtracks
            if d.limits_publisher
            and d.remb_bitrate is not None
            and d.remb_time is not None
            and now - d.remb_time < REMB_FRESH_S
        ]
        if not fresh:
            return None
        return max(self.min_upstream_bitrate, min(fresh))

    # -- requests from downtracks ----------------------------------------------------------
    async def request_keyframe(self) -> bool:
        """Ask the publisher for a keyframe, deduplicated and rate-limited. True if sent."""
        if self.kind != "video" or self._closed:
            return False
        if self.receiver.media_ssrc is None:
            return False
        if not self.keyframes.should_send(time.monotonic()):
            return False
        return await self.receiver.request_keyframe()

    async def request_retransmission(self, sequence_numbers: list[int]) -> None:
        await self.receiver.request_retransmission(sequence_numbers)

    def template(
        self, packet: RtpPacket, downtrack: DownTrack, templates: PacketTemplates
    ) -> bytes | bytearray:
        """The packet serialised with the downstream header extensions (once per signature)."""
        negotiated = downtrack.sender.negotiated
        assert negotiated is not None
        key = negotiated.extensions_signature
        data = templates.get(key)
        if data is None:
            packet.extensions = HeaderExtensions(
                abs_send_time=(clock.current_ntp_time() >> 14) & 0x00FFFFFF,
                audio_level=packet.extensions.audio_level,
            )
            data = templates[key] = packet.serialize(negotiated.extensions)
        return data

    def close(self) -> None:
        self._closed = True
        self.receiver.sink = None
        for downtrack in tuple(self.downtracks):
            downtrack.close()


class DownTrack:
    """One media kind of one subscription: rewrites and sends an UpTrack's packets.

    Its source can change (`attach`): a floor slot's subscribers are moved from one venue's
    UpTrack to the next without renegotiation; the rewriter keeps the outgoing stream
    continuous and video waits for the new source's keyframe.
    """

    # a muted venue's audio is withheld from every subscriber of this kind
    obeys_mute = True

    def __init__(
        self,
        uptrack: UpTrack | None,
        sender: ForwardingSender,
        *,
        kind: str | None = None,
        limits_publisher: bool = True,
    ) -> None:
        self.uptrack: UpTrack | None = None
        # whether this subscriber's REMB may lower the publisher's bitrate (a hidden viewer's
        # must not: nobody may notice it, least of all by a worse picture)
        self.limits_publisher = limits_publisher
        self.sender = sender
        self.kind = uptrack.kind if uptrack is not None else (kind or "video")
        clock_rate = 90000 if self.kind == "video" else 48000
        self.rewriter = StreamRewriter(
            uptrack.clock_rate if uptrack is not None else clock_rate,
            initial_sequence=random16() % 32768,
            initial_timestamp=random32(),
        )
        self.waiting_for_keyframe = self.kind == "video"
        self.started = False
        self.packets_forwarded = 0
        self.packets_dropped_waiting = 0
        self.bytes_forwarded = 0
        self.retransmissions = 0
        self.resends_too_old = 0
        # a packet this subscriber lost for good since the last keyframe it was sent: it
        # cannot decode on until the next one, so one was asked for (once per hole)
        self._gave_up_since_keyframe = False
        self.keyframes_for_holes = 0
        self.resends_skipped_for_keyframe = 0
        # the downlink watch (DOWNLINK_LOST_SHARE): receiver reports' (time, cumulative
        # lost, extended highest sequence number) over the window, and the pause
        self._loss_marks: deque[tuple[float, int, int]] = deque()
        self.downlink_loss: float | None = None
        self._lossy_since: float | None = None
        self.video_paused = False
        self.video_pauses = 0
        self.packets_paused = 0
        self._retry_s = VIDEO_RETRY_S
        self._resumed_at: float | None = None
        self._resume_handle: asyncio.TimerHandle | None = None
        self._rebase_on_keyframe = False
        # told when the video is paused (True) or resumed (False) for the downlink
        self.on_video_paused: Callable[[bool], None] | None = None
        # asks the router for the venue's lower encoding ("low") or its own ("high"):
        # whether there is (or will be) a lower one to take
        self.change_quality: Callable[[str], bool] | None = None
        self.on_low = False
        self.steps_down = 0
        self.steps_up = 0
        self._trying_since: float | None = None  # a step tried back up, on trial
        self._up_handle: asyncio.TimerHandle | None = None
        self.resend_limiter = RepeatLimiter()
        self.resend_budget = ResendBudget()
        self.keyframe_requests = 0
        self.remb_bitrate: int | None = None
        self.remb_time: float | None = None
        self.fraction_lost: int | None = None
        self.fraction_lost_time: float | None = None
        self.first_keyframe_time: float | None = None
        self.created_time = time.monotonic()
        self._last_send_time: float | None = None
        self._last_out_ts: int | None = None
        self._rtx_sequence = random16()
        self._waiter: asyncio.Task[None] | None = None
        self._closed = False
        self.source_switches = 0
        # packets of a source in a codec this subscriber did not agree to (it waits for
        # that publication's second encoding, sfu/router.py)
        self.packets_undecodable = 0
        self._sent_mime: str | None = None
        self._sent_payload_types: tuple[int, int | None] | None = None
        self._numbered_by: UpTrack | None = None  # whose packets were last sent
        sender.sink = self
        if uptrack is not None:
            self.attach(uptrack)

    def attach(self, uptrack: UpTrack) -> None:
        """Take packets from `uptrack` from now on (video from its next keyframe)."""
        if self._closed or self.uptrack is uptrack:
            return
        switching = self.uptrack is not None or self.started
        self.detach()
        self.uptrack = uptrack
        uptrack.downtracks.append(self)
        if switching:
            self.source_switches += 1
        if self.kind == "video":
            self.waiting_for_keyframe = True
            if self.started and (self._waiter is None or self._waiter.done()):
                self._waiter = asyncio.ensure_future(self._ask_until_keyframe())

    def detach(self) -> None:
        """Stop taking packets (a floor slot nobody holds)."""
        if self.uptrack is not None and self in self.uptrack.downtracks:
            self.uptrack.downtracks.remove(self)
        self.uptrack = None

    # -- forwarding ----------------------------------------------------------------------
    async def forward(
        self, packet: RtpPacket, is_keyframe: bool, now: float, templates: PacketTemplates
    ) -> None:
        uptrack = self.uptrack
        if not self.started or self._closed or uptrack is None:
            return
        if self.video_paused:
            self.packets_paused += 1
            return
        payload_types = self._payload_types(uptrack)
        if payload_types is None:
            self.packets_undecodable += 1
            return
        if self.waiting_for_keyframe:
            if not is_keyframe:
                self.packets_dropped_waiting += 1
                return
            self.waiting_for_keyframe = False
            if self.first_keyframe_time is None:
                self.first_keyframe_time = now
            if self._rebase_on_keyframe:  # after a pause: no gap in the numbering
                self._rebase_on_keyframe = False
                self.rewriter.switch_source(
                    packet.ssrc, packet.sequence_number, packet.timestamp, now
                )
        if is_keyframe:
            self._gave_up_since_keyframe = False
        rewritten = self.rewriter.rewrite(
            packet.ssrc, packet.sequence_number, packet.timestamp, now
        )
        if rewritten is None:
            return
        self._numbered_by = uptrack
        data = rewrite_header(
            uptrack.template(packet, self, templates),
            payload_types[0],
            rewritten[0],
            rewritten[1],
            self.sender._ssrc,
        )
        if self.sender.send_rtp_now(data):
            self.packets_forwarded += 1
            self.bytes_forwarded += len(data)
            self._last_send_time = now
            self._last_out_ts = rewritten[1]

    def _payload_types(self, uptrack: UpTrack) -> tuple[int, int | None] | None:
        """The (payload type, RTX payload type) this subscriber agreed for the source's
        codec; None if it cannot decode it."""
        mime = uptrack.mime_type
        if mime != self._sent_mime or self._sent_payload_types is None:
            negotiated = self.sender.negotiated
            if negotiated is None:
                return None
            self._sent_mime = mime
            self._sent_payload_types = negotiated.for_mime(mime)
        return self._sent_payload_types

    def decodes(self, uptrack: UpTrack) -> bool:
        """Whether this subscriber agreed to the codec `uptrack` carries (True while
        either is not known yet)."""
        negotiated = self.sender.negotiated
        return negotiated is None or negotiated.for_mime(uptrack.mime_type) is not None

    # -- DownstreamSink ----------------------------------------------------------------
    def on_started(self) -> None:
        self.started = True
        if self.kind == "video" and self._waiter is None:
            self._waiter = asyncio.ensure_future(self._ask_until_keyframe())

    async def _ask_until_keyframe(self) -> None:
        try:
            while self.waiting_for_keyframe and not self._closed:
                uptrack = self.uptrack
                if (
                    uptrack is not None
                    and self.decodes(uptrack)
                    and await uptrack.request_keyframe()
                ):
                    self.keyframe_requests += 1
                await asyncio.sleep(KEYFRAME_WAIT_RETRY_S)
        except asyncio.CancelledError:
            pass

    async def on_keyframe_request(self) -> None:
        if self.uptrack is not None and await self.uptrack.request_keyframe():
            self.keyframe_requests += 1

    async def on_nack(self, sequence_numbers: list[int]) -> None:
        """Send again what the subscriber lost, paced (sfu/retransmit.py); what this
        worker no longer has is asked of the publisher."""
        # the source whose packets the numbering holds: after a switch, until the new
        # source's keyframe, still the one before
        uptrack = self._numbered_by
        if uptrack is None:
            return
        now = time.monotonic()
        rtt = self.sender.rtt
        if self.kind == "video" and len(sequence_numbers) >= OUTAGE_NACK_PACKETS:
            # the keyframe supersedes them all; sending them too only queues it behind
            # seconds of stale packets on a link that just came back (seen: 1.3 s, not
            # 0.8 s, to the first picture after a 3 s outage)
            self.resends_skipped_for_keyframe += len(sequence_numbers)
            await self._picture_stands_still()
            return
        missing_upstream: list[int] = []
        for out_seq in sequence_numbers:
            if not self.resend_limiter.may_repeat(out_seq, now, rtt):
                continue
            in_seq = self.rewriter.original_sequence(out_seq)
            if in_seq is None:
                continue
            packet = uptrack.cache.get(in_seq)
            if packet is None:
                missing_upstream.append(in_seq)
                continue
            if await self._retransmit(uptrack, packet, out_seq):
                self.resend_limiter.record(out_seq, now)
        if missing_upstream:
            await uptrack.request_retransmission(missing_upstream)

    async def _retransmit(self, uptrack: UpTrack, packet: RtpPacket, out_seq: int) -> bool:
        negotiated = self.sender.negotiated
        out_ts = self.rewriter.rtp_timestamp_for(packet.timestamp)
        payload_types = self._payload_types(uptrack)
        if negotiated is None or out_ts is None or payload_types is None:
            return False
        payload_type, rtx_payload_type = payload_types
        if self._last_out_ts is not None:
            age = ts_diff(self._last_out_ts, out_ts) / self.rewriter.clock_rate
            if age > MAX_RESEND_AGE_S.get(self.kind, 1.0):
                self.resends_too_old += 1
                await self._picture_stands_still()
                return False
        copy = RtpPacket(
            payload_type=payload_type,
            marker=packet.marker,
            sequence_number=out_seq,
            timestamp=out_ts,
            ssrc=self.sender._ssrc,
            payload=packet.payload,
        )
        copy.extensions = HeaderExtensions(
            abs_send_time=(clock.current_ntp_time() >> 14) & 0x00FFFFFF
        )
        if rtx_payload_type is not None:
            copy = wrap_rtx(
                copy,
                payload_type=rtx_payload_type,
                sequence_number=self._rtx_sequence,
                ssrc=self.sender._rtx_ssrc,
            )
        data = copy.serialize(negotiated.extensions)
        if not self.resend_budget.spend(len(data), self.bytes_forwarded):
            return False
        if rtx_payload_type is not None:
            self._rtx_sequence = (self._rtx_sequence + 1) & 0xFFFF
        if await self.sender.send_rtp(data):
            self.retransmissions += 1
            return True
        return False

    async def _picture_stands_still(self) -> None:
        """The subscriber lost an outage's worth of packets, or asks for one too old to send
        (all its copies got lost). Its picture stands still until a keyframe, and a browser
        asks for one only seconds later (seen: 2.3 s after a 3 s outage), so ask now."""
        if self.kind != "video" or self._gave_up_since_keyframe:
            return
        self._gave_up_since_keyframe = True
        if self.uptrack is not None and await self.uptrack.request_keyframe():
            self.keyframes_for_holes += 1

    def on_remb(self, bitrate: int) -> None:
        self.remb_bitrate = bitrate
        self.remb_time = time.monotonic()

    def on_receiver_report(self, fraction_lost: int, packets_lost: int, highest: int) -> None:
        now = time.monotonic()
        self.fraction_lost = fraction_lost
        self.fraction_lost_time = now
        if self.kind == "video" and not self.video_paused and not self._closed:
            self._watch_downlink(packets_lost, highest, now)

    def _watch_downlink(self, packets_lost: int, highest: int, now: float) -> None:
        marks = self._loss_marks
        if marks and now - marks[-1][0] > DOWNLINK_REPORT_GAP_S:
            marks.clear()  # an outage: count afresh from here
            self._lossy_since = None
        marks.append((now, packets_lost, highest))
        while len(marks) > 2 and now - marks[1][0] >= DOWNLINK_WINDOW_S:
            marks.popleft()  # keep one mark a whole window old
        since, lost_then, highest_then = marks[0]
        expected = highest - highest_then
        if (
            now - since < 0.8 * DOWNLINK_WINDOW_S
            or expected <= 0
            or self.first_keyframe_time is None
            or now - self.first_keyframe_time < DOWNLINK_WATCH_AFTER_S
        ):
            return
        self.downlink_loss = (packets_lost - lost_then) / expected
        if self.downlink_loss >= DOWNLINK_LOST_SHARE:
            if self._lossy_since is None:
                self._lossy_since = now
            if self._trying_since is not None or now - self._lossy_since >= DOWNLINK_WINDOW_S:
                self._step_down()
            return
        self._lossy_since = None
        if self._resumed_at is not None and now - self._resumed_at > 2 * DOWNLINK_WINDOW_S:
            self._retry_s = VIDEO_RETRY_S  # the video fits again: forget the back-off
            self._resumed_at = None
            self._trying_since = None

    def _step_down(self) -> None:
        """The link cannot carry what it gets: the venue's lower encoding, or no video."""
        self._trying_since = None
        if self.on_low or self.change_quality is None or not self.change_quality("low"):
            self._pause_video()
            return
        logger.info(
            "downlink below the video (%.0f %% lost for good): the lower stream for %.0f s",
            100 * (self.downlink_loss or 0),
            self._retry_s,
        )
        self.on_low = True
        self.steps_down += 1
        self._watch_afresh()
        self._resumed_at = None
        self._try_higher_later()

    def _watch_afresh(self) -> None:
        """A new stream (or none) is sent: its loss is counted from here."""
        self._loss_marks.clear()
        self._lossy_since = None

    def _try_higher_later(self) -> None:
        if self._up_handle is not None:
            self._up_handle.cancel()
        self._up_handle = asyncio.get_running_loop().call_later(self._retry_s, self._try_higher)
        self._retry_s = min(VIDEO_RETRY_MAX_S, 2 * self._retry_s)

    def _try_higher(self) -> None:
        """Give the venue's own stream another try (its loss decides, within a window)."""
        self._up_handle = None
        if self._closed or not self.on_low or self.change_quality is None:
            return
        if self.video_paused:
            return  # the resume tries the lower stream first, and this again later
        self.on_low = False
        self.steps_up += 1
        now = time.monotonic()
        self._resumed_at = self._trying_since = now
        self._watch_afresh()
        self.change_quality("high")

    def _pause_video(self) -> None:
        logger.info(
            "downlink below the video (%.0f %% lost for good): video paused for %.0f s",
            100 * (self.downlink_loss or 0),
            self._retry_s,
        )
        self.video_paused = True
        self.video_pauses += 1
        self._watch_afresh()
        self._trying_since = None
        self._resume_handle = asyncio.get_running_loop().call_later(
            self._retry_s, self._resume_video
        )
        self._retry_s = min(VIDEO_RETRY_MAX_S, 2 * self._retry_s)
        if self.on_video_paused is not None:
            self.on_video_paused(True)

    def _resume_video(self) -> None:
        self._resume_handle = None
        if self._closed or not self.video_paused:
            return
        self.video_paused = False
        self._resumed_at = self._trying_since = time.monotonic()
        self.waiting_for_keyframe = True
        self._rebase_on_keyframe = True
        if self._waiter is None or self._waiter.done():
            self._waiter = asyncio.ensure_future(self._ask_until_keyframe())
        if self.on_video_paused is not None:
            self.on_video_paused(False)
        if self.on_low and self._up_handle is None:
            self._try_higher_later()

    def sender_report_timestamps(self) -> tuple[int, int] | None:
        """(NTP now, RTP timestamp now) on this subscriber's clock.

        Extrapolated from the publisher's last sender report, so that audio and video keep
        the publisher's relation (lip sync), but never behind the packet of the stream
        that came soonest, extrapolated the same way: a publisher that pairs its report
        with its last packet (aiortc does) right after a frame came late reports a clock
        that lags its own stream by that lateness until its next report (0.7 s seen), and
        a subscriber told so would hold that stream back by as much.
        """
        if self._last_send_time is None or self._last_out_ts is None:
            return None
        now = time.monotonic()
        clock_rate = self.rewriter.clock_rate
        rtp_now = self._last_out_ts + int((now - self._last_send_time) * clock_rate)
        uptrack = self.uptrack
        if uptrack is not None:
            for anchor in (uptrack.freshest, uptrack.sender_report):
                out_ts = self.rewriter.rtp_timestamp_for(anchor[1]) if anchor else None
                if anchor is None or out_ts is None:
                    continue
                extrapolated = (out_ts + int((now - anchor[0]) * clock_rate)) & 0xFFFFFFFF
                if ts_diff(extrapolated, rtp_now & 0xFFFFFFFF) > 0:
                    rtp_now = extrapolated
        return clock.current_ntp_time(), rtp_now & 0xFFFFFFFF

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.sender.sink = None
        if self._waiter is not None:
            self._waiter.cancel()
        if self._resume_handle is not None:
            self._resume_handle.cancel()
        if self._up_handle is not None:
            self._up_handle.cancel()
        self.detach()
        self._numbered_by = None
