"""Emergency calls: a village's phone camera straight to the county command.

    POST /api/emergencies                   raise one (meetings:write at the place); its room
                                            opens and every command view above it is told
    GET  /api/emergencies?status=active     the emergencies in your subtree, newest first
    GET  /api/emergencies/{id}              one of them
    POST /api/emergencies/{id}/watch        a token to see and hear it (and to talk back)
    POST /api/emergencies/{id}/acknowledge  the command has seen it (the phone is told)
    POST /api/emergencies/{id}/end          over: its room closes
    GET  /api/emergencies/events            the command view's event stream (text/event-stream)

Raising, acknowledging, ending and watching are audited.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.access import Capability, Principal
from db.models import Emergency, EmergencyStatus
from lighthouse.keys import EMERGENCY_DESK_KEY, TOKENS_KEY
from signaling.emergencies import EmergencyDesk, emergency_room_id

from .common import (
    ApiError,
    audit_object,
    authed,
    check,
    error_response,
    json_response,
    parse_body,
    scoped_object,
    scoped_org,
    serve_events,
    verify_streaming,
)
from .meeting_tokens import MEETING_TOKEN_TTL_S

# a stream sends a comment this often so proxies keep it open, and re-checks its token
KEEPALIVE_S = 15.0
LIST_LIMIT = 100


class RaiseBody(BaseModel):
    note: str | None = Field(default=None, max_length=200)
    org_id: int | None = None  # default: the caller's own unit


def emergency_json(emergency: Emergency, desk: EmergencyDesk) -> dict[str, Any]:
    room = desk.live.get(emergency.id)
    return {
        "id": emergency.id,
        "org": {"id": emergency.org.id, "name": emergency.org.name, "path": emergency.org_path},
        "reporter_name": emergency.reporter_name,
        "note": emergency.note,
        "status": emergency.status,
        "started_at": emergency.started_at,
        "acknowledged_at": emergency.acknowledged_at,
        "acknowledged_by": emergency.acknowledged_by,
        "ended_at": emergency.ended_at,
        "room_id": emergency_room_id(emergency.id),
        # whether the phone's camera reaches the server right now
        "sending": room is not None and bool(room.visible_publications()),
    }


def _audit(
    request: web.Request,
    session: AsyncSession,
    principal: Principal,
    emergency: Emergency,
    action: str,
    detail: dict | None = None,
) -> None:
    audit_object(request, session, principal, action, "emergency", emergency, detail)


def _token(request: web.Request, principal: Principal, emergency: Emergency, role: str) -> str:
    return request.app[TOKENS_KEY].mint(
        principal.subject,
        principal.name,
        emergency_room_id(emergency.id),
        role,
        ttl_s=MEETING_TOKEN_TTL_S,
        source_token_id=principal.token_id,
    )


async def _emergency(
    request: web.Request, session: AsyncSession, principal: Principal, capability: Capability
) -> Emergency:
    return await scoped_object(
        session,
        principal,
        Emergency,
        int(request.match_info["emergency_id"]),
        capability,
        "emergency",
    )


def _announce(request: web.Request, emergency: Emergency, event: str) -> None:
    desk = request.app[EMERGENCY_DESK_KEY]
    desk.announce(
        emergency.org_path,
        {"type": "emergency", "event": event, "emergency": emergency_json(emergency, desk)},
    )


@authed
async def post_emergency(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    body = await parse_body(request, RaiseBody)
    org = await scoped_org(session, principal, body.org_id, Capability.MEETINGS_WRITE)
    desk = request.app[EMERGENCY_DESK_KEY]
    # a second tap, or the phone reloading, goes back into the call already open
    emergency = await session.scalar(
        select(Emergency).where(
            Emergency.reporter == principal.subject,
            Emergency.org_id == org.id,
            Emergency.status == EmergencyStatus.ACTIVE,
        )
    )
    status = 200
    if emergency is None:
        emergency = Emergency(
            org_id=org.id,
            org_path=org.path,
            reporter=principal.subject,
            reporter_name=principal.name,
            note=body.note or None,
        )
        session.add(emergency)
        await session.flush()
        _audit(request, session, principal, emergency, "emergency_raised", {"note": body.note})
        await session.commit()
        await session.refresh(emergency)
        status = 201
    await desk.open(emergency.id, title=org.name, org_code=org.code)
    if status == 201:
        _announce(request, emergency, "raised")
    return json_response(
        {
            "emergency": emergency_json(emergency, desk),
            # the phone publishes its camera with this (an uncontrolled room: any role sends)
            "token": _token(request, principal, emergency, "terminal"),
        },
        status=status,
    )


@authed
async def list_emergencies(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    check(principal, Capability.MEETINGS_READ, principal.org_path, "emergency")
    query = (
        select(Emergency)
        .where(Emergency.org_path.like(f"{principal.org_path}%"))
        .order_by(Emergency.started_at.desc(), Emergency.id.desc())
        .limit(LIST_LIMIT)
    )
    wanted = request.query.get("status")
    if wanted:
        if wanted not in set(EmergencyStatus):
            raise ApiError(
                422, "validation_failed", "unknown status", {"status": "active or ended"}
            )
        query = query.where(Emergency.status == EmergencyStatus(wanted))
    desk = request.app[EMERGENCY_DESK_KEY]
    found = (await session.scalars(query)).all()
    return json_response({"emergencies": [emergency_json(e, desk) for e in found]})


@authed
async def get_emergency(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    emergency = await _emergency(request, session, principal, Capability.MEETINGS_READ)
    return json_response(emergency_json(emergency, request.app[EMERGENCY_DESK_KEY]))


@authed
async def post_watch(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    emergency = await _emergency(request, session, principal, Capability.MEETINGS_READ)
    if emergency.status != EmergencyStatus.ACTIVE:
        raise ApiError(409, "emergency_over", "this emergency has ended")
    # the command joins visibly, as the main venue: the caller sees that help is watching
    token = _token(request, principal, emergency, "main")
    _audit(request, session, principal, emergency, "emergency_watched")
    await session.commit()
    return json_response({"room_id": emergency_room_id(emergency.id), "token": token})


@authed
async def post_acknowledge(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    emergency = await _emergency(request, session, principal, Capability.MEETINGS_READ)
    if not (principal.allows(Capability.MEETINGS_WRITE) or principal.allows(Capability.SUPERVISE)):
        raise ApiError(403, "forbidden", f"your role ({principal.role}) may not acknowledge")
    if emergency.status != EmergencyStatus.ACTIVE:
        raise ApiError(409, "emergency_over", "this emergency has ended")
    if emergency.acknowledged_at is None:
        emergency.acknowledged_at = dt.datetime.now(dt.UTC)
        emergency.acknowledged_by = principal.name
        _audit(request, session, principal, emergency, "emergency_acknowledged")
        await session.commit()
        await session.refresh(emergency)
        _announce(request, emergency, "acknowledged")
    return json_response(emergency_json(emergency, request.app[EMERGENCY_DESK_KEY]))


@authed
async def post_end(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    emergency = await _emergency(request, session, principal, Capability.MEETINGS_WRITE)
    if emergency.status != EmergencyStatus.ACTIVE:
        raise ApiError(409, "emergency_over", "this emergency has already ended")
    emergency.status = EmergencyStatus.ENDED
    emergency.ended_at = dt.datetime.now(dt.UTC)
    emergency.ended_by = principal.name
    _audit(request, session, principal, emergency, "emergency_ended")
    await session.commit()
    await session.refresh(emergency)
    desk = request.app[EMERGENCY_DESK_KEY]
    await desk.close(emergency.id)
    _announce(request, emergency, "ended")
    return json_response(emergency_json(emergency, desk))


async def emergency_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events for a command view: `ready` once subscribed (reload the list
    then), `emergency` {event: raised | acknowledged | ended, emergency} afterwards."""
    try:
        principal = await verify_streaming(request, Capability.MEETINGS_READ)
    except ApiError as error:
        return error_response(error)
    desk = request.app[EMERGENCY_DESK_KEY]
    feed = desk.subscribe(principal.org_path)
    try:
        return await serve_events(
            request, Capability.MEETINGS_READ, feed.queue, lambda _: "emergency", KEEPALIVE_S
        )
    finally:
        desk.unsubscribe(feed)
