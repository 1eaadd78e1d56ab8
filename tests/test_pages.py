"""The pages render in Simplified Chinese by default, English on request, and refuse bad links."""

from __future__ import annotations

import re

import aiohttp
import pytest
from test_console_pages import json_block

from web.i18n import LOCALE_DIR, load_translations


async def fetch(server, path: str, **headers) -> tuple[int, str, dict]:
    async with aiohttp.ClientSession() as session:
        async with session.get(server.base_url + path, headers=headers) as response:
            return response.status, await response.text(), dict(response.headers)


@pytest.mark.parametrize("page", ["tv", "join", "main"])
async def test_meeting_pages_default_to_chinese_and_carry_no_token(server, page):
    status, body, headers = await fetch(server, f"/{page}", **{"Accept-Language": "en-US,en;q=0.9"})
    assert status == 200
    assert '<html lang="zh-CN"' in body
    assert "连接中" in body  # the status line, translated
    assert json_block(body, "lh-config")["token"] is None  # it comes from the link's #fragment
    assert headers["Cache-Control"] == "no-store"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert "script-src 'self'" in headers["Content-Security-Policy"]


@pytest.mark.parametrize("page", ["tv", "join", "main"])
async def test_an_older_link_with_the_token_in_its_query_moves_it_into_the_fragment(server, page):
    token = server.token("village")
    async with aiohttp.ClientSession() as session:
        async with session.get(
            f"{server.base_url}/{page}?lang=en&token={token}", allow_redirects=False
        ) as response:
            assert response.status == 302
            assert response.headers["Location"] == f"/{page}?lang=en#token={token}"
            assert response.headers["Referrer-Policy"] == "no-referrer"
            assert response.headers["Cache-Control"] == "no-store"
        # a crafted token stays inert: encoded in the fragment, never written into a page
        crafted = "%3Cscript%3Ealert(1)%3C/script%3E"
        async with session.get(
            f"{server.base_url}/{page}?token={crafted}", allow_redirects=False
        ) as response:
            location = response.headers["Location"]
            assert location.startswith(f"/{page}#token=%3Cscript%3E") and "<" not in location


async def test_english_on_request(server):
    status, body, _ = await fetch(server, "/tv?lang=en")
    assert status == 200
    assert '<html lang="en"' in body
    assert "Connecting…" in body and "连接中" not in body


@pytest.mark.parametrize("page", ["join", "main"])
async def test_a_link_without_its_token_says_so_in_the_page(server, page):
    status, body, _ = await fetch(server, f"/{page}")
    assert status == 200  # the token is in the fragment: only the page can tell it is missing
    strings = json_block(body, "lh-strings")
    assert (
        strings["errorMissingToken"]
        == "此网址缺少入会凭证。请重新打开收到的完整链接，或再次扫描二维码。"
    )
    assert "在本机使用" == strings["takeOver"]


async def test_static_files_and_index(server):
    status, body, _ = await fetch(server, "/")
    assert status == 200 and "zh-CN" in body
    for name in ("lighthouse.js", "remote.js", "page.js", "lighthouse.css"):
        status, _, _ = await fetch(server, f"/static/{name}")
        assert status == 200, name


def test_every_template_string_is_translated_to_chinese():
    templates = LOCALE_DIR.parent / "templates"
    used: set[str] = set()
    for path in templates.glob("*.html"):
        used |= set(re.findall(r'_\("((?:[^"\\]|\\.)*)"', path.read_text(encoding="utf-8")))
    assert used, "templates use gettext"
    zh = load_translations()["zh_CN"]
    untranslated = [m for m in used if zh.gettext(m) == m]
    assert untranslated == []
