"""SDP offer/answer for upstream and downstream peer connections, with the room's codecs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCRtpSender
from aiortc.rtcrtpparameters import RTCRtpCodecCapability
from aiortc.sdp import SessionDescription

SUPPORTED_VIDEO_CODECS = {"h264": "video/H264", "vp8": "video/VP8"}
AUDIO_MIME = "audio/opus"


class NegotiationError(Exception):
    """An offer or answer the SFU cannot accept. `code` is the protocol's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class IceServer:
    urls: list[str]
    username: str | None = None
    credential: str | None = None

    def to_aiortc(self) -> RTCIceServer:
        return RTCIceServer(urls=self.urls, username=self.username, credential=self.credential)

    def to_browser(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"urls": self.urls}
        if self.username:
            entry["username"] = self.username
            entry["credential"] = self.credential
        return entry


def new_peer_connection(ice_servers: list[IceServer]) -> RTCPeerConnection:
    # An explicit empty list matters: aiortc falls back to a public STUN server otherwise.
    return RTCPeerConnection(RTCConfiguration(iceServers=[s.to_aiortc() for s in ice_servers]))


def video_codecs_from(preferred: str) -> list[str]:
    """Every video codec the SFU relays, `preferred` (the room's) first."""
    return [preferred, *(c for c in SUPPORTED_VIDEO_CODECS if c != preferred)]


def codec_name(mime_type: str) -> str | None:
    """ "video/VP8" -> "vp8"; None for a codec the SFU does not relay."""
    lowered = mime_type.lower()
    return next((n for n, m in SUPPORTED_VIDEO_CODECS.items() if m.lower() == lowered), None)


def codec_preferences(kind: str, *video_codecs: str) -> list[RTCRtpCodecCapability]:
    """aiortc's capabilities for these video codecs in this order (or Opus), with RTX."""
    capabilities = RTCRtpSender.getCapabilities(kind).codecs
    if kind == "audio":
        return [c for c in capabilities if c.mimeType.lower() == AUDIO_MIME]
    chosen = []
    for codec in video_codecs:
        wanted = SUPPORTED_VIDEO_CODECS[codec].lower()
        chosen += [c for c in capabilities if c.mimeType.lower() == wanted]
    chosen += [c for c in capabilities if c.mimeType.lower() == "video/rtx"]
    return chosen


def accepted_video_codecs(description: SessionDescription) -> set[str]:
    """The video codecs a subscriber's answer accepts (what it can decode)."""
    return {
        name
        for media in description.media
        if media.kind == "video" and media.port != 0
        for codec in media.rtp.codecs
        if (name := codec_name(codec.mimeType)) is not None
    }


def parse_sdp(sdp: str, expected_type: str) -> SessionDescription:
    """Parse SDP text or raise NegotiationError('bad_sdp')."""
    if not isinstance(sdp, str) or not sdp.strip().startswith("v=0"):
        raise NegotiationError(
            "bad_sdp", f"the {expected_type} is not SDP (it must start with v=0)"
        )
    try:
        description = SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc raises assorted errors on malformed lines
        raise NegotiationError("bad_sdp", f"the {expected_type} does not parse: {exc}") from exc
    if not description.media:
        raise NegotiationError("bad_sdp", f"the {expected_type} has no media sections")
    for media in description.media:
        if expected_type == "answer" and media.port == 0:
            continue  # declined (RFC 3264 section 6): a declined section carries neither
        if media.kind in ("audio", "video") and (
            media.ice is None or not media.ice.usernameFragment or not media.dtls
        ):
            raise NegotiationError(
                "bad_sdp",
                f"the {expected_type}'s {media.kind} section lacks ICE or DTLS attributes",
            )
    if expected_type == "answer" and set(declined_kinds(description)) >= {
        m.kind for m in description.media if m.kind in ("audio", "video")
    }:
        raise NegotiationError(
            "codec_not_supported", "the answer declines every media section: nothing can flow"
        )
    return description


def declined_kinds(description: SessionDescription) -> list[str]:
    """The media an answer declines (port 0): a browser without the room's video codec
    (Firefox has no H.264 where OpenH264 cannot be downloaded) declines video."""
    return [m.kind for m in description.media if m.kind in ("audio", "video") and m.port == 0]


