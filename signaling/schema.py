"""JSON schemas of the client -> server messages (docs/protocol.md)."""

from __future__ import annotations

from typing import Any

import jsonschema

MAX_FRAME_BYTES = 256 * 1024
_ID = {"type": ["string", "integer"], "maxLength": 64}
_SDP = {"type": "string", "minLength": 1, "maxLength": 64 * 1024}
_REF = {"type": "string", "minLength": 1, "maxLength": 64}


def _message(
    type_name: str, required: dict[str, Any] | None = None, optional: dict[str, Any] | None = None
) -> dict[str, Any]:
    required = required or {}
    optional = optional or {}
    return {
        "type": "object",
        "properties": {"type": {"const": type_name}, "id": _ID, **required, **optional},
        "required": ["type", *required],
        "additionalProperties": False,
    }


# control actions, and whether each names a venue (peer_id)
CONTROL_ACTIONS: dict[str, bool] = {
    "roll_call": True,
    "give_floor": True,
    "take_floor": False,
    "mute": True,
    "unmute": True,
    "mute_all": False,
    "unmute_all": False,
    "lower_hand": True,
}

MESSAGE_SCHEMAS: dict[str, dict[str, Any]] = {
    # instance: the client page's own random id (a reconnection resumes its seat silently);
    # take_over: end another connection's use of the same token (audited) instead of in_use
    "join": _message(
        "join",
        {"token": {"type": "string", "minLength": 1, "maxLength": 4096}},
        {
            "instance": {"type": "string", "pattern": "^[A-Za-z0-9_-]{8,64}$"},
            "take_over": {"type": "boolean"},
        },
    ),
    "publish": _message(
        "publish",
        {"sdp": _SDP},
        # encoding_of: the offer is that publication's video in another codec, or (quality
        # "low") lower, in its codec
        {
            "source": {"enum": ["camera", "content"]},
            "encoding_of": _REF,
            "quality": {"enum": ["high", "low"]},
        },
    ),
    "unpublish": _message("unpublish", {"publication_id": _REF}),
    "subscribe": _message(
        "subscribe",
        {"publication_id": _REF},
        {
            "kinds": {
                "type": "array",
                "items": {"enum": ["audio", "video"]},
                "minItems": 1,
                "uniqueItems": True,
            }
        },
    ),
    "subscription_answer": _message("subscription_answer", {"subscription_id": _REF, "sdp": _SDP}),
    "unsubscribe": _message("unsubscribe", {"subscription_id": _REF}),
    # the main venue runs the meeting (sfu/control.py); peer_id names a venue
    "control": _message(
        "control",
        {"action": {"enum": list(CONTROL_ACTIONS)}},
        {"peer_id": _REF},
    ),
    "raise_hand": _message("raise_hand", {"raised": {"type": "boolean"}}),
    "ping": _message("ping"),
    "leave": _message("leave"),
}

_VALIDATORS = {name: jsonschema.Draft202012Validator(s) for name, s in MESSAGE_SCHEMAS.items()}


class MessageError(Exception):
    def __init__(self, code: str, message: str, request_id: object = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


def validate_message(message: object) -> dict[str, Any]:
    """Return the message if it is valid, else raise MessageError naming what is wrong."""
    if not isinstance(message, dict):
        raise MessageError("invalid_json", "a message must be a JSON object")
    request_id = message.get("id") if isinstance(message.get("id"), str | int) else None
    type_name = message.get("type")
    if not isinstance(type_name, str):
        raise MessageError("invalid_message", "the message has no 'type' string", request_id)
    validator = _VALIDATORS.get(type_name)
    if validator is None:
        raise MessageError("unknown_type", f"unknown message type {type_name[:40]!r}", request_id)
    error = jsonschema.exceptions.best_match(validator.iter_errors(message))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "message"
        if error.validator == "additionalProperties":
            where = "message"
        raise MessageError("invalid_message", f"{type_name}: {where}: {error.message}", request_id)
    return message
