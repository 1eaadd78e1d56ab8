"""The rules of a duty day (坐班值班), as pure functions: is a cadre due on a date, from
when to when, and what their sightings by the duty-room camera make of the day.

Everything here is in the county's local time (naive `datetime`s, one time zone); the
store converts at its edge. The rules, each one defined so that a record can be defended:

- **Hours** come from the most specific unit that has a rule for the date: a village's
  own, else its town's, else the county's; within one unit a seasonal rule (夏季作息)
  whose period contains the date wins over the all-year one.
- **Due**: a date the county's calendar marks a holiday is not due; one it marks a working
  day (调休上班, a make-up day) is due whatever the weekday; any other date is due when its
  weekday is one of the hours' working days.
- **Leave** (请假) and **field duty** (外出公干) cut their time out of the due window. A
  window wholly covered is a day on leave (excused: not counted as due) or on field duty
  (counted as present: the cadre is at work elsewhere, with an approver). When it is
  partly covered, the day is judged from the first due minute after the leave.
- **Arrival** is the first sighting of the day, **departure** the last. Late: not seen by
  the start + grace; the late minutes count from the start. Absent: not seen by the start
  + `absent_after_min` (the cut-off); a cadre who comes after the cut-off is still absent
  that day, with the arrival kept on the record for a clerk to judge (a correction).
- **Gaps**: between arrival and departure, a stretch with no sighting longer than
  `max_gap_min` is recorded. Time in the duty room is departure − arrival − the gaps.
"""

from __future__ import annotations

import datetime as dt
import enum
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


class DayStatus(enum.StrEnum):
    REST = "rest"  # not a duty day for this cadre
    PENDING = "pending"  # due, not seen yet, not late yet
    ON_TIME = "on_time"
    LATE = "late"
    ABSENT = "absent"
    LEAVE = "leave"  # the whole window on leave: excused
    FIELD_DUTY = "field_duty"  # the whole window on field duty: at work elsewhere


# the statuses a summary counts as due, and of those, as on duty
DUE_STATUSES = frozenset(
    {DayStatus.ON_TIME, DayStatus.LATE, DayStatus.ABSENT, DayStatus.FIELD_DUTY}
)
ON_DUTY_STATUSES = frozenset({DayStatus.ON_TIME, DayStatus.LATE, DayStatus.FIELD_DUTY})


class LeaveKind(enum.StrEnum):
    LEAVE = "leave"  # 请假
    FIELD_DUTY = "field_duty"  # 外出公干


class CalendarKind(enum.StrEnum):
    HOLIDAY = "holiday"  # 法定节假日: nobody is due
    WORKDAY = "workday"  # 调休上班: due whatever the weekday


class DutyRuleError(ValueError):
    """A rule that cannot hold (hours that end before they start, an empty season)."""


@dataclass(frozen=True)
class DutyHours:
    weekdays: frozenset[int]  # 0 is Monday
    start: dt.time
    end: dt.time
    grace_min: int = 10
    absent_after_min: int = 120
    max_gap_min: int = 60

    def __post_init__(self) -> None:
        if not self.start < self.end:
            raise DutyRuleError("duty hours must end after they start, on the same day")
        if not self.weekdays or not self.weekdays <= set(range(7)):
            raise DutyRuleError("working days are weekdays 0 (Monday) to 6, at least one")
        if not 0 <= self.grace_min <= self.absent_after_min:
            raise DutyRuleError("the grace must be between 0 and the absence cut-off")
        if self.max_gap_min <= 0:
            raise DutyRuleError("the longest unrecorded gap must be positive")


@dataclass(frozen=True)
class HoursRule:
    """Hours set at one unit (county, town or village), for the whole year or a season
    given as (month, day) bounds, inclusive; a season may wrap the new year."""

    org_path: str
    hours: DutyHours
    season: tuple[tuple[int, int], tuple[int, int]] | None = None

    def __post_init__(self) -> None:
        if self.season is not None:
            for month, day in self.season:
                try:
                    dt.date(2024, month, day)  # a leap year: 29 February is a bound
                except ValueError as error:
                    raise DutyRuleError(f"no such day in a season: {month}-{day}") from error

    def in_season(self, date: dt.date) -> bool:
        if self.season is None:
            return True
        (m1, d1), (m2, d2) = self.season
        day, first, last = (date.month, date.day), (m1, d1), (m2, d2)
        if first <= last:
            return first <= day <= last
        return day >= first or day <= last  # wraps the new year (winter)


