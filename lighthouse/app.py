"""The composition root: builds the aiohttp application from a Config."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db import supervision
from db.accounts import PasswordHashing, TokenService
from db.database import Database
from db.duty.store import DutyClock, camera_windows
from db.duty.watch import DutyWatch
from db.models import Emergency, EmergencyStatus, MainVenue, Meeting, MeetingStatus, OrgUnit
from db.tree import meeting_site_paths
from recognition.duty_service import DutyRecognition
from recognition.pipeline import RecognitionSettings
from recognition.service import RecognitionConfig, RecognitionService
from recognition.watcher import SamplingSettings
from recorder.service import RecordingLimits, RecordingService
from sfu.aiortc_seam import check_seam
from sfu.candidates import CandidatePolicy
from sfu.cluster import ClusterState
from sfu.looplag import LoopLag
from sfu.plane import MediaPlane
from sfu.ports import PortAllocator, PortRange
from sfu.registry import RoomRegistry
from sfu.room import Room, RoomSettings, ServerLimits
from sfu.workers import WorkerPool
from signaling.caps import SocketCaps
from signaling.duty_rooms import DutyRooms, DutyRoomSettings
from signaling.emergencies import EmergencyDesk, EmergencyRoomSettings
from signaling.lobby import TerminalLobby, chain_greetings
from signaling.meetings import MeetingRoomDefaults, MeetingRooms
from signaling.notifications import LiveEvents, WebhookSender
from signaling.server import SignalingService
from signaling.tokens import SigningKeys, TokenIssuer
from signaling.turn import IceServersForClients, TurnRestCredentials

from .config import Config
from .demo import DEMO_ROOM
from .keys import (
    CONFIG_KEY,
    DISCONNECT_KEY,
    DUTY_CLOCK_KEY,
    DUTY_RECOGNITION_KEY,
    DUTY_ROOMS_KEY,
    DUTY_WATCH_KEY,
    EMERGENCY_DESK_KEY,
    EVIDENCE_DIR_KEY,
    LIVE_EVENTS_KEY,
    LOBBY_KEY,
    LOOP_LAG_KEY,
    MEETING_ROOMS_KEY,
    PASSWORDS_KEY,
    PLANE_KEY,
    RECOGNITION_KEY,
    RECORDING_SERVICE_KEY,
    SIGNALING_KEY,
    WORKER_POOL_KEY,
)
from .presence import PresenceRecorder, TerminalDirectory
from .proxies import TrustedProxies, parse_networks

logger = logging.getLogger(__name__)


def build_rooms(config: Config, plane: MediaPlane) -> RoomRegistry:
    """The registry with the configured (standing) rooms open."""
    room_configs = list(config.rooms)
    if config.demo and not any(r.id == DEMO_ROOM.id for r in room_configs):
        room_configs.append(DEMO_ROOM)
    rooms = RoomRegistry(
        plane,
        list(config.ice_servers),
        ServerLimits(
            max_peer_connections=config.max_peer_connections,
            candidates=CandidatePolicy(
                config.max_remote_candidates, config.allow_loopback_candidates
            ),
        ),
    )
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
    udp_ports = PortRange.parse(config.udp_ports) if config.udp_ports else None
    announced = config.announced_address or None
    if not config.workers:
        ports = PortAllocator(udp_ports, announced) if udp_ports else None
        return MediaPlane.single_process(ports), None
    plane = MediaPlane()
    plane.cluster = ClusterState(config.redis_url)
    pool = WorkerPool(
        plane,
        config.workers,
        plane.cluster,
        log_level=config.log_level,
        max_peers=config.worker_max_peers or None,
        udp_ports=udp_ports,
        announced_address=announced,
    )
    return plane, pool


def create_app(config: Config) -> web.Application:
    # Fail at start-up, not mid-meeting, if aiortc is not the version the SFU hooks.
    check_seam()
    from web.api import add_api_routes
    from web.pages import add_page_routes

    signing_keys = SigningKeys(config.secret, config.previous_secrets)
    tokens = TokenIssuer(signing_keys)
    plane, worker_pool = build_media_plane(config)
    rooms = build_rooms(config, plane)
    database = Database(config.database_url)
    api_tokens = TokenService(signing_keys)
    passwords = PasswordHashing()

    async def is_revoked(token_id: str) -> bool:
        async with database.session() as session:
            return await api_tokens.is_revoked(session, token_id)

    terminals = TerminalDirectory(database, api_tokens, rooms)
    socket_caps = {"per_address": config.max_sockets_per_address, "total": config.max_sockets}
    lobby = TerminalLobby(
        terminals.authenticate, on_online=terminals.set_online, idle_timeout_s=config.idle_timeout_s
    )
    lobby.caps = SocketCaps(**socket_caps)
    recording = build_recording(config, database)
    recognition = build_recognition(config, database)
    duty_clock = DutyClock(ZoneInfo(config.county_timezone))
    live_events = LiveEvents()
    webhooks = WebhookSender(database, config.webhooks)

    async def duty_outbox(session: AsyncSession, event: dict) -> None:
        await webhooks.enqueue(session, event["event"], event.get("org_path"), event)

    async def duty_told(events: list[dict]) -> None:
        for event in events:
            live_events.publish(event, event.get("org_path") or "/")
        webhooks.wake()

    duty_watch = (
        DutyWatch(
            database,
            duty_clock,
            on_alert=duty_outbox,
            after_commit=duty_told,
            tick_s=config.duty_tick_s,
        )
        if config.duty_enabled
        else None
    )
    duty_cameras = (
        DutyRecognition(database, recognition, duty_watch, on_seen=lobby.send_to)
        if recognition is not None and config.duty_enabled
        else None
    )

    async def duty_room_opened(room: Room) -> None:
        if duty_cameras is not None:
            duty_cameras.attach_room(room)

    async def duty_room_closed(room: Room) -> None:
        await signaling.end_room(room.id)
        if duty_cameras is not None:
            await duty_cameras.forget_room(room)

    async def duty_windows() -> dict:
        async with database.session() as session:
            return await camera_windows(session, duty_clock)

    duty_rooms = (
        DutyRooms(
            rooms,
            tokens,
            lobby,
            duty_windows,
            # a meeting that calls the TV holds it; a kiosk is never called
            busy=lambda identity: (
                identity.meeting_venue and meeting_rooms.meeting_for(identity.org_path) is not None
            ),
            settings=DutyRoomSettings(
                video_codec=config.meeting_video_codec, tick_s=config.duty_tick_s
            ),
            on_room_opened=duty_room_opened,
            on_room_closed=duty_room_closed,
        )
        if duty_cameras is not None
        else None
    )

    async def meeting_room_opened(room: Room, meeting_id: int) -> None:
        if duty_rooms is not None:
            duty_rooms.meeting_opened()
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
        if duty_rooms is not None:  # its TVs are idle again: back on duty, if due
            duty_rooms.poke()

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
        standing_room_for=terminals.standing_room_for,
    )
    lobby.greeting = meeting_rooms.greeting
    if duty_rooms is not None:
        lobby.greeting = chain_greetings(meeting_rooms.greeting, duty_rooms.greeting)

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
        on_presence=PresenceRecorder(database, rooms, lobby),
        ice_servers=IceServersForClients(
            config.ice_servers,
            TurnRestCredentials(config.turn_secret, config.turn_urls, config.turn_ttl_s)
            if config.turn_secret
            else None,
        ),
    )
    signaling.caps = SocketCaps(**socket_caps)

    # first, so that every limit, audit entry and cookie sees the client behind the proxy
    proxies = TrustedProxies(parse_networks(config.trusted_proxies))
    app = web.Application(client_max_size=1024 * 1024, middlewares=[proxies.middleware])
    app[CONFIG_KEY] = config
    app[SIGNALING_KEY] = signaling
    app[LOBBY_KEY] = lobby
    app[MEETING_ROOMS_KEY] = meeting_rooms
    app[EMERGENCY_DESK_KEY] = emergency_desk
    app.router.add_get("/ws", signaling.handle)
    app.router.add_get("/ws/terminal", lobby.handle)
    app.router.add_get("/healthz", _healthz)
    app[PLANE_KEY] = plane
    app[PASSWORDS_KEY] = passwords
    loop_lag = app[LOOP_LAG_KEY] = LoopLag()
    if worker_pool is not None:
        app[WORKER_POOL_KEY] = worker_pool
    add_api_routes(app, database, api_tokens, rooms, tokens, Path(config.recording_dir))
    app[DISCONNECT_KEY] = signaling.disconnect
    if recording is not None:
        app[RECORDING_SERVICE_KEY] = recording
    app[EVIDENCE_DIR_KEY] = Path(config.evidence_dir).resolve()
    if recognition is not None:
        app[RECOGNITION_KEY] = recognition
    app[DUTY_CLOCK_KEY] = duty_clock
    app[LIVE_EVENTS_KEY] = live_events
    if duty_watch is not None:
        app[DUTY_WATCH_KEY] = duty_watch
    if duty_cameras is not None:
        app[DUTY_RECOGNITION_KEY] = duty_cameras
    if duty_rooms is not None:
        app[DUTY_ROOMS_KEY] = duty_rooms
    add_page_routes(app, public_url=config.public_url, time_zone=config.county_timezone)

    async def close_connections_and_rooms(_: web.Application) -> None:
        # before the server waits for its handlers: sockets close, then every room, so
        # each recording sees its end of stream before the recorder stops
        live_events.close()
        await lobby.close()
        await signaling.close()
        await meeting_rooms.close_all()
        await emergency_desk.close_all()
        await rooms.close_all()

    async def password_pool(_: web.Application) -> AsyncIterator[None]:
        yield
        passwords.close()

    async def database_lifetime(_: web.Application) -> AsyncIterator[None]:
        _ensure_sqlite_dir(config.database_url)
        await database.migrate()
        async with database.session() as session:
            if await supervision.close_dangling(session):  # views a crash left open
                await session.commit()
        yield
        await database.close()

    async def media_workers(_: web.Application) -> AsyncIterator[None]:
        if worker_pool is None:
            yield
            return
        worker_pool.on_lost = signaling.move_off_worker  # its TVs reconnect elsewhere
        await worker_pool.start()
        yield
        await worker_pool.close()

    async def recorder_lifetime(_: web.Application) -> AsyncIterator[None]:
        if recording is not None:
            await recording.start(rooms.values())
        yield
        if recording is not None:
            await recording.close()

    async def recognizer_lifetime(_: web.Application) -> AsyncIterator[None]:
        if recognition is not None:
            await recognition.start()
        yield
        if recognition is not None:
            await recognition.close()

    async def duty_lifetime(_: web.Application) -> AsyncIterator[None]:
        # after the recognizer (the duty cameras use its engine and pool)
        await webhooks.start()
        if duty_watch is not None:
            await duty_watch.start()
        if duty_cameras is not None:
            await duty_cameras.start()
        if duty_rooms is not None:
            await duty_rooms.start()
        yield
        if duty_rooms is not None:
            await duty_rooms.close()
        if duty_cameras is not None:
            await duty_cameras.close()
        if duty_watch is not None:
            await duty_watch.close()
        await webhooks.close()

    async def loop_lag_probe(_: web.Application) -> AsyncIterator[None]:
        # the front's own event loop (in one process, the forwarding loop too)
        loop_lag.start()
        yield
        loop_lag.stop()

    async def reopened_rooms(_: web.Application) -> AsyncIterator[None]:
        # last: the workers, the recorder and the recognizer are ready for them
        await reopen_live_meetings(database, meeting_rooms)
        await reopen_emergencies(database, emergency_desk)
        yield

    # started in this order, stopped in the reverse one (after on_shutdown)
    app.cleanup_ctx.extend(
        [
            loop_lag_probe,
            password_pool,
            database_lifetime,
            # the face models load first: a bad models dir stops the start before any
            # other service has work in flight
            recognizer_lifetime,
            duty_lifetime,
            media_workers,
            recorder_lifetime,
            reopened_rooms,
        ]
    )
    app.on_shutdown.append(close_connections_and_rooms)
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
                main_expected=meeting.main_venue != MainVenue.NONE,
            )


async def reopen_emergencies(database: Database, desk: EmergencyDesk) -> None:
    """Active emergencies get their rooms back: the phone reconnects by itself."""
    async with database.session() as session:
        active = await session.scalars(
            select(Emergency).where(Emergency.status == EmergencyStatus.ACTIVE)
        )
        for emergency in active:
            await desk.open(emergency.id, title=emergency.org.name, org_code=emergency.org.code)


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
    """Public, for load balancers and the operator's probe: ok or not, and the front's
    longest event-loop stall of the last 10 s. Which rooms exist (an emergency's among
    them) and how many are in each is for signed-in staff: /api/status."""
    plane = request.app[PLANE_KEY]
    media_workers = [w for w in plane.workers.values() if w.capacity != 0]
    down = plane.workers and media_workers and not any(w.alive for w in media_workers)
    return web.json_response(
        {
            "status": "no_media_worker" if down else "ok",
            "loop_stall_ms": request.app[LOOP_LAG_KEY].recent_max_ms(10),
        },
        status=503 if down else 200,
    )
