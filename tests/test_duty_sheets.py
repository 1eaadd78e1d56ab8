"""Duty rosters, leave and the calendar as spreadsheets, through the running server on
SQLite and PostgreSQL: an import is all rows or none, each refused row named by its row
number; an export imports again unchanged; only the town's and county's staff write,
each inside their part of the tree."""

from __future__ import annotations

import datetime as dt
import io

import aiohttp
import pytest
from openpyxl import Workbook, load_workbook

from apiclient import add_member

pytestmark = pytest.mark.server_config(duty_enabled=True, duty_tick_s=3600.0)


def xlsx(rows: list[list[object]], title: str | None = "说明：每行一名干部") -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    if title:
        sheet.append([title])  # a title row above the headers, as towns' sheets have
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


async def send(client, path: str, data: bytes, name: str = "名单.xlsx") -> dict:
    form = aiohttp.FormData()
    form.add_field("file", data, filename=name)
    return await client.call("POST", path, data=form)


def rows_of(body: bytes) -> list[tuple]:
    sheet = load_workbook(io.BytesIO(body)).worksheets[0]
    return [row for row in sheet.iter_rows(min_row=3, values_only=True)]


async def test_a_roster_sheet_imports_whole_or_not_at_all_and_exports_again(api):
    county = await api.as_user("county_admin")
    town = await api.as_user("town_a_admin")
    secretary = await api.as_user("a1_secretary")
    a1, a2 = api.orgs["village_a1"], api.orgs["village_a2"]
    wang = await add_member(secretary, api.orgs["branch_a1"].id, "王主任")
    await add_member(secretary, api.orgs["branch_a1"].id, "李委员")
    zhao = await add_member(county, api.orgs["branch_a2"].id, "赵书记")
    # a first secretary from elsewhere: a member of village b1, named by their number
    outsider = await add_member(county, api.orgs["branch_b1"].id, "钱第一书记")
    headers = ["乡镇", "村（社区）", "姓名", "党员编号", "职务", "第一书记", "驻村天数（天/月）"]
    town_name = api.orgs["town_a"].name

    # one bad row refuses the file: nothing is written, every bad row is named
    refused = await send(
        county,
        f"/api/duty/roster/import?org_id={api.orgs['county'].id}",
        xlsx(
            [
                headers,
                [town_name, a1.name, "王主任", None, "村委会主任", "否", None],
                [None, a1.name, "张三", None, "村委委员", None, None],  # no such member
                [None, "没有的村", "李委员", None, "村委委员", None, None],
                [None, a2.name, "赵书记", None, "", None, None],  # no post
                [None, a1.name, "王主任", None, "会计", None, None],  # twice
                [None, a1.name, "钱第一书记", outsider, "第一书记", "是", "40"],
            ]
        ),
    )
    assert county.last_status == 422 and refused["error"]["code"] == "import_rejected"
    assert set(refused["error"]["fields"]) == {f"第 {n} 行" for n in (4, 5, 6, 7, 8)}
    assert "张三" in refused["error"]["fields"]["第 4 行"]
    assert "1 到 31" in refused["error"]["fields"]["第 8 行"]
    roster = await county.call("GET", "/api/duty/roster", expect=200)
    assert roster["cadres"] == []

    # the town imports its own villages' cadres; the first secretary comes by number
    good = [
        headers,
        [town_name, a1.name, "王主任", None, "村委会主任", "否", None],
        [None, a1.name, "李委员", None, "村委委员", None, None],
        [None, a2.name, "赵书记", zhao, "党支部书记", None, None],
        [None, a2.name, "钱第一书记", outsider, "第一书记", "是", 20],
    ]
    path = f"/api/duty/roster/import?org_id={api.orgs['town_a'].id}"
    # town A's staff may not put village b1's member on a roster
    refused = await send(town, path, xlsx(good))
    assert town.last_status == 422 and "钱第一书记" not in str(roster)
    assert "管辖范围" in refused["error"]["fields"]["第 6 行"]
    done = await send(county, path, xlsx(good))
    assert county.last_status == 200 and done == {"imported": 4, "villages": 2}
    cadres = {c["name"]: c for c in (await town.call("GET", "/api/duty/roster"))["cadres"]}
    assert cadres["王主任"]["village_id"] == a1.id and cadres["王主任"]["member_id"] == wang
    assert cadres["钱第一书记"]["first_secretary"] and cadres["钱第一书记"]["required_days"] == 20
    assert cadres["钱第一书记"]["village_id"] == a2.id

    # the export has the import's headers and imports again to the same roster
    exported = await town.call("GET", f"/api/duty/roster.xlsx?org_id={api.orgs['town_a'].id}")
    assert town.last_status == 200
    sheet = load_workbook(io.BytesIO(exported["_body"])).worksheets[0]
    assert [c.value for c in sheet[2]] == headers
    assert len(rows_of(exported["_body"])) == 4
    again = await send(county, path, exported["_body"], "导出.xlsx")
    assert county.last_status == 200 and again["imported"] == 4
    assert (await town.call("GET", "/api/duty/roster"))["cadres"] == list(cadres.values())

    # a village secretary reads but does not import; garbage is a clear refusal
    await send(secretary, f"/api/duty/roster/import?org_id={a1.id}", xlsx(good))
    assert secretary.last_status == 403
    refused = await send(county, path, b"PK\x03\x04 not really a zip", "x.xlsx")
    assert county.last_status == 422 and refused["error"]["code"] == "unsupported_file"
    refused = await send(county, path, xlsx([["甲", "乙"], [1, 2]]))
    assert county.last_status == 422 and "村（社区）" in refused["error"]["message"]


