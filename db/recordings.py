"""The recordings index: one row per venue recording, one per finished segment file.

A segment is indexed when its file is complete, so after a crash the index holds exactly
the segments that play; `recover_after_crash` closes the recordings the crash left open.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from .models import (
    OrgUnit,
    Recording,
    RecordingSegment,
    RecordingStatus,
    StaffAccount,
    Terminal,
    utcnow,
)
from .participants import ParticipantId
from .tree import find_by_code, root_path


async def venue_org_path(
    session: AsyncSession, participant_id: str, room_org_code: str | None
) -> str | None:
    """Where in the org tree a venue's recording belongs: its terminal's or account's unit,
    else the room's organiser (so the organiser's admins can always play it back), else
    the county (never nowhere: a recording no one may open could never be checked)."""
    who = ParticipantId.parse(participant_id)
    if who.number is not None:
        if who.terminal_id is not None:
            terminal = await session.get(Terminal, who.terminal_id)
            if terminal is not None and terminal.org_path:
                return terminal.org_path
        elif who.account_id is not None:
            account = await session.get(StaffAccount, who.account_id)
            if account is not None:
                org = await session.get(OrgUnit, account.org_id)
                if org is not None:
                    return org.path
    if room_org_code:
        org = await find_by_code(session, room_org_code)
        if org is not None:
            return org.path
    return await root_path(session)


async def add_segment(
    session: AsyncSession,
    recording: Recording,
    *,
    seq: int,
    path: str,
    started_at: dt.datetime,
    ended_at: dt.datetime,
    duration_s: float,
    size: int,
) -> RecordingSegment:
    segment = RecordingSegment(
        recording_id=recording.id,
        seq=seq,
        path=path,
        started_at=started_at,
        ended_at=ended_at,
        duration_s=duration_s,
        bytes=size,
    )
    session.add(segment)
    recording.bytes += size
    recording.ended_at = ended_at
    return segment


async def total_bytes(session: AsyncSession) -> int:
    total = await session.scalar(select(func.coalesce(func.sum(RecordingSegment.bytes), 0)))
    assert total is not None  # coalesce(..., 0)
    return int(total)


async def recover_after_crash(session: AsyncSession, root: Path) -> dict[str, int]:
    """Close recordings left open by a crash; drop index rows whose files are gone."""
    open_rows = (
        (
            await session.execute(
                select(Recording).where(Recording.status == RecordingStatus.RECORDING)
            )
        )
        .scalars()
        .all()
    )
    closed = dropped = 0
    for recording in open_rows:
        kept = []
        for segment in list(recording.segments):
            if (root / segment.path).is_file():
                kept.append(segment)
            else:
                recording.segments.remove(segment)
                recording.bytes -= segment.bytes
                dropped += 1
        recording.status = RecordingStatus.DONE if kept else RecordingStatus.FAILED
        recording.ended_at = kept[-1].ended_at if kept else recording.started_at
        closed += 1
    return {"closed": closed, "segments_dropped": dropped}


async def expired(session: AsyncSession, retention_days: int) -> list[Recording]:
    cutoff = utcnow() - dt.timedelta(days=retention_days)
    rows = await session.execute(
        select(Recording).where(
            Recording.status != RecordingStatus.RECORDING, Recording.started_at < cutoff
        )
    )
    return list(rows.scalars())
