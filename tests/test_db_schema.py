"""Migrations from empty, and the models' basic life cycle, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError

from db.models import Base, Gender, Member, MemberStatus, OrgKind, OrgUnit


async def test_migrations_create_every_table_and_are_idempotent(database):
    async with database.engine.connect() as connection:
        tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
    assert set(Base.metadata.tables) <= tables
    assert "alembic_version" in tables
    await database.migrate()  # a second run changes nothing


async def test_tree_and_member_round_trip(database):
    async with database.session() as session:
        county = OrgUnit(code="360000", name="示范县", kind=OrgKind.COUNTY, path="", depth=0)
        session.add(county)
        await session.flush()
        county.path = f"/{county.id}/"
        branch = OrgUnit(
            code="360000-01",
            name="红星村党支部",
            kind=OrgKind.BRANCH,
            parent_id=county.id,
            path="",
            depth=1,
        )
        session.add(branch)
        await session.flush()
        branch.path = f"{county.path}{branch.id}/"
        session.add(
            Member(
                branch_id=branch.id,
                org_path=branch.path,
                name="张秀英",
                gender=Gender.FEMALE,
                birth_date=dt.date(1956, 3, 8),
                status=MemberStatus.FORMAL,
                posts=["secretary"],
            )
        )
        await session.commit()
    async with database.session() as session:
        member = (await session.execute(select(Member))).scalar_one()
        assert member.name == "张秀英" and member.posts == ["secretary"]
        assert member.gender is Gender.FEMALE
        in_county = (
            (await session.execute(select(Member).where(Member.org_path.like(f"{county.path}%"))))
            .scalars()
            .all()
        )
        assert [m.id for m in in_county] == [member.id]
        session.add(OrgUnit(code="360000", name="dup", kind=OrgKind.TOWN, path="/x/", depth=1))
        with pytest.raises(IntegrityError):
            await session.commit()


async def test_migrations_go_down_and_up_again(database):
    from alembic import command

    from db.database import alembic_config

    async with database.engine.begin() as connection:
        await connection.run_sync(lambda c: command.downgrade(alembic_config(c), "base"))
    async with database.engine.connect() as connection:
        tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
    assert tables <= {"alembic_version"}
    await database.migrate()
    async with database.engine.connect() as connection:
        tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
    assert set(Base.metadata.tables) <= tables
