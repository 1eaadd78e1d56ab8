"""The JSON API (documented in docs/api.md). Every endpoint but sign-in and TV pairing
checks a signed token and the caller's place in the org tree (db/access.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from db.accounts import TokenService
from db.database import Database
from lighthouse.keys import (
    DATABASE_KEY,
    RECORDINGS_DIR_KEY,
    ROOMS_KEY,
    TOKEN_SERVICE_KEY,
    TOKENS_KEY,
)
from sfu.registry import RoomRegistry
from signaling.tokens import TokenIssuer

from . import (
    audit_log,
    duty,
    emergencies,
    faces,
    live_meetings,
    meeting_tokens,
    meetings,
    members,
    members_io,
    recordings,
    signins,
    status,
    supervision,
    terminals,
    tree,
)


def add_api_routes(
    app: web.Application,
    database: Database,
    tokens: TokenService,
    rooms: RoomRegistry,
    meeting_tokens_issuer: TokenIssuer,
    recordings_dir: Path,
) -> None:
    app[DATABASE_KEY] = database
    app[TOKEN_SERVICE_KEY] = tokens
    app[ROOMS_KEY] = rooms
    app[TOKENS_KEY] = meeting_tokens_issuer
    app[RECORDINGS_DIR_KEY] = recordings_dir
    app[recordings.JOIN_SLOTS_KEY] = asyncio.Semaphore(2)
    app[terminals.PAIRING_LIMIT_KEY] = terminals.PairingRateLimit()
    app[tree.LOGIN_THROTTLE_KEY] = tree.LoginThrottle()
    r = app.router
    duty.add_duty_routes(app)
    r.add_post("/api/login", tree.post_login)
    r.add_post("/api/logout", tree.post_logout)
    r.add_get("/api/me", tree.get_me)
    r.add_get("/api/status", status.get_status)
    r.add_get("/api/org", tree.get_org)
    r.add_get("/api/org/{org_id:\\d+}", tree.get_org)
    r.add_post("/api/org", tree.post_org)
    r.add_patch("/api/org/{org_id:\\d+}", tree.patch_org)
    r.add_post("/api/accounts", tree.post_account)
    r.add_get("/api/members", members.list_members)
    r.add_post("/api/members", members.post_member)
    r.add_get("/api/members/{member_id:\\d+}", members.get_member)
    r.add_patch("/api/members/{member_id:\\d+}", members.patch_member)
    r.add_delete("/api/members/{member_id:\\d+}", members.delete_member)
    r.add_get("/api/terminals", terminals.list_terminals)
    r.add_post("/api/terminals/pairing", terminals.post_pairing)
    r.add_post("/api/terminals/pairing/claim", terminals.post_claim)
    r.add_post("/api/terminals/bind", terminals.post_bind)
    r.add_post("/api/terminals/{terminal_id:\\d+}/revoke", terminals.post_revoke)
    r.add_get("/api/meetings", meetings.list_meetings)
    r.add_post("/api/meetings", meetings.post_meeting)
    r.add_get("/api/meetings/{meeting_id:\\d+}", meetings.get_meeting)
    r.add_patch("/api/meetings/{meeting_id:\\d+}", meetings.patch_meeting)
    r.add_post("/api/meetings/{meeting_id:\\d+}/start", live_meetings.post_start)
    r.add_post("/api/meetings/{meeting_id:\\d+}/end", live_meetings.post_end)
    r.add_get("/api/meetings/{meeting_id:\\d+}/live", live_meetings.get_live)
    r.add_post("/api/meetings/{meeting_id:\\d+}/control", live_meetings.post_control)
    r.add_post("/api/emergencies", emergencies.post_emergency)
    r.add_get("/api/emergencies", emergencies.list_emergencies)
    r.add_get("/api/emergencies/events", emergencies.emergency_events)
    r.add_get("/api/emergencies/{emergency_id:\\d+}", emergencies.get_emergency)
    r.add_post("/api/emergencies/{emergency_id:\\d+}/watch", emergencies.post_watch)
    r.add_post("/api/emergencies/{emergency_id:\\d+}/acknowledge", emergencies.post_acknowledge)
    r.add_post("/api/emergencies/{emergency_id:\\d+}/end", emergencies.post_end)
    r.add_post("/api/members/{member_id:\\d+}/faces", faces.post_faces)
    r.add_get("/api/members/{member_id:\\d+}/faces", faces.list_faces)
    r.add_get("/api/faces/{face_id:\\d+}/photo.jpg", faces.get_face_photo)
    r.add_delete("/api/faces/{face_id:\\d+}", faces.delete_face)
    r.add_get("/api/meetings/{meeting_id:\\d+}/signins", signins.get_sheet)
    r.add_post("/api/meetings/{meeting_id:\\d+}/signins", signins.post_manual_signin)
    r.add_post(
        "/api/meetings/{meeting_id:\\d+}/signins/{member_id:\\d+}/review", signins.post_review
    )
    r.add_get("/api/sign-ins/{evidence_id:\\d+}/{which:face|scene}.jpg", signins.get_signin_photo)
    r.add_get(
        "/api/snapshots/{evidence_id:\\d+}/{which:face|scene}.jpg", signins.get_snapshot_photo
    )
    r.add_get("/api/audit", audit_log.list_audit)
    r.add_get("/api/audit/export.xlsx", audit_log.export_audit)
    app[members_io.IMPORT_JOBS_KEY] = members_io.ImportJobs(database)
    app.on_shutdown.append(members_io.stop_imports)
    r.add_post("/api/members/import", members_io.post_import)
    r.add_get("/api/imports/{job_id:[A-Za-z0-9_-]+}", members_io.get_import)
    r.add_get("/api/members/export.xlsx", members_io.export_members)
    r.add_get("/api/meetings/export.xlsx", members_io.export_meetings)
    r.add_get("/api/meetings/{meeting_id:\\d+}/export.xlsx", members_io.export_meeting)
    r.add_post("/api/meeting-token", meeting_tokens.post_meeting_token)
    r.add_get("/api/supervision/live", supervision.list_live)
    r.add_post("/api/supervision/view", supervision.post_view)
    r.add_get("/api/supervision/views", supervision.list_views)
    r.add_get("/api/recordings", recordings.list_recordings)
    r.add_get("/api/recordings/status", recordings.get_recording_status)
    r.add_get("/api/recordings/{recording_id:\\d+}/download", recordings.download_recording)
    r.add_get("/api/recordings/{recording_id:\\d+}", recordings.get_recording)
    r.add_get("/api/recordings/{recording_id:\\d+}/segments/{seq:\\d+}", recordings.get_segment)
