"""Meetings and the 三会一课 record: /api/meetings."""

from __future__ import annotations

import datetime as dt

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, Field, ValidationInfo, field_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db import audit
from db.access import Capability, Principal
from db.models import (
    Attendance,
    AttendanceStatus,
    Meeting,
    MeetingGuest,
    MeetingSite,
    MeetingStatus,
    MeetingType,
    Member,
    OrgUnit,
    SignIn,
    SignInReview,
)
from db.tree import count_expected_members, meeting_member_paths

from .common import (
    ApiError,
    authed,
    json_response,
    parse_body,
    query_int,
    scoped_object,
    scoped_org,
)


def meeting_json(meeting: Meeting, full: bool = False) -> dict:
    data = {
        "id": meeting.id,
        "type": meeting.type,
        "topic": meeting.topic,
        "organiser_id": meeting.organiser_id,
        "status": meeting.status,
        "main_venue": meeting.main_venue,
        "scheduled_start": meeting.scheduled_start,
        "scheduled_end": meeting.scheduled_end,
        "actual_start": meeting.actual_start,
        "actual_end": meeting.actual_end,
        "venue": meeting.venue,
        "expected_count": meeting.expected_count,
        "actual_count": meeting.actual_count,
        "absent_count": meeting.absent_count,
    }
    if full:
        data.update(
            {
                "host": meeting.host,
                "recorder": meeting.recorder,
                "content": meeting.content,
                "resolutions": meeting.resolutions,
                "site_ids": [s.org_id for s in meeting.sites],
                "attendance": [
                    {
                        "member_id": a.member_id,
                        "status": a.status,
                        "absence_reason": a.absence_reason,
                        "method": a.method,
                        "signed_in_at": a.signed_in_at,
                    }
                    for a in meeting.attendance
                ],
                "guests": [{"name": g.name, "note": g.note} for g in meeting.guests],
                "attachments": [{"kind": a.kind, "path": a.path} for a in meeting.attachments],
            }
        )
    return data


class AttendanceItem(BaseModel):
    member_id: int
    status: AttendanceStatus
    absence_reason: str | None = Field(default=None, max_length=200)


class GuestItem(BaseModel):
    name: str = Field(min_length=1, max_length=50)
    note: str | None = Field(default=None, max_length=200)


class MeetingFields(BaseModel):
    # 应到人数: by default the organiser's members who are not excused (see ExemptReason)
    expected_count: int | None = Field(default=None, ge=0, le=100_000)
    host: str | None = Field(default=None, max_length=50)
    recorder: str | None = Field(default=None, max_length=50)
    venue: str | None = Field(default=None, max_length=200)
    scheduled_start: AwareDatetime | None = None
    scheduled_end: AwareDatetime | None = None
    actual_start: AwareDatetime | None = None
    actual_end: AwareDatetime | None = None
    content: str | None = Field(default=None, max_length=20000)
    resolutions: str | None = Field(default=None, max_length=20000)
    site_ids: list[int] | None = None
    attendance: list[AttendanceItem] | None = None
    guests: list[GuestItem] | None = None

    @field_validator("scheduled_end", "actual_end")
    @classmethod
    def end_after_start(cls, end: dt.datetime | None, info: ValidationInfo) -> dt.datetime | None:
        assert info.field_name is not None  # a field validator's
        start = info.data.get(info.field_name.replace("_end", "_start"))
        if start is not None and end is not None and end < start:
            raise ValueError("is before the start")
        return end


class MeetingBody(MeetingFields):
    type: MeetingType
    topic: str = Field(min_length=1, max_length=200)
    organiser_id: int


class MeetingPatch(MeetingFields):
    type: MeetingType | None = None
    topic: str | None = Field(default=None, min_length=1, max_length=200)
    status: MeetingStatus | None = None


