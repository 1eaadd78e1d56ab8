"""Duty data in the database: hours, the calendar, rosters, leave, sightings, and the
days the watch judges from them. Times are stored in UTC and judged in the county's
time zone (`DutyClock`); the rules themselves are db/duty/rules.py.

Every write here is a defined rule or a clear `DutyError`; nothing is dropped quietly.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import (
    DutyCadre,
    DutyCalendarDay,
    DutyCamera,
    DutyCameraKind,
    DutyCorrection,
    DutyDay,
    DutyHoursRule,
    DutyLeave,
    DutySighting,
    Member,
    OrgKind,
    OrgUnit,
)

from .rules import (
    Absence,
    CalendarKind,
    CameraSchedule,
    DayResult,
    DayStatus,
    DutyHours,
    DutyRuleError,
    HoursRule,
    LeaveKind,
    camera_window,
    check_absences,
    judge_day,
    plan_day,
)


class DutyError(ValueError):
    """Refused, with a code for the API and a message for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class DutyClock:
    """The county's time zone and the time now; tests pass their own `now`."""

    zone: ZoneInfo
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)

    def local(self, at: dt.datetime) -> dt.datetime:
        """An aware time as the county's naive local time (what the rules read)."""
        return at.astimezone(self.zone).replace(tzinfo=None)

    def utc(self, local: dt.datetime) -> dt.datetime:
        return local.replace(tzinfo=self.zone).astimezone(dt.UTC)

    def today(self) -> dt.date:
        return self.local(self.now()).date()

    def day_bounds(self, date: dt.date) -> tuple[dt.datetime, dt.datetime]:
        start = self.utc(dt.datetime.combine(date, dt.time()))
        return start, self.utc(dt.datetime.combine(date + dt.timedelta(days=1), dt.time()))


