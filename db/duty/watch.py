"""The duty watch: judges every cadre's day as time passes and raises the alerts.

Each run reads the county's duty book for today (a few queries), judges each cadre at
`now` by the rules, writes the days that changed, and raises a late or absent alert
the first time a day reaches it (one per kind per day: the unique key makes a second run,
a restart or a clock step back raise nothing twice). Alerts and their webhook deliveries
are written in the same transaction (an outbox): none is lost between the two.

It runs each `tick_s` and wakes early for the next deadline it knows (a late at 08:40
is raised at 08:40, not at the next tick). After midnight, and at start, it judges
yesterday once more so that yesterday's record is final.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sqlalchemy import Table, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from db.database import Database
from db.models import DutyAlert, DutyAlertKind, DutyCadre, DutyDay, OrgUnit

from .reports import close_period
from .rules import DayStatus
from .store import DutyClock, read_book, store_result
from .summaries import periods_ending

logger = logging.getLogger(__name__)

# after a stop, the days judged again from the last on record: at most a month back
CATCH_UP_DAYS = 31
# what store_result sets on a new day (all of them, so that one executemany takes them)
NEW_DAY_COLUMNS = (
    "member_id",
    "village_id",
    "org_path",
    "date",
    "status",
    "machine_status",
    "due_from",
    "arrived_at",
    "departed_at",
    "late_min",
    "present_min",
    "gaps",
    "corrected",
)
ALERT_KINDS = {DayStatus.LATE: DutyAlertKind.LATE, DayStatus.ABSENT: DutyAlertKind.ABSENT}


@dataclass
class WatchRun:
    date: dt.date
    judged: int = 0
    changed: int = 0
    alerts: list[dict] = field(default_factory=list)
    next_change: dt.datetime | None = None  # the soonest deadline, UTC


class DutyWatch:
    def __init__(
        self,
        database: Database,
        clock: DutyClock,
        *,
        on_alert: Callable[[AsyncSession, dict], Awaitable[None]] | None = None,
        after_commit: Callable[[list[dict]], Awaitable[None]] | None = None,
        tick_s: float = 30.0,
    ) -> None:
        self.database = database
        self.clock = clock
        # called inside an alert's or a report's transaction with (session, event): the
        # webhooks' outbox
        self.on_alert = on_alert
        # called with the run's new alerts once they are committed: live pages
        self.after_commit = after_commit
        self.tick_s = tick_s
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._last_date: dt.date | None = None

    async def run_once(self) -> list[WatchRun]:
        now = self.clock.now()
        today = self.clock.local(now).date()
        since = self._last_date
        if since is None:  # at start: from the last day on record (a stop of days)
            async with self.database.session() as session:
                since = await session.scalar(select(func.max(DutyDay.date)))
        since = max(since or today, today - dt.timedelta(days=CATCH_UP_DAYS))
        # every date from the last one judged: their records become final
        dates = [since + dt.timedelta(days=n) for n in range((today - since).days + 1)]
        if len(dates) == 1 and self._last_date is None:
            dates.insert(0, today - dt.timedelta(days=1))
        runs = [await self.judge_date(date, now) for date in dates]
        for date in dates[:-1]:  # each date before today is final now: close its periods
            await self.close_periods(date)
        self._last_date = today
        return runs

    async def close_periods(self, date: dt.date) -> list[dict]:
        """Close the weeks, months and quarters that ended on `date`: a report for the
        county and each town, announced like an alert."""
        events: list[dict] = []
        async with self.database.session() as session:
            for period, starts, ends in periods_ending(date):
                for report in await close_period(session, period, starts, ends):
                    event = {
                        "event": "duty.report",
                        "report_id": report.id,
                        "period": period,
                        "starts": starts.isoformat(),
                        "ends": ends.isoformat(),
                        "org": report.summary["org"],
                        "org_path": report.org_path,
                        "rate": report.summary["total"]["rate"],
                    }
                    if self.on_alert is not None:
                        await self.on_alert(session, event)
                    events.append(event)
            try:
                await session.commit()
            except IntegrityError:  # another front closed it first
                await session.rollback()
                return []
        if events and self.after_commit is not None:
            await self.after_commit(events)
        return events

    async def judge_date(self, date: dt.date, now: dt.datetime) -> WatchRun:
        run = WatchRun(date)
        now_local = self.clock.local(now)
        async with self.database.session() as session:
            book = await read_book(session, self.clock, date)
            names = {
                unit.id: unit.name
                for unit in await session.scalars(
                    select(OrgUnit).where(OrgUnit.id.in_({c.village_id for c in book.cadres}))
                )
            }
            raised = {
                (alert.member_id, alert.kind)
                for alert in await session.scalars(select(DutyAlert).where(DutyAlert.date == date))
            }
            raising: list[tuple[DutyAlert, DutyCadre, DutyDay, int]] = []
            new_days: list[DutyDay] = []
            for cadre in book.cadres:
                result = book.judge(cadre, now_local)
                run.judged += 1
                if result.status is DayStatus.REST and result.arrived is None:
                    if cadre.member_id not in book.days:
                        continue  # a rest day with nobody seen: nothing to record
                day, before = store_result(session, self.clock, book, cadre, result)
                if before is None:  # a new day: inserted below with the others
                    session.expunge(day)
                    new_days.append(day)
                if before != result.status:
                    run.changed += 1
                if result.next_change is not None:
                    deadline = self.clock.utc(result.next_change)
                    if run.next_change is None or deadline < run.next_change:
                        run.next_change = deadline
                kind = {
                    DayStatus.LATE: DutyAlertKind.LATE,
                    DayStatus.ABSENT: DutyAlertKind.ABSENT,
                }.get(result.status)
                if kind is None or (cadre.member_id, kind) in raised or day.corrected:
                    continue
                alert = DutyAlert(
                    member_id=cadre.member_id,
                    village_id=cadre.village_id,
                    org_path=cadre.org_path,
                    date=date,
                    kind=kind,
                    raised_at=now,
                )
                session.add(alert)
                raising.append((alert, cadre, day, result.late_min))
            try:
                # the county's new days in one executemany: as ORM objects SQLite inserts
                # them a row a statement (RETURNING their ids), 2 s a date for the demo county
                if new_days:
                    stamp = dt.datetime.now(dt.UTC)
                    rows = [
                        {**{k: getattr(day, k) for k in NEW_DAY_COLUMNS}, "updated_at": stamp}
                        for day in new_days
                    ]
                    table = DutyDay.__table__
                    assert isinstance(table, Table)  # Core, not the ORM's bulk mode
                    await session.execute(insert(table), rows)
                await session.flush()
                for alert, cadre, day, late_min in raising:
                    event = {
                        "event": f"duty.{alert.kind.value}",
                        "alert_id": alert.id,
                        "date": date.isoformat(),
                        "member": {
                            "id": cadre.member_id,
                            "name": cadre.member.name,
                            "post": cadre.post,
                        },
                        "village": {
                            "id": cadre.village_id,
                            "name": names.get(cadre.village_id, ""),
                        },
                        "org_path": cadre.org_path,
                        "due_from": day.due_from.isoformat() if day.due_from else None,
                        "late_min": late_min,
                        "raised_at": now.isoformat(),
                    }
                    if self.on_alert is not None:
                        await self.on_alert(session, event)
                    run.alerts.append(event)
                await session.commit()
            except IntegrityError:
                # another front raised the same alert first: its run is the record
                await session.rollback()
                logger.info("duty watch: %s judged elsewhere meanwhile", date)
                return WatchRun(date)
        if run.alerts and self.after_commit is not None:
            await self.after_commit(run.alerts)
        return run

    def poke(self) -> None:
        """Judge again now (a sighting or a leave changed something)."""
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="duty-watch")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            delay = self.tick_s
            try:
                runs = await self.run_once()
                soonest = min((r.next_change for r in runs if r.next_change), default=None)
                if soonest is not None:
                    until = (soonest - self.clock.now()).total_seconds()
                    delay = max(0.5, min(delay, until + 0.5))
            except Exception:  # a bad row or a lost database must not stop the watch
                logger.exception("duty watch run failed; trying again in %.0f s", delay)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
