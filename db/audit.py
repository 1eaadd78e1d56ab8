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
    actor: str | None = None,
) -> None:
    """Add an entry to the session; it commits with the change it describes. Without a
    principal, `actor` names what did it (e.g. a background job)."""
    if principal is not None:
        actor = f"{principal.subject} {principal.name}"
    session.add(
        AuditEntry(
            actor=actor or "anonymous",
            actor_role=principal.role.value if principal else None,
            action=action,
            target_type=target_type,
            target_id=None if target_id is None else str(target_id),
            org_path=org_path,
            remote_addr=remote_addr,
            detail=detail,
        )
    )
