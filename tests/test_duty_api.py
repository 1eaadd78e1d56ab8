"""Duty attendance through the running server, on SQLite and PostgreSQL, with the real
face models and a real RTSP camera (GStreamer's server): the town sets the hours and the
roster and adds the village's IP camera (its password never shown); an enrolled cadre in
front of it is on duty with the evidence pictures; the cadre who does not come is late
and the village secretary's open event stream says so at once; the secretary explains,
the town excuses (the day corrected, the machine's record kept, both audited); the
month's summary and its XLSX; who may do what."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import json
import os
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from faces import Appearance, enrolment_photo, jpeg, sample_faces, write_meeting_video
from openpyxl import load_workbook
from test_duty_rtsp import RtspServer, gst_rtsp_available

from apiclient import add_member, upload

pytestmark = [
    pytest.mark.server_config(
        recognition_enabled=True, recognition_workers=1, duty_enabled=True, duty_tick_s=1.0
    ),
    pytest.mark.skipif(
        os.environ.get("CI") != "true" and not gst_rtsp_available(),
        reason="GStreamer's RTSP server: sh docker/debian-packages.sh test",
    ),
]
ZONE = ZoneInfo("Asia/Shanghai")


async def events_of(api, client, into: list[dict], connected: asyncio.Event) -> None:
    """The duty event stream as the phone page reads it (server-sent events)."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            api.base_url + "/api/duty/events",
            headers={"Authorization": f"Bearer {client.token}"},
        ) as response,
    ):
        assert response.status == 200
        async for line in response.content:
            if line.startswith(b"event: ready"):
                connected.set()
            if line.startswith(b"data: ") and (event := json.loads(line[6:])):
                into.append(event)


async def until(check, timeout: float, what: str):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = await check()
        if found:
            return found
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.3)


