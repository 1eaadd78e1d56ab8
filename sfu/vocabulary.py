"""The words rooms, signaling and the pages share, named once.

`Role` is the part a participant plays in a room (a meeting token carries it);
`Source` is what a publication shows; `Quality` which of its encodings a subscriber
gets. They are `StrEnum`s: on the wire and in the database they are the plain strings
of docs/protocol.md.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    MAIN = "main"  # the main venue: runs the meeting, shares content
    TERMINAL = "terminal"  # a village TV
    VIEWER = "viewer"  # a phone or PC joining to watch
    SUPERVISOR = "supervisor"  # watches unannounced: in no list or event of the room


class Source(StrEnum):
    CAMERA = "camera"
    CONTENT = "content"  # a shared screen (双流), the main venue's second publication


class Quality(StrEnum):
    """Which of a camera's encodings in one codec: the venue's own, or the lower one it
    sends too for village links that cannot carry the first (docs/protocol.md)."""

    HIGH = "high"
    LOW = "low"


# roles that see only what the meeting shows them in a controlled room
FOLLOWER_ROLES = frozenset({Role.TERMINAL, Role.VIEWER})
