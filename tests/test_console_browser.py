"""Real Chromium, end to end: a new TV shows a pairing code, a township admin binds it in the
console, and the TV joins the meeting by itself with the terminal token it collected."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import numpy as np
import pytest

from lighthouse.keys import DATABASE_KEY

from apiclient import PASSWORD, seed_small_county
from browser import chromium_args, launched_chromium, write_y4m

pytestmark = pytest.mark.browser


@pytest.fixture
async def chromium(tmp_path: Path):
    # the TV publishes its camera: a plain grey picture will do
    camera = write_y4m(tmp_path / "grey.y4m", np.full((360, 640, 3), 128, np.uint8), frames=2)
    async with launched_chromium(chromium_args(camera)) as browser:
        yield browser


async def new_page(browser, width: int = 1280, height: int = 720):
    # one context per device: the TV and the admin's PC share no storage and no cookies
    context = await browser.new_context(viewport={"width": width, "height": height})
    page = await context.new_page()
    messages: list[str] = []
    page.on("console", lambda msg: messages.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda exc: messages.append(f"pageerror: {exc}"))
    page.console_messages = messages
    return page


async def wait_until(page, condition: str, timeout_ms: int = 10_000) -> None:
    # polled on a timer, not on animation frames: a page in a background window gets none
    await page.wait_for_function(condition, polling=100, timeout=timeout_ms)


async def api_get(base_url: str, path: str, username: str) -> dict:
    async with aiohttp.ClientSession() as session:
        async with session.post(
            base_url + "/api/login", json={"username": username, "password": PASSWORD}
        ) as response:
            assert response.status == 200
            token = (await response.json())["token"]
        async with session.get(
            base_url + path, headers={"Authorization": f"Bearer {token}"}
        ) as response:
            assert response.status == 200, await response.text()
            return await response.json()


async def test_tv_pairs_through_the_console_and_joins_the_meeting(server, chromium):
    orgs = await seed_small_county(server.app[DATABASE_KEY])
    village = orgs["village_a1"]
    tv = await new_page(chromium)
    admin = await new_page(chromium)
    try:
        # the TV: a code on screen, nothing to type
        await tv.goto(f"{server.base_url}/tv/pair")
        await wait_until(
            tv, "window.lighthousePairing && window.lighthousePairing.state === 'waiting'"
        )
        code = await tv.get_attribute("#lh-pair-code", "data-code")
        assert code and len(code) == 6
        assert await tv.inner_text("#lh-pair-status") == "请管理员在后台输入此配对码"
        assert await tv.evaluate("document.getElementById('lh-pair-qr').naturalWidth > 0")

        # the township admin's PC: sign in, type the code, choose the village
        await admin.goto(f"{server.base_url}/console/terminals")
        await admin.wait_for_url(lambda url: urlsplit(url).path == "/console/login")
        await admin.fill("#login-username", "town_a_admin")
        await admin.fill("#login-password", "wrong password")
        await admin.click("#con-login-submit")
        await wait_until(admin, "!document.getElementById('con-login-error').hidden")
        assert await admin.inner_text("#con-login-error") == "用户名或密码错误。"
        await admin.fill("#login-password", PASSWORD)
        await admin.click("#con-login-submit")
        # (the login page's own address ends in "?next=/console/terminals": compare paths)
        await admin.wait_for_url(lambda url: urlsplit(url).path == "/console/terminals")
        await wait_until(admin, "window.lighthouseConsole.ready")
        assert await admin.inner_text("#con-user-detail") == "乡镇管理员 · A镇"
        await admin.fill("#pair-code", code.lower())  # typed in lower case: still accepted
        # the place picker is a list of townships' villages with a search box, not a dropdown
        # of every place: typing part of the village's name finds and chooses it
        assert await admin.eval_on_selector("#pair-site", "s => s.size") > 1
        await admin.fill(".con-site-search", "A1")
        assert await admin.eval_on_selector_all(
            "#pair-site option", "os => os.map((o) => o.textContent)"
        ) == ["请选择…", "A1村"]
        assert await admin.input_value("#pair-site") == str(village.id)
        assert await admin.input_value("#pair-name") == "A1村党群服务中心"
        await admin.click("#con-pair-submit")
        await wait_until(
            admin, "document.querySelector('#con-terminals tbody tr[data-terminal-id]') !== null"
        )
        assert await admin.get_attribute("#con-pair-result", "class") == "con-alert con-alert-ok"
        assert "A1村党群服务中心" in await admin.inner_text("#con-pair-result")
        assert "A1村党群服务中心" in await admin.inner_text("#con-terminals tbody")

        # the TV collects its token, goes to /tv and joins the meeting room by itself
        await tv.wait_for_url(f"{server.base_url}/tv", timeout=10_000)
        await wait_until(tv, "window.lighthouse && window.lighthouse.state === 'joined'", 20_000)
        stored = await asyncio.wait_for(
            tv.evaluate("localStorage.getItem('lighthouse.terminalToken')"), 5
        )
        assert stored
        assert await tv.evaluate("window.lighthouseTerminal.state") == "meeting"

        terminals = (await api_get(server.base_url, "/api/terminals", "town_a_admin"))["terminals"]
        assert len(terminals) == 1
        terminal = terminals[0]
        assert terminal["org_id"] == village.id
        assert terminal["name"] == "A1村党群服务中心"
        assert terminal["paired_at"] and not terminal["revoked_at"]
        room = server.room("h264room")
        assert [p.participant_id for p in room.peers.values()] == [f"terminal:{terminal['id']}"]

        audit = await api_get(server.base_url, "/api/audit?action=terminal_paired", "county_admin")
        (entry,) = audit["entries"]
        assert entry["target_id"] == str(terminal["id"])
        assert entry["actor"].endswith("town_a_admin")

        # no page broke its own CSP or threw
        for page in (tv, admin):
            problems = [
                m for m in page.console_messages if "pageerror" in m or "Content Security" in m
            ]
            assert problems == []
    except Exception:
        print("TV console:", *tv.console_messages, sep="\n  ")
        print("admin console:", *admin.console_messages, sep="\n  ")
        raise
    finally:
        await tv.context.close()
        await admin.context.close()
