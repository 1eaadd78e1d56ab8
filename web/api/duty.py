"""Duty attendance's API (docs/api.md, "Duty"): cameras, rosters, hours, leave, days and
their corrections, alerts and their answers, summaries with their XLSX, and the live
event stream of the secretary's phone and the console.

Every endpoint checks the caller's role and place: duty:read to read, duty:write (the
town's and the county's staff) to keep rosters, hours, leave, cameras and to correct a
day, duty:explain (the village) to explain an alert. An RTSP URL is stored as given and
shown with its password masked; nobody reads it back whole.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db import audit
from db.access import Capability, Principal
from db.duty import sheets
from db.duty.rules import DayStatus, LeaveKind
from db.duty.sheets import SheetRejected
from db.duty.store import (
    DutyError,
    add_cadre,
    add_leave,
    correct_day,
    schedule_of,
    set_hours,
)
from db.duty.summaries import period_bounds, summarise
from db.duty.workbook import summary_workbook
from db.member_import import ImportFileError, Sheet, SheetLayout, read_sheet
from db.models import (
    DutyAlert,
    DutyAlertStatus,
    DutyCadre,
    DutyCamera,
    DutyCameraKind,
    DutyDay,
    DutyReport,
    DutySighting,
    Member,
    OrgKind,
    OrgUnit,
    Terminal,
)
from lighthouse.keys import (
    DUTY_CLOCK_KEY,
    DUTY_RECOGNITION_KEY,
    DUTY_ROOMS_KEY,
    DUTY_WATCH_KEY,
    LIVE_EVENTS_KEY,
)
from recognition.rtsp import check_url, masked

from .common import (
    ApiError,
    authed,
    check,
    error_response,
    json_response,
    not_found,
    parse_body,
    query_int,
    scoped_object,
    scoped_org,
    serve_events,
    verify_streaming,
)
from .faces import evidence_response
from .members_io import _read_upload, _xlsx_response

C = Capability


def _duty_error(error: DutyError) -> ApiError:
    return ApiError(422, error.code, str(error))


def _poke(request: web.Request) -> None:
    watch = request.app.get(DUTY_WATCH_KEY)
    if watch is not None:
        watch.poke()
    duty_rooms = request.app.get(DUTY_ROOMS_KEY)
    if duty_rooms is not None:  # hours or a camera changed: the TVs' windows may have
        duty_rooms.poke()


def _audit(
    request: web.Request,
    session: AsyncSession,
    principal: Principal,
    action: str,
    target_type: str,
    target_id: object,
    org_path: str,
    detail: dict | None = None,
) -> None:
    audit.record(
        session,
        principal,
        action,
        target_type=target_type,
        target_id=target_id,
        org_path=org_path,
        remote_addr=request.remote,
        detail=detail,
    )


async def _village(session: AsyncSession, principal: Principal, org_id: int, cap: Capability):
    village = await scoped_org(session, principal, org_id, cap)
    if village.kind is not OrgKind.VILLAGE:
        raise ApiError(422, "bad_unit", "that unit is not a village or community")
    return village


# -- cameras ----------------------------------------------------------------------------
class CameraBody(BaseModel):
    village_id: int
    kind: DutyCameraKind
    name: str = Field(min_length=1, max_length=100)
    rtsp_url: str | None = Field(default=None, max_length=500)
    terminal_id: int | None = None
    schedule: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True


def camera_json(camera: DutyCamera) -> dict[str, Any]:
    return {
        "id": camera.id,
        "village_id": camera.village_id,
        "kind": camera.kind.value,
        "name": camera.name,
        "rtsp_url": masked(camera.rtsp_url) if camera.rtsp_url else None,
        "terminal_id": camera.terminal_id,
        "schedule": camera.schedule,
        "enabled": camera.enabled,
        "online": camera.online,
        "last_frame_at": camera.last_frame_at,
        "last_recognition_at": camera.last_recognition_at,
        "error": camera.last_error,
    }


def _check_schedule(schedule: dict[str, Any]) -> None:
    try:
        schedule_of(schedule)
    except DutyError as error:
        raise ApiError(422, error.code, str(error), {"schedule": str(error)}) from None


async def _check_terminal(session: AsyncSession, terminal_id: int | None, village) -> None:
    """A TV's or kiosk's camera is a paired terminal of that very village."""
    terminal = await session.get(Terminal, terminal_id) if terminal_id is not None else None
    if terminal is None or terminal.revoked_at is not None or terminal.org_path != village.path:
        raise ApiError(
            422,
            "bad_terminal",
            "a TV or kiosk camera names a paired terminal of the village",
            {"terminal_id": "not a paired terminal of this village"},
        )


@authed
async def post_camera(request: web.Request, session: AsyncSession, principal: Principal):
    body = await parse_body(request, CameraBody)
    village = await _village(session, principal, body.village_id, C.DUTY_WRITE)
    if body.kind is DutyCameraKind.RTSP:
        try:
            check_url(body.rtsp_url or "")
        except ValueError as error:
            raise ApiError(422, "bad_rtsp_url", str(error), {"rtsp_url": str(error)}) from None
    elif body.rtsp_url:
        raise ApiError(422, "validation_failed", "only an RTSP camera has a URL")
    else:
        await _check_terminal(session, body.terminal_id, village)
    _check_schedule(body.schedule)
    camera = DutyCamera(
        village_id=village.id,
        org_path=village.path,
        kind=body.kind,
        name=body.name,
        rtsp_url=body.rtsp_url if body.kind is DutyCameraKind.RTSP else None,
        terminal_id=body.terminal_id,
        schedule=body.schedule,
        enabled=body.enabled,
    )
    session.add(camera)
    await session.flush()
    _audit(
        request,
        session,
        principal,
        "duty.camera_added",
        "duty_camera",
        camera.id,
        village.path,
        {"kind": body.kind.value, "name": body.name},
    )
    await session.commit()
    duty = request.app.get(DUTY_RECOGNITION_KEY)
    if duty is not None and camera.kind is DutyCameraKind.RTSP and camera.enabled:
        await duty.watch_rtsp(camera)
    _poke(request)
    return json_response({"camera": camera_json(camera)}, status=201)


class CameraChange(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    schedule: dict[str, Any] | None = None
    enabled: bool | None = None


async def _camera(session: AsyncSession, principal: Principal, request: web.Request) -> DutyCamera:
    camera = await session.get(DutyCamera, int(request.match_info["camera_id"]))
    if camera is None:
        raise not_found("camera")
    check(principal, C.DUTY_WRITE, camera.org_path, "camera")
    return camera


async def _camera_changed(request: web.Request, camera: DutyCamera, removed: bool) -> None:
    """The running watch follows: an RTSP camera is opened again or let go; a TV's or
    kiosk's is sent on duty or off it by the duty rooms' next look."""
    duty = request.app.get(DUTY_RECOGNITION_KEY)
    if duty is not None:
        if removed or not camera.enabled:
            await duty.forget(camera.id)
        elif camera.kind is DutyCameraKind.RTSP:
            await duty.watch_rtsp(camera)
    _poke(request)


@authed
async def patch_camera(request: web.Request, session: AsyncSession, principal: Principal):
    camera = await _camera(session, principal, request)
    body = await parse_body(request, CameraChange)
    changes = body.model_dump(exclude_none=True)
    if body.schedule is not None:
        _check_schedule(body.schedule)
    for field, value in changes.items():
        setattr(camera, field, value)
    _audit(
        request,
        session,
        principal,
        "duty.camera_changed",
        "duty_camera",
        camera.id,
        camera.org_path,
        changes,
    )
    await session.commit()
    await _camera_changed(request, camera, removed=False)
    return json_response({"camera": camera_json(camera)})


@authed
async def delete_camera(request: web.Request, session: AsyncSession, principal: Principal):
    camera = await _camera(session, principal, request)
    _audit(
        request,
        session,
        principal,
        "duty.camera_removed",
        "duty_camera",
        camera.id,
        camera.org_path,
        {"name": camera.name},
    )
    await session.delete(camera)
    await session.commit()
    await _camera_changed(request, camera, removed=True)
    return web.Response(status=204)


@authed
async def list_cameras(request: web.Request, session: AsyncSession, principal: Principal):
    org = await scoped_org(session, principal, query_int(request, "org_id"), C.DUTY_READ)
    cameras = await session.scalars(
        select(DutyCamera).where(DutyCamera.org_path.like(f"{org.path}%")).order_by(DutyCamera.id)
    )
    return json_response({"cameras": [camera_json(c) for c in cameras]})


# -- rosters and hours --------------------------------------------------------------------
class CadreBody(BaseModel):
    village_id: int
    member_id: int
    post: str = Field(min_length=1, max_length=50)
    first_secretary: bool = False
    required_days: int | None = Field(default=None, ge=1, le=31)


def cadre_json(cadre: DutyCadre) -> dict[str, Any]:
    return {
        "member_id": cadre.member_id,
        "name": cadre.member.name,
        "village_id": cadre.village_id,
        "post": cadre.post,
        "first_secretary": cadre.first_secretary,
        "required_days": cadre.required_days,
    }


@authed
async def post_cadre(request: web.Request, session: AsyncSession, principal: Principal):
    body = await parse_body(request, CadreBody)
    village = await _village(session, principal, body.village_id, C.DUTY_WRITE)
    # the member too must be inside the caller's part of the tree (a county's first
    # secretary is put on a village's roster by the county)
    member = await scoped_object(session, principal, Member, body.member_id, C.DUTY_WRITE, "member")
    try:
        cadre = await add_cadre(
            session,
            village,
            member,
            post=body.post,
            first_secretary=body.first_secretary,
            required_days=body.required_days,
        )
    except DutyError as error:
        raise _duty_error(error) from None
    _audit(
        request,
        session,
        principal,
        "duty.cadre_set",
        "member",
        member.id,
        village.path,
        {"post": body.post, "first_secretary": body.first_secretary},
    )
    await session.commit()
    await session.refresh(cadre, ["member"])
    duty = request.app.get(DUTY_RECOGNITION_KEY)
    if duty is not None:
        await duty.rosters_changed(village.id)
    _poke(request)
    return json_response({"cadre": cadre_json(cadre)}, status=201)


@authed
async def list_roster(request: web.Request, session: AsyncSession, principal: Principal):
    org = await scoped_org(session, principal, query_int(request, "org_id"), C.DUTY_READ)
    cadres = await session.scalars(
        select(DutyCadre).where(DutyCadre.org_path.like(f"{org.path}%")).order_by(DutyCadre.id)
    )
    return json_response({"cadres": [cadre_json(c) for c in cadres]})


@authed
async def delete_cadre(request: web.Request, session: AsyncSession, principal: Principal):
    member_id = int(request.match_info["member_id"])
    cadre = await session.scalar(select(DutyCadre).where(DutyCadre.member_id == member_id))
    if cadre is None:
        raise not_found("cadre")
    check(principal, C.DUTY_WRITE, cadre.org_path, "cadre")
    # the days kept stay: they are the record of the time on the roster
    await session.delete(cadre)
    _audit(request, session, principal, "duty.cadre_removed", "member", member_id, cadre.org_path)
    await session.commit()
    return json_response({"removed": member_id})


class HoursBody(BaseModel):
    org_id: int
    weekdays: list[int] = Field(min_length=1, max_length=7)
    start: dt.time
    end: dt.time
    grace_min: int = Field(default=10, ge=0, le=240)
    absent_after_min: int = Field(default=120, ge=0, le=720)
    max_gap_min: int = Field(default=60, ge=1, le=720)
    season: tuple[str, str] | None = None  # ("05-01", "09-30")


@authed
async def put_hours(request: web.Request, session: AsyncSession, principal: Principal):
    body = await parse_body(request, HoursBody)
    org = await scoped_org(session, principal, body.org_id, C.DUTY_WRITE)
    try:
        rule = await set_hours(
            session,
            org,
            weekdays=body.weekdays,
            start=body.start,
            end=body.end,
            grace_min=body.grace_min,
            absent_after_min=body.absent_after_min,
            max_gap_min=body.max_gap_min,
            season=body.season,
            actor=principal.subject,
        )
    except DutyError as error:
        raise _duty_error(error) from None
    _audit(
        request,
        session,
        principal,
        "duty.hours_set",
        "org",
        org.id,
        org.path,
        body.model_dump(mode="json"),
    )
    await session.commit()
    _poke(request)
    return json_response({"hours": {"id": rule.id, **body.model_dump(mode="json")}})


# -- leave -----------------------------------------------------------------------------------
class LeaveBody(BaseModel):
    member_id: int
    kind: LeaveKind
    starts: dt.datetime
    ends: dt.datetime
    reason: str = Field(min_length=1, max_length=200)
    approver: str = Field(min_length=1, max_length=50)


@authed
async def post_leave(request: web.Request, session: AsyncSession, principal: Principal):
    body = await parse_body(request, LeaveBody)
    cadre = await session.scalar(select(DutyCadre).where(DutyCadre.member_id == body.member_id))
    if cadre is None:
        raise not_found("cadre")
    check(principal, C.DUTY_WRITE, cadre.org_path, "cadre")
    try:
        leave = await add_leave(
            session,
            request.app[DUTY_CLOCK_KEY],
            cadre,
            kind=body.kind,
            starts=body.starts,
            ends=body.ends,
            reason=body.reason,
            approver=body.approver,
            actor=principal.subject,
        )
    except DutyError as error:
        raise _duty_error(error) from None
    _audit(
        request,
        session,
        principal,
        "duty.leave_recorded",
        "member",
        body.member_id,
        cadre.org_path,
        body.model_dump(mode="json"),
    )
    await session.commit()
    _poke(request)
    return json_response({"leave": {"id": leave.id, **body.model_dump(mode="json")}}, status=201)


# -- days and corrections --------------------------------------------------------------
def day_json(day: DutyDay, name: str, village: str | None = None) -> dict[str, Any]:
    return {
        "id": day.id,
        "member_id": day.member_id,
        "name": name,
        "village_id": day.village_id,
        **({"village": village} if village is not None else {}),
        "date": day.date,
        "status": day.status.value,
        "machine_status": day.machine_status.value,
        "corrected": day.corrected,
        "due_from": day.due_from,
        "arrived_at": day.arrived_at,
        "departed_at": day.departed_at,
        "late_min": day.late_min,
        "present_min": day.present_min,
        "gaps": day.gaps,
    }


def _date(request: web.Request, name: str = "date") -> dt.date:
    raw = request.query.get(name)
    if not raw:
        return request.app[DUTY_CLOCK_KEY].today()
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise ApiError(422, "validation_failed", f"{name} is YYYY-MM-DD", {name: raw}) from None


EVIDENCE = {
    "in-face": "first_face",
    "in-scene": "first_scene",
    "out-face": "last_face",
    "out-scene": "last_scene",
}


def sighting_json(sighting: DutySighting, with_photos: bool) -> dict[str, Any]:
    def url(name: str) -> str | None:
        if not with_photos or not getattr(sighting, EVIDENCE[name]):
            return None
        return f"/api/duty/sightings/{sighting.id}/{name}.jpg"

    return {
        "id": sighting.id,
        "first_at": sighting.first_at,
        "last_at": sighting.last_at,
        "camera": sighting.camera,
        "similarity": round(sighting.similarity, 3),
        # the clock-in's pictures and the latest ones (the clock-out's)
        "in_face_url": url("in-face"),
        "in_scene_url": url("in-scene"),
        "out_face_url": url("out-face"),
        "out_scene_url": url("out-scene"),
    }


@authed
async def list_day_sightings(request: web.Request, session: AsyncSession, principal: Principal):
    """A duty day's evidence: each sighting of the cadre by the village's cameras, with
    the pictures' addresses for callers entitled to faces (faces:read)."""
    day = await session.get(DutyDay, int(request.match_info["day_id"]))
    if day is None:
        raise not_found("day")
    check(principal, C.DUTY_READ, day.org_path, "day")
    start, end = request.app[DUTY_CLOCK_KEY].day_bounds(day.date)
    sightings = await session.scalars(
        select(DutySighting)
        .where(
            DutySighting.member_id == day.member_id,
            DutySighting.village_id == day.village_id,
            DutySighting.first_at >= start,
            DutySighting.first_at < end,
        )
        .order_by(DutySighting.first_at)
    )
    with_photos = principal.can(C.FACES_READ, day.org_path)
    return json_response(
        {"day_id": day.id, "sightings": [sighting_json(x, with_photos) for x in sightings]}
    )


