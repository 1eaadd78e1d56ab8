"""Duty cameras in the running server: each enabled camera watched against its village's
roster, and what it sees written as sightings with their evidence.

The gallery of a duty camera is the enrolments of the cadres on its village's roster
(a first secretary enrolled elsewhere included), made by the running engine; the face
engine, its worker pool and the evidence directory are the meeting sign-in's
(`RecognitionService`). An RTSP camera is pulled (`recognition.rtsp`); a TV's or a
kiosk's camera comes through the SFU like a meeting's (`watch_publication`).

Sightings: the first `Seen` of one writes a `DutySighting` with the clock-in evidence
(the face crop and the scene, files under `duty-<village>/<date>/`), later ones move its
`last_at` (written at most each `write_every_s`, and whenever they carry fresh evidence,
which becomes the clock-out's). Each new sighting pokes the duty watch, so the day is
judged at once.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import select

from db.database import Database
from db.duty.watch import DutyWatch
from db.models import (
    DutyCadre,
    DutyCamera,
    DutyCameraKind,
    DutySighting,
    FaceEnrolment,
    Member,
)
from db.participants import ParticipantId
from sfu.room import Publication, Room

from .duty import DUTY_SAMPLING, DutyPipeline, DutySettings
from .gallery import Gallery
from .pipeline import Rejected, Seen
from .rtsp import CameraStatus, RtspCamera
from .service import RecognitionService, _write_file
from .watcher import CameraWatcher, WatchResult

logger = logging.getLogger(__name__)


async def roster_gallery(session, model_id: str, village_id: int) -> Gallery:
    """The enrolments of the cadres on a village's roster."""
    rows = await session.execute(
        select(FaceEnrolment.member_id, FaceEnrolment.embedding)
        .join(DutyCadre, DutyCadre.member_id == FaceEnrolment.member_id)
        .where(DutyCadre.village_id == village_id, FaceEnrolment.model_id == model_id)
    )
    faces: dict[str, list[np.ndarray]] = {}
    for member_id, embedding in rows:
        faces.setdefault(str(member_id), []).append(np.frombuffer(embedding, np.float32))
    return Gallery(model_id, faces)


@dataclass
class _Watched:
    camera_id: int
    village_id: int
    org_path: str
    name: str
    watcher: CameraWatcher
    rtsp: RtspCamera | None = None
    room_id: str | None = None  # a TV's or kiosk's duty room
    terminal_id: int | None = None  # that TV or kiosk, told on screen who was seen
    # member: (sighting row id, last_at written, last_at seen)
    open: dict[str, tuple[int, datetime, datetime]] = field(default_factory=dict)
    still_pictures: int = 0


