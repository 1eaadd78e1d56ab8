"""Supervision: the live meetings in a supervisor's part of the tree, hidden viewing tokens,
and the trail of hidden views. /api/supervision/...

A hidden viewer joins a room with a `supervisor` token: the SFU keeps it out of every peer
list and event, it cannot publish, and its bandwidth estimates never slow the publisher
(sfu/room.py). Tokens are minted only for rooms whose organiser lies inside the caller's
subtree; a refusal is answered 403 and audited.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db import audit
from db.access import Capability, Principal
from db.models import (
    Attendance,
    AttendanceStatus,
    HiddenView,
    Meeting,
    MeetingStatus,
    Member,
    OrgUnit,
)
from db.tree import organiser
from lighthouse.keys import DUTY_RECOGNITION_KEY, MEETING_ROOMS_KEY, ROOMS_KEY, TOKENS_KEY
from sfu.events import PublicationDescription
from sfu.room import Room
from signaling.duty_rooms import duty_village

from .common import ApiError, authed, check, json_response, parse_body, query_int
from .members_io import CHINA_TIME

VIEW_TOKEN_TTL_S = 4 * 3600


def main_publication(room: Room) -> PublicationDescription | None:
    """What a wall tile shows of a meeting: the main venue's camera, else the first one."""
    visible = [p for p in room.publications.values() if p.announced and not p.closed]
    visible = [p for p in visible if "video" in p.kinds] or visible
    if not visible:
        return None
    # the main venue's camera first; a shared screen only when nothing else is there
    visible.sort(key=lambda p: (p.source != "camera", p.peer.role != "main"))
    return visible[0].describe()


def venue_cameras(room: Room) -> list[dict[str, Any]]:
    """What supervision looks into: every venue in the room but the main venue, with its
    camera's publication id (None while it sends none: a tile says so), by name."""
    cameras = {
        p.peer.id: p.id
        for p in room.publications.values()
        if p.announced and not p.closed and p.source == "camera" and "video" in p.kinds
    }
    venues = [
        {"peer_id": peer.id, "name": peer.name, "publication_id": cameras.get(peer.id)}
        for peer in room.peers.values()
        if peer.role != "main"
    ]
    return sorted(venues, key=lambda v: (v["name"], v["peer_id"]))


async def _live_meeting(
    session: AsyncSession, org: OrgUnit, meeting_id: int | None
) -> tuple[Meeting | None, int]:
    """The room's meeting (exact for a meeting's own room; for a standing room, the
    organiser's live meeting), and how many have signed in to it."""
    if meeting_id is not None:
        meeting = await session.get(Meeting, meeting_id)
    else:
        meeting = await session.scalar(
            select(Meeting)
            .where(Meeting.organiser_id == org.id, Meeting.status == MeetingStatus.LIVE)
            .order_by(Meeting.actual_start.desc())
            .limit(1)
        )
    if meeting is None:
        return None, 0
    signed_in = await session.scalar(
        select(func.count())
        .select_from(Attendance)
        .where(
            Attendance.meeting_id == meeting.id,
            Attendance.status == AttendanceStatus.PRESENT,
        )
    )
    return meeting, int(signed_in or 0)


