"""The duty day's rules (db/duty/rules.py): hours by unit and season, the calendar,
leave, late and absent at the right minute, gaps."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from db.duty.rules import (
    Absence,
    CalendarKind,
    DayStatus,
    DutyHours,
    DutyRuleError,
    HoursRule,
    LeaveKind,
    check_absences,
    hours_on,
    judge_day,
    merge_sightings,
    plan_day,
)

WEEKDAYS = frozenset(range(5))
COUNTY = HoursRule("/1/", DutyHours(WEEKDAYS, dt.time(8, 30), dt.time(17, 30)))
# summer hours for the whole county, and one village with its own all-year hours
SUMMER = HoursRule(
    "/1/",
    DutyHours(WEEKDAYS, dt.time(8, 0), dt.time(18, 0)),
    season=((5, 1), (9, 30)),
)
VILLAGE_OWN = HoursRule(
    "/1/2/3/", DutyHours(frozenset(range(6)), dt.time(9, 0), dt.time(17, 0), grace_min=5)
)
RULES = [COUNTY, SUMMER, VILLAGE_OWN]
MONDAY = dt.date(2026, 3, 2)


def at(date: dt.date, hh: int, mm: int = 0) -> dt.datetime:
    return dt.datetime.combine(date, dt.time(hh, mm))


def test_the_deepest_unit_wins_and_a_season_wins_within_a_unit():
    assert hours_on(RULES, "/1/2/4/", dt.date(2026, 3, 2)).start == dt.time(8, 30)
    assert hours_on(RULES, "/1/2/4/", dt.date(2026, 7, 1)).start == dt.time(8, 0)
    # the village's own all-year rule beats the county's summer
    assert hours_on(RULES, "/1/2/3/", dt.date(2026, 7, 1)).start == dt.time(9, 0)
    assert hours_on(RULES, "/9/", MONDAY) is None  # another county: no rule


def test_a_winter_season_wraps_the_new_year():
    winter = HoursRule(
        "/1/", DutyHours(WEEKDAYS, dt.time(9, 0), dt.time(17, 0)), season=((11, 1), (2, 28))
    )
    assert winter.in_season(dt.date(2026, 12, 31)) and winter.in_season(dt.date(2027, 1, 15))
    assert not winter.in_season(dt.date(2027, 3, 1))


def test_holidays_and_make_up_days():
    saturday = dt.date(2026, 3, 7)
    calendar = {MONDAY: CalendarKind.HOLIDAY, saturday: CalendarKind.WORKDAY}
    assert plan_day([COUNTY], calendar, "/1/2/4/", MONDAY).hours is None
    assert plan_day([COUNTY], calendar, "/1/2/4/", saturday).hours is not None
    assert plan_day([COUNTY], {}, "/1/2/4/", saturday).hours is None
    assert plan_day([COUNTY], {}, "/1/2/4/", MONDAY).hours is not None


def test_late_and_absent_at_the_right_minute():
    plan = plan_day([COUNTY], {}, "/1/2/4/", MONDAY)  # 08:30, grace 10, cut-off 120
    assert judge_day(plan, [], at(MONDAY, 8, 39)).status is DayStatus.PENDING
    assert judge_day(plan, [], at(MONDAY, 8, 39)).next_change == at(MONDAY, 8, 40)
    late = judge_day(plan, [], at(MONDAY, 8, 40))
    assert late.status is DayStatus.LATE and late.next_change == at(MONDAY, 10, 30)
    assert judge_day(plan, [], at(MONDAY, 10, 29)).status is DayStatus.LATE
    assert judge_day(plan, [], at(MONDAY, 10, 30)).status is DayStatus.ABSENT


def test_arrival_decides_on_time_or_late_and_late_minutes_count_from_the_start():
    plan = plan_day([COUNTY], {}, "/1/2/4/", MONDAY)
    early = judge_day(plan, [(at(MONDAY, 7, 50), at(MONDAY, 12, 0))], at(MONDAY, 12, 0))
    assert early.status is DayStatus.ON_TIME and early.arrived == at(MONDAY, 7, 50)
    edge = judge_day(plan, [(at(MONDAY, 8, 40), at(MONDAY, 9, 0))], at(MONDAY, 9, 0))
    assert edge.status is DayStatus.ON_TIME
    late = judge_day(plan, [(at(MONDAY, 9, 5), at(MONDAY, 17, 0))], at(MONDAY, 18, 0))
    assert late.status is DayStatus.LATE and late.late_min == 35
    # after the cut-off: absent, with the arrival kept on the record
    after = judge_day(plan, [(at(MONDAY, 11, 0), at(MONDAY, 17, 0))], at(MONDAY, 18, 0))
    assert after.status is DayStatus.ABSENT and after.arrived == at(MONDAY, 11, 0)


def test_a_sighting_not_yet_happened_does_not_count():
    """After a clock step back, a sighting stamped later than now waits for its time."""
    plan = plan_day([COUNTY], {}, "/1/2/4/", MONDAY)
    result = judge_day(plan, [(at(MONDAY, 9, 0), at(MONDAY, 9, 30))], at(MONDAY, 8, 45))
    assert result.status is DayStatus.LATE


def test_leave_covers_the_day_or_moves_its_start():
    whole = Absence(LeaveKind.LEAVE, at(MONDAY, 0), at(MONDAY, 23, 59))
    plan = plan_day([COUNTY], {}, "/1/2/4/", MONDAY, [whole])
    assert judge_day(plan, [], at(MONDAY, 20)).status is DayStatus.LEAVE
    field = Absence(LeaveKind.FIELD_DUTY, at(MONDAY, 8), at(MONDAY, 18))
    plan = plan_day([COUNTY], {}, "/1/2/4/", MONDAY, [field])
    assert judge_day(plan, [], at(MONDAY, 20)).status is DayStatus.FIELD_DUTY
    morning = Absence(LeaveKind.LEAVE, at(MONDAY, 8), at(MONDAY, 12))
    plan = plan_day([COUNTY], {}, "/1/2/4/", MONDAY, [morning])
    assert judge_day(plan, [], at(MONDAY, 12, 9)).status is DayStatus.PENDING
    assert judge_day(plan, [], at(MONDAY, 12, 10)).status is DayStatus.LATE
    result = judge_day(plan, [(at(MONDAY, 12, 5), at(MONDAY, 17))], at(MONDAY, 18))
    assert result.status is DayStatus.ON_TIME and result.due_from == at(MONDAY, 12)
    # a leave on another day does not touch this one
    other = Absence(LeaveKind.LEAVE, at(MONDAY, 0) - dt.timedelta(days=3), at(MONDAY, 0))
    assert plan_day([COUNTY], {}, "/1/2/4/", MONDAY, [other]).absences == ()


def test_gaps_longer_than_the_setting_are_recorded_and_taken_off_the_time_in_the_room():
    plan = plan_day([COUNTY], {}, "/1/2/4/", MONDAY)  # max gap 60 min
    sightings = [
        (at(MONDAY, 8, 20), at(MONDAY, 10, 0)),
        (at(MONDAY, 10, 40), at(MONDAY, 11, 0)),  # a 40-minute gap: not recorded
        (at(MONDAY, 14, 0), at(MONDAY, 17, 40)),  # a 3-hour gap: recorded
    ]
    result = judge_day(plan, sightings, at(MONDAY, 18))
    assert result.gaps == [(at(MONDAY, 11, 0), at(MONDAY, 14, 0))]
    assert result.departed == at(MONDAY, 17, 40)
    assert result.present_min == (9 * 60 + 20) - 180


def test_overlapping_leave_is_refused():
    a = Absence(LeaveKind.LEAVE, at(MONDAY, 8), at(MONDAY, 12))
    b = Absence(LeaveKind.FIELD_DUTY, at(MONDAY, 11), at(MONDAY, 17))
    with pytest.raises(DutyRuleError, match="overlaps"):
        check_absences([a, b])
    check_absences([a, Absence(LeaveKind.LEAVE, at(MONDAY, 12), at(MONDAY, 17))])
    with pytest.raises(DutyRuleError, match="end after"):
        check_absences([Absence(LeaveKind.LEAVE, at(MONDAY, 12), at(MONDAY, 12))])


def test_bad_rules_are_refused():
    with pytest.raises(DutyRuleError):
        DutyHours(WEEKDAYS, dt.time(18), dt.time(8))
    with pytest.raises(DutyRuleError):
        DutyHours(frozenset({7}), dt.time(8), dt.time(18))
    with pytest.raises(DutyRuleError):
        DutyHours(WEEKDAYS, dt.time(8), dt.time(18), grace_min=200, absent_after_min=120)
    with pytest.raises(DutyRuleError):
        HoursRule("/1/", COUNTY.hours, season=((2, 30), (3, 1)))


minutes = st.integers(min_value=0, max_value=24 * 60 - 1)


@given(st.lists(st.tuples(minutes, minutes), max_size=8), minutes)
def test_a_day_judged_later_never_gets_better_without_new_sightings(spans, now_min):
    """Judged again later with the same sightings, a day only moves forward: pending →
    late → absent, and an arrival's verdict stays."""
    plan = plan_day([COUNTY], {}, "/1/2/4/", MONDAY)
    sightings = [
        (at(MONDAY, 0) + dt.timedelta(minutes=a), at(MONDAY, 0) + dt.timedelta(minutes=b))
        for a, b in spans
    ]
    order = [DayStatus.PENDING, DayStatus.ON_TIME, DayStatus.LATE, DayStatus.ABSENT]
    now = at(MONDAY, 0) + dt.timedelta(minutes=now_min)
    first = judge_day(plan, sightings, now)
    second = judge_day(plan, sightings, now + dt.timedelta(minutes=30))
    if first.status is not DayStatus.PENDING:
        assert order.index(second.status) >= order.index(first.status)
    assert first.present_min <= 24 * 60
    merged = merge_sightings(sightings)
    assert all(a[1] < b[0] for a, b in itertools.pairwise(merged))


