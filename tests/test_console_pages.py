"""The console pages, the TV pairing screen and its QR code, and the TV's terminal mode, as
served (the browser flow is in test_console_browser.py)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import aiohttp
import pytest

from web.pages import pairing_url, qr_svg

CONSOLE_PAGES = [
    "/console",
    "/console/members",
    "/console/terminals",
    "/console/meetings",
    "/console/meetings/7",
    "/console/duty",
]
# a signed-in browser's cookie: the pages only look for it, the API checks it
SIGNED_IN = {"Cookie": "lh_session=anything"}


async def fetch(server, path: str, **headers) -> tuple[int, str, dict]:
    async with aiohttp.ClientSession() as session:
        async with session.get(
            server.base_url + path, headers=headers, allow_redirects=False
        ) as response:
            return response.status, await response.text(), dict(response.headers)


def json_block(body: str, element_id: str) -> dict:
    """The JSON a page hands its script in <script type="application/json" id=...>."""
    pattern = rf'<script type="application/json" id="{element_id}">(.*?)</script>'
    match = re.search(pattern, body, re.S)
    assert match, element_id
    return json.loads(match.group(1))


@pytest.mark.parametrize("path", CONSOLE_PAGES)
async def test_console_pages_render_in_chinese_and_in_english(server, path):
    status, body, headers = await fetch(server, path, **SIGNED_IN)
    assert status == 200
    assert '<html lang="zh-CN"' in body
    assert "管理后台" in body and "组织架构" in body and "退出登录" in body
    # the strings and enum labels console.js shows, translated
    labels = json_block(body, "con-labels")
    assert labels["role"]["town_admin"] == "乡镇管理员"
    assert labels["meetingType"]["party_congress"] == "党员大会"
    assert labels["kind"]["town"] == "乡镇/街道"
    assert json_block(body, "con-strings")["errorBadCredentials"] == "用户名或密码错误。"
    assert "/static/console.js" in body and "<script>" not in body  # no inline script
    assert headers["Cache-Control"] == "no-store"
    assert "script-src 'self'" in headers["Content-Security-Policy"]

    status, body, _ = await fetch(server, path + "?lang=en", **SIGNED_IN)
    assert status == 200
    assert '<html lang="en"' in body
    assert "Management console" in body and "Sign out" in body and "管理后台" not in body
    assert json_block(body, "con-config")["keepLang"] == "en"  # links stay in English
    assert json_block(body, "con-labels")["role"]["town_admin"] == "Township administrator"


async def test_console_without_a_session_goes_to_the_login_page(server):
    status, _, headers = await fetch(server, "/console/terminals?code=ABC234")
    assert status == 302
    assert headers["Location"] == "/console/login?next=/console/terminals?code%3DABC234"

    status, body, _ = await fetch(server, "/console/login?next=/console/terminals?code%3DABC234")
    assert status == 200
    assert "用户名" in body and "密码" in body and "登录" in body
    assert json_block(body, "con-config")["next"] == "/console/terminals?code=ABC234"


async def test_login_never_sends_anyone_off_site(server):
    for target in ("https://evil.example/", "//evil.example/console", "/api/me"):
        _, body, _ = await fetch(server, "/console/login?next=" + target)
        assert json_block(body, "con-config")["next"] == "/console", target


async def test_terminals_page_prefills_the_scanned_code(server):
    status, body, _ = await fetch(server, "/console/terminals?code=abc234", **SIGNED_IN)
    assert status == 200
    config = json_block(body, "con-config")
    assert config["code"] == "ABC234"
    assert config["nameSuffix"] == "党群服务中心"
    assert "电视上显示的配对码" in body


async def test_console_static_files_load(server):
    # the chart library comes from the npm registry by `make` (web/package.json)
    for name in (
        "console.js",
        "console.css",
        "pair.js",
        "terminal.js",
        "duty.js",
        "vendor/echarts.min.js",
    ):
        status, _, _ = await fetch(server, f"/static/{name}")
        assert status == 200, name


async def test_duty_page_takes_a_date_and_shows_county_time(server):
    status, body, _ = await fetch(server, "/console/duty?date=2026-12-01&org=4", **SIGNED_IN)
    assert status == 200
    config = json_block(body, "con-config")
    assert (config["date"], config["org"], config["timeZone"]) == ("2026-12-01", 4, "Asia/Shanghai")
    assert json_block(body, "duty-labels")["dayStatus"]["late"] == "迟到"
    assert "/static/vendor/echarts.min.js" in body
    _, body, _ = await fetch(server, "/console/duty?date=12/01/2026'%3E&lang=en", **SIGNED_IN)
    assert json_block(body, "con-config")["date"] is None
    assert json_block(body, "duty-labels")["dayStatus"]["late"] == "Late"
    assert json_block(body, "con-page-strings")["newAlert"].startswith("New alert")


async def test_tv_pair_page_renders(server):
    status, body, headers = await fetch(server, "/tv/pair")
    assert status == 200
    assert '<html lang="zh-CN"' in body
    # the waiting text, handed to pair.js
    assert json_block(body, "lh-pair-strings")["waiting"] == "请管理员在后台输入此配对码"
    assert "/static/pair.js" in body
    assert f"{server.base_url}/console" in body  # where the admin goes
    assert headers["Cache-Control"] == "no-store"

    status, body, _ = await fetch(server, "/tv/pair?lang=en")
    assert status == 200
    assert "Pair this TV" in body and "电视终端配对" not in body


async def test_qr_code_points_the_phone_at_the_pairing_form(server):
    async with aiohttp.ClientSession() as session:
        async with session.get(server.base_url + "/tv/pair/qr.svg?code=ABC234") as response:
            assert response.status == 200
            assert response.content_type == "image/svg+xml"
            body = await response.read()
    root = ET.fromstring(body)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.get("viewBox")
    # the same picture as the absolute console address, encoded on its own
    assert body == qr_svg(pairing_url(server.base_url, "ABC234"))
    assert pairing_url(server.base_url, "ABC234") == (
        f"{server.base_url}/console/terminals?code=ABC234"
    )


@pytest.mark.parametrize(
    "code", ["", "ABC23", "ABC2345", "ABC 23", "ABCD0O", "ABC23%3C", "%3Cscript%3E"]
)
async def test_qr_code_refuses_a_malformed_code(server, code):
    status, _, _ = await fetch(server, f"/tv/pair/qr.svg?code={code}")
    assert status == 400


async def test_tv_without_a_token_is_the_paired_terminal(server):
    status, body, _ = await fetch(server, "/tv")
    assert status == 200
    config = json_block(body, "lh-config")
    assert config["terminal"] is True and config["token"] is None
    assert config["terminalTokenKey"] == "lighthouse.terminalToken"
    assert "/static/terminal.js" in body
    assert json_block(body, "lh-terminal-strings")["idle"] == "暂无会议，等待主会场召集…"
    assert 'id="lh-idle"' in body
