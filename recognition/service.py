"""Face sign-in in the running server: which cameras are watched, against whom, and what
the results become in the database.

`RecognitionService.attach_room(room, meeting_id)` listens to a meeting room's
publications. Each village TV's camera (a `terminal:` participant publishing its camera)
gets a `CameraWatcher` once its gallery is loaded: the enrolments of the members around
the TV (its unit's subtree, widened by `neighbour_levels` units up the tree), made by the
running engine. A 30-person branch is compared with its own members, never the county.

Results, on the event loop:
- a **sign-in** (once per member per meeting, across venues and restarts): a `SignIn` row
  with the face crop and the scene as JPEG files under the evidence directory, the
  member's `Attendance` marked present by face (the meeting record starts from it), and a
  `signin` event on the room's timeline;
- an **unknown face** or a **still picture** refused by the liveness check: a
  `MeetingSnapshot` with the face and the scene, kept for review;
- a **scene snapshot** at the camera's start and every `snapshot_every_s`.

Enrolments made or deleted while a meeting runs reach its watchers (`enrolments_changed`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from db import audit
from db.database import Database
from db.models import (
    Attendance,
    AttendanceStatus,
    DutySighting,
    FaceEnrolment,
    Meeting,
    MeetingSnapshot,
    Member,
    RoomEvent,
    SignIn,
    SignInMethod,
    SignInReview,
    SnapshotKind,
    Terminal,
)
from db.participants import ParticipantId
from sfu.room import Publication, Room
from sfu.vocabulary import Source

from .engine import FaceEngine
from .gallery import Gallery
from .pipeline import FacePipeline, RecognitionSettings, Rejected
from .pipeline import SignIn as FaceSignIn
from .watcher import CameraWatcher, SamplingSettings, WatchResult

logger = logging.getLogger(__name__)
SYSTEM_ACTOR = "system:recognition"


@dataclass(frozen=True)
class RecognitionConfig:
    evidence_dir: Path
    pipeline: RecognitionSettings = field(default_factory=RecognitionSettings)
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    workers: int = 2  # threads for decoding and inference
    # how far up the tree a TV's gallery reaches: 0 its own unit (a village and its
    # branches), 1 its parent's subtree (the town's villages), ...
    neighbour_levels: int = 0
    # face crops and scene pictures older than this are deleted (the sign-in stays, its
    # pictures go; snapshots go whole); 0 keeps them for ever
    evidence_retention_days: int = 365
    retention_interval_s: float = 3600.0


@dataclass(frozen=True)
class Venue:
    """A watched camera: the TV's participant id, its name and its place in the tree."""

    meeting_id: int
    room_id: str
    participant_id: str
    name: str
    org_path: str
    scope_path: str  # whose enrolments are compared (org_path widened by neighbour_levels)


def widen(org_path: str, levels: int) -> str:
    """The path `levels` units up from org_path ("/1/2/5/", 1 → "/1/2/"), never above the
    root."""
    ids = org_path.strip("/").split("/")
    keep = max(1, len(ids) - max(0, levels))
    return "/" + "/".join(ids[:keep]) + "/"


async def load_gallery(session, model_id: str, scope_path: str) -> tuple[Gallery, int]:
    """The enrolments under `scope_path` made by `model_id`, and how many others there are
    (made by another model: those members must be enrolled again)."""
    rows = await session.execute(
        select(FaceEnrolment.member_id, FaceEnrolment.model_id, FaceEnrolment.embedding).where(
            FaceEnrolment.org_path.like(f"{scope_path}%")
        )
    )
    faces: dict[str, list[np.ndarray]] = {}
    stale = 0
    for member_id, enrolled_by, embedding in rows:
        if enrolled_by != model_id:
            stale += 1
            continue
        faces.setdefault(str(member_id), []).append(np.frombuffer(embedding, np.float32))
    return Gallery(model_id, faces), stale