def test_a_tv_camera_watches_its_schedule_or_the_duty_hours_with_a_lead_and_a_tail():
    from db.duty.rules import CameraSchedule, camera_window
    from db.duty.store import DutyError, schedule_of

    hours = DutyHours(frozenset(range(5)), dt.time(8, 30), dt.time(17, 30))
    rules = [HoursRule("/1/", hours)]
    monday, saturday = dt.date(2026, 12, 7), dt.date(2026, 12, 12)
    assert camera_window(None, rules, {}, "/1/2/3/", monday) == (
        dt.datetime(2026, 12, 7, 8, 0),
        dt.datetime(2026, 12, 7, 18, 0),
    )
    assert camera_window(None, rules, {}, "/1/2/3/", saturday) is None
    # a make-up working day is due, so the camera watches; a holiday it does not
    assert camera_window(None, rules, {saturday: CalendarKind.WORKDAY}, "/1/2/3/", saturday)
    assert camera_window(None, rules, {monday: CalendarKind.HOLIDAY}, "/1/2/3/", monday) is None
    own = schedule_of({"weekdays": [5, 6], "from": "07:00", "to": "12:00"})
    assert own == CameraSchedule(frozenset({5, 6}), dt.time(7), dt.time(12))
    assert camera_window(own, rules, {}, "/1/2/3/", monday) is None
    assert camera_window(own, rules, {}, "/1/2/3/", saturday)[1] == dt.datetime(2026, 12, 12, 12)
    assert schedule_of({}) is None  # the duty hours
    for bad in (
        {"from": "18:00", "to": "08:00"},
        {"from": "8 o'clock", "to": "12:00"},
        {"weekdays": [7], "from": "08:00", "to": "12:00"},
        {"weekdays": "weekdays", "from": "08:00", "to": "12:00"},
        {"from": "08:00", "to": "12:00", "night": True},
    ):
        with pytest.raises(DutyError) as refused:
            schedule_of(bad)
        assert refused.value.code == "bad_schedule"