@authed
async def get_sighting_picture(request: web.Request, session: AsyncSession, principal: Principal):
    sighting = await session.get(DutySighting, int(request.match_info["sighting_id"]))
    if sighting is None:
        raise not_found("photo")
    check(principal, C.DUTY_READ, sighting.org_path, "photo")
    return await evidence_response(
        request, principal, sighting, EVIDENCE[request.match_info["picture"]]
    )


@authed
async def list_days(request: web.Request, session: AsyncSession, principal: Principal):
    org = await scoped_org(session, principal, query_int(request, "org_id"), C.DUTY_READ)
    date = _date(request)
    rows = await session.execute(
        select(DutyDay, Member.name, OrgUnit.name)
        .join(Member, Member.id == DutyDay.member_id)
        .join(OrgUnit, OrgUnit.id == DutyDay.village_id)
        .where(DutyDay.org_path.like(f"{org.path}%"), DutyDay.date == date)
        .order_by(DutyDay.village_id, DutyDay.member_id)
    )
    return json_response({"date": date, "days": [day_json(d, n, v) for d, n, v in rows]})


class CorrectionBody(BaseModel):
    status: Literal["on_time", "late", "absent", "leave", "field_duty", "rest"]
    reason: str = Field(min_length=1, max_length=200)


def _audit_correction(
    request: web.Request,
    session: AsyncSession,
    principal: Principal,
    day: DutyDay,
    from_status: DayStatus,
    reason: str,
) -> None:
    _audit(
        request,
        session,
        principal,
        "duty.day_corrected",
        "duty_day",
        day.id,
        day.org_path,
        {
            "member_id": day.member_id,
            "date": day.date.isoformat(),
            "from": from_status.value,
            "to": day.status.value,
            "machine": day.machine_status.value,
            "reason": reason,
        },
    )


