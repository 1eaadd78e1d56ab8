"""Party members: /api/members (list and search within a subtree, create, read, change, delete)."""

from __future__ import annotations

import datetime as dt

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError, field_validator
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db import audit
from db.access import Capability, Principal
from db.models import ExemptReason, Gender, Member, MemberStatus, OrgKind, OrgUnit, Post

from .common import (
    ApiError,
    authed,
    json_response,
    parse_body,
    query_int,
    scoped_object,
    scoped_org,
)

BRANCH_KINDS = (OrgKind.BRANCH, OrgKind.GROUP)


def member_json(member: Member) -> dict:
    return {
        "id": member.id,
        "branch_id": member.branch_id,
        "name": member.name,
        "gender": member.gender,
        "birth_date": member.birth_date,
        "education": member.education,
        "joined_date": member.joined_date,
        "status": member.status,
        "exempt_reason": member.exempt_reason,
        "exempt_note": member.exempt_note,
        "posts": member.posts,
        "phone": member.phone,
    }


class MemberBody(BaseModel):
    branch_id: int
    name: str = Field(min_length=1, max_length=50)
    gender: Gender
    birth_date: dt.date | None = None
    education: str | None = Field(default=None, max_length=32)
    joined_date: dt.date | None = None
    status: MemberStatus = MemberStatus.FORMAL
    exempt_reason: ExemptReason | None = None
    exempt_note: str | None = Field(default=None, max_length=200)
    posts: list[Post] = Field(default_factory=list)
    phone: str | None = Field(default=None, pattern=r"^[0-9+\- ]{5,20}$")

    @field_validator("name")
    @classmethod
    def name_is_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()

    @field_validator("birth_date", "joined_date")
    @classmethod
    def not_in_the_future(cls, value: dt.date | None) -> dt.date | None:
        if value is not None and value > dt.date.today():
            raise ValueError("must not be in the future")
        return value


class MemberPatch(BaseModel):
    branch_id: int | None = None
    name: str | None = Field(default=None, min_length=1, max_length=50)
    gender: Gender | None = None
    birth_date: dt.date | None = None
    education: str | None = Field(default=None, max_length=32)
    joined_date: dt.date | None = None
    status: MemberStatus | None = None
    exempt_reason: ExemptReason | None = None
    exempt_note: str | None = Field(default=None, max_length=200)
    posts: list[Post] | None = None
    phone: str | None = Field(default=None, pattern=r"^[0-9+\- ]{5,20}$")


async def branch_for(session: AsyncSession, principal: Principal, branch_id: int) -> OrgUnit:
    branch = await scoped_org(session, principal, branch_id, Capability.MEMBERS_WRITE)
    if branch.kind not in BRANCH_KINDS:
        raise ApiError(
            422,
            "validation_failed",
            "members belong to a party branch or group",
            {"branch_id": f"is a {branch.kind}, not a branch or group"},
        )
    return branch


@authed
async def list_members(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    org = await scoped_org(session, principal, query_int(request, "org"), Capability.MEMBERS_READ)
    limit = query_int(request, "limit", 50, 1, 500)
    offset = query_int(request, "offset", 0)
    query = select(Member).where(Member.org_path.like(f"{org.path}%"))
    text = request.query.get("q", "").strip()
    if text:
        query = query.where(Member.name.contains(text, autoescape=True))
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    rows = await session.execute(
        query.order_by(Member.org_path, Member.name, Member.id).limit(limit).offset(offset)
    )
    return json_response(
        {
            "total": int(total or 0),
            "limit": limit,
            "offset": offset,
            "members": [member_json(m) for m in rows.scalars()],
        }
    )


@authed
async def get_member(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    member = await scoped_object(
        session,
        principal,
        Member,
        int(request.match_info["member_id"]),
        Capability.MEMBERS_READ,
        "member",
    )
    return json_response(member_json(member))


@authed
async def post_member(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    body = await parse_body(request, MemberBody)
    branch = await branch_for(session, principal, body.branch_id)
    member = Member(
        **body.model_dump(exclude={"posts"}),
        posts=[p.value for p in body.posts],
        org_path=branch.path,
    )
    session.add(member)
    await session.flush()
    audit.record(
        session,
        principal,
        "member_created",
        target_type="member",
        target_id=member.id,
        org_path=branch.path,
        remote_addr=request.remote,
        detail={"name": member.name},
    )
    await session.commit()
    return json_response(member_json(member), status=201)


@authed
async def patch_member(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    patch = await parse_body(request, MemberPatch)
    member = await scoped_object(
        session,
        principal,
        Member,
        int(request.match_info["member_id"]),
        Capability.MEMBERS_WRITE,
        "member",
    )
    changes = patch.model_dump(exclude_unset=True)
    # the changed member must pass the same rules as a new one
    merged = {**member_json(member), **changes}
    try:
        body = MemberBody.model_validate({k: v for k, v in merged.items() if k != "id"})
    except ValidationError as exc:
        fields = {".".join(str(p) for p in e["loc"]): e["msg"] for e in exc.errors()}
        raise ApiError(
            422, "validation_failed", "invalid fields: " + ", ".join(fields), fields
        ) from exc
    if "branch_id" in changes:
        branch = await branch_for(session, principal, body.branch_id)
        member.org_path = branch.path
    for field in changes:
        value = getattr(body, field)
        setattr(member, field, [p.value for p in value] if field == "posts" else value)
    audit.record(
        session,
        principal,
        "member_changed",
        target_type="member",
        target_id=member.id,
        org_path=member.org_path,
        remote_addr=request.remote,
        detail={"fields": sorted(changes)},
    )
    await session.commit()
    return json_response(member_json(member))


@authed
async def delete_member(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    member = await scoped_object(
        session,
        principal,
        Member,
        int(request.match_info["member_id"]),
        Capability.MEMBERS_WRITE,
        "member",
    )
    audit.record(
        session,
        principal,
        "member_deleted",
        target_type="member",
        target_id=member.id,
        org_path=member.org_path,
        remote_addr=request.remote,
        detail={"name": member.name},
    )
    await session.delete(member)
    await session.commit()
    return json_response({"ok": True})
