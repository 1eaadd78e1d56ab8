"""The composition root: builds the aiohttp application from a Config."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from aiohttp import web
from sqlalchemy import select

from db import supervision
from db.accounts import AuthError, TokenService, record_presence
from db.database import Database
from db.models import Emergency, EmergencyStatus, Meeting, MeetingStatus, OrgUnit, Role, Terminal
from db.tree import find_by_code, meeting_site_paths, organiser, related
from recognition.pipeline import RecognitionSettings
from recognition.service import RecognitionConfig, RecognitionService
from recognition.watcher import SamplingSettings
from recorder.service import RecordingLimits, RecordingService
from sfu.aiortc_seam import check_seam
from sfu.cluster import ClusterState
from sfu.plane import MediaPlane
from sfu.registry import RoomRegistry
from sfu.room import Room, RoomSettings
from sfu.workers import WorkerPool
from signaling.emergencies import EmergencyDesk, EmergencyRoomSettings
from signaling.lobby import LobbyRefusal, TerminalIdentity, TerminalLobby
from signaling.meetings import MeetingRoomDefaults, MeetingRooms
from signaling.server import Presence, SignalingService
from signaling.tokens import TokenIssuer
from web.api.common import DISCONNECT_KEY
from web.api.emergencies import EMERGENCY_DESK_KEY
from web.api.faces import EVIDENCE_DIR_KEY, RECOGNITION_KEY
from web.api.live_meetings import MEETING_ROOMS_KEY

from .config import Config
from .demo import DEMO_ROOM

logger = logging.getLogger(__name__)

CONFIG_KEY = web.AppKey("config", Config)
TOKENS_KEY = web.AppKey("tokens", TokenIssuer)
ROOMS_KEY = web.AppKey("rooms", dict)
SIGNALING_KEY = web.AppKey("signaling", SignalingService)
DATABASE_KEY = web.AppKey("database_handle", Database)
LOBBY_KEY = web.AppKey("lobby", TerminalLobby)
PLANE_KEY = web.AppKey("media_plane", MediaPlane)
WORKER_POOL_KEY = web.AppKey("worker_pool", WorkerPool)


def build_rooms(config: Config, plane: MediaPlane) -> RoomRegistry:
    """The registry with the configured (standing) rooms open."""
    room_configs = list(config.rooms)
    if config.demo and not any(r.id == DEMO_ROOM.id for r in room_configs):
        room_configs.append(DEMO_ROOM)
    rooms = RoomRegistry(plane, list(config.ice_servers))
    for r in room_configs:
        rooms.open(
            RoomSettings(
                room_id=r.id,
                name=r.name,
                video_codec=r.video_codec,
                max_video_kbps=r.max_video_kbps,
                org_code=r.org_code,
                record=r.record,
                controlled=r.controlled,
            )
        )
    return rooms


def build_media_plane(config: Config) -> tuple[MediaPlane, WorkerPool | None]:
    """One process: one in-process router. With workers: the front's own router for
    server-side subscribers, and the worker processes (started with the app)."""
    if not config.workers:
        return MediaPlane.single_process(), None
    plane = MediaPlane()
    plane.cluster = ClusterState(config.redis_url)
    pool = WorkerPool(
        plane,
        config.workers,
        plane.cluster,
        log_level=config.log_level,
        max_peers=config.worker_max_peers or None,
    )
    return plane, pool


def create_app(config: Config) -> web.Application:
    # Fail at start-up, not mid-meeting, if aiortc is not the version the SFU hooks.
    check_seam()
    from web.api import add_api_routes
    from web.pages import add_page_routes

    tokens = TokenIssuer(config.secret)
    plane, worker_pool = build_media_plane(config)
    rooms = build_rooms(config, plane)
    database = Database(config.database_url)
    api_tokens = TokenService(config.secret)

    async def is_revoked(token_id: str) -> bool:
        async with database.session() as session:
            return await api_tokens.is_revoked(session, token_id)

    async def on_presence(presence: Presence) -> None:
        async with database.session() as session:
            if presence.hidden:  # a supervisor: into the trail, never onto a timeline
                await record_hidden_view(session, presence)
            else:
                await record_presence(
                    session,
                    presence.room_id,
                    presence.participant_id,
                    presence.name,
                    presence.online,
                    # a TV that leaves a meeting is still online in the lobby
                    terminal_online=presence.online
                    or lobby.is_online(_terminal_id(presence.participant_id)),
                )
            await session.commit()

    async def record_hidden_view(session, presence: Presence) -> None:
        if not presence.online:
            await supervision.view_ended(
                session, supervisor=presence.participant_id, room_id=presence.room_id
            )
            return
        room = rooms.get(presence.room_id)
        org = await organiser(session, room.settings.org_code if room else None)
        await supervision.view_started(
            session,
            supervisor=presence.participant_id,
            supervisor_name=presence.name,
            room_id=presence.room_id,
            room_name=presence.room_name,
            org_path=org.path if org else None,
            mode=presence.purpose or "drop_in",
        )

    async def authenticate_terminal(token: str) -> TerminalIdentity:
        async with database.session() as session:
            try:
                principal = await api_tokens.verify(session, token)
            except AuthError as error:
                raise LobbyRefusal(
                    "invalid_token" if error.code != "token_expired" else error.code,
                    error.message,
                ) from None
            if principal.role != Role.TERMINAL or principal.terminal_id is None:
                raise LobbyRefusal("invalid_token", "this is not a terminal's token")
            terminal = await session.get(Terminal, principal.terminal_id)
            if terminal is None or terminal.revoked_at is not None:
                raise LobbyRefusal("invalid_token", "this terminal's access was revoked")
            return TerminalIdentity(
                terminal_id=terminal.id,
                participant_id=principal.subject,
                name=principal.name,
                org_path=terminal.org_path or principal.org_path,
                token_id=principal.token_id,
            )

    async def terminal_online(identity: TerminalIdentity, online: bool) -> None:
        async with database.session() as session:
            terminal = await session.get(Terminal, identity.terminal_id)
            if terminal is not None:
                in_room = any(
                    room.peer_by_participant(identity.participant_id) for room in rooms.values()
                )
                terminal.online = online or in_room
                terminal.last_seen_at = datetime.now(UTC)
                await session.commit()

    async def standing_room_for(identity: TerminalIdentity) -> Room | None:
        async with database.session() as session:
            for room_id in standing_room_ids:
                room = rooms[room_id]
                code = room.settings.org_code
                org = await find_by_code(session, code) if code else None
                room_path = None if code is None else (org.path if org else None)
                if code is not None and room_path is None:
                    continue
                if related(identity.org_path, room_path):
                    return room
        return None

    standing_room_ids = tuple(rooms)
    lobby = TerminalLobby(
        authenticate_terminal, on_online=terminal_online, idle_timeout_s=config.idle_timeout_s
    )
    recording = build_recording(config, database)
    recognition = build_recognition(config, database)

    async def meeting_room_opened(room: Room, meeting_id: int) -> None:
        if recording is not None:
            recording.attach_room(room, meeting_id)
        if recognition is not None:
            recognition.attach_room(room, meeting_id)

    async def meeting_room_closed(room: Room) -> None:
        await signaling.end_room(room.id)
        if recording is not None:
            recording.forget_room(room)
        if recognition is not None:
            recognition.forget_room(room)

    meeting_rooms = MeetingRooms(
        rooms,
        tokens,
        lobby,
        ice_servers=list(config.ice_servers),
        defaults=MeetingRoomDefaults(
            video_codec=config.meeting_video_codec,
            max_video_kbps=config.meeting_max_video_kbps,
            record=config.meeting_record,
        ),
        on_room_opened=meeting_room_opened,
        on_room_closed=meeting_room_closed,
        standing_room_for=standing_room_for,
    )
    lobby.greeting = meeting_rooms.greeting

    async def emergency_room_opened(room: Room) -> None:
        if recording is not None:  # the call is evidence: recorded like a meeting
            recording.attach_room(room)

    emergency_desk = EmergencyDesk(
        rooms,
        ice_servers=list(config.ice_servers),
        settings=EmergencyRoomSettings(
            video_codec=config.meeting_video_codec,
            max_video_kbps=config.meeting_max_video_kbps,
            record=config.meeting_record,
        ),
        on_room_opened=emergency_room_opened,
        on_room_closed=meeting_room_closed,
    )

    signaling = SignalingService(
        rooms,
        tokens,
        idle_timeout_s=config.idle_timeout_s,
        is_revoked=is_revoked,
        on_presence=on_presence,
    )

    app = web.Application(client_max_size=1024 * 1024)
    app[CONFIG_KEY] = config
    app[TOKENS_KEY] = tokens
    app[ROOMS_KEY] = rooms
    app[SIGNALING_KEY] = signaling
    app[LOBBY_KEY] = lobby
    app[MEETING_ROOMS_KEY] = meeting_rooms
    app[EMERGENCY_DESK_KEY] = emergency_desk
    app.router.add_get("/ws", signaling.handle)
    app.router.add_get("/ws/terminal", lobby.handle)
    app.router.add_get("/healthz", _healthz)
    app[DATABASE_KEY] = database
    app[PLANE_KEY] = plane
    if worker_pool is not None:
        app[WORKER_POOL_KEY] = worker_pool
    add_api_routes(app, database, api_tokens, rooms, tokens, Path(config.recording_dir))
    app[DISCONNECT_KEY] = signaling.disconnect
    if recording is not None:
        from web.api.recordings import RECORDING_SERVICE_KEY

        app[RECORDING_SERVICE_KEY] = recording
    app[EVIDENCE_DIR_KEY] = Path(config.evidence_dir).resolve()
    if recognition is not None:
        app[RECOGNITION_KEY] = recognition
    add_page_routes(
        app,
        ice_servers=[s.to_browser() for s in config.ice_servers],
        public_url=config.public_url,
    )

    async def shutdown(_: web.Application) -> None:
        await lobby.close()
        await signaling.close()
        await meeting_rooms.close_all()
        await emergency_desk.close_all()
        await rooms.close_all()

    async def database_lifetime(_: web.Application):
        _ensure_sqlite_dir(config.database_url)
        await database.migrate()
        async with database.session() as session:
            if await supervision.close_dangling(session):  # views a crash left open
                await session.commit()
        if recording is not None:
            await recording.start(rooms.values())
        if recognition is not None:  # before the meetings reopen: their cameras are watched
            await recognition.start()
        await reopen_live_meetings(database, meeting_rooms)
        await reopen_emergencies(database, emergency_desk)
        yield
        # on_shutdown has closed the rooms by now: every recording has seen its end
        if recording is not None:
            await recording.close()
        if recognition is not None:
            await recognition.close()
        await database.close()

    async def media_workers(_: web.Application):
        if worker_pool is None:
            yield
            return

        async def worker_lost(worker_id: str) -> None:
            await signaling.move_off_worker(worker_id)

        worker_pool.on_lost = worker_lost
        await worker_pool.start()
        yield
        await worker_pool.close()

    # the workers start before the database reopens live meetings and stop after the
    # rooms have closed (on_shutdown)
    app.cleanup_ctx.append(media_workers)
    app.cleanup_ctx.append(database_lifetime)
    app.on_shutdown.append(shutdown)
    return app


async def reopen_live_meetings(database: Database, meeting_rooms: MeetingRooms) -> None:
    """Meetings that were live when the server stopped get their rooms back: their TVs
    reconnect and rejoin by themselves."""
    async with database.session() as session:
        live = (
            await session.scalars(select(Meeting).where(Meeting.status == MeetingStatus.LIVE))
        ).all()
        for meeting in live:
            organiser_unit = await session.get(OrgUnit, meeting.organiser_id)
            await meeting_rooms.open(
                meeting.id,
                topic=meeting.topic,
                organiser_code=organiser_unit.code if organiser_unit else "",
                organiser_path=meeting.org_path,
                site_paths=await meeting_site_paths(session, meeting),
            )


async def reopen_emergencies(database: Database, desk: EmergencyDesk) -> None:
    """Active emergencies get their rooms back: the phone reconnects by itself."""
    async with database.session() as session:
        active = await session.scalars(
            select(Emergency).where(Emergency.status == EmergencyStatus.ACTIVE)
        )
        for emergency in active:
            await desk.open(emergency.id, title=emergency.org.name, org_code=emergency.org.code)


def _terminal_id(participant_id: str) -> int:
    kind, _, ident = participant_id.partition(":")
    return int(ident) if kind == "terminal" and ident.isdigit() else -1


def build_recording(config: Config, database: Database) -> RecordingService | None:
    if not config.recording_enabled:
        return None
    return RecordingService(
        database,
        config.recording_dir,
        RecordingLimits(
            quota_bytes=config.recording_quota_bytes,
            min_free_bytes=config.recording_min_free_bytes,
            retention_days=config.recording_retention_days,
        ),
        segment_s=config.recording_segment_s,
    )


def build_recognition(config: Config, database: Database) -> RecognitionService | None:
    if not config.recognition_enabled:
        return None
    from recognition.engine import load_engine

    return RecognitionService(
        database,
        partial(
            load_engine,
            config.face_models_dir or None,
            providers=config.face_providers,
            batch_across_streams=config.batch_across_streams,
        ),
        RecognitionConfig(
            evidence_dir=Path(config.evidence_dir).resolve(),
            pipeline=RecognitionSettings(
                match_threshold=config.match_threshold,
                margin=config.match_margin,
                liveness=config.liveness,
                liveness_min_residual=config.liveness_min_residual,
            ),
            sampling=SamplingSettings(
                signin_window_s=config.signin_window_s,
                signin_fps=config.signin_fps,
                burst_every_s=config.burst_every_s,
                snapshot_every_s=config.snapshot_every_s,
            ),
            workers=config.recognition_workers,
            neighbour_levels=config.neighbour_levels,
            evidence_retention_days=config.evidence_retention_days,
        ),
    )


def _ensure_sqlite_dir(url: str) -> None:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


async def _healthz(request: web.Request) -> web.Response:
    rooms = request.app[ROOMS_KEY]
    plane = request.app[PLANE_KEY]
    return web.json_response(
        {
            "status": "ok",
            # no per-worker peer counts: they would count hidden supervisors too
            "workers": {
                w.id: {"alive": w.alive} for w in plane.workers.values() if w.capacity != 0
            },
            "rooms": {
                rid: {"peers": len(r.peers), "publications": len(r.publications)}
                for rid, r in rooms.items()
            },
        }
    )