@authed
async def post_correction(request: web.Request, session: AsyncSession, principal: Principal):
    body = await parse_body(request, CorrectionBody)
    day = await scoped_object(
        session, principal, DutyDay, int(request.match_info["day_id"]), C.DUTY_WRITE, "day"
    )
    try:
        correction = await correct_day(
            session,
            day,
            DayStatus(body.status),
            reason=body.reason,
            actor=principal.subject,
            actor_name=principal.name,
        )
    except DutyError as error:
        raise _duty_error(error) from None
    _audit_correction(request, session, principal, day, correction.from_status, body.reason)
    await session.commit()
    member = await session.get(Member, day.member_id)
    return json_response({"day": day_json(day, member.name if member else "")})


# -- alerts ---------------------------------------------------------------------------------
def alert_json(alert: DutyAlert, name: str, village: str | None = None) -> dict[str, Any]:
    return {
        "id": alert.id,
        "member_id": alert.member_id,
        "name": name,
        "village_id": alert.village_id,
        **({"village": village} if village is not None else {}),
        "date": alert.date,
        "kind": alert.kind.value,
        "raised_at": alert.raised_at,
        "status": alert.status.value,
        "explanation": alert.explanation,
        "explained_by": alert.explained_by,
        "explained_at": alert.explained_at,
        "decided_by": alert.decided_by,
        "decided_at": alert.decided_at,
    }


