"""Emergency calls over the API with real aiortc peers: a village secretary's phone raises
one and publishes its camera, the command views above the village hear of it at once on
their event streams (those of other towns do not), the county watches the picture,
acknowledges and ends it; everything is audited. A restart gives active emergencies and
live meetings their rooms back."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from lighthouse.keys import ROOMS_KEY
from signaling.client import SignalingClient

from apiclient import Lobby, pair_terminal
from media import PictureTrack, face_picture, latest_picture, similarity


class EventStream:
    """A command view's `GET /api/emergencies/events`, read as the browser's EventSource."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str, token: str) -> None:
        self.http = http
        self.url = base_url + "/api/emergencies/events"
        self.token = token
        self.response: aiohttp.ClientResponse | None = None

    async def open(self) -> int:
        self.response = await self.http.get(
            self.url, headers={"Authorization": f"Bearer {self.token}"}
        )
        if self.response.status == 200:
            assert (await self.next())[0] == "ready"
        return self.response.status

    async def next(self, timeout: float = 5.0) -> tuple[str, dict]:
        assert self.response is not None
        name, data = "message", ""

        async def read() -> tuple[str, dict]:
            nonlocal name, data
            while True:
                line = (await self.response.content.readline()).decode().rstrip("\n")
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    data += line[6:]
                elif line == "" and data:
                    return name, json.loads(data)

        return await asyncio.wait_for(read(), timeout)

    async def silent(self, seconds: float = 0.5) -> bool:
        try:
            await self.next(seconds)
        except TimeoutError:
            return True
        return False

    def close(self) -> None:
        if self.response is not None:
            self.response.close()


async def test_an_emergency_reaches_the_command_at_once_and_is_seen_acknowledged_and_ended(api):
    county = await api.as_user("county_admin")
    secretary = await api.as_user("a1_secretary")
    town_b = await api.as_user("town_b_admin")
    viewer = await api.as_user("a1_viewer")
    a1 = api.orgs["village_a1"]

    async with aiohttp.ClientSession() as http:
        command = EventStream(http, api.base_url, county.token)
        elsewhere = EventStream(http, api.base_url, town_b.token)
        assert await command.open() == 200
        assert await elsewhere.open() == 200
        assert await EventStream(http, api.base_url, "not-a-token").open() == 401

        # bad input is refused, nothing is raised
        await secretary.call("POST", "/api/emergencies", {"note": "x" * 201}, expect=422)
        await secretary.call(
            "POST", "/api/emergencies", {"org_id": api.orgs["village_b1"].id}, expect=404
        )
        await secretary.call("POST", "/api/emergencies", [1], expect=400)
        assert await command.silent(0.3)

        raised = await secretary.call(
            "POST", "/api/emergencies", {"note": "河堤出现管涌"}, expect=201
        )
        emergency = raised["emergency"]
        assert emergency["org"]["id"] == a1.id and emergency["status"] == "active"
        assert emergency["room_id"] == f"emergency-{emergency['id']}"
        event, data = await command.next()
        assert event == "emergency" and data["event"] == "raised"
        assert data["emergency"]["id"] == emergency["id"]
        assert data["emergency"]["note"] == "河堤出现管涌"
        assert data["emergency"]["reporter_name"] == "a1_secretary"
        assert await elsewhere.silent()  # town B's view is not told of town A's village

        # the call's room is given out by the emergency API only: not as a meeting token
        # (which would skip its roles, its still-on check and its audit entry)
        county = await api.as_user("county_admin")
        refused = await county.call(
            "POST", "/api/meeting-token", {"room_id": emergency["room_id"]}, expect=404
        )
        assert refused["error"]["code"] == "no_meeting"

        # a second tap goes back into the same call
        again = await secretary.call("POST", "/api/emergencies", {}, expect=200)
        assert again["emergency"]["id"] == emergency["id"]
        assert await command.silent(0.3)

        # the phone publishes its camera; the command watches it
        scene = face_picture()
        phone = SignalingClient(api.base_url, raised["token"])
        await phone.connect()
        await phone.publish([PictureTrack(scene)])

        async def sending() -> bool:
            (listed,) = (await county.call("GET", "/api/emergencies?status=active"))["emergencies"]
            return listed["id"] == emergency["id"] and listed["sending"]

        for _ in range(50):
            if await sending():
                break
            await asyncio.sleep(0.1)
        assert await sending()
        (listed,) = (await county.call("GET", "/api/emergencies?status=active"))["emergencies"]
        assert listed["id"] == emergency["id"] and listed["sending"] is True
        assert (await town_b.call("GET", "/api/emergencies"))["emergencies"] == []
        await town_b.call("GET", f"/api/emergencies/{emergency['id']}", expect=404)
        await town_b.call("POST", f"/api/emergencies/{emergency['id']}/watch", expect=404)
        await county.call("GET", "/api/emergencies?status=later", expect=422)

        grant = await county.call("POST", f"/api/emergencies/{emergency['id']}/watch")
        watcher = SignalingClient(api.base_url, grant["token"])
        await watcher.connect()
        assert watcher.joined["role"] == "main"
        (publication,) = watcher.joined["publications"]
        subscription = await watcher.subscribe(publication["publication_id"])
        seen = await latest_picture(subscription.tracks["video"], 6)
        assert similarity(seen, scene) > 0.9

        # acknowledging: a viewer may not; the county does, once
        await viewer.call("POST", f"/api/emergencies/{emergency['id']}/acknowledge", expect=403)
        acked = await county.call("POST", f"/api/emergencies/{emergency['id']}/acknowledge")
        assert acked["acknowledged_by"] == "county_admin" and acked["acknowledged_at"]
        event, data = await command.next()
        assert data["event"] == "acknowledged"
        # the phone reads it back
        mine = await secretary.call("GET", f"/api/emergencies/{emergency['id']}")
        assert mine["acknowledged_by"] == "county_admin"

        ended = await secretary.call("POST", f"/api/emergencies/{emergency['id']}/end")
        assert ended["status"] == "ended" and ended["ended_at"]
        assert (await command.next())[1]["event"] == "ended"
        assert (await watcher.next_event("emergency_ended"))["emergency_id"] == emergency["id"]
        assert emergency["room_id"] not in api.app[ROOMS_KEY]
        await secretary.call("POST", f"/api/emergencies/{emergency['id']}/end", expect=409)
        await county.call("POST", f"/api/emergencies/{emergency['id']}/watch", expect=409)
        await phone.close()
        await watcher.close()
        command.close()
        elsewhere.close()

    for action in (
        "emergency_raised",
        "emergency_watched",
        "emergency_acknowledged",
        "emergency_ended",
    ):
        (entry,) = (await county.call("GET", f"/api/audit?action={action}"))["entries"]
        assert entry["target_id"] == str(emergency["id"])


