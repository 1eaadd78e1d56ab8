"""A media worker process: one MediaRouter, its pipe endpoint and its control connection.

Started by the front (sfu/workers.py) as `python -m sfu.worker --id ID`, with the
control key in the environment (LIGHTHOUSE_WORKER_KEY, never on the command line). It
prints one JSON line with its addresses, registers itself in Redis with a heartbeat when
given `--redis`, serves its front, and exits when its front does (stdin closes) — a
worker never outlives the server that placed peers on it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from typing import Any

from .aiortc_seam import check_seam
from .looplag import LoopLag
from .pipe import PipeEndpoint
from .ports import PortAllocator, PortRange
from .router import MediaRouter
from .worker_rpc import serve_router

logger = logging.getLogger(__name__)

KEY_ENV = "LIGHTHOUSE_WORKER_KEY"


async def run_worker(
    worker_id: str,
    key: str,
    redis_url: str | None,
    udp_ports: PortRange | None = None,
    announced_address: str | None = None,
) -> None:
    endpoint = PipeEndpoint()
    pipe_address = await endpoint.open()
    ports = PortAllocator(udp_ports, announced_address) if udp_ports else None
    router = MediaRouter(endpoint, ports=ports)
    router.loop_lag = LoopLag()
    router.loop_lag.start()
    serving: set[asyncio.Task[Any]] = set()

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        serving.add(task)
        try:
            await serve_router(router, reader, writer, key)
        finally:
            serving.discard(task)

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0, limit=1024 * 1024)
    control_address = server.sockets[0].getsockname()[:2]
    info = {
        "worker": worker_id,
        "pid": os.getpid(),
        "control": list(control_address),
        "pipe": list(pipe_address),
    }
    heartbeat = None
    if redis_url:
        from .cluster import ClusterState

        state = ClusterState(redis_url)
        heartbeat = asyncio.ensure_future(
            state.heartbeat_forever(worker_id, info, lambda: router.load())
        )
    print(json.dumps(info), flush=True)
    try:
        await _until_stdin_closes()
    finally:
        if heartbeat is not None:
            heartbeat.cancel()
        server.close()
        await router.close()
        await endpoint.close()


async def _until_stdin_closes() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(4096):
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sfu.worker")
    parser.add_argument("--id", required=True)
    parser.add_argument("--redis", help="Redis URL for the worker registry")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--udp-ports", help="FIRST-LAST: bind media inside this range")
    parser.add_argument("--announced-address", help="the address media is reached at")
    args = parser.parse_args(argv)
    key = os.environ.get(KEY_ENV, "")
    if len(key) < 16:
        print(f"sfu.worker: {KEY_ENV} must hold the control key", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=args.log_level.upper(),
        format=f"%(asctime)s %(levelname)s worker {args.id} %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # one line per ICE check from every worker would drown the front's log
    logging.getLogger("aioice").setLevel(max(logging.WARNING, logging.root.level))
    check_seam()
    udp_ports = PortRange.parse(args.udp_ports) if args.udp_ports else None
    asyncio.run(run_worker(args.id, key, args.redis, udp_ports, args.announced_address))
    return 0


if __name__ == "__main__":
    sys.exit(main())
