"""A meeting's sign-in sheet: who is expected, who signed in (by face or by hand), the
evidence, unknown faces and scene snapshots; staff confirm, reject or add sign-ins.

Who sees a sheet: a caller with `meetings:read` whose subtree holds the meeting, or whose
unit takes part in it (a village in a county-wide meeting): each sees the members of its
own subtree only. Photos are shown to `faces:read` callers only; every change is audited.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal

from aiohttp import web
from pydantic import BaseModel
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.access import Capability, Principal
from db.models import (
    Attendance,
    AttendanceStatus,
    Meeting,
    MeetingSnapshot,
    Member,
    OrgKind,
    OrgUnit,
    RoomEvent,
    SignIn,
    SignInMethod,
    SignInReview,
)
from db.tree import meeting_member_paths
from signaling.meetings import meeting_room_id

from .common import (
    ApiError,
    audit_object,
    authed,
    check,
    json_response,
    not_found,
    parse_body,
)
from .faces import evidence_response

MAX_SHEET_MEMBERS = 2000


async def sheet_meeting(
    session: AsyncSession,
    principal: Principal,
    meeting_id: int,
    capability: Capability = Capability.MEETINGS_READ,
) -> Meeting:
    """The meeting, if the caller's role has `capability` and it may see (part of) the
    meeting's sheet."""
    for needed in {Capability.MEETINGS_READ, capability}:
        if not principal.allows(needed):
            raise ApiError(403, "forbidden", f"your role ({principal.role}) may not {needed}")
    meeting = await session.get(Meeting, meeting_id)
    if meeting is None:
        raise not_found("meeting")
    inside = principal.covers(meeting.org_path)
    taking_part = principal.org_path.startswith(meeting.org_path)
    if not (inside or taking_part):
        raise not_found("meeting")
    return meeting


async def _places(session: AsyncSession, members) -> dict[int, dict[str, str]]:
    """Each member's branch (党支部, or 党小组) and venue: the village (or community) it
    meets in, or, above the villages, its branch's own name."""
    paths = {m.org_path for m in members}
    units: dict[str, OrgUnit] = {}
    for path in paths:
        prefixes = ["/".join(path.split("/")[:i]) + "/" for i in range(2, path.count("/") + 1)]
        for unit in await session.scalars(select(OrgUnit).where(OrgUnit.path.in_(prefixes))):
            units[unit.path] = unit
    places = {}
    for member in members:
        chain = [units[p] for p in sorted(units, key=len) if member.org_path.startswith(p)]
        if not chain:
            places[member.id] = {"branch": "", "group": "", "venue": ""}
            continue
        own = chain[-1]
        branch = next((u for u in reversed(chain) if u.kind == OrgKind.BRANCH), own)
        village = next((u for u in chain if u.kind == OrgKind.VILLAGE), branch)
        places[member.id] = {
            "branch": branch.name,
            "group": own.name if own.kind == OrgKind.GROUP else "",
            "venue": village.name,
        }
    return places


async def expected_paths(session: AsyncSession, principal: Principal, meeting: Meeting):
    """Where the meeting's expected members are (its sites, else its organiser), narrowed
    to the caller's subtree."""
    narrowed = []
    for path in await meeting_member_paths(session, meeting):
        if path.startswith(principal.org_path):
            narrowed.append(path)
        elif principal.org_path.startswith(path):
            narrowed.append(principal.org_path)
    return list(dict.fromkeys(narrowed))


def signin_dict(signin: SignIn, with_photos: bool) -> dict:
    def url(attribute: str, name: str) -> str | None:
        if not with_photos or not getattr(signin, attribute):
            return None
        return f"/api/sign-ins/{signin.id}/{name}.jpg"

    return {
        "id": signin.id,
        "method": signin.method,
        "at": signin.at,
        "similarity": signin.similarity,
        "venue": signin.venue_name,
        "review": signin.review,
        "reviewed_by": signin.reviewed_by,
        "reviewed_at": signin.reviewed_at,
        "face_url": url("face_photo", "face"),
        "scene_url": url("scene_photo", "scene"),
        # a face sign-in whose pictures the retention period has deleted
        "evidence_expired": signin.method == SignInMethod.FACE
        and not signin.face_photo
        and not signin.scene_photo,
    }


