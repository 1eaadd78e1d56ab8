"""Recorder benchmark: what recording a venue costs the server, beside relaying it.

A Lighthouse server runs in its own process (bench/recorder_server.py: the app as
`lighthouse serve` builds it, recording service and database index included, the recorder
detached from every room at first). K publishers send a pre-encoded clip (VP8 640x360 25 fps
~800 kbit/s from bench/clip.py, plus pre-encoded Opus ~32 kbit/s) so they cost almost no
client CPU, each with one subscriber that only counts what it receives. With the same K
venues connected throughout, recording is switched off and on in alternating windows
(POST /recorder/rooms/bench), so both sides of the comparison relay exactly the same
media, and slow drifts in the machine's load cancel out. The recorder's cost per stream is
(server CPU recording - server CPU relaying only) / K, in CPU-seconds per second (fractions
of one core). Also measured: bytes the server writes per second (its write() calls), the
recorder's own code (event-loop time and file-thread CPU), and the event loop's longest
stall (GET /recorder/stats).

    python bench/recorder.py                # K = 1, 4, 8
    python bench/recorder.py --quick        # K = 1, 3 (under 45 s)

The last line of output is one JSON object with `cpu_per_stream` (at the largest K) and
`bytes_per_s` (per stream). Exits non-zero if a subscriber got no video or the recorder
wrote nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import av
import numpy as np
import psutil
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from sfu.aiortc_seam import ForwardingReceiver
from signaling.client import SignalingClient
from signaling.tokens import TokenIssuer

from clip import Clip, ClipTrack, encode_clip
from loadclients import CountingSink
from relay import Child, free_port, machine_busy_seconds, spawn, stop, wait_healthy

SECRET = "recorder-benchmark-secret-0123456789-abcdefghijkl"
TARGET_CPU_PER_STREAM = 0.02
ROOM = "bench"
AUDIO_CLOCK = 48000


def cpu_seconds(process: psutil.Process) -> float:
    """CPU time of all of a process's threads, to the nanosecond (Linux schedstat): the
    differences measured here are a few ms per second, near psutil's 10 ms tick."""
    total = 0
    try:
        for task in Path(f"/proc/{process.pid}/task").iterdir():
            with contextlib.suppress(OSError):  # a thread that has just ended
                total += int((task / "schedstat").read_text().split()[0])
    except OSError:
        times = process.cpu_times()
        return times.user + times.system
    return total / 1e9


