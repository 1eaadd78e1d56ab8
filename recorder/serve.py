"""Run Lighthouse with its rooms recorded, until the composition root wires the recorder.

    python -m recorder.serve --config lighthouse.toml --root var/recordings [--segment-s 10]

Builds the app exactly as `lighthouse serve` does (`lighthouse.app.create_app`), attaches
a `Recorder` to its rooms (all, or `--rooms a,b`) and serves it. The recorder is closed on
shutdown, after the rooms (so every recording sees its end of stream first).
GET /recorder/stats answers the recorder's counters and the event loop's lag since the
last call; POST /recorder/rooms/{id} {"record": false} stops recording a room (true starts
it again). bench/recorder.py uses both; neither is meant for production.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import AsyncIterator

from aiohttp import web

from lighthouse.app import ROOMS_KEY, create_app
from lighthouse.config import Config, ConfigError, load_config

from .recorder import Recorder

RECORDER_KEY = web.AppKey("recorder", Recorder)
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
    recorder = request.app[RECORDER_KEY]
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
    recorder = request.app[RECORDER_KEY]
    if (await request.json()).get("record"):
        recorder.attach(room)
    else:
        recorder.detach(room)
    return web.json_response({"recordings": len(recorder.recordings)})


def build_app(
    config: Config, recorder: Recorder, rooms: list[str] | None = None
) -> web.Application:
    app = create_app(config)
    for room_id, room in app[ROOMS_KEY].items():
        if rooms is None or room_id in rooms:
            recorder.attach(room)
    app[RECORDER_KEY] = recorder
    app[LAG_KEY] = {"max_s": 0.0, "samples": 0, "over_5ms": 0}
    app.router.add_get("/recorder/stats", _stats)
    app.router.add_post("/recorder/rooms/{room_id}", _set_recording)

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        watcher = asyncio.ensure_future(_watch_lag(app[LAG_KEY]))
        yield
        watcher.cancel()
        await recorder.close()

    app.cleanup_ctx.append(lifetime)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recorder.serve", description=__doc__)
    parser.add_argument("--config", help="TOML config file (also LIGHTHOUSE_CONFIG)")
    parser.add_argument("--root", required=True, help="directory the recordings go under")
    parser.add_argument("--segment-s", type=float, default=10.0)
    parser.add_argument(
        "--rooms", help='comma-separated room ids to record (default: all; "" for none)'
    )
    parser.add_argument("--inline", action="store_true", help="file work on the event loop")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"recorder: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    recorder = Recorder(args.root, segment_s=args.segment_s, threaded=not args.inline)
    rooms = args.rooms.split(",") if args.rooms is not None else None
    app = build_app(config, recorder, rooms)
    web.run_app(
        app,
        host=config.host,
        port=config.port,
        print=lambda _: print(f"Lighthouse (recording) on {config.base_url()}", flush=True),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
