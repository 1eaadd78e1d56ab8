"""The demo county's duty attendance: the county's hours, a roster for every village (its
branch's secretary and village cadres, five at most) and a month of history, so that the
console's duty pages are full on `make run`.

The history is made the way a real month is: sightings by the village's camera (an
arrival, a departure, now and then a long absence in the middle) and approved leave, then
the duty watch judges each date and closes the weeks and months that ended. The days,
alerts and reports are the watch's, not written by hand.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.database import Database
from db.models import (
    DutyCadre,
    DutyHoursRule,
    DutyLeave,
    DutySighting,
    Member,
    OrgKind,
    OrgUnit,
)

from .rules import LeaveKind
from .store import DutyClock
from .watch import DutyWatch

HISTORY_DAYS = 30
START, END = dt.time(8, 30), dt.time(17, 30)
CADRES_PER_VILLAGE = 5
# the post a roster shows, by the member's first post in the branch (db.models.Post)
POST_NAMES = {
    "secretary": "党支部书记",
    "deputy_secretary": "党支部副书记",
    "committee_member": "支委委员",
    "village_cadre": "村委委员",
}
DEMO_CAMERA = "demo"  # a sighting's camera: no camera row, no pictures
_CHUNK = 5_000

# how a cadre's day goes, in a month of the demo: most on time, a few late, absent or away
_DAYS = (
    ("on_time", 0.86),
    ("late", 0.05),
    ("absent", 0.02),
    ("gap", 0.02),
    ("leave", 0.04),
    ("field_duty", 0.01),
)


@dataclass
class _Cadre:
    member_id: int
    village_id: int
    org_path: str


def _at(date: dt.date, time: dt.time, minutes: float) -> dt.datetime:
    return dt.datetime.combine(date, time) + dt.timedelta(minutes=minutes)


async def _roster(session: AsyncSession) -> list[_Cadre]:
    """Each village's secretary and cadres (members of its branch with a post)."""
    villages = {
        unit.path: unit
        for unit in await session.scalars(select(OrgUnit).where(OrgUnit.kind == OrgKind.VILLAGE))
    }
    picked: dict[int, list[tuple[int, int, str]]] = {}
    rows = await session.execute(
        select(Member.id, Member.org_path, Member.posts).order_by(Member.id)
    )
    order = list(POST_NAMES)
    for member_id, path, posts in rows:
        held = [p for p in (posts or []) if p in POST_NAMES]
        if not held:
            continue
        village_path = "/".join(path.split("/")[:4]) + "/"  # /county/town/village/
        village = villages.get(village_path)
        if village is None:
            continue
        first = min(order.index(p) for p in held)
        picked.setdefault(village.id, []).append((first, member_id, order[first]))
    by_id = {unit.id: unit for unit in villages.values()}
    cadres, rows_out = [], []
    for village_id, people in picked.items():
        village = by_id[village_id]
        for _, member_id, post in sorted(people)[:CADRES_PER_VILLAGE]:
            cadres.append(_Cadre(member_id, village_id, village.path))
            rows_out.append(
                {
                    "member_id": member_id,
                    "village_id": village_id,
                    "org_path": village.path,
                    "post": POST_NAMES[post],
                    "first_secretary": False,
                }
            )
    for start in range(0, len(rows_out), _CHUNK):
        await session.execute(insert(DutyCadre), rows_out[start : start + _CHUNK])
    return cadres


def _history(
    rng: random.Random, clock: DutyClock, cadres: list[_Cadre], dates: list[dt.date]
) -> tuple[list[dict], list[dict]]:
    """The sightings and leaves of each cadre's due dates."""
    kinds, weights = zip(*_DAYS, strict=True)
    sightings: list[dict] = []
    leaves: list[dict] = []

    def seen(cadre: _Cadre, first: dt.datetime, last: dt.datetime) -> None:
        sightings.append(
            {
                "member_id": cadre.member_id,
                "village_id": cadre.village_id,
                "org_path": cadre.org_path,
                "camera": DEMO_CAMERA,
                "first_at": clock.utc(first),
                "last_at": clock.utc(last),
                "similarity": round(rng.uniform(0.5, 0.8), 3),
            }
        )

    for date in dates:
        for cadre in cadres:
            kind = rng.choices(kinds, weights)[0]
            if kind in ("leave", "field_duty"):
                leaves.append(
                    {
                        "member_id": cadre.member_id,
                        "org_path": cadre.org_path,
                        "kind": LeaveKind(kind),
                        "starts_at": clock.utc(_at(date, START, -30)),
                        "ends_at": clock.utc(_at(date, END, 30)),
                        "reason": "事假" if kind == "leave" else "到镇里参加培训",
                        "approver": "镇组织委员",
                        "recorded_by": "demo",
                    }
                )
                continue
            if kind == "absent":
                continue
            arrive = rng.uniform(-25, 8) if kind != "late" else rng.uniform(12, 100)
            leave = rng.uniform(-5, 40)
            if kind == "gap":  # out of the room for an hour and a half in the middle
                seen(cadre, _at(date, START, arrive), _at(date, dt.time(11), 0))
                seen(cadre, _at(date, dt.time(12, 30), 0), _at(date, END, leave))
            else:
                seen(cadre, _at(date, START, arrive), _at(date, END, leave))
    return sightings, leaves


async def create_demo_duty(
    database: Database,
    *,
    zone: ZoneInfo,
    today: dt.date | None = None,
    days: int = HISTORY_DAYS,
    seed: int = 2026,
    progress: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Hours, rosters and `days` of history up to yesterday, judged by the duty watch.
    Returns the counts."""
    say = progress or (lambda _: None)
    clock = DutyClock(zone)
    today = today or clock.today()
    rng = random.Random(seed)
    async with database.session() as session, session.begin():
        county = await session.scalar(select(OrgUnit).where(OrgUnit.kind == OrgKind.COUNTY))
        if county is None:
            return {"duty_cadres": 0}
        session.add(
            DutyHoursRule(
                org_id=county.id,
                org_path=county.path,
                weekdays=[0, 1, 2, 3, 4],
                start_time=START,
                end_time=END,
                grace_min=10,
                absent_after_min=120,
                max_gap_min=60,
                updated_by="demo",
            )
        )
        cadres = await _roster(session)
        dates = [
            today - dt.timedelta(days=n)
            for n in range(days, 0, -1)
            if (today - dt.timedelta(days=n)).weekday() < 5
        ]
        sightings, leaves = _history(rng, clock, cadres, dates)
        for start in range(0, len(sightings), _CHUNK):
            await session.execute(insert(DutySighting), sightings[start : start + _CHUNK])
        for start in range(0, len(leaves), _CHUNK):
            await session.execute(insert(DutyLeave), leaves[start : start + _CHUNK])
    say(f"duty: {len(cadres)} cadres, {len(sightings)} sightings, {len(leaves)} leaves")
    # the watch judges each date as it would have that evening, then closes what ended
    watch = DutyWatch(database, clock)
    alerts = reports = 0
    for n in range(days, 0, -1):
        date = today - dt.timedelta(days=n)
        run = await watch.judge_date(date, clock.utc(_at(date, dt.time(23, 59), 0)))
        alerts += len(run.alerts)
        reports += len(await watch.close_periods(date))
        say(f"duty: judged {date}")
    return {
        "duty_cadres": len(cadres),
        "duty_dates": len(dates),
        "duty_sightings": len(sightings),
        "duty_alerts": alerts,
        "duty_reports": reports,
    }