def hours_on(rules: Iterable[HoursRule], village_path: str, date: dt.date) -> DutyHours | None:
    """The hours that hold for a village on a date: the deepest unit's, a season first."""
    best: tuple[int, int, HoursRule] | None = None
    for rule in rules:
        if not village_path.startswith(rule.org_path) or not rule.in_season(date):
            continue
        rank = (rule.org_path.count("/"), rule.season is not None)
        if best is None or rank > best[:2]:
            best = (*rank, rule)
    return best[2].hours if best else None


@dataclass(frozen=True)
class Absence:
    """A leave or a field duty, approved, in local time."""

    kind: LeaveKind
    starts: dt.datetime
    ends: dt.datetime


@dataclass(frozen=True)
class DayPlan:
    """What a cadre owes on one date."""

    date: dt.date
    hours: DutyHours | None  # None: not due (a rest day, a holiday, no rule)
    absences: tuple[Absence, ...] = ()

    @property
    def window(self) -> tuple[dt.datetime, dt.datetime] | None:
        if self.hours is None:
            return None
        return (
            dt.datetime.combine(self.date, self.hours.start),
            dt.datetime.combine(self.date, self.hours.end),
        )


def is_due(hours: DutyHours | None, date: dt.date, calendar: dict[dt.date, CalendarKind]) -> bool:
    if hours is None:
        return False
    marked = calendar.get(date)
    if marked is CalendarKind.HOLIDAY:
        return False
    if marked is CalendarKind.WORKDAY:
        return True
    return date.weekday() in hours.weekdays


def plan_day(
    rules: Iterable[HoursRule],
    calendar: dict[dt.date, CalendarKind],
    village_path: str,
    date: dt.date,
    absences: Iterable[Absence] = (),
) -> DayPlan:
    hours = hours_on(rules, village_path, date)
    if not is_due(hours, date, calendar):
        return DayPlan(date, None)
    start = dt.datetime.combine(date, hours.start)  # type: ignore[union-attr]
    end = dt.datetime.combine(date, hours.end)  # type: ignore[union-attr]
    touching = tuple(a for a in absences if a.starts < end and a.ends > start)
    return DayPlan(date, hours, touching)


@dataclass
class DayResult:
    status: DayStatus
    due_from: dt.datetime | None = None  # the first due minute, after any leave
    arrived: dt.datetime | None = None
    departed: dt.datetime | None = None
    late_min: int = 0
    present_min: int = 0
    gaps: list[tuple[dt.datetime, dt.datetime]] = field(default_factory=list)
    # when the day's status can next change with no new sighting (late, then absent)
    next_change: dt.datetime | None = None


def _uncovered(
    window: tuple[dt.datetime, dt.datetime], absences: Sequence[Absence]
) -> list[tuple[dt.datetime, dt.datetime]]:
    """The parts of the window no absence covers."""
    free = [window]
    for absence in sorted(absences, key=lambda a: a.starts):
        rest: list[tuple[dt.datetime, dt.datetime]] = []
        for a, b in free:
            if absence.ends <= a or absence.starts >= b:
                rest.append((a, b))
                continue
            if absence.starts > a:
                rest.append((a, absence.starts))
            if absence.ends < b:
                rest.append((absence.ends, b))
        free = rest
    return free


def merge_sightings(
    sightings: Iterable[tuple[dt.datetime, dt.datetime]],
) -> list[tuple[dt.datetime, dt.datetime]]:
    """Overlapping or touching intervals as one; sorted."""
    merged: list[tuple[dt.datetime, dt.datetime]] = []
    for a, b in sorted((min(a, b), max(a, b)) for a, b in sightings):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