@pytest.mark.parametrize("api", ["sqlite"], indirect=True)
async def test_a_restart_gives_live_meetings_and_active_emergencies_their_rooms_back(api):
    county = await api.as_user("county_admin")
    secretary = await api.as_user("a1_secretary")
    _, tv_token = await pair_terminal(api, county, api.orgs["village_a1"].id)
    meeting = await county.call(
        "POST",
        "/api/meetings",
        {"type": "party_lecture", "topic": "党课", "organiser_id": api.orgs["branch_a1"].id},
    )
    await county.call("POST", f"/api/meetings/{meeting['id']}/start")
    raised = await secretary.call("POST", "/api/emergencies", {})
    emergency_id = raised["emergency"]["id"]

    await api.restart()

    rooms = api.app[ROOMS_KEY]
    assert f"meeting-{meeting['id']}" in rooms and rooms[f"meeting-{meeting['id']}"].control
    assert f"emergency-{emergency_id}" in rooms
    async with aiohttp.ClientSession() as http:
        # the TV reconnects and is invited into the meeting again, which it can join
        lobby = Lobby(http, api.base_url, tv_token)
        await lobby.connect()
        invite = await lobby.receive()
        assert (invite["type"], invite["meeting_id"]) == ("meeting_started", meeting["id"])
        tv = SignalingClient(api.base_url, invite["token"])
        await tv.connect()
        assert tv.joined["room"]["controlled"] is True
        # the phone's token still opens its emergency room
        phone = SignalingClient(api.base_url, raised["token"])
        await phone.connect()
        assert phone.joined["room"]["id"] == f"emergency-{emergency_id}"
        live = await county.call("GET", f"/api/meetings/{meeting['id']}/live")
        assert live["live"] and [v["state"] for v in live["venues"]] == ["in_meeting"]
        await tv.close()
        await phone.close()
        await lobby.ws.close()
