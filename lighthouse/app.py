"""The composition root: builds the aiohttp application from a Config."""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web

from db import supervision
from db.accounts import TokenService, record_presence
from db.database import Database
from db.tree import organiser
from recorder.service import RecordingLimits, RecordingService
from sfu.aiortc_seam import check_seam
from sfu.room import Room, RoomSettings
from signaling.server import Presence, SignalingService
from signaling.tokens import TokenIssuer
from web.api.common import DISCONNECT_KEY

from .config import Config
from .demo import DEMO_ROOM

logger = logging.getLogger(__name__)

CONFIG_KEY = web.AppKey("config", Config)
TOKENS_KEY = web.AppKey("tokens", TokenIssuer)
ROOMS_KEY = web.AppKey("rooms", dict)
SIGNALING_KEY = web.AppKey("signaling", SignalingService)
DATABASE_KEY = web.AppKey("database_handle", Database)


def build_rooms(config: Config) -> dict[str, Room]:
    room_configs = list(config.rooms)
    if config.demo and not any(r.id == DEMO_ROOM.id for r in room_configs):
        room_configs.append(DEMO_ROOM)
    return {
        r.id: Room(
            RoomSettings(
                room_id=r.id,
                name=r.name,
                video_codec=r.video_codec,
                max_video_kbps=r.max_video_kbps,
                org_code=r.org_code,
                record=r.record,
                controlled=r.controlled,
            ),
            ice_servers=list(config.ice_servers),
        )
        for r in room_configs
    }


def create_app(config: Config) -> web.Application:
    # Fail at start-up, not mid-meeting, if aiortc is not the version the SFU hooks.
    check_seam()
    from web.api import add_api_routes
    from web.pages import add_page_routes

    tokens = TokenIssuer(config.secret)
    rooms = build_rooms(config)
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
    app.router.add_get("/ws", signaling.handle)
    app.router.add_get("/healthz", _healthz)
    app[DATABASE_KEY] = database
    add_api_routes(app, database, api_tokens, rooms, tokens, Path(config.recording_dir))
    app[DISCONNECT_KEY] = signaling.disconnect
    recording = build_recording(config, database)
    if recording is not None:
        from web.api.recordings import RECORDING_SERVICE_KEY

        app[RECORDING_SERVICE_KEY] = recording
    add_page_routes(
        app,
        ice_servers=[s.to_browser() for s in config.ice_servers],
        public_url=config.public_url,
    )

    async def shutdown(_: web.Application) -> None:
        await signaling.close()
        for room in rooms.values():
            await room.close()

    async def database_lifetime(_: web.Application):
        _ensure_sqlite_dir(config.database_url)
        await database.migrate()
        async with database.session() as session:
            if await supervision.close_dangling(session):  # views a crash left open
                await session.commit()
        if recording is not None:
            await recording.start(rooms.values())
        yield
        # on_shutdown has closed the rooms by now: every recording has seen its end
        if recording is not None:
            await recording.close()
        await database.close()

    app.cleanup_ctx.append(database_lifetime)
    app.on_shutdown.append(shutdown)
    return app


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


def _ensure_sqlite_dir(url: str) -> None:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


async def _healthz(request: web.Request) -> web.Response:
    rooms = request.app[ROOMS_KEY]
    return web.json_response(
        {
            "status": "ok",
            "rooms": {
                rid: {"peers": len(r.peers), "publications": len(r.publications)}
                for rid, r in rooms.items()
            },
        }
    )