def revive_declined_sections(answer_sdp: str, offer_sdp: str) -> str:
    """The answer with each declined section made inactive instead, for aiortc.

    aiortc refuses an answer with a declined section (it wants ICE, DTLS, rtcp-mux and
    codecs in every one), which used to throw away the sections that were accepted too:
    audio never reached a Firefox without H.264. An inactive section with the bundle's
    transport attributes and the offer's own codecs is what aiortc takes; nothing is sent
    on it, as nothing would be on a declined one."""
    offer_codecs: dict[str, list[str]] = {}
    mid = None
    for line in offer_sdp.splitlines():
        if line.startswith("m="):
            mid = None
        elif line.startswith("a=mid:"):
            mid = line[len("a=mid:") :].strip()
            offer_codecs[mid] = []
        elif mid is not None and line.startswith(("a=rtpmap:", "a=fmtp:", "a=rtcp-fb:")):
            offer_codecs[mid].append(line)
    lines = answer_sdp.splitlines()
    transport = list(
        dict.fromkeys(
            line
            for line in lines
            if line.startswith(("a=ice-ufrag:", "a=ice-pwd:", "a=fingerprint:", "a=setup:"))
        )
    )
    sections: list[list[str]] = [[]]
    for line in lines:
        if line.startswith("m="):
            sections.append([])
        sections[-1].append(line)
    out = list(sections[0])
    for section in sections[1:]:
        if section[0].split()[1:2] != ["0"]:
            out += section
            continue
        section_mid = next(
            (x[len("a=mid:") :].strip() for x in section if x.startswith("a=mid:")), ""
        )
        kept = [
            x
            for x in section
            if not x.startswith(("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"))
        ]
        out += [*kept, *transport, "a=rtcp-mux", "a=inactive", *offer_codecs.get(section_mid, [])]
    return "\r\n".join(out) + "\r\n"


@dataclass(frozen=True)
class PublishOffer:
    kinds: list[str]  # its media kinds, in order
    video_codec: str | None  # what its video will be: the room's, or else one it offers


def check_publish_offer(description: SessionDescription, video_codec: str) -> PublishOffer:
    """Validate a publisher's offer. Its video is the room's codec when it offers that;
    otherwise another the SFU relays (a Firefox without H.264 publishes VP8 in an H.264
    room): subscribers that cannot decode it get a second encoding (docs/protocol.md)."""
    kinds: list[str] = []
    chosen: str | None = None
    for media in description.media:
        if media.kind not in ("audio", "video"):
            continue
        if media.kind in kinds:
            raise NegotiationError(
                "bad_sdp", f"a publication carries one {media.kind} section, not more"
            )
        if media.direction not in ("sendonly", "sendrecv"):
            raise NegotiationError(
                "bad_sdp", f"the {media.kind} section is {media.direction}, not sendonly"
            )
        mimes = {c.mimeType.lower() for c in media.rtp.codecs}
        if media.kind == "video":
            offered = {codec_name(m) for m in mimes}
            chosen = next((c for c in video_codecs_from(video_codec) if c in offered), None)
            wanted = "/".join(video_codecs_from(video_codec))
        else:
            wanted = "opus"
        if (media.kind == "video" and chosen is None) or (
            media.kind == "audio" and AUDIO_MIME not in mimes
        ):
            raise NegotiationError(
                "codec_not_supported",
                f"this room's {media.kind} codecs are {wanted}; the offer has "
                + (", ".join(sorted(m.split("/")[1] for m in mimes)) or "none"),
            )
        kinds.append(media.kind)
    if not kinds:
        raise NegotiationError("bad_sdp", "the offer has no audio or video section")
    return PublishOffer(kinds, chosen)


def limit_video_bitrate(sdp: str, kbps: int) -> str:
    """Add `b=AS:<kbps>` to each video section of an answer: browsers cap what they send to it.

    Without simulcast every subscriber gets the publisher's one stream, so a main venue
    sending 2.5 Mbit/s would swamp a village's 1 Mbit/s downlink; the room's cap keeps the
    publisher inside what the villages can take.
    """
    lines = sdp.split("\r\n")
    out: list[str] = []
    in_video = False
    for line in lines:
        if line.startswith("m="):
            in_video = line.startswith("m=video")
        elif in_video and line.startswith("b=AS:"):
            continue
        out.append(line)
        if in_video and line.startswith("c="):
            out.append(f"b=AS:{kbps}")
    return "\r\n".join(out)


def offer_opus_fec(sdp: str) -> str:
    """Say `useinbandfec=1` for Opus in an answer to a publisher (aiortc's answer has no
    Opus fmtp at all): a browser's encoder adds in-band FEC only when its peer says it
    takes it, and then in proportion to the loss reported back (UpTrack reports the worst
    subscriber's). The SFU decodes nothing; an Opus decoder that ignores FEC still plays
    the primary frames."""
    sections: list[list[str]] = [[]]
    for line in sdp.split("\r\n"):
        if line.startswith("m="):
            sections.append([])
        sections[-1].append(line)
    out: list[str] = []
    for section in sections:
        opus = [
            line.split()[0].removeprefix("a=rtpmap:")
            for line in section
            if line.startswith("a=rtpmap:") and " opus/" in line.lower()
        ]
        for line in section:
            payload_type = line.split()[0].removeprefix("a=fmtp:") if line else ""
            if line.startswith("a=fmtp:") and payload_type in opus:
                opus.remove(payload_type)
                if "useinbandfec=" not in line:
                    line += ";useinbandfec=1"
            out.append(line)
        for payload_type in opus:  # no fmtp line yet: add one after the attributes
            at = max(i for i, line in enumerate(out) if line.startswith("a=rtpmap:"))
            out.insert(at + 1, f"a=fmtp:{payload_type} minptime=10;useinbandfec=1")
    return "\r\n".join(out)
