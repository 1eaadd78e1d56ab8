"""Recordings through the API: scoped by the org tree, served with ranges, audited, timeline."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from db.models import Emergency, Recording, RecordingSegment, RoomEvent
from lighthouse.keys import DATABASE_KEY, RECORDINGS_DIR_KEY


async def add_recording(
    api,
    village: str,
    files: list[bytes],
    path_prefix: str = "",
    room_id: str = "town-a-meeting",
    meeting_id: int | None = None,
) -> int:
    root: Path = api.app[RECORDINGS_DIR_KEY]
    start = dt.datetime(2026, 11, 20, 1, 0, tzinfo=dt.UTC)
    async with api.app[DATABASE_KEY].session() as session:
        recording = Recording(
            room_id=room_id,
            meeting_id=meeting_id,
            publication_id="pub-1",
            participant_id="terminal:1",
            venue_name=f"{village}村",
            org_path=api.orgs[f"village_{village}"].path,
            kinds=["audio", "video"],
            container="webm",
            started_at=start,
            ended_at=start + dt.timedelta(seconds=10 * len(files)),
        )
        for seq, content in enumerate(files):
            relative = f"{path_prefix}town-a-meeting/{village}/{seq}.webm"
            if not path_prefix:
                (root / relative).parent.mkdir(parents=True, exist_ok=True)
                (root / relative).write_bytes(content)
            recording.segments.append(
                RecordingSegment(
                    seq=seq,
                    path=relative,
                    started_at=start + dt.timedelta(seconds=10 * seq),
                    ended_at=start + dt.timedelta(seconds=10 * (seq + 1)),
                    duration_s=10.0,
                    bytes=len(content),
                )
            )
        session.add(recording)
        session.add(
            RoomEvent(
                room_id="town-a-meeting",
                kind="joined",
                name="A1村",
                participant_id="terminal:1",
                at=start + dt.timedelta(seconds=3),
            )
        )
        await session.commit()
        return recording.id


async def test_recordings_follow_the_tree_and_playback_is_audited(api):
    recording_id = await add_recording(api, "a1", [b"first-segment", b"second-segment"])
    town_a = await api.as_user("town_a_admin")
    listed = await town_a.call("GET", "/api/recordings")
    assert [r["id"] for r in listed["recordings"]] == [recording_id]
    detail = await town_a.call("GET", f"/api/recordings/{recording_id}")
    assert [s["offset_s"] for s in detail["segments"]] == [0.0, 10.0]
    assert detail["duration_s"] == 20.0
    assert [(e["kind"], e["offset_s"]) for e in detail["timeline"]] == [("joined", 3.0)]
    await town_a.call("GET", detail["segments"][0]["url"])
    whole = await town_a.call("GET", detail["segments"][1]["url"])
    assert whole["_body"] == b"second-segment" and whole["_type"] == "video/webm"
    part = await town_a.call("GET", detail["segments"][0]["url"], headers={"Range": "bytes=6-"})
    assert town_a.last_status == 206 and part["_body"] == b"segment"

    town_b = await api.as_user("town_b_admin")
    assert (await town_b.call("GET", "/api/recordings"))["recordings"] == []
    for path in (f"/api/recordings/{recording_id}", detail["segments"][0]["url"]):
        await town_b.call("GET", path)
        assert town_b.last_status == 404

    county = await api.as_user("county_admin")
    played = await county.call("GET", "/api/audit?action=recording_played")
    assert len(played["entries"]) == 2  # two segments opened; a range request is no new one


async def test_a_segment_path_outside_the_recordings_folder_is_refused(api):
    recording_id = await add_recording(api, "a1", [b"x"], path_prefix="../../")
    town_a = await api.as_user("town_a_admin")
    detail = await town_a.call("GET", f"/api/recordings/{recording_id}")
    reply = await town_a.call("GET", detail["segments"][0]["url"])
    assert town_a.last_status == 410 and reply["error"]["code"] == "gone"


async def test_the_recordings_list_says_what_each_was_of_not_its_room_id(api):
    town_a = await api.as_user("town_a_admin")
    meeting = await town_a.call(
        "POST",
        "/api/meetings",
        {"type": "party_lecture", "topic": "镇党课", "organiser_id": api.orgs["town_a"].id},
        expect=201,
    )
    async with api.app[DATABASE_KEY].session() as session:
        emergency = Emergency(
            org_id=api.orgs["village_a2"].id,
            org_path=api.orgs["village_a2"].path,
            reporter="account:1",
            reporter_name="a2",
            started_at=dt.datetime(2026, 11, 20, 6, 30, tzinfo=dt.UTC),
        )
        session.add(emergency)
        await session.commit()
        emergency_id = emergency.id
    ids = {
        "meeting": await add_recording(
            api, "a1", [b"m"], room_id=f"meeting-{meeting['id']}", meeting_id=meeting["id"]
        ),
        "emergency": await add_recording(api, "a2", [b"e"], room_id=f"emergency-{emergency_id}"),
        "room": await add_recording(api, "a1", [b"r"]),
    }
    reply = await town_a.call("GET", "/api/recordings")
    listed = {r["id"]: r["occasion"] for r in reply["recordings"]}
    assert listed[ids["meeting"]] == {
        "kind": "meeting",
        "meeting_type": "party_lecture",
        "topic": "镇党课",
    }
    assert listed[ids["emergency"]]["kind"] == "emergency"
    assert listed[ids["emergency"]]["place"] == "A2村"
    assert listed[ids["emergency"]]["at"].startswith("2026-11-20T06:30")
    assert listed[ids["room"]] == {"kind": "room", "name": "A镇会议"}