@authed
async def list_live(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    """The meetings going on now in the caller's subtree (a room with a venue in it), and
    the villages' duty rooms. A town clerk (duty:write, no supervision of meetings) sees
    the duty rooms only."""
    meetings_too = principal.allows(Capability.SUPERVISE)
    if not meetings_too:
        check(principal, Capability.DUTY_WRITE, principal.org_path, "meetings")
    rooms = request.app[ROOMS_KEY]
    meeting_rooms = request.app.get(MEETING_ROOMS_KEY)
    meeting_of = (
        {live.room.id: meeting_id for meeting_id, live in meeting_rooms.live.items()}
        if meeting_rooms is not None
        else {}
    )
    live: list[dict[str, Any]] = []
    for room in rooms.values():
        if not room.peers:
            continue
        org = await room_org(session, room)
        if org is None or not principal.covers(org.path):
            continue
        if duty_village(room.id) is not None:
            live.append(await _duty_room(request, session, room, org))
            continue
        if not meetings_too:
            continue
        meeting, signed_in = await _live_meeting(session, org, meeting_of.get(room.id))
        live.append(
            {
                "room_id": room.id,
                "kind": "meeting",
                "room_name": room.settings.name,
                "org": {"id": org.id, "name": org.name, "path": org.path},
                "meeting": None
                if meeting is None
                else {"id": meeting.id, "type": meeting.type, "topic": meeting.topic},
                "started_at": (meeting.actual_start if meeting else None) or room.live_since,
                "venues_online": len(room.peers),
                "venues": [peer.name for peer in room.peers.values()],
                "signed_in": signed_in,
                "main_publication": main_publication(room),
                "venue_cameras": venue_cameras(room),
            }
        )
    live.sort(key=lambda m: (m["org"]["path"], m["room_id"]))
    return json_response({"meetings": live})


async def room_org(session: AsyncSession, room: Room) -> OrgUnit | None:
    """Whose room it is: a duty room's village, else the meeting's organiser."""
    village_id = duty_village(room.id)
    if village_id is not None:
        return await session.get(OrgUnit, village_id)
    return await organiser(session, room.settings.org_code)


async def _duty_room(
    request: web.Request, session: AsyncSession, room: Room, village: OrgUnit
) -> dict[str, Any]:
    """A village's duty room as the patrol wall shows it: its camera, who is in now."""
    duty = request.app.get(DUTY_RECOGNITION_KEY)
    in_view = duty.in_view(room.id) if duty is not None else []
    names = (
        dict(
            (
                await session.execute(select(Member.id, Member.name).where(Member.id.in_(in_view)))
            ).all()
        )
        if in_view
        else {}
    )
    return {
        "room_id": room.id,
        "kind": "duty",
        "room_name": room.settings.name,
        "org": {"id": village.id, "name": village.name, "path": village.path},
        "meeting": None,
        "started_at": room.live_since,
        "venues_online": len(room.peers),
        "venues": [peer.name for peer in room.peers.values()],
        "signed_in": 0,
        "in_view": [names[m] for m in in_view if m in names],
        "main_publication": None,
        "venue_cameras": venue_cameras(room),
    }


class ViewBody(BaseModel):
    room_id: str = Field(min_length=1, max_length=64)
    mode: str = Field(default="drop_in", pattern="^(drop_in|patrol)$")


@authed
async def post_view(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    """A token to watch one room unannounced."""
    body = await parse_body(request, ViewBody)
    # a town clerk looks into the duty rooms of their villages, not into meetings
    duty_room = duty_village(body.room_id) is not None
    may = principal.allows(Capability.SUPERVISE) or (
        duty_room and principal.allows(Capability.DUTY_WRITE)
    )
    if not may:
        raise ApiError(403, "forbidden", f"your role ({principal.role}) may not supervise")
    room = request.app[ROOMS_KEY].get(body.room_id)
    if room is None:
        raise ApiError(404, "unknown_room", f"there is no meeting room {body.room_id!r}")
    org = await room_org(session, room)
    if org is None or not principal.covers(org.path):
        audit.record(
            session,
            principal,
            "supervision_denied",
            target_type="room",
            target_id=room.id,
            org_path=principal.org_path,
            remote_addr=request.remote,
            detail={"room_org": org.path if org else None, "mode": body.mode},
        )
        await session.commit()
        raise ApiError(
            403, "out_of_scope", "this meeting is outside your part of the organisation tree"
        )
    token = request.app[TOKENS_KEY].mint(
        principal.subject,
        principal.name,
        room.id,
        "supervisor",
        ttl_s=VIEW_TOKEN_TTL_S,
        source_token_id=principal.token_id,
        purpose=body.mode,
    )
    return json_response(
        {"room_id": room.id, "room_name": room.settings.name, "token": token, "mode": body.mode}
    )


def _parse_day(value: str | None, field: str) -> dt.datetime | None:
    if not value:
        return None
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise ApiError(422, "invalid", f"{field} must be a date like 2026-11-23") from None
    # a day in the county's time zone, as the console shows times (stored in UTC)
    return dt.datetime.combine(day, dt.time(), tzinfo=CHINA_TIME).astimezone(dt.UTC)


@authed
async def list_views(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    """The hidden views of meetings in the caller's subtree, newest first."""
    check(principal, Capability.AUDIT_READ, principal.org_path, "audit log")
    query = select(HiddenView).where(HiddenView.org_path.like(f"{principal.org_path}%"))
    text = request.query.get("q", "").strip()
    if text:  # the text as typed: "%" and "_" match themselves, not everything
        query = query.where(
            HiddenView.supervisor_name.contains(text, autoescape=True)
            | HiddenView.room_name.contains(text, autoescape=True)
            | (HiddenView.supervisor == text)
        )
    if request.query.get("room"):
        query = query.where(HiddenView.room_id == request.query["room"])
    since = _parse_day(request.query.get("from"), "from")
    if since is not None:
        query = query.where(HiddenView.started_at >= since)
    until = _parse_day(request.query.get("to"), "to")
    if until is not None:
        query = query.where(HiddenView.started_at < until + dt.timedelta(days=1))
    limit = query_int(request, "limit", 200, 1, 1000)
    rows = await session.execute(
        query.order_by(HiddenView.started_at.desc(), HiddenView.id.desc()).limit(limit)
    )
    return json_response(
        {
            "views": [
                {
                    "id": v.id,
                    "supervisor": v.supervisor,
                    "supervisor_name": v.supervisor_name,
                    "room_id": v.room_id,
                    "room_name": v.room_name,
                    "mode": v.mode,
                    "started_at": v.started_at,
                    "ended_at": v.ended_at,
                    "duration_s": v.duration_s,
                }
                for v in rows.scalars()
            ]
        }
    )
