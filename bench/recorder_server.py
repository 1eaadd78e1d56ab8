"""The server the recorder benchmark measures: `lighthouse serve` plus two bench-only routes.

    python bench/recorder_server.py --config lighthouse.toml

Builds the app exactly as `lighthouse serve` does (`lighthouse.app.create_app`, recording
as configured in [recording]) and adds GET /recorder/stats (the recorder's counters and
the event loop's longest stall since the last call) and POST /recorder/rooms/{id}
{"record": false|true} (detach the recorder from a room, or attach it again), so the
benchmark can switch recording off and on with the same publishers connected. Every room
starts unrecorded. Not for production: these routes check no token.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lighthouse.app import create_app
from lighthouse.config import ConfigError, load_config
from lighthouse.keys import RECORDING_SERVICE_KEY, ROOMS_KEY

LAG_KEY = web.AppKey("loop_lag", dict)
LAG_PROBE_S = 0.01


async def _watch_lag(lag: dict) -> None:
    # how late a 10 ms sleep wakes up: the longest the loop was kept from forwarding
    loop = asyncio.get_running_loop()
    while True:
        before = loop.time()
        await asyncio.sleep(LAG_PROBE_S)
        late = loop.time() - before - LAG_PROBE_S
        lag["max_s"] = max(lag["max_s"], late)
        lag["samples"] += 1
        lag["over_5ms"] += late > 0.005


async def _stats(request: web.Request) -> web.Response:
    recorder = request.app[RECORDING_SERVICE_KEY].recorder
    lag = request.app[LAG_KEY]
    body = {
        **recorder.stats(),
        "recordings_detail": {pid: r.stats() for pid, r in recorder.recordings.items()},
        "loop_lag_max_ms": round(lag["max_s"] * 1000, 2),
        "loop_lag_over_5ms": lag["over_5ms"],
        "loop_lag_samples": lag["samples"],
        "time": time.monotonic(),
    }
    lag.update(max_s=0.0, samples=0, over_5ms=0)
    return web.json_response(body)


async def _set_recording(request: web.Request) -> web.Response:
    """POST {"record": true|false}: start or stop recording a room (what the benchmark
    toggles, with the same publishers connected throughout)."""
    room = request.app[ROOMS_KEY].get(request.match_info["room_id"])
    if room is None:
        raise web.HTTPNotFound()
    recorder = request.app[RECORDING_SERVICE_KEY].recorder
    if (await request.json()).get("record"):
        recorder.attach(room)
    else:
        recorder.detach(room)
    return web.json_response({"recordings": len(recorder.recordings)})


def add_bench_routes(app: web.Application) -> None:
    app[LAG_KEY] = {"max_s": 0.0, "samples": 0, "over_5ms": 0}
    app.router.add_get("/recorder/stats", _stats)
    app.router.add_post("/recorder/rooms/{room_id}", _set_recording)

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        # after the composition root's start-up: the recording service runs by now
        for room in app[ROOMS_KEY].values():
            app[RECORDING_SERVICE_KEY].recorder.detach(room)
        watcher = asyncio.ensure_future(_watch_lag(app[LAG_KEY]))
        yield
        watcher.cancel()

    app.cleanup_ctx.append(lifetime)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="TOML config file (also LIGHTHOUSE_CONFIG)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, recording_enabled=True)
    except ConfigError as exc:
        print(f"recorder_server: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = create_app(config)
    add_bench_routes(app)
    web.run_app(
        app,
        host=config.host,
        port=config.port,
        print=lambda _: print(f"Lighthouse (bench) on {config.base_url()}", flush=True),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
