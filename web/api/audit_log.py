"""Reading the audit log: /api/audit (county admins and supervisors, within their subtree)."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.access import Capability, Principal
from db.models import AuditEntry

from .common import authed, check, json_response, query_int


@authed
async def list_audit(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    check(principal, Capability.AUDIT_READ, principal.org_path, "audit log")
    limit = query_int(request, "limit", 100, 1, 1000)
    query = select(AuditEntry).where(AuditEntry.org_path.like(f"{principal.org_path}%"))
    action = request.query.get("action")
    if action:
        query = query.where(AuditEntry.action == action)
    rows = await session.execute(query.order_by(AuditEntry.id.desc()).limit(limit))
    return json_response(
        {
            "entries": [
                {
                    "id": e.id,
                    "at": e.at,
                    "actor": e.actor,
                    "actor_role": e.actor_role,
                    "action": e.action,
                    "target_type": e.target_type,
                    "target_id": e.target_id,
                    "org_path": e.org_path,
                    "remote_addr": e.remote_addr,
                    "detail": e.detail,
                }
                for e in rows.scalars()
            ]
        }
    )
