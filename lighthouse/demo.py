"""What `make run` (`lighthouse serve --demo`) starts with: a demo meeting room with links
carrying signed tokens for each role, and a demo county in the database for the console.

The county is loaded only into a database with no org tree. Its `admin` password is made
up on that first start and printed; for SQLite it is also kept beside the database file
(`<file>.demo-password`, mode 0600) so that later starts can print it again, as long as it
still signs `admin` in. A PostgreSQL database has no such file: later starts say that the
password was printed when the county was made.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from db.accounts import check_password
from db.database import Database
from db.demo_data import (
    ADMIN_USERNAME,
    DEFAULT_MEMBERS,
    DEFAULT_TOWNS,
    DemoDataError,
    create_demo_county,
    villages_per_town_for,
)
from db.models import OrgUnit, StaffAccount
from signaling.tokens import TokenIssuer

from .config import RoomConfig

# members in the county `serve --demo` loads; villages shrink with it (tests load a small one)
DEMO_MEMBERS_ENV = "LIGHTHOUSE_DEMO_MEMBERS"
# no 0/O, 1/l/I: read off a terminal and typed in
_PASSWORD_ALPHABET = "23456789abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ"

DEMO_ROOM = RoomConfig(id="demo", name="演示会议：主题党日", video_codec="h264")


@dataclass(frozen=True)
class DemoLink:
    label: str
    url: str


def demo_links(base_url: str, tokens: TokenIssuer, room_id: str = DEMO_ROOM.id) -> list[DemoLink]:
    main = tokens.mint("venue-county-main", "县委主会场", room_id, "main")
    village = tokens.mint("terminal-village-001", "红星村党支部", room_id, "terminal")
    viewer = tokens.mint("viewer-demo", "手机参会", room_id, "viewer")
    return [
        DemoLink("main venue (主会场)", f"{base_url}/main#token={main}"),
        DemoLink("village terminal (村级电视终端)", f"{base_url}/tv#token={village}"),
        DemoLink("viewer (手机/电脑参会)", f"{base_url}/join#token={viewer}"),
    ]


@dataclass(frozen=True)
class DemoCounty:
    """What `serve --demo` found or made in the database, for the start-up message."""

    created: bool  # loaded at this start
    password: str | None  # admin's password, when known
    admin_exists: bool
    counts: dict[str, int] | None = None


def demo_members(env: Mapping[str, str]) -> int:
    raw = env.get(DEMO_MEMBERS_ENV, "").strip()
    if not raw:
        return DEFAULT_MEMBERS
    try:
        return int(raw)
    except ValueError:
        raise DemoDataError(f"{DEMO_MEMBERS_ENV} must be a whole number, not {raw!r}") from None


def make_password(length: int = 12) -> str:
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(length))


def password_file(database_url: str) -> Path | None:
    if not database_url.startswith("sqlite:///"):
        return None
    database_file = Path(database_url.removeprefix("sqlite:///"))
    return database_file.with_name(database_file.name + ".demo-password")


def prepare_demo_county(
    database_url: str,
    *,
    members: int,
    progress: Callable[[str], None],
    time_zone: str = "Asia/Shanghai",
) -> DemoCounty:
    """Migrate the database and load the demo county if it has no org tree yet (blocking)."""
    saved = password_file(database_url)
    candidate = None
    if saved is not None:
        saved.parent.mkdir(parents=True, exist_ok=True)
        if saved.is_file():
            candidate = saved.read_text(encoding="utf-8").strip()
    county = asyncio.run(
        _ensure(database_url, members, make_password(), candidate, progress, ZoneInfo(time_zone))
    )
    if county.created and saved is not None:
        try:
            fd = os.open(saved, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(f"{county.password}\n")
        except OSError as exc:
            progress(f"could not keep the demo password in {saved}: {exc}")
    return county


async def _ensure(
    database_url: str,
    members: int,
    new_password: str,
    saved_password: str | None,
    progress: Callable[[str], None],
    zone: ZoneInfo,
) -> DemoCounty:
    database = Database(database_url)
    try:
        await database.migrate()
        if not await _has_tree(database):
            towns, villages_per_town = DEFAULT_TOWNS, villages_per_town_for(members)
            progress(
                f"Loading the demo county ({towns} towns, {towns * villages_per_town} villages, "
                f"{members} members); this happens once per database"
            )
            started = time.monotonic()
            try:
                counts = await create_demo_county(
                    database,
                    admin_password=new_password,
                    towns=towns,
                    villages_per_town=villages_per_town,
                    members=members,
                    duty_zone=zone,
                )
            except DemoDataError:
                if not await _has_tree(database):
                    raise  # bad sizes, not another start that loaded it first
            else:
                progress(f"Demo county loaded in {time.monotonic() - started:.1f} s: {counts}")
                return DemoCounty(True, new_password, True, counts)
        async with database.session() as session:
            admin_hash = await session.scalar(
                select(StaffAccount.password_hash).where(StaffAccount.username == ADMIN_USERNAME)
            )
        # print the kept password again only while it still signs admin in
        known = (
            saved_password
            if admin_hash and saved_password and check_password(admin_hash, saved_password)
            else None
        )
        return DemoCounty(False, known, admin_hash is not None)
    finally:
        await database.close()


async def _has_tree(database: Database) -> bool:
    async with database.session() as session:
        return bool(await session.scalar(select(func.count()).select_from(OrgUnit)))


def console_line(base_url: str, county: DemoCounty) -> str:
    """The start-up line that tells how to sign in to the console."""
    url = f"{base_url}/console"
    if county.password is not None:
        return (
            f"Console (管理台): {url} — user {ADMIN_USERNAME}, password {county.password} "
            "(the town admins town01… have the same one)"
        )
    if county.admin_exists:
        return (
            f"Console (管理台): {url} — user {ADMIN_USERNAME}, with the password printed when "
            "the demo county was loaded (unless it has been changed since)"
        )
    return (
        f"Console (管理台): {url} — the database already had an org tree, so no demo county "
        "was loaded; sign in with its own accounts"
    )