class RecognitionService:
    def __init__(
        self,
        database: Database,
        engine_factory: Callable[[], FaceEngine],
        config: RecognitionConfig,
    ) -> None:
        self.database = database
        self.engine_factory = engine_factory
        self.config = config
        self.engine: FaceEngine | None = None
        self.executor: ThreadPoolExecutor | None = None
        self.watchers: dict[str, tuple[Venue, CameraWatcher]] = {}  # by publication id
        self.signins = 0
        self.snapshots = 0
        self._listeners: dict[str, Callable] = {}  # room id: its publication listener
        self._tasks: set[asyncio.Task] = set()
        self._closed = False

    # -- lifetime ----------------------------------------------------------------------
    async def start(self) -> None:
        self.engine = await asyncio.to_thread(self.engine_factory)
        self.executor = ThreadPoolExecutor(
            max_workers=self.config.workers, thread_name_prefix="recognition"
        )
        self.config.evidence_dir.mkdir(parents=True, exist_ok=True)
        if self.config.evidence_retention_days > 0:
            self._spawn(self._retention_forever(), "evidence-retention")

    def attach_room(self, room: Room, meeting_id: int) -> None:
        """Watch the village cameras of a meeting's room, from now on and those flowing."""
        if room.id in self._listeners:
            return

        async def on_publication(publication: Publication) -> None:
            self._watch(publication, meeting_id)

        self._listeners[room.id] = on_publication
        room.publication_listeners.append(on_publication)
        for publication in tuple(room.publications.values()):
            if publication.announced and not publication.closed:
                self._watch(publication, meeting_id)

    def forget_room(self, room: Room) -> None:
        listener = self._listeners.pop(room.id, None)
        if listener in room.publication_listeners:
            room.publication_listeners.remove(listener)
        for publication_id, (venue, watcher) in tuple(self.watchers.items()):
            if venue.room_id == room.id:
                self._stop(publication_id, watcher)

    async def close(self) -> None:
        self._closed = True
        for task in tuple(self._tasks):
            task.cancel()
        for publication_id, (_, watcher) in tuple(self.watchers.items()):
            self._stop(publication_id, watcher)
        if self._tasks:
            await asyncio.gather(*tuple(self._tasks), return_exceptions=True)
        if self.executor is not None:
            await asyncio.to_thread(self.executor.shutdown, wait=True, cancel_futures=True)

    def _stop(self, publication_id: str, watcher: CameraWatcher) -> None:
        self.watchers.pop(publication_id, None)
        if watcher.subscription is not None:
            watcher.subscription.close()
        watcher.ended = True

    def _spawn(self, coroutine, name: str) -> None:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("face sign-in task %s failed", task.get_name(), exc_info=task.exception())

    # -- watching ------------------------------------------------------------------------
    @staticmethod
    def watches(publication: Publication) -> bool:
        """A village TV's camera: a terminal publishing video from its camera."""
        return (
            ParticipantId.parse(publication.peer.participant_id).terminal_id is not None
            and publication.source == Source.CAMERA
            and "video" in publication.kinds
        )

    def _watch(self, publication: Publication, meeting_id: int) -> None:
        if self._closed or self.engine is None or publication.id in self.watchers:
            return
        if self.watches(publication):
            self._spawn(self._start_watching(publication, meeting_id), f"watch-{publication.id}")

    async def _start_watching(self, publication: Publication, meeting_id: int) -> None:
        assert self.engine is not None and self.executor is not None
        peer = publication.peer
        terminal_id = ParticipantId.parse(peer.participant_id).terminal_id
        async with self.database.session() as session:
            terminal = await session.get(Terminal, terminal_id) if terminal_id is not None else None
            if terminal is None or terminal.org_path is None:
                logger.warning("not watching %s: the terminal has no place", peer.participant_id)
                return
            venue = Venue(
                meeting_id,
                peer.room.id,
                peer.participant_id,
                peer.name,
                terminal.org_path,
                widen(terminal.org_path, self.config.neighbour_levels),
            )
            gallery, stale = await load_gallery(session, self.engine.model_id, venue.scope_path)
            signed_in = await session.scalars(
                select(SignIn.member_id).where(SignIn.meeting_id == meeting_id)
            )
            already = {str(member_id) for member_id in signed_in}
        if publication.closed or self._closed:
            return
        if stale:
            logger.warning(
                "%s: %d enrolment photos were made by another face model: enrol again",
                venue.name,
                stale,
            )
        pipeline = FacePipeline(self.engine, gallery, self.config.pipeline)
        # a member signed in at another venue, or before a restart, is not signed in again
        pipeline.signed_in |= already
        watcher = CameraWatcher(
            pipeline,
            self.executor,
            lambda w, result: self._spawn(self._store(venue, result), "face-result"),
            self.config.sampling,
            name=venue.name,
        )
        self.watchers[publication.id] = (venue, watcher)
        watcher.subscription = publication.subscribe_locally(watcher)
        logger.info(
            "watching %s for faces: %d members enrolled around it", venue.name, len(gallery)
        )

    async def enrolments_changed(self, org_path: str) -> None:
        """A member's enrolment photos changed: the watchers around them reload."""
        if self.engine is None:
            return
        galleries: dict[str, Gallery] = {}  # one load per scope, however many cameras
        for venue, watcher in tuple(self.watchers.values()):
            if not org_path.startswith(venue.scope_path):
                continue
            if venue.scope_path not in galleries:
                async with self.database.session() as session:
                    galleries[venue.scope_path], _ = await load_gallery(
                        session, self.engine.model_id, venue.scope_path
                    )
            watcher.replace_gallery(galleries[venue.scope_path])

    # -- results -------------------------------------------------------------------------
    async def _store(self, venue: Venue, result: WatchResult) -> None:
        # the frame's arrival, in UTC: the result reached the loop a little later
        at = datetime.now(UTC) - timedelta(seconds=max(0.0, time.monotonic() - result.at))
        for decision in result.decisions:
            if isinstance(decision, FaceSignIn):
                await self._sign_in(venue, decision, at)
            elif isinstance(decision, Rejected):
                await self._keep_rejected(venue, decision, result.scene_jpeg or b"", at)
        if result.scheduled_snapshot and result.scene_jpeg:
            await self._snapshot(venue, SnapshotKind.SCENE, result.scene_jpeg, None, at)

    async def _sign_in(self, venue: Venue, decision: FaceSignIn, at: datetime) -> None:
        member_id = int(decision.member)
        async with self.database.session() as session:
            member = await session.get(Member, member_id)
            if member is None:
                return
            exists = await session.scalar(
                select(SignIn.id).where(
                    SignIn.meeting_id == venue.meeting_id, SignIn.member_id == member_id
                )
            )
            if exists is not None:  # signed in already (by hand, or at another venue)
                return
            stem = f"{at:%H%M%S}-signin-{member_id}"
            face = await self._write(venue, f"{stem}-face.jpg", decision.face_jpeg)
            scene = await self._write(venue, f"{stem}-scene.jpg", decision.scene_jpeg)
            session.add(
                SignIn(
                    meeting_id=venue.meeting_id,
                    member_id=member_id,
                    org_path=member.org_path,
                    method=SignInMethod.FACE,
                    at=at,
                    similarity=decision.similarity,
                    participant_id=venue.participant_id,
                    venue_name=venue.name,
                    face_photo=face,
                    scene_photo=scene,
                    review=SignInReview.PENDING,
                )
            )
            attendance = await session.scalar(
                select(Attendance).where(
                    Attendance.meeting_id == venue.meeting_id, Attendance.member_id == member_id
                )
            )
            if attendance is None:  # the record is the secretary's: never overwritten
                session.add(
                    Attendance(
                        meeting_id=venue.meeting_id,
                        member_id=member_id,
                        status=AttendanceStatus.PRESENT,
                        method=SignInMethod.FACE,
                        signed_in_at=at,
                    )
                )
            session.add(
                RoomEvent(
                    room_id=venue.room_id,
                    at=at,
                    kind="signin",
                    participant_id=venue.participant_id,
                    name=member.name,
                    org_path=member.org_path,
                    detail={
                        "member_id": member_id,
                        "method": "face",
                        "similarity": decision.similarity,
                        "venue": venue.name,
                    },
                )
            )
            try:
                await session.commit()
            except IntegrityError:  # signed in at another venue a moment ago
                await session.rollback()
                return
        self.signins += 1
        logger.info("%s signed in by face at %s (%.2f)", member_id, venue.name, decision.similarity)

    async def _keep_rejected(
        self, venue: Venue, decision: Rejected, scene_jpeg: bytes, at: datetime
    ) -> None:
        kind = (
            SnapshotKind.STILL_PICTURE
            if decision.reason == "still_picture"
            else SnapshotKind.UNKNOWN_FACE
        )
        best = int(decision.best_member) if decision.best_member else None
        await self._snapshot(venue, kind, scene_jpeg, decision.face_jpeg, at, best, decision)

    async def _snapshot(
        self,
        venue: Venue,
        kind: SnapshotKind,
        scene_jpeg: bytes,
        face_jpeg: bytes | None,
        at: datetime,
        best_member: int | None = None,
        decision: Rejected | None = None,
    ) -> None:
        stem = f"{at:%H%M%S}-{kind.value}-{secrets.token_hex(3)}"
        scene = await self._write(venue, f"{stem}-scene.jpg", scene_jpeg)
        face = await self._write(venue, f"{stem}-face.jpg", face_jpeg) if face_jpeg else None
        async with self.database.session() as session:
            snapshot = MeetingSnapshot(
                meeting_id=venue.meeting_id,
                kind=kind,
                at=at,
                participant_id=venue.participant_id,
                venue_name=venue.name,
                org_path=venue.org_path,
                scene_photo=scene,
                face_photo=face,
                best_member_id=best_member,
                similarity=round(decision.similarity, 4) if decision else None,
            )
            session.add(snapshot)
            await session.flush()
            session.add(
                RoomEvent(
                    room_id=venue.room_id,
                    at=at,
                    kind="snapshot",
                    participant_id=venue.participant_id,
                    name=venue.name,
                    org_path=venue.org_path,
                    detail={"snapshot_id": snapshot.id, "kind": kind.value},
                )
            )
            await session.commit()
        self.snapshots += 1

    async def _write(self, venue: Venue, name: str, data: bytes) -> str:
        """An evidence file: `meeting-<id>/<venue>/<name>`, relative to the evidence dir."""
        relative = f"meeting-{venue.meeting_id}/{_safe(venue.participant_id)}/{name}"
        path = self.config.evidence_dir / relative
        await asyncio.to_thread(_write_file, path, data)
        return relative

    # -- retention ---------------------------------------------------------------------
    async def apply_evidence_retention(self, now: datetime | None = None) -> int:
        """Delete the evidence pictures older than the retention period: a face sign-in
        keeps its record (who, when, how sure) without pictures, a snapshot goes whole, a
        duty sighting keeps its times. Audited per meeting and per village. Returns how
        many files were deleted."""
        days = self.config.evidence_retention_days
        cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
        async with self.database.session() as session:
            signins = (
                await session.scalars(
                    select(SignIn).where(
                        SignIn.at < cutoff,
                        (SignIn.face_photo.is_not(None)) | (SignIn.scene_photo.is_not(None)),
                    )
                )
            ).all()
            snapshots = (
                await session.scalars(select(MeetingSnapshot).where(MeetingSnapshot.at < cutoff))
            ).all()
            files = await _expire_duty_evidence(session, cutoff, days)
            if not signins and not snapshots and not files:
                return 0
            per_meeting: dict[int, dict[str, int]] = {}
            for signin in signins:
                files += [p for p in (signin.face_photo, signin.scene_photo) if p]
                signin.face_photo = signin.scene_photo = None
                counts = per_meeting.setdefault(signin.meeting_id, {"signins": 0, "snapshots": 0})
                counts["signins"] += 1
            for snapshot in snapshots:
                files += [p for p in (snapshot.face_photo, snapshot.scene_photo) if p]
                await session.delete(snapshot)
                counts = per_meeting.setdefault(snapshot.meeting_id, {"signins": 0, "snapshots": 0})
                counts["snapshots"] += 1
            meetings = {
                m.id: m
                for m in await session.scalars(select(Meeting).where(Meeting.id.in_(per_meeting)))
            }
            for meeting_id, counts in per_meeting.items():
                meeting = meetings.get(meeting_id)
                audit.record(
                    session,
                    None,
                    "evidence.expired",
                    actor=SYSTEM_ACTOR,
                    target_type="meeting",
                    target_id=meeting_id,
                    org_path=meeting.org_path if meeting else None,
                    detail={**counts, "retention_days": days},
                )
            # the rows first: a crash in between leaves files no row names, never rows
            # naming files that are gone
            await session.commit()
        removed = await asyncio.to_thread(_remove_evidence, self.config.evidence_dir, files)
        logger.info(
            "evidence retention: %d sign-ins' and %d snapshots' pictures and duty sightings'"
            " deleted (%d files)",
            len(signins),
            len(snapshots),
            removed,
        )
        return removed

    async def _retention_forever(self) -> None:
        while True:
            try:
                await self.apply_evidence_retention()
            except Exception:
                logger.exception("evidence retention failed; trying again later")
            await asyncio.sleep(self.config.retention_interval_s)

    def stats(self) -> dict[str, object]:
        return {
            "cameras": len(self.watchers),
            "signins": self.signins,
            "snapshots": self.snapshots,
            "watchers": {venue.name: w.stats() for venue, w in self.watchers.values()},
        }