async def test_leave_and_the_calendar_by_sheet(api):
    county = await api.as_user("county_admin")
    town = await api.as_user("town_a_admin")
    a1 = api.orgs["village_a1"]
    wang = await add_member(county, api.orgs["branch_a1"].id, "王主任")
    body = {"village_id": a1.id, "member_id": wang, "post": "村委会主任"}
    await town.call("POST", "/api/duty/roster", body, expect=201)
    headers = ["村（社区）", "姓名", "党员编号", "类型", "开始日期", "结束日期", "事由", "批准人"]
    path = f"/api/duty/leave/import?org_id={api.orgs['town_a'].id}"
    refused = await send(
        town,
        path,
        xlsx(
            [
                headers,
                [a1.name, "王主任", None, "请假", "2026-12-14", "2026-12-15", "看病", "张镇长"],
                [a1.name, "王主任", None, "外出公干", "2026/12/15", "2026/12/16", "培训", "张"],
                [a1.name, "王主任", None, "旷工", "2026-12-20", "2026-12-20", "无", "无"],
                [a1.name, "李四", None, "请假", "2026-12-20", "2026-12-20", "事", "张"],
            ],
            title=None,
        ),
    )
    assert town.last_status == 422
    fields = refused["error"]["fields"]
    assert set(fields) == {"第 3 行", "第 4 行", "第 5 行"} and "重叠" in fields["第 3 行"]
    rows = [
        headers,
        [a1.name, "王主任", None, "请假", "2026-12-14", "2026-12-15", "看病", "张镇长"],
        [None, "王主任", wang, "外出公干", dt.date(2026, 12, 17), "2026年12月17日", "培训", "张"],
    ]
    done = await send(town, path, xlsx(rows, title=None))
    assert town.last_status == 200 and done == {"imported": 2}
    exported = await town.call("GET", f"/api/duty/leave.xlsx?org_id={api.orgs['town_a'].id}")
    assert [r[1:6] for r in rows_of(exported["_body"])] == [
        ("王主任", wang, "请假", dt.datetime(2026, 12, 14), dt.datetime(2026, 12, 15)),
        ("王主任", wang, "外出公干", dt.datetime(2026, 12, 17), dt.datetime(2026, 12, 17)),
    ]

    # the calendar is the county's: a town may not set it (nor see that it could)
    calendar = xlsx(
        [["日期", "类型", "名称"], ["2026-12-31", "节假日", "元旦"], ["2027-01-04", "调休上班", ""]]
    )
    await send(town, "/api/duty/calendar/import", calendar)
    assert town.last_status == 404
    done = await send(county, "/api/duty/calendar/import", calendar)
    assert county.last_status == 200 and done == {"imported": 2}
    exported = await town.call("GET", "/api/duty/calendar.xlsx")
    assert rows_of(exported["_body"]) == [
        (dt.datetime(2026, 12, 31), "节假日", "元旦"),
        (dt.datetime(2027, 1, 4), "调休上班", None),
    ]
    # a duplicated date refuses the file; 取消 unmarks a date
    await send(
        county,
        "/api/duty/calendar/import",
        xlsx([["日期", "类型"], ["2026-12-31", "取消"], ["2026-12-31", "节假日"]]),
    )
    assert county.last_status == 422
    await send(
        county, "/api/duty/calendar/import", xlsx([["日期", "类型"], ["2026-12-31", "取消"]])
    )
    assert county.last_status == 200
    exported = await town.call("GET", "/api/duty/calendar.xlsx")
    assert [r[1] for r in rows_of(exported["_body"])] == ["调休上班"]
