"""Every role x every endpoint x (own subtree, other subtree): allowed exactly when the role
grants the capability and the target lies in the caller's subtree; nothing leaks otherwise."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from db.access import ROLE_CAPABILITIES, Capability
from db.models import Role
from web.api.terminals import PAIRING_LIMIT_KEY

from apiclient import pair_terminal

C = Capability
counter = itertools.count(1)

# who is tested, and which village is inside / outside their subtree
PRINCIPALS = {
    "county_admin": (Role.COUNTY_ADMIN, "a1", None),
    "town_a_admin": (Role.TOWN_ADMIN, "a1", "b1"),
    "town_b_admin": (Role.TOWN_ADMIN, "b1", "a1"),
    "a1_secretary": (Role.VILLAGE_SECRETARY, "a1", "a2"),
    "town_a_supervisor": (Role.SUPERVISOR, "a2", "b1"),
    "a1_viewer": (Role.VIEWER, "a1", "a2"),
    "terminal_a1": (Role.TERMINAL, "a1", "b1"),
}


@dataclass
class Target:
    village: int
    branch: int
    member: int
    member_name: str
    meeting: int
    terminal: int
    pairing_code: str


async def make_target(api, admin, village_key: str) -> Target:
    """Fresh objects in one village, made by the county admin (state-changing cases use them)."""
    village = api.orgs[f"village_{village_key}"].id
    branch = api.orgs[f"branch_{village_key}"].id
    name = f"测试党员{next(counter)}"
    member = await admin.call(
        "POST", "/api/members", {"branch_id": branch, "name": name, "gender": "male"}
    )
    meeting = await admin.call(
        "POST",
        "/api/meetings",
        {"type": "party_lecture", "topic": f"党课{next(counter)}", "organiser_id": branch},
    )
    terminal_id = await pair_terminal(api, admin, village, f"电视{next(counter)}")
    pairing = await api.anonymous.call("POST", "/api/terminals/pairing")
    return Target(
        village, branch, member["id"], name, meeting["id"], terminal_id[0], pairing["code"]
    )


Case = Callable[[object, Target], Awaitable[dict]]

CASES: list[tuple[str, Capability, Case]] = [
    ("read org", C.TREE_READ, lambda c, t: c.call("GET", f"/api/org/{t.village}")),
    (
        "add org",
        C.TREE_WRITE,
        lambda c, t: c.call(
            "POST",
            "/api/org",
            {
                "parent_id": t.village,
                "code": f"X{next(counter)}",
                "name": "新支部",
                "kind": "branch",
            },
        ),
    ),
    (
        "rename org",
        C.TREE_WRITE,
        lambda c, t: c.call("PATCH", f"/api/org/{t.village}", {"name": "改名村"}),
    ),
    (
        "add account",
        C.ACCOUNTS_WRITE,
        lambda c, t: c.call(
            "POST",
            "/api/accounts",
            {
                "username": f"user{next(counter)}",
                "display_name": "新用户",
                "password": "a long enough password",
                "role": "viewer",
                "org_id": t.village,
            },
        ),
    ),
    ("list members", C.MEMBERS_READ, lambda c, t: c.call("GET", f"/api/members?org={t.village}")),
    ("read member", C.MEMBERS_READ, lambda c, t: c.call("GET", f"/api/members/{t.member}")),
    (
        "add member",
        C.MEMBERS_WRITE,
        lambda c, t: c.call(
            "POST", "/api/members", {"branch_id": t.branch, "name": "新党员", "gender": "female"}
        ),
    ),
    (
        "change member",
        C.MEMBERS_WRITE,
        lambda c, t: c.call("PATCH", f"/api/members/{t.member}", {"education": "高中"}),
    ),
    ("delete member", C.MEMBERS_WRITE, lambda c, t: c.call("DELETE", f"/api/members/{t.member}")),
    (
        "list terminals",
        C.TERMINALS_READ,
        lambda c, t: c.call("GET", f"/api/terminals?org={t.village}"),
    ),
    (
        "bind terminal",
        C.TERMINALS_WRITE,
        lambda c, t: c.call(
            "POST",
            "/api/terminals/bind",
            {"code": t.pairing_code, "org_id": t.village, "name": f"电视{t.pairing_code}"},
        ),
    ),
    (
        "revoke terminal",
        C.TERMINALS_WRITE,
        lambda c, t: c.call("POST", f"/api/terminals/{t.terminal}/revoke"),
    ),
    (
        "list meetings",
        C.MEETINGS_READ,
        lambda c, t: c.call("GET", f"/api/meetings?org={t.village}"),
    ),
    ("read meeting", C.MEETINGS_READ, lambda c, t: c.call("GET", f"/api/meetings/{t.meeting}")),
    (
        "add meeting",
        C.MEETINGS_WRITE,
        lambda c, t: c.call(
            "POST",
            "/api/meetings",
            {"type": "theme_day", "topic": "主题党日", "organiser_id": t.branch},
        ),
    ),
    (
        "change meeting",
        C.MEETINGS_WRITE,
        lambda c, t: c.call("PATCH", f"/api/meetings/{t.meeting}", {"venue": "村委会"}),
    ),
    (
        "read sign-in sheet",
        C.MEETINGS_READ,
        lambda c, t: c.call("GET", f"/api/meetings/{t.meeting}/signins"),
    ),
    (
        "sign in by hand",
        C.MEETINGS_WRITE,
        lambda c, t: c.call("POST", f"/api/meetings/{t.meeting}/signins", {"member_id": t.member}),
    ),
    # biometric data: enrolment photos are listed only for faces:read, in the subtree
    (
        "list face photos",
        C.FACES_READ,
        lambda c, t: c.call("GET", f"/api/members/{t.member}/faces"),
    ),
]


async def test_access_matrix(api):
    api.app[PAIRING_LIMIT_KEY].limit = 100_000  # this test pairs hundreds of terminals
    admin = await api.as_user("county_admin")
    clients = {}
    for name, (role, _, _) in PRINCIPALS.items():
        if role is Role.TERMINAL:
            _, token = await pair_terminal(api, admin, api.orgs["village_a1"].id, f"{name}的电视")
            clients[name] = type(api.anonymous)(api.base_url, api.anonymous.session, token=token)
        else:
            clients[name] = await api.as_user(name)
    checked = 0
    failures = []
    for name, (role, own, other) in PRINCIPALS.items():
        client = clients[name]
        for place, village in (("own", own), ("other", other)):
            if village is None:
                continue
            for label, capability, call in CASES:
                target = await make_target(api, admin, village)
                reply = await call(client, target)
                status = client.last_status
                granted = capability in ROLE_CAPABILITIES[role]
                allowed = granted and place == "own"
                checked += 1
                if allowed and not 200 <= status < 300:
                    failures.append(f"{name} {label} {place}: refused {status} {reply}")
                if not allowed:
                    expected = 403 if not granted else 404
                    if status != expected:
                        failures.append(f"{name} {label} {place}: {status}, expected {expected}")
                    if target.member_name in str(reply) or "测试党员" in str(reply):
                        failures.append(f"{name} {label} {place}: leaked a member's name")
    assert not failures, "\n".join(failures)
    assert checked == len(CASES) * 13

    # the audit log is for county admins and supervisors, each within their own subtree
    for name in PRINCIPALS:
        reply = await clients[name].call("GET", "/api/audit")
        role = PRINCIPALS[name][0]
        if C.AUDIT_READ in ROLE_CAPABILITIES[role]:
            assert clients[name].last_status == 200
        else:
            assert clients[name].last_status == 403, (name, reply)
    supervisor_view = await clients["town_a_supervisor"].call("GET", "/api/audit?limit=1000")
    town_a = api.orgs["town_a"].path
    assert supervisor_view["entries"]
    assert all(e["org_path"].startswith(town_a) for e in supervisor_view["entries"])
    refusals = await admin.call("GET", "/api/audit?action=access_denied&limit=1000")
    assert len(refusals["entries"]) >= 1, "refusals by role are audited"


async def test_anonymous_callers_get_401_everywhere(api):
    api.app[PAIRING_LIMIT_KEY].limit = 100_000
    target = await make_target(api, await api.as_user("county_admin"), "a1")
    for label, _, call in CASES:
        reply = await call(api.anonymous, target)
        assert api.anonymous.last_status == 401, label
        assert reply["error"]["code"] == "missing_token"
