"""The control connection between the front and one media worker.

One TCP connection on loopback per worker, newline-delimited JSON. The front sends
requests `{"id": n, "method": m, "params": {...}}`, the worker answers `{"id": n,
"result": ...}` or `{"id": n, "error": {"kind", "code", "message"}}`, and sends router
events `{"event": ...}` whenever they happen. `RemoteRouter` gives the front the same
methods as a `MediaRouter` (sfu/plane.py's RouterHandle); `serve_router` runs a worker's
side. A request a worker does not answer within its timeout, or a connection that drops,
fails with `WorkerUnavailable`: the caller gets a clear error, never a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .negotiation import IceServer, NegotiationError
from .pipe import Address, PipeStream
from .plane import WorkerUnavailable
from .router import MediaRouter, RouterEvent

logger = logging.getLogger(__name__)

# An SDP offer/answer is at most a few tens of KiB; stats are smaller.
MAX_LINE_BYTES = 1024 * 1024
REQUEST_TIMEOUT_S = 10.0


def _ice(servers: list[IceServer]) -> list[dict[str, Any]]:
    return [{"urls": s.urls, "username": s.username, "credential": s.credential} for s in servers]


def _stream(stream: PipeStream) -> dict[str, Any]:
    return {"source": list(stream.source), "ssrc": stream.ssrc, "kind": stream.kind}


def _unstream(data: dict[str, Any]) -> PipeStream:
    source = data["source"]
    return PipeStream((str(source[0]), int(source[1])), int(data["ssrc"]), str(data["kind"]))


class RemoteRouter:
    """A worker's router, called over its control connection."""

    def __init__(
        self,
        worker_id: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_event: Callable[[RouterEvent], Awaitable[None]],
        on_lost: Callable[[str], Awaitable[None]] | None = None,
        timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        self.worker_id = worker_id
        self._reader = reader
        self._writer = writer
        self._on_event = on_event
        self._on_lost = on_lost
        self.timeout_s = timeout_s
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self.lost = False
        # events are handled on their own task, in order: handling one may call this
        # worker again, and the reply must not wait behind the handler
        self._events: asyncio.Queue[RouterEvent] = asyncio.Queue()
        self._reading = asyncio.ensure_future(self._read())
        self._handling = asyncio.ensure_future(self._handle_events())

    @classmethod
    async def connect(
        cls,
        worker_id: str,
        address: Address,
        key: str,
        on_event: Callable[[RouterEvent], Awaitable[None]],
        on_lost: Callable[[str], Awaitable[None]] | None = None,
        timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> RemoteRouter:
        """Connect and present the worker's key (only its front may drive it)."""
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(address[0], address[1], limit=MAX_LINE_BYTES), 5
        )
        writer.write(json.dumps({"key": key}).encode() + b"\n")
        await writer.drain()
        return cls(worker_id, reader, writer, on_event, on_lost, timeout_s)

    async def _read(self) -> None:
        try:
            while True:
                line = await self._reader.readline()
                if not line:
                    break
                message = json.loads(line)
                if "event" in message:
                    self._events.put_nowait(message)
                    continue
                future = self._pending.pop(message.get("id"), None)
                if future is not None and not future.done():
                    future.set_result(message)
        except (ConnectionError, ValueError, asyncio.IncompleteReadError) as exc:
            logger.warning("control connection to worker %s broke: %s", self.worker_id, exc)
        except asyncio.CancelledError:
            return
        await self._connection_lost()

    async def _handle_events(self) -> None:
        while True:
            event = await self._events.get()
            try:
                await self._on_event(event)
            except Exception:
                logger.exception("event %s from worker %s failed", event, self.worker_id)

    async def _connection_lost(self) -> None:
        if self.lost:
            return
        self.lost = True
        for future in self._pending.values():
            if not future.done():
                future.set_exception(WorkerUnavailable(f"media worker {self.worker_id} went away"))
        self._pending.clear()
        if self._on_lost is not None:
            await self._on_lost(self.worker_id)

    async def call(self, method: str, **params: Any) -> Any:
        if self.lost:
            raise WorkerUnavailable(f"media worker {self.worker_id} is gone")
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            line = json.dumps({"id": request_id, "method": method, "params": params})
            self._writer.write(line.encode() + b"\n")
            await self._writer.drain()
            reply = await asyncio.wait_for(future, self.timeout_s)
        except TimeoutError:
            raise WorkerUnavailable(
                f"media worker {self.worker_id} did not answer {method} in {self.timeout_s:g} s"
            ) from None
        except ConnectionError as exc:
            raise WorkerUnavailable(f"media worker {self.worker_id}: {exc}") from None
        finally:
            self._pending.pop(request_id, None)
        error = reply.get("error")
        if error is None:
            return reply.get("result")
        if error["kind"] == "negotiation":
            raise NegotiationError(error["code"], error["message"])
        if error["kind"] == "lookup":
            raise LookupError(error["message"])
        raise RuntimeError(f"worker {self.worker_id}: {method} failed: {error['message']}")

    async def close(self) -> None:
        self._reading.cancel()
        self._handling.cancel()
        self.lost = True
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()

    # -- the router's methods (RouterHandle) -------------------------------------------
    async def publish(
        self,
        publication_id: str,
        room_id: str,
        offer_sdp: str,
        kinds: list[str],
        *,
        video_codec: str,
        max_video_kbps: int,
        ice_servers: list[IceServer],
        media_wait_s: float = 5.0,
        muted: bool = False,
    ) -> str:
        answer_sdp: str = await self.call(
            "publish",
            publication_id=publication_id,
            room_id=room_id,
            offer_sdp=offer_sdp,
            kinds=kinds,
            video_codec=video_codec,
            max_video_kbps=max_video_kbps,
            ice_servers=_ice(ice_servers),
            media_wait_s=media_wait_s,
            muted=muted,
        )
        return answer_sdp

    async def close_publication(self, publication_id: str) -> None:
        await self.call("close_publication", publication_id=publication_id)

    async def set_muted(self, publication_id: str, muted: bool) -> None:
        await self.call("set_muted", publication_id=publication_id, muted=muted)

    async def pipe_out(self, publication_id: str, destination: Address) -> list[PipeStream]:
        streams = await self.call(
            "pipe_out", publication_id=publication_id, destination=list(destination)
        )
        return [_unstream(s) for s in streams]

    async def close_pipe_out(self, publication_id: str, destination: Address) -> None:
        await self.call(
            "close_pipe_out", publication_id=publication_id, destination=list(destination)
        )

    async def pipe_in(
        self,
        publication_id: str,
        room_id: str,
        streams: list[PipeStream],
        video_codec: str | None = None,
    ) -> None:
        await self.call(
            "pipe_in",
            publication_id=publication_id,
            room_id=room_id,
            streams=[_stream(s) for s in streams],
            video_codec=video_codec,
        )

    async def link_encoding(self, publication_id: str, codec: str, encoding_id: str) -> None:
        await self.call(
            "link_encoding", publication_id=publication_id, codec=codec, encoding_id=encoding_id
        )

    async def subscribe(
        self,
        subscription_id: str,
        room_id: str,
        publication_id: str | None,
        kinds: list[str],
        *,
        video_codec: str,
        ice_servers: list[IceServer],
        limits_publisher: bool = True,
    ) -> str:
        offer_sdp: str = await self.call(
            "subscribe",
            subscription_id=subscription_id,
            room_id=room_id,
            publication_id=publication_id,
            kinds=kinds,
            video_codec=video_codec,
            ice_servers=_ice(ice_servers),
            limits_publisher=limits_publisher,
        )
        return offer_sdp

    async def answer(self, subscription_id: str, answer_sdp: str) -> None:
        await self.call("answer", subscription_id=subscription_id, answer_sdp=answer_sdp)

    async def close_subscription(self, subscription_id: str) -> None:
        await self.call("close_subscription", subscription_id=subscription_id)

    async def switch_slot(self, room_id: str, publication_id: str | None) -> None:
        await self.call("switch_slot", room_id=room_id, publication_id=publication_id)

    async def forget_room(self, room_id: str) -> None:
        await self.call("forget_room", room_id=room_id)

    async def publication_stats(self, publication_id: str) -> dict[str, Any]:
        stats: dict[str, Any] = await self.call("publication_stats", publication_id=publication_id)
        return stats

    async def loop_stats(self, reset: bool = False) -> dict[str, float | int]:
        figures: dict[str, float | int] = await self.call("loop_stats", reset=reset)
        return figures

    async def subscription_stats(self, subscription_id: str) -> dict[str, Any]:
        stats: dict[str, Any] = await self.call(
            "subscription_stats", subscription_id=subscription_id
        )
        return stats


# ------------------------------------------------------------------------------------------
# the worker's side


def _decode_params(method: str, params: dict[str, Any]) -> dict[str, Any]:
    if "ice_servers" in params:
        params["ice_servers"] = [IceServer(**s) for s in params["ice_servers"]]
    if "destination" in params:
        host, port = params["destination"]
        params["destination"] = (str(host), int(port))
    if "streams" in params:
        params["streams"] = [_unstream(s) for s in params["streams"]]
    return params


_METHODS = frozenset(
    {
        "publish",
        "close_publication",
        "set_muted",
        "pipe_out",
        "close_pipe_out",
        "pipe_in",
        "link_encoding",
        "subscribe",
        "answer",
        "close_subscription",
        "switch_slot",
        "forget_room",
        "publication_stats",
        "subscription_stats",
        "loop_stats",
    }
)


async def serve_router(
    router: MediaRouter, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str
) -> bool:
    """Answer one front's requests on `router` until the connection closes. False (and
    closed at once) when the first line is not the worker's key."""
    lock = asyncio.Lock()
    try:
        hello = json.loads(await asyncio.wait_for(reader.readline(), 5))
    except (TimeoutError, ValueError, ConnectionError):
        hello = None
    if not isinstance(hello, dict) or not hmac.compare_digest(str(hello.get("key")), key):
        logger.warning("a control connection without the worker's key was refused")
        writer.close()
        return False

    async def send(message: dict[str, Any]) -> None:
        async with lock:
            writer.write(json.dumps(message).encode() + b"\n")
            await writer.drain()

    async def handle(request: dict[str, Any]) -> None:
        request_id = request.get("id")
        method = request.get("method")
        try:
            if method not in _METHODS or not isinstance(request.get("params"), dict):
                raise ValueError(f"no method {method!r}")
            params = _decode_params(method, dict(request["params"]))
            result = await getattr(router, method)(**params)
            if method == "pipe_out":
                result = [_stream(s) for s in result]
            await send({"id": request_id, "result": result})
        except NegotiationError as exc:
            error = {"kind": "negotiation", "code": exc.code, "message": exc.message}
            await send({"id": request_id, "error": error})
        except LookupError as exc:
            await send({"id": request_id, "error": {"kind": "lookup", "message": str(exc)}})
        except Exception as exc:
            logger.exception("worker request %s failed", method)
            await send({"id": request_id, "error": {"kind": "internal", "message": str(exc)}})

    async def on_event(event: RouterEvent) -> None:
        with contextlib.suppress(ConnectionError):
            await send(event)

    router.on_event = on_event
    tasks: set[asyncio.Task[None]] = set()
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            try:
                request = json.loads(line)
            except ValueError:
                logger.warning("worker got a line that is not JSON; dropped")
                continue
            # each request on its own task: a slow ICE/DTLS set-up holds up no other
            task = asyncio.ensure_future(handle(request))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        router.on_event = None
        writer.close()
    return True
