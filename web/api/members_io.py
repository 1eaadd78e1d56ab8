"""Spreadsheets in and out: member import as a background job (/api/members/import,
/api/imports/{job_id}) and XLSX exports of the member roll and of meeting records.

Imports validate every row with the members API's own rules (MemberBody) and write in
chunks, one transaction each, so a failure never leaves half a chunk or half a row.
Exports use the import's Chinese headers, so an exported roll can be imported again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import logging
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

import aiohttp
from aiohttp import BodyPartReader, web
from openpyxl import Workbook
from openpyxl.styles import Alignment, Font
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import raiseload

from db import audit
from db.access import Capability, Principal
from db.database import Database
from db.member_import import (
    COLUMNS,
    EXEMPT_LABELS,
    GENDER_LABELS,
    POST_LABELS,
    STATUS_LABELS,
    BranchIndex,
    DuplicateKey,
    ImportFileError,
    NewMember,
    Sheet,
    SheetRow,
    cell_values,
    read_sheet,
    write_chunk,
)
from db.models import (
    AttendanceStatus,
    Meeting,
    MeetingStatus,
    MeetingType,
    Member,
    OrgUnit,
    SignInMethod,
)
from db.xlsx import DATETIME_FORMAT, table_workbook

from .common import ApiError, authed, check, json_response, not_found, query_int, scoped_org
from .members import MemberBody

logger = logging.getLogger(__name__)

IMPORT_MAX_BYTES = 10 * 1024 * 1024
CHUNK_ROWS = 500
MAX_LISTED_ERRORS = 2000  # progress is polled: keep its JSON small even for a hopeless file
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# China has one time zone and no daylight saving: a fixed offset needs no tz database
CHINA_TIME = dt.timezone(dt.timedelta(hours=8), "CST")


# -- import jobs --------------------------------------------------------------------------


@dataclass
class ImportJob:
    id: str
    principal: Principal
    file_name: str
    total: int
    remote_addr: str | None
    sheet: Sheet | None  # dropped once the job ends
    state: str = "running"  # running | done | failed
    processed: int = 0
    created: int = 0
    duplicates: int = 0
    message: str | None = None
    errors: list[dict] = field(default_factory=list)
    rejected_rows: set[int] = field(default_factory=set)
    listed: int = 0
    finished_at: float | None = None
    task: asyncio.Task | None = None

    def reject(self, row: int, column: str | None, message: str) -> None:
        self.rejected_rows.add(row)
        self._list(row, column, message)

    def duplicate(self, row: int, message: str) -> None:
        self.duplicates += 1
        self._list(row, None, message)

    def _list(self, row: int, column: str | None, message: str) -> None:
        self.listed += 1
        if len(self.errors) < MAX_LISTED_ERRORS:
            self.errors.append({"row": row, "column": column, "message": message})

    def to_json(self) -> dict:
        return {
            "job_id": self.id,
            "state": self.state,
            "file_name": self.file_name,
            "processed": self.processed,
            "total": self.total,
            "created": self.created,
            "duplicates": self.duplicates,
            "rejected": len(self.rejected_rows),
            # duplicates are listed too: staff need to see which rows were left out
            "errors": sorted(self.errors, key=lambda e: e["row"]),
            "errors_truncated": self.listed > len(self.errors),
            "message": self.message,
        }


class ImportJobs:
    """The running and recently finished imports of one app; each job is an asyncio task."""

    def __init__(self, database: Database, keep: int = 100, running_max: int = 8) -> None:
        self.database = database
        self.keep = keep
        self.running_max = running_max
        self._jobs: dict[str, ImportJob] = {}

    def start(
        self, principal: Principal, file_name: str, sheet: Sheet, remote_addr: str | None
    ) -> ImportJob:
        running = [j for j in self._jobs.values() if j.state == "running"]
        if any(j.principal.subject == principal.subject for j in running):
            raise ApiError(429, "import_running", "您已有一个导入任务正在进行，请等它完成后再导入")
        if len(running) >= self.running_max:
            raise ApiError(429, "import_busy", "同时进行的导入任务太多，请稍后再试")
        self._forget_old()
        job = ImportJob(
            id=secrets.token_urlsafe(12),
            principal=principal,
            file_name=file_name,
            total=len(sheet.rows),
            remote_addr=remote_addr,
            sheet=sheet,
        )
        self._jobs[job.id] = job
        job.task = asyncio.create_task(self._run(job), name=f"member-import-{job.id}")
        return job

    def get(self, job_id: str, principal: Principal) -> ImportJob | None:
        job = self._jobs.get(job_id)
        # another account's job looks like no job at all
        return job if job is not None and job.principal.subject == principal.subject else None

    async def close(self) -> None:
        tasks = [j.task for j in self._jobs.values() if j.task is not None and not j.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _forget_old(self) -> None:
        finished = sorted(
            (j for j in self._jobs.values() if j.finished_at is not None),
            key=lambda j: j.finished_at or 0.0,
        )
        for job in finished[: max(0, len(self._jobs) + 1 - self.keep)]:
            del self._jobs[job.id]

    async def _run(self, job: ImportJob) -> None:
        try:
            assert job.sheet is not None
            async with self.database.session() as session:
                branches = await BranchIndex.load(session, job.principal.org_path)
            seen: dict[DuplicateKey, int] = {}
            rows = job.sheet.rows
            for start in range(0, len(rows), CHUNK_ROWS):
                chunk = rows[start : start + CHUNK_ROWS]
                valid = [m for row in chunk if (m := _validate(job, row, branches, seen))]
                await self._write(job, valid)
                job.processed += len(chunk)
            job.state = "done"
        except asyncio.CancelledError:
            job.state, job.message = "failed", "服务器停止，导入中断；已保存的行保留"
            raise
        except Exception:
            logger.exception("member import %s failed", job.id)
            job.state, job.message = "failed", "导入出错中断；已保存的行保留"
        finally:
            job.sheet = None
            job.finished_at = time.monotonic()
            await self._audit(job)

    async def _write(self, job: ImportJob, rows: list[NewMember]) -> None:
        if not rows:
            return
        try:
            async with self.database.session() as session, session.begin():
                created, duplicates = await write_chunk(session, rows)
        except (SQLAlchemyError, OSError):
            logger.exception("member import %s: a chunk could not be written", job.id)
            for row in rows:
                job.reject(row.row, None, "保存失败（数据库错误），本行未导入，请稍后重新导入")
            return
        job.created += len(created)
        for row in duplicates:
            job.duplicate(row.row, "与已有党员重复（姓名、出生日期、所在支部都相同），未导入")

    async def _audit(self, job: ImportJob) -> None:
        try:
            async with self.database.session() as session:
                audit.record(
                    session,
                    job.principal,
                    "members_imported",
                    target_type="member_import",
                    target_id=job.id,
                    org_path=job.principal.org_path,
                    remote_addr=job.remote_addr,
                    detail={
                        "file": job.file_name,
                        "state": job.state,
                        "rows": job.total,
                        "created": job.created,
                        "duplicates": job.duplicates,
                        "errors": len(job.rejected_rows),
                    },
                )
                await session.commit()
        except Exception:
            logger.exception("member import %s: could not write the audit entry", job.id)


IMPORT_JOBS_KEY = web.AppKey("member_import_jobs", ImportJobs)


async def stop_imports(app: web.Application) -> None:
    """on_shutdown: end running imports while the database is still open."""
    await app[IMPORT_JOBS_KEY].close()


# -- one row ------------------------------------------------------------------------------


def _validate(
    job: ImportJob, row: SheetRow, branches: BranchIndex, seen: dict[DuplicateKey, int]
) -> NewMember | None:
    """The row as a member to insert, or None after reporting what is wrong with it."""
    assert job.sheet is not None
    values, errors = cell_values(row)
    branch: OrgUnit | None = None
    try:
        branch = branches.resolve(row.cells.get("branch"))
        values["branch_id"] = branch.id
    except ValueError as exc:
        errors["branch"] = str(exc)
        values["branch_id"] = 0  # lets the API's rules judge the other fields
    try:
        body: MemberBody | None = MemberBody.model_validate(values)
    except ValidationError as exc:
        body = None
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else "name"
            errors.setdefault(name, _message(name, error, row.cells.get(name) is None))
    if errors or body is None or branch is None:
        for name, message in errors.items():
            job.reject(row.number, job.sheet.header(name), message)
        return None
    key = (body.name, body.birth_date, branch.id)
    if key in seen:
        job.duplicate(
            row.number, f"与第 {seen[key]} 行重复（姓名、出生日期、所在支部都相同），未导入"
        )
        return None
    seen[key] = row.number
    values = body.model_dump(exclude={"posts"})
    values.update(posts=[p.value for p in body.posts], org_path=branch.path)
    return NewMember(row.number, key, values)


_RULE_MESSAGES = {"must not be in the future": "不能晚于今天", "must not be blank": "必填"}


def _message(name: str, error: ErrorDetails, empty: bool) -> str:
    """The members API's rule, said in Chinese."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if empty or kind == "missing":
        return "必填"
    if kind == "string_too_long":
        return f"不能超过 {ctx.get('max_length')} 个字"
    if kind == "string_pattern_mismatch" and name == "phone":
        return "应为 5 到 20 位数字，可含 +、- 和空格"
    if kind == "value_error":
        reason = str(ctx.get("error", ""))
        return _RULE_MESSAGES.get(reason, f"取值无效（{reason}）")
    return f"取值无效（{error['msg']}）"