async def _apply(
    session: AsyncSession, principal: Principal, meeting: Meeting, fields: dict
) -> None:
    site_ids = fields.pop("site_ids", None)
    attendance = fields.pop("attendance", None)
    guests = fields.pop("guests", None)
    for name, value in fields.items():
        setattr(meeting, name, value)
    # every lookup first: a query may autoflush, and no IO may run between loading a
    # collection and replacing it
    sites: list[MeetingSite] = []
    for org_id in dict.fromkeys(site_ids or []):
        org = await session.get(OrgUnit, org_id)
        if org is None or not principal.covers(org.path):
            raise ApiError(
                422,
                "validation_failed",
                "unknown site",
                {"site_ids": f"{org_id} is not in your part of the tree"},
            )
        sites.append(MeetingSite(org_id=org.id))
    rows: list[Attendance] = []
    seen_members = [item["member_id"] for item in attendance or []]
    if len(seen_members) != len(set(seen_members)):
        raise ApiError(
            422,
            "validation_failed",
            "a member is listed twice",
            {"attendance": "each member at most once"},
        )
    for item in attendance or []:
        member = await session.get(Member, item["member_id"])
        if member is None or not principal.covers(member.org_path):
            raise ApiError(
                422,
                "validation_failed",
                "unknown member",
                {"attendance": f"member {item['member_id']} is not yours"},
            )
        rows.append(
            Attendance(
                member_id=member.id,
                status=item["status"],
                absence_reason=item.get("absence_reason"),
            )
        )
    if rows:
        # a member signed in (by face or by hand) keeps how and when in the saved record
        signed = {
            s.member_id: s
            for s in await session.scalars(
                select(SignIn).where(
                    SignIn.meeting_id == meeting.id, SignIn.review != SignInReview.REJECTED
                )
            )
        }
        for row in rows:
            signin = signed.get(row.member_id)
            if signin is not None and row.status == AttendanceStatus.PRESENT:
                row.method, row.signed_in_at = signin.method, signin.at
    await session.flush()
    for collection in ("sites", "attendance", "guests"):
        await getattr(meeting.awaitable_attrs, collection)
    if site_ids is not None:  # kept sites keep their rows (the same constraint)
        existing_sites = {site.org_id: site for site in meeting.sites}
        meeting.sites = [existing_sites.get(site.org_id, site) for site in sites]
    if attendance is not None:
        # a member's row is changed in place: replacing it would insert the new row before
        # deleting the old one, against the one-row-per-member constraint (a member signed
        # in by hand already has a row)
        existing = {row.member_id: row for row in meeting.attendance}
        kept = []
        for row in rows:
            old = existing.get(row.member_id)
            if old is None:
                kept.append(row)
                continue
            old.status, old.absence_reason = row.status, row.absence_reason
            old.method, old.signed_in_at = row.method, row.signed_in_at
            kept.append(old)
        meeting.attendance = kept
        meeting.actual_count = sum(r.status == AttendanceStatus.PRESENT for r in rows)
        meeting.absent_count = sum(r.status == AttendanceStatus.ABSENT for r in rows)
    if guests is not None:
        meeting.guests = [MeetingGuest(**g) for g in guests]


@authed
async def list_meetings(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    org = await scoped_org(session, principal, query_int(request, "org"), Capability.MEETINGS_READ)
    limit = query_int(request, "limit", 50, 1, 500)
    query = select(Meeting).where(Meeting.org_path.like(f"{org.path}%"))
    status = request.query.get("status")
    if status:
        try:
            query = query.where(Meeting.status == MeetingStatus(status))
        except ValueError:
            raise ApiError(
                422,
                "validation_failed",
                "unknown status",
                {"status": f"one of {', '.join(MeetingStatus)}"},
            ) from None
    rows = await session.execute(query.order_by(Meeting.id.desc()).limit(limit))
    return json_response({"meetings": [meeting_json(m) for m in rows.scalars()]})


@authed
async def get_meeting(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    meeting = await scoped_object(
        session,
        principal,
        Meeting,
        int(request.match_info["meeting_id"]),
        Capability.MEETINGS_READ,
        "meeting",
    )
    return json_response(meeting_json(meeting, full=True))


@authed
async def post_meeting(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    body = await parse_body(request, MeetingBody)
    organiser = await scoped_org(session, principal, body.organiser_id, Capability.MEETINGS_WRITE)
    meeting = Meeting(
        type=body.type,
        topic=body.topic,
        organiser_id=organiser.id,
        org_path=organiser.path,
        created_by=principal.account_id,
    )
    session.add(meeting)
    await _apply(
        session,
        principal,
        meeting,
        body.model_dump(exclude={"type", "topic", "organiser_id"}, exclude_unset=True),
    )
    if body.expected_count is None:  # 应到: the invited venues' members, not the organiser's
        meeting.expected_count = await count_expected_members(
            session, await meeting_member_paths(session, meeting)
        )
    await session.flush()
    audit.record(
        session,
        principal,
        "meeting_created",
        target_type="meeting",
        target_id=meeting.id,
        org_path=organiser.path,
        remote_addr=request.remote,
        detail={"topic": meeting.topic, "type": meeting.type.value},
    )
    await session.commit()
    await session.refresh(meeting)
    return json_response(meeting_json(meeting, full=True), status=201)


@authed
async def patch_meeting(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    body = await parse_body(request, MeetingPatch)
    meeting = await scoped_object(
        session,
        principal,
        Meeting,
        int(request.match_info["meeting_id"]),
        Capability.MEETINGS_WRITE,
        "meeting",
    )
    changes = body.model_dump(exclude_unset=True)
    await _apply(session, principal, meeting, dict(changes))
    if "site_ids" in changes and "expected_count" not in changes:
        meeting.expected_count = await count_expected_members(
            session, await meeting_member_paths(session, meeting)
        )
    audit.record(
        session,
        principal,
        "meeting_changed",
        target_type="meeting",
        target_id=meeting.id,
        org_path=meeting.org_path,
        remote_addr=request.remote,
        detail={"fields": sorted(changes)},
    )
    await session.commit()
    await session.refresh(meeting)
    return json_response(meeting_json(meeting, full=True))
