"""SQLAlchemy models: the org tree, members, terminals, staff, tokens, meetings, audit log.

The org tree is stored as an adjacency list plus a materialised path ("/1/5/77/"): "is
this object inside the caller's subtree?" is one string-prefix test, and "everything in
this subtree" is one indexed LIKE query, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    Time,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.ext.asyncio import AsyncAttrs
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from db.duty.rules import CalendarKind, DayStatus, LeaveKind


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UtcDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every database (SQLite hands back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware (UTC) one")
        return value.astimezone(dt.UTC) if value is not None else None

    def process_result_value(self, value: dt.datetime | None, dialect) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value


class Base(AsyncAttrs, DeclarativeBase):
    type_annotation_map = {dt.datetime: UtcDateTime}  # noqa: RUF012 - SQLAlchemy API


def _enum(cls: type[enum.Enum]) -> Enum:
    # stored as the value strings, with a CHECK constraint, on both databases
    return Enum(
        cls,
        native_enum=False,
        values_callable=lambda e: [m.value for m in e],
        length=32,
        validate_strings=True,
    )


class OrgKind(enum.StrEnum):
    COUNTY = "county"
    TOWN = "town"  # town or street (乡镇/街道)
    VILLAGE = "village"  # village or community (村/社区)
    BRANCH = "branch"  # party branch (党支部)
    GROUP = "group"  # party group (党小组)


# what each kind may hold below it
CHILD_KINDS: dict[OrgKind, tuple[OrgKind, ...]] = {
    OrgKind.COUNTY: (OrgKind.TOWN,),
    OrgKind.TOWN: (OrgKind.VILLAGE, OrgKind.BRANCH),
    OrgKind.VILLAGE: (OrgKind.BRANCH,),
    OrgKind.BRANCH: (OrgKind.GROUP,),
    OrgKind.GROUP: (),
}


class OrgUnit(Base):
    __tablename__ = "org_units"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[OrgKind] = mapped_column(_enum(OrgKind))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("org_units.id", ondelete="RESTRICT"))
    path: Mapped[str] = mapped_column(String(255), index=True)
    depth: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    parent: Mapped[OrgUnit | None] = relationship(remote_side=[id])

    def contains(self, other_path: str) -> bool:
        return other_path.startswith(self.path)


class Gender(enum.StrEnum):
    MALE = "male"
    FEMALE = "female"


class MemberStatus(enum.StrEnum):
    FORMAL = "formal"  # 正式党员
    PROBATIONARY = "probationary"  # 预备党员


class ExemptReason(enum.StrEnum):
    """Why a member is not counted in a meeting's expected head count."""

    SERIOUSLY_ILL = "seriously_ill"  # 重病
    WORKING_AWAY = "working_away"  # 外出务工（已请假）
    ABROAD = "abroad"  # 出国（境）
    ELDERLY_INFIRM = "elderly_infirm"  # 年老体弱
    OTHER = "other"


class Post(enum.StrEnum):
    SECRETARY = "secretary"  # 书记
    DEPUTY_SECRETARY = "deputy_secretary"  # 副书记
    COMMITTEE_MEMBER = "committee_member"  # 支委委员
    VILLAGE_CADRE = "village_cadre"  # 村干部
    GROUP_LEADER = "group_leader"  # 党小组长


