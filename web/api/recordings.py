"""Recordings for spot checks: list, one venue's segments with its timeline, and the files.
/api/recordings. Access follows the org tree; every playback is audited."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db import audit
from db.access import Capability, Principal
from db.models import Emergency, Meeting, OrgUnit, Recording, RoomEvent
from lighthouse.keys import RECORDING_SERVICE_KEY, RECORDINGS_DIR_KEY, ROOMS_KEY
from recorder.remux import Part, join_segments
from sfu.room import Room

from .common import ApiError, authed, check, json_response, not_found, query_int, scoped_object

# joining copies every byte of a venue's recording: a few at once, the rest wait their turn
JOIN_SLOTS_KEY = web.AppKey("recording_join_slots", asyncio.Semaphore)
CHUNK = 256 * 1024
TIMELINE_GRACE = dt.timedelta(seconds=10)


def recording_json(recording: Recording) -> dict:
    return {
        "id": recording.id,
        "room_id": recording.room_id,
        "meeting_id": recording.meeting_id,
        "participant_id": recording.participant_id,
        "venue_name": recording.venue_name,
        "kinds": recording.kinds,
        "container": recording.container,
        "status": recording.status,
        "started_at": recording.started_at,
        "ended_at": recording.ended_at,
        "bytes": recording.bytes,
        "duration_s": round(sum(s.duration_s for s in recording.segments), 3),
    }


EMERGENCY_ROOM = re.compile(r"^emergency-(\d+)$")


async def occasions(
    session: AsyncSession, recordings: list[Recording], rooms: Mapping[str, Room]
) -> dict[int, dict[str, Any]]:
    """What each recording was of, for people (not a room id): a meeting's type and topic;
    an emergency call's village and time; else the room's name."""
    meeting_ids = {r.meeting_id for r in recordings if r.meeting_id is not None}
    meetings = {
        m.id: m
        for m in (
            await session.scalars(select(Meeting).where(Meeting.id.in_(meeting_ids)))
            if meeting_ids
            else []
        )
    }
    emergency_ids = {
        int(match.group(1))
        for r in recordings
        if r.meeting_id is None and (match := EMERGENCY_ROOM.match(r.room_id))
    }
    emergencies = {
        e.id: (e, name)
        for e, name in (
            await session.execute(
                select(Emergency, OrgUnit.name)
                .join(OrgUnit, Emergency.org_id == OrgUnit.id)
                .where(Emergency.id.in_(emergency_ids))
            )
            if emergency_ids
            else []
        )
    }
    found: dict[int, dict[str, Any]] = {}
    for recording in recordings:
        meeting = meetings.get(recording.meeting_id) if recording.meeting_id else None
        match = EMERGENCY_ROOM.match(recording.room_id)
        if meeting is not None:
            found[recording.id] = {
                "kind": "meeting",
                "meeting_type": meeting.type,
                "topic": meeting.topic,
            }
        elif match and int(match.group(1)) in emergencies:
            emergency, village = emergencies[int(match.group(1))]
            found[recording.id] = {
                "kind": "emergency",
                "place": village,
                "at": emergency.started_at,
            }
        else:
            room = rooms.get(recording.room_id)
            found[recording.id] = {
                "kind": "room",
                "name": room.settings.name if room is not None else recording.room_id,
            }
    return found


@authed
async def list_recordings(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    check(principal, Capability.MEETINGS_READ, principal.org_path, "recordings")
    limit = query_int(request, "limit", 100, 1, 1000)
    query = select(Recording).where(Recording.org_path.like(f"{principal.org_path}%"))
    room = request.query.get("room")
    if room:
        query = query.where(Recording.room_id == room)
    meeting = query_int(request, "meeting")
    if meeting is not None:
        query = query.where(Recording.meeting_id == meeting)
    rows = await session.execute(query.order_by(Recording.started_at.desc()).limit(limit))
    recordings = list(rows.scalars())
    registry = request.app[ROOMS_KEY]
    what = await occasions(session, recordings, registry)
    return json_response(
        {"recordings": [{**recording_json(r), "occasion": what[r.id]} for r in recordings]}
    )


async def _requested_recording(
    request: web.Request, session: AsyncSession, principal: Principal
) -> Recording:
    """The recording in the URL, if the caller may play it back."""
    return await scoped_object(
        session,
        principal,
        Recording,
        int(request.match_info["recording_id"]),
        Capability.MEETINGS_READ,
        "recording",
    )


@authed
async def get_recording(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    recording = await _requested_recording(request, session, principal)
    # one time base for segments and events: seconds of wall-clock time since the start
    segments = [
        {
            "seq": segment.seq,
            "started_at": segment.started_at,
            "ended_at": segment.ended_at,
            "offset_s": round((segment.started_at - recording.started_at).total_seconds(), 3),
            "duration_s": segment.duration_s,
            "bytes": segment.bytes,
            "url": f"/api/recordings/{recording.id}/segments/{segment.seq}",
        }
        for segment in recording.segments
    ]
    end = recording.ended_at or (recording.segments[-1].ended_at if recording.segments else None)
    events_query = select(RoomEvent).where(
        RoomEvent.room_id == recording.room_id, RoomEvent.at >= recording.started_at
    )
    if end is not None:
        # what ended the recording (the venue leaving, a stop) comes just after its last frame
        events_query = events_query.where(RoomEvent.at <= end + TIMELINE_GRACE)
    events = [
        event
        for event in (await session.execute(events_query.order_by(RoomEvent.at))).scalars()
        # the venue's own events, the room's (recording stopped...), and others' only from
        # inside the caller's subtree
        if event.participant_id in (recording.participant_id, None)
        or principal.covers(event.org_path)
    ]
    timeline = [
        {
            "at": event.at,
            "offset_s": round((event.at - recording.started_at).total_seconds(), 3),
            "kind": event.kind,
            "participant_id": event.participant_id,
            "name": event.name,
            "detail": event.detail,
        }
        for event in events
    ]
    return json_response({**recording_json(recording), "segments": segments, "timeline": timeline})


@authed
async def get_segment(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.StreamResponse:
    recording = await _requested_recording(request, session, principal)
    seq = int(request.match_info["seq"])
    segment = next((s for s in recording.segments if s.seq == seq), None)
    if segment is None:
        raise not_found("segment")
    root = request.app[RECORDINGS_DIR_KEY].resolve()
    path = (root / segment.path).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise ApiError(410, "gone", "this part of the recording is no longer on disk")
    if request.http_range.start in (None, 0):  # one entry per viewing, not per range request
        audit.record(
            session,
            principal,
            "recording_played",
            target_type="recording",
            target_id=recording.id,
            org_path=recording.org_path,
            remote_addr=request.remote,
            detail={"segment": seq, "venue": recording.venue_name},
        )
        await session.commit()
    content_type = "video/webm" if recording.container == "webm" else "video/mp4"
    return web.FileResponse(
        path, headers={"Content-Type": content_type, "Cache-Control": "private, no-store"}
    )


@authed
async def get_recording_status(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    """Whether the server records now (or why not), and how full its disk is."""
    check(principal, Capability.MEETINGS_READ, principal.org_path, "recordings")
    service = request.app.get(RECORDING_SERVICE_KEY)
    if service is None:
        return json_response({"enabled": False, "recording": False})
    return json_response({"enabled": True, **service.status()})


def _joined_file(parts: list[Part], work_dir: Path, container: str) -> BinaryIO:
    """The joined file, open for reading and already unlinked: nothing is left behind,
    whether the download completes or not."""
    work_dir.mkdir(exist_ok=True)  # on the recordings' own disk
    handle, name = tempfile.mkstemp(suffix=f".{container}", dir=work_dir)
    os.close(handle)
    try:
        join_segments(parts, Path(name), container)
        return open(name, "rb")
    finally:
        os.unlink(name)


def _on_disk(root: Path, recording: Recording) -> list[Part]:
    parts = []
    for segment in recording.segments:
        path = (root / segment.path).resolve()
        if path.is_relative_to(root) and path.is_file():
            offset = (segment.started_at - recording.started_at).total_seconds()
            parts.append(Part(path, max(0.0, offset)))
    return parts


@authed
async def download_recording(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.StreamResponse:
    """The whole venue recording as one file: its segments' packets copied into one
    container (not re-encoded), gaps kept, so its clock is the timeline's."""
    recording = await _requested_recording(request, session, principal)
    root = request.app[RECORDINGS_DIR_KEY].resolve()
    parts = _on_disk(root, recording)
    if not parts:
        raise ApiError(410, "gone", "this recording is no longer on disk")
    audit.record(
        session,
        principal,
        "recording_downloaded",
        target_type="recording",
        target_id=recording.id,
        org_path=recording.org_path,
        remote_addr=request.remote,
        detail={"venue": recording.venue_name, "segments": len(parts)},
    )
    await session.commit()
    container = recording.container
    async with request.app[JOIN_SLOTS_KEY]:
        file = await asyncio.to_thread(_joined_file, parts, root / ".joining", container)
    with file:
        size = os.fstat(file.fileno()).st_size
        stamp = recording.started_at.strftime("%Y%m%d-%H%M")
        filename = f"{recording.venue_name}-{stamp}.{container}"
        response = web.StreamResponse(
            headers={
                "Content-Type": "video/webm" if container == "webm" else "video/mp4",
                "Content-Length": str(size),
                "Content-Disposition": (
                    f'attachment; filename="recording-{recording.id}-{stamp}.{container}"; '
                    f"filename*=UTF-8''{quote(filename)}"
                ),
                "Cache-Control": "private, no-store",
            }
        )
        await response.prepare(request)
        while chunk := await asyncio.to_thread(file.read, CHUNK):
            await response.write(chunk)
        await response.write_eof()
    return response
