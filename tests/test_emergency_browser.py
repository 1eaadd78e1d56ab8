"""An emergency call in real Chromium: a village secretary's phone (mobile viewport) calls
the county command with its camera; the command view, already open, raises the alert and
plays the phone's picture at once (judged by its decoded colour); the command acknowledges
and the phone says so; the phone ends the call and the command's card goes away."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from lighthouse.keys import DATABASE_KEY, ROOMS_KEY

from apiclient import seed_small_county
from browser import (
    CAMERA_JS,
    COLOURS,
    GRAB_VIDEO_JS,
    chromium_args,
    launched_chromium,
    signed_in_page,
    wait_until,
    which_colour,
    write_y4m,
)

pytestmark = [pytest.mark.browser, pytest.mark.server_config(rooms=())]


@pytest.fixture
async def chromium(tmp_path: Path):
    camera = write_y4m(tmp_path / "grey.y4m", np.full((360, 640, 3), 128, np.uint8), frames=2)
    async with launched_chromium(chromium_args(camera)) as browser:
        yield browser


async def test_a_phone_calls_the_command_which_sees_it_at_once_acknowledges_and_ends(
    server, chromium
):
    await seed_small_county(server.app[DATABASE_KEY])
    _, command = await signed_in_page(chromium, server.base_url, "/console/command", "county_admin")
    await wait_until(command, "window.lighthouseCommand && window.lighthouseCommand.connected")
    assert await command.is_hidden("#cmd-alert")
    assert await command.is_visible("#cmd-empty")

    _, phone = await signed_in_page(
        chromium,
        server.base_url,
        "/console/phone",
        "a1_secretary",
        viewport={"width": 390, "height": 844},
        is_mobile=True,
        has_touch=True,
    )
    await phone.add_init_script(f"({CAMERA_JS})({list(COLOURS['a1'])})")
    await phone.reload()
    phone.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await wait_until(phone, "window.lighthousePhone && window.lighthousePhone.ready")
    assert await phone.inner_text("#ph-sos") == "紧急呼叫"

    started = time.monotonic()
    await phone.click("#ph-sos")
    await wait_until(phone, "window.lighthousePhone.emergency?.state === 'sending'")
    assert (await phone.inner_text("#ph-sos-title")).endswith("A1村")

    # the command view: the alert at once, then the phone's camera playing
    await wait_until(command, "window.lighthouseCommand.alerting")
    assert "A1村" in await command.inner_text("#cmd-alert-text")
    (emergency_id,) = await command.evaluate("window.lighthouseCommand.active")
    await wait_until(command, f"window.lighthouseCommand.playing[{emergency_id}] === true")
    seen_after = time.monotonic() - started
    grabbed = await command.evaluate(GRAB_VIDEO_JS, f"[data-emergency-id='{emergency_id}'] video")
    assert grabbed and which_colour(grabbed["pixels"]) == "a1"
    print(f"tap on the phone → picture playing in the command view: {seen_after:.2f} s")

    # the alert asks for an acknowledgement: the solid (primary) button, talking the quiet one
    card = f"[data-emergency-id='{emergency_id}']"
    fills = await command.evaluate(
        "(card) => ['[data-ack]', '[data-talk]'].map((b) => getComputedStyle("
        "document.querySelector(card + ' ' + b)).backgroundColor)",
        card,
    )
    assert fills == ["rgb(200, 22, 29)", "rgb(255, 255, 255)"], fills

    # acknowledged: the alert stops, the phone hears of it
    await command.click(f"[data-emergency-id='{emergency_id}'] [data-ack]")
    await wait_until(command, "!window.lighthouseCommand.alerting")
    assert await command.is_hidden("#cmd-alert")
    await wait_until(phone, "window.lighthousePhone.emergency.state === 'acknowledged'")
    assert "county_admin" in await phone.inner_text("#ph-sos-state")

    # the phone ends the call: the command's card goes, the room closes
    await phone.click("#ph-sos-end")
    await wait_until(command, "window.lighthouseCommand.active.length === 0")
    assert await command.locator("[data-emergency-id]").count() == 0
    assert "A1村" in await command.inner_text("#cmd-history")
    assert f"emergency-{emergency_id}" not in server.app[ROOMS_KEY]
    for page in (command, phone):
        assert not [m for m in page.messages if "pageerror" in m or "Content Security" in m]
