"""API and meeting tokens: expired, tampered, revoked, wrong scope, wrong kind — all refused."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json

import aiohttp
from test_access_matrix import pair_terminal

from db.accounts import TokenService
from db.models import OrgUnit, Role
from lighthouse.keys import DATABASE_KEY
from signaling.tokens import TokenIssuer

from apiclient import PASSWORD, ApiClient
from conftest import TEST_SECRET


def with_token(api, token: str) -> ApiClient:
    return ApiClient(api.base_url, api.anonymous.session, token=token)


async def test_expired_token_is_refused(api):
    database = api.app[DATABASE_KEY]
    async with database.session() as session:
        org = await session.get(OrgUnit, api.orgs["town_a"].id)
        credential = await TokenService(TEST_SECRET).issue(
            session,
            kind="session",
            subject="account:2",
            name="x",
            role=Role.TOWN_ADMIN,
            org=org,
            ttl=dt.timedelta(seconds=-5),
            account_id=2,
        )
        await session.commit()
    client = with_token(api, credential.token)
    reply = await client.call("GET", "/api/me")
    assert (client.last_status, reply["error"]["code"]) == (401, "token_expired")


async def test_tampered_token_is_refused(api):
    admin = await api.as_user("town_a_admin")
    header, payload, signature = admin.token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(
        role="county_admin", org=api.orgs["county"].id, org_path=api.orgs["county"].path
    )  # promote itself to the county
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    client = with_token(api, f"{header}.{forged}.{signature}")
    reply = await client.call("GET", f"/api/org/{api.orgs['town_b'].id}")
    assert (client.last_status, reply["error"]["code"]) == (401, "invalid_token")


async def test_token_signed_with_another_secret_or_not_issued_here(api):
    other = TokenIssuer("some-other-secret-that-is-long-enough-000000")
    client = with_token(api, other.mint("account:1", "x", "demo", "main"))
    assert (await client.call("GET", "/api/me"))["error"]["code"] == "invalid_token"
    # a meeting token, even from this server, is not an API token
    meeting_token = TokenIssuer(TEST_SECRET).mint("account:1", "x", "town-a-meeting", "main")
    client = with_token(api, meeting_token)
    assert (await client.call("GET", "/api/me"))["error"]["code"] == "invalid_token"


async def test_logout_revokes_the_session(api):
    admin = await api.as_user("town_a_admin")
    assert (await admin.call("GET", "/api/me"))["role"] == "town_admin"
    await admin.call("POST", "/api/logout")
    reply = await admin.call("GET", "/api/me")
    assert (admin.last_status, reply["error"]["code"]) == (401, "token_revoked")


async def test_meeting_tokens_follow_the_org_tree(api):
    town_a = await api.as_user("town_a_admin")
    own = await town_a.call("POST", "/api/meeting-token", {"room_id": "town-a-meeting"})
    assert town_a.last_status == 200 and own["role"] == "main"
    other = await town_a.call("POST", "/api/meeting-token", {"room_id": "town-b-meeting"})
    assert (town_a.last_status, other["error"]["code"]) == (404, "no_meeting")
    county = await api.as_user("county_admin")  # above both towns: may join either
    await county.call("POST", "/api/meeting-token", {"room_id": "town-b-meeting"})
    assert county.last_status == 200
    secretary = await api.as_user("a1_secretary")  # inside town A: its room is the default
    mine = await secretary.call("POST", "/api/meeting-token", {})
    assert (mine["room_id"], mine["role"]) == ("town-a-meeting", "viewer")


async def test_revoked_terminal_can_neither_call_the_api_nor_join(api):
    admin = await api.as_user("county_admin")
    terminal_id, token = await pair_terminal(api, admin, api.orgs["village_a1"].id)
    terminal = with_token(api, token)
    granted = await terminal.call("POST", "/api/meeting-token", {})
    assert granted["room_id"] == "town-a-meeting" and granted["role"] == "terminal"

    async def join(meeting_token: str) -> dict:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(api.base_url.replace("http", "ws") + "/ws") as ws:
                await ws.send_json({"type": "join", "id": 1, "token": meeting_token})
                return await ws.receive_json(timeout=10)

    assert (await join(granted["token"]))["type"] == "joined"
    # the join, and the leave as the socket closed, reached the terminal's record
    for _ in range(30):
        listed = await admin.call("GET", f"/api/terminals?org={api.orgs['village_a1'].id}")
        record = next(t for t in listed["terminals"] if t["id"] == terminal_id)
        if record["last_seen_at"] is not None and record["online"] is False:
            break
        await asyncio.sleep(0.1)
    assert record["last_seen_at"] is not None and record["online"] is False
    await admin.call("POST", f"/api/terminals/{terminal_id}/revoke")
    reply = await terminal.call("POST", "/api/meeting-token", {})
    assert (terminal.last_status, reply["error"]["code"]) == (401, "token_revoked")
    refused = await join(granted["token"])  # the meeting token it got before is dead too
    assert (refused["type"], refused["code"]) == ("error", "invalid_token")


async def test_revoking_a_terminal_ends_its_meeting_at_once(api):
    admin = await api.as_user("county_admin")
    terminal_id, token = await pair_terminal(api, admin, api.orgs["village_a1"].id)
    granted = await with_token(api, token).call("POST", "/api/meeting-token", {})
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(api.base_url.replace("http", "ws") + "/ws") as ws:
            await ws.send_json({"type": "join", "id": 1, "token": granted["token"]})
            assert (await ws.receive_json(timeout=10))["type"] == "joined"
            await admin.call("POST", f"/api/terminals/{terminal_id}/revoke")
            kicked = await ws.receive_json(timeout=10)
            assert (kicked["type"], kicked["code"]) == ("error", "invalid_token")
            closing = await ws.receive(timeout=10)
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def test_failed_sign_ins_are_audited_under_the_account(api):
    await api.anonymous.call(
        "POST", "/api/login", {"username": "town_a_admin", "password": "guess"}
    )
    admin = await api.as_user("county_admin")
    entries = (await admin.call("GET", "/api/audit?action=login_failed"))["entries"]
    assert [e["target_id"] for e in entries] == ["town_a_admin"]
    assert entries[0]["org_path"] == api.orgs["town_a"].path


async def test_expired_pairings_are_forgotten(api):
    from sqlalchemy import select, update

    from db.accounts import PAIRING_TTL, start_pairing
    from db.models import Terminal, utcnow

    database = api.app[DATABASE_KEY]
    async with database.session() as session:
        old, _ = await start_pairing(session)
        await session.execute(
            update(Terminal)
            .where(Terminal.id == old.id)
            .values(pairing_expires_at=utcnow() - 2 * PAIRING_TTL)
        )
        await session.commit()
        old_code = old.pairing_code
        new, _ = await start_pairing(session)
        await session.commit()
        codes = (await session.execute(select(Terminal.pairing_code))).scalars().all()
    assert codes == [new.pairing_code] and old_code != new.pairing_code


async def test_joins_and_leaves_are_kept_for_the_timeline(api):
    from sqlalchemy import select

    from db.models import RoomEvent

    admin = await api.as_user("county_admin")
    _, token = await pair_terminal(api, admin, api.orgs["village_a1"].id)
    granted = await with_token(api, token).call("POST", "/api/meeting-token", {})
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(api.base_url.replace("http", "ws") + "/ws") as ws:
            await ws.send_json({"type": "join", "id": 1, "token": granted["token"]})
            assert (await ws.receive_json(timeout=10))["type"] == "joined"
    database = api.app[DATABASE_KEY]
    for _ in range(30):
        async with database.session() as db_session:
            events = (
                (await db_session.execute(select(RoomEvent).order_by(RoomEvent.id))).scalars().all()
            )
        if len(events) == 2:
            break
        await asyncio.sleep(0.1)
    assert [(e.room_id, e.kind, e.name) for e in events] == [
        ("town-a-meeting", "joined", "电视"),
        ("town-a-meeting", "left", "电视"),
    ]


NEW_SECRET = "a-new-secret-for-the-rotation-test-0123456789"


def test_a_rotation_accepts_the_older_key_until_it_is_removed():
    from signaling.tokens import SigningKeys, TokenError

    old = TokenIssuer(TEST_SECRET).mint("terminal:1", "电视", "h264room", "viewer")
    rotating = TokenIssuer(SigningKeys(NEW_SECRET, [TEST_SECRET]))
    assert rotating.verify(old).participant_id == "terminal:1"
    fresh = rotating.mint("terminal:1", "电视", "h264room", "viewer")
    assert TokenIssuer(NEW_SECRET).verify(fresh).participant_id == "terminal:1"  # new key only
    keys = SigningKeys(NEW_SECRET, [TEST_SECRET])
    assert keys.verify(old, ["sub"])[1] is True and keys.verify(fresh, ["sub"])[1] is False
    try:
        TokenIssuer(NEW_SECRET).verify(old)  # the old key removed: refused
    except TokenError as error:
        assert error.code == "invalid_token"
    else:
        raise AssertionError("a token signed with a removed key was accepted")


async def test_after_a_key_rotation_a_tv_re_keys_itself_and_nobody_re_pairs_it(api):
    """A restart on a new secret sent every TV back to pairing. With the old secret kept
    as a previous one, a TV's hello is accepted and answered with a token signed with the
    new key, which alone is enough once the old key is removed; revoking the TV revokes
    both."""
    import dataclasses

    from lighthouse.app import create_app
    from lighthouse.keys import CONFIG_KEY

    from apiclient import Lobby, start_app
    from conftest import free_port

    admin = await api.as_user("town_a_admin")
    terminal_id, old_token = await pair_terminal(api, admin, api.orgs["village_a1"].id)
    config = dataclasses.replace(
        api.app[CONFIG_KEY], secret=NEW_SECRET, previous_secrets=(TEST_SECRET,)
    )
    await api.runner.cleanup()  # the restart
    port = free_port()
    runner = await start_app(create_app(dataclasses.replace(config, port=port)), port)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            welcome = await Lobby(session, base, old_token).connect()
            assert welcome["type"] == "welcome" and welcome["terminal_id"] == terminal_id
            renewed = welcome["token"]
            again = await Lobby(session, base, renewed).connect()
            assert again["type"] == "welcome" and "token" not in again
    finally:
        await runner.cleanup()
    # the old key removed: the renewed token alone works, the old one no longer
    config = dataclasses.replace(config, previous_secrets=(), port=free_port())
    runner = await start_app(create_app(config), config.port)
    base = f"http://127.0.0.1:{config.port}"
    try:
        async with aiohttp.ClientSession() as session:
            assert (await Lobby(session, base, renewed).connect())["type"] == "welcome"
            refused = await Lobby(session, base, old_token).connect()
            assert refused["type"] == "error" and refused["code"] == "invalid_token"
            county = ApiClient(base, session)
            login = await county.call(
                "POST", "/api/login", {"username": "town_a_admin", "password": PASSWORD}
            )
            county.token = login["token"]
            await county.call("POST", f"/api/terminals/{terminal_id}/revoke")
            assert county.last_status == 200, county.last_status
            gone = await Lobby(session, base, renewed).connect()
            assert gone["type"] == "error" and gone["code"] == "invalid_token"
    finally:
        await runner.cleanup()
