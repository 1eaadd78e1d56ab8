"""The application's typed keys (aiohttp AppKey): one per service the composition root
builds and hands to the handlers, named once here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from db.accounts import PasswordHashing, TokenService
from db.database import Database
from db.duty.store import DutyClock
from db.duty.watch import DutyWatch
from recognition.duty_service import DutyRecognition
from recognition.service import RecognitionService
from recorder.service import RecordingService
from sfu.looplag import LoopLag
from sfu.plane import MediaPlane
from sfu.registry import RoomRegistry
from sfu.workers import WorkerPool
from signaling.duty_rooms import DutyRooms
from signaling.emergencies import EmergencyDesk
from signaling.lobby import TerminalLobby
from signaling.meetings import MeetingRooms
from signaling.notifications import LiveEvents
from signaling.server import SignalingService
from signaling.tokens import TokenIssuer

from .config import Config

CONFIG_KEY = web.AppKey("config", Config)
DATABASE_KEY = web.AppKey("database", Database)
# staff and terminal API tokens (db/accounts.py)
TOKEN_SERVICE_KEY = web.AppKey("token_service", TokenService)
PASSWORDS_KEY = web.AppKey("passwords", PasswordHashing)
# meeting tokens: what a participant presents on the signaling socket
TOKENS_KEY = web.AppKey("meeting_tokens", TokenIssuer)
ROOMS_KEY = web.AppKey("rooms", RoomRegistry)
PLANE_KEY = web.AppKey("media_plane", MediaPlane)
LOOP_LAG_KEY = web.AppKey("loop_lag", LoopLag)
WORKER_POOL_KEY = web.AppKey("worker_pool", WorkerPool)
SIGNALING_KEY = web.AppKey("signaling", SignalingService)
LOBBY_KEY = web.AppKey("lobby", TerminalLobby)
MEETING_ROOMS_KEY = web.AppKey("meeting_rooms", MeetingRooms)
EMERGENCY_DESK_KEY = web.AppKey("emergency_desk", EmergencyDesk)
RECORDING_SERVICE_KEY = web.AppKey("recording_service", RecordingService)
RECORDINGS_DIR_KEY = web.AppKey("recordings_dir", Path)
RECOGNITION_KEY = web.AppKey("recognition", RecognitionService)
EVIDENCE_DIR_KEY = web.AppKey("evidence_dir", Path)
# ends every connection of a participant whose access was revoked; returns how many
DISCONNECT_KEY = web.AppKey[Callable[[str], Awaitable[int]]]("disconnect_participant")
# duty attendance: the county's clock, the watch, the duty cameras, live page events
DUTY_CLOCK_KEY = web.AppKey("duty_clock", DutyClock)
DUTY_WATCH_KEY = web.AppKey("duty_watch", DutyWatch)
DUTY_RECOGNITION_KEY = web.AppKey("duty_recognition", DutyRecognition)
DUTY_ROOMS_KEY = web.AppKey("duty_rooms", DutyRooms)
LIVE_EVENTS_KEY = web.AppKey("live_events", LiveEvents)
