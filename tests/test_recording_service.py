"""Recording as the server runs it (the composition root's RecordingService), on SQLite and
PostgreSQL: a meeting's venue is recorded, indexed under its place in the org tree and
downloaded as one file; a tiny quota or a full disk stops recording with an alert while
the meeting goes on; retention deletes old recordings, audited."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import time
from pathlib import Path

import av
import pytest
from aiortc import AudioStreamTrack
from sqlalchemy import select

from db.models import AuditEntry, Recording, RecordingSegment, RecordingStatus
from lighthouse.keys import DATABASE_KEY, RECORDING_SERVICE_KEY, RECORDINGS_DIR_KEY
from recorder.service import RecordingLimits, RecordingService
from signaling.client import SignalingClient
from signaling.tokens import TokenIssuer

from conftest import TEST_SECRET
from media import PictureTrack, face_picture, similarity

ROOM = "town-a-meeting"


async def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@contextlib.asynccontextmanager
async def publishing_venue(api, participant: str, name: str, picture):
    client = SignalingClient(
        api.base_url, TokenIssuer(TEST_SECRET).mint(participant, name, ROOM, "terminal")
    )
    await client.connect()
    try:
        publication_id = await client.publish([AudioStreamTrack(), PictureTrack(picture)])
        yield client, publication_id
    finally:
        await asyncio.wait_for(client.close(), 10)


@pytest.mark.server_config(recording_enabled=True, recording_segment_s=2.0)
async def test_a_venue_is_recorded_indexed_in_its_tree_and_downloaded_as_one_file(api, tmp_path):
    picture = face_picture()
    town_a = await api.as_user("town_a_admin")
    town_b = await api.as_user("town_b_admin")
    async with publishing_venue(api, "venue-a", "A镇主会场", picture):
        await asyncio.sleep(6.0)

    async def finished():
        listed = (await town_a.call("GET", f"/api/recordings?room={ROOM}"))["recordings"]
        return listed if listed and listed[0]["status"] == "done" else None

    listed = await wait_for(finished, 15, "the recording to be closed in the index")
    assert len(listed) == 1
    recording = listed[0]
    assert recording["venue_name"] == "A镇主会场" and recording["container"] == "mp4"
    assert sorted(recording["kinds"]) == ["audio", "video"]
    assert 5.0 < recording["duration_s"] < 7.5, recording

    # the room is organised by town A: its staff may open the recording, town B's may not
    assert (await town_b.call("GET", f"/api/recordings?room={ROOM}"))["recordings"] == []
    await town_b.call("GET", f"/api/recordings/{recording['id']}/download")
    assert town_b.last_status == 404

    detail = await town_a.call("GET", f"/api/recordings/{recording['id']}")
    segments = detail["segments"]
    assert [s["seq"] for s in segments] == list(range(len(segments))) and len(segments) >= 3
    assert segments[0]["offset_s"] == 0
    assert all(
        b["offset_s"] >= a["offset_s"] + a["duration_s"] - 0.1
        for a, b in itertools.pairwise(segments)
    )
    kinds = [(e["kind"], e["participant_id"]) for e in detail["timeline"]]
    assert ("left", "venue-a") in kinds, kinds

    # every indexed file is on disk, whole, and its size is in the index
    root: Path = api.app[RECORDINGS_DIR_KEY]
    async with api.app[DATABASE_KEY].session() as session:
        rows = (await session.execute(select(RecordingSegment))).scalars().all()
    assert sum(r.bytes for r in rows) == recording["bytes"]
    assert all((root / r.path).stat().st_size == r.bytes for r in rows)

    # the whole venue as one file: the segments' packets, joined without re-encoding
    download = await town_a.call("GET", f"/api/recordings/{recording['id']}/download")
    assert town_a.last_status == 200 and download["_type"] == "video/mp4"
    joined = tmp_path / "joined.mp4"
    joined.write_bytes(download["_body"])
    frames = 0
    last = None
    with av.open(str(joined)) as container:
        duration = container.duration / 1_000_000
        assert {s.type for s in container.streams} == {"video", "audio"}
        for frame in container.decode(video=0):
            frames += 1
            last = frame
    assert duration == pytest.approx(recording["duration_s"], abs=0.5)
    assert frames > 20 * (duration - 1)
    assert similarity(picture, last.to_ndarray(format="rgb24")) > 0.9
    county = await api.as_user("county_admin")
    audit = await county.call("GET", "/api/audit?action=recording_downloaded")
    assert [e["target_id"] for e in audit["entries"]] == [str(recording["id"])]


@pytest.mark.server_config(
    recording_enabled=True, recording_segment_s=1.0, recording_quota_bytes=30_000
)
async def test_a_tiny_quota_stops_recording_with_an_alert_and_the_meeting_goes_on(api):
    county = await api.as_user("county_admin")
    status = await county.call("GET", "/api/recordings/status")
    assert status["recording"] is True and status["quota_bytes"] == 30_000
    root: Path = api.app[RECORDINGS_DIR_KEY]
    async with publishing_venue(api, "venue-q", "Q村", face_picture()) as (_, publication):
        watcher = SignalingClient(
            api.base_url, TokenIssuer(TEST_SECRET).mint("watcher", "县主会场", ROOM, "main")
        )
        await watcher.connect()
        try:
            subscription = await watcher.subscribe(publication)

            async def stopped():
                # the service stops taking new recordings at once and ends the running
                # ones as they close their segments: wait for both
                status = await county.call("GET", "/api/recordings/status")
                done = not status["recording"] and status["active_recordings"] == 0
                return status if done else None

            status = await wait_for(stopped, 20, "the quota to stop recording")
            assert status["stopped_reason"] == "quota"
            assert status["used_bytes"] >= 30_000
            files = await asyncio.to_thread(files_under, root)
            # the meeting goes on: the watcher keeps getting pictures for another 3 s
            video = subscription.tracks["video"]
            started = time.monotonic()
            received = 0
            while time.monotonic() - started < 3.0:
                await asyncio.wait_for(video.recv(), 5)
                received += 1
            assert received > 40
            assert await asyncio.to_thread(files_under, root) == files  # nothing new
        finally:
            await asyncio.wait_for(watcher.close(), 10)

    # the alert: an audit entry for the county, and a mark on the recording's timeline
    audit = await county.call("GET", "/api/audit?action=recording_stopped")
    [entry] = audit["entries"]
    assert entry["actor"] == "system:recorder" and entry["detail"]["reason"] == "quota"
    listed = (await county.call("GET", f"/api/recordings?room={ROOM}"))["recordings"]
    assert [r["status"] for r in listed] == ["stopped_quota"]
    detail = await county.call("GET", f"/api/recordings/{listed[0]['id']}")
    assert "recording_stopped" in [e["kind"] for e in detail["timeline"]]


@pytest.mark.server_config(recording_enabled=True, recording_min_free_bytes=2**62)
async def test_too_little_free_disk_records_nothing(server):
    service = server.app[RECORDING_SERVICE_KEY]
    status = service.status()
    assert status["recording"] is False and status["stopped_reason"] == "disk_full"
    client = SignalingClient(server.base_url, server.token("tv-1", room="vp8room"))
    await client.connect()
    try:
        await client.publish([AudioStreamTrack(), PictureTrack(face_picture())])
        await asyncio.sleep(2.0)
        assert service.recorder.recordings == {}
        assert await asyncio.to_thread(files_under, service.root) == []
    finally:
        await asyncio.wait_for(client.close(), 10)


async def test_retention_deletes_old_recordings_and_audits_it(database, tmp_path):
    root = tmp_path / "recordings"
    service = RecordingService(
        database, root, RecordingLimits(quota_bytes=10**9, min_free_bytes=0, retention_days=30)
    )
    now = dt.datetime.now(dt.UTC)
    ids = {}
    async with database.session() as session:
        for label, age in (("old", 45), ("recent", 3)):
            start = now - dt.timedelta(days=age)
            recording = Recording(
                room_id="r",
                publication_id=f"pub-{label}",
                participant_id=f"tv-{label}",
                venue_name=label,
                org_path="/1/",
                kinds=["video"],
                container="webm",
                status=RecordingStatus.DONE,
                started_at=start,
                ended_at=start + dt.timedelta(seconds=20),
                bytes=0,
            )
            for seq in range(2):
                relative = f"r/tv-{label}/{seq}.webm"
                (root / relative).parent.mkdir(parents=True, exist_ok=True)
                (root / relative).write_bytes(b"x" * 1000)
                recording.segments.append(
                    RecordingSegment(
                        seq=seq,
                        path=relative,
                        started_at=start,
                        ended_at=start,
                        duration_s=10.0,
                        bytes=1000,
                    )
                )
                recording.bytes += 1000
            session.add(recording)
            await session.flush()
            ids[label] = recording.id
        await session.commit()

    assert await service.apply_retention() == 1
    assert not (root / "r" / "tv-old").exists()  # its files and its folder
    assert sorted(p.name for p in (root / "r" / "tv-recent").iterdir()) == ["0.webm", "1.webm"]
    assert service.used_bytes == 2000
    async with database.session() as session:
        left = (await session.execute(select(Recording.id))).scalars().all()
        entries = (await session.execute(select(AuditEntry))).scalars().all()
    assert left == [ids["recent"]]
    [entry] = entries
    assert (entry.action, entry.actor, entry.target_id) == (
        "recording_expired",
        "system:recorder",
        str(ids["old"]),
    )
    assert entry.detail["retention_days"] == 30 and entry.org_path == "/1/"
    assert await service.apply_retention() == 0
