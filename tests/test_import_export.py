"""Member import from CSV/XLSX and XLSX exports, through the HTTP API, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import zipfile
from urllib.parse import unquote

import aiohttp
import openpyxl
import pytest

HEADERS = [
    "姓名",
    "性别",
    "出生日期",
    "学历",
    "入党日期",
    "党员类别",
    "所在支部",
    "职务",
    "不计入应到人数原因",
    "备注",
    "联系电话",
]
NEXT_YEAR = (dt.date.today() + dt.timedelta(days=366)).isoformat()

# (row as in a file whose header is row 1, expected error column or None, message fragment)
ROLL: list[tuple[list[object], str | None, str | None]] = [
    (["张三", "男", "1956-03-08", "初中", "1980/7/1", "正式党员", "BA1", "书记、村干部", "", "",
      "13800138000"], None, None),
    (["李梅", "女", "1962/3/8", "高中", "1990年7月1日", "预备党员", "A1村党支部", "", "外出务工",
      "在广东务工", ""], None, None),
    (["王五", "男", "19700101", "大专", "", "", "BA2", "支委委员,党小组长", "", "",
      "0571-88886666"], None, None),
    (["赵六", "未知", "1960-01-01", "", "", "", "BA1", "", "", "", ""], "性别", "应为“男”或“女”"),
    (["钱七", "男", NEXT_YEAR, "", "", "", "BA1", "", "", "", ""], "出生日期", "不能晚于今天"),
    (["孙八", "男", "1960-01-01", "", "", "", "BX9", "", "", "", ""], "所在支部", "找不到"),
    (["周九", "男", "1960-01-01", "", "", "", "BB1", "", "", "", ""], "所在支部", "找不到"),
    (["", "女", "1960-01-01", "", "", "", "BA1", "", "", "", ""], "姓名", "必填"),
    (["张三", "男", "1956/3/8", "", "", "", "BA1", "", "", "", ""], None, "与第 {first} 行重复"),
    (["吴十", "男", "1950-01-01", "", "", "", "BA1", "", "", "", ""], None, "已有党员"),
]  # fmt: skip


def roll_csv(encoding: str) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(HEADERS)
    writer.writerows(values for values, _, _ in ROLL)
    return buffer.getvalue().encode(encoding)


def roll_xlsx() -> bytes:
    """The same roll as Excel writes it: a title row, date cells, phone numbers as numbers."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["A镇党员信息表"])
    sheet.append(HEADERS)
    for values, _, _ in ROLL:
        row = list(values)
        if row[2] == "1956-03-08":
            row[2] = dt.datetime(1956, 3, 8)
        if row[10] == "13800138000":
            row[10] = 13800138000
        sheet.append([v if v != "" else None for v in row])
    return xlsx_bytes(workbook)


def xlsx_bytes(workbook: openpyxl.Workbook) -> bytes:
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


async def upload(client, data: bytes, filename: str) -> dict:
    form = aiohttp.FormData()
    form.add_field("file", data, filename=filename, content_type="application/octet-stream")
    return await client.call("POST", "/api/members/import", data=form)


async def finished(client, job_id: str) -> dict:
    for _ in range(200):
        progress = await client.call("GET", f"/api/imports/{job_id}")
        assert client.last_status == 200, progress
        if progress["state"] != "running":
            return progress
        await asyncio.sleep(0.05)
    raise AssertionError(f"the import did not finish: {progress}")


async def download(client, path: str) -> tuple[int, bytes, dict]:
    headers = {"Authorization": f"Bearer {client.token}"}
    async with client.session.get(client.base_url + path, headers=headers) as response:
        return response.status, await response.read(), dict(response.headers)


async def members_of(client, org_id: int) -> list[dict]:
    listed = await client.call("GET", f"/api/members?org={org_id}&limit=500")
    assert client.last_status == 200, listed
    return listed["members"]


