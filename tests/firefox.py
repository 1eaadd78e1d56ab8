"""Debian's Firefox ESR as a WebRTC client, driven over WebDriver BiDi (a JSON protocol on
a WebSocket, spoken here with aiohttp: no Node, no driver download).

Firefox is what some village PCs run, and it differs where it matters: it has no H.264
where OpenH264 cannot be downloaded, and it hides every host address behind an mDNS name.
Launched with a throwaway profile whose prefs give it a fake camera and microphone,
autoplay, and no permission prompt. Fails (never skips) when Firefox is not installed:
`sh docker/debian-packages.sh test` installs it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

FIREFOX = "/usr/lib/firefox-esr/firefox-esr"
PREFS = {
    "media.navigator.streams.fake": True,
    "media.navigator.permission.disabled": True,
    "media.autoplay.default": 0,
    "media.autoplay.blocking_policy": 0,
    "browser.shell.checkDefaultBrowser": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
    "app.update.disabledForTesting": True,
    "browser.aboutwelcome.enabled": False,
}


class FirefoxError(RuntimeError):
    pass


class Firefox:
    """One BiDi session on one Firefox; `page()` opens a tab."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.console: list[str] = []
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            message = json.loads(msg.data)
            future = self._pending.pop(message.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result(message)
            elif message.get("method") == "log.entryAdded":
                entry = message["params"]
                self.console.append(f"{entry.get('level')}: {entry.get('text')}")
        for future in self._pending.values():
            if not future.done():
                future.set_exception(FirefoxError("Firefox closed its BiDi socket"))

    async def command(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[number] = future
        await self.ws.send_str(json.dumps({"id": number, "method": method, "params": params}))
        reply = await asyncio.wait_for(future, 30)
        if reply.get("type") == "error" or "error" in reply:
            raise FirefoxError(f"{method}: {reply.get('error')}: {reply.get('message')}")
        return reply["result"]

    async def page(self, url: str) -> FirefoxPage:
        context = (await self.command("browsingContext.create", type="tab"))["context"]
        page = FirefoxPage(self, context)
        await self.command("browsingContext.navigate", context=context, url=url, wait="complete")
        return page


class FirefoxPage:
    def __init__(self, firefox: Firefox, context: str) -> None:
        self.firefox = firefox
        self.context = context

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (awaited if a promise), as JSON."""
        result = await self.firefox.command(
            "script.evaluate",
            expression=f"(async () => JSON.stringify(await ({expression})))()",
            target={"context": self.context},
            awaitPromise=True,
        )
        if result.get("type") == "exception":
            details = result.get("exceptionDetails", {})
            raise FirefoxError(f"page script failed: {details.get('text')}")
        value = result["result"].get("value")
        return None if value is None else json.loads(value)

    async def wait_for(self, expression: str, timeout_s: float = 20.0) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if loop.time() > deadline:
                raise TimeoutError(f"Firefox: still false after {timeout_s} s: {expression}")
            await asyncio.sleep(0.2)


@asynccontextmanager
async def launched_firefox() -> AsyncIterator[Firefox]:
    if not os.path.exists(FIREFOX):  # noqa: ASYNC240 - a one-off check before launch
        pytest.fail(f"Debian's firefox-esr is not installed at {FIREFOX}")
    profile = Path(tempfile.mkdtemp(prefix="lh-firefox-"))
    (profile / "user.js").write_text(
        "".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in PREFS.items()),
        encoding="utf-8",
    )
    process = await asyncio.create_subprocess_exec(
        FIREFOX,
        "--headless",
        "--no-remote",
        "--profile",
        str(profile),
        "--remote-debugging-port=0",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "HOME": str(profile), "MOZ_CRASHREPORTER_DISABLE": "1"},
    )
    try:
        assert process.stderr is not None
        url = None
        while url is None:  # "WebDriver BiDi listening on ws://127.0.0.1:PORT"
            line = await asyncio.wait_for(process.stderr.readline(), 30)
            if not line:
                raise FirefoxError("Firefox exited before it listened for WebDriver BiDi")
            found = re.search(rb"WebDriver BiDi listening on (ws://\S+)", line)
            if found:
                url = found.group(1).decode()
        drain = asyncio.ensure_future(_drain(process.stderr))
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(url.rstrip("/") + "/session", max_msg_size=0) as ws:
                firefox = Firefox(ws)
                await firefox.command("session.new", capabilities={})
                await firefox.command("session.subscribe", events=["log.entryAdded"])
                try:
                    yield firefox
                finally:
                    firefox._reader.cancel()
        drain.cancel()
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
        shutil.rmtree(profile, ignore_errors=True)


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass
