"""Running a meeting: start and end it, see who is there, and control it.

    POST /api/meetings/{id}/start    open its room, invite its sites' TVs (auto-join)
    POST /api/meetings/{id}/end      tell the TVs, close the room
    GET  /api/meetings/{id}/live     venues (in the meeting / online / offline), control state
    POST /api/meetings/{id}/control  roll call, floor, mute (all), lower a hand

All need meetings:write (control and live: meetings:read for live) over the meeting's
organiser; every start, end and control action is audited.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.access import Capability, Principal
from db.models import MainVenue, Meeting, MeetingStatus, OrgUnit, Terminal, TerminalKind
from db.participants import terminal_participant
from db.tree import meeting_site_paths
from lighthouse.keys import MEETING_ROOMS_KEY, TOKENS_KEY
from signaling.meetings import LiveMeeting, MeetingRooms, meeting_room_id
from signaling.schema import CONTROL_ACTIONS, MessageError
from signaling.server import apply_control

from .common import ApiError, audit_object, authed, json_response, parse_body, scoped_object
from .meeting_tokens import MEETING_TOKEN_TTL_S
from .meetings import meeting_json


class StartBody(BaseModel):
    # where the main venue is: this phone (it publishes through the main-venue link at
    # once), a page opened from that link elsewhere, or none (each venue in its own room)
    main_venue: MainVenue | None = None


class ControlBody(BaseModel):
    action: str = Field(min_length=1, max_length=32)
    peer_id: str | None = Field(default=None, max_length=64)


async def _meeting(
    request: web.Request, session: AsyncSession, principal: Principal, capability: Capability
) -> Meeting:
    return await scoped_object(
        session,
        principal,
        Meeting,
        int(request.match_info["meeting_id"]),
        capability,
        "meeting",
    )


def _audit(
    request: web.Request,
    session: AsyncSession,
    principal: Principal,
    meeting: Meeting,
    action: str,
    detail: dict | None = None,
) -> None:
    audit_object(request, session, principal, action, "meeting", meeting, detail)


async def _venues(
    session: AsyncSession, rooms: MeetingRooms, live: LiveMeeting | None, site_paths: list[str]
) -> list[dict[str, Any]]:
    """Every paired TV of the meeting's sites: in the meeting, online (lobby) or offline."""
    query = (
        select(Terminal, OrgUnit.name)
        .join(OrgUnit, Terminal.org_id == OrgUnit.id)
        .where(
            Terminal.revoked_at.is_(None),
            Terminal.paired_at.is_not(None),
            Terminal.kind != TerminalKind.DUTY_CAMERA,  # a duty kiosk is no venue
            or_(*(Terminal.org_path.like(f"{p}%") for p in site_paths)),
        )
        .order_by(Terminal.org_path, Terminal.id)
    )
    venues = []
    for terminal, org_name in (await session.execute(query)).all():
        participant = terminal_participant(terminal.id)
        peer = live.room.peer_by_participant(participant) if live is not None else None
        if peer is not None:
            state = "in_meeting"
        elif rooms.lobby.is_online(terminal.id):
            state = "online"
        else:
            state = "offline"
        venues.append(
            {
                "terminal_id": terminal.id,
                "name": terminal.name,
                "org_id": terminal.org_id,
                "org_name": org_name,
                "state": state,
                "peer_id": peer.id if peer is not None else None,
            }
        )
    return venues


def _main_url(request: web.Request, principal: Principal, meeting: Meeting) -> str:
    """A link for the caller to run the meeting as its main venue (/main)."""
    token = request.app[TOKENS_KEY].mint(
        principal.subject,
        principal.name,
        meeting_room_id(meeting.id),
        "main",
        ttl_s=MEETING_TOKEN_TTL_S,
        source_token_id=principal.token_id,
    )
    return f"/main#token={token}"