@pytest.mark.parametrize(
    ("file_name", "make", "header_row"),
    [
        ("党员名册.csv", lambda: roll_csv("utf-8-sig"), 1),
        ("党员名册.xlsx", roll_xlsx, 2),
        ("党员名册（GBK）.csv", lambda: roll_csv("gb18030"), 1),
    ],
)
async def test_import_writes_good_rows_and_reports_bad_ones(api, file_name, make, header_row):
    admin = await api.as_user("town_a_admin")
    a1, a2 = api.orgs["branch_a1"].id, api.orgs["branch_a2"].id
    await admin.call(
        "POST",
        "/api/members",
        {"branch_id": a1, "name": "吴十", "gender": "male", "birth_date": "1950-01-01"},
    )
    assert admin.last_status == 201
    started = await upload(admin, make(), file_name)
    assert admin.last_status == 202, started
    assert started["total_rows"] == len(ROLL)

    progress = await finished(admin, started["job_id"])
    assert progress["state"] == "done"
    assert progress["processed"] == progress["total"] == len(ROLL)
    assert (progress["created"], progress["duplicates"], progress["rejected"]) == (3, 2, 5)
    reported = {(e["row"], e["column"]): e["message"] for e in progress["errors"]}
    expected = {
        (header_row + i, column): fragment.format(first=header_row + 1)
        for i, (_, column, fragment) in enumerate(ROLL, start=1)
        if fragment is not None
    }
    assert set(reported) == set(expected), progress["errors"]
    for place, fragment in expected.items():
        assert fragment in reported[place], (place, reported[place])

    # someone else cannot watch the job
    county = await api.as_user("county_admin")
    await county.call("GET", f"/api/imports/{started['job_id']}")
    assert county.last_status == 404

    by_name = {m["name"]: m for m in await members_of(admin, api.orgs["town_a"].id)}
    assert sorted(by_name) == sorted(["张三", "李梅", "王五", "吴十"])
    zhang, li, wang = by_name["张三"], by_name["李梅"], by_name["王五"]
    assert (zhang["branch_id"], zhang["gender"], zhang["birth_date"]) == (a1, "male", "1956-03-08")
    assert zhang["joined_date"] == "1980-07-01" and zhang["education"] == "初中"
    assert zhang["posts"] == ["secretary", "village_cadre"] and zhang["phone"] == "13800138000"
    assert (li["branch_id"], li["status"], li["joined_date"]) == (a1, "probationary", "1990-07-01")
    assert (li["exempt_reason"], li["exempt_note"]) == ("working_away", "在广东务工")
    assert (wang["branch_id"], wang["status"], wang["birth_date"]) == (a2, "formal", "1970-01-01")
    assert wang["posts"] == ["committee_member", "group_leader"]
    assert wang["phone"] == "0571-88886666"
    assert await members_of(county, api.orgs["town_b"].id) == []

    audit = await county.call("GET", "/api/audit?action=members_imported")
    [entry] = audit["entries"]
    assert entry["actor"].endswith("town_a_admin")
    assert entry["detail"]["file"] == file_name
    assert (entry["detail"]["created"], entry["detail"]["errors"]) == (3, 5)


async def test_town_admin_cannot_import_into_another_town(api):
    admin = await api.as_user("town_a_admin")
    data = "姓名,性别,所在支部\n甲,男,BB1\n乙,女,B1村党支部\n".encode()
    started = await upload(admin, data, "b.csv")
    progress = await finished(admin, started["job_id"])
    assert progress["state"] == "done" and progress["created"] == 0
    reported = [(e["row"], e["column"]) for e in progress["errors"]]
    assert reported == [(2, "所在支部"), (3, "所在支部")]
    county = await api.as_user("county_admin")
    assert await members_of(county, api.orgs["town_b"].id) == []
    # a role without members:write is refused outright
    viewer = await api.as_user("a1_viewer")
    await upload(viewer, data, "b.csv")
    assert viewer.last_status == 403


async def test_upload_limits_and_file_types(api):
    admin = await api.as_user("town_a_admin")
    big = b"\xef\xbb\xbf" + ("姓名,性别,所在支部\n" + "张三,男,BA1\n" * 700_000).encode()
    assert len(big) > 10 * 1024 * 1024
    refused = await upload(admin, big, "big.csv")
    assert admin.last_status == 413 and refused["error"]["code"] == "file_too_large"
    assert "10 MB" in refused["error"]["message"]

    # past the limit by a little: refused while reading the part, not from its length
    just_over = b"\xef\xbb\xbf" + "姓名,性别,所在支部\n".encode()
    just_over += b"x" * (10 * 1024 * 1024 + 1 - len(just_over))
    refused = await upload(admin, just_over, "big.csv")
    assert admin.last_status == 413 and refused["error"]["code"] == "file_too_large"

    png = b"\x89PNG\r\n\x1a\n" + bytes(100)
    refused = await upload(admin, png, "photo.png")
    assert admin.last_status == 415 and refused["error"]["code"] == "unsupported_file_type"
    refused = await upload(admin, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600), "old.xls")
    assert admin.last_status == 415 and ".xlsx" in refused["error"]["message"]
    refused = await admin.call("POST", "/api/members/import", {"file": "not multipart"})
    assert admin.last_status == 415

    # an .xlsx is a zip: one whose parts unpack past 100 MB is refused from its directory
    # (openpyxl would read the shared strings whole); this one is 150 KiB
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("xl/sharedStrings.xml", "w") as strings:
            for _ in range(101):
                strings.write(b" " * 2**20)
    refused = await upload(admin, bomb.getvalue(), "roll.xlsx")
    assert admin.last_status == 413, refused
    assert "解压后超过 100 MB" in refused["error"]["message"]

    refused = await upload(admin, "编号,名字\n1,张三\n".encode(), "x.csv")
    assert admin.last_status == 422 and "表头" in refused["error"]["message"]
    refused = await upload(admin, "姓名,性别,所在支部\n".encode(), "x.csv")
    assert admin.last_status == 422 and "没有党员数据" in refused["error"]["message"]
    refused = await upload(admin, "姓名,性别\n张三,男\n".encode(), "x.csv")
    assert admin.last_status == 422 and "所在支部" in refused["error"]["message"]


