"""The duty watch on SQLite and PostgreSQL: days judged with a controllable clock, late
and absent alerts once each at the right minute, rosters and leave refused when they
cannot hold, corrections that keep the machine's record, and webhook deliveries with
retries against a real local HTTP receiver."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from sqlalchemy import select

from db.duty.rules import DayStatus, LeaveKind
from db.duty.store import DutyClock, DutyError, add_cadre, add_leave, correct_day, set_hours
from db.duty.watch import DutyWatch
from db.models import (
    DeliveryStatus,
    DutyAlert,
    DutyCadre,
    DutyDay,
    DutySighting,
    Gender,
    Member,
    NotificationDelivery,
)
from signaling.notifications import RetryPolicy, Webhook, WebhookSender, signature

from apiclient import seed_small_county

ZONE = ZoneInfo("Asia/Shanghai")
MONDAY = dt.date(2026, 3, 2)


class FakeNow:
    """The watch's clock, moved by the test (the wall clock is not)."""

    def __init__(self, local: dt.datetime) -> None:
        self.at = local.replace(tzinfo=ZONE).astimezone(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.at

    def set(self, hh: int, mm: int = 0, date: dt.date = MONDAY) -> None:
        self.at = dt.datetime.combine(date, dt.time(hh, mm), ZONE).astimezone(dt.UTC)


def local(hh: int, mm: int = 0, date: dt.date = MONDAY) -> dt.datetime:
    return dt.datetime.combine(date, dt.time(hh, mm), ZONE).astimezone(dt.UTC)


async def duty_village(database):
    """The county's hours (Mon-Fri 08:30-17:30, grace 10, absent at 10:30), and village
    A1 with two cadres on its roster."""
    orgs = await seed_small_county(database)
    async with database.session() as session:
        await set_hours(
            session,
            orgs["county"],
            weekdays=range(5),
            start=dt.time(8, 30),
            end=dt.time(17, 30),
            actor="test",
        )
        cadres = []
        for name, post in (("王主任", "村委会主任"), ("李委员", "村委委员")):
            member = Member(
                branch_id=orgs["branch_a1"].id,
                org_path=orgs["branch_a1"].path,
                name=name,
                gender=Gender.MALE,
            )
            session.add(member)
            await session.flush()
            cadres.append(await add_cadre(session, orgs["village_a1"], member, post=post))
        await session.commit()
    return orgs, cadres


async def sighting(database, cadre: DutyCadre, first: dt.datetime, last: dt.datetime) -> None:
    async with database.session() as session:
        session.add(
            DutySighting(
                member_id=cadre.member_id,
                village_id=cadre.village_id,
                org_path=cadre.org_path,
                camera="camera:1",
                first_at=first,
                last_at=last,
                similarity=0.8,
            )
        )
        await session.commit()


async def days(database, date: dt.date = MONDAY) -> dict[int, DutyDay]:
    async with database.session() as session:
        rows = await session.scalars(select(DutyDay).where(DutyDay.date == date))
        return {d.member_id: d for d in rows}


async def test_late_and_absent_are_raised_once_each_at_the_right_minute(database):
    _, (wang, li) = await duty_village(database)
    now = FakeNow(dt.datetime(2026, 3, 2, 8, 0))
    told: list[dict] = []

    async def after_commit(events: list[dict]) -> None:
        # Monday's first run closes the week that ended on Sunday: its reports are not
        # what this test is about
        told.extend(e for e in events if e["event"] != "duty.report")

    watch = DutyWatch(database, DutyClock(ZONE, now), after_commit=after_commit)
    await sighting(database, wang, local(8, 20), local(12, 0))
    now.set(8, 39)
    runs = await watch.run_once()
    assert runs[-1].next_change == local(8, 40)  # the watch knows to wake for Li's deadline
    state = await days(database)
    assert state[wang.member_id].status is DayStatus.ON_TIME
    assert state[li.member_id].status is DayStatus.PENDING and not told
    now.set(8, 40)
    await watch.run_once()
    assert [(a["event"], a["member"]["name"]) for a in told] == [("duty.late", "李委员")]
    assert told[0]["village"]["name"] == "A1村"
    await watch.run_once()  # judged again: nothing raised twice
    now.set(10, 29)
    await watch.run_once()
    assert len(told) == 1
    now.set(10, 30)
    await watch.run_once()
    assert [a["event"] for a in told] == ["duty.late", "duty.absent"]
    # a restart (a new watch) and a clock stepped back raise nothing again
    now.set(9, 0)
    await DutyWatch(database, DutyClock(ZONE, now), after_commit=after_commit).run_once()
    assert len(told) == 2
    async with database.session() as session:
        alerts = (await session.scalars(select(DutyAlert))).all()
    assert sorted(a.kind.value for a in alerts) == ["absent", "late"]


async def test_leave_excuses_and_a_rest_day_raises_nothing(database):
    _, (wang, li) = await duty_village(database)
    clock = DutyClock(ZONE, FakeNow(dt.datetime(2026, 3, 2, 7, 0)))
    async with database.session() as session:
        await add_leave(
            session,
            clock,
            wang,
            kind=LeaveKind.LEAVE,
            starts=local(0),
            ends=local(23, 59),
            reason="病假",
            approver="张书记",
            actor="test",
        )
        await add_leave(
            session,
            clock,
            li,
            kind=LeaveKind.FIELD_DUTY,
            starts=local(8),
            ends=local(12),
            reason="到镇里开会",
            approver="张书记",
            actor="test",
        )
        with pytest.raises(DutyError) as refused:
            await add_leave(
                session,
                clock,
                li,
                kind=LeaveKind.LEAVE,
                starts=local(11),
                ends=local(13),
                reason="事假",
                approver="张书记",
                actor="test",
            )
        assert refused.value.code == "leave_overlaps"
        await session.commit()
    now = FakeNow(dt.datetime(2026, 3, 2, 11, 0))
    watch = DutyWatch(database, DutyClock(ZONE, now))
    runs = await watch.run_once()
    assert not runs[-1].alerts  # Li's duty starts at 12:00, after the field duty
    state = await days(database)
    assert state[wang.member_id].status is DayStatus.LEAVE
    assert state[li.member_id].status is DayStatus.PENDING
    now.set(12, 10)
    assert [a["member"]["name"] for a in (await watch.run_once())[-1].alerts] == ["李委员"]
    saturday = dt.date(2026, 3, 7)
    now.set(12, 0, saturday)
    runs = await watch.run_once()
    assert [r.date for r in runs] == [MONDAY + dt.timedelta(days=n) for n in range(6)]
    assert not runs[-1].alerts and not await days(database, saturday)  # nothing recorded
    # the days in between were judged again: Monday's late is final, an absence
    assert (await days(database))[li.member_id].status is DayStatus.ABSENT


async def test_a_member_on_two_rosters_is_refused_and_a_sighting_elsewhere_does_not_count(
    database,
):
    orgs, (wang, _) = await duty_village(database)
    async with database.session() as session:
        member = await session.get(Member, wang.member_id)
        with pytest.raises(DutyError) as refused:
            await add_cadre(session, orgs["village_b1"], member, post="村委委员")
        assert refused.value.code == "cadre_in_other_village"
        with pytest.raises(DutyError):
            await add_cadre(session, orgs["town_a"], member, post="x")
    # seen by village B1's camera: not at their own duty post
    async with database.session() as session:
        session.add(
            DutySighting(
                member_id=wang.member_id,
                village_id=orgs["village_b1"].id,
                org_path=orgs["village_b1"].path,
                camera="camera:9",
                first_at=local(8, 0),
                last_at=local(9, 0),
                similarity=0.8,
            )
        )
        await session.commit()
    now = FakeNow(dt.datetime(2026, 3, 2, 9, 0))
    await DutyWatch(database, DutyClock(ZONE, now)).run_once()
    assert (await days(database))[wang.member_id].status is DayStatus.LATE


async def test_a_correction_keeps_the_machine_record_and_stops_alerts(database):
    _, (_, li) = await duty_village(database)
    now = FakeNow(dt.datetime(2026, 3, 2, 8, 50))
    watch = DutyWatch(database, DutyClock(ZONE, now))
    assert len((await watch.run_once())[-1].alerts) == 2
    async with database.session() as session:
        day = await session.scalar(select(DutyDay).where(DutyDay.member_id == li.member_id))
        with pytest.raises(DutyError):
            await correct_day(
                session, day, DayStatus.FIELD_DUTY, reason=" ", actor="a", actor_name="a"
            )
        await correct_day(
            session,
            day,
            DayStatus.FIELD_DUTY,
            reason="摄像头断电，镇里核实在岗",
            actor="account:2",
            actor_name="镇文书",
        )
        await session.commit()
    now.set(10, 40)
    alerts = (await watch.run_once())[-1].alerts
    assert [a["member"]["name"] for a in alerts] == ["王主任"]  # Li's day is corrected
    day = (await days(database))[li.member_id]
    assert day.status is DayStatus.FIELD_DUTY and day.machine_status is DayStatus.ABSENT


async def test_webhook_deliveries_are_signed_retried_and_recorded(database, unused_tcp_port):
    await duty_village(database)
    received: list[tuple[dict, dict]] = []
    answers = [503, 200]  # the gateway is down at first, then takes it

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        received.append((dict(request.headers), json.loads(body)))
        expected = signature("s3cret", request.headers["X-Lighthouse-Timestamp"], body)
        assert request.headers["X-Lighthouse-Signature"] == expected
        return web.Response(status=answers.pop(0) if answers else 200)

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    try:
        hooks = (
            Webhook(
                "sms",
                f"http://127.0.0.1:{unused_tcp_port}/hook",
                "s3cret",
                events=("duty.late", "duty.absent"),
            ),
            Webhook("nowhere", "http://127.0.0.1:9/hook", "x", events=("duty.absent",)),
        )
        sender = WebhookSender(
            database, hooks, RetryPolicy(first_retry_s=0.2, max_attempts=3, timeout_s=2)
        )

        async def on_alert(session, event: dict) -> None:
            await sender.enqueue(session, event["event"], event["org_path"], event)

        now = FakeNow(dt.datetime(2026, 3, 2, 10, 30))
        watch = DutyWatch(database, DutyClock(ZONE, now), on_alert=on_alert)
        await watch.run_once()  # Wang and Li absent: two deliveries per webhook
        for _ in range(3):
            await sender.send_due()
            await asyncio.sleep(0.6)
        await sender.close()
    finally:
        await runner.cleanup()
    async with database.session() as session:
        rows = (await session.scalars(select(NotificationDelivery))).all()
    sms = [r for r in rows if r.target == "sms"]
    assert {r.status for r in sms} == {DeliveryStatus.DELIVERED}
    assert sorted(r.attempts for r in sms) == [1, 2]  # the first try met the 503
    nowhere = [r for r in rows if r.target == "nowhere"]
    assert len(nowhere) == 2 and {r.status for r in nowhere} == {DeliveryStatus.FAILED}
    assert {r.attempts for r in nowhere} == {3}
    assert all(r.last_error and "127.0.0.1" not in r.last_error for r in nowhere)
    deliveries = {h["X-Lighthouse-Delivery"] for h, _ in received}
    assert len(received) == 3 and len(deliveries) == 2  # the retry kept its delivery id
    assert {b["member"]["name"] for _, b in received} == {"王主任", "李委员"}
    assert all(b["event"] == "duty.absent" for _, b in received)


async def test_a_village_with_a_camera_and_no_cadres_judges_nothing_and_sums_to_zero(database):
    from db.duty.summaries import summarise

    orgs = await seed_small_county(database)
    now = FakeNow(dt.datetime(2026, 3, 2, 9, 0))
    runs = await DutyWatch(database, DutyClock(ZONE, now)).run_once()
    assert all(run.judged == 0 and not run.alerts for run in runs)
    async with database.session() as session:
        summary = await summarise(session, orgs["county"], MONDAY, MONDAY)
    assert summary.cadres == [] and summary.total.days_due == 0 and summary.total.rate is None