async def _expire_duty_evidence(session, cutoff: datetime, days: int) -> list[str]:
    """Duty sightings older than the cutoff lose their pictures (the sighting stays: who,
    where, from when to when, how sure), audited per village. Returns the files."""
    sightings = (
        await session.scalars(
            select(DutySighting).where(
                DutySighting.last_at < cutoff,
                DutySighting.first_face.is_not(None)
                | DutySighting.first_scene.is_not(None)
                | DutySighting.last_face.is_not(None)
                | DutySighting.last_scene.is_not(None),
            )
        )
    ).all()
    files: list[str] = []
    per_village: dict[int, tuple[str, int]] = {}
    for sighting in sightings:
        pictures = (
            sighting.first_face,
            sighting.first_scene,
            sighting.last_face,
            sighting.last_scene,
        )
        files += sorted({p for p in pictures if p})  # the first and last may be one pair
        sighting.first_face = sighting.first_scene = None
        sighting.last_face = sighting.last_scene = None
        _, count = per_village.get(sighting.village_id, (sighting.org_path, 0))
        per_village[sighting.village_id] = (sighting.org_path, count + 1)
    for village_id, (org_path, count) in per_village.items():
        audit.record(
            session,
            None,
            "evidence.expired",
            actor=SYSTEM_ACTOR,
            target_type="village",
            target_id=village_id,
            org_path=org_path,
            detail={"duty_sightings": count, "retention_days": days},
        )
    return files


def _remove_evidence(root: Path, relatives: list[str]) -> int:
    """Delete the files (paths relative to `root`, never outside it) and the folders they
    leave empty; how many files were there."""
    removed = 0
    folders: set[Path] = set()
    base = root.resolve()
    for relative in relatives:
        path = (root / relative).resolve()
        if not path.is_relative_to(base):
            continue
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
        except OSError:  # the row is gone already: say so, and go on with the rest
            logger.exception("evidence retention could not delete %s", path)
        folders.update(p for p in path.parents if p.is_relative_to(base) and p != base)
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        try:
            folder.rmdir()  # only when empty
        except OSError:
            pass
    return removed


def _write_file(path: Path, data: bytes) -> None:
    temporary = path.with_suffix(".part")
    for attempt in range(3):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            temporary.write_bytes(data)
            break
        except FileNotFoundError:  # retention removed the emptied folder just now
            if attempt == 2:
                raise
    temporary.replace(path)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
