"""The WebRTC ends of the SFU: an upstream connection with its UpTracks, a downstream
connection with its DownTracks.

`open_upstream` accepts a publisher's offer; `open_downstream` makes the offer for a
subscriber. Both only build media objects: who may publish or subscribe, and what a room
does with them, is decided in `room.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.exceptions import InternalError, InvalidStateError, OperationError

from .aiortc_seam import ForwardingReceiver, ForwardingSender
from .candidates import hold_mdns_candidates
from .negotiation import (
    IceServer,
    NegotiationError,
    codec_preferences,
    limit_video_bitrate,
    new_peer_connection,
    offer_opus_fec,
    revive_declined_sections,
    video_codecs_from,
)
from .ports import PortAllocator, PortsExhausted
from .tracks import DownTrack, UpTrack

logger = logging.getLogger(__name__)

# how long a peer that offered only mDNS names has to reach the server with its checks
# before its candidates are declared complete (and ICE may fail): browsers start checking
# at once, within a second even over TURN
PEER_REFLEXIVE_WAIT_S = 10.0


@dataclass
class Upstream:
    pc: RTCPeerConnection
    uptracks: dict[str, UpTrack]
    answer_sdp: str


@dataclass
class Downstream:
    pc: RTCPeerConnection
    downtracks: dict[str, DownTrack]
    offer_sdp: str


async def open_upstream(
    offer_sdp: str,
    kinds: list[str],
    *,
    video_codec: str,
    max_video_kbps: int,
    ice_servers: list[IceServer],
    ports: PortAllocator | None = None,
) -> Upstream:
    """Answer a publisher's (already checked) offer with one forwarding UpTrack per kind."""
    pc = new_peer_connection(ice_servers)
    uptracks: dict[str, UpTrack] = {}
    try:
        for kind in kinds:
            transceiver = pc.addTransceiver(kind, direction="recvonly")
            transceiver.setCodecPreferences(codec_preferences(kind, video_codec))
            receiver = ForwardingReceiver.install(transceiver.receiver)
            uptracks[kind] = UpTrack(kind, receiver)
        await set_remote_description(pc, offer_sdp, "offer")
        await _set_local_description(pc, await pc.createAnswer(), ports)
    except (OperationError, InternalError, InvalidStateError, ValueError) as exc:
        await pc.close()
        raise NegotiationError(
            "codec_not_supported" if isinstance(exc, OperationError) else "bad_sdp",
            f"the offer cannot be accepted: {exc}",
        ) from exc
    answer = offer_opus_fec(limit_video_bitrate(pc.localDescription.sdp, max_video_kbps))
    return Upstream(pc, uptracks, answer)


async def open_downstream(
    sources: dict[str, UpTrack | None],
    *,
    video_codec: str,
    ice_servers: list[IceServer],
    limits_publisher: bool = True,
    ports: PortAllocator | None = None,
) -> Downstream:
    """Offer a subscriber one DownTrack per kind in `sources`, each fed by its UpTrack
    (None: attached later, as a floor slot nobody holds). The video is offered in every
    codec the SFU relays, `video_codec` first: a browser answers with those it decodes,
    and its DownTrack then sends each source's packets under that codec's payload type
    (a floor slot passes from an H.264 venue to a VP8 one without renegotiation)."""
    pc = new_peer_connection(ice_servers)
    downtracks: dict[str, DownTrack] = {}
    for kind, uptrack in sources.items():
        transceiver = pc.addTransceiver(kind, direction="sendonly")
        transceiver.setCodecPreferences(codec_preferences(kind, *video_codecs_from(video_codec)))
        sender = ForwardingSender.install(transceiver.sender)
        downtracks[kind] = DownTrack(uptrack, sender, kind=kind, limits_publisher=limits_publisher)
    await _set_local_description(pc, await pc.createOffer(), ports)
    return Downstream(pc, downtracks, pc.localDescription.sdp)


async def _set_local_description(
    pc: RTCPeerConnection, description: RTCSessionDescription, ports: PortAllocator | None
) -> None:
    """setLocalDescription, which gathers: inside the port range, when one is set."""
    try:
        if ports is not None:
            ports.confine(pc)
        await pc.setLocalDescription(description)
    except PortsExhausted as exc:
        await pc.close()
        raise NegotiationError("server_full", f"no media port is free: {exc}") from exc


async def accept_answer(pc: RTCPeerConnection, answer_sdp: str) -> None:
    try:
        answer_sdp = revive_declined_sections(answer_sdp, pc.localDescription.sdp)
        await set_remote_description(pc, answer_sdp, "answer")
    except (OperationError, InternalError, InvalidStateError, ValueError) as exc:
        raise NegotiationError("bad_sdp", f"the answer cannot be accepted: {exc}") from exc


async def set_remote_description(pc: RTCPeerConnection, sdp: str, kind: str) -> None:
    """setRemoteDescription, with a peer's mDNS names set aside (candidates.py): then the
    server learns the peer from its checks, and end-of-candidates follows a little later."""
    held = hold_mdns_candidates(sdp)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=held.sdp, type=kind))
    if held.names:
        logger.info("%d mDNS candidates set aside: waiting for the peer's checks", held.names)
        task = asyncio.ensure_future(_end_of_candidates_later(pc, PEER_REFLEXIVE_WAIT_S))
        pc.on("connectionstatechange", lambda: _cancel_when_done(pc, task))


def _cancel_when_done(pc: RTCPeerConnection, task: asyncio.Future[None]) -> None:
    if pc.connectionState in ("connected", "closed", "failed"):
        task.cancel()


async def _end_of_candidates_later(pc: RTCPeerConnection, delay_s: float) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(delay_s)
        for ice in {
            t.sender.transport.transport for t in pc.getTransceivers() if t.sender.transport
        }:
            if ice.state not in ("completed", "closed", "failed"):
                with contextlib.suppress(ValueError, ConnectionError):
                    await ice.addRemoteCandidate(None)