async def test_a_failed_chunk_is_rolled_back_and_reported(api, monkeypatch):
    from sqlalchemy.exc import SQLAlchemyError

    from web.api import members_io

    async def write_then_fail(session, rows):
        written = await original(session, rows)
        if any(r.values["name"] == "坏" for r in rows):
            raise SQLAlchemyError("the disk is full")  # after the insert: it must roll back
        return written

    original = members_io.write_chunk
    monkeypatch.setattr(members_io, "write_chunk", write_then_fail)
    monkeypatch.setattr(members_io, "CHUNK_ROWS", 2)
    admin = await api.as_user("a1_secretary")
    data = "姓名,性别,所在支部\n甲,男,BA1\n乙,女,BA1\n丙,男,BA1\n坏,女,BA1\n丁,男,BA1\n"
    started = await upload(admin, data.encode(), "chunks.csv")
    progress = await finished(admin, started["job_id"])
    assert progress["state"] == "done" and progress["created"] == 3
    assert [(e["row"], e["column"]) for e in progress["errors"]] == [(4, None), (5, None)]
    assert "保存失败" in progress["errors"][0]["message"]
    names = {m["name"] for m in await members_of(admin, api.orgs["branch_a1"].id)}
    assert names == {"甲", "乙", "丁"}


async def test_english_headers_and_tabs(api):
    admin = await api.as_user("a1_secretary")
    data = "name\tgender\tbirth_date\tbranch\tposts\nTom\tmale\t1980-1-2\tBA1\tsecretary\n"
    started = await upload(admin, data.encode(), "roll.txt")
    progress = await finished(admin, started["job_id"])
    assert progress["created"] == 1, progress
    [tom] = await members_of(admin, api.orgs["branch_a1"].id)
    assert (tom["birth_date"], tom["posts"]) == ("1980-01-02", ["secretary"])


