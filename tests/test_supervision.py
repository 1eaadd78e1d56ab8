"""Supervisors, on SQLite and PostgreSQL with real aiortc peers: the live meetings in their
part of the tree, a hidden view that no participant can learn of (events, lists, counts,
bitrate) and that is in the trail with its duration, and the scope that refuses (and
audits) a meeting elsewhere."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from urllib.parse import quote

import pytest
from aiortc import AudioStreamTrack
from sqlalchemy import select

from db.models import HiddenView, RoomEvent
from lighthouse.keys import DATABASE_KEY, ROOMS_KEY
from signaling.client import SignalingClient, SignalingError
from signaling.tokens import TokenIssuer

from conftest import TEST_REDIS_URL, TEST_SECRET
from media import PictureTrack, face_picture, similarity

ROOM = "town-a-meeting"


def drain(client: SignalingClient) -> list[dict]:
    events = []
    while not client.events.empty():
        events.append(client.events.get_nowait())
    return events


async def healthz(api) -> dict:
    """What the server's state counts (its loop-stall figure moves on its own)."""
    county = await api.as_user("county_admin")
    health = await county.call("GET", "/api/status", expect=200)
    health.pop("loop_stall_ms")
    return health


async def test_a_hidden_viewer_is_seen_by_no_one_and_is_in_the_trail(api):
    await hidden_viewer_scenario(api)


@pytest.mark.server_config(workers=2, redis_url=TEST_REDIS_URL)
async def test_a_hidden_viewer_on_media_workers_is_seen_by_no_one_either(api):
    """The same, with the village, the member and the supervisor on two media workers."""
    await hidden_viewer_scenario(api)


async def hidden_viewer_scenario(api) -> None:
    picture = face_picture()
    tokens = TokenIssuer(TEST_SECRET)
    village = SignalingClient(api.base_url, tokens.mint("terminal:1", "A1村", ROOM, "terminal"))
    member = SignalingClient(api.base_url, tokens.mint("phone-1", "党员张三", ROOM, "viewer"))
    supervisor = await api.as_user("town_a_supervisor")
    hidden = None
    try:
        await village.connect()
        publication = await village.publish([AudioStreamTrack(), PictureTrack(picture)])
        await member.connect()
        await member.next_event("publication_added")
        await member.subscribe(publication)

        # the overview: the meeting, its venues, what a wall tile would show
        live = await supervisor.call("GET", "/api/supervision/live")
        [meeting] = live["meetings"]
        assert meeting["room_id"] == ROOM and meeting["org"]["name"] == "A镇"
        assert meeting["venues_online"] == 2 and sorted(meeting["venues"]) == ["A1村", "党员张三"]
        assert meeting["main_publication"]["publication_id"] == publication
        assert meeting["started_at"] is not None and meeting["signed_in"] == 0
        before = await healthz(api)

        view = await supervisor.call("POST", "/api/supervision/view", {"room_id": ROOM})
        assert supervisor.last_status == 200, view
        hidden = SignalingClient(api.base_url, view["token"])
        joined = await hidden.connect()
        assert joined["role"] == "supervisor"
        assert sorted(p["name"] for p in joined["peers"]) == ["A1村", "党员张三"]
        assert [p["publication_id"] for p in joined["publications"]] == [publication]
        # it watches (video only, as a wall tile does) and decodes the village
        watching = await hidden.subscribe(publication, kinds=["video"])
        assert set(watching.tracks) == {"video"}
        frame = await asyncio.wait_for(watching.tracks["video"].recv(), 10)
        for _ in range(10):
            frame = await asyncio.wait_for(watching.tracks["video"].recv(), 5)
        assert similarity(picture, frame.to_ndarray(format="rgb24")) > 0.9
        # and cannot be heard or seen: publishing is refused
        with pytest.raises(SignalingError) as refused:
            await hidden.publish([AudioStreamTrack()])
        assert refused.value.code == "not_allowed"

        room = api.app[ROOMS_KEY][ROOM]
        assert len(room.peers) == 2 and len(room.hidden_peers) == 1
        assert await healthz(api) == before  # no count includes it
        [subscription] = next(iter(room.hidden_peers.values())).subscriptions.values()
        view = await room.plane.subscription_stats(subscription.peer.worker, subscription.id)
        assert not view["video"]["limits_publisher"]  # never slows the village
        await asyncio.sleep(1.5)
    finally:
        if hidden is not None:
            await asyncio.wait_for(hidden.close(), 10)
        await asyncio.sleep(0.5)
        for client in (member, village):
            await asyncio.wait_for(client.close(), 10)

    # nothing the member and the village received mentions the supervisor
    name = "town_a_supervisor"
    for client in (member, village):
        received = drain(client)
        assert all(name not in json.dumps(e, ensure_ascii=False) for e in received), received
        assert "supervisor" not in json.dumps(client.joined, ensure_ascii=False)

    # the trail: one view with its duration, in the audit log too; no timeline event
    async def ended():
        async with api.app[DATABASE_KEY].session() as session:
            rows = (await session.execute(select(HiddenView))).scalars().all()
        return rows if rows and rows[0].ended_at is not None else None

    deadline = time.monotonic() + 10
    while not (rows := await ended()):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)
    [row] = rows
    assert row.supervisor_name == name and row.room_id == ROOM and row.mode == "drop_in"
    assert row.org_path == api.orgs["town_a"].path
    assert 1.5 < row.duration_s < 30
    async with api.app[DATABASE_KEY].session() as session:
        events = (await session.execute(select(RoomEvent))).scalars().all()
    assert {e.participant_id for e in events} == {"terminal:1", "phone-1"}

    county = await api.as_user("county_admin")
    trail = await county.call("GET", "/api/supervision/views?q=town_a")
    [entry] = trail["views"]
    assert entry["duration_s"] == row.duration_s and entry["room_name"] == "A镇会议"
    # the search is the text typed: "%" matches itself, not every row
    for wildcard in ("%", "town%a", "town_a%"):
        found = await county.call("GET", f"/api/supervision/views?q={quote(wildcard)}")
        assert found["views"] == [], wildcard
    # days are the county's (UTC+8): the view started today there
    today = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).date().isoformat()
    found = await county.call("GET", f"/api/supervision/views?from={today}&to={today}")
    assert len(found["views"]) == 1
    audit = await county.call("GET", "/api/audit?action=hidden_view")
    assert [e["target_id"] for e in audit["entries"]] == [ROOM]
    # a town B supervisor reads nothing of town A's trail
    town_b = await api.as_user("town_b_admin")
    await town_b.call("GET", "/api/supervision/views")
    assert town_b.last_status == 403