# -- handlers: import ---------------------------------------------------------------------


async def _read_upload(request: web.Request) -> tuple[bytes, str]:
    """The `file` part of a multipart upload, refused as soon as it passes the size limit."""
    if not request.content_type.startswith("multipart/"):
        raise ApiError(
            415,
            "unsupported_media_type",
            "请以 multipart/form-data 上传，文件放在 file 字段",
        )
    too_big = ApiError(
        413,
        "file_too_large",
        f"文件超过 {IMPORT_MAX_BYTES // (1024 * 1024)} MB 上限，请分成几个文件导入",
    )
    if (request.content_length or 0) > IMPORT_MAX_BYTES + 64 * 1024:
        raise too_big
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or part.name != "file":
                await part.release()
                continue
            data = bytearray()
            while chunk := await part.read_chunk(256 * 1024):
                data += chunk
                if len(data) > IMPORT_MAX_BYTES:
                    raise too_big
            # aiohttp's own client percent-encodes non-ASCII names; browsers send UTF-8
            return bytes(data), unquote(part.filename or "upload")
    except (ValueError, AssertionError, aiohttp.ClientPayloadError) as exc:
        raise ApiError(400, "bad_upload", "上传内容不完整或格式有误") from exc
    raise ApiError(422, "validation_failed", "没有收到文件（字段名 file）", {"file": "必填"})


