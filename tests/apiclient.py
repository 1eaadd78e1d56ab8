"""A small org tree with one account per role, served by the real app, for API tests."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from db.accounts import hash_password
from db.database import Database
from db.models import OrgKind, OrgUnit, Role, StaffAccount
from db.tree import add_org

PASSWORD = "correct horse battery"

# town A holds villages A1, A2; town B holds B1. Each village has one branch.
ACCOUNTS = {
    "county_admin": (Role.COUNTY_ADMIN, "county"),
    "town_a_admin": (Role.TOWN_ADMIN, "town_a"),
    "town_b_admin": (Role.TOWN_ADMIN, "town_b"),
    "a1_secretary": (Role.VILLAGE_SECRETARY, "village_a1"),
    "town_a_supervisor": (Role.SUPERVISOR, "town_a"),
    "a1_viewer": (Role.VIEWER, "village_a1"),
}


async def seed_small_county(database: Database) -> dict[str, OrgUnit]:
    async with database.session() as session:
        orgs: dict[str, OrgUnit] = {}
        orgs["county"] = await add_org(
            session, parent=None, code="C", name="示范县", kind=OrgKind.COUNTY
        )
        for town in ("a", "b"):
            orgs[f"town_{town}"] = await add_org(
                session,
                parent=orgs["county"],
                code=f"T{town.upper()}",
                name=f"{town.upper()}镇",
                kind=OrgKind.TOWN,
            )
        for village, town in (("a1", "a"), ("a2", "a"), ("b1", "b")):
            orgs[f"village_{village}"] = await add_org(
                session,
                parent=orgs[f"town_{town}"],
                code=f"V{village.upper()}",
                name=f"{village.upper()}村",
                kind=OrgKind.VILLAGE,
            )
            orgs[f"branch_{village}"] = await add_org(
                session,
                parent=orgs[f"village_{village}"],
                code=f"B{village.upper()}",
                name=f"{village.upper()}村党支部",
                kind=OrgKind.BRANCH,
            )
        password_hash = hash_password(PASSWORD)
        for username, (role, org_key) in ACCOUNTS.items():
            session.add(
                StaffAccount(
                    username=username,
                    display_name=username,
                    password_hash=password_hash,
                    role=role,
                    org_id=orgs[org_key].id,
                )
            )
        await session.commit()
        return orgs


@dataclass
class ApiClient:
    base_url: str
    session: aiohttp.ClientSession
    token: str | None = None
    last_status: int = 0
    headers: dict[str, str] = field(default_factory=dict)

    async def call(
        self, method: str, path: str, json: object = None, expect: int | None = None, **kwargs
    ) -> dict:
        """The reply's JSON; `expect` asserts the status (else read `last_status`)."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        headers.update(kwargs.pop("headers", {}))
        async with self.session.request(
            method, self.base_url + path, json=json, headers=headers, **kwargs
        ) as response:
            self.last_status = response.status
            if response.content_type == "application/json":
                body = await response.json()
            else:
                body = {"_body": await response.read(), "_type": response.content_type}
        assert expect is None or response.status == expect, (response.status, body)
        return body

    async def login(self, username: str, password: str = PASSWORD) -> ApiClient:
        reply = await self.call("POST", "/api/login", {"username": username, "password": password})
        assert self.last_status == 200, reply
        return ApiClient(self.base_url, self.session, token=reply["token"])


async def start_app(app: web.Application, port: int) -> web.AppRunner:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def pair_terminal(
    api, admin, org_id: int, name: str = "电视", kind: str = "tv"
) -> tuple[int, str]:
    pairing = await api.anonymous.call("POST", "/api/terminals/pairing")
    bound = await admin.call(
        "POST",
        "/api/terminals/bind",
        {"code": pairing["code"], "org_id": org_id, "name": name, "kind": kind},
    )
    claimed = await api.anonymous.call(
        "POST",
        "/api/terminals/pairing/claim",
        {"code": pairing["code"], "secret": pairing["secret"]},
    )
    assert claimed["status"] == "paired", claimed
    return bound["id"], claimed["token"]


class Lobby:
    """A TV's idle socket, as terminal.js holds it."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: str) -> None:
        self.session = session
        self.url = base_url.replace("http://", "ws://") + "/ws/terminal"
        self.token = token
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def connect(self) -> dict:
        self.ws = await self.session.ws_connect(self.url)
        await self.ws.send_str(json.dumps({"type": "hello", "token": self.token}))
        return await self.receive()

    async def receive(self, timeout: float = 5.0) -> dict:
        assert self.ws is not None
        msg = await asyncio.wait_for(self.ws.receive(), timeout)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        return json.loads(msg.data)

    async def silent(self, seconds: float = 0.5) -> bool:
        try:
            await self.receive(seconds)
        except TimeoutError:
            return True
        return False


# -- face sign-in ------------------------------------------------------------------------
async def upload(client, member_id: int, photos: dict[str, bytes]) -> dict:
    form = aiohttp.FormData()
    for name, data in photos.items():
        form.add_field("photo", data, filename=name, content_type="image/jpeg")
    return await client.call("POST", f"/api/members/{member_id}/faces", data=form)


async def add_member(client, branch_id: int, name: str) -> int:
    member = await client.call(
        "POST", "/api/members", {"branch_id": branch_id, "name": name, "gender": "male"}
    )
    return member["id"]


async def wait_for_sheet(client, meeting_id: int, done, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    sheet = {}
    while time.monotonic() < deadline:
        sheet = await client.call("GET", f"/api/meetings/{meeting_id}/signins")
        if done(sheet):
            return sheet
        await asyncio.sleep(0.3)
    raise AssertionError(f"sheet never got there: {sheet}")


def signed(sheet: dict) -> dict[str, dict]:
    return {row["name"]: row["signin"] for row in sheet["members"] if row["signin"]}


async def tv_films_meeting(api, secretary, tv_token: str, meeting_id: int, camera, done) -> dict:
    """A paired village TV waits in its lobby, the secretary starts the meeting, the TV
    joins when invited (the town's standing room invites it first) and publishes `camera`;
    the meeting's sign-in sheet once `done(sheet)`, the TV gone again."""
    from signaling.client import SignalingClient

    async with aiohttp.ClientSession() as http:
        lobby = Lobby(http, api.base_url, tv_token)
        await lobby.connect()
        await secretary.call("POST", f"/api/meetings/{meeting_id}/start", expect=200)
        invite = await lobby.receive()
        while invite.get("meeting_id") != meeting_id:
            invite = await lobby.receive()
        tv = SignalingClient(api.base_url, invite["token"])
        await tv.connect()
        try:
            await tv.publish([camera])
            return await wait_for_sheet(secretary, meeting_id, done)
        finally:
            await tv.close()
            await lobby.ws.close()