@authed
async def list_alerts(request: web.Request, session: AsyncSession, principal: Principal):
    org = await scoped_org(session, principal, query_int(request, "org_id"), C.DUTY_READ)
    query = (
        select(DutyAlert, Member.name, OrgUnit.name)
        .join(Member, Member.id == DutyAlert.member_id)
        .join(OrgUnit, OrgUnit.id == DutyAlert.village_id)
        .where(DutyAlert.org_path.like(f"{org.path}%"))
        .order_by(DutyAlert.raised_at.desc(), DutyAlert.id.desc())
        .limit(500)
    )
    status = request.query.get("status")
    if status:
        if status not in set(DutyAlertStatus):
            raise ApiError(422, "validation_failed", "unknown status", {"status": status})
        query = query.where(DutyAlert.status == DutyAlertStatus(status))
    rows = await session.execute(query)
    return json_response({"alerts": [alert_json(a, n, v) for a, n, v in rows]})


class ExplanationBody(BaseModel):
    text: str = Field(min_length=1, max_length=500)


@authed
async def post_explanation(request: web.Request, session: AsyncSession, principal: Principal):
    body = await parse_body(request, ExplanationBody)
    alert = await scoped_object(
        session, principal, DutyAlert, int(request.match_info["alert_id"]), C.DUTY_EXPLAIN, "alert"
    )
    if alert.status not in (DutyAlertStatus.OPEN, DutyAlertStatus.EXPLAINED):
        raise ApiError(409, "already_decided", "the town has decided this alert already")
    alert.status = DutyAlertStatus.EXPLAINED
    alert.explanation = body.text
    alert.explained_by = principal.name
    alert.explained_at = dt.datetime.now(dt.UTC)
    _audit(
        request,
        session,
        principal,
        "duty.alert_explained",
        "duty_alert",
        alert.id,
        alert.org_path,
        {"text": body.text},
    )
    await session.commit()
    member = await session.get(Member, alert.member_id)
    return json_response({"alert": alert_json(alert, member.name if member else "")})


