from __future__ import annotations

import os
import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

import pytest
from aiohttp import web

from lighthouse.app import create_app
from lighthouse.config import RoomConfig, load_config
from lighthouse.keys import CONFIG_KEY, ROOMS_KEY
from signaling.tokens import TokenIssuer

TEST_SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"


# Test files that measure real time (frame rates, freezes, recovery, a recording's length)
# or hold a core for long (browsers encoding video, the face set): in the two test
# processes (`make test`) they run one after another in one of them, never beside each
# other, so that one does not starve another's clock. Every other file is a group of its
# own: it runs whole in one process (its module fixtures, fixed ports and Redis database).
REALTIME_FILES = {
    "test_codecs",
    "test_faceset",
    "test_links",
    "test_lower_stream",
    "test_pipe",
    "test_publisher_bitrate",
    "test_recognition",
    "test_recorder_crash",
    "test_recorder_loss",
    "test_relay",
}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own, which reads the groups
def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            stem = item.path.stem
            realtime = stem in REALTIME_FILES or stem.endswith("_browser")
            item.add_marker(pytest.mark.xdist_group("realtime" if realtime else stem))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningServer:
    base_url: str
    tokens: TokenIssuer
    app: web.Application

    def token(
        self,
        participant: str,
        role: str = "terminal",
        room: str = "h264room",
        name: str | None = None,
        ttl_s: int = 3600,
    ) -> str:
        return self.tokens.mint(participant, name or participant, room, role, ttl_s=ttl_s)

    def room(self, room_id: str):
        return self.app[ROOMS_KEY][room_id]

    async def publication_views(self, room_id: str, publication_id: str) -> dict:
        """Each worker's counters of one publication (origin first): the same in one
        process and with media workers."""
        room = self.room(room_id)
        return await room.plane.publication_stats(publication_id)

    async def subscription_view(self, room_id: str, subscription) -> dict:
        """The counters of a server-side Subscription's tracks, on its worker."""
        room = self.room(room_id)
        return await room.plane.subscription_stats(subscription.peer.worker, subscription.id)


def config_overrides(request) -> dict:
    """Settings a test asks for with @pytest.mark.server_config(...). Recording is off
    unless asked for: the SFU's tests count packets and keyframe requests exactly. So is
    the duty watch: its runs write to the database beside the test's own requests."""
    settings: dict = {
        "recording_enabled": False,
        "recognition_enabled": False,
        "duty_enabled": False,
    }
    # a test's own marker adds to (and wins over) its module's
    for marker in reversed(list(request.node.iter_markers("server_config"))):
        settings.update(marker.kwargs)
    return settings


def _test_redis_url() -> str:
    """Redis database 9, or 9 + N on pytest-xdist's worker gwN: the worker tests flush
    their database, which must not be another test process's."""
    url = os.environ.get("LIGHTHOUSE_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw"):
        base, number = url.rsplit("/", 1)
        url = f"{base}/{int(number) + int(worker[2:])}"
    return url


TEST_REDIS_URL = _test_redis_url()
# `server` parametrised indirectly with these runs the same test on both media planes
ONE_PROCESS, TWO_WORKERS = "one process", "two workers"
BOTH_PLANES = pytest.mark.parametrize("server", [ONE_PROCESS, TWO_WORKERS], indirect=True)


@pytest.fixture
async def server(request, tmp_path) -> AsyncIterator[RunningServer]:
    settings = {
        "rooms": (
            RoomConfig("h264room", "H.264 会议", "h264"),
            RoomConfig("vp8room", "VP8 会议", "vp8"),
        ),
        **config_overrides(request),
    }
    if getattr(request, "param", ONE_PROCESS) == TWO_WORKERS:
        settings.setdefault("workers", 2)
        settings.setdefault("redis_url", TEST_REDIS_URL)
    config = load_config(
        env={},
        host="127.0.0.1",
        port=free_port(),
        secret=TEST_SECRET,
        idle_timeout_s=30.0,
        database_url=f"sqlite:///{tmp_path}/server.db",
        recording_dir=str(tmp_path / "recordings"),
        evidence_dir=str(tmp_path / "evidence"),
        **settings,
    )
    app = create_app(config)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    await site.start()
    try:
        yield RunningServer(f"http://{config.host}:{config.port}", TokenIssuer(TEST_SECRET), app)
    finally:
        await runner.cleanup()


# -- databases: every data test runs on SQLite and on the real local PostgreSQL -------------

POSTGRES_ADMIN_URL = os.environ.get(
    "LIGHTHOUSE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@asynccontextmanager
async def fresh_database(kind: str, tmp_path) -> AsyncIterator[str]:
    """A URL of a new, empty database of this kind, dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path}/lighthouse.db"
        return
    import asyncpg

    name = f"lh_test_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request, tmp_path):
    from db.database import Database

    async with fresh_database(request.param, tmp_path) as url:
        db = Database(url)
        await db.migrate()
        try:
            yield db
        finally:
            await db.close()


@dataclass
class ApiWorld:
    base_url: str
    orgs: dict
    anonymous: object  # tests.apiclient.ApiClient without a token
    database: object
    app: web.Application
    runner: web.AppRunner | None = None

    async def as_user(self, username: str):
        return await self.anonymous.login(username)

    async def restart(self, **changes) -> None:
        """Stop the server and start a new one on the same database and port, its config
        otherwise the same but for `changes`."""
        from apiclient import start_app

        config = replace(self.app[CONFIG_KEY], **changes)
        assert self.runner is not None
        await self.runner.cleanup()
        self.app = create_app(config)
        self.runner = await start_app(self.app, config.port)


@pytest.fixture(params=["sqlite", "postgresql"])
async def api(request, tmp_path) -> AsyncIterator[ApiWorld]:
    """The real app on a fresh SQLite or PostgreSQL database with a small seeded county."""
    import aiohttp

    from db.database import Database

    from apiclient import ApiClient, seed_small_county, start_app

    async with fresh_database(request.param, tmp_path) as url:
        port = free_port()
        config = load_config(
            env={},
            host="127.0.0.1",
            port=port,
            secret=TEST_SECRET,
            database_url=url,
            recording_dir=str(tmp_path / "recordings"),
            evidence_dir=str(tmp_path / "evidence"),
            rooms=(
                RoomConfig("town-a-meeting", "A镇会议", org_code="TA"),
                RoomConfig("town-b-meeting", "B镇会议", org_code="TB"),
            ),
            **config_overrides(request),
        )
        app = create_app(config)
        runner = await start_app(app, port)  # migrates on start-up
        seeding = Database(url)
        orgs = await seed_small_county(seeding)
        await seeding.close()
        async with aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{port}"
            world = ApiWorld(base, orgs, ApiClient(base, session), None, app, runner)
            try:
                yield world
            finally:
                await world.runner.cleanup()
