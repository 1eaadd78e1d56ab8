"""The media plane's shared state in Redis (after LiveKit's routing): plain keys with
lifetimes, no home-made consensus.

- `lh:worker:<id>`: a worker's addresses, load and the time of writing (JSON), written by
  the worker twice a second with a 3 s lifetime. A worker whose last heartbeat is older
  than 2.5 s is dead.
- `lh:room:<room>:publications`: publication id -> the worker holding its origin.
- `lh:room:<room>:participants`: participant id -> the worker holding its media.
- channel `lh:room:<room>:events`: every room event and meeting-control action the front
  sends (for other fronts and tools; a front drives its workers directly).

Redis is bookkeeping, not the meeting: when it is unreachable, writes are dropped with a
warning and the heartbeats retry, so a Redis restart ends no meeting; the next writes and
heartbeats put the state back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

PREFIX = "lh"
HEARTBEAT_S = 0.5
# a worker whose last heartbeat is older than this is dead (the front checks 4 times a
# second, so a hung worker is declared dead 2.5-2.75 s after its last heartbeat)
DEAD_AFTER_S = 2.5
# a worker is dead when it has not heartbeated for this long
WORKER_TTL_S = 3.0
# writes waiting while Redis is away; beyond this they are dropped (and counted)
WRITE_QUEUE = 10_000


class RedisUnavailable(Exception):
    """Redis could not be reached (at start-up: a clear error, not a traceback)."""


class ClusterState:
    def __init__(self, url: str, prefix: str = PREFIX) -> None:
        self.url = url
        self.prefix = prefix
        self.redis = aioredis.Redis.from_url(
            url, decode_responses=True, socket_connect_timeout=2, socket_timeout=2
        )
        self.failed_writes = 0
        # writes go out in order on one task: a meeting never waits for Redis
        self._writes: asyncio.Queue[tuple[str, Callable[[], Awaitable[Any]]]] = asyncio.Queue(
            maxsize=WRITE_QUEUE
        )
        self._writer: asyncio.Task[None] | None = None

    async def check(self) -> None:
        """Raise RedisUnavailable unless Redis answers now."""
        try:
            await self.redis.ping()
        except (RedisError, OSError) as exc:
            raise RedisUnavailable(f"Redis at {self.url} does not answer: {exc}") from exc

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    async def _write(self, what: str, action: Callable[[], Awaitable[Any]]) -> None:
        if self._writer is None:
            self._writer = asyncio.ensure_future(self._write_in_order())
        try:
            self._writes.put_nowait((what, action))
        except asyncio.QueueFull:
            self.failed_writes += 1

    async def _write_in_order(self) -> None:
        while True:
            what, action = await self._writes.get()
            try:
                await action()
            except (RedisError, OSError) as exc:
                self.failed_writes += 1
                logger.warning("Redis write (%s) dropped: %s", what, exc)
            finally:
                self._writes.task_done()

    async def flush(self) -> None:
        """Wait until every write so far has been sent (or dropped)."""
        await self._writes.join()

    # -- workers -----------------------------------------------------------------------------
    async def heartbeat(self, worker_id: str, info: dict[str, Any]) -> None:
        """`info` and the time it was sent (`at`, wall clock: the front compares)."""
        await self.redis.set(
            self._key("worker", worker_id),
            json.dumps({**info, "at": time.time()}),
            px=int(WORKER_TTL_S * 1000),
        )

    async def heartbeat_forever(
        self,
        worker_id: str,
        info: dict[str, Any],
        load: Callable[[], dict[str, float | int]],
    ) -> None:
        while True:
            try:
                await self.heartbeat(worker_id, {**info, "load": load()})
            except (RedisError, OSError) as exc:
                logger.warning("heartbeat to Redis failed (retrying): %s", exc)
            await asyncio.sleep(HEARTBEAT_S)

    async def live_workers(self) -> dict[str, dict[str, Any]]:
        """Every worker that heartbeated within the last WORKER_TTL_S (raises RedisError
        when Redis cannot say)."""
        workers: dict[str, dict[str, Any]] = {}
        async for key in self.redis.scan_iter(match=self._key("worker", "*")):
            value = await self.redis.get(key)
            if value is not None:
                workers[key.rsplit(":", 1)[1]] = json.loads(value)
        return workers

    async def forget_worker(self, worker_id: str) -> None:
        """A dead worker's entries go: its key, its publications and participants."""

        async def forget() -> None:
            await self.redis.delete(self._key("worker", worker_id))
            for kind in ("publications", "participants"):
                async for key in self.redis.scan_iter(match=self._key("room", "*", kind)):
                    entries = await self.redis.hgetall(key)
                    gone = [field for field, worker in entries.items() if worker == worker_id]
                    if gone:
                        await self.redis.hdel(key, *gone)

        await self._write(f"forget worker {worker_id}", forget)

    # -- rooms ------------------------------------------------------------------------------
    async def publication_placed(self, room_id: str, publication_id: str, worker_id: str) -> None:
        key = self._key("room", room_id, "publications")
        await self._write("publication", lambda: self.redis.hset(key, publication_id, worker_id))

    async def publication_gone(self, room_id: str, publication_id: str) -> None:
        key = self._key("room", room_id, "publications")
        await self._write("publication", lambda: self.redis.hdel(key, publication_id))

    async def participant_placed(
        self, room_id: str, participant_id: str, worker_id: str | None
    ) -> None:
        key = self._key("room", room_id, "participants")
        if worker_id is None:
            await self._write("participant", lambda: self.redis.hdel(key, participant_id))
        else:
            await self._write(
                "participant", lambda: self.redis.hset(key, participant_id, worker_id)
            )

    async def room_closed(self, room_id: str) -> None:
        await self._write(
            "room",
            lambda: self.redis.delete(
                self._key("room", room_id, "publications"),
                self._key("room", room_id, "participants"),
            ),
        )

    async def room_event(self, room_id: str, event: Mapping[str, Any]) -> None:
        channel = self._key("room", room_id, "events")
        await self._write("event", lambda: self.redis.publish(channel, json.dumps(event)))

    async def room_state(self, room_id: str) -> dict[str, dict[str, str]]:
        # str keys and values: the client decodes responses (decode_responses=True), which
        # redis-py's types cannot express
        return {
            kind: cast("dict[str, str]", await self.redis.hgetall(self._key("room", room_id, kind)))
            for kind in ("publications", "participants")
        }

    async def close(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.flush(), 2)
            self._writer.cancel()
        await self.redis.aclose()
