"""Recordings through the API: scoped by the org tree, served with ranges, audited, timeline."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from db.models import Recording, RecordingSegment, RoomEvent
from lighthouse.keys import DATABASE_KEY, RECORDINGS_DIR_KEY


async def add_recording(api, village: str, files: list[bytes], path_prefix: str = "") -> int:
    root: Path = api.app[RECORDINGS_DIR_KEY]
    start = dt.datetime(2026, 11, 20, 1, 0, tzinfo=dt.UTC)
    async with api.app[DATABASE_KEY].session() as session:
        recording = Recording(
            room_id="town-a-meeting",
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
