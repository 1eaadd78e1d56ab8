"""What a county meets on day one, in real Chromium: a meeting started from the
secretary's phone never leaves a village TV black. With no main venue publishing, the TV
shows its own room (the self-view large), the meeting's name and what it waits for; the
phone can itself be the main venue, with its camera and microphone."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import aiohttp
import cv2
import numpy as np
import pytest

from lighthouse.keys import DATABASE_KEY

from apiclient import PASSWORD, ApiClient, pair_terminal, seed_small_county
from browser import (
    CAMERA_JS,
    COLOURS,
    chromium_args,
    launched_chromium,
    new_page,
    wait_for_main_view,
    wait_until,
    write_y4m,
)

pytestmark = pytest.mark.server_config(rooms=())

PHONE = dict(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)


@pytest.fixture
async def chromium(tmp_path: Path):
    camera = write_y4m(tmp_path / "grey.y4m", np.full((360, 640, 3), 128, np.uint8), frames=2)
    async with launched_chromium(chromium_args(camera)) as browser:
        yield browser


async def signed_in_phone(browser, server, username: str):
    phone = await new_page(browser, **PHONE)
    phone.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await phone.add_init_script(f"({CAMERA_JS})({list(COLOURS['main'])})")
    await phone.goto(f"{server.base_url}/console/phone")
    await phone.wait_for_url(lambda url: urlsplit(url).path == "/console/login")
    await phone.fill("#login-username", username)
    await phone.fill("#login-password", PASSWORD)
    await phone.click("#con-login-submit")
    await phone.wait_for_url(lambda url: urlsplit(url).path == "/console/phone")
    await wait_until(phone, "window.lighthousePhone && window.lighthousePhone.ready")
    return phone


async def start_from_phone(phone, topic: str, main_venue: str | None = None) -> str:
    """Start a meeting from the form; return the form's default main venue."""
    await phone.click("#ph-new")
    await wait_until(phone, "document.getElementById('ph-organiser').options.length > 0")
    default = await phone.input_value("#ph-main-venue")
    await phone.fill("#ph-topic", topic)
    if main_venue is not None:
        await phone.select_option("#ph-main-venue", main_venue)
    await phone.evaluate("window.lighthousePhone.meeting = null")
    await phone.click("#ph-start")
    await wait_until(phone, "window.lighthousePhone.meeting !== null")
    return default


async def end_from_phone(phone, tv) -> float:
    """End the meeting from the phone; return how long the TV took to show its idle screen."""
    ended_at = time.monotonic()
    await phone.click("#ph-end")
    await wait_until(tv, "!document.getElementById('lh-idle').hidden")
    back_after = time.monotonic() - ended_at
    assert await tv.evaluate("window.lighthouseTerminal.state") == "idle"
    await wait_until(phone, "!document.getElementById('ph-record').hidden")
    print(f"the TV was back on its idle screen {back_after:.2f} s after the end")
    return back_after


async def shows_its_own_room(tv) -> dict:
    await wait_until(tv, "window.lighthouse && window.lighthouse.state === 'joined'")
    await wait_until(tv, "document.getElementById('lh-app').classList.contains('alone')")
    # the self-view is the TV's own camera, large: what the room sees of itself
    await wait_until(tv, "document.getElementById('lh-local').videoWidth > 0")
    return await tv.evaluate(
        """() => {
            const self = document.getElementById('lh-self').getBoundingClientRect();
            const placeholder = document.getElementById('lh-placeholder');
            return { selfWidth: self.width / innerWidth, selfHeight: self.height / innerHeight,
                     text: placeholder.hidden ? '' : placeholder.innerText };
        }"""
    )


async def test_a_tv_is_never_black_in_a_meeting_started_from_the_phone(server, chromium):
    orgs = await seed_small_county(server.app[DATABASE_KEY])
    async with aiohttp.ClientSession() as http:
        world = SimpleNamespace(anonymous=ApiClient(server.base_url, http))
        county = await world.anonymous.login("county_admin")
        _, terminal_token = await pair_terminal(world, county, orgs["village_a1"].id, "A1村电视")

    tv = await new_page(chromium, viewport={"width": 960, "height": 540})
    await tv.add_init_script(
        f"localStorage.setItem('lighthouse.terminalToken', {terminal_token!r});"
    )
    await tv.add_init_script(f"({CAMERA_JS})({list(COLOURS['a1'])})")
    await tv.goto(f"{server.base_url}/tv")
    await wait_until(tv, "window.lighthouseTerminal.state === 'idle'")

    # a village's own branch meeting: no remote main venue (the form's default there)
    secretary = await signed_in_phone(chromium, server, "a1_secretary")
    # the phone's page is its own light colour down to the bottom of the screen
    shot = cv2.imdecode(np.frombuffer(await secretary.screenshot(), np.uint8), cv2.IMREAD_COLOR)
    assert shot[-3:].mean() > 200, f"the bottom of the phone's screen is {shot[-3:].mean():.0f}"
    assert await start_from_phone(secretary, "三月支部主题党日") == "none"
    seen = await shows_its_own_room(tv)
    assert seen["selfWidth"] > 0.9 and seen["selfHeight"] > 0.6, seen
    assert "三月支部主题党日" in seen["text"] and "本会场会议进行中" in seen["text"], seen
    assert await end_from_phone(secretary, tv) < 2.0

    # a county meeting whose main venue opens its link elsewhere: the TV says it waits
    county_phone = await signed_in_phone(chromium, server, "county_admin")
    await start_from_phone(county_phone, "全县组织工作会议", main_venue="link")
    seen = await shows_its_own_room(tv)
    assert "全县组织工作会议" in seen["text"] and "等待主会场接入" in seen["text"], seen
    # the county hall's PC opens the main-venue link: the TVs show it
    main_url = await county_phone.get_attribute("#ph-main-link", "href")
    main = await new_page(chromium, viewport={"width": 1280, "height": 720})
    await main.add_init_script(f"({CAMERA_JS})({list(COLOURS['main'])})")
    await main.goto(f"{server.base_url}{urlsplit(main_url).path}#{urlsplit(main_url).fragment}")
    await wait_for_main_view(tv, "main")
    assert await end_from_phone(county_phone, tv) < 2.0
    # the main venue is told the meeting has ended, and nothing else: no "contact your
    # administrator", no rejoin
    await wait_until(main, "!document.getElementById('lh-fatal').hidden")
    assert await main.inner_text("#lh-fatal-text") == "会议已结束。"
    assert await main.is_hidden(".fatal-hint")
    assert await main.is_hidden("[data-action='leave']")

    # the phone itself is the main venue (the form's default for the county): every TV
    # shows the phone's camera as the main view
    await county_phone.click("[data-back]:visible")
    assert await start_from_phone(county_phone, "全县组织工作会议（续）") == "phone"
    await wait_until(county_phone, "window.lighthousePhone.mainVenue === 'live'")
    await wait_until(tv, "window.lighthouse && window.lighthouse.state === 'joined'")
    await wait_for_main_view(tv, "main")
    assert not await tv.evaluate("document.getElementById('lh-app').classList.contains('alone')")
    assert await tv.is_hidden("#lh-placeholder")
    await end_from_phone(county_phone, tv)
    assert await county_phone.evaluate("window.lighthousePhone.mainVenue") is None

    for page in (tv, secretary, county_phone, main):
        assert page.problems == []