def encode_opus(seconds: float = 4.0) -> list[bytes]:
    """A looping tone, 20 ms Opus packets at ~32 kbit/s."""
    context = av.CodecContext.create("libopus", "w")
    context.sample_rate, context.layout, context.format = AUDIO_CLOCK, "stereo", "s16"
    context.bit_rate = 32000
    packets: list[bytes] = []
    for i in range(int(seconds * 50)):
        t = (np.arange(960) + i * 960) / AUDIO_CLOCK
        tone = (np.sin(2 * np.pi * 330 * t) * 6000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(
            np.repeat(tone, 2).reshape(1, -1), format="s16", layout="stereo"
        )
        frame.sample_rate, frame.pts = AUDIO_CLOCK, i * 960
        packets.extend(bytes(p) for p in context.encode(frame))
    return packets


class OpusClipTrack(MediaStreamTrack):
    """Sends pre-encoded Opus packets in a loop, one every 20 ms."""

    kind = "audio"

    def __init__(self, packets: list[bytes]) -> None:
        super().__init__()
        self.packets = packets
        self.sent = 0
        self._start: float | None = None
        self._time_base = fractions.Fraction(1, AUDIO_CLOCK)

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + self.sent * 0.02 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        packet = av.Packet(self.packets[self.sent % len(self.packets)])
        packet.pts, packet.time_base = self.sent * 960, self._time_base
        self.sent += 1
        return packet


@dataclass
class Venue:
    """One publisher and its one subscriber."""

    publisher: SignalingClient
    subscriber: SignalingClient
    pc: RTCPeerConnection
    sink: CountingSink


@dataclass
class Window:
    mode: str  # "relay" (recording off) or "record"
    k: int
    seconds: float
    server_cpu_per_s: float
    write_bytes_per_s: float
    recorded_bytes_per_s: float  # growth of the recordings directory
    fps_min: float
    loop_lag_max_ms: float
    other_cpu_per_s: float
    recorder_cpu_per_s: float  # the recorder's own code: loop side and file thread


@dataclass
class Bench:
    url: str
    server: Child
    root: Path
    clip: Clip
    opus: list[bytes]
    warmup_s: float
    measure_s: float
    tokens: TokenIssuer = field(default_factory=lambda: TokenIssuer(SECRET))
    venues: list[Venue] = field(default_factory=list)
    count: int = 0

    async def add_venue(self, room: str) -> None:
        self.count += 1
        name = f"bench-{self.count}"
        publisher = SignalingClient(self.url, self.tokens.mint(name, name, room, "terminal"))
        await publisher.connect()
        video = ClipTrack(self.clip)
        publication_id = await publisher.publish([OpusClipTrack(self.opus), video])
        for sender in publisher.publish_pcs[-1].getSenders():
            if sender.kind == "video":  # a pre-encoded clip answers PLI itself
                sender._send_keyframe = video.request_keyframe  # type: ignore[method-assign]
        viewer = f"tv-{self.count}"
        subscriber = SignalingClient(self.url, self.tokens.mint(viewer, viewer, room, "terminal"))
        await subscriber.connect()
        await subscriber.next_event("publication_added", timeout=15)
        offer = await subscriber.request({"type": "subscribe", "publication_id": publication_id})
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        sink = CountingSink()
        for transceiver in pc.getTransceivers():  # count, never decode
            ForwardingReceiver.install(transceiver.receiver).sink = sink
        await pc.setLocalDescription(await pc.createAnswer())
        await subscriber.request(
            {
                "type": "subscription_answer",
                "subscription_id": offer["subscription_id"],
                "sdp": pc.localDescription.sdp,
            }
        )
        self.venues.append(Venue(publisher, subscriber, pc, sink))

    async def grow(self, room: str, k: int) -> None:
        while len(self.venues) < k:
            await self.add_venue(room)
        deadline = time.monotonic() + 20
        while not all(v.sink.frames > 0 for v in self.venues):
            if time.monotonic() > deadline:
                raise RuntimeError("a subscriber got no video in 20 s")
            await asyncio.sleep(0.2)

    async def close_all(self) -> None:
        for venue in self.venues:
            for closing in (venue.pc.close(), venue.subscriber.close(), venue.publisher.close()):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(closing, 10)
        self.venues.clear()

    async def stats(self) -> dict:
        async with aiohttp.ClientSession() as http, http.get(f"{self.url}/recorder/stats") as r:
            return await r.json()

    def recorded_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())

    async def set_recording(self, on: bool) -> None:
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{self.url}/recorder/rooms/{ROOM}", json={"record": on}) as response,
        ):
            response.raise_for_status()

    async def measure(self, k: int, recording: bool) -> Window:
        await self.set_recording(recording)
        await asyncio.sleep(self.warmup_s)  # a recording's start: keyframe, first file
        server = self.server.ps
        me = psutil.Process()

        def sample() -> tuple:
            io = server.io_counters()
            frames = [v.sink.frames for v in self.venues]
            ours = cpu_seconds(server) + sum(me.cpu_times()[:2])
            return (
                time.monotonic(),
                cpu_seconds(server),
                io.write_chars,
                self.recorded_bytes(),
                frames,
                ours,
                machine_busy_seconds(),
            )

        before = await self.stats()  # also resets the loop-lag maximum
        t0, cpu0, written0, recorded0, frames0, ours0, busy0 = sample()
        await asyncio.sleep(self.measure_s)
        t1, cpu1, written1, recorded1, frames1, ours1, busy1 = sample()
        lag = await self.stats()
        own = sum(lag[key] - before[key] for key in ("loop_busy_s", "file_thread_cpu_s"))
        seconds = t1 - t0
        return Window(
            mode="record" if recording else "relay",
            k=k,
            seconds=seconds,
            server_cpu_per_s=(cpu1 - cpu0) / seconds,
            write_bytes_per_s=(written1 - written0) / seconds,
            recorded_bytes_per_s=(recorded1 - recorded0) / seconds,
            fps_min=min((b - a) / seconds for a, b in zip(frames0, frames1, strict=True)),
            loop_lag_max_ms=lag["loop_lag_max_ms"],
            other_cpu_per_s=max(0.0, ((busy1 - busy0) - (ours1 - ours0)) / seconds),
            recorder_cpu_per_s=own / seconds,
        )


def row(w: Window) -> str:
    return (
        f"{w.mode:<7}{w.k:>3}{w.server_cpu_per_s:>14.4f}{w.write_bytes_per_s / 1000:>14.1f}"
        f"{w.recorded_bytes_per_s / 1000:>15.1f}{w.fps_min:>9.1f}{w.loop_lag_max_ms:>13.1f}"
        f"{w.other_cpu_per_s:>12.2f}{w.recorder_cpu_per_s:>14.4f}"
    )


HEADER = (
    f"{'mode':<7}{'K':>3}{'server CPU/s':>14}{'written kB/s':>14}{'recorded kB/s':>15}"
    f"{'fps min':>9}{'loop lag ms':>13}{'other load':>12}{'recorder CPU':>14}"
)


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


