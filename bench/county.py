"""County benchmark: one main venue fanned out to N village TVs, every village publishing
its own camera, recording on, served by Lighthouse with 1 and then 2 media workers.

The main venue sends a pre-encoded VP8 clip (640x360, 25 fps, ~800 kbit/s); each village
TV publishes a small pre-encoded clip (a village uplink, ~300 kbit/s at 15 fps) and
receives the main venue without decoding (bench/loadclients.py, spread over processes as
bench/relay.py does). The room is a controlled meeting room, so the villages' cameras
reach only the recorder (and the floor slot). For each worker count the server runs in
its own process tree (`lighthouse serve --workers W`: the front and W worker processes);
over a steady window the bench measures the whole tree's CPU, the packets delivered to
the TVs, each TV's frame rate and the loss.

`scaling` = packets per server CPU-second with 2 workers / the same with 1 worker, in the
same run (goal >= 0.85: spreading a room over workers must cost little). Face sign-in is
not in this bench yet (it needs a meeting of enrolled members: bench/recognition.py
measures it). The last line of output is one JSON object.

    python bench/county.py --quick    # N = 10 (under 60 s)
    python bench/county.py            # N = 40
    python bench/county.py --sites 500 --workers 14 7   # on a 16-core machine
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import redis.asyncio as aioredis

from signaling.tokens import TokenIssuer

from relay import BENCH, SECRET, Child, spawn, stop, wait_healthy

ROOM = "county"
REDIS_URL = "redis://127.0.0.1:6379/8"
SITES_PER_PROCESS = 10
FPS_GOAL = 24.0
LOSS_GOAL = 0.005
SCALING_GOAL = 0.85


@dataclass
class Settings:
    sites: int
    workers: list[int]  # the first is the baseline of `scaling`
    warmup_s: float
    measure_s: float
    quick: bool


@dataclass
class Window:
    workers: int
    sites: int
    seconds: float
    server_cpu_per_s: float
    packets_per_s: float
    fps: list[float]
    loss: float
    recorded_bytes: int
    worker_stall_ms: float  # the longest event-loop stall of any media worker

    @property
    def pkts_per_cpu_s(self) -> float:
        return self.packets_per_s / self.server_cpu_per_s if self.server_cpu_per_s else math.inf


def tree_cpu_seconds(process: psutil.Process) -> float:
    """CPU seconds of a process and every live child (the media workers)."""
    total = 0.0
    for p in (process, *process.children(recursive=True)):
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


async def worker_stalls(seconds: float) -> float:
    """The longest event-loop stall any media worker reported in its heartbeats (each
    carries the longest since the one before) over the next `seconds`."""
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    longest = 0.0
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for key in await client.keys("lh:worker:*"):
                value = await client.get(key)
                if value:
                    longest = max(longest, float(json.loads(value)["load"].get("stall_ms", 0)))
            await asyncio.sleep(0.4)
    finally:
        await client.aclose()
    return longest


def directory_bytes(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


class CountyBench:
    def __init__(self, settings: Settings, workdir: Path) -> None:
        self.s = settings
        self.workdir = workdir
        self.tokens = TokenIssuer(SECRET)
        self.clients: list[Child] = []
        self.publisher: Child | None = None
        self.next_participant = 0
        self.started = time.monotonic()

    def progress(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:5.1f} s] {message}", file=sys.stderr, flush=True)

    def token(self, role: str) -> str:
        self.next_participant += 1
        pid = f"site-{self.next_participant}"
        return self.tokens.mint(pid, pid, ROOM, role)

    async def start_clients(self) -> None:
        count = math.ceil(self.s.sites / SITES_PER_PROCESS)
        script = str(BENCH / "loadclients.py")
        started = await asyncio.gather(
            spawn("main-venue", [script], self.workdir, pipes=True),
            *(spawn(f"villages{i}", [script], self.workdir, pipes=True) for i in range(count)),
        )
        self.publisher, *self.clients = started
        await self.publisher.request("prepare_clip", seconds=4.0)

    async def start_server(self, workers: int) -> tuple[Child, str, Path]:
        from relay import free_port

        port = free_port()
        run = self.workdir / f"w{workers}"
        run.mkdir()
        config = run / "lighthouse.toml"
        config.write_text(
            "[server]\n"
            f'host = "127.0.0.1"\nport = {port}\nsecret = "{SECRET}"\n'
            f'log_level = "WARNING"\nidle_timeout_s = 120\n'
            # every load client connects from loopback: no per-address socket cap
            f"max_sockets_per_address = 100000\nmax_sockets = 100000\nworkers = {workers}\n\n"
            f'[database]\nurl = "sqlite:///{run}/county.db"\n\n'
            f'[recording]\ndir = "{run}/recordings"\n\n'
            "[recognition]\nenabled = false\n\n"
            f'[redis]\nurl = "{REDIS_URL}"\n\n'
            f'[[rooms]]\nid = "{ROOM}"\nname = "county meeting"\nvideo_codec = "vp8"\n'
            "controlled = true\nrecord = true\n",
            encoding="utf-8",
        )
        args = ["-m", "lighthouse.cli", "serve", "--config", str(config)]
        child = await spawn(f"lighthouse-w{workers}", args, run, pipes=False)
        url = f"http://127.0.0.1:{port}"
        await wait_healthy(url, child, timeout=60)
        return child, url, run / "recordings"

    async def snapshots(self) -> list[dict[str, Any]]:
        return await asyncio.gather(*(c.request("snapshot") for c in self.clients))

    async def wait_for_video(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            subs = [sub for snap in await self.snapshots() for sub in snap["subs"]]
            if len(subs) == self.s.sites and all(sub["frames"] > 0 for sub in subs):
                return
            if time.monotonic() > deadline:
                got = sum(1 for sub in subs if sub["frames"] > 0)
                raise RuntimeError(f"only {got} of {self.s.sites} TVs got video in {timeout} s")
            await asyncio.sleep(0.25)

    async def measure(self, workers: int, server: Child, recordings: Path) -> Window:
        server_ps = psutil.Process(server.proc.pid)
        stalls = asyncio.ensure_future(worker_stalls(self.s.measure_s))
        t0, cpu0, snaps0 = time.monotonic(), tree_cpu_seconds(server_ps), await self.snapshots()
        await asyncio.sleep(self.s.measure_s)
        t1, cpu1, snaps1 = time.monotonic(), tree_cpu_seconds(server_ps), await self.snapshots()
        worker_stall_ms = await stalls
        fps: list[float] = []
        packets = expected = video = 0
        for a, b in zip(snaps0, snaps1, strict=True):
            dt = b["t"] - a["t"]
            for sa, sb in zip(a["subs"], b["subs"], strict=True):
                fps.append((sb["frames"] - sa["frames"]) / dt)
                packets += sb["packets"] - sa["packets"]
                video += sb["video_packets"] - sa["video_packets"]
                expected += sb["expected"] - sa["expected"]
        seconds = t1 - t0
        return Window(
            workers=workers,
            sites=self.s.sites,
            seconds=seconds,
            server_cpu_per_s=(cpu1 - cpu0) / seconds,
            packets_per_s=packets / seconds,
            fps=fps,
            loss=max(0, expected - video) / expected if expected else 0.0,
            recorded_bytes=directory_bytes(recordings),
            worker_stall_ms=worker_stall_ms,
        )

    async def run_one(self, workers: int) -> Window:
        assert self.publisher is not None
        server, url, recordings = await self.start_server(workers)
        try:
            self.progress(f"{workers} worker(s): server up; {self.s.sites} sites joining")
            publication = await self.publisher.request(
                "publish_lighthouse", url=url, token=self.token("main")
            )
            jobs = []
            for i, client in enumerate(self.clients):
                share = self.s.sites // len(self.clients) + (i < self.s.sites % len(self.clients))
                tokens = [self.token("terminal") for _ in range(share)]
                jobs.append(
                    client.request(
                        "add_villages",
                        url=url,
                        tokens=tokens,
                        publication_id=publication["publication_id"],
                    )
                )
            await asyncio.gather(*jobs)
            await self.wait_for_video()
            self.progress(f"{workers} worker(s): every TV has video; warm-up, then measure")
            await asyncio.sleep(self.s.warmup_s)
            window = await self.measure(workers, server, recordings)
            print(format_row(window), file=sys.stderr, flush=True)
            return window
        finally:
            await asyncio.gather(*(c.request("close_all") for c in [self.publisher, *self.clients]))
            await stop(server)

    async def run(self) -> list[Window]:
        await self.start_clients()
        print(format_header(), file=sys.stderr, flush=True)
        return [await self.run_one(w) for w in self.s.workers]

    async def shutdown(self) -> None:
        children = [c for c in [self.publisher, *self.clients] if c is not None]
        await asyncio.gather(*(stop(c) for c in children), return_exceptions=True)


def format_header() -> str:
    return (
        f"{'workers':>8}{'sites':>7}{'server CPU/s':>14}{'pkts/s out':>12}{'pkts/CPU-s':>12}"
        f"{'fps min':>9}{'fps mean':>10}{'loss':>8}{'recorded MB':>13}{'worker stall':>14}"
    )


def format_row(w: Window) -> str:
    return (
        f"{w.workers:>8}{w.sites:>7}{w.server_cpu_per_s:>14.3f}{w.packets_per_s:>12.0f}"
        f"{w.pkts_per_cpu_s:>12.0f}{min(w.fps):>9.1f}{statistics.mean(w.fps):>10.1f}"
        f"{w.loss:>8.2%}{w.recorded_bytes / 1e6:>13.1f}{w.worker_stall_ms:>11.1f} ms"
    )


def report(settings: Settings, windows: list[Window], wall: float) -> dict[str, Any]:
    baseline, *others = windows
    largest = windows[-1]
    scaling = largest.pkts_per_cpu_s / baseline.pkts_per_cpu_s if others else 1.0
    print(format_header())
    for w in windows:
        print(format_row(w))
    fps_ok = min(min(w.fps) for w in windows) >= FPS_GOAL
    loss_ok = max(w.loss for w in windows) <= LOSS_GOAL
    print(
        f"scaling (pkts per CPU-s, {largest.workers} workers / {baseline.workers}): "
        f"{scaling:.2f} (goal >= {SCALING_GOAL}: "
        f"{'met' if scaling >= SCALING_GOAL else 'NOT met'}); "
        f"every TV >= {FPS_GOAL:g} fps: {'yes' if fps_ok else 'NO'}; "
        f"loss <= {LOSS_GOAL:.1%}: {'yes' if loss_ok else 'NO'}"
    )
    return {
        "bench": "county",
        "quick": settings.quick,
        "cores": os.cpu_count(),
        "workers": largest.workers,
        "sites": largest.sites,
        "fps_min": round(min(largest.fps), 1),
        "fps_mean": round(statistics.mean(largest.fps), 1),
        "loss": round(largest.loss, 4),
        "server_cpu": round(largest.server_cpu_per_s, 3),
        "pkts_per_cpu_s": round(largest.pkts_per_cpu_s),
        "scaling": round(scaling, 3),
        "worker_stall_ms": largest.worker_stall_ms,
        "by_workers": {
            str(w.workers): {
                "server_cpu": round(w.server_cpu_per_s, 3),
                "pkts_per_cpu_s": round(w.pkts_per_cpu_s),
                "fps_min": round(min(w.fps), 1),
                "loss": round(w.loss, 4),
                "recorded_mb": round(w.recorded_bytes / 1e6, 1),
                "worker_stall_ms": w.worker_stall_ms,
            }
            for w in windows
        },
        "wall_s": round(wall, 1),
    }


def parse_args(argv: list[str] | None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 sites (under 60 s)")
    parser.add_argument("--sites", type=int, help="village TVs (default 40; 10 with --quick)")
    parser.add_argument(
        "--workers", type=int, nargs="+", help="worker counts, the baseline first (default 1 2)"
    )
    parser.add_argument("--measure", type=float, help="seconds measured per worker count")
    args = parser.parse_args(argv)
    quick = bool(args.quick)
    return Settings(
        sites=args.sites or (10 if quick else 40),
        workers=args.workers or [1, 2],
        warmup_s=2.0 if quick else 4.0,
        measure_s=args.measure or (4.0 if quick else 10.0),
        quick=quick,
    )


async def main_async(settings: Settings) -> int:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lighthouse-county-") as tmp:
        bench = CountyBench(settings, Path(tmp))
        try:
            limit = 58.0 if settings.quick else 900.0
            windows = await asyncio.wait_for(bench.run(), limit)
        finally:
            await bench.shutdown()
    result = report(settings, windows, time.monotonic() - started)
    print(json.dumps(result), flush=True)
    return 0 if all(min(w.fps) > 0 for w in windows) else 1


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    try:
        return asyncio.run(main_async(settings))
    except (RuntimeError, TimeoutError) as exc:
        print(f"county benchmark failed: {exc!r}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
