"""Meetings started and ended through the API: rooms per meeting, TVs invited through their
idle lobby socket (auto-join), offline TVs reported, control over HTTP, all audited."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiortc import AudioStreamTrack

from lighthouse.keys import ROOMS_KEY
from signaling.client import SignalingClient

from apiclient import Lobby, pair_terminal


async def test_a_town_meeting_invites_its_villages_tvs_and_ends_them(api):
    town = await api.as_user("town_a_admin")
    county = await api.as_user("county_admin")
    a1, a2, b1 = (api.orgs[f"village_{v}"].id for v in ("a1", "a2", "b1"))
    tv_a1, token_a1 = await pair_terminal(api, county, a1, "A1村电视")
    tv_a2, token_a2 = await pair_terminal(api, county, a2, "A2村电视")
    _, token_b1 = await pair_terminal(api, county, b1, "B1村电视")

    async with aiohttp.ClientSession() as http:
        lobby_a1 = Lobby(http, api.base_url, token_a1)
        lobby_b1 = Lobby(http, api.base_url, token_b1)
        welcome = await lobby_a1.connect()
        assert welcome == {"type": "welcome", "terminal_id": tv_a1, "name": "A1村电视"}
        # no meeting yet: the TV is sent to the standing room of its town (the config's)
        standing = await lobby_a1.receive()
        assert (standing["meeting_id"], standing["room_id"]) == (None, "town-a-meeting")
        await lobby_b1.connect()
        assert (await lobby_b1.receive())["room_id"] == "town-b-meeting"
        # a bad token is refused with a reason
        intruder = Lobby(http, api.base_url, "not-a-token")
        assert (await intruder.connect())["code"] == "invalid_token"
        # a staff token is not a TV's
        staff = Lobby(http, api.base_url, town.token)
        assert (await staff.connect())["code"] == "invalid_token"

        meeting = await town.call(
            "POST",
            "/api/meetings",
            {
                "type": "town_work",
                "topic": "学习贯彻全会精神",
                "organiser_id": api.orgs["town_a"].id,
                "site_ids": [a1, a2],
            },
        )
        # town B's admin cannot start town A's meeting
        other = await api.as_user("town_b_admin")
        await other.call("POST", f"/api/meetings/{meeting['id']}/start", expect=404)

        started = await town.call("POST", f"/api/meetings/{meeting['id']}/start", expect=200)
        assert started["live"] and started["room_id"] == f"meeting-{meeting['id']}"
        assert started["meeting"]["status"] == "live"
        states = {v["terminal_id"]: v["state"] for v in started["venues"]}
        assert states == {tv_a1: "online", tv_a2: "offline"}  # B1 is not invited
        assert started["main_url"].startswith("/main#token=")

        invite = await lobby_a1.receive()
        assert invite["type"] == "meeting_started" and invite["meeting_id"] == meeting["id"]
        assert invite["topic"] == "学习贯彻全会精神"
        assert await lobby_b1.silent()

        # the TV auto-joins with the pushed token and publishes its camera
        tv = SignalingClient(api.base_url, invite["token"])
        await tv.connect()
        assert tv.joined["room"]["controlled"] is True
        await tv.publish([AudioStreamTrack()])
        # A2's TV comes online during the meeting: invited on connecting
        lobby_a2 = Lobby(http, api.base_url, token_a2)
        await lobby_a2.connect()
        late = await lobby_a2.receive()
        assert late["type"] == "meeting_started" and late["room_id"] == invite["room_id"]

        # the supervisors' overview names this meeting for its room, exactly
        overview = await county.call("GET", "/api/supervision/live", expect=200)
        (entry,) = [m for m in overview["meetings"] if m["room_id"] == invite["room_id"]]
        assert entry["meeting"]["id"] == meeting["id"]
        assert entry["venues"] == ["A1村电视"]

        live = await town.call("GET", f"/api/meetings/{meeting['id']}/live")
        states = {v["terminal_id"]: v["state"] for v in live["venues"]}
        assert states == {tv_a1: "in_meeting", tv_a2: "online"}
        (venue,) = [v for v in live["venues"] if v["terminal_id"] == tv_a1]

        # control over HTTP, as the phone does it
        state = await town.call(
            "POST", f"/api/meetings/{meeting['id']}/control", {"action": "mute_all"}
        )
        assert state["mute_all"] and state["muted"] == [venue["peer_id"]]
        state = await town.call(
            "POST",
            f"/api/meetings/{meeting['id']}/control",
            {"action": "roll_call", "peer_id": venue["peer_id"]},
        )
        assert state["floor"]["peer_id"] == venue["peer_id"] and state["spotlight"]
        assert state["muted"] == []
        bad = await town.call(
            "POST",
            f"/api/meetings/{meeting['id']}/control",
            {"action": "give_floor", "peer_id": "p-gone"},
            expect=404,
        )
        assert bad["error"]["code"] == "unknown_peer"
        await town.call(
            "POST", f"/api/meetings/{meeting['id']}/control", {"action": "dance"}, expect=422
        )

        ended = await town.call("POST", f"/api/meetings/{meeting['id']}/end")
        assert ended["status"] == "ended" and ended["actual_end"]
        assert (await lobby_a1.receive())["type"] == "meeting_ended"
        assert (await lobby_a2.receive())["type"] == "meeting_ended"
        assert (await tv.next_event("meeting_ended"))["meeting_id"] == meeting["id"]
        assert f"meeting-{meeting['id']}" not in api.app[ROOMS_KEY]
        await town.call("POST", f"/api/meetings/{meeting['id']}/end", expect=409)
        again = await town.call("POST", f"/api/meetings/{meeting['id']}/start", expect=409)
        assert again["error"]["code"] == "meeting_over"
        await tv.close()

        audit = await county.call("GET", "/api/audit?action=meeting_control")
        assert [e["detail"]["action"] for e in audit["entries"]][::-1][:2] == [
            "mute_all",
            "roll_call",
        ]
        for action in ("meeting_started", "meeting_ended"):
            (entry,) = (await county.call("GET", f"/api/audit?action={action}"))["entries"]
            assert entry["target_id"] == str(meeting["id"])
        for lobby in (lobby_a1, lobby_a2, lobby_b1):
            await lobby.ws.close()


@pytest.mark.parametrize("api", ["sqlite"], indirect=True)
async def test_a_tv_online_in_the_lobby_stays_online_after_its_meeting(api):
    county = await api.as_user("county_admin")
    branch = api.orgs["branch_a1"].id
    tv_id, token = await pair_terminal(api, county, api.orgs["village_a1"].id)
    async with aiohttp.ClientSession() as http:
        lobby = Lobby(http, api.base_url, token)
        await lobby.connect()
        assert (await lobby.receive())["room_id"] == "town-a-meeting"  # standing room

        async def online() -> bool:
            terminals = (await county.call("GET", "/api/terminals"))["terminals"]
            return next(t for t in terminals if t["id"] == tv_id)["online"]

        assert await online()
        # a branch meeting (no sites given) invites the branch's own village TV
        meeting = await county.call(
            "POST",
            "/api/meetings",
            {"type": "party_congress", "topic": "党员大会", "organiser_id": branch},
        )
        await county.call("POST", f"/api/meetings/{meeting['id']}/start")
        invite = await lobby.receive()
        assert (invite["type"], invite["meeting_id"]) == ("meeting_started", meeting["id"])
        tv = SignalingClient(api.base_url, invite["token"])
        await tv.connect()
        await county.call("POST", f"/api/meetings/{meeting['id']}/end")
        await tv.next_event("_closed")
        await tv.close()
        assert await online()  # back on its idle screen, still reachable
        await lobby.ws.close()
        await asyncio.sleep(0.3)
        assert not await online()


async def test_a_second_tv_of_the_same_name_at_a_site_is_bound_only_when_meant(api):
    county = await api.as_user("county_admin")
    a1 = api.orgs["village_a1"].id
    await pair_terminal(api, county, a1, "A1村电视")
    pairing = await api.anonymous.call("POST", "/api/terminals/pairing")
    body = {"code": pairing["code"], "org_id": a1, "name": "A1村电视"}
    refused = await county.call("POST", "/api/terminals/bind", body)
    assert county.last_status == 409 and refused["error"]["code"] == "same_name_at_site"
    assert refused["error"]["fields"] == {"name": "already used at this site"}
    # the same name elsewhere is fine; here, only when the admin means it
    await county.call("POST", "/api/terminals/bind", {**body, "allow_same_name": True}, expect=201)
    listed = await county.call("GET", f"/api/terminals?org={a1}", expect=200)
    assert [t["name"] for t in listed["terminals"]].count("A1村电视") == 2


async def test_a_duty_kiosk_is_no_meeting_venue(api):
    """A village's duty kiosk (a terminal of kind duty_camera, the /duty page) holds the
    lobby like a TV but is never sent to a meeting or a standing room, nor listed."""
    county = await api.as_user("county_admin")
    secretary = await api.as_user("a1_secretary")
    a1 = api.orgs["village_a1"].id
    tv, tv_token = await pair_terminal(api, county, a1, "A1村电视")
    kiosk, kiosk_token = await pair_terminal(api, county, a1, "A1村值班平板", "duty_camera")
    async with aiohttp.ClientSession() as http:
        tv_lobby = Lobby(http, api.base_url, tv_token)
        kiosk_lobby = Lobby(http, api.base_url, kiosk_token)
        await tv_lobby.connect()
        assert (await tv_lobby.receive())["room_id"] == "town-a-meeting"  # the standing room
        assert (await kiosk_lobby.connect())["terminal_id"] == kiosk
        assert await kiosk_lobby.silent()  # not sent there
        meeting = await secretary.call(
            "POST",
            "/api/meetings",
            {
                "type": "party_congress",
                "topic": "党员大会",
                "organiser_id": api.orgs["branch_a1"].id,
            },
        )
        started = await secretary.call("POST", f"/api/meetings/{meeting['id']}/start", expect=200)
        assert {v["terminal_id"] for v in started["venues"]} == {tv}
        assert (await tv_lobby.receive())["type"] == "meeting_started"
        assert await kiosk_lobby.silent()
        await secretary.call("POST", f"/api/meetings/{meeting['id']}/end", expect=200)
        assert (await tv_lobby.receive())["type"] == "meeting_ended"
        assert await kiosk_lobby.silent()
