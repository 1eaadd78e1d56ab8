"""Who may do what, where: roles, capabilities and the caller's place in the org tree.

A caller holds one role at one org unit. A capability is allowed when the role grants it
and the object's org path lies inside the caller's subtree (its path starts with the
caller's). Nothing else decides access: API handlers and signaling both ask `can()`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .models import Role
from .participants import ParticipantId


class Capability(enum.StrEnum):
    TREE_READ = "tree:read"
    TREE_WRITE = "tree:write"
    MEMBERS_READ = "members:read"
    MEMBERS_WRITE = "members:write"
    TERMINALS_READ = "terminals:read"
    TERMINALS_WRITE = "terminals:write"
    MEETINGS_READ = "meetings:read"
    MEETINGS_WRITE = "meetings:write"
    ACCOUNTS_WRITE = "accounts:write"
    AUDIT_READ = "audit:read"
    MEETING_JOIN = "meeting:join"
    # watch meetings unannounced (drop-in, patrol wall); every view is in the trail
    SUPERVISE = "meetings:supervise"
    # biometric data: enrolment photos and embeddings, sign-in face crops and scenes
    FACES_READ = "faces:read"
    FACES_WRITE = "faces:write"
    # duty attendance: read the records; keep rosters, hours, leave, cameras and correct
    # days (the town's clerks); explain an alert (the village)
    DUTY_READ = "duty:read"
    DUTY_WRITE = "duty:write"
    DUTY_EXPLAIN = "duty:explain"


C = Capability
ROLE_CAPABILITIES: dict[Role, frozenset[Capability]] = {
    Role.COUNTY_ADMIN: frozenset(C),
    # supervising is the supervisors' (and the county's) job, not the town office's
    Role.TOWN_ADMIN: frozenset(C) - {C.AUDIT_READ, C.SUPERVISE},
    Role.VILLAGE_SECRETARY: frozenset(
        {
            C.TREE_READ,
            C.MEMBERS_READ,
            C.MEMBERS_WRITE,
            C.TERMINALS_READ,
            C.MEETINGS_READ,
            C.MEETINGS_WRITE,
            C.MEETING_JOIN,
            C.FACES_READ,
            C.FACES_WRITE,
            C.DUTY_READ,
            C.DUTY_EXPLAIN,
        }
    ),
    Role.SUPERVISOR: frozenset(
        {
            C.TREE_READ,
            C.MEMBERS_READ,
            C.TERMINALS_READ,
            C.MEETINGS_READ,
            C.AUDIT_READ,
            C.MEETING_JOIN,
            C.SUPERVISE,
            # spot checks of attendance look at the evidence; enrolling is not theirs
            C.FACES_READ,
            C.DUTY_READ,
        }
    ),
    Role.VIEWER: frozenset({C.TREE_READ, C.MEETINGS_READ, C.MEETING_JOIN}),
    Role.TERMINAL: frozenset({C.MEETING_JOIN}),
}


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a staff account or a paired terminal."""

    subject: str  # "account:7" or "terminal:12"
    name: str
    role: Role
    org_id: int
    org_path: str
    token_id: str
    # verified by a key being rotated out: its holder should be given a fresh token
    signed_with_old_key: bool = False

    @property
    def account_id(self) -> int | None:
        return ParticipantId.parse(self.subject).account_id

    @property
    def terminal_id(self) -> int | None:
        return ParticipantId.parse(self.subject).terminal_id

    def allows(self, capability: Capability) -> bool:
        return capability in ROLE_CAPABILITIES[self.role]

    def covers(self, org_path: str | None) -> bool:
        """True if an object at org_path is inside this caller's subtree."""
        return org_path is not None and org_path.startswith(self.org_path)

    def can(self, capability: Capability, org_path: str | None) -> bool:
        return self.allows(capability) and self.covers(org_path)


class AccessDenied(Exception):
    """Refused: `reason` says why (role, or place in the tree)."""

    def __init__(self, capability: Capability, reason: str) -> None:
        super().__init__(reason)
        self.capability = capability
        self.reason = reason


def require(principal: Principal, capability: Capability, org_path: str | None) -> None:
    if not principal.allows(capability):
        raise AccessDenied(capability, f"the role {principal.role} may not {capability}")
    if not principal.covers(org_path):
        raise AccessDenied(capability, "that object is outside your part of the org tree")
