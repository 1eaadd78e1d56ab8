"""The supervision trail: each hidden view (a drop-in or a patrol tile) from start to end.

Signaling tells the app when a supervisor's hidden peer joins and leaves a room; each join
opens a `HiddenView` and an audit entry, each leave closes the view with its duration.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .models import AuditEntry, HiddenView, utcnow

MODES = ("drop_in", "patrol")


async def view_started(
    session: AsyncSession,
    *,
    supervisor: str,
    supervisor_name: str,
    room_id: str,
    room_name: str,
    org_path: str | None,
    mode: str,
) -> HiddenView:
    view = HiddenView(
        supervisor=supervisor,
        supervisor_name=supervisor_name,
        room_id=room_id,
        room_name=room_name,
        org_path=org_path,
        mode=mode if mode in MODES else "drop_in",
        started_at=utcnow(),
    )
    session.add(view)
    await session.flush()
    # in the general audit log too, the moment it starts (a crash cannot lose it)
    session.add(
        AuditEntry(
            actor=f"{supervisor} {supervisor_name}",
            actor_role="supervisor",
            action="hidden_view",
            target_type="room",
            target_id=room_id,
            org_path=org_path,
            detail={"view": view.id, "mode": view.mode, "room_name": room_name},
        )
    )
    return view


async def view_ended(session: AsyncSession, *, supervisor: str, room_id: str) -> HiddenView | None:
    """Close the supervisor's open view of the room (the latest, if several)."""
    view = await session.scalar(
        select(HiddenView)
        .where(
            HiddenView.supervisor == supervisor,
            HiddenView.room_id == room_id,
            HiddenView.ended_at.is_(None),
        )
        .order_by(HiddenView.started_at.desc(), HiddenView.id.desc())
        .limit(1)
    )
    if view is None:
        return None
    view.ended_at = utcnow()
    view.duration_s = round((view.ended_at - view.started_at).total_seconds(), 3)
    return view


async def close_dangling(session: AsyncSession) -> int:
    """At start-up: views a crash left open end now, their end unknown (duration NULL)."""
    # an UPDATE's result is a CursorResult (the one with a rowcount)
    result = cast(
        "CursorResult[Any]",
        await session.execute(
            update(HiddenView).where(HiddenView.ended_at.is_(None)).values(ended_at=utcnow())
        ),
    )
    return result.rowcount or 0