class DutyRecognition:
    def __init__(
        self,
        database: Database,
        recognition: RecognitionService,
        watch: DutyWatch | None,
        *,
        duty: DutySettings | None = None,
        write_every_s: float = 60.0,
        rtsp_factory: Callable[..., RtspCamera] = RtspCamera,
        on_seen: Callable[[int, dict], Awaitable[object]] | None = None,
    ) -> None:
        self.database = database
        # (terminal id, message): a TV or kiosk camera's new sighting, for its screen
        self.on_seen = on_seen
        self.recognition = recognition
        self.watch = watch
        self.duty = duty or DutySettings()
        self.write_every_s = write_every_s
        self.rtsp_factory = rtsp_factory
        self.cameras: dict[int, _Watched] = {}
        self.sightings = 0

    async def start(self) -> None:
        """Watch every enabled RTSP camera (TVs and kiosks come as they publish)."""
        async with self.database.session() as session:
            rows = (
                await session.scalars(
                    select(DutyCamera).where(
                        DutyCamera.enabled.is_(True), DutyCamera.kind == DutyCameraKind.RTSP
                    )
                )
            ).all()
        for row in rows:
            await self.watch_rtsp(row)

    async def close(self) -> None:
        for watched in tuple(self.cameras.values()):
            await self._stop(watched)
        self.cameras.clear()

    async def _stop(self, watched: _Watched) -> None:
        if watched.rtsp is not None:
            await watched.rtsp.close()
        if watched.watcher.subscription is not None:
            watched.watcher.subscription.close()
        watched.watcher.ended = True
        if watched.room_id is not None:
            await self._camera_status(watched.camera_id, CameraStatus(online=False))

    async def forget(self, camera_id: int) -> None:
        watched = self.cameras.pop(camera_id, None)
        if watched is not None:
            await self._stop(watched)

    async def _watcher(self, camera: DutyCamera) -> _Watched:
        engine, executor = self.recognition.engine, self.recognition.executor
        assert engine is not None and executor is not None, "the face engine is not started"
        async with self.database.session() as session:
            gallery = await roster_gallery(session, engine.model_id, camera.village_id)
        pipeline = DutyPipeline(engine, gallery, duty=self.duty)
        watched = _Watched(camera.id, camera.village_id, camera.org_path, camera.name, None)  # type: ignore[arg-type]

        def on_result(_: CameraWatcher, result: WatchResult) -> None:
            self.recognition._spawn(self._store(watched, result), "duty-result")

        watched.watcher = CameraWatcher(
            pipeline, executor, on_result, DUTY_SAMPLING, name=camera.name
        )
        return watched

    async def watch_rtsp(self, camera: DutyCamera) -> None:
        await self.forget(camera.id)
        if camera.rtsp_url is None:
            return
        watched = await self._watcher(camera)

        def on_status(status: CameraStatus) -> None:
            self.recognition._spawn(self._camera_status(camera.id, status), "duty-status")

        try:
            watched.rtsp = self.rtsp_factory(
                camera.rtsp_url, watched.watcher, name=camera.name, on_status=on_status
            )
        except ValueError as error:
            await self._camera_status(camera.id, CameraStatus(error=str(error)))
            return
        self.cameras[camera.id] = watched
        await watched.rtsp.start()
        logger.info(
            "duty camera %s (RTSP): %d cadres enrolled",
            camera.name,
            len(watched.watcher.pipeline.gallery),
        )

    # -- TVs and kiosks: their camera through the SFU, in their village's duty room -------
    def attach_room(self, room: Room) -> None:
        """Watch what a duty room's TV or kiosk publishes (signaling/duty_rooms.py)."""

        async def on_publication(publication: Publication) -> None:
            self.recognition._spawn(self._watch_publication(room, publication), "duty-watch")

        room.publication_listeners.append(on_publication)
        for publication in tuple(room.publications.values()):
            if publication.announced and not publication.closed:
                self.recognition._spawn(self._watch_publication(room, publication), "duty-watch")

    async def forget_room(self, room: Room) -> None:
        for watched in tuple(self.cameras.values()):
            if watched.room_id == room.id:
                await self.forget(watched.camera_id)

    async def _watch_publication(self, room: Room, publication: Publication) -> None:
        if not RecognitionService.watches(publication):
            return
        terminal_id = ParticipantId.parse(publication.peer.participant_id).terminal_id
        async with self.database.session() as session:
            camera = await session.scalar(
                select(DutyCamera).where(
                    DutyCamera.terminal_id == terminal_id,
                    DutyCamera.enabled.is_(True),
                    DutyCamera.kind.in_((DutyCameraKind.TV, DutyCameraKind.KIOSK)),
                )
            )
        if camera is None or publication.closed:
            logger.warning("duty room %s: %s has no duty camera", room.id, publication.peer.name)
            return
        await self.forget(camera.id)  # the same TV publishing again: its newest stream
        watched = await self._watcher(camera)
        watched.room_id = room.id
        watched.terminal_id = terminal_id
        self.cameras[camera.id] = watched
        watched.watcher.subscription = publication.subscribe_locally(watched.watcher)
        await self._camera_status(camera.id, CameraStatus(online=True, last_frame_at=time.time()))
        logger.info(
            "duty camera %s (%s): %d cadres enrolled",
            camera.name,
            camera.kind.value,
            len(watched.watcher.pipeline.gallery),
        )

    def in_view(self, room_id: str) -> list[int]:
        """The members the duty room's camera sees now (within a sighting's gap)."""
        now = datetime.now(UTC)
        gap = timedelta(seconds=self.duty.sighting_gap_s)
        return sorted(
            int(member)
            for watched in self.cameras.values()
            if watched.room_id == room_id
            for member, (_, _, last) in watched.open.items()
            if now - last <= gap
        )

    async def rosters_changed(self, village_id: int) -> None:
        """A roster or a cadre's enrolment changed: that village's cameras reload."""
        engine = self.recognition.engine
        if engine is None:
            return
        for watched in self.cameras.values():
            if watched.village_id == village_id:
                async with self.database.session() as session:
                    gallery = await roster_gallery(session, engine.model_id, village_id)
                watched.watcher.replace_gallery(gallery)

    async def _camera_status(self, camera_id: int, status: CameraStatus) -> None:
        async with self.database.session() as session:
            camera = await session.get(DutyCamera, camera_id)
            if camera is None:
                return
            camera.online = status.online
            camera.last_error = status.error
            if status.last_frame_at is not None:
                camera.last_frame_at = datetime.fromtimestamp(status.last_frame_at, UTC)
            await session.commit()

    async def _store(self, watched: _Watched, result: WatchResult) -> None:
        at = datetime.now(UTC) - timedelta(seconds=max(0.0, time.monotonic() - result.at))
        new = False
        for decision in result.decisions:
            if isinstance(decision, Seen):
                new |= await self._seen(watched, decision, at)
            elif isinstance(decision, Rejected) and decision.reason == "still_picture":
                watched.still_pictures += 1
                logger.warning(
                    "duty camera %s: a still picture of cadre %s refused",
                    watched.name,
                    decision.best_member,
                )
        if any(isinstance(d, Seen) for d in result.decisions):
            async with self.database.session() as session:
                camera = await session.get(DutyCamera, watched.camera_id)
                if camera is not None:
                    camera.last_recognition_at = at
                    await session.commit()
        if new and self.watch is not None:
            self.watch.poke()

    async def _seen(self, watched: _Watched, seen: Seen, at: datetime) -> bool:
        """Write a sighting, or move one on; True for a new one."""
        member_id = int(seen.member)
        opened = watched.open.get(seen.member)
        gap = timedelta(seconds=self.duty.sighting_gap_s)
        if seen.first or opened is None or at - opened[2] > gap:
            face, scene = await self._evidence(watched, member_id, at, seen, "in")
            async with self.database.session() as session:
                row = DutySighting(
                    member_id=member_id,
                    village_id=watched.village_id,
                    org_path=watched.org_path,
                    camera=f"camera:{watched.camera_id}",
                    first_at=at,
                    last_at=at,
                    similarity=seen.similarity or 0.0,
                    first_face=face,
                    first_scene=scene,
                    last_face=face,
                    last_scene=scene,
                )
                session.add(row)
                await session.commit()
                watched.open[seen.member] = (row.id, at, at)
                name = await session.scalar(select(Member.name).where(Member.id == member_id))
            self.sightings += 1
            if watched.terminal_id is not None and self.on_seen is not None:
                # the people in front of the camera see that it recognised them; a TV gone
                # meanwhile loses nothing but the notice
                try:
                    await self.on_seen(
                        watched.terminal_id,
                        {"type": "duty_seen", "name": name or "", "at": at.isoformat()},
                    )
                except (ConnectionError, RuntimeError) as error:
                    logger.info("duty camera %s: not told on screen: %s", watched.name, error)
            return True
        row_id, written, _ = opened
        fresh = bool(seen.face_jpeg)
        if not fresh and (at - written).total_seconds() < self.write_every_s:
            watched.open[seen.member] = (row_id, written, at)
            return False
        async with self.database.session() as session:
            moved = await session.get(DutySighting, row_id)
            if moved is not None:
                moved.last_at = at
                if fresh:
                    moved.last_face, moved.last_scene = await self._evidence(
                        watched, member_id, at, seen, "seen"
                    )
                await session.commit()
        watched.open[seen.member] = (row_id, at, at)
        return False

    async def _evidence(
        self, watched: _Watched, member_id: int, at: datetime, seen: Seen, label: str
    ) -> tuple[str | None, str | None]:
        if not seen.face_jpeg:
            return None, None
        folder = f"duty-{watched.village_id}/{at:%Y-%m-%d}"
        stem = f"{at:%H%M%S}-{label}-{member_id}-{secrets.token_hex(3)}"
        root = self.recognition.config.evidence_dir
        face, scene = f"{folder}/{stem}-face.jpg", f"{folder}/{stem}-scene.jpg"
        await asyncio.to_thread(_write_file, root / face, seen.face_jpeg)
        await asyncio.to_thread(_write_file, root / scene, seen.scene_jpeg)
        return face, scene

    def stats(self) -> dict[str, object]:
        return {
            "cameras": len(self.cameras),
            "sightings": self.sightings,
            "per_camera": {
                w.name: {**w.watcher.stats(), "still_pictures": w.still_pictures}
                for w in self.cameras.values()
            },
        }
