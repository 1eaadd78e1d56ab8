"""Duty summaries: per cadre, village, town and the county, for a week, a month or a
quarter, and the rankings by on-duty rate. One grouped query over the days of the whole
subtree, then sums in Python by the org tree: closing a month for a county of a thousand
villages is one pass.

On-duty rate = (on time + late + field duty) / days due, where days due leave out rest
days and days on leave (an approved leave is excused, not due). Days are the days as
they stand: a clerk's correction counts, the machine's record is kept beside it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import DutyCadre, DutyDay, Member, OrgKind, OrgUnit

from .rules import DUE_STATUSES, DayStatus

Period = Literal["week", "month", "quarter"]
PERIODS: tuple[Period, ...] = ("week", "month", "quarter")


def period_bounds(period: Period, date: dt.date) -> tuple[dt.date, dt.date]:
    """The period containing `date`: its first and last day (inclusive)."""
    if period == "week":
        start = date - dt.timedelta(days=date.weekday())
        return start, start + dt.timedelta(days=6)
    if period == "month":
        start = date.replace(day=1)
    elif period == "quarter":
        start = date.replace(month=(date.month - 1) // 3 * 3 + 1, day=1)
    else:
        raise ValueError(f"no such period: {period}")
    months = 1 if period == "month" else 3
    year, month = divmod(start.month - 1 + months, 12)
    return start, dt.date(start.year + year, month + 1, 1) - dt.timedelta(days=1)


def periods_ending(date: dt.date) -> list[tuple[Period, dt.date, dt.date]]:
    """The periods whose last day is `date`."""
    return [
        (period, *bounds)
        for period in PERIODS
        if (bounds := period_bounds(period, date))[1] == date
    ]


@dataclass
class Figures:
    days_due: int = 0
    on_time: int = 0
    late: int = 0
    late_min: int = 0
    absent: int = 0
    leave: int = 0
    field_duty: int = 0
    present_min: int = 0
    days_seen: int = 0  # days the cadre was in the duty room at all (a first secretary's)

    @property
    def on_duty(self) -> int:
        return self.on_time + self.late + self.field_duty

    @property
    def rate(self) -> float | None:
        return round(self.on_duty / self.days_due, 4) if self.days_due else None

    def add(self, other: Figures) -> None:
        # by hand: asdict() per line was a third of closing a county's month
        self.days_due += other.days_due
        self.on_time += other.on_time
        self.late += other.late
        self.late_min += other.late_min
        self.absent += other.absent
        self.leave += other.leave
        self.field_duty += other.field_duty
        self.present_min += other.present_min
        self.days_seen += other.days_seen

    def to_json(self) -> dict:
        return {**asdict(self), "on_duty": self.on_duty, "rate": self.rate}


@dataclass
class Line:
    """One row of a summary: a cadre, a village, a town or the county."""

    id: int
    name: str
    figures: Figures = field(default_factory=Figures)
    village: str = ""
    town: str = ""
    post: str = ""
    required_days: int | None = None  # a first secretary's, per month
    # whether the days seen met it over the period (whole months only; None: not judged)
    required_met: bool | None = None
    cadres: int = 0
    rank: int | None = None

    def to_json(self) -> dict:
        out = {"id": self.id, "name": self.name, **self.figures.to_json(), "rank": self.rank}
        for key in ("village", "town", "post"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.required_days is not None:
            out["required_days"] = self.required_days
            out["required_met"] = self.required_met
        if self.cadres:
            out["cadres"] = self.cadres
        return out


@dataclass
class Summary:
    org_id: int
    org_name: str
    starts: dt.date
    ends: dt.date
    total: Figures
    cadres: list[Line]
    villages: list[Line]
    towns: list[Line]

    def to_json(self) -> dict:
        return {
            "org": {"id": self.org_id, "name": self.org_name},
            "starts": self.starts.isoformat(),
            "ends": self.ends.isoformat(),
            "total": self.total.to_json(),
            "cadres": [line.to_json() for line in self.cadres],
            "villages": [line.to_json() for line in self.villages],
            "towns": [line.to_json() for line in self.towns],
        }


_COUNTED = {
    DayStatus.ON_TIME: "on_time",
    DayStatus.LATE: "late",
    DayStatus.ABSENT: "absent",
    DayStatus.LEAVE: "leave",
    DayStatus.FIELD_DUTY: "field_duty",
}


def rank(lines: list[Line]) -> list[Line]:
    """Best rate first (ties share a rank, competition style: 1, 2, 2, 4); lines with no
    day due come last, unranked. Among equals, fewer late minutes first, then the name."""
    rated = sorted(
        (line for line in lines if line.figures.rate is not None),
        key=lambda line: (-(line.figures.rate or 0), line.figures.late_min, line.name),
    )
    previous: float | None = None
    for position, line in enumerate(rated, start=1):
        if line.figures.rate != previous:
            line.rank, previous = position, line.figures.rate
        else:
            line.rank = rated[position - 2].rank
    unrated = sorted((line for line in lines if line.figures.rate is None), key=lambda x: x.name)
    return rated + unrated


async def summarise(session: AsyncSession, org: OrgUnit, starts: dt.date, ends: dt.date) -> Summary:
    """The period's figures for everyone on a roster inside `org`'s subtree."""
    units = {
        unit.id: unit
        for unit in await session.scalars(
            select(OrgUnit).where(
                OrgUnit.path.like(f"{org.path}%"),
                OrgUnit.kind.in_([OrgKind.TOWN, OrgKind.VILLAGE, OrgKind.COUNTY]),
            )
        )
    }
    by_path = {unit.path: unit for unit in units.values()}
    if org.id not in units:  # a village's or a town's own row is in `units` already
        units[org.id] = org
    cadres: dict[int, Line] = {}
    roster_village: dict[int, int] = {}
    for cadre, name in await session.execute(
        select(DutyCadre, Member.name)
        .join(Member, Member.id == DutyCadre.member_id)
        .where(DutyCadre.org_path.like(f"{org.path}%"))
    ):
        village = units.get(cadre.village_id)
        roster_village[cadre.member_id] = cadre.village_id
        cadres[cadre.member_id] = Line(
            cadre.member_id,
            name,
            village=village.name if village else "",
            post=cadre.post,
            required_days=cadre.required_days,
        )
    village_of: dict[int, int] = {}
    rows = await session.execute(
        select(
            DutyDay.member_id,
            DutyDay.village_id,
            DutyDay.status,
            func.count(),
            func.sum(DutyDay.late_min),
            func.sum(DutyDay.present_min),
            func.count(DutyDay.arrived_at),
        )
        .where(
            DutyDay.org_path.like(f"{org.path}%"),
            DutyDay.date >= starts,
            DutyDay.date <= ends,
        )
        .group_by(DutyDay.member_id, DutyDay.village_id, DutyDay.status)
    )
    names: dict[int, str] = {}
    for member_id, village_id, status, days, late_min, present_min, seen in rows:
        line = cadres.get(member_id)
        if line is None:  # off the roster since: their days still count where they were
            if member_id not in names:
                member = await session.get(Member, member_id)
                names[member_id] = member.name if member else str(member_id)
            village = units.get(village_id)
            line = cadres[member_id] = Line(
                member_id, names[member_id], village=village.name if village else ""
            )
        village_of[member_id] = village_id
        figures = line.figures
        status = DayStatus(status)
        if status in _COUNTED:
            setattr(figures, _COUNTED[status], getattr(figures, _COUNTED[status]) + days)
        if status in DUE_STATUSES:
            figures.days_due += days
        if status is DayStatus.LATE:
            figures.late_min += int(late_min or 0)
        figures.present_min += int(present_min or 0)
        figures.days_seen += int(seen or 0)
    months = whole_months(starts, ends)
    for line in cadres.values():
        if line.required_days is not None and months:
            line.required_met = line.figures.days_seen >= line.required_days * months
    villages: dict[int, Line] = {}
    towns: dict[int, Line] = {}
    total = Figures()
    for member_id, line in cadres.items():
        # where the days were kept, else the roster's village (no day in the period)
        kept_in = village_of.get(member_id, roster_village.get(member_id))
        village = units.get(kept_in) if kept_in is not None else None
        if village is None:
            continue
        town = by_path.get(_parent_path(village.path))
        line.town = town.name if town else ""
        vline = villages.setdefault(village.id, Line(village.id, village.name, town=line.town))
        vline.figures.add(line.figures)
        vline.cadres += 1
        if town is not None:
            tline = towns.setdefault(town.id, Line(town.id, town.name))
            tline.figures.add(line.figures)
            tline.cadres += 1
        total.add(line.figures)
    return Summary(
        org.id,
        org.name,
        starts,
        ends,
        total,
        rank(list(cadres.values())),
        rank(list(villages.values())),
        rank(list(towns.values())),
    )


def whole_months(starts: dt.date, ends: dt.date) -> int:
    """How many calendar months the period is, when it is whole months (0 otherwise)."""
    if starts.day != 1 or (ends + dt.timedelta(days=1)).day != 1:
        return 0
    return (ends.year - starts.year) * 12 + ends.month - starts.month + 1


def _parent_path(path: str) -> str:
    parts = path.strip("/").split("/")
    return "/" + "/".join(parts[:-1]) + "/" if len(parts) > 1 else "/"
