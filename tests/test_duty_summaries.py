"""A quarter of duty, day by day through the watch, on SQLite and PostgreSQL: holidays
and a make-up day, late arrivals, absences, leave and a correction; the summary per
cadre, village and town, the rankings, and the reports closed at each period's end."""

from __future__ import annotations

import datetime as dt
import io

from openpyxl import load_workbook
from sqlalchemy import select
from test_duty_watch import ZONE, FakeNow, duty_village, local, sighting

from db.duty.rules import CalendarKind, DayStatus, LeaveKind
from db.duty.store import DutyClock, add_cadre, add_leave, correct_day, set_calendar_day
from db.duty.summaries import (
    Figures,
    Line,
    period_bounds,
    periods_ending,
    rank,
    summarise,
    whole_months,
)
from db.duty.watch import DutyWatch
from db.duty.workbook import summary_workbook
from db.models import DutyDay, DutyReport, Gender, Member

Q1 = (dt.date(2026, 1, 1), dt.date(2026, 3, 31))
HOLIDAYS = [dt.date(2026, 1, 1), dt.date(2026, 1, 2)] + [
    dt.date(2026, 2, 16) + dt.timedelta(days=n) for n in range(7)
]
MAKE_UP = dt.date(2026, 2, 14)  # a Saturday worked for the Spring Festival


def test_periods():
    assert period_bounds("week", dt.date(2026, 3, 4)) == (dt.date(2026, 3, 2), dt.date(2026, 3, 8))
    assert period_bounds("month", dt.date(2026, 2, 10)) == (
        dt.date(2026, 2, 1),
        dt.date(2026, 2, 28),
    )
    assert period_bounds("quarter", dt.date(2026, 11, 5)) == (
        dt.date(2026, 10, 1),
        dt.date(2026, 12, 31),
    )
    assert [p for p, *_ in periods_ending(dt.date(2026, 3, 31))] == ["month", "quarter"]
    assert [p for p, *_ in periods_ending(dt.date(2026, 5, 31))] == ["week", "month"]


def test_whole_months():
    assert whole_months(dt.date(2026, 1, 1), dt.date(2026, 3, 31)) == 3
    assert whole_months(dt.date(2026, 2, 1), dt.date(2026, 2, 28)) == 1
    assert whole_months(dt.date(2026, 3, 2), dt.date(2026, 3, 8)) == 0


def test_ranking_shares_ties_and_puts_nobody_due_last():
    def line(name, due, on_time):
        return Line(0, name, Figures(days_due=due, on_time=on_time))

    ranked = rank([line("c", 10, 9), line("a", 10, 10), line("b", 10, 9), line("z", 0, 0)])
    assert [(x.name, x.rank) for x in ranked] == [("a", 1), ("b", 2), ("c", 2), ("z", None)]


def due_days() -> list[dt.date]:
    day, out = Q1[0], []
    while day <= Q1[1]:
        if day == MAKE_UP or (day.weekday() < 5 and day not in HOLIDAYS):
            out.append(day)
        day += dt.timedelta(days=1)
    return out


