"""Sign-in, the tree, members and meetings through the HTTP API, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from apiclient import PASSWORD


async def test_login_me_and_tree(api):
    wrong = await api.anonymous.call(
        "POST", "/api/login", {"username": "county_admin", "password": "nope"}
    )
    assert api.anonymous.last_status == 401 and wrong["error"]["code"] == "bad_credentials"
    admin = await api.as_user("town_a_admin")
    me = await admin.call("GET", "/api/me")
    assert me["role"] == "town_admin" and me["org"]["name"] == "A镇"
    tree = await admin.call("GET", "/api/org")
    assert [c["name"] for c in tree["children"]] == ["A1村", "A2村"]
    for branch, name in (("branch_a1", "甲"), ("branch_a1", "乙"), ("branch_a2", "丙")):
        await admin.call(
            "POST",
            "/api/members",
            {"branch_id": api.orgs[branch].id, "name": name, "gender": "male"},
        )
    tree = await admin.call("GET", "/api/org")
    assert tree["counts"]["members"] == 3
    assert [c["counts"]["members"] for c in tree["children"]] == [2, 1]
    village = await admin.call("GET", f"/api/org/{api.orgs['village_a1'].id}")
    assert [a["name"] for a in village["ancestors"]] == ["A镇"]  # nothing above the caller


async def test_member_life_cycle_and_field_errors(api):
    secretary = await api.as_user("a1_secretary")
    branch_id = api.orgs["branch_a1"].id
    bad = await secretary.call(
        "POST",
        "/api/members",
        {"branch_id": branch_id, "name": " ", "gender": "robot", "birth_date": "2999-01-01"},
    )
    assert secretary.last_status == 422
    assert set(bad["error"]["fields"]) == {"name", "gender", "birth_date"}
    created = await secretary.call(
        "POST",
        "/api/members",
        {
            "branch_id": branch_id,
            "name": "李建国",
            "gender": "male",
            "birth_date": "1950-07-01",
            "status": "formal",
            "posts": ["secretary"],
            "exempt_reason": None,
        },
    )
    assert secretary.last_status == 201, created
    found = await secretary.call("GET", "/api/members?q=建国")
    assert [m["name"] for m in found["members"]] == ["李建国"] and found["total"] == 1
    await secretary.call(
        "PATCH",
        f"/api/members/{created['id']}",
        {"exempt_reason": "working_away", "exempt_note": "在外务工，已请假"},
    )
    again = await secretary.call("GET", f"/api/members/{created['id']}")
    assert again["exempt_reason"] == "working_away"
    # a change must pass the same rules as a new member
    bad = await secretary.call(
        "PATCH",
        f"/api/members/{created['id']}",
        {"name": "  ", "birth_date": "2999-01-01", "gender": None},
    )
    assert secretary.last_status == 422
    assert set(bad["error"]["fields"]) == {"name", "birth_date", "gender"}
    await secretary.call("DELETE", f"/api/members/{created['id']}")
    assert (await secretary.call("GET", f"/api/members/{created['id']}"))["error"][
        "code"
    ] == "not_found"


async def test_meeting_record(api):
    secretary = await api.as_user("a1_secretary")
    member = await secretary.call(
        "POST",
        "/api/members",
        {"branch_id": api.orgs["branch_a1"].id, "name": "王芳", "gender": "female"},
    )
    meeting = await secretary.call(
        "POST",
        "/api/meetings",
        {
            "type": "theme_day",
            "topic": "学习党的二十届四中全会精神",
            "organiser_id": api.orgs["branch_a1"].id,
            "scheduled_start": "2026-11-20T09:00:00+08:00",
            "scheduled_end": "2026-11-20T08:00:00+08:00",
        },
    )
    assert secretary.last_status == 422 and "scheduled_end" in meeting["error"]["message"]
    meeting = await secretary.call(
        "POST",
        "/api/meetings",
        {
            "type": "theme_day",
            "topic": "学习党的二十届四中全会精神",
            "organiser_id": api.orgs["branch_a1"].id,
            "host": "王芳",
            "venue": "村委会议室",
            "attendance": [{"member_id": member["id"], "status": "present"}],
            "guests": [{"name": "驻村第一书记"}],
        },
    )
    assert secretary.last_status == 201, meeting
    assert meeting["actual_count"] == 1 and meeting["guests"][0]["name"] == "驻村第一书记"
    assert meeting["expected_count"] == 1  # the branch's one member, not excused
    twice = await secretary.call(
        "PATCH",
        f"/api/meetings/{meeting['id']}",
        {
            "attendance": [
                {"member_id": member["id"], "status": "present"},
                {"member_id": member["id"], "status": "absent"},
            ]
        },
    )
    assert secretary.last_status == 422 and "attendance" in twice["error"]["fields"]
    listed = await secretary.call("GET", "/api/meetings")
    assert [m["id"] for m in listed["meetings"]] == [meeting["id"]]


@pytest.mark.parametrize(
    ("creator", "role", "allowed"),
    [
        ("town_a_admin", "supervisor", False),  # would watch hidden and read the audit log
        ("town_a_admin", "county_admin", False),
        ("town_a_admin", "town_admin", True),
        ("town_a_admin", "village_secretary", True),
        ("town_a_admin", "viewer", True),
        ("county_admin", "supervisor", True),
        ("county_admin", "terminal", False),  # terminals are paired, not created
    ],
)
async def test_nobody_grants_a_role_with_more_than_they_hold(api, creator, role, allowed):
    client = await api.as_user(creator)
    reply = await client.call(
        "POST",
        "/api/accounts",
        {
            "username": f"new_{role}",
            "display_name": "新账号",
            "password": "a long enough password",
            "role": role,
            "org_id": api.orgs["village_a1"].id,
        },
    )
    assert (client.last_status == 201) is allowed, reply
    if not allowed:
        assert client.last_status == 403 and reply["error"]["code"] == "forbidden"


async def test_healthz_tells_anyone_only_ok_and_the_room_detail_is_for_the_county(api):
    """A public /healthz listed every room id and its peer count (an active emergency's
    among them): now ok/not-ok and the loop stall; the detail needs a county admin."""
    async with aiohttp.ClientSession() as http:
        async with http.get(api.base_url + "/healthz") as response:
            assert response.status == 200
            assert set(await response.json()) == {"status", "loop_stall_ms"}
    county = await api.as_user("county_admin")
    status = await county.call("GET", "/api/status", expect=200)
    assert "town-a-meeting" in status["rooms"]
    town = await api.as_user("town_a_admin")
    await town.call("GET", "/api/status")
    assert town.last_status == 403
    await api.anonymous.call("GET", "/api/status")
    assert api.anonymous.last_status == 401


async def test_a_cookie_alone_changes_nothing_from_another_sites_page(api):
    """A form on another site posted text/plain with the console's cookie and created an
    org unit: a cookie-authenticated change must come from our own pages, as JSON."""
    # unsafe: keep cookies for an IP address (the server is at 127.0.0.1)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(
            api.base_url + "/api/login", json={"username": "county_admin", "password": PASSWORD}
        ) as response:
            assert response.status == 200
        body = {
            "parent_id": api.orgs["town_a"].id,
            "name": "恶意村",
            "code": "EVIL",
            "kind": "village",
        }
        evil = {"Origin": "https://evil.example"}
        async with http.post(api.base_url + "/api/org", json=body, headers=evil) as response:
            assert response.status == 403
            assert (await response.json())["error"]["code"] == "cross_site"
        async with http.post(api.base_url + "/api/org", json=body) as response:
            assert response.status == 403  # no Origin or Referer at all: not our page
        own = {"Origin": api.base_url, "Content-Type": "text/plain"}
        async with http.post(
            api.base_url + "/api/org", data=json.dumps(body), headers=own
        ) as response:
            assert response.status == 415
        async with http.post(
            api.base_url + "/api/org", json=body, headers={"Origin": api.base_url}
        ) as response:
            assert response.status == 201, await response.text()
    # code holding a bearer token is not a browser's ambient credential: no Origin needed
    county = await api.as_user("county_admin")
    await county.call("GET", "/api/me", expect=200)


async def test_wrong_passwords_lock_the_account_for_a_while(api):
    """60 wrong passwords in a row were 60 plain 401s: now the account locks after five
    (the right password then waits too), with an audit entry; other accounts sign in."""
    for _ in range(5):
        await api.anonymous.call(
            "POST", "/api/login", {"username": "town_a_admin", "password": "guess"}
        )
        assert api.anonymous.last_status == 401
    locked = await api.anonymous.call(
        "POST", "/api/login", {"username": "town_a_admin", "password": PASSWORD}
    )
    assert api.anonymous.last_status == 429 and locked["error"]["code"] == "too_many_attempts"
    assert "15" in locked["error"]["message"]
    county = await api.as_user("county_admin")  # another account from the same address
    entries = await county.call("GET", "/api/audit?action=login_locked", expect=200)
    assert [e["target_id"] for e in entries["entries"]] == ["town_a_admin"]


def test_the_client_is_the_first_untrusted_hop_and_only_a_trusted_peer_says_so():
    from lighthouse.proxies import TrustedProxies, parse_networks

    proxies = TrustedProxies(parse_networks(["10.0.0.5", "172.16.0.0/12"]))
    # straight from a client: its headers are its own word, ignored
    assert proxies.client_address("203.0.113.9", ["1.2.3.4"]) == "203.0.113.9"
    # through our proxy: the address it saw
    assert proxies.client_address("10.0.0.5", ["203.0.113.9"]) == "203.0.113.9"
    # a spoofed entry left of the real one is not believed; trusted hops are walked past
    assert proxies.client_address("10.0.0.5", ["6.6.6.6, 203.0.113.9, 172.16.4.4"]) == (
        "203.0.113.9"
    )
    assert proxies.client_address("10.0.0.5", ["6.6.6.6", "203.0.113.9"]) == "203.0.113.9"
    # garbage stops the walk at the nearest hop; no header: the proxy itself
    assert proxies.client_address("10.0.0.5", ["junk, 172.16.9.9"]) == "172.16.9.9"
    assert proxies.client_address("10.0.0.5", []) == "10.0.0.5"
    assert proxies.client_address("::ffff:10.0.0.5", ["203.0.113.9"]) == "203.0.113.9"


async def _fail_logins(api, count: int, forwarded_for: str, first: int = 0) -> None:
    for n in range(first, first + count):  # each a different account: the address's limit
        await api.anonymous.call(
            "POST",
            "/api/login",
            {"username": f"nobody{n}", "password": "guess"},
            headers={"X-Forwarded-For": forwarded_for},
        )
        assert api.anonymous.last_status == 401


@pytest.mark.server_config(trusted_proxies=("127.0.0.1",))
async def test_behind_a_trusted_proxy_each_village_has_its_own_login_budget(api):
    """Behind the county's TLS proxy every request came from the proxy's address: one
    village's guessing locked everybody out. The proxy's X-Forwarded-For now names the
    client, for the login limit as for the audit log."""
    await _fail_logins(api, 20, "203.0.113.5")
    locked = await api.anonymous.call(
        "POST",
        "/api/login",
        {"username": "town_a_admin", "password": PASSWORD},
        headers={"X-Forwarded-For": "203.0.113.5"},
    )
    assert api.anonymous.last_status == 429 and locked["error"]["code"] == "too_many_attempts"
    await api.anonymous.call(
        "POST",
        "/api/login",
        {"username": "town_a_admin", "password": PASSWORD},
        headers={"X-Forwarded-For": "203.0.113.6"},
    )
    assert api.anonymous.last_status == 200
    county = await api.as_user("county_admin")
    entries = await county.call("GET", "/api/audit?action=login", expect=200)
    assert "203.0.113.6" in {e["remote_addr"] for e in entries["entries"]}


async def test_without_a_trusted_proxy_a_forwarded_header_changes_nothing(api):
    """A client cannot pick its own address to escape the per-address limit."""
    for n in range(20):
        await _fail_logins(api, 1, f"198.51.100.{n}", first=n)
    await api.anonymous.call(
        "POST",
        "/api/login",
        {"username": "town_a_admin", "password": PASSWORD},
        headers={"X-Forwarded-For": "198.51.100.99"},
    )
    assert api.anonymous.last_status == 429


async def test_the_access_log_names_the_client_behind_a_trusted_proxy_and_no_query(caplog):
    """Behind the county's proxy the access log showed the proxy for everybody; and it
    never writes a query string (older links carried tokens there)."""
    import logging

    from aiohttp import web

    from lighthouse.access_log import PathOnlyAccessLogger
    from lighthouse.proxies import TrustedProxies, parse_networks

    from conftest import free_port

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    proxies = TrustedProxies(parse_networks(["127.0.0.1"]))
    app = web.Application(middlewares=[proxies.middleware])
    app.router.add_get("/join", hello)
    runner = web.AppRunner(app, access_log_class=PathOnlyAccessLogger)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        with caplog.at_level(logging.INFO, logger="aiohttp.access"):
            async with aiohttp.ClientSession() as session:
                async with session.get(
                    f"http://127.0.0.1:{port}/join?token=secret-token",
                    headers={"X-Forwarded-For": "203.0.113.7"},
                ) as response:
                    assert response.status == 200
            for _ in range(50):  # the line is written after the response
                if any(r.name == "aiohttp.access" for r in caplog.records):
                    break
                await asyncio.sleep(0.02)
    finally:
        await runner.cleanup()
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert len(lines) == 1 and lines[0].startswith('203.0.113.7 "GET /join" 200'), lines
    assert "secret-token" not in lines[0]
