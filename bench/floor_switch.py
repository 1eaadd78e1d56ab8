"""Roll-call benchmark: how soon a TV shows the venue that was just given the floor.

A controlled meeting room (H.264, as meetings are) on a Lighthouse server in this process:
the main venue and three villages publish aiortc cameras of distinct colours, and a
village TV watches the room's floor slot. Each round the main venue calls the roll of the
next village and the time runs from sending the `control` message to the first frame the
TV decodes in that village's colour. The slot moves the TV's existing tracks to the new
source and asks it for a keyframe, so no renegotiation happens.

The baseline, in the same run: what an SFU without a slot would do, a fresh subscription
to the village's camera (offer/answer, ICE, DTLS, first keyframe) by the main venue, timed
from the `subscribe` request to the first decoded frame in the right colour.

The last line of output is one JSON object with both medians and their ratio.

    python bench/floor_switch.py              # 12 switches, 6 fresh subscriptions
    python bench/floor_switch.py --rounds 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from aiohttp import web
from aiortc import AudioStreamTrack

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from lighthouse.app import create_app  # noqa: E402
from lighthouse.config import RoomConfig, load_config  # noqa: E402
from signaling.client import SignalingClient  # noqa: E402
from signaling.tokens import TokenIssuer  # noqa: E402

from media import PictureTrack  # noqa: E402

SECRET = "floor-switch-benchmark-secret-0123456789-abcdef"
ROOM = "bench-meeting"
COLOURS = {
    "main": (230, 210, 20),
    "v1": (220, 30, 30),
    "v2": (30, 200, 40),
    "v3": (30, 60, 220),
}
SWITCH_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def colour_of(frame) -> str:
    rgb = frame.to_ndarray(format="rgb24").reshape(-1, 3).mean(axis=0)
    return min(COLOURS, key=lambda n: float(np.linalg.norm(rgb - np.array(COLOURS[n]))))


def camera(name: str) -> PictureTrack:
    picture = np.full((360, 640, 3), COLOURS[name], np.uint8)
    picture[340:, ::16] = 128  # a little texture: the encoder has something to send
    return PictureTrack(picture, fps=25)


async def first_frame_of(track, colour: str, timeout: float = SWITCH_TIMEOUT_S) -> float:
    """Read frames until one in `colour`; the monotonic time it was decoded."""

    async def read() -> float:
        while True:
            frame = await track.recv()
            if colour_of(frame) == colour:
                return time.monotonic()

    return await asyncio.wait_for(read(), timeout)


class FrameWatch:
    """Keeps a track drained (the decoder must not lag) and notes each colour change."""

    def __init__(self, track) -> None:
        self.track = track
        self.changes: list[tuple[float, str]] = []
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        last = None
        while True:
            frame = await self.track.recv()
            colour = colour_of(frame)
            if colour != last:
                self.changes.append((time.monotonic(), colour))
                last = colour

    async def first_after(self, since: float, colour: str) -> float:
        deadline = time.monotonic() + SWITCH_TIMEOUT_S
        while time.monotonic() < deadline:
            for at, seen in self.changes:
                if at >= since and seen == colour:
                    return at
            await asyncio.sleep(0.005)
        raise TimeoutError(f"no {colour} frame within {SWITCH_TIMEOUT_S} s")


async def run(rounds: int, fresh: int) -> dict:
    port = free_port()
    tokens = TokenIssuer(SECRET)
    with tempfile.TemporaryDirectory() as workdir:
        config = load_config(
            env={},
            host="127.0.0.1",
            port=port,
            secret=SECRET,
            database_url=f"sqlite:///{workdir}/bench.db",
            recording_enabled=False,
            rooms=(RoomConfig(ROOM, "点名测试", "h264", controlled=True),),
        )
        app = create_app(config)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        base = f"http://127.0.0.1:{port}"
        clients: dict[str, SignalingClient] = {}
        try:
            for name in ("main", "v1", "v2", "v3", "tv"):
                role = "main" if name == "main" else "terminal"
                clients[name] = SignalingClient(base, tokens.mint(name, name, ROOM, role))
                await clients[name].connect()
            publications = {}
            for name in ("main", "v1", "v2", "v3"):
                publications[name] = await clients[name].publish([AudioStreamTrack(), camera(name)])
            for _ in range(4):
                await clients["tv"].next_event("publication_added")
            peer_ids = {n: c.joined["peer_id"] for n, c in clients.items()}
            slot = await clients["tv"].subscribe("floor", kinds=["video"])
            watch = FrameWatch(slot.tracks["video"])

            switches = []
            villages = ("v1", "v2", "v3")
            for i in range(rounds + 1):
                village = villages[i % 3]
                sent = time.monotonic()
                await clients["main"].request(
                    {"type": "control", "action": "roll_call", "peer_id": peer_ids[village]}
                )
                shown = await watch.first_after(sent, village)
                if i > 0:  # the first fills an empty slot: not a switch
                    switches.append(shown - sent)
                await asyncio.sleep(0.5)
            watch.task.cancel()

            subscribes = []
            for i in range(fresh):
                village = villages[i % 3]
                sent = time.monotonic()
                sub = await clients["main"].subscribe(publications[village], kinds=["video"])
                shown = await first_frame_of(sub.tracks["video"], village)
                subscribes.append(shown - sent)
                await clients["main"].unsubscribe(sub.subscription_id)
                await asyncio.sleep(0.3)
        finally:
            for client in clients.values():
                await client.close()
            await runner.cleanup()

    def summary(values: list[float]) -> dict:
        ordered = sorted(values)
        return {
            "n": len(values),
            "p50_ms": round(statistics.median(values) * 1000, 1),
            "p95_ms": round(ordered[max(0, int(len(ordered) * 0.95 + 0.5) - 1)] * 1000, 1),
            "max_ms": round(ordered[-1] * 1000, 1),
        }

    switch, baseline = summary(switches), summary(subscribes)
    return {
        "roll_call_switch": switch,
        "fresh_subscription": baseline,
        "ratio_switch_vs_fresh": round(switch["p50_ms"] / baseline["p50_ms"], 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12, help="roll-call switches measured")
    parser.add_argument("--fresh", type=int, default=6, help="fresh subscriptions measured")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.rounds, args.fresh))
    for name in ("roll_call_switch", "fresh_subscription"):
        r = result[name]
        print(f"{name:20s} n={r['n']:3d}  p50 {r['p50_ms']:7.1f} ms  p95 {r['p95_ms']:7.1f} ms")
    print(f"switch / fresh subscription (p50) = {result['ratio_switch_vs_fresh']:.2f}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