async def test_supervision_stays_inside_the_supervisors_subtree(api):
    tokens = TokenIssuer(TEST_SECRET)
    venue = SignalingClient(
        api.base_url, tokens.mint("terminal:9", "B1村", "town-b-meeting", "main")
    )
    await venue.connect()
    try:
        supervisor = await api.as_user("town_a_supervisor")
        # town B's meeting is live, but not in town A's overview ...
        assert (await supervisor.call("GET", "/api/supervision/live"))["meetings"] == []
        # ... and asking to watch it is refused, and audited
        reply = await supervisor.call(
            "POST", "/api/supervision/view", {"room_id": "town-b-meeting"}
        )
        assert supervisor.last_status == 403 and reply["error"]["code"] == "out_of_scope"
        county = await api.as_user("county_admin")
        denied = await county.call("GET", "/api/audit?action=supervision_denied")
        [entry] = denied["entries"]
        assert entry["target_id"] == "town-b-meeting" and "town_a_supervisor" in entry["actor"]
        # the county sees both towns
        assert [
            m["room_id"] for m in (await county.call("GET", "/api/supervision/live"))["meetings"]
        ] == ["town-b-meeting"]
        # a town office is not a supervisor; unknown rooms and bad modes are errors
        town_a = await api.as_user("town_a_admin")
        await town_a.call("POST", "/api/supervision/view", {"room_id": ROOM})
        assert town_a.last_status == 403
        # ... it sees only its villages' duty rooms (none open here: tests/test_duty_browser.py)
        assert (await town_a.call("GET", "/api/supervision/live")) == {"meetings": []}
        viewer = await api.as_user("a1_viewer")
        await viewer.call("GET", "/api/supervision/live")
        assert viewer.last_status == 403
        await supervisor.call("POST", "/api/supervision/view", {"room_id": "nowhere"})
        assert supervisor.last_status == 404
        await supervisor.call("POST", "/api/supervision/view", {"room_id": ROOM, "mode": "loud"})
        assert supervisor.last_status == 422
        await api.anonymous.call("GET", "/api/supervision/live")
        assert api.anonymous.last_status == 401
    finally:
        await asyncio.wait_for(venue.close(), 10)
