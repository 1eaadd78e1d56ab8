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
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.ext.asyncio import AsyncAttrs
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


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
