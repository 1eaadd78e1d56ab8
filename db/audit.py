"""Writing the audit log: who did what to what, when, from where."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from .access import Principal
from .models import AuditEntry


def record(
    session: AsyncSession,
    principal: Principal | None,
    action: str,
    *,
    target_type: str | None = None,
    target_id: object = None,
    org_path: str | None = None,
    remote_addr: str | None = None,
    detail: dict | None = None,
) -> None:
    """Add an entry to the session; it commits with the change it describes."""
    session.add(
        AuditEntry(
            actor=f"{principal.subject} {principal.name}" if principal else "anonymous",
            actor_role=principal.role.value if principal else None,
            action=action,
            target_type=target_type,
            target_id=None if target_id is None else str(target_id),
            org_path=org_path,
            remote_addr=remote_addr,
            detail=detail,
        )
    )