class Member(Base):
    __tablename__ = "members"
    __table_args__ = (Index("ix_members_org_path_name", "org_path", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    branch_id: Mapped[int] = mapped_column(
        ForeignKey("org_units.id", ondelete="RESTRICT"), index=True
    )
    # copy of the branch's path: subtree queries need no join
    org_path: Mapped[str] = mapped_column(String(255), index=True)
    name: Mapped[str] = mapped_column(String(50))
    gender: Mapped[Gender] = mapped_column(_enum(Gender))
    birth_date: Mapped[dt.date | None] = mapped_column(Date)
    education: Mapped[str | None] = mapped_column(String(32))
    joined_date: Mapped[dt.date | None] = mapped_column(Date)
    status: Mapped[MemberStatus] = mapped_column(_enum(MemberStatus), default=MemberStatus.FORMAL)
    exempt_reason: Mapped[ExemptReason | None] = mapped_column(_enum(ExemptReason))
    exempt_note: Mapped[str | None] = mapped_column(String(200))
    posts: Mapped[list[str]] = mapped_column(JSON, default=list)
    phone: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    branch: Mapped[OrgUnit] = relationship()


class TerminalKind(enum.StrEnum):
    TV = "tv"
    DUTY_CAMERA = "duty_camera"
    PHONE_PC = "phone_pc"


class Terminal(Base):
    __tablename__ = "terminals"

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int | None] = mapped_column(
        ForeignKey("org_units.id", ondelete="RESTRICT"), index=True
    )
    org_path: Mapped[str | None] = mapped_column(String(255), index=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    kind: Mapped[TerminalKind] = mapped_column(_enum(TerminalKind), default=TerminalKind.TV)
    # pairing: a TV shows the code; an admin binds it; the TV fetches its token once
    pairing_code: Mapped[str | None] = mapped_column(String(12), unique=True)
    pairing_secret_hash: Mapped[str | None] = mapped_column(String(128))
    pairing_expires_at: Mapped[dt.datetime | None]
    token_jti: Mapped[str | None] = mapped_column(String(64))
    token_collected: Mapped[bool] = mapped_column(Boolean, default=False)
    paired_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]
    last_seen_at: Mapped[dt.datetime | None]
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    org: Mapped[OrgUnit | None] = relationship()


class Role(enum.StrEnum):
    COUNTY_ADMIN = "county_admin"
    TOWN_ADMIN = "town_admin"
    VILLAGE_SECRETARY = "village_secretary"
    SUPERVISOR = "supervisor"
    VIEWER = "viewer"
    TERMINAL = "terminal"


class StaffAccount(Base):
    __tablename__ = "staff_accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(_enum(Role))
    org_id: Mapped[int] = mapped_column(ForeignKey("org_units.id", ondelete="RESTRICT"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    org: Mapped[OrgUnit] = relationship()


class IssuedToken(Base):
    """Every signed token the server hands out, so that any of them can be revoked."""

    __tablename__ = "issued_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # session | terminal
    account_id: Mapped[int | None] = mapped_column(ForeignKey("staff_accounts.id"))
    terminal_id: Mapped[int | None] = mapped_column(ForeignKey("terminals.id"))
    role: Mapped[Role] = mapped_column(_enum(Role))
    org_id: Mapped[int] = mapped_column(ForeignKey("org_units.id"))
    issued_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None]


class MeetingType(enum.StrEnum):
    PARTY_CONGRESS = "party_congress"  # 党员大会
    BRANCH_COMMITTEE = "branch_committee"  # 支委会
    GROUP_MEETING = "group_meeting"  # 党小组会
    PARTY_LECTURE = "party_lecture"  # 党课
    THEME_DAY = "theme_day"  # 主题党日
    ORG_LIFE = "org_life"  # 组织生活会
    COUNTY_WORK = "county_work"  # 县级工作会议
    TOWN_WORK = "town_work"  # 乡镇工作会议
    OTHER = "other"


class MeetingStatus(enum.StrEnum):
    SCHEDULED = "scheduled"
    LIVE = "live"
    ENDED = "ended"
    CANCELLED = "cancelled"


class MainVenue(enum.StrEnum):
    """Where a live meeting's main venue is: what the villages' TVs wait for."""

    PHONE = "phone"  # the phone that started it, with its camera and microphone
    LINK = "link"  # a page opened from the main-venue link (the county hall's PC)
    NONE = "none"  # none: each venue meets in its own room (a village's branch meeting)


class Meeting(Base):
    __tablename__ = "meetings"

    id: Mapped[int] = mapped_column(primary_key=True)
    type: Mapped[MeetingType] = mapped_column(_enum(MeetingType))
    topic: Mapped[str] = mapped_column(String(200))
    organiser_id: Mapped[int] = mapped_column(ForeignKey("org_units.id"), index=True)
    org_path: Mapped[str] = mapped_column(String(255), index=True)
    status: Mapped[MeetingStatus] = mapped_column(
        _enum(MeetingStatus), default=MeetingStatus.SCHEDULED
    )
    main_venue: Mapped[MainVenue] = mapped_column(
        _enum(MainVenue), default=MainVenue.LINK, server_default=MainVenue.LINK.value
    )
    host: Mapped[str | None] = mapped_column(String(50))
    recorder: Mapped[str | None] = mapped_column(String(50))
    venue: Mapped[str | None] = mapped_column(String(200))
    scheduled_start: Mapped[dt.datetime | None]
    scheduled_end: Mapped[dt.datetime | None]
    actual_start: Mapped[dt.datetime | None]
    actual_end: Mapped[dt.datetime | None]
    expected_count: Mapped[int | None] = mapped_column(Integer)
    actual_count: Mapped[int | None] = mapped_column(Integer)
    absent_count: Mapped[int | None] = mapped_column(Integer)
    content: Mapped[str | None] = mapped_column(Text)
    resolutions: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("staff_accounts.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    organiser: Mapped[OrgUnit] = relationship()
    sites: Mapped[list[MeetingSite]] = relationship(cascade="all, delete-orphan", lazy="selectin")
    attendance: Mapped[list[Attendance]] = relationship(
        cascade="all, delete-orphan", lazy="selectin"
    )
    guests: Mapped[list[MeetingGuest]] = relationship(cascade="all, delete-orphan", lazy="selectin")
    attachments: Mapped[list[MeetingAttachment]] = relationship(
        cascade="all, delete-orphan", lazy="selectin"
    )


class MeetingSite(Base):
    __tablename__ = "meeting_sites"
    __table_args__ = (UniqueConstraint("meeting_id", "org_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    meeting_id: Mapped[int] = mapped_column(ForeignKey("meetings.id", ondelete="CASCADE"))
    org_id: Mapped[int] = mapped_column(ForeignKey("org_units.id"))


class AttendanceStatus(enum.StrEnum):
    PRESENT = "present"
    ABSENT = "absent"


class SignInMethod(enum.StrEnum):
    FACE = "face"
    MANUAL = "manual"


class Attendance(Base):
    __tablename__ = "attendance"
    __table_args__ = (UniqueConstraint("meeting_id", "member_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    meeting_id: Mapped[int] = mapped_column(ForeignKey("meetings.id", ondelete="CASCADE"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    status: Mapped[AttendanceStatus] = mapped_column(_enum(AttendanceStatus))
    absence_reason: Mapped[str | None] = mapped_column(String(200))
    method: Mapped[SignInMethod | None] = mapped_column(_enum(SignInMethod))
    signed_in_at: Mapped[dt.datetime | None]


class MeetingGuest(Base):
    """A non-member attendee (列席人员)."""

    __tablename__ = "meeting_guests"

    id: Mapped[int] = mapped_column(primary_key=True)
    meeting_id: Mapped[int] = mapped_column(ForeignKey("meetings.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(50))
    note: Mapped[str | None] = mapped_column(String(200))


class MeetingAttachment(Base):
    __tablename__ = "meeting_attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    meeting_id: Mapped[int] = mapped_column(ForeignKey("meetings.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # snapshot | recording | file
    path: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(100))  # "account:7 zhangsan", "terminal:12"
    actor_role: Mapped[str | None] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(64))
    org_path: Mapped[str | None] = mapped_column(String(255), index=True)
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict | None] = mapped_column(JSON)


class RecordingStatus(enum.StrEnum):
    RECORDING = "recording"
    DONE = "done"
    STOPPED_QUOTA = "stopped_quota"  # stopped because the disk quota was reached
    FAILED = "failed"


class Recording(Base):
    """One venue's recording in one room: the publication of one participant."""

    __tablename__ = "recordings"

    id: Mapped[int] = mapped_column(primary_key=True)
    room_id: Mapped[str] = mapped_column(String(64), index=True)
    meeting_id: Mapped[int | None] = mapped_column(ForeignKey("meetings.id", ondelete="SET NULL"))
    publication_id: Mapped[str] = mapped_column(String(64))
    participant_id: Mapped[str] = mapped_column(String(100))
    venue_name: Mapped[str] = mapped_column(String(100))
    # the venue's place in the org tree, when known: who may play it back
    org_path: Mapped[str | None] = mapped_column(String(255), index=True)
    kinds: Mapped[list[str]] = mapped_column(JSON, default=list)
    container: Mapped[str] = mapped_column(String(16))  # webm | mp4
    status: Mapped[RecordingStatus] = mapped_column(
        _enum(RecordingStatus), default=RecordingStatus.RECORDING
    )
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    ended_at: Mapped[dt.datetime | None]
    bytes: Mapped[int] = mapped_column(Integer, default=0)

    segments: Mapped[list[RecordingSegment]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="RecordingSegment.seq"
    )


class RecordingSegment(Base):
    __tablename__ = "recording_segments"
    __table_args__ = (UniqueConstraint("recording_id", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    recording_id: Mapped[int] = mapped_column(
        ForeignKey("recordings.id", ondelete="CASCADE"), index=True
    )
    seq: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(500))
    started_at: Mapped[dt.datetime]
    ended_at: Mapped[dt.datetime]
    duration_s: Mapped[float] = mapped_column(Float)
    bytes: Mapped[int] = mapped_column(Integer)


class RoomEvent(Base):
    """Things a playback timeline marks: who joined and left a room, sign-ins, snapshots."""

    __tablename__ = "room_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    room_id: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    kind: Mapped[str] = mapped_column(String(32))  # joined | left | signin | snapshot
    participant_id: Mapped[str | None] = mapped_column(String(100))
    name: Mapped[str | None] = mapped_column(String(100))
    # the participant's unit, when known: a timeline shows a caller only its own subtree
    org_path: Mapped[str | None] = mapped_column(String(255))
    detail: Mapped[dict | None] = mapped_column(JSON)


class HiddenView(Base):
    """A supervisor watching a meeting unannounced (a drop-in, or a tile of a patrol wall):
    who watched which room, from when to when. The participants never see it; county staff
    read it (docs/api.md, /api/supervision/views)."""

    __tablename__ = "hidden_views"

    id: Mapped[int] = mapped_column(primary_key=True)
    supervisor: Mapped[str] = mapped_column(String(100), index=True)  # "account:7"
    supervisor_name: Mapped[str] = mapped_column(String(100))
    room_id: Mapped[str] = mapped_column(String(64), index=True)
    room_name: Mapped[str] = mapped_column(String(100))
    # the watched meeting's organiser: whose staff may read this entry
    org_path: Mapped[str | None] = mapped_column(String(255), index=True)
    mode: Mapped[str] = mapped_column(String(16))  # drop_in | patrol
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    ended_at: Mapped[dt.datetime | None]
    duration_s: Mapped[float | None] = mapped_column(Float)


class EmergencyStatus(enum.StrEnum):
    ACTIVE = "active"
    ENDED = "ended"


class Emergency(Base):
    """A village calling the county command with its phone's camera: who raised it, where,
    when the command acknowledged it and when it ended. Its room is `emergency-<id>`."""

    __tablename__ = "emergencies"

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("org_units.id"), index=True)
    # the place of the emergency: which command views are told and who may see it
    org_path: Mapped[str] = mapped_column(String(255), index=True)
    reporter: Mapped[str] = mapped_column(String(100))  # "account:7"
    reporter_name: Mapped[str] = mapped_column(String(100))
    note: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[EmergencyStatus] = mapped_column(
        _enum(EmergencyStatus), default=EmergencyStatus.ACTIVE, index=True
    )
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    acknowledged_at: Mapped[dt.datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(100))
    ended_at: Mapped[dt.datetime | None]
    ended_by: Mapped[str | None] = mapped_column(String(100))

    org: Mapped[OrgUnit] = relationship(lazy="joined")


class FaceEnrolment(Base):
    """One enrolment photo of a member, as the face recognizer compares it: the embedding
    and the aligned face it was made from. Biometric data: read only with `faces:read`.

    `model_id` names the engine that made the embedding; embeddings of another model are
    never compared (the member is enrolled again)."""

    __tablename__ = "face_enrolments"

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    # the member's unit: whose staff may see it, and which galleries it belongs to
    org_path: Mapped[str] = mapped_column(String(255), index=True)
    model_id: Mapped[str] = mapped_column(String(64))
    embedding: Mapped[bytes] = mapped_column(LargeBinary)  # float32, unit length
    face_jpeg: Mapped[bytes] = mapped_column(LargeBinary)  # the aligned 112x112 face
    sharpness: Mapped[float] = mapped_column(Float)
    face_px: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(100))


class SignInReview(enum.StrEnum):
    PENDING = "pending"  # a face sign-in nobody has looked at yet
    CONFIRMED = "confirmed"
    REJECTED = "rejected"  # not that member: it no longer counts


class SignIn(Base):
    """A member signed in to a meeting, once per meeting: by face (with the face crop and
    the scene as evidence, files under the evidence directory) or by hand."""

    __tablename__ = "sign_ins"
    __table_args__ = (UniqueConstraint("meeting_id", "member_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    meeting_id: Mapped[int] = mapped_column(
        ForeignKey("meetings.id", ondelete="CASCADE"), index=True
    )
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"))
    org_path: Mapped[str] = mapped_column(String(255), index=True)  # the member's
    method: Mapped[SignInMethod] = mapped_column(_enum(SignInMethod))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    similarity: Mapped[float | None] = mapped_column(Float)
    participant_id: Mapped[str | None] = mapped_column(String(100))  # the venue's camera
    venue_name: Mapped[str | None] = mapped_column(String(100))
    face_photo: Mapped[str | None] = mapped_column(String(500))
    scene_photo: Mapped[str | None] = mapped_column(String(500))
    review: Mapped[SignInReview] = mapped_column(_enum(SignInReview), default=SignInReview.PENDING)
    reviewed_by: Mapped[str | None] = mapped_column(String(100))
    reviewed_at: Mapped[dt.datetime | None]


class SnapshotKind(enum.StrEnum):
    SCENE = "scene"  # the whole picture, at the start and every few minutes
    UNKNOWN_FACE = "unknown_face"  # a face that matched no expected member
    STILL_PICTURE = "still_picture"  # a member's face that did not move: a photo held up


class MeetingSnapshot(Base):
    """Evidence from a venue's camera that is not a sign-in: scene pictures, unknown faces
    kept for review, and pictures refused by the liveness check."""

    __tablename__ = "meeting_snapshots"

    id: Mapped[int] = mapped_column(primary_key=True)
    meeting_id: Mapped[int] = mapped_column(
        ForeignKey("meetings.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[SnapshotKind] = mapped_column(_enum(SnapshotKind))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    participant_id: Mapped[str] = mapped_column(String(100))
    venue_name: Mapped[str] = mapped_column(String(100))
    org_path: Mapped[str | None] = mapped_column(String(255), index=True)  # the venue's
    scene_photo: Mapped[str] = mapped_column(String(500))
    face_photo: Mapped[str | None] = mapped_column(String(500))
    # unknown faces and still pictures: the closest expected member and how close
    best_member_id: Mapped[int | None] = mapped_column(Integer)
    similarity: Mapped[float | None] = mapped_column(Float)


# ---- duty attendance (无感考勤): rosters, hours, leave, sightings, days, alerts ----
# The rules these rows feed are in db/duty/rules.py; the enums are shared with it.


class DutyHoursRule(Base):
    """Duty hours set at a unit (county default, a town's, a village's own), for the
    whole year or a season (`season_from`/`season_to` as "MM-DD", inclusive)."""

    __tablename__ = "duty_hours_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("org_units.id", ondelete="CASCADE"))
    org_path: Mapped[str] = mapped_column(String(255), index=True)
    season_from: Mapped[str | None] = mapped_column(String(5))
    season_to: Mapped[str | None] = mapped_column(String(5))
    weekdays: Mapped[list[int]] = mapped_column(JSON)
    start_time: Mapped[dt.time] = mapped_column(Time)
    end_time: Mapped[dt.time] = mapped_column(Time)
    grace_min: Mapped[int] = mapped_column(Integer, default=10)
    absent_after_min: Mapped[int] = mapped_column(Integer, default=120)
    max_gap_min: Mapped[int] = mapped_column(Integer, default=60)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(100))


class DutyCalendarDay(Base):
    """The county's calendar: a holiday (nobody due) or a make-up working day (调休)."""

    __tablename__ = "duty_calendar"
    __table_args__ = (UniqueConstraint("org_id", "date"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("org_units.id", ondelete="CASCADE"))
    org_path: Mapped[str] = mapped_column(String(255), index=True)
    date: Mapped[dt.date] = mapped_column(Date, index=True)
    kind: Mapped[CalendarKind] = mapped_column(_enum(CalendarKind))
    name: Mapped[str] = mapped_column(String(50), default="")


class DutyCadre(Base):
    """A member on a village's duty roster (a 村两委 member or the 第一书记). A member is on
    one village's roster at a time: one duty day per person per date."""

    __tablename__ = "duty_cadres"

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(
        ForeignKey("members.id", ondelete="CASCADE"), unique=True
    )
    village_id: Mapped[int] = mapped_column(ForeignKey("org_units.id"), index=True)
    org_path: Mapped[str] = mapped_column(String(255), index=True)  # the village's
    post: Mapped[str] = mapped_column(String(50))
    first_secretary: Mapped[bool] = mapped_column(Boolean, default=False)
    # a first secretary's days a month in the village (驻村天数), shown against the record
    required_days: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    member: Mapped[Member] = relationship(lazy="joined")


class DutyLeave(Base):
    """Leave (请假) or field duty (外出公干), approved by someone named; a member's never
    overlap. Cancelled ones stay, marked."""

    __tablename__ = "duty_leaves"

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    org_path: Mapped[str] = mapped_column(String(255), index=True)  # the cadre's village
    kind: Mapped[LeaveKind] = mapped_column(_enum(LeaveKind))
    starts_at: Mapped[dt.datetime] = mapped_column(index=True)
    ends_at: Mapped[dt.datetime]
    reason: Mapped[str] = mapped_column(String(200))
    approver: Mapped[str] = mapped_column(String(50))
    recorded_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    cancelled_at: Mapped[dt.datetime | None]
    cancelled_by: Mapped[str | None] = mapped_column(String(100))


class DutySighting(Base):
    """A cadre seen by a duty camera, from the first to the last frame of one track, with
    the evidence of both ends (face crop and scene): the first of a day is the clock-in,
    the last the clock-out."""

    __tablename__ = "duty_sightings"
    __table_args__ = (Index("ix_duty_sightings_member_first", "member_id", "first_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"))
    village_id: Mapped[int] = mapped_column(ForeignKey("org_units.id"), index=True)
    org_path: Mapped[str] = mapped_column(String(255), index=True)
    camera: Mapped[str] = mapped_column(String(100))  # "camera:3", "terminal:12"
    first_at: Mapped[dt.datetime]
    last_at: Mapped[dt.datetime]
    similarity: Mapped[float] = mapped_column(Float)
    first_face: Mapped[str | None] = mapped_column(String(500))
    first_scene: Mapped[str | None] = mapped_column(String(500))
    last_face: Mapped[str | None] = mapped_column(String(500))
    last_scene: Mapped[str | None] = mapped_column(String(500))


class DutyDay(Base):
    """A cadre's duty on one date, as the watch judged it (`machine_status` and the times)
    and as it stands (`status`: a clerk's correction, when there is one)."""

    __tablename__ = "duty_days"
    __table_args__ = (
        UniqueConstraint("member_id", "date"),
        Index("ix_duty_days_path_date", "org_path", "date"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"))
    village_id: Mapped[int] = mapped_column(ForeignKey("org_units.id"))
    org_path: Mapped[str] = mapped_column(String(255))
    date: Mapped[dt.date] = mapped_column(Date)
    status: Mapped[DayStatus] = mapped_column(_enum(DayStatus))
    machine_status: Mapped[DayStatus] = mapped_column(_enum(DayStatus))
    due_from: Mapped[dt.datetime | None]
    arrived_at: Mapped[dt.datetime | None]
    departed_at: Mapped[dt.datetime | None]
    late_min: Mapped[int] = mapped_column(Integer, default=0)
    present_min: Mapped[int] = mapped_column(Integer, default=0)
    gaps: Mapped[list[list[str]]] = mapped_column(JSON, default=list)
    corrected: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class DutyCorrection(Base):
    """A clerk's correction of a day, with the reason; the machine's record stays."""

    __tablename__ = "duty_corrections"

    id: Mapped[int] = mapped_column(primary_key=True)
    day_id: Mapped[int] = mapped_column(ForeignKey("duty_days.id", ondelete="CASCADE"), index=True)
    from_status: Mapped[DayStatus] = mapped_column(_enum(DayStatus))
    to_status: Mapped[DayStatus] = mapped_column(_enum(DayStatus))
    reason: Mapped[str] = mapped_column(String(200))
    by: Mapped[str] = mapped_column(String(100))
    by_name: Mapped[str] = mapped_column(String(100))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class DutyAlertKind(enum.StrEnum):
    LATE = "late"
    ABSENT = "absent"


class DutyAlertStatus(enum.StrEnum):
    OPEN = "open"
    EXPLAINED = "explained"  # the cadre's or the village's explanation, for the town
    EXCUSED = "excused"  # the town accepted it: the day is corrected to leave
    UPHELD = "upheld"  # the town did not


class DutyAlert(Base):
    """A cadre late or absent, raised once per kind per day, and what was answered."""

    __tablename__ = "duty_alerts"
    __table_args__ = (UniqueConstraint("member_id", "date", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"))
    village_id: Mapped[int] = mapped_column(ForeignKey("org_units.id"))
    org_path: Mapped[str] = mapped_column(String(255), index=True)
    date: Mapped[dt.date] = mapped_column(Date, index=True)
    kind: Mapped[DutyAlertKind] = mapped_column(_enum(DutyAlertKind))
    raised_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    status: Mapped[DutyAlertStatus] = mapped_column(
        _enum(DutyAlertStatus), default=DutyAlertStatus.OPEN
    )
    explanation: Mapped[str | None] = mapped_column(String(500))
    explained_by: Mapped[str | None] = mapped_column(String(100))
    explained_at: Mapped[dt.datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(100))
    decided_at: Mapped[dt.datetime | None]


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # gave up after the last retry


class NotificationDelivery(Base):
    """One notification to one webhook: every try is counted, the last error kept."""

    __tablename__ = "notification_deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    event: Mapped[str] = mapped_column(String(32))  # duty.late, duty.absent, ...
    org_path: Mapped[str | None] = mapped_column(String(255), index=True)
    target: Mapped[str] = mapped_column(String(64))  # the webhook's name, never its URL
    payload: Mapped[dict] = mapped_column(JSON)
    status: Mapped[DeliveryStatus] = mapped_column(
        _enum(DeliveryStatus), default=DeliveryStatus.PENDING, index=True
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(300))
    response_status: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[dt.datetime | None]


class DutyCameraKind(enum.StrEnum):
    TV = "tv"  # the village TV's own camera while no meeting is on
    RTSP = "rtsp"  # an IP camera, pulled by the server
    KIOSK = "kiosk"  # a phone or tablet on the /duty page


class DutyCamera(Base):
    """A village's duty-room camera. An RTSP URL (with its credentials) stays on the
    server: the API shows it with the password masked, and logs never carry it."""

    __tablename__ = "duty_cameras"

    id: Mapped[int] = mapped_column(primary_key=True)
    village_id: Mapped[int] = mapped_column(ForeignKey("org_units.id"), index=True)
    org_path: Mapped[str] = mapped_column(String(255), index=True)
    kind: Mapped[DutyCameraKind] = mapped_column(_enum(DutyCameraKind))
    name: Mapped[str] = mapped_column(String(100))
    rtsp_url: Mapped[str | None] = mapped_column(String(500))
    terminal_id: Mapped[int | None] = mapped_column(ForeignKey("terminals.id", ondelete="SET NULL"))
    # when it watches: {"weekdays": [0..6], "from": "07:30", "to": "18:30"}; empty: duty hours
    schedule: Mapped[dict] = mapped_column(JSON, default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    last_frame_at: Mapped[dt.datetime | None]
    last_recognition_at: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class DutyReport(Base):
    """A closed period's duty summary for a town or the county, pushed to its staff: the
    figures as the summary API gives them, kept as they were when the period closed."""

    __tablename__ = "duty_reports"
    __table_args__ = (UniqueConstraint("org_id", "period", "starts"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("org_units.id", ondelete="CASCADE"))
    org_path: Mapped[str] = mapped_column(String(255), index=True)
    period: Mapped[str] = mapped_column(String(8))  # week | month | quarter
    starts: Mapped[dt.date] = mapped_column(Date)
    ends: Mapped[dt.date] = mapped_column(Date)  # inclusive
    summary: Mapped[dict] = mapped_column(JSON)  # the XLSX is made from it when asked
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