class DecisionBody(BaseModel):
    excused: bool
    reason: str = Field(min_length=1, max_length=200)


@authed
async def post_decision(request: web.Request, session: AsyncSession, principal: Principal):
    """The town excuses an alert (the day is corrected to leave, audited) or upholds it."""
    body = await parse_body(request, DecisionBody)
    alert = await scoped_object(
        session, principal, DutyAlert, int(request.match_info["alert_id"]), C.DUTY_WRITE, "alert"
    )
    if alert.status in (DutyAlertStatus.EXCUSED, DutyAlertStatus.UPHELD):
        raise ApiError(409, "already_decided", "this alert is decided already")
    alert.status = DutyAlertStatus.EXCUSED if body.excused else DutyAlertStatus.UPHELD
    alert.decided_by, alert.decided_at = principal.name, dt.datetime.now(dt.UTC)
    if body.excused:
        day = await session.scalar(
            select(DutyDay).where(DutyDay.member_id == alert.member_id, DutyDay.date == alert.date)
        )
        if day is not None:
            correction = await correct_day(
                session,
                day,
                DayStatus.LEAVE,
                reason=f"告警已准假：{body.reason}",
                actor=principal.subject,
                actor_name=principal.name,
            )
            _audit_correction(
                request, session, principal, day, correction.from_status, correction.reason
            )
    _audit(
        request,
        session,
        principal,
        "duty.alert_decided",
        "duty_alert",
        alert.id,
        alert.org_path,
        {"excused": body.excused, "reason": body.reason},
    )
    await session.commit()
    member = await session.get(Member, alert.member_id)
    return json_response({"alert": alert_json(alert, member.name if member else "")})