async def test_a_village_duty_day_through_the_server(api, tmp_path, unused_tcp_port):
    faces = sample_faces()
    county = await api.as_user("county_admin")
    town = await api.as_user("town_a_admin")
    other_town = await api.as_user("town_b_admin")
    secretary = await api.as_user("a1_secretary")
    viewer = await api.as_user("a1_viewer")
    village, branch = api.orgs["village_a1"], api.orgs["branch_a1"]
    events: list[dict] = []
    connected = asyncio.Event()
    listening = asyncio.create_task(events_of(api, secretary, events, connected))
    await asyncio.wait_for(connected.wait(), 10)
    wang = await add_member(secretary, branch.id, "王主任")
    li = await add_member(secretary, branch.id, "李委员")
    enrolled = await upload(secretary, wang, {"wang.jpg": jpeg(enrolment_photo(faces["tom"]))})
    assert enrolled["enrolled"], enrolled

    # the hours: from this minute, every day, no grace (the no-show is late at once)
    now = dt.datetime.now(ZONE)
    start = min(now.replace(second=0, microsecond=0), now.replace(hour=23, minute=0))
    hours = {
        "org_id": api.orgs["county"].id,
        "weekdays": list(range(7)),
        "start": f"{start:%H:%M}",
        "end": "23:59",
        "grace_min": 0,
        "absent_after_min": 600,
    }
    await town.call("PUT", "/api/duty/hours", hours, expect=404)  # the county's, not a town's
    await county.call("PUT", "/api/duty/hours", hours, expect=200)
    bad = await county.call("PUT", "/api/duty/hours", {**hours, "end": "06:00", "start": "07:00"})
    assert county.last_status == 422 and bad["error"]["code"] == "bad_hours"

    for member_id, post in ((wang, "村委会主任"), (li, "村委委员")):
        body = {"village_id": village.id, "member_id": member_id, "post": post}
        await secretary.call("POST", "/api/duty/roster", body, expect=403)
        await other_town.call("POST", "/api/duty/roster", body, expect=404)
        await town.call("POST", "/api/duty/roster", body, expect=201)
    twice = await county.call(
        "POST",
        "/api/duty/roster",
        {"village_id": api.orgs["village_b1"].id, "member_id": li, "post": "村委委员"},
    )
    assert county.last_status == 422 and twice["error"]["code"] == "cadre_in_other_village"
    roster = await secretary.call("GET", "/api/duty/roster", expect=200)
    assert {c["name"] for c in roster["cadres"]} == {"王主任", "李委员"}
    await viewer.call("GET", "/api/duty/roster", expect=403)

    video = write_meeting_video(
        tmp_path / "duty.mp4",
        [Appearance(faces["tom"], 1.0, 90.0, 220, 180, 150)],
        duration_s=90,
        gop=15,
    )
    server = RtspServer(unused_tcp_port, video, "duty", "cam-pw-123")
    server.start()
    try:
        url = f"rtsp://duty:cam-pw-123@127.0.0.1:{unused_tcp_port}/duty"
        camera = await town.call(
            "POST",
            "/api/duty/cameras",
            {"village_id": village.id, "kind": "rtsp", "name": "值班室", "rtsp_url": url},
            expect=201,
        )
        assert "cam-pw-123" not in json.dumps(camera)
        assert camera["camera"]["rtsp_url"].startswith("rtsp://duty:***@")
        bad_url = await town.call(
            "POST",
            "/api/duty/cameras",
            {"village_id": village.id, "kind": "rtsp", "name": "x", "rtsp_url": "http://cam"},
        )
        assert town.last_status == 422 and bad_url["error"]["code"] == "bad_rtsp_url"

        async def wang_on_duty():
            days = await secretary.call("GET", "/api/duty/days", expect=200)
            mine = {d["name"]: d for d in days["days"]}
            return mine if mine.get("王主任", {}).get("arrived_at") else None

        days = await until(wang_on_duty, 60, "the cadre clocked in from the IP camera")
        arrived = dt.datetime.fromisoformat(days["王主任"]["arrived_at"])
        assert arrived.astimezone(ZONE) >= now - dt.timedelta(seconds=5)
        expected = (
            "on_time"
            if arrived.astimezone(ZONE).replace(tzinfo=None) <= start.replace(tzinfo=None)
            else "late"
        )
        assert days["王主任"]["status"] == expected
        assert days["李委员"]["status"] == "late" and days["李委员"]["arrived_at"] is None
        cameras = await secretary.call("GET", "/api/duty/cameras", expect=200)
        assert cameras["cameras"][0]["online"] is True
        assert cameras["cameras"][0]["last_recognition_at"]
        assert "cam-pw-123" not in json.dumps(cameras)
    finally:
        server.stop()

    # the secretary's page heard of Li's late arrival as it was raised
    await until(
        lambda: asyncio.sleep(0, [e for e in events if e["member"]["name"] == "李委员"]),
        10,
        "the late alert on the secretary's event stream",
    )
    listening.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await listening
    late = next(e for e in events if e["event"] == "duty.late")
    assert late["village"]["name"] == "A1村" and "org_path" in late

    alerts = await town.call("GET", "/api/duty/alerts", expect=200)
    li_alert = next(a for a in alerts["alerts"] if a["name"] == "李委员")
    assert not (await other_town.call("GET", "/api/duty/alerts", expect=200))["alerts"]
    path = f"/api/duty/alerts/{li_alert['id']}"
    await viewer.call("POST", path + "/explanation", {"text": "x"}, expect=403)
    await secretary.call("POST", path + "/explanation", {"text": "去镇里送材料"}, expect=200)
    await secretary.call("POST", path + "/decision", {"excused": True, "reason": "x"}, expect=403)
    decided = await town.call(
        "POST", path + "/decision", {"excused": True, "reason": "镇里通知送材料"}, expect=200
    )
    assert decided["alert"]["status"] == "excused"
    again = await town.call("POST", path + "/decision", {"excused": False, "reason": "x"})
    assert town.last_status == 409 and again["error"]["code"] == "already_decided"
    days = {d["name"]: d for d in (await town.call("GET", "/api/duty/days"))["days"]}
    assert days["李委员"]["status"] == "leave" and days["李委员"]["machine_status"] == "late"
    assert days["李委员"]["corrected"] is True
    log = await county.call("GET", "/api/audit?action=duty.day_corrected", expect=200)
    assert any(e["detail"]["machine"] == "late" for e in log["entries"])

    summary = (await town.call("GET", "/api/duty/summary?period=month", expect=200))["summary"]
    lines = {line["name"]: line for line in summary["cadres"]}
    assert lines["李委员"]["leave"] == 1 and lines["李委员"]["days_due"] == 0
    assert lines["王主任"]["days_due"] == 1 and lines["王主任"]["on_duty"] == 1
    xlsx = await town.call("GET", "/api/duty/summary.xlsx?period=month", expect=200)
    sheet = load_workbook(io.BytesIO(xlsx["_body"]))["村干部"]
    assert {row[3] for row in sheet.iter_rows(min_row=3, values_only=True)} == {"王主任", "李委员"}
    await viewer.call("GET", "/api/duty/summary", expect=403)
    # reports of closed periods: each unit sees its own and those below, never a sibling's
    reports = (await other_town.call("GET", "/api/duty/reports", expect=200))["reports"]
    assert all(r["org"]["name"] == "B镇" for r in reports)
    await viewer.call("GET", "/api/duty/reports", expect=403)
    for report in (await county.call("GET", "/api/duty/reports", expect=200))["reports"][:1]:
        await county.call("GET", f"/api/duty/reports/{report['id']}.xlsx", expect=200)
        if report["org"]["name"] == "A镇":
            await other_town.call("GET", f"/api/duty/reports/{report['id']}.xlsx", expect=404)
