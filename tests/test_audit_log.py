"""The audit log as the county reads it: filtered by actor, action, unit and day (in the
county's time zone), paged, exported to Excel (itself audited), and a console page for the
roles that may read it."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from openpyxl import load_workbook

from db.models import AuditEntry
from lighthouse.keys import DATABASE_KEY

from apiclient import seed_small_county
from browser import launched_chromium, signed_in_page, wait_until


async def add_entries(database, orgs) -> None:
    """Three entries: A1 yesterday late evening (county time), A2 and B1 today."""
    county_tz = dt.timezone(dt.timedelta(hours=8))
    async with database.session() as session:
        for actor, action, org, at in (
            ("account:2 town_a_admin", "member_created", "village_a1", (2026, 12, 1, 23, 30)),
            ("account:2 town_a_admin", "terminal_paired", "village_a2", (2026, 12, 2, 0, 30)),
            ("account:3 town_b_admin", "member_created", "village_b1", (2026, 12, 2, 9, 0)),
        ):
            session.add(
                AuditEntry(
                    actor=actor,
                    actor_role="town_admin",
                    action=action,
                    org_path=orgs[org].path,
                    at=dt.datetime(*at, tzinfo=county_tz).astimezone(dt.UTC),
                    detail={"name": "王秀英"},
                )
            )
        await session.commit()


async def test_the_audit_log_filters_pages_and_exports(api):
    await add_entries(api.app[DATABASE_KEY], api.orgs)
    county = await api.as_user("county_admin")

    async def actions(**query) -> list[str]:
        path = "/api/audit?" + "&".join(f"{k}={v}" for k, v in query.items())
        return [e["action"] for e in (await county.call("GET", path, expect=200))["entries"]]

    assert await actions(actor="town_a", action="member_created") == ["member_created"]
    assert await actions(org=api.orgs["town_b"].id, action="member_created") == ["member_created"]
    # days are the county's: 00:30 on 2 December is the 2nd, though UTC says the 1st
    assert await actions(**{"from": "2026-12-02", "to": "2026-12-02", "actor": "town"}) == [
        "member_created",
        "terminal_paired",
    ]
    assert await actions(**{"to": "2026-12-01", "actor": "town"}) == ["member_created"]
    listed = (await county.call("GET", "/api/audit?actor=town&limit=2", expect=200))["entries"]
    older = await county.call("GET", f"/api/audit?actor=town&before={listed[-1]['id']}")
    assert len(listed) == 2 and len(older["entries"]) == 1
    assert listed[0]["org_name"] == "B1村"
    bad = await county.call("GET", "/api/audit?from=yesterday")
    assert county.last_status == 422 and bad["error"]["fields"] == {"from": "a date"}

    exported = await county.call("GET", "/api/audit/export.xlsx?actor=town_a", expect=200)
    sheet = load_workbook(io.BytesIO(exported["_body"])).active
    cells = [[c.value for c in row] for row in sheet.iter_rows()]
    text = "\n".join(str(v) for row in cells for v in row if v is not None)
    assert "terminal_paired" in text and "A2村" in text and "town_b_admin" not in text
    assert await actions(action="audit_exported") == ["audit_exported"]

    # a town office may not read it; nobody reads outside their subtree
    town = await api.as_user("town_a_admin")
    await town.call("GET", "/api/audit")
    assert town.last_status == 403
    supervisor = await api.as_user("town_a_supervisor")
    entries = (await supervisor.call("GET", "/api/audit?actor=town", expect=200))["entries"]
    seeded = {e["org_name"] for e in entries if e["detail"] == {"name": "王秀英"}}
    assert seeded == {"A1村", "A2村"}  # not B1村: outside the supervisor's town
    await supervisor.call("GET", f"/api/audit?org={api.orgs['town_b'].id}")
    assert supervisor.last_status in (403, 404)


@pytest.mark.browser
async def test_the_console_has_an_audit_page_for_those_who_may_read_it(server):
    orgs = await seed_small_county(server.app[DATABASE_KEY])
    await add_entries(server.app[DATABASE_KEY], orgs)
    async with launched_chromium(["--headless", "--no-sandbox", "--disable-gpu"]) as browser:
        context, page = await signed_in_page(
            browser, server.base_url, "/console/audit", "county_admin"
        )
        await wait_until(page, "window.lighthouseConsole.ready")
        assert await page.is_visible("[data-nav-link='audit']")
        await page.fill("#audit-actor", "town_a")
        await page.select_option("#audit-action", "terminal_paired")
        await page.click("#audit-form button[type=submit]")
        await wait_until(page, "document.querySelectorAll('#audit-entries tbody tr').length === 1")
        cells = await page.eval_on_selector_all(
            "#audit-entries tbody td", "cells => cells.map((c) => c.textContent)"
        )
        assert "绑定电视" in cells and "A2村" in cells
        assert "2026-12-02 00:30" in cells[0]  # shown in the county's time zone
        href = await page.get_attribute("#audit-export", "href")
        assert "actor=town_a" in href and "action=terminal_paired" in href
        await context.close()

        # a town office's console offers no audit page
        context, page = await signed_in_page(
            browser, server.base_url, "/console/members", "town_a_admin"
        )
        await wait_until(page, "window.lighthouseConsole.ready")
        assert await page.is_hidden("[data-nav-link='audit']")
        assert [m for m in page.messages if "pageerror" in m] == []
        await context.close()