# -- summaries -------------------------------------------------------------------------
async def _summary(request: web.Request, session: AsyncSession, principal: Principal):
    org = await scoped_org(session, principal, query_int(request, "org_id"), C.DUTY_READ)
    period = request.query.get("period", "month")
    if period not in ("week", "month", "quarter"):
        raise ApiError(
            422, "validation_failed", "period is week, month or quarter", {"period": period}
        )
    starts, ends = period_bounds(period, _date(request))  # type: ignore[arg-type]
    return await summarise(session, org, starts, ends)


@authed
async def get_summary(request: web.Request, session: AsyncSession, principal: Principal):
    summary = await _summary(request, session, principal)
    return json_response({"summary": summary.to_json()})


@authed
async def get_summary_xlsx(request: web.Request, session: AsyncSession, principal: Principal):
    summary = await _summary(request, session, principal)
    body = await asyncio.to_thread(summary_workbook, summary.to_json())
    name = f"{summary.org_name}坐班考勤{summary.starts:%Y%m%d}-{summary.ends:%Y%m%d}.xlsx"
    return _xlsx_response(body, name, f"duty-{summary.starts:%Y%m%d}.xlsx")


@authed
async def list_reports(request: web.Request, session: AsyncSession, principal: Principal):
    """The closed periods' reports the caller's unit was sent (its own and those below)."""
    check(principal, C.DUTY_READ, principal.org_path, "reports")
    reports = await session.scalars(
        select(DutyReport)
        .where(DutyReport.org_path.like(f"{principal.org_path}%"))
        .order_by(DutyReport.starts.desc(), DutyReport.id)
        .limit(200)
    )
    return json_response(
        {
            "reports": [
                {
                    "id": r.id,
                    "org": r.summary["org"],
                    "period": r.period,
                    "starts": r.starts,
                    "ends": r.ends,
                    "total": r.summary["total"],
                    "created_at": r.created_at,
                }
                for r in reports
            ]
        }
    )


