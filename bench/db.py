"""Database benchmark: load the demo county, then time the console's tree and member search.

The county (17 towns, ~1,000 villages, 30,000 members) is loaded with `create_demo_county`
into a fresh database, timed; then a Lighthouse server runs in its own process on that
database and one client signs in as `admin` and sends, one at a time after a warm-up:

- tree:          GET /api/org/{id} on random towns and villages (children and subtree counts)
- search:        GET /api/members?q=<fragment>&org=<town id> (name search inside a town)
- county search: GET /api/members?q=<fragment> (the same across the whole county)
- me (floor):    GET /api/me, which reads no tree: what any signed-in request costs

Name fragments are one or two characters of real members' names, as typed into a search
box. It prints p50/p95/p99 latency per request kind, then one JSON line.

    python bench/db.py                       # SQLite in a temporary folder, full county
    python bench/db.py --postgres            # a fresh database on the local PostgreSQL
    python bench/db.py --quick [--postgres]  # 5,000 members, fewer requests (under 45 s)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from sqlalchemy import select

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's folder comes first on sys.path and `import db` would find
# this file (bench/db.py), not the package: put the repository root before it.
sys.path.insert(0, str(ROOT))

from db.database import Database  # noqa: E402
from db.demo_data import create_demo_county, villages_per_town_for  # noqa: E402
from db.models import Member  # noqa: E402

SECRET = "db-benchmark-secret-0123456789-abcdefghijklmnopqrstuv"  # HS256 wants >= 32 bytes
PASSWORD = "bench-admin-password"
POSTGRES_ADMIN_URL = os.environ.get(
    "LIGHTHOUSE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REQUEST_TIMEOUT_S = 10.0
SEED = 2026


@dataclass(frozen=True)
class Settings:
    postgres: bool
    quick: bool
    members: int
    requests: int
    warmup: int


@dataclass(frozen=True)
class Latency:
    name: str
    samples_ms: list[float]
    rows_mean: float  # mean `total` of a search, or members counted under an org unit

    def pct(self, p: float) -> float:
        ordered = sorted(self.samples_ms)
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@asynccontextmanager
async def fresh_database(postgres: bool, workdir: Path) -> AsyncIterator[str]:
    """A URL of a new, empty database, dropped (PostgreSQL) or deleted with workdir after."""
    if not postgres:
        yield f"sqlite:///{workdir}/bench.db"
        return
    import asyncpg

    name = f"lh_bench_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def load_county(url: str, members: int) -> tuple[float, float, dict[str, int], list[str]]:
    """Migrate, load and time; also draw name fragments from the members just loaded."""
    database = Database(url)
    try:
        started = time.perf_counter()
        await database.migrate()
        migrate_s = time.perf_counter() - started
        started = time.perf_counter()
        counts = await create_demo_county(
            database,
            admin_password=PASSWORD,
            members=members,
            villages_per_town=villages_per_town_for(members),
            seed=SEED,
            duty_days=0,  # the tree and members alone, as this benchmark has always measured
        )
        load_s = time.perf_counter() - started
        async with database.session() as session:
            names = list((await session.execute(select(Member.name))).scalars())
    finally:
        await database.close()
    return migrate_s, load_s, counts, names


def fragments(names: list[str], count: int, rng: random.Random) -> list[str]:
    # a third single characters (a surname, often thousands of hits), the rest two
    picked = []
    for name in rng.choices(names, k=count):
        if rng.random() < 1 / 3:
            picked.append(rng.choice(name))
        else:
            start = rng.randrange(len(name) - 1)
            picked.append(name[start : start + 2])
    return picked


async def start_server(url: str, workdir: Path) -> tuple[asyncio.subprocess.Process, str, Path]:
    port = free_port()
    config = workdir / "lighthouse.toml"
    config.write_text(
        "[server]\n"
        f'host = "127.0.0.1"\nport = {port}\nsecret = "{SECRET}"\nlog_level = "WARNING"\n\n'
        f'[database]\nurl = "{url}"\n',
        encoding="utf-8",
    )
    log = workdir / "lighthouse.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTHOUSE_")}
    with log.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "lighthouse.cli",
            "serve",
            "--config",
            str(config),
            cwd=ROOT,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise RuntimeError(f"the server exited:\n{log.read_text(errors='replace')}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with http.get(f"{base}/healthz") as response:
                    if response.status == 200:
                        return proc, base, log
            await asyncio.sleep(0.2)
    proc.kill()
    await proc.wait()
    raise RuntimeError(f"the server did not answer in 30 s:\n{log.read_text(errors='replace')}")


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), 10)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


class Client:
    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base
        self.headers: dict[str, str] = {}

    async def get(self, path: str, **params: str | int) -> tuple[float, dict]:
        started = time.perf_counter()
        async with self.http.get(self.base + path, params=params, headers=self.headers) as r:
            body = await r.json()
            elapsed = (time.perf_counter() - started) * 1000
            if r.status != 200:
                raise RuntimeError(f"GET {path} {params}: {r.status} {body}")
        return elapsed, body

    async def login(self) -> None:
        async with self.http.post(
            self.base + "/api/login", json={"username": "admin", "password": PASSWORD}
        ) as r:
            body = await r.json()
            if r.status != 200:
                raise RuntimeError(f"login failed: {r.status} {body}")
        self.headers = {"Authorization": f"Bearer {body['token']}"}


async def measure(settings: Settings, base: str, names: list[str]) -> list[Latency]:
    rng = random.Random(SEED)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        client = Client(http, base)
        await client.login()
        _, county = await client.get("/api/org")
        towns = [c["id"] for c in county["children"]]
        villages = []
        for town in towns:
            _, body = await client.get(f"/api/org/{town}")
            villages += [c["id"] for c in body["children"] if c["kind"] == "village"]
        total = settings.warmup + settings.requests

        async def run(name: str, requests: list[tuple[str, dict[str, str | int]]]) -> Latency:
            samples, rows = [], []
            for n, (path, params) in enumerate(requests):
                elapsed, body = await client.get(path, **params)
                if n >= settings.warmup:
                    samples.append(elapsed)
                    rows.append(body.get("total", body.get("counts", {}).get("members", 0)))
            say(f"{name}: {len(samples)} requests, p95 {Latency(name, samples, 0).pct(95):.1f} ms")
            return Latency(name, samples, statistics.mean(rows))

        # the floor under every request: sign-in check, session, JSON, HTTP
        me = [("/api/me", {}) for _ in range(total)]
        # towns and villages in the proportion the console meets them: mostly villages
        tree = [
            (f"/api/org/{rng.choice(towns) if rng.random() < 0.25 else rng.choice(villages)}", {})
            for _ in range(total)
        ]
        search = [
            ("/api/members", {"q": q, "org": rng.choice(towns)})
            for q in fragments(names, total, rng)
        ]
        county_search = [("/api/members", {"q": q}) for q in fragments(names, total, rng)]
        return [
            await run("me (floor)", me),
            await run("tree", tree),
            await run("search", search),
            await run("county search", county_search),
        ]


def report(settings: Settings, result: dict, latencies: list[Latency]) -> None:
    print(
        f"database {result['database']}: {result['members']} members, "
        f"{result['villages']} villages; migrate {result['migrate_s']} s, "
        f"load {result['load_s']} s"
    )
    print(
        f"{'request':<15}{'n':>6}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
        f"{'max ms':>9}{'rows (mean)':>13}"
    )
    for lat in latencies:
        print(
            f"{lat.name:<15}{len(lat.samples_ms):>6}{lat.pct(50):>9.1f}{lat.pct(95):>9.1f}"
            f"{lat.pct(99):>9.1f}{max(lat.samples_ms):>9.1f}{lat.rows_mean:>13.0f}"
        )


async def main_async(settings: Settings) -> dict:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lighthouse-dbbench-") as tmp:
        workdir = Path(tmp)
        async with fresh_database(settings.postgres, workdir) as url:
            say(f"loading the demo county ({settings.members} members)")
            migrate_s, load_s, counts, names = await load_county(url, settings.members)
            say(f"loaded in {load_s:.2f} s; starting the server")
            proc, base, _ = await start_server(url, workdir)
            try:
                latencies = await measure(settings, base, names)
            finally:
                await stop(proc)
    by_name = {lat.name: lat for lat in latencies}
    result = {
        "bench": "db",
        "database": "postgresql" if settings.postgres else "sqlite",
        "quick": settings.quick,
        "migrate_s": round(migrate_s, 2),
        "load_s": round(load_s, 2),
        "members": counts["members"],
        "villages": counts["villages"],
        "requests": settings.requests,
        "me_p50_ms": round(by_name["me (floor)"].pct(50), 1),
        "tree_p50_ms": round(by_name["tree"].pct(50), 1),
        "tree_p95_ms": round(by_name["tree"].pct(95), 1),
        "tree_p99_ms": round(by_name["tree"].pct(99), 1),
        "search_p50_ms": round(by_name["search"].pct(50), 1),
        "search_p95_ms": round(by_name["search"].pct(95), 1),
        "search_p99_ms": round(by_name["search"].pct(99), 1),
        "county_search_p50_ms": round(by_name["county search"].pct(50), 1),
        "county_search_p95_ms": round(by_name["county search"].pct(95), 1),
        "county_search_p99_ms": round(by_name["county search"].pct(99), 1),
        "wall_s": round(time.monotonic() - started, 1),
        # other users' load skews latency on a small machine: say how busy it was
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "cores": os.cpu_count(),
    }
    report(settings, result, latencies)
    return result


def parse_args(argv: list[str] | None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", action="store_true", help="use the local PostgreSQL")
    parser.add_argument("--quick", action="store_true", help="5,000 members (under 45 s)")
    parser.add_argument("--members", type=int, help="members in the county")
    parser.add_argument("--requests", type=int, help="measured requests per kind")
    args = parser.parse_args(argv)
    return Settings(
        postgres=args.postgres,
        quick=args.quick,
        members=args.members or (5_000 if args.quick else 30_000),
        requests=args.requests or (200 if args.quick else 300),
        warmup=20,
    )


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    try:
        # a hard bound on the whole run: nothing here waits forever
        result = asyncio.run(asyncio.wait_for(main_async(settings), 120 if settings.quick else 600))
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"db benchmark failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
