"""Janus (Debian's `janus` 1.1.2, VideoRoom) as a second baseline for bench/relay.py: the C
SFU people would pick instead, driven over its plain-HTTP API by the same non-decoding
clients.

`write_config()` makes a configuration folder of its own (HTTP transport on a free port,
the VideoRoom plugin with one VP8 room, a fixed pool of event loops, every other plugin,
transport and handler off); `JanusSession` is the HTTP client: create a session, attach
the VideoRoom plugin, send a request (with a JSEP) and wait for its event on the long
poll. Nothing here is a test: the bench says so and goes on without Janus when the binary
is missing (`apt-get install janus`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
from pathlib import Path
from typing import Any

import aiohttp

JANUS_BINARY = "/usr/bin/janus"
ROOM_ID = 1234
PLUGINS = Path("/usr/lib/x86_64-linux-gnu/janus")
# Janus starts a thread per handle by default; a fixed pool costs it less (the issue's
# measurement, and what a tuned deployment does)
EVENT_LOOPS = 2
_OTHER_PLUGINS = (
    "audiobridge duktape echotest lua nosip recordplay sip streaming textroom videocall voicemail"
)
_OTHER_TRANSPORTS = "mqtt nanomsg pfunix rabbitmq websockets"


def available() -> bool:
    return shutil.which(JANUS_BINARY) is not None


def write_config(folder: Path, port: int, interface: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    plugins = ",".join(f"libjanus_{name}.so" for name in _OTHER_PLUGINS.split())
    transports = ",".join(f"libjanus_{name}.so" for name in _OTHER_TRANSPORTS.split())
    (folder / "janus.jcfg").write_text(
        "general: {\n"
        f'  configs_folder = "{folder}"\n'
        f'  plugins_folder = "{PLUGINS}/plugins"\n'
        f'  transports_folder = "{PLUGINS}/transports"\n'
        f'  events_folder = "{PLUGINS}/events"\n'
        f'  loggers_folder = "{PLUGINS}/loggers"\n'
        "  debug_level = 2\n"
        f"  event_loops = {EVENT_LOOPS}\n"
        "  session_timeout = 120\n"
        "}\n"
        'media: {\n  rtp_port_range = "40000-49999"\n}\n'
        "nat: {\n"
        f'  ice_enforce_list = "{interface}"\n'
        "  nice_debug = false\n"
        "}\n"
        f'plugins: {{\n  disable = "{plugins}"\n}}\n'
        f'transports: {{\n  disable = "{transports}"\n}}\n'
        'events: {\n  broadcast = false\n  disable = "libjanus_gelfevh.so,libjanus_mqttevh.so,'
        "libjanus_nanomsgevh.so,libjanus_rabbitmqevh.so,libjanus_sampleevh.so,"
        'libjanus_wsevh.so"\n}\n'
        'loggers: {\n  disable = "libjanus_jsonlog.so"\n}\n',
        encoding="utf-8",
    )
    (folder / "janus.transport.http.jcfg").write_text(
        "general: {\n"
        '  json = "plain"\n  base_path = "/janus"\n  http = true\n'
        f'  port = {port}\n  interface = "lo"\n  https = false\n'
        "}\n"
        "admin: {\n  admin_http = false\n}\n",
        encoding="utf-8",
    )
    (folder / "janus.plugin.videoroom.jcfg").write_text(
        "general: {\n}\n"
        f"room-{ROOM_ID}: {{\n"
        '  description = "bench"\n'
        "  publishers = 4\n"
        "  bitrate = 2000000\n"
        "  fir_freq = 0\n"
        '  videocodec = "vp8"\n'
        '  audiocodec = "opus"\n'
        "}\n",
        encoding="utf-8",
    )
    return folder


class JanusError(RuntimeError):
    pass


class JanusSession:
    """One Janus session with one VideoRoom handle, over the plain-HTTP API."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.session_id: int | None = None
        self.handle_id: int | None = None
        self._transactions = (f"t{i}" for i in itertools.count())
        self._events: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._poller: asyncio.Task[None] | None = None

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with self.http.post(f"{self.base_url}{path}", json=body) as response:
            reply: dict[str, Any] = await response.json(content_type=None)
        if reply.get("janus") == "error":
            raise JanusError(str(reply.get("error")))
        return reply

    async def open(self) -> None:
        created = await self._post("/janus", {"janus": "create", "transaction": "create"})
        self.session_id = created["data"]["id"]
        attached = await self._post(
            f"/janus/{self.session_id}",
            {"janus": "attach", "plugin": "janus.plugin.videoroom", "transaction": "attach"},
        )
        self.handle_id = attached["data"]["id"]
        self._poller = asyncio.ensure_future(self._poll())

    async def _poll(self) -> None:
        """The long poll: events come here and go to the request that waits for them."""
        while True:
            try:
                async with self.http.get(
                    f"{self.base_url}/janus/{self.session_id}?maxev=10",
                    timeout=aiohttp.ClientTimeout(total=40),
                ) as response:
                    events = await response.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError):
                await asyncio.sleep(0.2)
                continue
            for event in events if isinstance(events, list) else [events]:
                waiter = self._events.pop(event.get("transaction", ""), None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(event)

    async def request(
        self, body: dict[str, Any], jsep: dict[str, str] | None = None, timeout: float = 30
    ) -> dict[str, Any]:
        """Send a VideoRoom request; return its event (plugindata and any JSEP)."""
        transaction = next(self._transactions)
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._events[transaction] = waiter
        message: dict[str, Any] = {"janus": "message", "body": body, "transaction": transaction}
        if jsep is not None:
            message["jsep"] = jsep
        ack = await self._post(f"/janus/{self.session_id}/{self.handle_id}", message)
        if ack.get("janus") == "success":  # answered at once (no event follows)
            self._events.pop(transaction, None)
            return ack
        event = await asyncio.wait_for(waiter, timeout)
        data = event.get("plugindata", {}).get("data", {})
        if "error" in data:
            raise JanusError(f"{body.get('request')}: {data['error']}")
        return event

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
        if self.session_id is not None:
            with contextlib.suppress(Exception):
                await self._post(
                    f"/janus/{self.session_id}", {"janus": "destroy", "transaction": "destroy"}
                )
