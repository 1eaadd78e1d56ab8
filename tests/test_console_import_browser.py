"""Real Chromium: a township admin imports a member roll (CSV) on the console's members page,
follows its progress, reads which rows were left out and why, and finds the export link."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from lighthouse.keys import DATABASE_KEY

from apiclient import PASSWORD, seed_small_county
from browser import launched_chromium

pytestmark = pytest.mark.browser

HEADERS = "姓名 性别 出生日期 学历 入党日期 党员类别 所在支部 职务 联系电话".split()
NEXT_YEAR = (dt.date.today() + dt.timedelta(days=366)).isoformat()
# file rows 2-6 (the headings are row 1): three good members of branch BA1, two bad rows
ROLL = [
    ["张三", "男", "1956-03-08", "初中", "1980-07-01", "正式党员", "BA1", "书记", "13800138000"],
    ["李梅", "女", "1962/3/8", "高中", "1990年7月1日", "预备党员", "BA1", "", ""],
    ["王五", "男", "19700101", "大专", "", "", "BA1", "支委委员", ""],
    ["赵六", "未知", "1960-01-01", "", "", "", "BA1", "", ""],  # row 5: gender
    ["钱七", "男", NEXT_YEAR, "", "", "", "BA1", "", ""],  # row 6: born in the future
]


def roll_csv() -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(HEADERS)
    writer.writerows(ROLL)
    return buffer.getvalue().encode("utf-8-sig")  # what Excel's "CSV UTF-8" writes


@pytest.fixture
async def chromium():
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
    async with launched_chromium(args) as browser:
        yield browser


async def wait_until(page, condition: str, timeout_ms: int = 10_000) -> None:
    await page.wait_for_function(condition, polling=100, timeout=timeout_ms)


async def members_of(base_url: str, org_id: int, username: str) -> list[dict]:
    async with aiohttp.ClientSession() as session:
        async with session.post(
            base_url + "/api/login", json={"username": username, "password": PASSWORD}
        ) as response:
            assert response.status == 200
            token = (await response.json())["token"]
        async with session.get(
            f"{base_url}/api/members?org={org_id}&limit=500",
            headers={"Authorization": f"Bearer {token}"},
        ) as response:
            assert response.status == 200, await response.text()
            return (await response.json())["members"]


async def test_town_admin_imports_a_roll_and_sees_the_bad_rows(server, chromium, tmp_path):
    orgs = await seed_small_county(server.app[DATABASE_KEY])
    town, branch = orgs["town_a"], orgs["branch_a1"]
    context = await chromium.new_context(viewport={"width": 1366, "height": 900})
    page = await context.new_page()
    messages: list[str] = []
    page.on("console", lambda msg: messages.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda exc: messages.append(f"pageerror: {exc}"))
    try:
        await page.goto(f"{server.base_url}/console/members")
        await page.wait_for_url(lambda url: urlsplit(url).path == "/console/login")
        await page.fill("#login-username", "town_a_admin")
        await page.fill("#login-password", PASSWORD)
        await page.click("#con-login-submit")
        await page.wait_for_url(lambda url: urlsplit(url).path == "/console/members")
        await wait_until(page, "window.lighthouseConsole.ready")
        assert await page.inner_text("#con-members-empty") == "未找到党员。"
        # a township admin may write members: the import panel is there, folded
        assert await page.is_visible("#con-import summary")
        assert not await page.is_visible("#con-import-submit")
        await page.click("#con-import summary")

        roll = tmp_path / "A1村党员名册.csv"
        roll.write_bytes(roll_csv())
        await page.set_input_files("#import-file", str(roll))
        await page.click("#con-import-submit")
        await wait_until(page, "document.getElementById('con-import').dataset.state === 'done'")

        assert await page.get_attribute("#import-progress", "value") == "5"
        assert await page.inner_text("#con-import-progress-text") == "已处理 5 / 5 行"
        summary = await page.inner_text("#con-import-result")
        assert "新增 3 人" in summary and "重复 0 条" in summary and "有误 2 行" in summary
        assert "A1村党员名册.csv" in summary
        rows = await page.eval_on_selector_all(
            "#con-import-errors tbody tr",
            "rows => rows.map(r => Array.from(r.cells, c => c.textContent))",
        )
        assert [row[:2] for row in rows] == [["5", "性别"], ["6", "出生日期"]], rows
        assert "男" in rows[0][2] and "不能晚于今天" in rows[1][2]

        # the list below was reloaded with the three new members
        await wait_until(page, "document.querySelectorAll('#con-members tbody tr').length === 3")
        listed = await page.inner_text("#con-members tbody")
        assert all(name in listed for name in ("张三", "李梅", "王五"))
        created = await members_of(server.base_url, branch.id, "town_a_admin")
        assert sorted(m["name"] for m in created) == sorted(["张三", "李梅", "王五"])

        # the export link: this township's roll, as a spreadsheet the browser downloads
        href = await page.get_attribute("#con-export-members", "href")
        assert href is not None
        assert urlsplit(href).path == "/api/members/export.xlsx"
        assert parse_qs(urlsplit(href).query) == {"org": [str(town.id)]}
        assert await page.is_visible("#con-export-members")
        assert await page.get_attribute("#con-import-template", "href") == href
        reply = await context.request.get(server.base_url + href)  # with the page's cookie
        assert reply.status == 200
        assert reply.headers["content-type"].startswith("application/vnd.openxmlformats")

        if os.environ.get("LH_SCREENSHOTS"):
            shot = Path(os.environ["LH_SCREENSHOTS"]) / "console-members-import.png"
            await page.screenshot(path=str(shot), full_page=True)

        # a file refused as a whole says why, and lists no rows
        old_excel = tmp_path / "名册.xls"
        old_excel.write_bytes(b"\xd0\xcf\x11\xe0" + bytes(512))
        await page.set_input_files("#import-file", str(old_excel))
        await page.click("#con-import-submit")
        await wait_until(page, "document.getElementById('con-import').dataset.state === 'refused'")
        refused = await page.inner_text("#con-import-result")
        assert refused.startswith("无法导入此文件：") and ".xlsx" in refused, refused
        assert await page.is_hidden("#con-import-report")
        assert "con-alert-error" in (await page.get_attribute("#con-import-result", "class") or "")

        # an excused member's reason is said once, in the secretary's words
        zhang = next(m for m in created if m["name"] == "张三")
        changed = await context.request.patch(
            f"{server.base_url}/api/members/{zhang['id']}",
            data={"exempt_reason": "elderly_infirm", "exempt_note": "年老体弱，行动不便"},
            headers={"Origin": server.base_url},  # the cookie's change comes from our page
        )
        assert changed.status == 200, await changed.text()
        await page.reload()
        await wait_until(page, "document.querySelectorAll('#con-members tbody tr').length === 3")
        row = await page.inner_text("#con-members tbody tr:has-text('张三')")
        assert "年老体弱，行动不便" in row and row.count("年老体弱") == 1, row

        problems = [m for m in messages if "pageerror" in m or "Content Security" in m]
        assert problems == []
    except Exception:
        print("browser console:", *messages, sep="\n  ")
        raise
    finally:
        await context.close()