@authed
async def get_report_xlsx(request: web.Request, session: AsyncSession, principal: Principal):
    report = await scoped_object(
        session, principal, DutyReport, int(request.match_info["report_id"]), C.DUTY_READ, "report"
    )
    body = await asyncio.to_thread(summary_workbook, report.summary)
    name = (
        f"{report.summary['org']['name']}坐班考勤{report.starts:%Y%m%d}-{report.ends:%Y%m%d}.xlsx"
    )
    return _xlsx_response(body, name, f"duty-report-{report.id}.xlsx")


# -- rosters, leave and the calendar as spreadsheets ------------------------------------------
async def _sheet_of(request: web.Request, layout: SheetLayout) -> Sheet:
    data, filename = await _read_upload(request)
    try:
        return await asyncio.to_thread(read_sheet, data, filename, layout)
    except ImportFileError as error:
        status = 413 if error.too_big else 422
        code = "unsupported_file" if error.unsupported else "bad_file"
        raise ApiError(status, "file_too_large" if error.too_big else code, error.message) from None


def _rejected(error: SheetRejected) -> ApiError:
    return ApiError(422, "import_rejected", "表中有不能导入的行，整个文件未导入", error.fields())


@authed
async def import_roster_sheet(request: web.Request, session: AsyncSession, principal: Principal):
    """An XLSX or CSV of cadres (the export's columns): all rows, or none."""
    org = await scoped_org(session, principal, query_int(request, "org_id"), C.DUTY_WRITE)
    sheet = await _sheet_of(request, sheets.ROSTER)
    try:
        cadres = await sheets.import_roster(
            session, org, sheet, lambda path: principal.can(C.DUTY_WRITE, path)
        )
    except SheetRejected as error:
        await session.rollback()
        raise _rejected(error) from None
    villages = sorted({c.village_id for c in cadres})
    _audit(
        request, session, principal, "duty.roster_imported", "org_unit", org.id, org.path,
        {"cadres": len(cadres), "villages": len(villages)},
    )  # fmt: skip
    await session.commit()
    duty = request.app.get(DUTY_RECOGNITION_KEY)
    if duty is not None:
        for village_id in villages:
            await duty.rosters_changed(village_id)
    _poke(request)
    return json_response({"imported": len(cadres), "villages": len(villages)})


@authed
async def import_leave_sheet(request: web.Request, session: AsyncSession, principal: Principal):
    org = await scoped_org(session, principal, query_int(request, "org_id"), C.DUTY_WRITE)
    sheet = await _sheet_of(request, sheets.LEAVE)
    try:
        leaves = await sheets.import_leave(
            session, org, request.app[DUTY_CLOCK_KEY], sheet, actor=principal.name
        )
    except SheetRejected as error:
        await session.rollback()
        raise _rejected(error) from None
    _audit(
        request, session, principal, "duty.leave_imported", "org_unit", org.id, org.path,
        {"leaves": len(leaves)},
    )  # fmt: skip
    await session.commit()
    _poke(request)
    return json_response({"imported": len(leaves)})


async def _county(session: AsyncSession, principal: Principal, capability: Capability) -> OrgUnit:
    """The county whose calendar it is: written by its own staff, read by everyone below."""
    county = await session.scalar(select(OrgUnit).where(OrgUnit.kind == OrgKind.COUNTY))
    if county is None:
        raise not_found("county")
    check(
        principal,
        capability,
        county.path if capability is C.DUTY_WRITE else principal.org_path,
        "calendar",
    )
    return county


