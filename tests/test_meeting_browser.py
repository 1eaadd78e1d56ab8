"""A meeting started from a phone, in real Chromium: the county secretary's phone (mobile
viewport) starts a meeting for three villages, the three paired TVs join by themselves,
a roll call switches what every TV's main view shows (judged by the decoded picture),
mute-all stops the server forwarding the villages' audio (judged by its packet counters),
a shared screen takes the TVs' main view, and the meeting record is completed on the phone
and exported."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import aiohttp
import numpy as np
import pytest
from aiortc import AudioStreamTrack

from lighthouse.keys import DATABASE_KEY
from signaling.client import SignalingClient

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
from media import PictureTrack

pytestmark = pytest.mark.server_config(rooms=())


@pytest.fixture
async def chromium(tmp_path: Path):
    camera = write_y4m(tmp_path / "grey.y4m", np.full((360, 640, 3), 128, np.uint8), frames=2)
    async with launched_chromium(chromium_args(camera)) as browser:
        yield browser


async def test_phone_starts_a_meeting_tvs_join_roll_call_mute_all_and_record(server, chromium):
    orgs = await seed_small_county(server.app[DATABASE_KEY])
    villages = ("a1", "a2", "b1")
    async with aiohttp.ClientSession() as http:
        world = SimpleNamespace(anonymous=ApiClient(server.base_url, http))
        county = await world.anonymous.login("county_admin")
        terminal_tokens = {}
        for village in villages:
            _, terminal_tokens[village] = await pair_terminal(
                world, county, orgs[f"village_{village}"].id, f"{village.upper()}村电视"
            )
        members = [
            await county.call(
                "POST",
                "/api/members",
                {"branch_id": orgs["branch_a1"].id, "name": name, "gender": "female"},
                expect=201,
            )
            for name in ("王秀英", "李桂兰")
        ]

        # three TVs, each its own device with its own camera colour, on their idle screens
        tvs = {}
        for village in villages:
            tv = await new_page(chromium, viewport={"width": 960, "height": 540})
            await tv.add_init_script(
                f"localStorage.setItem('lighthouse.terminalToken', {terminal_tokens[village]!r});"
            )
            await tv.add_init_script(f"({CAMERA_JS})({list(COLOURS[village])})")
            await tv.goto(f"{server.base_url}/tv")
            tvs[village] = tv
        for tv in tvs.values():
            await wait_until(tv, "window.lighthouseTerminal.state === 'idle'")

        # the secretary's phone: sign in, start a meeting for every village of the county
        phone = await new_page(
            chromium,
            viewport={"width": 390, "height": 844},
            is_mobile=True,
            has_touch=True,
            device_scale_factor=2,
        )
        phone.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        await phone.goto(f"{server.base_url}/console/phone")
        await phone.wait_for_url(lambda url: urlsplit(url).path == "/console/login")
        await phone.fill("#login-username", "county_admin")
        await phone.fill("#login-password", PASSWORD)
        await phone.click("#con-login-submit")
        await phone.wait_for_url(lambda url: urlsplit(url).path == "/console/phone")
        await wait_until(phone, "window.lighthousePhone && window.lighthousePhone.ready")
        assert await phone.inner_text("#ph-new") == "发起会议"
        await phone.click("#ph-new")
        await wait_until(phone, "document.querySelectorAll('[data-site]').length === 2")
        await phone.select_option("#ph-type", "party_lecture")
        await phone.fill("#ph-topic", "学习党的二十届四中全会精神")
        await phone.select_option("#ph-main-venue", "link")  # the county hall's PC, below
        await phone.click("#ph-start")

        # every TV joins by itself
        for tv in tvs.values():
            await wait_until(tv, "window.lighthouse && window.lighthouse.state === 'joined'")
            assert await tv.evaluate("window.lighthouseTerminal.state") == "meeting"
        await wait_until(
            phone,
            "document.querySelectorAll('#ph-venues [data-state=\"in_meeting\"]').length === 3",
        )
        meeting_id = await phone.evaluate("window.lighthousePhone.meeting")
        live = await county.call("GET", f"/api/meetings/{meeting_id}/live", expect=200)
        room = server.room(live["room_id"])

        # the main venue (a PC at the county hall) joins through its link and publishes
        token = live["main_url"].split("token=", 1)[1]
        main = SignalingClient(server.base_url, token)
        await main.connect()
        try:
            await main.publish(
                [
                    AudioStreamTrack(),
                    PictureTrack(np.full((180, 320, 3), COLOURS["main"], np.uint8)),
                ]
            )
            for tv in tvs.values():
                await wait_for_main_view(tv, "main")

            # roll call from the phone: everyone's main view shows that village
            peer_ids = {v: await tvs[v].evaluate("window.lighthouse.peerId") for v in villages}
            await phone.click(f"[data-roll-call='{peer_ids['a1']}']")
            for tv in tvs.values():
                await wait_for_main_view(tv, "a1")
            assert "点名：A1村电视" == await tvs["b1"].inner_text("#lh-banner")
            await phone.click(f"[data-roll-call='{peer_ids['a2']}']")
            for village in ("a1", "b1"):
                await wait_for_main_view(tvs[village], "a2")

            # mute all: the server stops forwarding every village's audio but the floor's
            village_audio = {
                v: next(
                    p.uptracks["audio"]
                    for p in room.publications.values()
                    if p.peer.id == peer_ids[v] and p.source == "camera"
                )
                for v in villages
            }

            def forwarded(village: str) -> int:
                return sum(d.packets_forwarded for d in village_audio[village].downtracks)

            # the main venue hears every village, as its page does
            for village in villages:
                publication = next(
                    p for p in room.publications.values() if p.peer.id == peer_ids[village]
                )
                await main.subscribe(publication.id, ["audio"])
            before = {v: forwarded(v) for v in villages}
            await asyncio.sleep(1.5)
            assert all(forwarded(v) > before[v] + 20 for v in villages)
            await phone.click("[data-control='mute_all']")
            await wait_until(
                tvs["a1"], "document.getElementById('lh-app').classList.contains('muted-by-main')"
            )
            await asyncio.sleep(0.3)
            before = {v: forwarded(v) for v in villages}
            withheld = {v: village_audio[v].packets_withheld for v in villages}
            await asyncio.sleep(1.5)
            for village in ("a1", "b1"):
                assert forwarded(village) == before[village], village
                assert village_audio[village].packets_withheld > withheld[village] + 20
            assert forwarded("a2") > before["a2"] + 20  # the floor holder is heard
            assert await tvs["a1"].inner_text("#lh-notice") == "主会场已将本会场静音"

            # the main venue shares its screen: the TVs' main view is the content
            await main.publish(
                [PictureTrack(np.full((180, 320, 3), COLOURS["content"], np.uint8))],
                source="content",
            )
            for tv in tvs.values():
                await wait_for_main_view(tv, "content")
                assert await tv.get_attribute("#lh-stage", "data-layout") == "content"
        finally:
            await main.close()

        # the end: TVs go back to their idle screens, the phone opens the record
        await phone.click("#ph-end")
        for tv in tvs.values():
            await wait_until(tv, "window.lighthouseTerminal.state === 'idle'")
        await wait_until(phone, "!document.getElementById('ph-record').hidden")
        await wait_until(
            phone, "document.querySelectorAll('#ph-attendance [data-member-id]').length === 2"
        )
        await phone.fill("#ph-host", "张书记")
        await phone.fill("#ph-recorder", "刘委员")
        await phone.fill("#ph-content", "传达学习全会精神，讨论落实举措。")
        present, absent = members
        await phone.check(f"[data-member-id='{present['id']}'] input[type=checkbox]")
        await phone.fill(f"[data-member-id='{absent['id']}'] .ph-reason", "外出务工")
        await phone.click("#ph-save")
        await wait_until(phone, "!document.getElementById('ph-record-result').hidden")
        assert await phone.inner_text("#ph-record-result") == "已保存。"

        record = await county.call("GET", f"/api/meetings/{meeting_id}", expect=200)
        assert record["status"] == "ended" and record["host"] == "张书记"
        rows = {a["member_id"]: a for a in record["attendance"]}
        assert rows[present["id"]]["status"] == "present"
        assert rows[absent["id"]]["absence_reason"] == "外出务工"
        exported = await county.call("GET", f"/api/meetings/{meeting_id}/export.xlsx", expect=200)
        from openpyxl import load_workbook

        sheet = load_workbook(io.BytesIO(exported["_body"])).active
        text = "\n".join(str(c.value) for row in sheet.iter_rows() for c in row if c.value)
        for expected in ("张书记", "刘委员", "外出务工", "王秀英", "李桂兰", "传达学习全会精神"):
            assert expected in text, expected

        for page in (*tvs.values(), phone):
            assert page.problems == []