async def run(ks: list[int], pairs: int, warmup_s: float, measure_s: float) -> dict:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lighthouse-bench-rec-") as tmp:
        workdir = Path(tmp)
        port = free_port()
        config = workdir / "lighthouse.toml"
        config.write_text(
            f'[server]\nhost = "127.0.0.1"\nport = {port}\nsecret = "{SECRET}"\n'
            'log_level = "WARNING"\nidle_timeout_s = 120\n\n'
            f'[database]\nurl = "sqlite:///{workdir}/lighthouse.db"\n\n'
            f'[recording]\ndir = "{workdir}/recordings"\n\n'
            f'[[rooms]]\nid = "{ROOM}"\nname = "benchmark"\nvideo_codec = "vp8"\n',
            encoding="utf-8",
        )
        root = workdir / "recordings"
        args = [str(Path(__file__).with_name("recorder_server.py")), "--config", str(config)]
        server = await spawn("lighthouse", args, workdir, pipes=False)
        url = f"http://127.0.0.1:{port}"
        try:
            # encode the clip (CPU, a few seconds) while the server starts
            clip_task = asyncio.get_running_loop().run_in_executor(None, encode_clip)
            await wait_healthy(url, server)
            clip, opus = await clip_task, encode_opus()
            bench = Bench(url, server, root, clip, opus, warmup_s, measure_s)
            print(
                f"clip: VP8 640x360 25 fps {clip.kbps:.0f} kbit/s + Opus; {os.cpu_count()} "
                "cores; "
                f"{pairs} relay/record window pairs of {measure_s:g} s per K",
                flush=True,
            )
            print(HEADER, file=sys.stderr, flush=True)
            windows: dict[int, list[Window]] = {}
            for k in ks:
                await bench.grow(ROOM, k)
                windows[k] = []
                for _ in range(pairs):
                    for recording in (False, True):
                        window = await bench.measure(k, recording)
                        print(row(window), file=sys.stderr, flush=True)
                        windows[k].append(window)
            await bench.set_recording(False)
            await bench.close_all()
            recorder_stats = await bench.stats()
        finally:
            await stop(server)
    all_windows = [w for ws in windows.values() for w in ws]
    print(HEADER)
    for w in all_windows:
        print(row(w))
    per_k = {}
    for k, ws in windows.items():
        relay = [w for w in ws if w.mode == "relay"]
        record = [w for w in ws if w.mode == "record"]
        relay_cpu = mean([w.server_cpu_per_s for w in relay])
        record_cpu = mean([w.server_cpu_per_s for w in record])
        per_k[str(k)] = {
            "relay_cpu_per_s": round(relay_cpu, 4),
            "record_cpu_per_s": round(record_cpu, 4),
            "cpu_per_stream": round((record_cpu - relay_cpu) / k, 4),
            "own_cpu_per_stream": round(mean([w.recorder_cpu_per_s for w in record]) / k, 4),
            "write_bytes_per_s": round(mean([w.write_bytes_per_s for w in record]) / k),
            "loop_lag_max_ms": max(w.loop_lag_max_ms for w in record),
            "relay_loop_lag_max_ms": max(w.loop_lag_max_ms for w in relay),
        }
    largest = per_k[str(ks[-1])]
    # the files' size over their length: the windows' write() counts see whole fragments
    # (one a second) and each recording's start, so they read high over short windows
    bytes_per_s = round(recorder_stats["bytes_written"] / recorder_stats["seconds_written"])
    verdict = "met" if largest["cpu_per_stream"] <= TARGET_CPU_PER_STREAM else "NOT met"
    print(
        f"recorder CPU per stream: {largest['cpu_per_stream']:.4f} of a core at K={ks[-1]} "
        f"(goal <= {TARGET_CPU_PER_STREAM}: {verdict}); its own code "
        f"{largest['own_cpu_per_stream']:.4f}; {bytes_per_s / 1000:.1f} kB of file per "
        "second of a stream"
    )
    return {
        "bench": "recorder",
        "cores": os.cpu_count(),
        "k": ks,
        "cpu_per_stream": largest["cpu_per_stream"],
        "bytes_per_s": bytes_per_s,
        "own_cpu_per_stream": largest["own_cpu_per_stream"],
        "by_k": per_k,
        "fps_min": round(min(w.fps_min for w in all_windows), 1),
        "segments": recorder_stats["segments"],
        "segments_failed": recorder_stats["segments_failed"],
        "max_other_load": round(max(w.other_cpu_per_s for w in all_windows), 2),
        "wall_s": round(time.monotonic() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="K = 1, 3 (under 45 s)")
    parser.add_argument("--k", type=int, nargs="+", help="numbers of recorded streams")
    args = parser.parse_args(argv)
    ks = sorted(set(args.k or ([1, 3] if args.quick else [1, 4, 8])))
    pairs, warmup_s, measure_s = (2, 1.0, 2.5) if args.quick else (3, 1.5, 5.0)
    try:
        result = asyncio.run(
            asyncio.wait_for(run(ks, pairs, warmup_s, measure_s), 120 if args.quick else 600)
        )
    except (RuntimeError, TimeoutError) as exc:
        print(f"recorder benchmark failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result), flush=True)
    if result["fps_min"] <= 0 or result["segments"] <= 0 or result["segments_failed"]:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