async def test_a_quarter_summed_up_ranked_and_reported(database):
    orgs, (wang, li) = await duty_village(database)
    async with database.session() as session:
        for holiday in HOLIDAYS:
            await set_calendar_day(session, orgs["county"], holiday, CalendarKind.HOLIDAY, "节日")
        await set_calendar_day(session, orgs["county"], MAKE_UP, CalendarKind.WORKDAY, "调休")
        zhao_member = Member(
            branch_id=orgs["branch_b1"].id,
            org_path=orgs["branch_b1"].path,
            name="赵书记",
            gender=Gender.FEMALE,
        )
        session.add(zhao_member)
        await session.flush()
        zhao = await add_cadre(
            session,
            orgs["village_b1"],
            zhao_member,
            post="第一书记",
            first_secretary=True,
            required_days=20,
        )
        await session.commit()
    due = due_days()
    wang_late = set(due[5:10])  # 5 days at 08:50: 20 minutes late each
    wang_absent = {due[20], due[21]}
    wang_leave = {due[30], due[31], due[32]}
    li_absent = {due[40]}
    zhao_absent = set(due[::2])
    clock = DutyClock(ZONE, FakeNow(dt.datetime(2025, 12, 31, 12)))
    async with database.session() as session:
        for day in sorted(wang_leave):
            await add_leave(
                session,
                clock,
                wang,
                kind=LeaveKind.LEAVE,
                starts=local(0, 0, day),
                ends=local(23, 59, day),
                reason="病假",
                approver="镇组织委员",
                actor="test",
            )
        await session.commit()
    for day in due:
        if day not in wang_absent | wang_leave:
            arrive = (8, 50) if day in wang_late else (8, 20)
            await sighting(database, wang, local(*arrive, day), local(17, 40, day))
        if day not in li_absent:
            await sighting(database, li, local(8, 25, day), local(12, 0, day))
            await sighting(database, li, local(14, 0, day), local(17, 35, day))
        if day not in zhao_absent:
            await sighting(database, zhao, local(8, 0, day), local(17, 30, day))
    now = FakeNow(dt.datetime(2026, 1, 1, 23))
    watch = DutyWatch(database, DutyClock(ZONE, now))
    day = Q1[0]
    while day <= Q1[1] + dt.timedelta(days=1):
        now.at = local(23, 0, day)
        await watch.run_once()
        if day == due[21]:  # the town's clerk corrects one of Wang's absences
            async with database.session() as session:
                record = await session.scalar(
                    select(DutyDay).where(DutyDay.member_id == wang.member_id, DutyDay.date == day)
                )
                await correct_day(
                    session,
                    record,
                    DayStatus.FIELD_DUTY,
                    reason="到县里参加培训，有通知为证",
                    actor="account:2",
                    actor_name="镇文书",
                )
                await session.commit()
        day += dt.timedelta(days=1)

    async with database.session() as session:
        summary = await summarise(session, orgs["county"], *Q1)
    cadres = {line.name: line for line in summary.cadres}
    w = cadres["王主任"].figures
    assert w.days_due == len(due) - 3 and w.leave == 3
    assert (w.late, w.late_min, w.absent, w.field_duty) == (5, 100, 1, 1)
    assert w.on_time == len(due) - 3 - 5 - 2
    assert w.present_min == (len(due) - 5) * (9 * 60 + 20) - 5 * 30
    li_figures = cadres["李委员"].figures
    assert li_figures.absent == 1 and li_figures.on_time == len(due) - 1
    assert li_figures.present_min == (len(due) - 1) * (215 + 215)  # the lunch gap is off
    z = cadres["赵书记"].figures
    assert z.absent == len(zhao_absent) and z.days_due == len(due)
    # a first secretary in the village about half the working days: 20 a month not met
    assert z.days_seen == len(due) - len(zhao_absent) < 60
    assert cadres["赵书记"].required_met is False and cadres["王主任"].required_met is None
    assert [line.name for line in summary.cadres] == ["李委员", "王主任", "赵书记"]
    assert [line.name for line in summary.villages] == ["A1村", "B1村"]
    assert [(line.name, line.rank) for line in summary.towns] == [("A镇", 1), ("B镇", 2)]
    assert summary.total.days_due == w.days_due + li_figures.days_due + z.days_due

    async with database.session() as session:
        reports = (await session.scalars(select(DutyReport))).all()
    quarter = [r for r in reports if r.period == "quarter" and r.starts == Q1[0]]
    assert {r.summary["org"]["name"] for r in quarter} == {"示范县", "A镇", "B镇"}
    county_report = next(r for r in quarter if r.summary["org"]["name"] == "示范县")
    assert county_report.summary["total"] == summary.total.to_json()
    months = {
        (r.starts, r.summary["org"]["name"])
        for r in reports
        if r.period == "month" and r.starts >= Q1[0]
    }
    assert (dt.date(2026, 2, 1), "A镇") in months and len(months) == 9
    sheet = load_workbook(io.BytesIO(summary_workbook(county_report.summary)))["村干部"]
    rows = list(sheet.iter_rows(min_row=3, values_only=True))
    assert [(r[3], r[2], r[1]) for r in rows] == [
        ("李委员", "A1村", "A镇"),
        ("王主任", "A1村", "A镇"),
        ("赵书记", "B1村", "B镇"),
    ]
    town_a = next(r for r in quarter if r.summary["org"]["name"] == "A镇")
    assert [c["name"] for c in town_a.summary["cadres"]] == ["李委员", "王主任"]
