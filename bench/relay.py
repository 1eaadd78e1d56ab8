"""Relay benchmark: what one more subscriber costs Lighthouse's server, against re-encoding
and against Janus.

One publisher (pre-encoded VP8, 640x360, ~800 kbit/s, 25 fps) is relayed to N aiortc
subscribers by a Lighthouse server in its own process (N = 1, 10, 50), then by a baseline
server that gives each subscriber its own re-encode (aiortc MediaRelay; N = 1, 4). At
each N it measures the server's CPU-seconds per second over a steady window, the packets
delivered per server CPU-second and the frames per second each subscriber received.

The per-subscriber cost is marginal: (server CPU at N - server CPU at 1) / (N - 1).

When Debian's `janus` is installed (`apt-get install janus`), the same N subscribers are
served by Janus 1.1.2 (VideoRoom, plain-HTTP API, a fixed pool of 2 event loops; see
bench/janus.py) between the two: `vs_janus` is Lighthouse's packets per server CPU-second
over Janus's at each N, with both servers' resident memory. `--no-janus` leaves it out.
The last line of output is one JSON object. Exits non-zero if any subscriber got no video.

    python bench/relay.py            # N = 1, 10, 50; Janus the same; baseline N = 1, 4
    python bench/relay.py --quick    # N = 1, 10;     Janus the same; baseline N = 1, 3 (< 60 s)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from signaling.tokens import TokenIssuer

import janus

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
ROOM = "bench"
SECRET = "relay-benchmark-secret-0123456789-abcdefghijklmnop"  # HS256 wants >= 32 bytes
# Subscribers per client process: one process cannot drive 50 on this machine, and a
# client falling behind would show up as lost frames, not as server cost.
SUBS_PER_PROCESS = 13
TARGET_RATIO = 20.0
REPLY_TIMEOUT_S = 60.0
# A window is re-measured (a bounded number of times) when the machine was not quiet:
# subscribers got fewer frames than the publisher sent (someone fell behind real time), or
# other users' processes kept more than this many cores busy (CPU time inflates under
# contention). The quietest window is used; every attempt is shown on stderr.
DELIVERED_SHARE = 0.9
OTHER_LOAD_LIMIT = 0.5


@dataclass
class Settings:
    ns: list[int]
    baseline_ns: list[int]
    warmup_s: float
    measure_s: float
    clip_s: float
    quick: bool
    attempts: int  # measurements at most per N
    janus: bool  # measure Janus too, when installed
    budget_s: float  # re-measure only while the whole run still fits in this wall time

    def step_s(self) -> float:
        """Rough wall time of one more N: subscribe, warm up, measure."""
        return 1.0 + self.warmup_s + self.measure_s


@dataclass
class Window:
    """One steady measurement at one N."""

    path: str  # "forward" (Lighthouse) or "reencode" (baseline)
    n: int
    seconds: float
    server_cpu_per_s: float
    packets_per_s: float  # delivered to all subscribers together
    rss_mb: float  # the server's resident memory at the end of the window (its tree)
    fps: list[float]  # per subscriber
    kbps: list[float]  # per subscriber (RTP payload)
    clients_cpu_per_s: float
    publisher_cpu_per_s: float
    other_cpu_per_s: float  # everything else busy on the machine (other users)
    keyframe_requests: int  # answered by the publisher inside the window (should be 0)
    loss_down: float  # share of packets lost between server and subscribers (sequence gaps)
    lost_up: int  # packets the server reported lost from the publisher in the window
    publisher_fps: float  # frames the publisher sent
    attempts: int = 1

    @property
    def delivered(self) -> bool:
        return min(self.fps) >= DELIVERED_SHARE * self.publisher_fps

    @property
    def problem(self) -> str:
        if not self.delivered:
            return "behind real time"
        if self.other_cpu_per_s > OTHER_LOAD_LIMIT:
            return "machine busy"
        return ""

    def quieter_than(self, other: Window) -> bool:
        return (self.delivered, -self.other_cpu_per_s) > (other.delivered, -other.other_cpu_per_s)

    @property
    def pkts_per_cpu_s(self) -> float:
        return self.packets_per_s / self.server_cpu_per_s if self.server_cpu_per_s else math.inf


@dataclass
class Child:
    """A subprocess; workers speak one JSON line per command and reply."""

    name: str
    proc: asyncio.subprocess.Process
    log: Path
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    count: int = 0  # subscribers held

    @property
    def ps(self) -> psutil.Process:
        return psutil.Process(self.proc.pid)

    async def request(self, cmd: str, timeout: float = REPLY_TIMEOUT_S, **args: Any) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        async with self.lock:
            self.proc.stdin.write((json.dumps({"cmd": cmd, **args}) + "\n").encode())
            await self.proc.stdin.drain()
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"{self.name} exited:\n{tail(self.log)}")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise RuntimeError(f"{self.name} {cmd}: {reply.get('error')}\n{tail(self.log)}")
        return reply


def tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(process: psutil.Process) -> float:
    t = process.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def primary_interface() -> str:
    """The first interface with an IPv4 address that is not loopback (Janus offers no
    loopback candidate, and aioice none either)."""
    for name, addresses in psutil.net_if_addrs().items():
        for address in addresses:
            if address.family == socket.AF_INET and not address.address.startswith("127."):
                return name
    return "lo"


def tree_rss_mb(process: psutil.Process) -> float:
    """Resident memory of a server and its children (media workers), in MB."""
    total = 0
    for p in (process, *process.children(recursive=True)):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total / 1e6


def machine_busy_seconds() -> float:
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


async def spawn(
    name: str, args: list[str], workdir: Path, pipes: bool, executable: str = sys.executable
) -> Child:
    log = workdir / f"{name}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTHOUSE_")}
    with log.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            executable,
            *args,
            cwd=ROOT,
            env=env,
            stdin=asyncio.subprocess.PIPE if pipes else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if pipes else log_file,
            stderr=log_file,
        )
    child = Child(name, proc, log)
    if pipes:  # a worker says it is ready once aiortc is imported
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), REPLY_TIMEOUT_S)
        if not line:
            raise RuntimeError(f"{name} did not start:\n{tail(log)}")
    return child


async def wait_healthy(url: str, child: Child, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if child.proc.returncode is not None:
                raise RuntimeError(f"{child.name} exited:\n{tail(child.log)}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with http.get(f"{url}/healthz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{child.name} not healthy after {timeout} s:\n{tail(child.log)}")


async def stop(child: Child) -> None:
    proc = child.proc
    if proc.returncode is not None:
        return
    if proc.stdin is not None:  # a worker closes its peer connections on "stop"
        with contextlib.suppress(Exception):
            proc.stdin.write(b'{"cmd": "stop"}\n')
            await proc.stdin.drain()
            await asyncio.wait_for(proc.wait(), 10)
            return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), 5)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


class Bench:
    def __init__(self, settings: Settings, workdir: Path) -> None:
        self.s = settings
        self.workdir = workdir
        self.children: list[Child] = []
        self.workers: list[Child] = []
        self.publisher: Child | None = None
        self.tokens = TokenIssuer(SECRET)
        self.next_participant = 0
        self.clip: dict = {}
        self.started = time.monotonic()
        # Janus (Debian's package) is the second baseline when it is installed
        self.janus = settings.janus and janus.available()
        self.steps_left = len(settings.ns) * (2 if self.janus else 1) + len(settings.baseline_ns)

    async def start_workers(self) -> None:
        largest = max(self.s.ns + self.s.baseline_ns)
        count = math.ceil(largest / SUBS_PER_PROCESS)
        script = str(BENCH / "loadclients.py")
        started = await asyncio.gather(
            spawn("publisher", [script], self.workdir, pipes=True),
            *(spawn(f"subscribers{i}", [script], self.workdir, pipes=True) for i in range(count)),
        )
        self.children += started
        self.publisher, *self.workers = started
        self.clip = await self.publisher.request("prepare_clip", seconds=self.s.clip_s)

    async def start_lighthouse(self) -> tuple[Child, str]:
        port = free_port()
        config = self.workdir / "lighthouse.toml"
        config.write_text(
            "[server]\n"
            f'host = "127.0.0.1"\nport = {port}\nsecret = "{SECRET}"\n'
            'log_level = "WARNING"\nidle_timeout_s = 120\n'
            # every load client connects from loopback: no per-address socket cap
            "max_sockets_per_address = 100000\nmax_sockets = 100000\n\n"
            f'[[rooms]]\nid = "{ROOM}"\nname = "benchmark"\nvideo_codec = "vp8"\n',
            encoding="utf-8",
        )
        args = ["-m", "lighthouse.cli", "serve", "--config", str(config)]
        child = await spawn("lighthouse", args, self.workdir, pipes=False)
        self.children.append(child)
        return child, f"http://127.0.0.1:{port}"

    async def start_reencode(self) -> tuple[Child, str]:
        port = free_port()
        args = [str(BENCH / "reencode_server.py"), "--port", str(port)]
        child = await spawn("reencode", args, self.workdir, pipes=False)
        self.children.append(child)
        return child, f"http://127.0.0.1:{port}"

    def token(self, role: str) -> str:
        self.next_participant += 1
        pid = f"bench-{self.next_participant}"
        return self.tokens.mint(pid, pid, ROOM, role)

    async def grow(self, n: int, add: Any) -> None:
        """Spread subscribers evenly over the workers until there are n in all."""
        jobs = []
        for i, worker in enumerate(self.workers):
            target = n // len(self.workers) + (i < n % len(self.workers))
            if target > worker.count:
                jobs.append(add(worker, target - worker.count))
                worker.count = target
        await asyncio.gather(*jobs)

    async def snapshots(self) -> list[dict]:
        assert self.publisher is not None
        return await asyncio.gather(
            *(w.request("snapshot") for w in [self.publisher, *self.workers])
        )

    async def wait_for_video(self, n: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            subs = [sub for snap in (await self.snapshots())[1:] for sub in snap["subs"]]
            if len(subs) == n and all(sub["frames"] > 0 for sub in subs):
                return
            if time.monotonic() > deadline:
                got = sum(1 for sub in subs if sub["frames"] > 0)
                raise RuntimeError(f"only {got} of {n} subscribers got video in {timeout} s")
            await asyncio.sleep(0.25)

    async def measure(self, path: str, n: int, server: Child) -> Window:
        server_ps = server.ps
        ours = [c.ps for c in self.children if c.proc.returncode is None]
        me = psutil.Process()

        async def sample() -> tuple[float, float, float, float, list[dict]]:
            snaps = await self.snapshots()
            # this process's children are counted above; reaped ones would be counted twice
            mine = sum(cpu_seconds(p) for p in ours) + sum(me.cpu_times()[:2])
            return time.monotonic(), cpu_seconds(server_ps), mine, machine_busy_seconds(), snaps

        t0, server0, ours0, busy0, snaps0 = await sample()
        await asyncio.sleep(self.s.measure_s)
        t1, server1, ours1, busy1, snaps1 = await sample()
        seconds = t1 - t0
        fps: list[float] = []
        kbps: list[float] = []
        packets = expected = video_packets = 0
        for a, b in zip(snaps0[1:], snaps1[1:], strict=True):
            dt = b["t"] - a["t"]
            for sa, sb in zip(a["subs"], b["subs"], strict=True):
                fps.append((sb["frames"] - sa["frames"]) / dt)
                kbps.append((sb["bytes"] - sa["bytes"]) * 8 / dt / 1000)
                packets += sb["packets"] - sa["packets"]
                video_packets += sb["video_packets"] - sa["video_packets"]
                expected += sb["expected"] - sa["expected"]
        clients = sum(b["cpu"] - a["cpu"] for a, b in zip(snaps0[1:], snaps1[1:], strict=True))
        return Window(
            path=path,
            n=n,
            seconds=seconds,
            server_cpu_per_s=(server1 - server0) / seconds,
            rss_mb=tree_rss_mb(server_ps),
            packets_per_s=packets / seconds,
            fps=fps,
            kbps=kbps,
            clients_cpu_per_s=clients / seconds,
            publisher_cpu_per_s=(snaps1[0]["cpu"] - snaps0[0]["cpu"]) / seconds,
            other_cpu_per_s=max(0.0, ((busy1 - busy0) - (ours1 - ours0)) / seconds),
            keyframe_requests=snaps1[0]["keyframes_requested"] - snaps0[0]["keyframes_requested"],
            loss_down=max(0, expected - video_packets) / expected if expected else 0.0,
            lost_up=snaps1[0]["upstream_lost"] - snaps0[0]["upstream_lost"],
            publisher_fps=(snaps1[0]["frames_sent"] - snaps0[0]["frames_sent"])
            / (snaps1[0]["t"] - snaps0[0]["t"]),
        )

    def progress(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:5.1f} s] {message}", file=sys.stderr, flush=True)

    async def run_path(self, path: str, ns: list[int], server: Child, add: Any) -> list[Window]:
        windows = []
        for n in ns:
            self.progress(f"{path}: {n} subscribers")
            await self.grow(n, add)
            await self.wait_for_video(n)
            self.progress(f"{path}: all {n} have video; warm-up, then measure")
            await asyncio.sleep(self.s.warmup_s)
            best = None
            for attempt in range(1, self.s.attempts + 1):
                window = await self.measure(path, n, server)
                print(format_row(window), file=sys.stderr, flush=True)
                if best is None or window.quieter_than(best):
                    best = window
                # after this N: the other Ns, then about 3 s to close everything
                rest = (self.steps_left - 1) * self.s.step_s() + 3.0
                elapsed = time.monotonic() - self.started
                if not window.problem or elapsed + self.s.measure_s + rest > self.s.budget_s:
                    break
                if attempt < self.s.attempts:
                    self.progress(f"{path} N={n}: {window.problem}, measuring again")
            assert best is not None
            best.attempts = attempt
            windows.append(best)
            self.steps_left -= 1
        return windows

    async def close_clients(self) -> None:
        await asyncio.gather(*(c.request("close_all") for c in [self.publisher, *self.workers]))
        for worker in self.workers:
            worker.count = 0

    async def run(self) -> tuple[list[Window], list[Window]]:
        (lighthouse, lighthouse_url), (reencode, reencode_url), _ = await asyncio.gather(
            self.start_lighthouse(), self.start_reencode(), self.start_workers()
        )
        await asyncio.gather(
            wait_healthy(lighthouse_url, lighthouse), wait_healthy(reencode_url, reencode)
        )
        self.progress("servers up, clip encoded")
        assert self.publisher is not None
        print(
            f"clip: VP8 640x360 25 fps, {self.clip['clip_kbps']} kbit/s, "
            f"{self.clip['keyframes']} keyframes per {self.s.clip_s:g} s loop; "
            f"{os.cpu_count()} cores; warm-up {self.s.warmup_s:g} s, "
            f"measured {self.s.measure_s:g} s per N",
            flush=True,
        )
        print(format_header(), file=sys.stderr, flush=True)

        publication = await self.publisher.request(
            "publish_lighthouse", url=lighthouse_url, token=self.token("main")
        )

        async def add_forward(worker: Child, count: int) -> None:
            tokens = [self.token("terminal") for _ in range(count)]
            await worker.request(
                "add_lighthouse",
                url=lighthouse_url,
                tokens=tokens,
                publication_id=publication["publication_id"],
            )

        forward = await self.run_path("forward", self.s.ns, lighthouse, add_forward)
        await self.close_clients()
        await stop(lighthouse)  # idle, but its CPU is no part of the baseline

        janus_windows: list[Window] = []
        if self.janus:
            server, url = await self.start_janus()
            feed = (await self.publisher.request("publish_janus", url=url))["feed"]

            async def add_janus(worker: Child, count: int) -> None:
                await worker.request("add_janus", url=url, count=count, feed=feed)

            janus_windows = await self.run_path("janus", self.s.ns, server, add_janus)
            await self.close_clients()
            await stop(server)

        await self.publisher.request("publish_reencode", url=reencode_url)

        async def add_reencode(worker: Child, count: int) -> None:
            await worker.request("add_reencode", url=reencode_url, count=count)

        baseline = await self.run_path("reencode", self.s.baseline_ns, reencode, add_reencode)
        await self.close_clients()
        return forward, janus_windows, baseline

    async def start_janus(self) -> tuple[Child, str]:
        port = free_port()
        folder = janus.write_config(self.workdir / "janus", port, primary_interface())
        args = ["-F", str(folder), "-C", str(folder / "janus.jcfg")]
        child = await spawn("janus", args, self.workdir, pipes=False, executable=janus.JANUS_BINARY)
        self.children.append(child)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        async with aiohttp.ClientSession() as http:
            while True:
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with http.get(f"{url}/janus/info") as response:
                        if response.status == 200:
                            return child, url
                if child.proc.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"janus did not start:\n{tail(child.log)}")
                await asyncio.sleep(0.2)

    async def shutdown(self) -> None:
        await asyncio.gather(*(stop(c) for c in self.children), return_exceptions=True)


def format_header() -> str:
    return (
        f"{'path':<9}{'N':>4}{'server CPU/s':>14}{'pkts/s out':>12}{'pkts/CPU-s':>12}"
        f"{'fps min':>9}{'fps mean':>10}{'kbit/s/sub':>12}{'clients CPU/s':>15}"
        f"{'pub CPU/s':>11}{'other load':>12}{'PLIs':>6}{'loss dn':>9}{'lost up':>9}"
        f"{'pub fps':>9}{'RSS MB':>8}  note"
    )


def format_row(w: Window) -> str:
    note = w.problem + (f" ({w.attempts} tries)" if w.attempts > 1 else "")
    return (
        f"{w.path:<9}{w.n:>4}{w.server_cpu_per_s:>14.3f}{w.packets_per_s:>12.0f}"
        f"{w.pkts_per_cpu_s:>12.0f}{min(w.fps):>9.1f}{statistics.mean(w.fps):>10.1f}"
        f"{statistics.mean(w.kbps):>12.0f}{w.clients_cpu_per_s:>15.3f}"
        f"{w.publisher_cpu_per_s:>11.3f}{w.other_cpu_per_s:>12.2f}{w.keyframe_requests:>6}"
        f"{w.loss_down:>9.1%}{w.lost_up:>9}{w.publisher_fps:>9.1f}{w.rss_mb:>8.0f}  {note}"
    )


def marginal(windows: list[Window]) -> float:
    first, last = windows[0], windows[-1]
    return (last.server_cpu_per_s - first.server_cpu_per_s) / (last.n - first.n)


def report(
    settings: Settings,
    forward: list[Window],
    janus_windows: list[Window],
    baseline: list[Window],
    wall: float,
) -> dict:
    ours = marginal(forward)
    theirs = marginal(baseline)
    ratio = theirs / ours if ours > 0 else math.inf
    largest = forward[-1]
    print(format_header())
    for w in forward + janus_windows + baseline:
        print(format_row(w))
    vs_janus: dict[str, float] = {}
    for w, j in zip(forward, janus_windows, strict=False):
        vs_janus[str(w.n)] = round(w.pkts_per_cpu_s / j.pkts_per_cpu_s, 2)
    if janus_windows:
        print(
            "packets per server CPU-second, Lighthouse / Janus: "
            + ", ".join(f"N={n}: {r:.2f}x" for n, r in vs_janus.items())
            + f" (goal >= 1.0x at the largest N); RSS {largest.rss_mb:.0f} MB vs "
            f"{janus_windows[-1].rss_mb:.0f} MB"
        )
    else:
        print("Janus not measured (install Debian's janus for that baseline)")
    print(
        f"marginal server CPU per subscriber: forwarding {ours:.4f} (N {forward[0].n}->"
        f"{largest.n}), re-encode {theirs:.4f} (N {baseline[0].n}->{baseline[-1].n}, kept "
        f"small: each re-encode costs a sizeable share of the {os.cpu_count()} cores)"
    )
    verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
    print(f"re-encode / forwarding = {ratio:.1f}x (target >= {TARGET_RATIO:g}x: {verdict})")
    result = {
        "bench": "relay",
        "quick": settings.quick,
        "cores": os.cpu_count(),
        "n": [w.n for w in forward],
        "server_cpu_per_s": {str(w.n): round(w.server_cpu_per_s, 4) for w in forward},
        "marginal_cpu_per_sub": round(ours, 5),
        "baseline_n": [w.n for w in baseline],
        "baseline_server_cpu_per_s": {str(w.n): round(w.server_cpu_per_s, 4) for w in baseline},
        "baseline_marginal_cpu_per_sub": round(theirs, 5),
        "ratio_vs_reencode": round(ratio, 1),
        "pkts_per_cpu_s": round(largest.pkts_per_cpu_s),
        "delivered_fps_min": round(min(largest.fps), 1),
        "delivered_fps_mean": round(statistics.mean(largest.fps), 1),
        "fps_min_by_n": {str(w.n): round(min(w.fps), 1) for w in forward},
        "baseline_fps_min": round(min(min(w.fps) for w in baseline), 1),
        "baseline_fps_mean": round(statistics.mean(baseline[-1].fps), 1),
        "bitrate_kbps": round(statistics.mean(k for w in forward for k in w.kbps)),
        "max_other_load_cpu_per_s": round(max(w.other_cpu_per_s for w in forward + baseline), 2),
        "vs_janus": vs_janus,
        "janus_pkts_per_cpu_s": {str(j.n): round(j.pkts_per_cpu_s) for j in janus_windows},
        "rss_mb": round(largest.rss_mb),
        "janus_rss_mb": round(janus_windows[-1].rss_mb) if janus_windows else None,
        "not_quiet": [
            f"{w.path} N={w.n}: {w.problem}"
            for w in forward + janus_windows + baseline
            if w.problem
        ],
        "wall_s": round(wall, 1),
    }
    return result


def parse_args(argv: list[str] | None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 1, 10 only (under 45 s)")
    parser.add_argument("--n", type=int, nargs="+", help="subscriber counts for Lighthouse")
    parser.add_argument("--baseline-n", type=int, nargs="+", help="subscriber counts, baseline")
    parser.add_argument("--no-janus", action="store_true", help="leave out the Janus baseline")
    parser.add_argument("--warmup", type=float, help="seconds before each measurement")
    parser.add_argument("--measure", type=float, help="seconds measured at each N")
    args = parser.parse_args(argv)
    quick = bool(args.quick)
    settings = Settings(
        ns=sorted(set(args.n or ([1, 10] if quick else [1, 10, 50]))),
        baseline_ns=sorted(set(args.baseline_n or ([1, 3] if quick else [1, 4]))),
        warmup_s=args.warmup if args.warmup is not None else (2.0 if quick else 3.0),
        measure_s=args.measure if args.measure is not None else (4.0 if quick else 8.0),
        clip_s=4.0,
        quick=quick,
        attempts=2 if quick else 3,
        budget_s=50.0 if quick else 500.0,  # --quick must end within 60 s
        janus=not args.no_janus,
    )
    if len(settings.ns) < 2 or len(settings.baseline_ns) < 2 or min(settings.ns) < 1:
        parser.error("marginal cost needs at least two subscriber counts on each path")
    return settings


async def main_async(settings: Settings) -> int:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lighthouse-bench-") as tmp:
        bench = Bench(settings, Path(tmp))
        try:
            # A hard bound on the whole run: nothing here waits forever.
            limit = 120.0 if settings.quick else 600.0
            forward, janus_windows, baseline = await asyncio.wait_for(bench.run(), limit)
        finally:
            await bench.shutdown()
    result = report(settings, forward, janus_windows, baseline, time.monotonic() - started)
    starved = [w for w in forward + janus_windows + baseline if min(w.fps) <= 0]
    print(json.dumps(result), flush=True)
    if starved:
        print(
            "FAIL: a subscriber got no video at " + ", ".join(f"{w.path} N={w.n}" for w in starved),
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    try:
        return asyncio.run(main_async(settings))
    except (RuntimeError, TimeoutError) as exc:
        print(f"relay benchmark failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
