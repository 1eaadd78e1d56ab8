"""Duty attendance from a village TV's own camera, end to end in real Chromium: the town
adds the TV as the village's duty camera; the idle TV, told to go on duty, publishes its
camera (a video of a cadre at the desk) to the village's duty room and says so on its
idle screen; the enrolled cadre is on duty with the evidence pictures, the cadre who does
not come is late. A meeting takes the camera and gives it back when it ends; turning the
camera off takes the TV off duty."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from faces import enrolment_photo, jpeg, sample_faces
from test_duty_api import until
from test_duty_sheets import xlsx
from test_face_signin_browser import face_camera_chromium  # noqa: F401 - a fixture

from lighthouse.keys import DATABASE_KEY, ROOMS_KEY

from apiclient import ApiClient, add_member, pair_terminal, seed_small_county, upload
from browser import signed_in_page, wait_until

pytestmark = pytest.mark.server_config(
    rooms=(), recognition_enabled=True, duty_enabled=True, duty_tick_s=1.0
)
ZONE = ZoneInfo("Asia/Shanghai")


async def _async(value):
    return value


ON_DUTY = (
    "window.lighthouseTerminal.duty && window.lighthouseTerminal.duty.client.state === 'joined'"
    " && window.lighthouseTerminal.duty.client.publicationId"
)


async def test_an_idle_tv_watches_the_duty_room_until_a_meeting_takes_its_camera(
    server,
    face_camera_chromium,  # noqa: F811
):
    orgs = await seed_small_county(server.app[DATABASE_KEY])
    village, branch = orgs["village_a1"], orgs["branch_a1"]
    async with aiohttp.ClientSession() as http:
        world = SimpleNamespace(anonymous=ApiClient(server.base_url, http))
        county = await world.anonymous.login("county_admin")
        town = await world.anonymous.login("town_a_admin")
        secretary = await world.anonymous.login("a1_secretary")
        terminal_id, tv_token = await pair_terminal(world, county, village.id, "A1村电视")
        other_tv, _ = await pair_terminal(world, county, orgs["village_b1"].id, "B1村电视")
        wang = await add_member(secretary, branch.id, "王主任")
        li = await add_member(secretary, branch.id, "李委员")
        photo = jpeg(enrolment_photo(sample_faces()["tom"]))
        assert (await upload(secretary, wang, {"wang.jpg": photo}))["enrolled"]
        # the secretary's phone is open before anything is due: an alert comes in live
        phone_context, phone = await signed_in_page(
            face_camera_chromium,
            server.base_url,
            "/console/phone",
            "a1_secretary",
            viewport={"width": 390, "height": 844},
        )
        await wait_until(phone, "window.lighthousePhone.ready && window.lighthousePhone.dutyLive")
        assert not await phone.is_visible("#ph-duty")

        now = dt.datetime.now(ZONE)
        start = min(now.replace(second=0, microsecond=0), now.replace(hour=23, minute=0))
        await county.call(
            "PUT",
            "/api/duty/hours",
            {
                "org_id": orgs["county"].id,
                "weekdays": list(range(7)),
                "start": f"{start:%H:%M}",
                "end": "23:59",
                "grace_min": 0,
            },
            expect=200,
        )
        for member_id, post in ((wang, "村委会主任"), (li, "村委委员")):
            body = {"village_id": village.id, "member_id": member_id, "post": post}
            await town.call("POST", "/api/duty/roster", body, expect=201)

        # the TV is the village's camera; another village's TV or a bad schedule is refused
        camera = {"village_id": village.id, "kind": "tv", "name": "村委会电视"}
        refused = await town.call("POST", "/api/duty/cameras", {**camera, "terminal_id": other_tv})
        assert town.last_status == 422 and refused["error"]["code"] == "bad_terminal"
        refused = await town.call(
            "POST",
            "/api/duty/cameras",
            {**camera, "terminal_id": terminal_id, "schedule": {"from": "18:00", "to": "08:00"}},
        )
        assert town.last_status == 422 and refused["error"]["code"] == "bad_schedule"
        added = await town.call(
            "POST", "/api/duty/cameras", {**camera, "terminal_id": terminal_id}, expect=201
        )
        camera_id = added["camera"]["id"]

        # the idle TV goes on duty by itself and tells the room its camera is on
        tv_context = await face_camera_chromium.new_context(viewport={"width": 960, "height": 540})
        tv = await tv_context.new_page()
        tv_errors: list[str] = []
        tv.on("pageerror", lambda exc: tv_errors.append(str(exc)))
        await tv.add_init_script(f"localStorage.setItem('lighthouse.terminalToken', {tv_token!r});")
        await tv.goto(f"{server.base_url}/tv")
        await wait_until(tv, ON_DUTY)
        assert await tv.is_visible("#lh-idle") and await tv.is_visible("#lh-idle-duty")
        assert "值班考勤" in await tv.inner_text("#lh-idle-duty")
        duty = await tv.evaluate(
            "({room: window.lighthouseTerminal.duty.roomId,"
            " tracks: window.lighthouseTerminal.duty.client.localStream.getTracks()"
            ".map((t) => t.kind)})"
        )
        assert duty == {"room": f"duty-{village.id}", "tracks": ["video"]}  # no microphone

        # the cadre at the desk is on duty, with the clock-in's pictures; the other is late
        async def wang_on_duty():
            days = await secretary.call("GET", "/api/duty/days", expect=200)
            mine = {d["name"]: d for d in days["days"]}
            return mine if mine.get("王主任", {}).get("arrived_at") else None

        # the cadre who does not come is late at once (no grace): the phone shows it live,
        # and the secretary explains it there (the cadre at the desk may be late by seconds)
        li_item = f"#ph-duty-alerts li[data-member-id='{li}']"
        await wait_until(phone, f"document.querySelector({li_item!r}) !== null")
        alert_text = await phone.inner_text(li_item)
        assert "李委员" in alert_text and "迟到" in alert_text, alert_text
        await phone.click(f"{li_item} button")
        await phone.fill(f"{li_item} textarea", "去镇里开会")
        await phone.click(f"{li_item} .ph-button-primary")
        await wait_until(phone, f"document.querySelector({li_item + ' .ph-hint'!r}) !== null")
        assert "去镇里开会" in await phone.inner_text(li_item)
        assert not [m for m in phone.messages if m.startswith("pageerror")], phone.messages
        await phone_context.close()

        days = await until(wang_on_duty, 40, "the cadre clocked in from the TV's camera")
        assert days["王主任"]["status"] in ("on_time", "late")
        # the TV tells the room who it recognised (the other cadre is not there)
        await wait_until(tv, "window.lighthouseTerminal.seen.includes('王主任')")
        assert "王主任" in await tv.inner_text("#lh-idle-seen")
        assert await tv.evaluate("window.lighthouseTerminal.seen") == ["王主任"]
        assert days["李委员"]["status"] == "late" and days["李委员"]["arrived_at"] is None
        evidence = await secretary.call(
            "GET", f"/api/duty/days/{days['王主任']['id']}/sightings", expect=200
        )
        seen = evidence["sightings"][0]
        assert seen["camera"] == f"camera:{camera_id}" and seen["similarity"] >= 0.40
        face = await secretary.call("GET", seen["in_face_url"], expect=200)
        assert face["_body"][:2] == b"\xff\xd8"  # a JPEG
        viewer = await world.anonymous.login("a1_viewer")
        await viewer.call("GET", seen["in_face_url"], expect=403)
        cameras = (await town.call("GET", "/api/duty/cameras", expect=200))["cameras"]
        assert cameras[0]["online"] is True and cameras[0]["last_recognition_at"]

        # the town's console: the cadre on duty with the evidence pictures, the chart, and
        # the explained alert, which the town excuses (the day becomes leave)
        console_context, console = await signed_in_page(
            face_camera_chromium, server.base_url, "/console/duty", "town_a_admin"
        )
        await wait_until(console, "window.lighthouseDuty.ready && window.lighthouseDuty.chart")
        assert (
            await console.evaluate(
                "echarts.getInstanceByDom(document.getElementById('duty-chart'))"
                ".getOption().series[0].data.length"
            )
            == 1
        )  # the town's one village with cadres
        wang_row = console.locator(f"#duty-days tr[data-member-id='{wang}']")
        assert await wang_row.get_attribute("data-status") in ("on_time", "late")
        await wang_row.locator("button.duty-evidence").click()
        pictures = "#duty-days .duty-evidence-row img"
        await wait_until(
            console,
            f"[...document.querySelectorAll({pictures!r})]"
            ".filter((img) => img.complete && img.naturalWidth > 0).length >= 2",
        )
        li_alert = console.locator("#duty-alerts tr[data-status='explained']")
        assert "去镇里开会" in await li_alert.inner_text()
        await li_alert.locator("button.duty-excuse").click()
        await console.fill("#duty-alerts .duty-detail input", "镇里通知开会")
        await console.click("#duty-alerts .duty-detail button[type=submit]")
        await wait_until(
            console,
            f"document.querySelector(\"#duty-days tr[data-member-id='{li}']\")"
            ".dataset.status === 'leave'",
        )
        assert await console.locator("#duty-alerts tr[data-status='excused']").count() == 1
        # a leave sheet with a row the roster does not know is refused, row by row
        assert not await console.is_visible("[data-sheet=calendar] .duty-sheet-write")
        sheet = xlsx(
            [
                ["姓名", "类型", "开始日期", "结束日期", "事由", "批准人"],
                ["王主任", "请假", "2027-01-05", "2027-01-05", "看病", "镇长"],
                ["张三", "请假", "2027-01-05", "2027-01-05", "看病", "镇长"],
            ],
            title=None,
        )
        await console.set_input_files(
            "[data-sheet=leave] .duty-sheet-file",
            {"name": "请假.xlsx", "mimeType": "application/octet-stream", "buffer": sheet},
        )
        await console.wait_for_selector("#duty-refused li")
        assert "第 3 行" in await console.inner_text("#duty-refused")
        assert not [m for m in console.messages if m.startswith("pageerror")], console.messages
        await console_context.close()

        # nobody gets a meeting token for the duty room (it would be a visible, unaudited
        # viewer); a supervisor, or the town's clerk, looks in hidden, on the patrol wall,
        # and sees who is in
        refused = await secretary.call(
            "POST", "/api/meeting-token", {"room_id": f"duty-{village.id}"}
        )
        assert secretary.last_status == 404 and refused["error"]["code"] == "no_meeting"
        supervisor = await world.anonymous.login("town_a_supervisor")
        live = (await supervisor.call("GET", "/api/supervision/live", expect=200))["meetings"]
        (room,) = [m for m in live if m["kind"] == "duty"]
        assert room["room_id"] == f"duty-{village.id}" and room["in_view"] == ["王主任"]
        patrol_context, patrol = await signed_in_page(
            face_camera_chromium,
            server.base_url,
            "/console/supervision/patrol?rooms=duty&grid=2",
            "town_a_admin",  # a town office: no supervision of meetings, its duty rooms yes
        )
        await wait_until(
            patrol,
            "document.querySelector('.con-patrol-tile.con-patrol-live video')"
            " && document.querySelector('.con-patrol-tile.con-patrol-live video').videoWidth > 0",
        )
        caption = await patrol.inner_text(".con-patrol-tile.con-patrol-live .con-patrol-caption")
        assert "值班室" in caption and "在岗：王主任" in caption, caption
        assert await patrol.evaluate("window.lighthousePatrol.shown") == [f"duty-{village.id}"]
        assert not [m for m in patrol.messages if m.startswith("pageerror")], patrol.messages
        await patrol_context.close()
        views = await county.call("GET", "/api/supervision/views", expect=200)
        assert any(v["room_id"] == f"duty-{village.id}" for v in views["views"])

        # a meeting takes the camera; at its end the TV is back on duty
        meeting = await secretary.call(
            "POST",
            "/api/meetings",
            {"type": "party_congress", "topic": "党员大会", "organiser_id": branch.id},
            expect=201,
        )
        await secretary.call("POST", f"/api/meetings/{meeting['id']}/start", expect=200)
        await wait_until(tv, "window.lighthouse && window.lighthouse.state === 'joined'")
        assert await tv.evaluate("window.lighthouseTerminal.duty") is None
        assert not await tv.is_visible("#lh-idle-duty")
        await secretary.call("POST", f"/api/meetings/{meeting['id']}/end", expect=200)
        await wait_until(tv, ON_DUTY)

        # the town turns the camera off: the TV leaves the duty room and says nothing more
        await town.call("PATCH", f"/api/duty/cameras/{camera_id}", {"enabled": False}, expect=200)
        await wait_until(tv, "window.lighthouseTerminal.duty === null")
        assert not await tv.is_visible("#lh-idle-duty")
        await until(
            lambda: _async(f"duty-{village.id}" not in server.app[ROOMS_KEY]), 5, "room closed"
        )
        cameras = (await town.call("GET", "/api/duty/cameras", expect=200))["cameras"]
        assert cameras[0]["enabled"] is False and cameras[0]["online"] is False
        assert not tv_errors, tv_errors
        await tv_context.close()


async def test_a_duty_kiosk_page_clocks_cadres_in_and_is_never_called_to_a_meeting(
    server,
    face_camera_chromium,  # noqa: F811
):
    orgs = await seed_small_county(server.app[DATABASE_KEY])
    village, branch = orgs["village_a1"], orgs["branch_a1"]
    async with aiohttp.ClientSession() as http:
        world = SimpleNamespace(anonymous=ApiClient(server.base_url, http))
        county = await world.anonymous.login("county_admin")
        town = await world.anonymous.login("town_a_admin")
        secretary = await world.anonymous.login("a1_secretary")
        kiosk, kiosk_token = await pair_terminal(
            world, county, village.id, "值班平板", "duty_camera"
        )
        wang = await add_member(secretary, branch.id, "王主任")
        photo = jpeg(enrolment_photo(sample_faces()["tom"]))
        assert (await upload(secretary, wang, {"wang.jpg": photo}))["enrolled"]
        # the kiosk's own hours: all day, every day (the duty hours are not set)
        await town.call(
            "POST",
            "/api/duty/roster",
            {"village_id": village.id, "member_id": wang, "post": "村委会主任"},
            expect=201,
        )
        await town.call(
            "POST",
            "/api/duty/cameras",
            {
                "village_id": village.id,
                "kind": "kiosk",
                "name": "值班室平板",
                "terminal_id": kiosk,
                "schedule": {"weekdays": list(range(7)), "from": "00:00", "to": "23:59"},
            },
            expect=201,
        )
        context = await face_camera_chromium.new_context(viewport={"width": 800, "height": 1280})
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.add_init_script(
            f"localStorage.setItem('lighthouse.terminalToken', {kiosk_token!r});"
        )
        await page.goto(f"{server.base_url}/duty")
        await wait_until(page, ON_DUTY)
        assert "值班考勤" in await page.inner_text("#lh-idle-title")
        assert "值班考勤" in await page.inner_text("#lh-idle-duty")

        async def wang_seen():
            camera = (await town.call("GET", "/api/duty/cameras", expect=200))["cameras"][0]
            return camera if camera["last_recognition_at"] else None

        camera = await until(wang_seen, 40, "the cadre seen by the kiosk")
        assert camera["online"] is True
        async with server.app[DATABASE_KEY].session() as session:
            from sqlalchemy import select

            from db.models import DutySighting

            sighting = await session.scalar(select(DutySighting))
        assert sighting.member_id == wang and sighting.camera == f"camera:{camera['id']}"
        await wait_until(page, "window.lighthouseTerminal.seen.includes('王主任')")
        assert "已到岗" in await page.inner_text("#lh-idle-seen")

        # a meeting of the village does not call the kiosk away
        meeting = await secretary.call(
            "POST",
            "/api/meetings",
            {"type": "party_congress", "topic": "党员大会", "organiser_id": branch.id},
            expect=201,
        )
        await secretary.call("POST", f"/api/meetings/{meeting['id']}/start", expect=200)
        await _sleep(2)
        assert await page.evaluate("window.lighthouseTerminal.state") == "idle"
        assert await page.evaluate(ON_DUTY)
        await secretary.call("POST", f"/api/meetings/{meeting['id']}/end", expect=200)
        assert not errors, errors
        await context.close()


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)
