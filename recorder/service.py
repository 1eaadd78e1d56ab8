"""The recorder in the running server: its index in the database, its limits, its upkeep.

`RecordingService` owns one `Recorder` and everything around it that needs the database:

- every closed segment is indexed (`Recording` per venue, `RecordingSegment` per file), in
  the order the files closed, by one indexing task;
- at start-up it repairs what a crash left: recordings left open are closed, files the
  index never heard of (the one being written at the crash) are probed and indexed when
  they play, or renamed `*.damaged` when nothing in them does;
- limits: when the recordings reach the quota, or the disk's free space falls under its
  floor, recording stops (the meetings go on) with an alert: an audit entry, a timeline
  event in each room, an error in the log and `status()` for the console. It resumes by
  itself once retention has made room;
- retention: a background job deletes recordings older than `retention_days`, audited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

from sqlalchemy import select

from db import audit
from db import recordings as index
from db.database import Database
from db.models import Recording, RecordingSegment, RecordingStatus, RoomEvent
from db.tree import root_path
from sfu.room import Publication, Room

from .probe import probe_segment
from .recorder import Recorder, SegmentInfo

logger = logging.getLogger(__name__)

SYSTEM_ACTOR = "system:recorder"
SEGMENT_SUFFIXES = (".webm", ".mp4")
# recording resumes only this far under the limits, so it does not flap at the edge
RESUME_MARGIN = 0.9


@dataclass(frozen=True)
class RecordingLimits:
    quota_bytes: int
    min_free_bytes: int
    retention_days: int
    retention_interval_s: float = 3600.0
    # how often the limits are looked at besides after each segment (to resume, too)
    check_interval_s: float = 60.0


class _Ended(NamedTuple):
    publication_id: str


class RecordingService:
    def __init__(
        self,
        database: Database,
        root: str | Path,
        limits: RecordingLimits,
        *,
        segment_s: float = 10.0,
    ) -> None:
        self.database = database
        self.root = Path(root).resolve()
        self.limits = limits
        self.recorder = Recorder(
            self.root,
            segment_s=segment_s,
            on_segment=self._queue_segment,
            should_record=self._should_record,
            on_recording_end=lambda publication_id: self._queue.put_nowait(_Ended(publication_id)),
        )
        self.used_bytes = 0  # in the index
        # why recording is stopped, e.g. "quota", "disk_full"; None while it records
        self.stopped_reason: str | None = None
        self.stopped_at: datetime | None = None
        self._rooms: list[Room] = []
        self._recording_ids: dict[str, int] = {}  # publication id: Recording.id
        self._org_codes: dict[str, str | None] = {}  # room id: its organiser's code
        self._meeting_ids: dict[str, int] = {}  # room id: the meeting it was opened for
        self._queue: asyncio.Queue[SegmentInfo | _Ended | None] = asyncio.Queue()
        self._indexer: asyncio.Task | None = None
        self._upkeep: asyncio.Task | None = None

    # -- lifetime ----------------------------------------------------------------------
    async def start(self, rooms: Iterable[Room]) -> dict[str, int]:
        """Repair the index, then record every room whose policy says so."""
        self.root.mkdir(parents=True, exist_ok=True)
        # downloads being joined when the server stopped
        await asyncio.to_thread(shutil.rmtree, self.root / ".joining", True)
        report = await self.recover()
        self._indexer = asyncio.create_task(self._index_forever(), name="recording-index")
        self._upkeep = asyncio.create_task(self._upkeep_forever(), name="recording-upkeep")
        await self.check_limits()
        for room in rooms:
            self.attach_room(room)
        return report

    def attach_room(self, room: Room, meeting_id: int | None = None) -> None:
        """Record a room (if its policy says so); a meeting's room files its recordings
        under that meeting."""
        self._org_codes[room.id] = room.settings.org_code
        if meeting_id is not None:
            self._meeting_ids[room.id] = meeting_id
        if room.settings.record and room not in self._rooms:
            self._rooms.append(room)
            self.recorder.attach(room)

    def forget_room(self, room: Room) -> None:
        """A meeting's room has closed (its recordings saw their end). Its meeting id is
        kept: the last files are indexed after the room is gone."""
        self.recorder.detach(room)
        if room in self._rooms:
            self._rooms.remove(room)

    async def close(self) -> None:
        """After the rooms have closed: the last files are closed and indexed."""
        if self._upkeep is not None:
            self._upkeep.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._upkeep
        await self.recorder.close()
        if self._indexer is not None:
            self._queue.put_nowait(None)
            await self._indexer

    # -- the policy --------------------------------------------------------------------
    def _should_record(self, publication: Publication) -> bool:
        return self.stopped_reason is None and publication.peer.room.settings.record

    # -- indexing ----------------------------------------------------------------------
    def _queue_segment(self, info: SegmentInfo) -> None:
        self._queue.put_nowait(info)

    async def _index_forever(self) -> None:
        while (item := await self._queue.get()) is not None:
            try:
                if isinstance(item, _Ended):
                    await self._close_recording(item.publication_id)
                else:
                    await self._index_segment(item)
                    await self.check_limits()
            except Exception:  # one bad row must not stop the index; the files stay
                logger.exception("recording index update failed: %s", item)

    async def _index_segment(self, info: SegmentInfo) -> None:
        async with self.database.session() as session:
            recording_id = self._recording_ids.get(info.publication_id)
            recording = await session.get(Recording, recording_id) if recording_id else None
            if recording is None:
                recording = await self._new_recording(
                    session,
                    room_id=info.room_id,
                    publication_id=info.publication_id,
                    participant_id=info.participant_id,
                    venue_name=info.venue_name,
                    kinds=list(info.kinds),
                    container=info.path.suffix.lstrip("."),
                    status=RecordingStatus.RECORDING,
                    started_at=info.start,
                )
                self._recording_ids[info.publication_id] = recording.id
            elif set(info.kinds) - set(recording.kinds):
                recording.kinds = sorted(set(recording.kinds) | set(info.kinds))
            await index.add_segment(
                session,
                recording,
                seq=info.sequence,
                path=info.relative_path,
                started_at=info.start,
                ended_at=info.end,
                duration_s=info.duration_s,
                size=info.size_bytes,
            )
            await session.commit()
        self.used_bytes += info.size_bytes

    async def _new_recording(self, session, *, participant_id: str, room_id: str, **fields):
        """A venue's index row, placed in the org tree (see `venue_org_path`)."""
        recording = Recording(
            room_id=room_id,
            meeting_id=self._meeting_ids.get(room_id),
            participant_id=participant_id,
            org_path=await index.venue_org_path(
                session, participant_id, self._org_codes.get(room_id)
            ),
            bytes=0,
            **fields,
        )
        session.add(recording)
        await session.flush()
        return recording

    async def _close_recording(self, publication_id: str) -> None:
        recording_id = self._recording_ids.pop(publication_id, None)
        if recording_id is None:  # nothing was written (it ended before a whole file)
            return
        async with self.database.session() as session:
            recording = await session.get(Recording, recording_id)
            if recording is not None and recording.status == RecordingStatus.RECORDING:
                recording.status = (
                    RecordingStatus.STOPPED_QUOTA
                    if self.stopped_reason is not None
                    else RecordingStatus.DONE
                )
                await session.commit()

    # -- after a crash -----------------------------------------------------------------
    async def recover(self) -> dict[str, int]:
        """Close what a crash left open and index the files it never reported."""
        async with self.database.session() as session:
            report = await index.recover_after_crash(session, self.root)
            indexed = set((await session.execute(select(RecordingSegment.path))).scalars())
            orphans = await asyncio.to_thread(_unindexed_files, self.root, indexed)
            report["files_indexed"] = report["files_damaged"] = 0
            for path in orphans:
                if await self._index_orphan(session, path):
                    report["files_indexed"] += 1
                else:
                    report["files_damaged"] += 1
            await session.commit()
            self.used_bytes = await index.total_bytes(session)
        if any(report.values()):
            logger.warning("recordings repaired after an unclean stop: %s", report)
        return report

    async def _index_orphan(self, session, path: Path) -> bool:
        try:
            probed = await asyncio.to_thread(probe_segment, path)
            size = (await asyncio.to_thread(path.stat)).st_size
        except Exception:  # not even a header: nothing in it plays
            probed = None
        tags = probed.tags if probed else {}
        publication_id = tags.get("lighthouse_publication")
        if (
            probed is None
            or not publication_id
            or probed.start is None
            or probed.duration_s <= 0
            or "lighthouse_sequence" not in tags
        ):
            damaged = path.with_name(path.name + ".damaged")
            await asyncio.to_thread(path.rename, damaged)
            logger.warning("recording file %s has nothing playable; kept as %s", path, damaged)
            return False
        recording = await session.scalar(
            select(Recording).where(Recording.publication_id == publication_id)
        )
        start = probed.start
        end = start + timedelta(seconds=probed.duration_s)
        if recording is None:
            room_id = tags.get("lighthouse_room", "")
            participant_id = tags.get("lighthouse_participant", "")
            recording = await self._new_recording(
                session,
                room_id=room_id,
                publication_id=publication_id,
                participant_id=participant_id,
                venue_name=tags.get("title", participant_id),
                kinds=sorted(probed.streams),
                container=path.suffix.lstrip("."),
                status=RecordingStatus.DONE,
                started_at=start,
            )
        await index.add_segment(
            session,
            recording,
            seq=int(tags["lighthouse_sequence"]),
            path=path.relative_to(self.root).as_posix(),
            started_at=start,
            ended_at=end,
            duration_s=probed.duration_s,
            size=size,
        )
        recording.started_at = min(recording.started_at, start)
        recording.ended_at = max(recording.ended_at or end, end)
        return True

    # -- limits ------------------------------------------------------------------------
    def status(self) -> dict[str, object]:
        disk = shutil.disk_usage(self.root)
        return {
            "recording": self.stopped_reason is None,
            "stopped_reason": self.stopped_reason,
            "stopped_at": self.stopped_at,
            "used_bytes": self.used_bytes,
            "quota_bytes": self.limits.quota_bytes,
            "disk_free_bytes": disk.free,
            "min_free_bytes": self.limits.min_free_bytes,
            "retention_days": self.limits.retention_days,
            "active_recordings": len(self.recorder.recordings),
        }

    def _over_limit(self, margin: float = 1.0) -> str | None:
        if self.used_bytes >= self.limits.quota_bytes * margin:
            return "quota"
        free = shutil.disk_usage(self.root).free
        if free * margin < self.limits.min_free_bytes:
            return "disk_full"
        return None

    async def check_limits(self) -> None:
        """Stop recording at a limit; resume once comfortably under it again."""
        if self.stopped_reason is None:
            reason = self._over_limit()
            if reason is not None:
                await self._stop(reason)
        elif self._over_limit(RESUME_MARGIN) is None:
            await self._resume()

    async def _stop(self, reason: str) -> None:
        self.stopped_reason = reason
        self.stopped_at = datetime.now(UTC)
        running = list(self.recorder.recordings.values())
        detail = {
            "reason": reason,
            "used_bytes": self.used_bytes,
            "quota_bytes": self.limits.quota_bytes,
            "disk_free_bytes": shutil.disk_usage(self.root).free,
            "min_free_bytes": self.limits.min_free_bytes,
            "recordings_stopped": len(running),
        }
        logger.error("recording stopped (%s); meetings go on unrecorded: %s", reason, detail)
        async with self.database.session() as session:
            audit.record(
                session,
                None,
                "recording_stopped",
                actor=SYSTEM_ACTOR,
                org_path=await root_path(session),  # the county's staff see the alert
                detail=detail,
            )
            for room_id in sorted({r.room_id for r in running} | {r.id for r in self._rooms}):
                session.add(
                    RoomEvent(room_id=room_id, kind="recording_stopped", detail={"reason": reason})
                )
            await session.commit()
        for recording in running:
            recording.stop()

    async def _resume(self) -> None:
        reason, self.stopped_reason, self.stopped_at = self.stopped_reason, None, None
        logger.warning("recording resumed (was stopped: %s)", reason)
        async with self.database.session() as session:
            audit.record(
                session,
                None,
                "recording_resumed",
                actor=SYSTEM_ACTOR,
                org_path=await root_path(session),
                detail={"was": reason, "used_bytes": self.used_bytes},
            )
            for room in self._rooms:
                session.add(RoomEvent(room_id=room.id, kind="recording_resumed"))
            await session.commit()
        for room in self._rooms:
            self.recorder.attach(room)  # the publications already flowing, too

    # -- retention ---------------------------------------------------------------------
    async def apply_retention(self) -> int:
        """Delete the recordings older than the retention period; returns how many."""
        async with self.database.session() as session:
            old = await index.expired(session, self.limits.retention_days)
            for recording in old:
                paths = [self.root / s.path for s in recording.segments]
                await asyncio.to_thread(_remove_files, paths, self.root)
                audit.record(
                    session,
                    None,
                    "recording_expired",
                    actor=SYSTEM_ACTOR,
                    target_type="recording",
                    target_id=recording.id,
                    org_path=recording.org_path,
                    detail={
                        "venue": recording.venue_name,
                        "room": recording.room_id,
                        "started_at": recording.started_at.isoformat(),
                        "bytes": recording.bytes,
                        "retention_days": self.limits.retention_days,
                    },
                )
                await session.delete(recording)
            await session.commit()
            self.used_bytes = await index.total_bytes(session)
        if old:
            logger.info("retention removed %d recordings", len(old))
        return len(old)

    async def _upkeep_forever(self) -> None:
        loop = asyncio.get_running_loop()
        retention_due = loop.time()
        while True:
            try:
                if loop.time() >= retention_due:
                    retention_due = loop.time() + self.limits.retention_interval_s
                    await self.apply_retention()
                await self.check_limits()
            except Exception:
                logger.exception("recording upkeep failed; trying again later")
            await asyncio.sleep(self.limits.check_interval_s)


def _unindexed_files(root: Path, indexed: set[str]) -> list[Path]:
    return [
        path
        for path in sorted(root.rglob("*"))
        if path.suffix in SEGMENT_SUFFIXES
        and ".joining" not in path.parts
        and path.is_file()
        and path.relative_to(root).as_posix() not in indexed
    ]


def _remove_files(paths: list[Path], root: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
        # drop the venue's and the room's folders once empty
        for parent in (path.parent, path.parent.parent):
            if parent != root and parent.is_relative_to(root):
                with contextlib.suppress(OSError):
                    parent.rmdir()
