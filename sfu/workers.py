"""The front's media worker processes: started, connected, watched and replaced.

`lighthouse serve --workers N` runs N `sfu.worker` processes beside the front. Each is
driven over its control connection (sfu/worker_rpc.py) and heartbeats into Redis
(sfu/cluster.py). A worker is declared dead when its control connection drops (a crash:
at once) or its heartbeat stops (a hang: 2.5 s after its last one); the front then
forgets its media, hands its peers back to the application (`on_lost`: their pages
reconnect and are placed on a live worker), clears its entries in Redis and starts a
replacement.

The front keeps a router of its own (`LOCAL`, never given peers): the recorder and the
recognizer receive publications there through the same pipes, in the front process, off
every worker's forwarding loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import sys
import time
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

from .cluster import DEAD_AFTER_S, ClusterState
from .pipe import PipeEndpoint
from .plane import LOCAL, MediaPlane, WorkerSlot
from .ports import PortAllocator, PortRange
from .router import MediaRouter
from .worker import KEY_ENV
from .worker_rpc import RemoteRouter

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0


class WorkerStartError(RuntimeError):
    pass


class WorkerPool:
    def __init__(
        self,
        plane: MediaPlane,
        count: int,
        cluster: ClusterState,
        *,
        on_lost: Callable[[str], Awaitable[object]] | None = None,
        log_level: str = "INFO",
        max_peers: int | None = None,
        udp_ports: PortRange | None = None,
        announced_address: str | None = None,
    ) -> None:
        self.plane = plane
        self.udp_ports = udp_ports
        self.announced_address = announced_address
        self.count = count
        self.cluster = cluster
        self.on_lost = on_lost
        self.log_level = log_level
        self.max_peers = max_peers
        self.processes: dict[str, asyncio.subprocess.Process] = {}
        self.endpoint = PipeEndpoint()
        self.lost_workers: list[str] = []
        # each worker's last heartbeat seen in Redis (wall clock; at first: its start)
        self._last_beat: dict[str, float] = {}
        self._generation = 0
        self._closing = False
        self._watcher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.cluster.check()
        address = await self.endpoint.open()
        self.plane.local = MediaRouter(
            self.endpoint,
            on_event=self.plane.router_event,
            ports=PortAllocator(self.udp_ports, self.announced_address) if self.udp_ports else None,
        )
        # the front's own router takes no peers: only server-side subscribers' pipes
        self.plane.add_worker(WorkerSlot(LOCAL, self.plane.local, address, capacity=0))
        await asyncio.gather(*(self._spawn() for _ in range(self.count)))
        self._watcher = asyncio.ensure_future(self._watch_heartbeats())

    async def _spawn(self) -> str:
        self._generation += 1
        worker_id = f"w{self._generation}"
        key = secrets.token_urlsafe(24)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sfu.worker",
            "--id",
            worker_id,
            "--redis",
            self.cluster.url,
            "--log-level",
            self.log_level,
            *(["--udp-ports", str(self.udp_ports)] if self.udp_ports else []),
            *(["--announced-address", self.announced_address] if self.announced_address else []),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, KEY_ENV: key},
        )
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT_S)
            info = json.loads(line)
            router = await RemoteRouter.connect(
                worker_id,
                (info["control"][0], int(info["control"][1])),
                key,
                on_event=self.plane.router_event,
                on_lost=self._lost,
            )
        except (TimeoutError, ValueError, KeyError, OSError) as exc:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            raise WorkerStartError(f"media worker {worker_id} did not start: {exc}") from exc
        except asyncio.CancelledError:  # the front is closing while this one starts
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            raise
        self.processes[worker_id] = process
        self._last_beat[worker_id] = time.time()
        pipe = (info["pipe"][0], int(info["pipe"][1]))
        self.plane.add_worker(WorkerSlot(worker_id, router, pipe, capacity=self.max_peers))
        logger.info("media worker %s started (pid %s)", worker_id, info["pid"])
        return worker_id

    def pid(self, worker_id: str) -> int | None:
        process = self.processes.get(worker_id)
        return process.pid if process is not None else None

    async def _lost(self, worker_id: str) -> None:
        worker = self.plane.workers.get(worker_id)
        if worker is None or not worker.alive:
            return
        logger.error("media worker %s is dead; its peers move to the others", worker_id)
        self.plane.worker_lost(worker_id)
        self.lost_workers.append(worker_id)
        process = self.processes.pop(worker_id, None)
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        await self.cluster.forget_worker(worker_id)
        if self.on_lost is not None:
            try:
                await self.on_lost(worker_id)
            except Exception:
                logger.exception("moving the peers of worker %s failed", worker_id)
        # its peers are gone: nothing refers to it any more (a replacement has a new id)
        self.plane.workers.pop(worker_id, None)
        if not self._closing:
            task = asyncio.ensure_future(self._replace(worker_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _replace(self, worker_id: str) -> None:
        try:
            replacement = await self._spawn()
        except WorkerStartError:
            logger.exception("no replacement for media worker %s", worker_id)
            return
        logger.info("media worker %s replaces %s", replacement, worker_id)

    async def _watch_heartbeats(self) -> None:
        """A worker that is up but silent (hung, stopped) is dead once its last heartbeat
        is DEAD_AFTER_S old. While Redis is away nobody is judged, and after it comes back
        every worker gets a fresh DEAD_AFTER_S to heartbeat again."""
        redis_was_away = False
        while True:
            await asyncio.sleep(0.25)
            try:
                live = await self.cluster.live_workers()
            except (RedisError, OSError):
                redis_was_away = True  # it cannot say; the control connections still can
                continue
            now = time.time()
            last_beat = self._last_beat
            for worker_id in tuple(last_beat):
                worker = self.plane.workers.get(worker_id)
                if worker is None or not worker.alive:
                    last_beat.pop(worker_id, None)
                    continue
                info = live.get(worker_id)
                if redis_was_away:
                    last_beat[worker_id] = now
                elif info is not None:
                    last_beat[worker_id] = max(last_beat[worker_id], float(info.get("at", 0)))
                if now - last_beat[worker_id] > DEAD_AFTER_S:
                    logger.error("media worker %s stopped heartbeating", worker_id)
                    await self._lost(worker_id)
            redis_was_away = False

    async def close(self) -> None:
        self._closing = True
        if self._watcher is not None:
            self._watcher.cancel()
        for task in tuple(self._tasks):
            task.cancel()
        # a replacement still starting ends first (its process with it)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for worker in tuple(self.plane.workers.values()):
            if isinstance(worker.router, RemoteRouter):
                await worker.router.close()
        processes = tuple(self.processes.values())
        for process in processes:
            if process.stdin is not None:
                process.stdin.close()  # the worker exits when its stdin closes
        for process in processes:
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        await self.endpoint.close()
        await self.cluster.close()