@authed
async def import_calendar_sheet(request: web.Request, session: AsyncSession, principal: Principal):
    """The county's holidays and make-up working days (duty:write over the county)."""
    county = await _county(session, principal, C.DUTY_WRITE)
    sheet = await _sheet_of(request, sheets.CALENDAR)
    try:
        count = await sheets.import_calendar(session, county, sheet)
    except SheetRejected as error:
        await session.rollback()
        raise _rejected(error) from None
    _audit(
        request, session, principal, "duty.calendar_imported", "org_unit", county.id,
        county.path, {"dates": count},
    )  # fmt: skip
    await session.commit()
    _poke(request)
    return json_response({"imported": count})


@authed
async def export_roster_sheet(request: web.Request, session: AsyncSession, principal: Principal):
    org = await scoped_org(session, principal, query_int(request, "org_id"), C.DUTY_READ)
    body = await sheets.roster_workbook(session, org)
    return _xlsx_response(body, f"{org.name}值班名单.xlsx", "duty-roster.xlsx")


@authed
async def export_leave_sheet(request: web.Request, session: AsyncSession, principal: Principal):
    org = await scoped_org(session, principal, query_int(request, "org_id"), C.DUTY_READ)
    body = await sheets.leave_workbook(session, org, request.app[DUTY_CLOCK_KEY])
    return _xlsx_response(body, f"{org.name}请假记录.xlsx", "duty-leave.xlsx")


@authed
async def export_calendar_sheet(request: web.Request, session: AsyncSession, principal: Principal):
    county = await _county(session, principal, C.DUTY_READ)
    body = await sheets.calendar_workbook(session, county)
    return _xlsx_response(body, f"{county.name}节假日安排.xlsx", "duty-calendar.xlsx")


# -- live events -----------------------------------------------------------------------------
async def duty_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: each duty alert (`duty.late`, `duty.absent`) and report
    (`duty.report`) inside the caller's part of the tree, as it is raised (the phone page
    and the console listen; no reload)."""
    try:
        principal = await verify_streaming(request, C.DUTY_READ)
    except ApiError as error:
        return error_response(error)
    events = request.app[LIVE_EVENTS_KEY]
    queue = events.subscribe(principal.org_path)
    try:
        return await serve_events(request, C.DUTY_READ, queue, lambda event: event["event"])
    finally:
        events.unsubscribe(queue)


def add_duty_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/duty/cameras", list_cameras)
    r.add_post("/api/duty/cameras", post_camera)
    r.add_patch("/api/duty/cameras/{camera_id:\\d+}", patch_camera)
    r.add_delete("/api/duty/cameras/{camera_id:\\d+}", delete_camera)
    r.add_get("/api/duty/roster", list_roster)
    r.add_post("/api/duty/roster", post_cadre)
    r.add_delete("/api/duty/roster/{member_id:\\d+}", delete_cadre)
    r.add_put("/api/duty/hours", put_hours)
    r.add_post("/api/duty/leave", post_leave)
    r.add_get("/api/duty/days", list_days)
    r.add_get("/api/duty/days/{day_id:\\d+}/sightings", list_day_sightings)
    r.add_get(
        "/api/duty/sightings/{sighting_id:\\d+}/{picture:(in|out)-(face|scene)}.jpg",
        get_sighting_picture,
    )
    r.add_post("/api/duty/days/{day_id:\\d+}/correction", post_correction)
    r.add_get("/api/duty/alerts", list_alerts)
    r.add_post("/api/duty/alerts/{alert_id:\\d+}/explanation", post_explanation)
    r.add_post("/api/duty/alerts/{alert_id:\\d+}/decision", post_decision)
    r.add_get("/api/duty/summary", get_summary)
    r.add_get("/api/duty/summary.xlsx", get_summary_xlsx)
    r.add_get("/api/duty/reports", list_reports)
    r.add_get("/api/duty/reports/{report_id:\\d+}.xlsx", get_report_xlsx)
    r.add_get("/api/duty/events", duty_events)
    r.add_get("/api/duty/roster.xlsx", export_roster_sheet)
    r.add_post("/api/duty/roster/import", import_roster_sheet)
    r.add_get("/api/duty/leave.xlsx", export_leave_sheet)
    r.add_post("/api/duty/leave/import", import_leave_sheet)
    r.add_get("/api/duty/calendar.xlsx", export_calendar_sheet)
    r.add_post("/api/duty/calendar/import", import_calendar_sheet)