@authed
async def post_import(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    check(principal, Capability.MEMBERS_WRITE, principal.org_path, "org unit")
    data, file_name = await _read_upload(request)
    try:
        # parsing a large workbook takes a second or two: keep it off the event loop
        sheet = await asyncio.to_thread(read_sheet, data, file_name)
    except ImportFileError as error:
        if error.too_big:
            raise ApiError(413, "too_many_rows", error.message) from error
        if error.unsupported:
            raise ApiError(415, "unsupported_file_type", error.message) from error
        raise ApiError(422, "unreadable_file", error.message) from error
    if not sheet.rows:
        raise ApiError(422, "unreadable_file", "表头下面没有党员数据")
    job = request.app[IMPORT_JOBS_KEY].start(principal, file_name, sheet, request.remote)
    audit.record(
        session,
        principal,
        "member_import_started",
        target_type="member_import",
        target_id=job.id,
        org_path=principal.org_path,
        remote_addr=request.remote,
        detail={"file": file_name, "rows": job.total},
    )
    await session.commit()
    return json_response({"job_id": job.id, "total_rows": job.total}, status=202)


@authed
async def get_import(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    job = request.app[IMPORT_JOBS_KEY].get(request.match_info["job_id"], principal)
    if job is None:
        raise not_found("import job")
    return json_response(job.to_json())


# -- handlers: export ---------------------------------------------------------------------

MEETING_TYPE_LABELS: dict[MeetingType, str] = {
    MeetingType.PARTY_CONGRESS: "党员大会",
    MeetingType.BRANCH_COMMITTEE: "支委会",
    MeetingType.GROUP_MEETING: "党小组会",
    MeetingType.PARTY_LECTURE: "党课",
    MeetingType.THEME_DAY: "主题党日",
    MeetingType.ORG_LIFE: "组织生活会",
    MeetingType.COUNTY_WORK: "县级工作会议",
    MeetingType.TOWN_WORK: "乡镇工作会议",
    MeetingType.OTHER: "其他",
}
MEETING_STATUS_LABELS: dict[MeetingStatus, str] = {
    MeetingStatus.SCHEDULED: "已安排",
    MeetingStatus.LIVE: "进行中",
    MeetingStatus.ENDED: "已结束",
    MeetingStatus.CANCELLED: "已取消",
}
SIGN_IN_LABELS: dict[SignInMethod, str] = {
    SignInMethod.FACE: "人脸识别",
    SignInMethod.MANUAL: "手工",
}
BRANCH_NAME_HEADER = "支部名称"  # for reading only: the import goes by 所在支部 (the code)
MEMBER_HEADERS = [c.header for c in COLUMNS]
MEMBER_WIDTHS = [10, 6, 12, 10, 12, 10, 12, 20, 18, 24, 16, 24]
MEETING_HEADERS = [
    "类型",
    "主题",
    "组织单位",
    "时间",
    "结束时间",
    "地点",
    "主持人",
    "记录人",
    "应到",
    "实到",
    "缺席",
    "内容",
    "决议",
    "状态",
]
MEETING_WIDTHS = [12, 30, 16, 17, 17, 16, 10, 10, 6, 6, 6, 40, 40, 8]


def _local(value: dt.datetime | None) -> dt.datetime | None:
    """China time without tzinfo, which Excel cannot hold (the database gives UTC)."""
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(CHINA_TIME).replace(tzinfo=None)


def _label(labels: dict, value: object) -> str | None:
    # the keys are StrEnums, so a plain string from the database finds its label too
    return None if value is None else labels.get(value, str(value))


def _xlsx_response(body: bytes, file_name: str, fallback: str) -> web.Response:
    safe = re.sub(r'[\\/:*?"<>|\x00-\x1f]+', "_", file_name)
    return web.Response(
        body=body,
        content_type=XLSX_TYPE,
        headers={
            # the ASCII name for old clients, the Chinese one (RFC 6266/5987) for the rest
            "Content-Disposition": (
                f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(safe)}"
            ),
            "Cache-Control": "no-store",
        },
    )


def _workbook_bytes(
    sheet_name: str,
    title: str,
    headers: Sequence[str],
    widths: Sequence[int],
    rows: Sequence[Sequence[object]],
) -> bytes:
    return table_workbook(sheet_name, title, headers, rows, widths)


def _stamp() -> str:
    return dt.datetime.now(CHINA_TIME).strftime("%Y-%m-%d %H:%M")


@authed
async def export_members(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    org = await scoped_org(session, principal, query_int(request, "org"), Capability.MEMBERS_READ)
    result = await session.execute(
        select(Member, OrgUnit.code, OrgUnit.name)
        .join(OrgUnit, Member.branch_id == OrgUnit.id)
        .where(Member.org_path.like(f"{org.path}%"))
    )
    # sorted here, not in SQL: the two databases collate Chinese names differently
    found = sorted(result.all(), key=lambda r: (r[1], r[0].name, r[0].id))
    rows = [
        [
            m.name,
            _label(GENDER_LABELS, m.gender),
            m.birth_date,
            m.education,
            m.joined_date,
            _label(STATUS_LABELS, m.status),
            code,
            "、".join(_label(POST_LABELS, p) or "" for p in m.posts or []),
            _label(EXEMPT_LABELS, m.exempt_reason),
            m.exempt_note,
            m.phone,
            branch_name,
        ]
        for m, code, branch_name in found
    ]
    title = f"{org.name} 党员名册（{_stamp()} 导出，共 {len(rows)} 人）"
    body = await asyncio.to_thread(
        _workbook_bytes,
        "党员名册",
        title,
        [*MEMBER_HEADERS, BRANCH_NAME_HEADER],
        MEMBER_WIDTHS,
        rows,
    )
    audit.record(
        session,
        principal,
        "members_exported",
        target_type="org",
        target_id=org.id,
        org_path=org.path,
        remote_addr=request.remote,
        detail={"org": org.name, "count": len(rows)},
    )
    await session.commit()
    day = dt.date.today().strftime("%Y%m%d")
    return _xlsx_response(body, f"党员名册-{org.name}-{day}.xlsx", f"members-{day}.xlsx")


def _meeting_start(meeting: Meeting) -> dt.datetime | None:
    return meeting.actual_start or meeting.scheduled_start


def _meeting_end(meeting: Meeting) -> dt.datetime | None:
    return meeting.actual_end or meeting.scheduled_end


@authed
async def export_meetings(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    org = await scoped_org(session, principal, query_int(request, "org"), Capability.MEETINGS_READ)
    result = await session.execute(
        select(Meeting, OrgUnit.name)
        .join(OrgUnit, Meeting.organiser_id == OrgUnit.id)
        .where(Meeting.org_path.like(f"{org.path}%"))
        .options(raiseload("*"))  # the list needs no attendance, sites or guests
    )
    found = list(result.all())
    # in time order, meetings not yet timed last; compared as China time across databases
    far = dt.datetime.max
    found.sort(key=lambda r: (_local(_meeting_start(r[0])) or far, r[0].id))
    rows = [
        [
            _label(MEETING_TYPE_LABELS, m.type),
            m.topic,
            organiser,
            _local(_meeting_start(m)),
            _local(_meeting_end(m)),
            m.venue,
            m.host,
            m.recorder,
            m.expected_count,
            m.actual_count,
            m.absent_count,
            m.content,
            m.resolutions,
            _label(MEETING_STATUS_LABELS, m.status),
        ]
        for m, organiser in found
    ]
    title = f"{org.name} 会议记录（{_stamp()} 导出，共 {len(rows)} 次）"
    body = await asyncio.to_thread(
        _workbook_bytes, "会议记录", title, MEETING_HEADERS, MEETING_WIDTHS, rows
    )
    audit.record(
        session,
        principal,
        "meetings_exported",
        target_type="org",
        target_id=org.id,
        org_path=org.path,
        remote_addr=request.remote,
        detail={"org": org.name, "count": len(rows)},
    )
    await session.commit()
    day = dt.date.today().strftime("%Y%m%d")
    return _xlsx_response(body, f"会议记录-{org.name}-{day}.xlsx", f"meetings-{day}.xlsx")


def _meeting_workbook(
    title: str,
    fields: dict[str, object],
    present: list[list[object]],
    absent: list[list[object]],
    guests: list[list[object]],
) -> bytes:
    # one record sheet, laid out like the paper 会议记录 the branches keep
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "会议记录"
    for column, width in zip("ABCDE", (14, 16, 20, 14, 20), strict=True):
        sheet.column_dimensions[column].width = width
    bold = Font(bold=True)
    wrap = Alignment(wrap_text=True, vertical="top")
    sheet.append([title])
    sheet["A1"].font = Font(bold=True, size=14)
    sheet.merge_cells("A1:E1")
    for label, value in fields.items():
        sheet.append([label, value])
        row = sheet.max_row
        sheet.cell(row, 1).font = bold
        if isinstance(value, dt.datetime):
            sheet.cell(row, 2).number_format = DATETIME_FORMAT
        if label in ("内容", "决议"):
            sheet.merge_cells(start_row=row, start_column=2, end_row=row, end_column=5)
            sheet.cell(row, 2).alignment = wrap
    for heading, headers, rows in (
        ("出席人员", ["序号", "姓名", "所在支部", "签到方式", "签到时间"], present),
        ("缺席人员", ["序号", "姓名", "所在支部", "缺席原因"], absent),
        ("列席人员", ["序号", "姓名", "备注"], guests),
    ):
        sheet.append([])
        sheet.append([f"{heading}（{len(rows)} 人）"])
        sheet.cell(sheet.max_row, 1).font = bold
        sheet.append(headers)
        for cell in sheet[sheet.max_row]:
            cell.font = bold
        for number, row in enumerate(rows, start=1):
            sheet.append([number, *row])
            if isinstance(row[-1], dt.datetime):
                sheet.cell(sheet.max_row, len(row) + 1).number_format = DATETIME_FORMAT
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


@authed
async def export_meeting(
    request: web.Request, session: AsyncSession, principal: Principal
) -> web.Response:
    meeting = await session.get(Meeting, int(request.match_info["meeting_id"]))
    if meeting is None:
        raise not_found("meeting")
    check(principal, Capability.MEETINGS_READ, meeting.org_path, "meeting")
    organiser = await session.get(OrgUnit, meeting.organiser_id)
    ids = [a.member_id for a in meeting.attendance]
    people: dict[int, tuple[str, str]] = {}
    if ids:
        result = await session.execute(
            select(Member.id, Member.name, OrgUnit.name)
            .join(OrgUnit, Member.branch_id == OrgUnit.id)
            .where(Member.id.in_(ids))
        )
        people = {member_id: (name, branch) for member_id, name, branch in result}
    present: list[list[object]] = []
    absent: list[list[object]] = []
    for a in sorted(meeting.attendance, key=lambda a: (people.get(a.member_id, ("", "")), a.id)):
        name, branch = people.get(a.member_id, (f"#{a.member_id}", ""))
        if a.status == AttendanceStatus.PRESENT:
            method = _label(SIGN_IN_LABELS, a.method)
            present.append([name, branch, method, _local(a.signed_in_at)])
        else:
            absent.append([name, branch, a.absence_reason])
    guests: list[list[object]] = [[g.name, g.note] for g in meeting.guests]
    title = f"{organiser.name if organiser else ''} 会议记录"
    fields: dict[str, object] = {
        "会议类型": _label(MEETING_TYPE_LABELS, meeting.type),
        "主题": meeting.topic,
        "组织单位": organiser.name if organiser else None,
        "时间": _local(_meeting_start(meeting)),
        "结束时间": _local(_meeting_end(meeting)),
        "地点": meeting.venue,
        "主持人": meeting.host,
        "记录人": meeting.recorder,
        "应到人数": meeting.expected_count,
        "实到人数": meeting.actual_count,
        "缺席人数": meeting.absent_count,
        "内容": meeting.content,
        "决议": meeting.resolutions,
        "状态": _label(MEETING_STATUS_LABELS, meeting.status),
    }
    body = await asyncio.to_thread(_meeting_workbook, title, fields, present, absent, guests)
    audit.record(
        session,
        principal,
        "meeting_exported",
        target_type="meeting",
        target_id=meeting.id,
        org_path=meeting.org_path,
        remote_addr=request.remote,
        detail={"topic": meeting.topic},
    )
    await session.commit()
    return _xlsx_response(body, f"会议记录-{meeting.topic[:60]}.xlsx", f"meeting-{meeting.id}.xlsx")