def snapshot_dict(snapshot: MeetingSnapshot, names: dict[int, str]) -> dict:
    return {
        "id": snapshot.id,
        "kind": snapshot.kind,
        "at": snapshot.at,
        "venue": snapshot.venue_name,
        "similarity": snapshot.similarity,
        "closest_member": names.get(snapshot.best_member_id or -1),
        "scene_url": f"/api/snapshots/{snapshot.id}/scene.jpg",
        "face_url": f"/api/snapshots/{snapshot.id}/face.jpg" if snapshot.face_photo else None,
    }


@authed
async def get_sheet(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    meeting = await sheet_meeting(session, principal, int(request.match_info["meeting_id"]))
    paths = await expected_paths(session, principal, meeting)
    members: dict[int, Member] = {}
    if paths:  # 应到: the members of the invited venues who are not excused
        found = await session.scalars(
            select(Member)
            .where(
                or_(*(Member.org_path.like(f"{p}%") for p in paths)),
                Member.exempt_reason.is_(None),
            )
            .order_by(Member.org_path, Member.id)
            .limit(MAX_SHEET_MEMBERS)
        )
        members = {m.id: m for m in found}
    expected = len(members)
    signins = (
        await session.scalars(
            select(SignIn)
            .where(SignIn.meeting_id == meeting.id, SignIn.org_path.like(f"{principal.org_path}%"))
            .order_by(SignIn.at)
        )
    ).all()
    for signin in signins:  # signed in from around the sites (neighbours) count too
        if signin.member_id not in members:
            member = await session.get(Member, signin.member_id)
            if member is not None:
                members[member.id] = member
    by_member = {s.member_id: s for s in signins}
    with_photos = principal.allows(Capability.FACES_READ)
    places = await _places(session, members.values())
    saved = {a.member_id: a for a in await meeting.awaitable_attrs.attendance}
    rows = [
        {
            "member_id": member.id,
            "name": member.name,
            "branch_id": member.branch_id,
            **places[member.id],
            "signin": signin_dict(by_member[member.id], with_photos)
            if member.id in by_member
            else None,
            # what the saved record says (present | absent, and why), if it was saved
            "attendance": {
                "status": saved[member.id].status,
                "absence_reason": saved[member.id].absence_reason,
            }
            if member.id in saved
            else None,
        }
        for member in members.values()
    ]
    snapshots: Sequence[MeetingSnapshot] = []
    if with_photos:
        snapshots = (
            await session.scalars(
                select(MeetingSnapshot)
                .where(
                    MeetingSnapshot.meeting_id == meeting.id,
                    MeetingSnapshot.org_path.like(f"{principal.org_path}%"),
                )
                .order_by(MeetingSnapshot.at)
            )
        ).all()
    names = {m.id: m.name for m in members.values()}
    counted = [s for s in signins if s.review != SignInReview.REJECTED]
    return json_response(
        {
            "meeting_id": meeting.id,
            "topic": meeting.topic,
            "status": meeting.status,
            "expected": expected,
            "signed_in": len(counted),
            "by_face": sum(s.method == SignInMethod.FACE for s in counted),
            "members": rows,
            "unknown_faces": [snapshot_dict(s, names) for s in snapshots if s.kind != "scene"],
            "snapshots": [snapshot_dict(s, names) for s in snapshots if s.kind == "scene"],
            "can_review": principal.allows(Capability.MEETINGS_WRITE),
            "can_see_photos": with_photos,
        }
    )


class ManualSignIn(BaseModel):
    member_id: int


class Review(BaseModel):
    decision: Literal["confirm", "reject"]


async def _sheet_member(
    session: AsyncSession, principal: Principal, meeting: Meeting, member_id: int
) -> Member:
    member = await session.get(Member, member_id)
    if member is None:
        raise not_found("member")
    check(principal, Capability.MEETINGS_WRITE, member.org_path, "member")
    return member


async def _attendance(session: AsyncSession, meeting_id: int, member_id: int):
    return await session.scalar(
        select(Attendance).where(
            Attendance.meeting_id == meeting_id, Attendance.member_id == member_id
        )
    )


@authed
async def post_manual_signin(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    """Sign a member in by hand (补签): the camera missed them, or there is none."""
    meeting = await sheet_meeting(
        session, principal, int(request.match_info["meeting_id"]), Capability.MEETINGS_WRITE
    )
    body = await parse_body(request, ManualSignIn)
    member = await _sheet_member(session, principal, meeting, body.member_id)
    now = datetime.now(UTC)
    signin = await session.scalar(
        select(SignIn).where(SignIn.meeting_id == meeting.id, SignIn.member_id == member.id)
    )
    if signin is not None and signin.review != SignInReview.REJECTED:
        raise ApiError(409, "already_signed_in", f"{member.name} 已签到")
    if signin is None:
        signin = SignIn(meeting_id=meeting.id, member_id=member.id, org_path=member.org_path)
        session.add(signin)
    signin.method = SignInMethod.MANUAL
    signin.at = now
    signin.review = SignInReview.CONFIRMED
    signin.reviewed_by = principal.name
    signin.reviewed_at = now
    attendance = await _attendance(session, meeting.id, member.id)
    if attendance is None:
        session.add(
            Attendance(
                meeting_id=meeting.id,
                member_id=member.id,
                status=AttendanceStatus.PRESENT,
                method=SignInMethod.MANUAL,
                signed_in_at=now,
            )
        )
    else:
        attendance.status = AttendanceStatus.PRESENT
        attendance.absence_reason = None
        attendance.method = SignInMethod.MANUAL
        attendance.signed_in_at = now
    session.add(
        RoomEvent(
            room_id=meeting_room_id(meeting.id),
            at=now,
            kind="signin",
            participant_id=principal.subject,
            name=member.name,
            org_path=member.org_path,
            detail={"member_id": member.id, "method": "manual", "by": principal.name},
        )
    )
    await session.flush()
    audit_object(
        request,
        session,
        principal,
        "signin.added",
        "meeting",
        meeting,
        {"member_id": member.id, "member": member.name},
    )
    await session.commit()
    return json_response(signin_dict(signin, principal.allows(Capability.FACES_READ)), 201)


@authed
async def post_review(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    """Confirm a face sign-in, or reject it (not that member: it no longer counts)."""
    meeting = await sheet_meeting(
        session, principal, int(request.match_info["meeting_id"]), Capability.MEETINGS_WRITE
    )
    body = await parse_body(request, Review)
    member = await _sheet_member(session, principal, meeting, int(request.match_info["member_id"]))
    signin = await session.scalar(
        select(SignIn).where(SignIn.meeting_id == meeting.id, SignIn.member_id == member.id)
    )
    if signin is None:
        raise not_found("sign-in")
    now = datetime.now(UTC)
    signin.review = SignInReview.CONFIRMED if body.decision == "confirm" else SignInReview.REJECTED
    signin.reviewed_by = principal.name
    signin.reviewed_at = now
    if body.decision == "reject":
        attendance = await _attendance(session, meeting.id, member.id)
        # the face sign-in made this row; a secretary's own entry stays
        if attendance is not None and attendance.method == signin.method:
            await session.delete(attendance)
    audit_object(
        request,
        session,
        principal,
        f"signin.{body.decision}ed",
        "meeting",
        meeting,
        {
            "member_id": member.id,
            "member": member.name,
            "method": signin.method.value,
            "similarity": signin.similarity,
        },
    )
    await session.commit()
    return json_response(signin_dict(signin, principal.allows(Capability.FACES_READ)))


async def _evidence(request: web.Request, session: AsyncSession, principal: Principal, model):
    """A sign-in's or snapshot's picture: the sheet's rule first, then the photo's
    (faces:read over the member or the venue)."""
    found = await session.get(model, int(request.match_info["evidence_id"]))
    if found is None:
        raise not_found("photo")
    await sheet_meeting(session, principal, found.meeting_id)
    attribute = "face_photo" if request.match_info["which"] == "face" else "scene_photo"
    return await evidence_response(request, principal, found, attribute)


@authed
async def get_signin_photo(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.StreamResponse:
    return await _evidence(request, session, principal, SignIn)


@authed
async def get_snapshot_photo(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.StreamResponse:
    return await _evidence(request, session, principal, MeetingSnapshot)
