"""The demo county: a consistent tree, members and TVs, the same for a seed, on both databases;
`lighthouse demo-data` and the county `serve --demo` loads."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from db.accounts import check_password
from db.database import Database
from db.demo_data import (
    AS_OF,
    COUNTY_VENUES,
    DemoDataError,
    create_demo_county,
    eighteenth_birthday,
    plan_county,
)
from db.duty.rules import DayStatus
from db.duty.store import DutyClock
from db.duty.watch import DutyWatch
from db.models import (
    CHILD_KINDS,
    DutyCadre,
    DutyDay,
    DutyReport,
    Member,
    MemberStatus,
    OrgKind,
    OrgUnit,
    Post,
    Role,
    StaffAccount,
    Terminal,
)
from db.tree import add_org
from lighthouse.demo import console_line, prepare_demo_county

from conftest import fresh_database

PASSWORD = "demo-password-123"
SMALL = {"towns": 3, "villages_per_town": 4, "members": 400, "seed": 7}
KINDS = ["sqlite", "postgresql"]
_MEMBER_COLUMNS = (
    "branch_id", "org_path", "name", "gender", "birth_date", "education", "joined_date",
    "status", "exempt_reason", "exempt_note", "posts", "phone",
)  # fmt: skip


async def _load(url: str, **size: int) -> dict[str, int]:
    database = Database(url)
    try:
        await database.migrate()
        return await create_demo_county(database, admin_password=PASSWORD, **size)
    finally:
        await database.close()


async def _snapshot(url: str) -> tuple[list, list, list]:
    """Everything but timestamps and member ids, in insertion order."""
    database = Database(url)
    try:
        async with database.session() as session:
            orgs = (await session.execute(select(OrgUnit).order_by(OrgUnit.id))).scalars()
            members = (await session.execute(select(Member).order_by(Member.id))).scalars()
            terminals = (await session.execute(select(Terminal).order_by(Terminal.id))).scalars()
            return (
                [(o.id, o.code, o.name, o.kind, o.parent_id, o.path, o.depth) for o in orgs],
                [tuple(getattr(m, column) for column in _MEMBER_COLUMNS) for m in members],
                [(t.org_id, t.org_path, t.name, t.kind, t.paired_at) for t in terminals],
            )
    finally:
        await database.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_small_county_is_consistent(kind, tmp_path):
    async with fresh_database(kind, tmp_path) as url:
        counts = await _load(url, **SMALL)
        assert {k: counts[k] for k in ("towns", "villages", "branches", "members")} == {
            "towns": 3,
            "villages": 12,
            "branches": 12,
            "members": 400,
        }
        assert counts["terminals"] == len(COUNTY_VENUES) + 3 + 12
        database = Database(url)
        try:
            async with database.session() as session:
                orgs = {o.id: o for o in (await session.execute(select(OrgUnit))).scalars()}
                members = list((await session.execute(select(Member))).scalars())
                terminals = list((await session.execute(select(Terminal))).scalars())
                accounts = list((await session.execute(select(StaffAccount))).scalars())

                # every path is the parent's path + own id, as db.tree.add_org makes it
                for org in orgs.values():
                    parent = orgs.get(org.parent_id) if org.parent_id else None
                    if parent is None:
                        assert org.kind is OrgKind.COUNTY and org.path == f"/{org.id}/"
                    else:
                        assert org.kind in CHILD_KINDS[parent.kind]
                        assert org.path == f"{parent.path}{org.id}/"
                        assert org.depth == parent.depth + 1
                assert len({o.code for o in orgs.values()}) == len(orgs)

                # every member sits at its branch (or party group) with that unit's path
                for member in members:
                    home = orgs[member.branch_id]
                    assert home.kind in (OrgKind.BRANCH, OrgKind.GROUP)
                    assert member.org_path == home.path
                    assert eighteenth_birthday(member.birth_date) <= member.joined_date <= AS_OF
                    assert set(member.posts) <= {p.value for p in Post}
                assert (
                    sum(m.status is MemberStatus.PROBATIONARY for m in members)
                    == counts["probationary"]
                )

                # every village: one branch holding exactly one secretary, one paired TV
                villages = [o for o in orgs.values() if o.kind is OrgKind.VILLAGE]
                assert len(villages) == 12
                for village in villages:
                    branches = [o for o in orgs.values() if o.parent_id == village.id]
                    assert [b.kind for b in branches] == [OrgKind.BRANCH]
                    in_branch = [m for m in members if m.org_path.startswith(branches[0].path)]
                    assert [Post.SECRETARY.value in m.posts for m in in_branch].count(True) == 1
                    tvs = [t for t in terminals if t.org_id == village.id]
                    assert len(tvs) == 1
                    assert tvs[0].name == f"{village.name}党群服务中心"
                    assert tvs[0].org_path == village.path
                    assert tvs[0].paired_at is not None and tvs[0].token_jti is None
                county_tvs = sorted(t.name for t in terminals if orgs[t.org_id].parent_id is None)
                assert county_tvs == sorted(COUNTY_VENUES)

                roles = {a.username: (a.role, orgs[a.org_id].kind) for a in accounts}
                assert roles == {
                    "admin": (Role.COUNTY_ADMIN, OrgKind.COUNTY),
                    "town01": (Role.TOWN_ADMIN, OrgKind.TOWN),
                    "town02": (Role.TOWN_ADMIN, OrgKind.TOWN),
                    "town03": (Role.TOWN_ADMIN, OrgKind.TOWN),
                }
                assert check_password(accounts[0].password_hash, PASSWORD)

                # ids were given explicitly: the database's own ids must carry on after them
                village = villages[0]
                added = await add_org(
                    session, parent=village, code="NEW-1", name="新支部", kind=OrgKind.BRANCH
                )
                await session.commit()
                assert added.id > max(orgs)
        finally:
            await database.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_the_same_seed_gives_the_same_county(kind, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with (
        fresh_database(kind, tmp_path / "a") as first,
        fresh_database(kind, tmp_path / "b") as second,
    ):
        assert await _load(first, **SMALL) == await _load(second, **SMALL)
        assert await _snapshot(first) == await _snapshot(second)


def test_another_seed_gives_another_county():
    one = plan_county(**SMALL)
    other = plan_county(**{**SMALL, "seed": 8})
    assert [m["name"] for m in one.members] != [m["name"] for m in other.members]
    assert plan_county(**SMALL).members == one.members


def test_the_full_county_is_shaped_like_a_real_one():
    county = plan_county()  # in memory only: no database
    counts = county.counts()
    assert counts["towns"] == 17 and 950 <= counts["villages"] <= 1050
    assert counts["members"] == 30_000 and counts["branches"] == counts["villages"]
    assert 0.03 <= counts["probationary"] / counts["members"] <= 0.07
    assert 0.06 <= counts["exempt"] / counts["members"] <= 0.10
    old = sum(m["birth_date"] < AS_OF.replace(year=AS_OF.year - 60) for m in county.members)
    assert old / counts["members"] > 0.4  # rural members are old
    reasons = [m["exempt_reason"] for m in county.members if m["exempt_reason"]]
    assert max(set(reasons), key=reasons.count) == "working_away"


@pytest.mark.parametrize("kind", KINDS)
async def test_refuses_a_database_that_has_an_org_tree(kind, tmp_path):
    async with fresh_database(kind, tmp_path) as url:
        await _load(url, **SMALL)
        before = await _snapshot(url)
        with pytest.raises(DemoDataError, match="already has an org tree"):
            await _load(url, **{**SMALL, "seed": 9})
        assert await _snapshot(url) == before


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lighthouse.cli", "demo-data", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_prints_one_json_line_and_refuses_a_second_load(tmp_path):
    url = f"sqlite:///{tmp_path}/cli/demo.db"  # the folder is made on the way
    first = _cli("--database-url", url, "--members", "300", "--towns", "3", "--seed", "5")
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert len(lines) == 1, first.stdout
    counts = json.loads(lines[0])
    assert {"towns", "villages", "branches", "members", "terminals"} <= set(counts)
    assert (counts["towns"], counts["members"]) == (3, 300)
    assert counts["branches"] == counts["villages"] >= 3
    assert "password" in first.stderr  # a generated password is shown, off stdout

    again = _cli("--database-url", url, "--members", "300", "--admin-password", "x" * 12)
    assert again.returncode == 2
    assert again.stdout == ""
    assert "already has an org tree" in again.stderr


def test_cli_rejects_a_county_too_small_for_its_villages(tmp_path):
    url = f"sqlite:///{tmp_path}/x.db"
    result = _cli("--database-url", url, "--members", "20", "--villages-per-town", "9")
    assert result.returncode == 2 and "at least" in result.stderr and result.stdout == ""


def test_serve_demo_loads_the_county_once_and_remembers_its_password(tmp_path):
    url = f"sqlite:///{tmp_path}/var/demo.db"
    messages: list[str] = []
    first = prepare_demo_county(url, members=200, progress=messages.append)
    assert first.created and first.password and first.counts
    assert first.counts["members"] == 200
    saved = Path(f"{tmp_path}/var/demo.db.demo-password")
    assert saved.stat().st_mode & 0o777 == 0o600
    line = console_line("http://127.0.0.1:8080", first)
    assert "http://127.0.0.1:8080/console" in line and first.password in line

    later = prepare_demo_county(url, members=200, progress=messages.append)
    assert not later.created and later.password == first.password

    # a password that no longer signs admin in is not printed
    saved.write_text("not-the-password\n", encoding="utf-8")
    forgotten = prepare_demo_county(url, members=200, progress=messages.append)
    assert forgotten.password is None and forgotten.admin_exists
    assert "printed when" in console_line("http://h", forgotten)


@pytest.mark.parametrize("kind", KINDS)
async def test_the_demo_county_has_duty_rosters_and_a_month_the_watch_agrees_with(kind, tmp_path):
    zone = ZoneInfo("Asia/Shanghai")
    async with fresh_database(kind, tmp_path) as url:
        counts = await _load(url, **SMALL)
        database = Database(url)
        try:
            async with database.session() as session:
                cadres = list(await session.scalars(select(DutyCadre)))
                orgs = {o.id: o for o in await session.scalars(select(OrgUnit))}
                members = {m.id: m for m in await session.scalars(select(Member))}
                days = list(await session.scalars(select(DutyDay)))
                reports = await session.scalar(select(func.count()).select_from(DutyReport))
            # every village has a roster of its own branch's post holders, five at most
            by_village = Counter(c.village_id for c in cadres)
            villages = [o for o in orgs.values() if o.kind is OrgKind.VILLAGE]
            assert set(by_village) == {v.id for v in villages}
            assert max(by_village.values()) <= 5 and counts["duty_cadres"] == len(cadres)
            for cadre in cadres:
                member = members[cadre.member_id]
                assert member.org_path.startswith(orgs[cadre.village_id].path)
                assert member.posts and cadre.post
            # a working month: every weekday of the last 30 days judged for every cadre,
            # mostly on time, with late, absent and leave days among them
            clock = DutyClock(zone)
            today = clock.today()
            weekdays = {
                today - dt.timedelta(days=n)
                for n in range(1, 31)
                if (today - dt.timedelta(days=n)).weekday() < 5
            }
            judged = [d for d in days if d.date in weekdays]
            assert len(judged) == len(cadres) * len(weekdays) == counts["duty_dates"] * len(cadres)
            statuses = Counter(d.status for d in judged)
            assert statuses[DayStatus.ON_TIME] > len(judged) * 0.7
            assert {DayStatus.LATE, DayStatus.ABSENT, DayStatus.LEAVE} <= set(statuses)
            # each day judged that evening: one alert per late or absent day
            assert counts["duty_alerts"] == statuses[DayStatus.LATE] + statuses[DayStatus.ABSENT]
            assert reports == counts["duty_reports"] > 0
            # the history is made of sightings and leave: the watch, judging it again at
            # start, finds every day as it was
            before = {(d.member_id, d.date): d.status for d in days}
            runs = await DutyWatch(database, clock).run_once()
            assert runs and all(run.changed == 0 for run in runs if run.date < today)
            async with database.session() as session:
                after = {
                    (d.member_id, d.date): d.status for d in await session.scalars(select(DutyDay))
                }
            assert {k: after[k] for k in before} == before
        finally:
            await database.close()
