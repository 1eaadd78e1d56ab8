"""Forwarding-loop stall benchmark: does a burst of face decoding delay forwarding?

A live meeting with face sign-in on: N village TVs (pre-encoded VP8 clips of
scikit-image's astronaut, panned and zoomed, 15 fps, ~400 kbit/s: a face the recognizer
finds, never a member, so every camera stays in its sign-in window, decoding every frame)
publish into the meeting's room; a main venue sends the usual clip to one more TV. The
server runs as `lighthouse serve` in its own process, first in one process (the
recognizer's decoding and the forwarding share a process and its event loop), then with
`--workers 1` (forwarding in a media worker; the recognizer in the front), in the same
run. For each it reports, over a steady window, the longest event-loop stall of the
process that forwards (a 5 ms probe: the front's /healthz in one process, the worker's
heartbeats with a worker), the longest stall of the front, the server's CPU, and the
frame rate the watching TV receives.

The clients (bench/loadclients.py) run in processes of their own; the database is seeded
with tests/apiclient.py's small county and N terminals of village A1; the meeting is
started over the API as its secretary. The last line of output is one JSON object.

    python bench/stall.py --quick    # 10 cameras (~50 s)
    python bench/stall.py            # 20 cameras
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import redis.asyncio as aioredis

# Run as a script, this folder comes first on sys.path and `import db` would find
# bench/db.py, not the package: the repository root goes before it (as bench/db.py does),
# and tests/ after it for the seeded county.
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "tests"))

from db.database import Database  # noqa: E402
from db.models import Terminal, TerminalKind  # noqa: E402
from signaling.meetings import meeting_room_id  # noqa: E402
from signaling.tokens import TokenIssuer  # noqa: E402

from apiclient import ApiClient, seed_small_county  # noqa: E402
from county import tree_cpu_seconds  # noqa: E402
from relay import BENCH, SECRET, Child, free_port, spawn, stop, wait_healthy  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/7"
CAMERAS_PER_PROCESS = 10


@dataclass
class Window:
    workers: int
    cameras: int
    forwarding_stall_ms: float  # the longest stall of the loop that forwards
    front_stall_ms: float
    server_cpu: float
    viewer_fps: float


class StallBench:
    def __init__(self, cameras: int, measure_s: float, workdir: Path) -> None:
        self.cameras = cameras
        self.measure_s = measure_s
        self.workdir = workdir
        self.tokens = TokenIssuer(SECRET)
        self.clients: list[Child] = []
        self.started = time.monotonic()

    def progress(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:5.1f} s] {message}", file=sys.stderr, flush=True)

    async def start_clients(self) -> None:
        script = str(BENCH / "loadclients.py")
        count = math.ceil(self.cameras / CAMERAS_PER_PROCESS) + 1  # + the main venue and TV
        self.clients = list(
            await asyncio.gather(
                *(spawn(f"clients{i}", [script], self.workdir, pipes=True) for i in range(count))
            )
        )
        await self.clients[0].request("prepare_clip", seconds=4.0)

    async def prepared_database(self, run: Path) -> tuple[str, list[int], int]:
        url = f"sqlite:///{run}/stall.db"
        database = Database(url)
        try:
            await database.migrate()
            orgs = await seed_small_county(database)
            village = orgs["village_a1"]
            async with database.session() as session:
                terminals = [
                    Terminal(
                        org_id=village.id,
                        org_path=village.path,
                        name=f"A1村电视{i}",
                        kind=TerminalKind.TV,
                    )
                    for i in range(self.cameras)
                ]
                session.add_all(terminals)
                await session.commit()
                ids = [t.id for t in terminals]
        finally:
            await database.close()
        return url, ids, orgs["branch_a1"].id

    async def run_one(self, workers: int) -> Window:
        run = self.workdir / f"w{workers}"
        run.mkdir()
        database_url, terminal_ids, branch_id = await self.prepared_database(run)
        port = free_port()
        config = run / "lighthouse.toml"
        config.write_text(
            "[server]\n"
            f'host = "127.0.0.1"\nport = {port}\nsecret = "{SECRET}"\n'
            f'log_level = "WARNING"\nidle_timeout_s = 120\n'
            # every load client connects from loopback: no per-address socket cap
            f"max_sockets_per_address = 100000\nmax_sockets = 100000\nworkers = {workers}\n\n"
            f'[database]\nurl = "{database_url}"\n\n'
            f'[redis]\nurl = "{REDIS_URL}"\n\n'
            "[recording]\nenabled = false\n\n"
            f'[recognition]\nevidence_dir = "{run}/evidence"\n\n'
            '[meetings]\nvideo_codec = "vp8"\n',
            encoding="utf-8",
        )
        args = ["-m", "lighthouse.cli", "serve", "--config", str(config)]
        server = await spawn(f"lighthouse-w{workers}", args, run, pipes=False)
        url = f"http://127.0.0.1:{port}"
        try:
            await wait_healthy(url, server, timeout=60)
            async with aiohttp.ClientSession() as http:
                secretary = await ApiClient(url, http).login("a1_secretary")
                meeting = await secretary.call(
                    "POST",
                    "/api/meetings",
                    {"type": "party_congress", "topic": "stall bench", "organiser_id": branch_id},
                )
                if "id" not in meeting:
                    raise RuntimeError(f"no meeting: {meeting}")
                await secretary.call("POST", f"/api/meetings/{meeting['id']}/start", expect=200)
            room = meeting_room_id(meeting["id"])
            self.progress(f"{workers} worker(s): meeting live; {self.cameras} cameras joining")
            return await self.measure(workers, url, room, terminal_ids, server)
        finally:
            await asyncio.gather(*(c.request("close_all") for c in self.clients))
            await stop(server)

    async def measure(
        self, workers: int, url: str, room: str, terminal_ids: list[int], server: Child
    ) -> Window:
        main, *camera_clients = self.clients
        main_token = self.tokens.mint("bench-main", "主会场", room, "main")
        publication = await main.request("publish_lighthouse", url=url, token=main_token)
        viewer = self.tokens.mint("bench-viewer", "观看", room, "viewer")
        await main.request(
            "add_lighthouse",
            url=url,
            tokens=[viewer],
            publication_id=publication["publication_id"],
        )
        jobs = []
        for i, client in enumerate(camera_clients):
            share = terminal_ids[i * CAMERAS_PER_PROCESS : (i + 1) * CAMERAS_PER_PROCESS]
            tokens = [
                self.tokens.mint(f"terminal:{t}", f"A1村电视{t}", room, "terminal") for t in share
            ]
            jobs.append(client.request("add_villages", url=url, tokens=tokens, clip_kbps=400))
        await asyncio.gather(*jobs)
        await asyncio.sleep(4.0)  # every camera's watcher is in its sign-in window
        self.progress(f"{workers} worker(s): measuring")
        server_ps = psutil.Process(server.proc.pid)
        redis = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
        worker_stall = front_stall = 0.0
        t0, cpu0, snap0 = (
            time.monotonic(),
            tree_cpu_seconds(server_ps),
            await main.request("snapshot"),
        )
        try:
            async with aiohttp.ClientSession() as http:
                deadline = time.monotonic() + self.measure_s
                while time.monotonic() < deadline:
                    async with http.get(f"{url}/healthz") as response:
                        front_stall = max(front_stall, (await response.json())["loop_stall_ms"])
                    for key in await redis.keys("lh:worker:*"):
                        value = await redis.get(key)
                        if value:
                            stall = float(json.loads(value)["load"].get("stall_ms", 0))
                            worker_stall = max(worker_stall, stall)
                    await asyncio.sleep(0.4)
        finally:
            await redis.aclose()
        t1, cpu1, snap1 = (
            time.monotonic(),
            tree_cpu_seconds(server_ps),
            await main.request("snapshot"),
        )
        (sub0,), (sub1,) = snap0["subs"], snap1["subs"]
        window = Window(
            workers=workers,
            cameras=self.cameras,
            forwarding_stall_ms=worker_stall if workers else front_stall,
            front_stall_ms=front_stall,
            server_cpu=(cpu1 - cpu0) / (t1 - t0),
            viewer_fps=(sub1["frames"] - sub0["frames"]) / (snap1["t"] - snap0["t"]),
        )
        print(row(window), file=sys.stderr, flush=True)
        return window

    async def run(self) -> list[Window]:
        await self.start_clients()
        print(header(), file=sys.stderr, flush=True)
        return [await self.run_one(0), await self.run_one(1)]

    async def shutdown(self) -> None:
        await asyncio.gather(*(stop(c) for c in self.clients), return_exceptions=True)


def header() -> str:
    return (
        f"{'workers':>8}{'cameras':>9}{'forwarding loop stall':>23}{'front stall':>13}"
        f"{'server CPU/s':>14}{'viewer fps':>12}"
    )


def row(w: Window) -> str:
    return (
        f"{w.workers:>8}{w.cameras:>9}{w.forwarding_stall_ms:>20.1f} ms"
        f"{w.front_stall_ms:>10.1f} ms{w.server_cpu:>14.3f}{w.viewer_fps:>12.1f}"
    )


def report(windows: list[Window], wall: float, quick: bool) -> dict[str, Any]:
    one, split = windows
    print(header())
    for w in windows:
        print(row(w))
    ratio = split.forwarding_stall_ms / one.forwarding_stall_ms if one.forwarding_stall_ms else 0
    print(
        f"the forwarding loop's longest stall with {one.cameras} cameras in their sign-in "
        f"window: {one.forwarding_stall_ms:.1f} ms in one process, "
        f"{split.forwarding_stall_ms:.1f} ms on a media worker (x{ratio:.2f})"
    )
    return {
        "bench": "stall",
        "quick": quick,
        "cores": os.cpu_count(),
        "cameras": one.cameras,
        "one_process_stall_ms": one.forwarding_stall_ms,
        "worker_stall_ms": split.forwarding_stall_ms,
        "front_stall_ms_with_worker": split.front_stall_ms,
        "stall_ratio": round(ratio, 3),
        "server_cpu": {str(w.workers): round(w.server_cpu, 3) for w in windows},
        "viewer_fps": {str(w.workers): round(w.viewer_fps, 1) for w in windows},
        "viewer_fps_min": round(min(w.viewer_fps for w in windows), 1),
        "wall_s": round(wall, 1),
    }


async def main_async(cameras: int, measure_s: float, quick: bool) -> int:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lighthouse-stall-") as tmp:
        bench = StallBench(cameras, measure_s, Path(tmp))
        try:
            windows = await asyncio.wait_for(bench.run(), 58.0 if quick else 600.0)
        finally:
            await bench.shutdown()
    print(json.dumps(report(windows, time.monotonic() - started, quick)), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 cameras (under 60 s)")
    parser.add_argument("--cameras", type=int, help="village cameras (default 20)")
    args = parser.parse_args(argv)
    cameras = args.cameras or (10 if args.quick else 20)
    try:
        return asyncio.run(main_async(cameras, 6.0 if args.quick else 12.0, args.quick))
    except (RuntimeError, TimeoutError) as exc:
        print(f"stall benchmark failed: {exc!r}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
