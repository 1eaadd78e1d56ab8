"""Meeting tokens: an authenticated terminal or staff member asks to join a room and gets
a short-lived signaling token, after the role and org-tree checks. /api/meeting-token"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from db import audit
from db.access import Capability, Principal
from db.models import Role
from db.tree import find_by_code, related
from lighthouse.keys import EMERGENCY_DESK_KEY, ROOMS_KEY, TOKENS_KEY
from sfu.room import Room
from signaling.duty_rooms import duty_village

from .common import ApiError, authed, json_response, parse_body

MEETING_TOKEN_TTL_S = 12 * 3600

# the part a caller plays in a meeting follows from its role
MEETING_ROLE = {
    Role.COUNTY_ADMIN: "main",
    Role.TOWN_ADMIN: "main",
    Role.TERMINAL: "terminal",
    Role.VILLAGE_SECRETARY: "viewer",
    Role.SUPERVISOR: "viewer",
    Role.VIEWER: "viewer",
}


class MeetingTokenBody(BaseModel):
    room_id: str | None = Field(default=None, min_length=1, max_length=64)


async def _room_path(session: AsyncSession, room: Room) -> str | None:
    """The organising org's path, or None for a room open to the whole county."""
    if room.settings.org_code is None:
        return None
    org = await find_by_code(session, room.settings.org_code)
    return org.path if org else "/nonexistent/"


@authed
async def post_meeting_token(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    body = await parse_body(request, MeetingTokenBody)
    if not principal.allows(Capability.MEETING_JOIN):
        raise ApiError(403, "forbidden", f"your role ({principal.role}) may not join meetings")
    rooms = request.app[ROOMS_KEY]
    # an emergency call's room only through the emergency API: its roles, its check that
    # the call is still on, and its emergency_watched audit entry
    emergency_rooms = {room.id for room in request.app[EMERGENCY_DESK_KEY].live.values()}
    candidates = [rooms[body.room_id]] if body.room_id is not None and body.room_id in rooms else []
    if body.room_id is None:
        candidates = list(rooms.values())
    # nor a duty room: its only subscriber is the duty recognizer (supervisors look in
    # through the supervision API, hidden and audited)
    candidates = [
        room
        for room in candidates
        if room.id not in emergency_rooms and duty_village(room.id) is None
    ]
    chosen = None
    for room in candidates:
        if related(principal.org_path, await _room_path(session, room)):
            chosen = room
            break
    if chosen is None:
        raise ApiError(404, "no_meeting", "there is no meeting for you to join right now")
    role = MEETING_ROLE[principal.role]
    token = request.app[TOKENS_KEY].mint(
        principal.subject,
        principal.name,
        chosen.id,
        role,
        ttl_s=MEETING_TOKEN_TTL_S,
        source_token_id=principal.token_id,
    )
    audit.record(
        session,
        principal,
        "meeting_token",
        target_type="room",
        target_id=chosen.id,
        org_path=principal.org_path,
        remote_addr=request.remote,
    )
    await session.commit()
    return json_response(
        {"room_id": chosen.id, "room_name": chosen.settings.name, "role": role, "token": token}
    )
