"""Reading the audit log: who did what, where and when (county admins and supervisors, each
within their own subtree).

    GET /api/audit               filtered, newest first
    GET /api/audit/export.xlsx   the same filter as an Excel file (itself audited)

Filters: `actor` (part of a name or account), `action`, `org` (a unit of the caller's
subtree: entries at it and below), `from` / `to` (days in the county's time zone), `limit`,
and `before` (an entry id: the page after the one shown).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from aiohttp import web
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from db import audit
from db.access import Capability, Principal
from db.models import AuditEntry, OrgUnit

from .common import ApiError, authed, check, json_response, query_int, scoped_org
from .members_io import CHINA_TIME, _local, _stamp, _workbook_bytes, _xlsx_response

EXPORT_LIMIT = 50_000


def _day(value: str | None, field: str) -> dt.datetime | None:
    """The start of a day in the county's time zone."""
    if not value:
        return None
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise ApiError(
            422, "validation_failed", f"{field} must be a date like 2026-12-02", {field: "a date"}
        ) from None
    # stored in UTC: the county's midnight as the database compares it
    return dt.datetime.combine(day, dt.time(), tzinfo=CHINA_TIME).astimezone(dt.UTC)


async def _filtered(
    request: web.Request, session: AsyncSession, principal: Principal
) -> tuple[Select[Any], OrgUnit]:
    check(principal, Capability.AUDIT_READ, principal.org_path, "audit log")
    org = await scoped_org(session, principal, query_int(request, "org"), Capability.AUDIT_READ)
    query = select(AuditEntry).where(AuditEntry.org_path.like(f"{org.path}%"))
    if action := request.query.get("action", "").strip():
        query = query.where(AuditEntry.action == action)
    if actor := request.query.get("actor", "").strip():
        query = query.where(AuditEntry.actor.like(f"%{actor}%"))
    if (since := _day(request.query.get("from"), "from")) is not None:
        query = query.where(AuditEntry.at >= since)
    if (until := _day(request.query.get("to"), "to")) is not None:
        query = query.where(AuditEntry.at < until + dt.timedelta(days=1))
    if (before := query_int(request, "before")) is not None:
        query = query.where(AuditEntry.id < before)
    return query.order_by(AuditEntry.id.desc()), org


async def _unit_names(session: AsyncSession, entries: list[AuditEntry]) -> dict[str, str]:
    paths = {e.org_path for e in entries if e.org_path}
    if not paths:
        return {}
    rows = await session.execute(select(OrgUnit.path, OrgUnit.name).where(OrgUnit.path.in_(paths)))
    return {path: name for path, name in rows.all()}


def _entry_json(entry: AuditEntry, units: dict[str, str]) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": entry.at,
        "actor": entry.actor,
        "actor_role": entry.actor_role,
        "action": entry.action,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "org_path": entry.org_path,
        "org_name": units.get(entry.org_path or ""),
        "remote_addr": entry.remote_addr,
        "detail": entry.detail,
    }


@authed
async def list_audit(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    query, _ = await _filtered(request, session, principal)
    limit = query_int(request, "limit", 100, 1, 1000)
    entries = list((await session.scalars(query.limit(limit))).all())
    units = await _unit_names(session, entries)
    return json_response({"entries": [_entry_json(e, units) for e in entries]})


HEADERS = ("时间", "操作人", "角色", "操作", "对象", "单位", "来源地址", "详情")
WIDTHS = (20, 24, 14, 22, 18, 20, 16, 60)


@authed
async def export_audit(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    query, org = await _filtered(request, session, principal)
    entries = list((await session.scalars(query.limit(EXPORT_LIMIT))).all())
    units = await _unit_names(session, entries)
    rows = [
        [
            _local(e.at),
            e.actor,
            e.actor_role,
            e.action,
            f"{e.target_type or ''} {e.target_id or ''}".strip(),
            units.get(e.org_path or "", e.org_path),
            e.remote_addr,
            ", ".join(f"{k}={v}" for k, v in (e.detail or {}).items()),
        ]
        for e in entries
    ]
    title = f"{org.name} 操作日志（导出于 {_stamp()}）"
    body = await asyncio.to_thread(_workbook_bytes, "操作日志", title, HEADERS, WIDTHS, rows)
    audit.record(
        session,
        principal,
        "audit_exported",
        target_type="org",
        target_id=org.id,
        org_path=org.path,
        remote_addr=request.remote,
        detail={"rows": len(rows), **{k: v for k, v in request.query.items() if k != "limit"}},
    )
    await session.commit()
    return _xlsx_response(body, f"{org.name}操作日志.xlsx", "audit.xlsx")
