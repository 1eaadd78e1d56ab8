"""The pages render in Simplified Chinese by default, English on request, and refuse bad links."""

from __future__ import annotations

import re

import aiohttp
import pytest

from web.i18n import LOCALE_DIR, load_translations


async def fetch(server, path: str, **headers) -> tuple[int, str, dict]:
    async with aiohttp.ClientSession() as session:
        async with session.get(server.base_url + path, headers=headers) as response:
            return response.status, await response.text(), dict(response.headers)


@pytest.mark.parametrize("page", ["tv", "join", "main"])
async def test_meeting_pages_default_to_chinese_and_carry_the_token(server, page):
    token = server.token("village")
    status, body, headers = await fetch(
        server, f"/{page}?token={token}", **{"Accept-Language": "en-US,en;q=0.9"}
    )
    assert status == 200
    assert '<html lang="zh-CN"' in body
    assert "连接中" in body  # the status line, translated
    assert token in body
    assert headers["Cache-Control"] == "no-store"
    assert "script-src 'self'" in headers["Content-Security-Policy"]


async def test_english_on_request(server):
    status, body, _ = await fetch(server, f"/tv?token={server.token('v')}&lang=en")
    assert status == 200
    assert '<html lang="en"' in body
    assert "Connecting…" in body and "连接中" not in body


async def test_missing_token_is_a_friendly_400(server):
    status, body, _ = await fetch(server, "/join")
    assert status == 400
    assert "请使用管理员提供的链接" in body


async def test_token_is_escaped_in_the_page(server):
    status, body, _ = await fetch(server, "/tv?token=%3Cscript%3Ealert(1)%3C/script%3E")
    assert status == 200
    assert "<script>alert(1)</script>" not in body


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
