"""Closing a period: the county's and each town's summary of a week, month or quarter,
kept as a `DutyReport` (the figures; the XLSX is made from them when downloaded) and
pushed to that unit's staff. A
period is closed once (the unique key); closing it again returns nothing new."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import DutyReport, OrgKind, OrgUnit

from .summaries import Period, summarise


async def close_period(
    session: AsyncSession, period: Period, starts: dt.date, ends: dt.date
) -> list[DutyReport]:
    """The new reports: one for each county and each of its towns."""
    units = (
        await session.scalars(
            select(OrgUnit)
            .where(OrgUnit.kind.in_([OrgKind.COUNTY, OrgKind.TOWN]))
            .order_by(OrgUnit.depth, OrgUnit.id)
        )
    ).all()
    done = set(
        await session.scalars(
            select(DutyReport.org_id).where(
                DutyReport.period == period, DutyReport.starts == starts
            )
        )
    )
    reports = []
    for unit in units:
        if unit.id in done:
            continue
        summary = await summarise(session, unit, starts, ends)
        report = DutyReport(
            org_id=unit.id,
            org_path=unit.path,
            period=period,
            starts=starts,
            ends=ends,
            summary=summary.to_json(),
        )
        session.add(report)
        reports.append(report)
    await session.flush()
    return reports