async def test_member_export_round_trips_through_import(api):
    admin = await api.as_user("town_a_admin")
    a1, a2 = api.orgs["branch_a1"].id, api.orgs["branch_a2"].id
    people = [
        {"name": "李建国", "gender": "male", "birth_date": "1950-07-01", "education": "小学",
         "joined_date": "1975-06-30", "posts": ["secretary", "village_cadre"],
         "phone": "13900001111"},
        {"name": "王芳", "gender": "female", "birth_date": "1988-12-31", "status": "probationary",
         "exempt_reason": "abroad", "exempt_note": "在日本务工"},
        {"name": "陈老", "gender": "male", "exempt_reason": "elderly_infirm"},
    ]  # fmt: skip
    for person in people:
        await admin.call("POST", "/api/members", {"branch_id": a1, **person})
        assert admin.last_status == 201

    status, body, headers = await download(admin, f"/api/members/export.xlsx?org={a1}")
    assert status == 200 and headers["Content-Type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    disposition = headers["Content-Disposition"]
    assert "filename*=UTF-8''" in disposition
    assert unquote(disposition.split("filename*=UTF-8''")[1]).startswith("党员名册-A1村党支部-")

    workbook = openpyxl.load_workbook(io.BytesIO(body))
    sheet = workbook.active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[1][: len(HEADERS)] == tuple(HEADERS)
    assert [r[0] for r in rows[2:]] == sorted(p["name"] for p in people)
    wang = next(r for r in rows if r[0] == "王芳")
    assert wang[1:3] == ("女", dt.datetime(1988, 12, 31))
    assert wang[5:9] == ("预备党员", "BA1", None, "出国（境）")

    # the same people, moved to the empty branch A2
    branch_column = HEADERS.index("所在支部") + 1
    for row in range(3, sheet.max_row + 1):
        sheet.cell(row, branch_column).value = "BA2"
    started = await upload(admin, xlsx_bytes(workbook), "export.xlsx")
    assert admin.last_status == 202, started
    progress = await finished(admin, started["job_id"])
    assert (progress["created"], progress["errors"]) == (len(people), [])

    def fields(members: list[dict]) -> list[dict]:
        return sorted(
            ({k: v for k, v in m.items() if k not in ("id", "branch_id")} for m in members),
            key=lambda m: m["name"],
        )

    assert fields(await members_of(admin, a2)) == fields(await members_of(admin, a1))

    # importing the unchanged export again only finds duplicates
    started = await upload(admin, body, "again.xlsx")
    progress = await finished(admin, started["job_id"])
    assert (progress["created"], progress["duplicates"]) == (0, len(people))


async def test_export_permissions(api):
    viewer = await api.as_user("a1_viewer")
    status, _, _ = await download(viewer, "/api/members/export.xlsx")
    assert status == 403
    town_b = await api.as_user("town_b_admin")
    status, _, _ = await download(town_b, f"/api/members/export.xlsx?org={api.orgs['town_a'].id}")
    assert status == 404
    status, _, _ = await download(town_b, f"/api/meetings/export.xlsx?org={api.orgs['town_a'].id}")
    assert status == 404


async def test_meeting_exports(api):
    secretary = await api.as_user("a1_secretary")
    a1 = api.orgs["branch_a1"].id
    present = await secretary.call(
        "POST", "/api/members", {"branch_id": a1, "name": "王芳", "gender": "female"}
    )
    away = await secretary.call(
        "POST", "/api/members", {"branch_id": a1, "name": "李强", "gender": "male"}
    )
    meeting = await secretary.call(
        "POST",
        "/api/meetings",
        {
            "type": "theme_day",
            "topic": "学习党的二十届四中全会精神",
            "organiser_id": a1,
            "host": "王芳",
            "recorder": "李强",
            "venue": "村委会议室",
            "scheduled_start": "2026-11-20T09:00:00+08:00",
            "scheduled_end": "2026-11-20T11:00:00+08:00",
            "content": "传达学习全会精神",
            "resolutions": "组织党员分组学习",
            "attendance": [
                {"member_id": present["id"], "status": "present"},
                {"member_id": away["id"], "status": "absent", "absence_reason": "外出务工"},
            ],
            "guests": [{"name": "驻村第一书记", "note": "列席"}],
        },
    )
    assert secretary.last_status == 201, meeting

    status, body, headers = await download(secretary, "/api/meetings/export.xlsx")
    assert status == 200, body
    assert "filename*=UTF-8''" in headers["Content-Disposition"]
    rows = list(openpyxl.load_workbook(io.BytesIO(body)).active.iter_rows(values_only=True))
    header = rows[1]
    record = dict(zip(header, rows[2], strict=True))
    assert record["类型"] == "主题党日" and record["主题"] == "学习党的二十届四中全会精神"
    assert record["组织单位"] == "A1村党支部" and record["地点"] == "村委会议室"
    assert record["时间"] == dt.datetime(2026, 11, 20, 9, 0)
    assert (record["主持人"], record["记录人"]) == ("王芳", "李强")
    assert (record["实到"], record["缺席"]) == (1, 1)
    assert (record["内容"], record["决议"]) == ("传达学习全会精神", "组织党员分组学习")

    status, body, headers = await download(secretary, f"/api/meetings/{meeting['id']}/export.xlsx")
    assert status == 200, body
    assert "%E4%BC%9A%E8%AE%AE%E8%AE%B0%E5%BD%95" in headers["Content-Disposition"]  # 会议记录
    rows = list(openpyxl.load_workbook(io.BytesIO(body)).active.iter_rows(values_only=True))
    labels = {r[0]: r[1] for r in rows if r and r[0] is not None}
    assert labels["会议类型"] == "主题党日" and labels["主题"] == "学习党的二十届四中全会精神"
    assert labels["时间"] == dt.datetime(2026, 11, 20, 9, 0)
    assert labels["实到人数"] == 1 and labels["缺席人数"] == 1

    def section(title: str) -> list[tuple]:
        start = next(i for i, r in enumerate(rows) if r[0] and str(r[0]).startswith(title))
        found = []
        for r in rows[start + 2 :]:
            if r[0] is None:
                break
            found.append(r)
        return found

    assert [r[1:3] for r in section("出席人员")] == [("王芳", "A1村党支部")]
    assert [r[1:4] for r in section("缺席人员")] == [("李强", "A1村党支部", "外出务工")]
    assert [r[1:3] for r in section("列席人员")] == [("驻村第一书记", "列席")]

    outsider = await api.as_user("town_b_admin")
    status, _, _ = await download(outsider, f"/api/meetings/{meeting['id']}/export.xlsx")
    assert status == 404
    county = await api.as_user("county_admin")
    audit = await county.call("GET", "/api/audit?action=meeting_exported")
    assert [e["target_id"] for e in audit["entries"]] == [str(meeting["id"])]
