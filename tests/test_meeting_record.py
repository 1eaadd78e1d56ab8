"""The meeting record counts the venues invited, not the organiser's whole subtree: 应到 is
the non-exempt members of the invited venues' branches, and the sign-in sheet the phone
fills the record from lists them by venue (a party group's members under their village)."""

from __future__ import annotations

from db.models import OrgKind
from db.tree import add_org
from lighthouse.keys import DATABASE_KEY


async def test_a_town_meeting_with_one_invited_village_expects_that_villages_members(api):
    town = await api.as_user("town_a_admin")
    async with api.app[DATABASE_KEY].session() as session:
        branch = await session.get(type(api.orgs["branch_a1"]), api.orgs["branch_a1"].id)
        group = await add_org(
            session, parent=branch, code="GA1", name="第一党小组", kind=OrgKind.GROUP
        )
        await session.commit()
        group_id = group.id

    async def member(branch_id: int, name: str, **extra) -> int:
        body = {"branch_id": branch_id, "name": name, "gender": "female", **extra}
        return (await town.call("POST", "/api/members", body, expect=201))["id"]

    in_a1 = [
        await member(api.orgs["branch_a1"].id, "王秀英"),
        await member(group_id, "李桂兰"),  # in a party group of A1's branch
    ]
    await member(api.orgs["branch_a1"].id, "赵大爷", exempt_reason="elderly_infirm")
    for i in range(5):  # the rest of the town, not invited
        await member(api.orgs["branch_a2"].id, f"A2党员{i}")

    meeting = await town.call(
        "POST",
        "/api/meetings",
        {
            "type": "party_lecture",
            "topic": "镇党课（前进村）",
            "organiser_id": api.orgs["town_a"].id,
            "site_ids": [api.orgs["village_a1"].id],
        },
        expect=201,
    )
    assert meeting["expected_count"] == 2  # not 8 (the town) nor 3 (the excused one)

    sheet = await town.call("GET", f"/api/meetings/{meeting['id']}/signins", expect=200)
    assert sheet["expected"] == 2
    rows = {m["name"]: m for m in sheet["members"]}
    assert set(rows) == {"王秀英", "李桂兰"}
    assert rows["李桂兰"]["venue"] == "A1村" and rows["李桂兰"]["group"] == "第一党小组"
    assert rows["李桂兰"]["branch"] == "A1村党支部"

    # the record saved from that list: 2 expected, 1 present, 1 absent (with its reason)
    await town.call("POST", f"/api/meetings/{meeting['id']}/signins", {"member_id": in_a1[0]})
    saved = await town.call(
        "PATCH",
        f"/api/meetings/{meeting['id']}",
        {
            "attendance": [
                {"member_id": in_a1[0], "status": "present"},
                {"member_id": in_a1[1], "status": "absent", "absence_reason": "外出务工"},
            ]
        },
        expect=200,
    )
    assert (saved["expected_count"], saved["actual_count"], saved["absent_count"]) == (2, 1, 1)
    sheet = await town.call("GET", f"/api/meetings/{meeting['id']}/signins", expect=200)
    rows = {m["name"]: m for m in sheet["members"]}
    assert rows["李桂兰"]["attendance"] == {"status": "absent", "absence_reason": "外出务工"}
    assert rows["王秀英"]["signin"]["method"] == "manual"

    # inviting a second village moves 应到 with it
    changed = await town.call(
        "PATCH",
        f"/api/meetings/{meeting['id']}",
        {"site_ids": [api.orgs["village_a1"].id, api.orgs["village_a2"].id]},
        expect=200,
    )
    assert changed["expected_count"] == 7
