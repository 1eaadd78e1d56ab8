"""Face sign-in end to end in real Chromium: a village secretary uploads a member's photo on
the console, a village TV (Chromium, its camera a video file of the member in front of the
TV) joins the branch's meeting, and the member appears signed in on the console's live
sign-in sheet, with the face crop and the scene as pictures; the secretary confirms it.
The API's sheet says the same."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import cv2
import pytest
from faces import Appearance, enrolment_photo, render_frame, sample_faces

from lighthouse.keys import DATABASE_KEY

from apiclient import ApiClient, pair_terminal, seed_small_county
from browser import chromium_args, launched_chromium, signed_in_page, wait_until, write_y4m_video

pytestmark = pytest.mark.server_config(rooms=(), recognition_enabled=True)

SHEET_ROW = "#sig-members tr[data-member-id='{}']"


@pytest.fixture
async def face_camera_chromium(tmp_path: Path):
    """Chromium whose fake camera films Tom sitting in front of the TV, moving a little."""
    tom = sample_faces()["tom"]
    scene = [Appearance(tom, 0, 99, 320, 180, 160)]
    pictures = (render_frame(scene, i / 30)[:, :, ::-1] for i in range(4 * 30))
    camera = write_y4m_video(tmp_path / "meeting.y4m", pictures)
    async with launched_chromium(chromium_args(camera)) as browser:
        yield browser


async def test_a_member_in_front_of_the_tv_appears_on_the_live_sign_in_sheet(
    server, face_camera_chromium, tmp_path
):
    orgs = await seed_small_county(server.app[DATABASE_KEY])
    browser = face_camera_chromium
    async with aiohttp.ClientSession() as http:
        world = SimpleNamespace(anonymous=ApiClient(server.base_url, http))
        county = await world.anonymous.login("county_admin")
        secretary = await world.anonymous.login("a1_secretary")
        _, tv_token = await pair_terminal(world, county, orgs["village_a1"].id, "A1村电视")
        member = await secretary.call(
            "POST",
            "/api/members",
            {"branch_id": orgs["branch_a1"].id, "name": "汤姆", "gender": "male"},
            expect=201,
        )

        # the secretary enrols the member's photo on the console
        photo = tmp_path / "汤姆.jpg"
        cv2.imwrite(str(photo), enrolment_photo(sample_faces()["tom"]))
        context, console = await signed_in_page(
            browser, server.base_url, f"/console/members/{member['id']}/faces", "a1_secretary"
        )
        await wait_until(console, "window.lighthouseConsole.ready")
        await console.set_input_files("#fac-files", str(photo))
        await console.click("#fac-submit")
        await wait_until(console, "document.querySelectorAll('#fac-photos img').length === 1")
        assert "已保存 1 张照片" in await console.inner_text("#fac-message")

        # the village TV, idle, then in the branch's meeting with its camera on
        tv_context = await browser.new_context(viewport={"width": 960, "height": 540})
        tv = await tv_context.new_page()
        tv_errors: list[str] = []
        tv.on("pageerror", lambda exc: tv_errors.append(str(exc)))
        await tv.add_init_script(f"localStorage.setItem('lighthouse.terminalToken', {tv_token!r});")
        await tv.goto(f"{server.base_url}/tv")
        await wait_until(tv, "window.lighthouseTerminal.state === 'idle'")
        meeting = await secretary.call(
            "POST",
            "/api/meetings",
            {"type": "party_congress", "topic": "党员大会", "organiser_id": orgs["branch_a1"].id},
            expect=201,
        )
        await secretary.call("POST", f"/api/meetings/{meeting['id']}/start", expect=200)
        await wait_until(tv, "window.lighthouse && window.lighthouse.state === 'joined'")
        joined = time.monotonic()

        # the live sign-in sheet shows the member signed in by face, with both pictures
        await console.goto(f"{server.base_url}/console/meetings/{meeting['id']}/signins")
        await wait_until(console, "window.lighthouseSignins && window.lighthouseSignins.ready")
        row = SHEET_ROW.format(member["id"])
        await wait_until(console, f"document.querySelector(\"{row}\").dataset.state === 'face'")
        print(f"\nTV joined → signed in on the sheet: {time.monotonic() - joined:.2f} s")
        assert "刷脸签到" in await console.inner_text(row)
        assert "A1村电视" in await console.inner_text(row)
        await wait_until(
            console,
            f'Array.from(document.querySelectorAll("{row} img"))'
            ".filter((img) => img.complete && img.naturalWidth > 0).length === 2",
        )
        sizes = await console.eval_on_selector_all(
            f"{row} img", "(imgs) => imgs.map((img) => [img.naturalWidth, img.naturalHeight])"
        )
        assert sizes[0] == [112, 112]  # the aligned face
        assert sizes[1][0] >= 320  # the scene
        await wait_until(console, "document.querySelectorAll('#sig-snapshots img').length >= 1")

        # the secretary confirms it
        await console.click(f"{row} button[data-action='confirm']")
        await wait_until(
            console,
            f"document.querySelector(\"{row}\").textContent.includes('已确认')",
        )

        # the API's sheet agrees
        sheet = await secretary.call("GET", f"/api/meetings/{meeting['id']}/signins")
        signin = next(r["signin"] for r in sheet["members"] if r["member_id"] == member["id"])
        assert signin["method"] == "face" and signin["review"] == "confirmed"
        assert signin["similarity"] >= 0.40 and signin["face_url"] and signin["scene_url"]

        problems = [m for m in console.messages if "pageerror" in m or "Content Security" in m]
        assert not problems and not tv_errors, (problems, tv_errors)
        await secretary.call("POST", f"/api/meetings/{meeting['id']}/end", expect=200)
        await asyncio.sleep(0.2)
        await context.close()
        await tv_context.close()