async def _live_json(
    request: web.Request, session: AsyncSession, principal: Principal, meeting: Meeting
) -> dict[str, Any]:
    rooms = request.app[MEETING_ROOMS_KEY]
    live = rooms.live.get(meeting.id)
    site_paths = await meeting_site_paths(session, meeting)
    data: dict[str, Any] = {
        "meeting": meeting_json(meeting),
        "live": live is not None,
        "room_id": live.room.id if live is not None else None,
        "venues": await _venues(session, rooms, live, site_paths),
    }
    if live is not None:
        room = live.room
        data["control"] = room.control.state()
        data["peers"] = [
            {
                **peer.describe(),
                "participant_id": peer.participant_id,
                "audio_packets_withheld": sum(
                    p.uptracks["audio"].packets_withheld
                    for p in peer.publications.values()
                    if "audio" in p.uptracks
                ),
            }
            for peer in room.peers.values()
        ]
        if principal.can(Capability.MEETINGS_WRITE, meeting.org_path):
            data["main_url"] = _main_url(request, principal, meeting)
    return data


@authed
async def post_start(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    meeting = await _meeting(request, session, principal, Capability.MEETINGS_WRITE)
    if meeting.status in (MeetingStatus.ENDED, MeetingStatus.CANCELLED):
        raise ApiError(409, "meeting_over", f"the meeting is {meeting.status}; create a new one")
    body = await parse_body(request, StartBody) if request.can_read_body else StartBody()
    organiser = await session.get(OrgUnit, meeting.organiser_id)
    assert organiser is not None
    rooms = request.app[MEETING_ROOMS_KEY]
    if meeting.status != MeetingStatus.LIVE:
        meeting.status = MeetingStatus.LIVE
        meeting.actual_start = dt.datetime.now(dt.UTC)
        if body.main_venue is not None:
            meeting.main_venue = body.main_venue
        _audit(
            request,
            session,
            principal,
            meeting,
            "meeting_started",
            {"topic": meeting.topic, "main_venue": meeting.main_venue.value},
        )
        await session.commit()
        await session.refresh(meeting)
    await rooms.open(
        meeting.id,
        topic=meeting.topic,
        organiser_code=organiser.code,
        organiser_path=organiser.path,
        site_paths=await meeting_site_paths(session, meeting),
        main_expected=meeting.main_venue != MainVenue.NONE,
    )
    return json_response(await _live_json(request, session, principal, meeting))


@authed
async def post_end(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    meeting = await _meeting(request, session, principal, Capability.MEETINGS_WRITE)
    if meeting.status != MeetingStatus.LIVE:
        raise ApiError(409, "not_live", "the meeting is not running")
    meeting.status = MeetingStatus.ENDED
    meeting.actual_end = dt.datetime.now(dt.UTC)
    _audit(request, session, principal, meeting, "meeting_ended")
    await session.commit()
    await session.refresh(meeting)
    await request.app[MEETING_ROOMS_KEY].close(meeting.id)
    return json_response(meeting_json(meeting))


@authed
async def get_live(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    meeting = await _meeting(request, session, principal, Capability.MEETINGS_READ)
    return json_response(await _live_json(request, session, principal, meeting))


@authed
async def post_control(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    body = await parse_body(request, ControlBody)
    meeting = await _meeting(request, session, principal, Capability.MEETINGS_WRITE)
    if body.action not in CONTROL_ACTIONS:
        raise ApiError(
            422,
            "validation_failed",
            "unknown action",
            {"action": f"one of {', '.join(CONTROL_ACTIONS)}"},
        )
    live = request.app[MEETING_ROOMS_KEY].live.get(meeting.id)
    if live is None:
        raise ApiError(409, "not_live", "the meeting is not running")
    try:
        await apply_control(live.room, body.action, body.peer_id)
    except MessageError as error:
        raise ApiError(404, error.code, error.message) from None
    detail = {"action": body.action, "peer_id": body.peer_id}
    _audit(request, session, principal, meeting, "meeting_control", detail)
    await session.commit()
    return json_response(live.room.control.state())
