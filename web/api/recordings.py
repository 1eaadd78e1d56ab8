"""Recordings for spot checks: list, one venue's segments with its timeline, and the files.
/api/recordings. Access follows the org tree; every playback is audited."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db import audit
from db.access import Capability, Principal
from db.models import Recording, RoomEvent

from .common import ApiError, authed, check, json_response, not_found, query_int, scoped_object

RECORDINGS_DIR_KEY = web.AppKey("recordings_dir", Path)


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
    return json_response({"recordings": [recording_json(r) for r in rows.scalars()]})


@authed
async def get_recording(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    recording = await scoped_object(
        session,
        principal,
        Recording,
        int(request.match_info["recording_id"]),
        Capability.MEETINGS_READ,
        "recording",
    )
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
        events_query = events_query.where(RoomEvent.at <= end)
    events = [
        event
        for event in (await session.execute(events_query.order_by(RoomEvent.at))).scalars()
        # the venue's own events, and others only from inside the caller's subtree
        if event.participant_id == recording.participant_id or principal.covers(event.org_path)
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
    recording = await scoped_object(
        session,
        principal,
        Recording,
        int(request.match_info["recording_id"]),
        Capability.MEETINGS_READ,
        "recording",
    )
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
