"""What a room tells its participants (docs/protocol.md, "Events"), as typed structures.

Each event is a TypedDict, a plain dict on the wire; the functions build them, so every
event of one kind has the same fields wherever it is sent from.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict


class PeerDescription(TypedDict):
    peer_id: str
    name: str
    role: str


class PublicationDescription(TypedDict):
    publication_id: str
    peer_id: str
    name: str
    role: str
    kinds: list[str]
    source: str
    video_codec: str | None  # h264 | vp8 (None: no video)


class PeerJoined(PeerDescription):
    type: Literal["peer_joined"]


class PeerLeft(TypedDict):
    type: Literal["peer_left"]
    peer_id: str


class PublicationAdded(PublicationDescription):
    type: Literal["publication_added"]


class PublicationRemoved(TypedDict):
    type: Literal["publication_removed"]
    publication_id: str


class SubscriptionEnded(TypedDict):
    type: Literal["subscription_ended"]
    subscription_id: str
    reason: str  # publication_removed | connection_failed | answer_timeout


class SubscriptionVideo(TypedDict, total=False):
    type: Literal["video_paused", "video_resumed"]
    subscription_id: str
    # downlink: the subscriber's link cannot carry the video; audio goes on
    # codec: it cannot decode the venue's codec; the venue is asked for a second encoding
    reason: Literal["downlink", "codec"]
    video_codec: str  # codec: what the venue sends (present only then)


class EncodingWanted(TypedDict):
    type: Literal["encoding_wanted"]
    publication_id: str
    video_codec: str
    quality: NotRequired[str]


class MeetingStateFields(TypedDict):
    floor: PeerDescription | None
    spotlight: bool
    mute_all: bool
    muted: list[str]  # peer ids
    hands: list[PeerDescription]
    content: str | None  # the shared screen's publication id


class MeetingState(MeetingStateFields):
    type: Literal["meeting_state"]


# any event a room sends (meetings and emergency calls add their own `*_ended`)
RoomEvent = (
    PeerJoined
    | PeerLeft
    | PublicationAdded
    | PublicationRemoved
    | SubscriptionEnded
    | SubscriptionVideo
    | EncodingWanted
    | MeetingState
    | dict[str, Any]
)


def peer_joined(peer: PeerDescription) -> PeerJoined:
    return {"type": "peer_joined", **peer}


def peer_left(peer_id: str) -> PeerLeft:
    return {"type": "peer_left", "peer_id": peer_id}


def publication_added(publication: PublicationDescription) -> PublicationAdded:
    return {"type": "publication_added", **publication}


def publication_removed(publication_id: str) -> PublicationRemoved:
    return {"type": "publication_removed", "publication_id": publication_id}


def subscription_ended(subscription_id: str, reason: str) -> SubscriptionEnded:
    return {"type": "subscription_ended", "subscription_id": subscription_id, "reason": reason}


def subscription_video(
    subscription_id: str, paused: bool, video_codec: str | None = None
) -> SubscriptionVideo:
    """Video paused or resumed for the downlink, or (`video_codec` given: the venue's)
    because the subscriber cannot decode that codec until a second encoding comes."""
    event: SubscriptionVideo = {
        "type": "video_paused" if paused else "video_resumed",
        "subscription_id": subscription_id,
        "reason": "downlink" if video_codec is None else "codec",
    }
    if video_codec is not None:
        event["video_codec"] = video_codec
    return event


def encoding_wanted(
    publication_id: str, video_codec: str, quality: str | None = None
) -> EncodingWanted:
    """To a publisher: a subscriber cannot decode this publication's video; publish the
    same camera again in `video_codec` (docs/protocol.md, "Second encodings"); or, with
    `quality` "low", a subscriber's link cannot carry it: publish it lower too."""
    event: EncodingWanted = {
        "type": "encoding_wanted",
        "publication_id": publication_id,
        "video_codec": video_codec,
    }
    if quality is not None:
        event["quality"] = quality
    return event


def meeting_state(state: MeetingStateFields) -> MeetingState:
    return {"type": "meeting_state", **state}