def judge_day(
    plan: DayPlan,
    sightings: Iterable[tuple[dt.datetime, dt.datetime]],
    now: dt.datetime,
) -> DayResult:
    """The day as it stands at `now` (local time): the same inputs give the same record,
    however often it is judged, so a watch may run it every minute and after a restart."""
    seen = [s for s in merge_sightings(sightings) if s[0].date() == plan.date]
    result = DayResult(DayStatus.REST)
    if seen:
        result.arrived, result.departed = seen[0][0], seen[-1][1]
    window = plan.window
    if window is None or plan.hours is None:
        _fill_presence(result, seen, max_gap_min=60)
        return result
    hours = plan.hours
    _fill_presence(result, seen, hours.max_gap_min)
    free = _uncovered(window, plan.absences)
    if not free:
        kinds = {a.kind for a in plan.absences}
        # a window covered by both: field duty is the stronger claim (at work)
        result.status = DayStatus.FIELD_DUTY if LeaveKind.FIELD_DUTY in kinds else DayStatus.LEAVE
        return result
    due_from = free[0][0]
    result.due_from = due_from
    late_at = due_from + dt.timedelta(minutes=hours.grace_min)
    absent_at = due_from + dt.timedelta(minutes=hours.absent_after_min)
    arrival = result.arrived
    # a sighting before the window opens counts as being in at its start
    if arrival is not None and arrival <= late_at and arrival <= now:
        result.status = DayStatus.ON_TIME
    elif arrival is not None and arrival < absent_at and arrival <= now:
        result.status = DayStatus.LATE
        result.late_min = int((arrival - due_from).total_seconds() // 60)
    elif now >= absent_at:
        result.status = DayStatus.ABSENT
    elif now >= late_at:
        result.status = DayStatus.LATE
        result.late_min = int((now - due_from).total_seconds() // 60)
        result.next_change = absent_at
    else:
        result.status = DayStatus.PENDING
        result.next_change = late_at
    return result


def _fill_presence(
    result: DayResult, seen: list[tuple[dt.datetime, dt.datetime]], max_gap_min: int
) -> None:
    if not seen:
        return
    longest = dt.timedelta(minutes=max_gap_min)
    result.gaps = [(a[1], b[0]) for a, b in itertools.pairwise(seen) if b[0] - a[1] > longest]
    span = seen[-1][1] - seen[0][0]
    gaps = sum((b - a for a, b in result.gaps), dt.timedelta())
    result.present_min = int((span - gaps).total_seconds() // 60)


def check_absences(absences: Sequence[Absence]) -> None:
    """One member's absences must not overlap: two approvals for one hour cannot both be
    the record."""
    for absence in absences:
        if not absence.starts < absence.ends:
            raise DutyRuleError("a leave must end after it starts")
    ordered = sorted(absences, key=lambda a: a.starts)
    for first, second in itertools.pairwise(ordered):
        if second.starts < first.ends:
            raise DutyRuleError(
                f"leave overlaps another from {first.starts:%Y-%m-%d %H:%M} to "
                f"{first.ends:%Y-%m-%d %H:%M}"
            )


@dataclass(frozen=True)
class CameraSchedule:
    """When a TV or kiosk camera watches, where it does not follow the duty hours."""

    weekdays: frozenset[int]
    start: dt.time
    end: dt.time

    def __post_init__(self) -> None:
        if not self.start < self.end:
            raise DutyRuleError("a camera's hours must end after they start, on the same day")
        if not self.weekdays or not self.weekdays <= set(range(7)):
            raise DutyRuleError("a camera's days are weekdays 0 (Monday) to 6, at least one")


# a camera following the duty hours starts before them, so that an early arrival is seen
# (and a punctual one is not lost to the TV's few seconds of starting up), and stays on
# a while after them, for the departures
CAMERA_LEAD = dt.timedelta(minutes=30)
CAMERA_TAIL = dt.timedelta(minutes=30)


def camera_window(
    schedule: CameraSchedule | None,
    rules: Iterable[HoursRule],
    calendar: dict[dt.date, CalendarKind],
    village_path: str,
    date: dt.date,
) -> tuple[dt.datetime, dt.datetime] | None:
    """From when to when a village's TV or kiosk camera watches on a date: its own
    schedule, else the village's duty hours with a lead and a tail; None: not that day."""
    if schedule is not None:
        if date.weekday() not in schedule.weekdays:
            return None
        return dt.datetime.combine(date, schedule.start), dt.datetime.combine(date, schedule.end)
    window = plan_day(rules, calendar, village_path, date).window
    if window is None:
        return None
    return window[0] - CAMERA_LEAD, window[1] + CAMERA_TAIL