def _mmdd(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        month, day = (int(part) for part in value.split("-"))
    except ValueError as error:
        raise DutyError("bad_season", f"a season bound is MM-DD, not {value!r}") from error
    return month, day


def hours_of(row: DutyHoursRule) -> HoursRule:
    season_from, season_to = _mmdd(row.season_from), _mmdd(row.season_to)
    return HoursRule(
        row.org_path,
        DutyHours(
            frozenset(row.weekdays),
            row.start_time,
            row.end_time,
            grace_min=row.grace_min,
            absent_after_min=row.absent_after_min,
            max_gap_min=row.max_gap_min,
        ),
        season=(season_from, season_to) if season_from and season_to else None,
    )


async def set_hours(
    session: AsyncSession,
    org: OrgUnit,
    *,
    weekdays: Iterable[int],
    start: dt.time,
    end: dt.time,
    grace_min: int = 10,
    absent_after_min: int = 120,
    max_gap_min: int = 60,
    season: tuple[str, str] | None = None,
    actor: str,
) -> DutyHoursRule:
    """Set a unit's hours (for the year, or a season), replacing its rule for the same
    season. Checked by the rules before anything is written."""
    if org.kind not in (OrgKind.COUNTY, OrgKind.TOWN, OrgKind.VILLAGE):
        raise DutyError("bad_unit", "duty hours are set for the county, a town or a village")
    season_from, season_to = season if season else (None, None)
    row = DutyHoursRule(
        org_id=org.id,
        org_path=org.path,
        season_from=season_from,
        season_to=season_to,
        weekdays=sorted(set(weekdays)),
        start_time=start,
        end_time=end,
        grace_min=grace_min,
        absent_after_min=absent_after_min,
        max_gap_min=max_gap_min,
        updated_by=actor,
    )
    try:
        hours_of(row)
    except DutyRuleError as error:
        raise DutyError("bad_hours", str(error)) from error
    existing = await session.scalar(
        select(DutyHoursRule).where(
            DutyHoursRule.org_id == org.id,
            DutyHoursRule.season_from.is_(None)
            if season_from is None
            else DutyHoursRule.season_from == season_from,
        )
    )
    if existing is not None:
        await session.delete(existing)
        await session.flush()
    session.add(row)
    await session.flush()
    return row


async def set_calendar_day(
    session: AsyncSession, county: OrgUnit, date: dt.date, kind: CalendarKind | None, name: str
) -> None:
    """Mark a date a holiday or a make-up working day for the county; None unmarks it."""
    if county.kind is not OrgKind.COUNTY:
        raise DutyError("bad_unit", "the calendar is the county's")
    existing = await session.scalar(
        select(DutyCalendarDay).where(
            DutyCalendarDay.org_id == county.id, DutyCalendarDay.date == date
        )
    )
    if existing is not None:
        await session.delete(existing)
        await session.flush()
    if kind is not None:
        session.add(
            DutyCalendarDay(org_id=county.id, org_path=county.path, date=date, kind=kind, name=name)
        )
        await session.flush()


async def add_cadre(
    session: AsyncSession,
    village: OrgUnit,
    member: Member,
    *,
    post: str,
    first_secretary: bool = False,
    required_days: int | None = None,
) -> DutyCadre:
    """Put a member on a village's roster. One village at a time: a member on another
    village's roster is refused (the record is one duty day per person per date)."""
    if village.kind is not OrgKind.VILLAGE:
        raise DutyError("bad_unit", "a duty roster belongs to a village or community")
    if not post.strip():
        raise DutyError("bad_post", "a cadre's post is needed (e.g. 村委会主任)")
    if required_days is not None and not 0 < required_days <= 31:
        raise DutyError("bad_required_days", "required days in the village are 1 to 31")
    existing = await session.scalar(select(DutyCadre).where(DutyCadre.member_id == member.id))
    if existing is not None and existing.village_id != village.id:
        other = await session.get(OrgUnit, existing.village_id)
        raise DutyError(
            "cadre_in_other_village",
            f"{member.name} is already on the duty roster of {other.name if other else '?'}: "
            "take them off it first",
        )
    cadre = existing or DutyCadre(member_id=member.id)
    cadre.village_id, cadre.org_path = village.id, village.path
    cadre.post, cadre.first_secretary, cadre.required_days = (
        post.strip(),
        first_secretary,
        required_days,
    )
    session.add(cadre)
    await session.flush()
    return cadre


async def add_leave(
    session: AsyncSession,
    clock: DutyClock,
    cadre: DutyCadre,
    *,
    kind: LeaveKind,
    starts: dt.datetime,
    ends: dt.datetime,
    reason: str,
    approver: str,
    actor: str,
) -> DutyLeave:
    """Record an approved leave or field duty. It must not overlap the member's others."""
    if starts.tzinfo is None or ends.tzinfo is None:
        raise DutyError("bad_time", "leave times need their time zone")
    if not reason.strip() or not approver.strip():
        raise DutyError("bad_leave", "a leave needs its reason and who approved it")
    existing = (
        await session.scalars(
            select(DutyLeave).where(
                DutyLeave.member_id == cadre.member_id,
                DutyLeave.cancelled_at.is_(None),
                DutyLeave.starts_at < ends,
                DutyLeave.ends_at > starts,
            )
        )
    ).all()
    candidate = Absence(kind, clock.local(starts), clock.local(ends))
    try:
        check_absences([candidate, *(absence_of(clock, row) for row in existing)])
    except DutyRuleError as error:
        raise DutyError("leave_overlaps" if existing else "bad_leave", str(error)) from error
    leave = DutyLeave(
        member_id=cadre.member_id,
        org_path=cadre.org_path,
        kind=kind,
        starts_at=starts,
        ends_at=ends,
        reason=reason.strip(),
        approver=approver.strip(),
        recorded_by=actor,
    )
    session.add(leave)
    await session.flush()
    return leave


def absence_of(clock: DutyClock, row: DutyLeave) -> Absence:
    return Absence(row.kind, clock.local(row.starts_at), clock.local(row.ends_at))


@dataclass
class DutyBook:
    """What judging one date needs, read in a handful of queries for a whole subtree:
    the watch judges every cadre of the county each minute."""

    date: dt.date
    rules: list[HoursRule]
    calendar: dict[dt.date, CalendarKind]
    cadres: list[DutyCadre]
    absences: dict[int, list[Absence]]
    sightings: dict[int, list[tuple[dt.datetime, dt.datetime]]]
    days: dict[int, DutyDay]

    def judge(self, cadre: DutyCadre, now_local: dt.datetime) -> DayResult:
        plan = plan_day(
            self.rules, self.calendar, cadre.org_path, self.date, self.absences[cadre.member_id]
        )
        return judge_day(plan, self.sightings[cadre.member_id], now_local)


async def read_book(
    session: AsyncSession, clock: DutyClock, date: dt.date, org_path: str = "/"
) -> DutyBook:
    start, end = clock.day_bounds(date)
    cadres = (
        await session.scalars(select(DutyCadre).where(DutyCadre.org_path.like(f"{org_path}%")))
    ).all()
    rules = [hours_of(row) for row in await session.scalars(select(DutyHoursRule))]
    calendar = {
        row.date: row.kind
        for row in await session.scalars(
            select(DutyCalendarDay).where(DutyCalendarDay.date == date)
        )
    }
    absences: dict[int, list[Absence]] = defaultdict(list)
    for leave in await session.scalars(
        select(DutyLeave).where(
            DutyLeave.org_path.like(f"{org_path}%"),
            DutyLeave.cancelled_at.is_(None),
            DutyLeave.starts_at < end,
            DutyLeave.ends_at > start,
        )
    ):
        absences[leave.member_id].append(absence_of(clock, leave))
    village_of = {cadre.member_id: cadre.village_id for cadre in cadres}
    sightings: dict[int, list[tuple[dt.datetime, dt.datetime]]] = defaultdict(list)
    for sighting in await session.scalars(
        select(DutySighting).where(
            DutySighting.org_path.like(f"{org_path}%"),
            DutySighting.first_at >= start,
            DutySighting.first_at < end,
        )
    ):
        # a sighting counts only in the village whose roster the cadre is on
        if village_of.get(sighting.member_id) != sighting.village_id:
            continue
        sightings[sighting.member_id].append(
            (clock.local(sighting.first_at), clock.local(sighting.last_at))
        )
    days = {
        day.member_id: day
        for day in await session.scalars(
            select(DutyDay).where(DutyDay.org_path.like(f"{org_path}%"), DutyDay.date == date)
        )
    }
    return DutyBook(date, rules, calendar, list(cadres), absences, sightings, days)


def store_result(
    session: AsyncSession, clock: DutyClock, book: DutyBook, cadre: DutyCadre, result: DayResult
) -> tuple[DutyDay, DayStatus | None]:
    """Write the judged day; returns it and its machine status before (None: new). A
    corrected day keeps the clerk's status; the machine's record is still updated."""
    day = book.days.get(cadre.member_id)
    before = day.machine_status if day is not None else None
    if day is None:
        day = DutyDay(
            member_id=cadre.member_id,
            village_id=cadre.village_id,
            org_path=cadre.org_path,
            date=book.date,
            corrected=False,
        )
        session.add(day)
        book.days[cadre.member_id] = day

    def utc(value: dt.datetime | None) -> dt.datetime | None:
        return clock.utc(value) if value is not None else None

    day.machine_status = result.status
    if not day.corrected:
        day.status = result.status
    day.due_from = utc(result.due_from)
    day.arrived_at = utc(result.arrived)
    day.departed_at = utc(result.departed)
    day.late_min = result.late_min
    day.present_min = result.present_min
    day.gaps = [[clock.utc(a).isoformat(), clock.utc(b).isoformat()] for a, b in result.gaps]
    return day, before


async def correct_day(
    session: AsyncSession,
    day: DutyDay,
    to_status: DayStatus,
    *,
    reason: str,
    actor: str,
    actor_name: str,
) -> DutyCorrection:
    """A clerk's correction (camera down, a wrong match). The machine's status stays on
    the day; the correction is its own row, and the caller writes the audit entry."""
    if not reason.strip():
        raise DutyError("reason_required", "a correction needs its reason")
    if to_status in (DayStatus.PENDING,):
        raise DutyError("bad_status", "a day cannot be corrected to pending")
    correction = DutyCorrection(
        day_id=day.id,
        from_status=day.status,
        to_status=to_status,
        reason=reason.strip(),
        by=actor,
        by_name=actor_name,
    )
    day.status, day.corrected = to_status, True
    session.add(correction)
    await session.flush()
    return correction


# -- TV and kiosk cameras: when each watches -------------------------------------------------
def _clock_time(value: object, what: str) -> dt.time:
    if not isinstance(value, str):
        raise DutyError("bad_schedule", f"the schedule's {what} is a time HH:MM")
    try:
        return dt.time.fromisoformat(value)
    except ValueError:
        raise DutyError("bad_schedule", f"the schedule's {what} is a time HH:MM") from None


def schedule_of(value: dict) -> CameraSchedule | None:
    """A camera's `schedule` JSON ({weekdays, from, to}); empty: it follows the duty hours."""
    if not value:
        return None
    unknown = set(value) - {"weekdays", "from", "to"}
    if unknown:
        raise DutyError(
            "bad_schedule", f"a schedule has weekdays, from and to, not {sorted(unknown)}"
        )
    weekdays = value.get("weekdays", [0, 1, 2, 3, 4])
    if not isinstance(weekdays, list) or not all(
        isinstance(day, int) and not isinstance(day, bool) for day in weekdays
    ):
        raise DutyError("bad_schedule", "the schedule's weekdays are numbers 0 (Monday) to 6")
    try:
        return CameraSchedule(
            frozenset(weekdays),
            _clock_time(value.get("from"), "from"),
            _clock_time(value.get("to"), "to"),
        )
    except DutyRuleError as error:
        raise DutyError("bad_schedule", str(error)) from None


@dataclass(frozen=True)
class CameraWindow:
    """A TV's or kiosk's camera due to watch now, until `ends_at` (UTC)."""

    camera_id: int
    village_id: int
    terminal_id: int
    name: str
    ends_at: dt.datetime


async def camera_windows(session: AsyncSession, clock: DutyClock) -> dict[int, CameraWindow]:
    """By terminal id: the enabled TV and kiosk cameras whose window holds now."""
    cameras = (
        await session.scalars(
            select(DutyCamera).where(
                DutyCamera.enabled.is_(True),
                DutyCamera.kind.in_((DutyCameraKind.TV, DutyCameraKind.KIOSK)),
                DutyCamera.terminal_id.is_not(None),
            )
        )
    ).all()
    if not cameras:
        return {}
    now = clock.local(clock.now())
    rules = [hours_of(row) for row in await session.scalars(select(DutyHoursRule))]
    calendar = {
        row.date: row.kind
        for row in await session.scalars(
            select(DutyCalendarDay).where(DutyCalendarDay.date == now.date())
        )
    }
    windows: dict[int, CameraWindow] = {}
    for camera in cameras:
        try:
            schedule = schedule_of(camera.schedule)
        except DutyError:  # refused by the API; a row edited by hand follows the hours
            schedule = None
        window = camera_window(schedule, rules, calendar, camera.org_path, now.date())
        if window is not None and window[0] <= now < window[1] and camera.terminal_id:
            windows[camera.terminal_id] = CameraWindow(
                camera.id, camera.village_id, camera.terminal_id, camera.name, clock.utc(window[1])
            )
    return windows
