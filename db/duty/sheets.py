"""Duty rosters, leave and the county's calendar as the spreadsheets towns keep them:
read from an XLSX or CSV (the member roll's reader, db/member_import.py, with these
columns) and written as XLSX with the same headers, so that an export edited in Excel
imports again.

An import is all or nothing: every row is checked (and applied inside the caller's
transaction); any refused row refuses the file, with each row's reason in Chinese, by the
row number Excel shows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.member_import import Cell, Sheet, SheetLayout, parse_date
from db.models import DutyCadre, DutyCalendarDay, DutyLeave, Member, OrgKind, OrgUnit
from db.xlsx import table_workbook

from .rules import CalendarKind, LeaveKind
from .store import DutyClock, DutyError, add_cadre, add_leave, set_calendar_day

ROSTER = SheetLayout.of(
    {
        "town": ("乡镇", "乡镇（街道）", "乡镇/街道", "街道"),
        "village": ("村（社区）", "村", "社区", "村/社区", "村名"),
        "name": ("姓名", "干部姓名"),
        "member_id": ("党员编号", "编号"),
        "post": ("职务", "岗位"),
        "first_secretary": ("第一书记", "是否第一书记"),
        "required_days": ("驻村天数（天/月）", "驻村天数", "驻村要求（天/月）"),
    },
    ("village", "name", "post"),
    "name",
    "需要“村（社区）”“姓名”“职务”列",
)
LEAVE = SheetLayout.of(
    {
        "village": ("村（社区）", "村", "社区"),
        "name": ("姓名", "干部姓名"),
        "member_id": ("党员编号", "编号"),
        "kind": ("类型", "请假类型"),
        "starts": ("开始日期", "开始", "起始日期"),
        "ends": ("结束日期", "结束", "截止日期"),
        "reason": ("事由", "原因", "请假事由"),
        "approver": ("批准人", "审批人"),
    },
    ("name", "kind", "starts", "ends", "reason", "approver"),
    "name",
    "需要“姓名”“类型”“开始日期”“结束日期”“事由”“批准人”列",
)
CALENDAR = SheetLayout.of(
    {
        "date": ("日期",),
        "kind": ("类型", "安排"),
        "name": ("名称", "节日", "说明"),
    },
    ("date", "kind"),
    "date",
    "需要“日期”“类型”列",
)

LEAVE_KINDS = {"请假": LeaveKind.LEAVE, "事假": LeaveKind.LEAVE, "病假": LeaveKind.LEAVE}
LEAVE_KINDS |= {"外出公干": LeaveKind.FIELD_DUTY, "公干": LeaveKind.FIELD_DUTY}
LEAVE_LABELS = {LeaveKind.LEAVE: "请假", LeaveKind.FIELD_DUTY: "外出公干"}
CALENDAR_KINDS = {
    "节假日": CalendarKind.HOLIDAY,
    "放假": CalendarKind.HOLIDAY,
    "休息": CalendarKind.HOLIDAY,
    "调休上班": CalendarKind.WORKDAY,
    "上班": CalendarKind.WORKDAY,
    "补班": CalendarKind.WORKDAY,
}
CALENDAR_LABELS = {CalendarKind.HOLIDAY: "节假日", CalendarKind.WORKDAY: "调休上班"}
YES, NO = {"是", "√", "y", "yes", "1"}, {"否", "", "n", "no", "0"}


class SheetRejected(ValueError):
    """Rows refused, by their row number in the file."""

    def __init__(self, errors: dict[int, str]) -> None:
        super().__init__(f"{len(errors)} rows refused")
        self.errors = errors

    def fields(self) -> dict[str, str]:
        return {f"第 {n} 行": text for n, text in sorted(self.errors.items())}


@dataclass
class _Places:
    """The villages of a subtree by name, and by (town, name) where two share a name."""

    villages: dict[str, list[OrgUnit]] = field(default_factory=dict)
    towns: dict[int, str] = field(default_factory=dict)

    def find(self, name: Cell, town: Cell) -> OrgUnit:
        found = self.villages.get(str(name or ""), [])
        if town:
            found = [v for v in found if self.towns.get(v.parent_id or 0) == str(town)]
        if not found:
            raise ValueError(f"没有名为“{name}”的村（社区）" + (f"在“{town}”" if town else ""))
        if len(found) > 1:
            raise ValueError(f"有 {len(found)} 个村（社区）叫“{name}”，请填写“乡镇”列")
        return found[0]


async def _places(session: AsyncSession, org: OrgUnit) -> _Places:
    places = _Places()
    units = await session.scalars(
        select(OrgUnit).where(
            OrgUnit.path.like(f"{org.path}%"), OrgUnit.kind.in_([OrgKind.TOWN, OrgKind.VILLAGE])
        )
    )
    for unit in units:
        if unit.kind is OrgKind.TOWN:
            places.towns[unit.id] = unit.name
        else:
            places.villages.setdefault(unit.name, []).append(unit)
    return places


def _member_id(value: Cell) -> int | None:
    if value is None:
        return None
    text = str(value)
    if not text.isdigit() or len(text) > 12:
        raise ValueError(f"党员编号应为数字，不是“{text}”")
    return int(text)


def _yes(value: Cell) -> bool:
    text = str(value or "").strip().lower()
    if text in YES:
        return True
    if text in NO:
        return False
    raise ValueError(f"“第一书记”填“是”或“否”，不是“{text}”")


def _days(value: Cell) -> int | None:
    if value is None:
        return None
    text = str(value)
    if not text.isdigit() or not 1 <= int(text) <= 31:
        raise ValueError(f"驻村天数为 1 到 31 的整数，不是“{text}”")
    return int(text)


def _date(value: Cell, header: str) -> dt.date:
    try:
        date = parse_date(value)
    except ValueError as error:
        raise ValueError(f"{header}：{error}") from None
    if date is None:
        raise ValueError(f"缺少{header}")
    return date


async def import_roster(
    session: AsyncSession,
    org: OrgUnit,
    sheet: Sheet,
    may_write: Callable[[str], bool],
) -> list[DutyCadre]:
    """Put each row's member on its village's roster (a member already on it gets the
    row's post). `may_write(org_path)`: the caller's duty:write there."""
    places = await _places(session, org)
    errors: dict[int, str] = {}
    cadres: list[DutyCadre] = []
    seen: dict[int, int] = {}  # member id -> the row that put them on a roster
    for row in sheet.rows:
        cells = row.cells
        try:
            if not cells.get("name") or not cells.get("post"):
                raise ValueError("“姓名”和“职务”必填")
            village = places.find(cells.get("village"), cells.get("town"))
            member = await _member(session, village, cells, may_write)
            if member.id in seen:
                raise ValueError(f"与第 {seen[member.id]} 行是同一个人")
            cadre = await add_cadre(
                session,
                village,
                member,
                post=str(cells["post"]),
                first_secretary=_yes(cells.get("first_secretary")),
                required_days=_days(cells.get("required_days")),
            )
            seen[member.id] = row.number
            cadres.append(cadre)
        except (ValueError, DutyError) as error:
            errors[row.number] = _text(error)
    if errors:
        raise SheetRejected(errors)
    if not cadres:
        raise SheetRejected({0: "表中没有干部"})
    return cadres


async def _member(
    session: AsyncSession,
    village: OrgUnit,
    cells: dict[str, Cell],
    may_write: Callable[[str], bool],
) -> Member:
    """By 党员编号 (any member the caller may put on a roster: a first secretary comes
    from elsewhere), else by name among the village's own members, who must be one."""
    name = str(cells["name"])
    member_id = _member_id(cells.get("member_id"))
    if member_id is not None:
        member = await session.get(Member, member_id)
        if member is None or not may_write(member.org_path):
            raise ValueError(f"没有编号为 {member_id} 的党员（或不在您的管辖范围）")
        if member.name != name:
            raise ValueError(f"编号 {member_id} 是“{member.name}”，不是“{name}”")
        return member
    found = (
        await session.scalars(
            select(Member).where(Member.org_path.like(f"{village.path}%"), Member.name == name)
        )
    ).all()
    if not found:
        raise ValueError(f"{village.name}没有名为“{name}”的党员（外来的第一书记请填党员编号）")
    if len(found) > 1:
        raise ValueError(f"{village.name}有 {len(found)} 名党员叫“{name}”，请填写党员编号")
    return found[0]


def _text(error: Exception) -> str:
    if isinstance(error, DutyError):
        return {
            "cadre_in_other_village": "已在另一个村的值班名单上，请先从那里移除",
            "leave_overlaps": "与此人已有的请假时间重叠",
            "bad_post": "缺少职务",
            "bad_leave": "请假时间、事由或批准人有误",
            "bad_required_days": "驻村天数为 1 到 31",
        }.get(error.code, str(error))
    return str(error)


async def import_leave(
    session: AsyncSession,
    org: OrgUnit,
    clock: DutyClock,
    sheet: Sheet,
    *,
    actor: str,
) -> list[DutyLeave]:
    """Each row a cadre's whole days of leave or field duty, first to last day inclusive
    (a part of a day is entered in the console)."""
    cadres = (
        await session.scalars(
            select(DutyCadre)
            .join(Member, Member.id == DutyCadre.member_id)
            .where(DutyCadre.org_path.like(f"{org.path}%"))
        )
    ).all()
    names: dict[str, list[DutyCadre]] = {}
    villages = {
        unit.id: unit.name
        for unit in await session.scalars(
            select(OrgUnit).where(OrgUnit.id.in_({c.village_id for c in cadres}))
        )
    }
    for cadre in cadres:
        names.setdefault(cadre.member.name, []).append(cadre)
    errors: dict[int, str] = {}
    leaves: list[DutyLeave] = []
    for row in sheet.rows:
        cells = row.cells
        try:
            member_id = _member_id(cells.get("member_id"))
            found = names.get(str(cells.get("name") or ""), [])
            if member_id is not None:
                found = [c for c in found if c.member_id == member_id]
            if cells.get("village"):
                found = [c for c in found if villages.get(c.village_id) == cells["village"]]
            if not found:
                raise ValueError(f"值班名单上没有“{cells.get('name')}”")
            if len(found) > 1:
                raise ValueError(
                    f"值班名单上有 {len(found)} 人叫“{cells.get('name')}”，请填写村或党员编号"
                )
            kind = LEAVE_KINDS.get(str(cells.get("kind") or ""))
            if kind is None:
                raise ValueError("“类型”填“请假”或“外出公干”")
            first = _date(cells.get("starts"), "开始日期")
            last = _date(cells.get("ends"), "结束日期")
            if last < first:
                raise ValueError("结束日期早于开始日期")
            leave = await add_leave(
                session,
                clock,
                found[0],
                kind=kind,
                starts=clock.utc(dt.datetime.combine(first, dt.time())),
                ends=clock.utc(dt.datetime.combine(last + dt.timedelta(days=1), dt.time())),
                reason=str(cells.get("reason") or ""),
                approver=str(cells.get("approver") or ""),
                actor=actor,
            )
            leaves.append(leave)
        except (ValueError, DutyError) as error:
            errors[row.number] = _text(error)
    if errors:
        raise SheetRejected(errors)
    if not leaves:
        raise SheetRejected({0: "表中没有请假记录"})
    return leaves


async def import_calendar(session: AsyncSession, county: OrgUnit, sheet: Sheet) -> int:
    """Each row a date the county marks a holiday or a make-up working day; a row whose
    type is “工作日” or “取消” unmarks its date."""
    errors: dict[int, str] = {}
    dates: dict[dt.date, int] = {}
    for row in sheet.rows:
        cells = row.cells
        try:
            date = _date(cells.get("date"), "日期")
            if date in dates:
                raise ValueError(f"与第 {dates[date]} 行是同一天")
            label = str(cells.get("kind") or "")
            kind = CALENDAR_KINDS.get(label)
            if kind is None and label not in ("工作日", "取消"):
                raise ValueError("“类型”填“节假日”或“调休上班”（“取消”撤销该日）")
            await set_calendar_day(session, county, date, kind, str(cells.get("name") or "")[:50])
            dates[date] = row.number
        except (ValueError, DutyError) as error:
            errors[row.number] = _text(error)
    if errors:
        raise SheetRejected(errors)
    if not dates:
        raise SheetRejected({0: "表中没有日期"})
    return len(dates)


# -- exports: the same headers, so that an edited export imports again ---------------------


def _headers(layout: SheetLayout, fields: Sequence[str]) -> list[str]:
    return [layout.headers[f] for f in fields]


ROSTER_FIELDS = ("town", "village", "name", "member_id", "post", "first_secretary", "required_days")
LEAVE_FIELDS = ("village", "name", "member_id", "kind", "starts", "ends", "reason", "approver")


async def roster_workbook(session: AsyncSession, org: OrgUnit) -> bytes:
    rows = await session.execute(
        select(DutyCadre, Member.name, OrgUnit)
        .join(Member, Member.id == DutyCadre.member_id)
        .join(OrgUnit, OrgUnit.id == DutyCadre.village_id)
        .where(DutyCadre.org_path.like(f"{org.path}%"))
        .order_by(OrgUnit.path, DutyCadre.id)
    )
    towns = {
        unit.id: unit.name
        for unit in await session.scalars(select(OrgUnit).where(OrgUnit.kind == OrgKind.TOWN))
    }
    table = [
        [
            towns.get(village.parent_id or 0, ""),
            village.name,
            name,
            cadre.member_id,
            cadre.post,
            "是" if cadre.first_secretary else "否",
            cadre.required_days,
        ]
        for cadre, name, village in rows
    ]
    return table_workbook(
        "值班名单", f"{org.name} 村干部坐班值班名单", _headers(ROSTER, ROSTER_FIELDS), table
    )


async def leave_workbook(session: AsyncSession, org: OrgUnit, clock: DutyClock) -> bytes:
    rows = await session.execute(
        select(DutyLeave, Member.name, OrgUnit.name)
        .join(Member, Member.id == DutyLeave.member_id)
        .join(DutyCadre, DutyCadre.member_id == DutyLeave.member_id)
        .join(OrgUnit, OrgUnit.id == DutyCadre.village_id)
        .where(DutyLeave.org_path.like(f"{org.path}%"), DutyLeave.cancelled_at.is_(None))
        .order_by(DutyLeave.starts_at)
    )
    table = [
        [
            village,
            name,
            leave.member_id,
            LEAVE_LABELS[leave.kind],
            # whole days, as the import reads them (the last day inclusive)
            clock.local(leave.starts_at).date(),
            (clock.local(leave.ends_at) - dt.timedelta(seconds=1)).date(),
            leave.reason,
            leave.approver,
        ]
        for leave, name, village in rows
    ]
    return table_workbook(
        "请假", f"{org.name} 村干部请假与外出公干", _headers(LEAVE, LEAVE_FIELDS), table
    )


async def calendar_workbook(session: AsyncSession, county: OrgUnit) -> bytes:
    days = await session.scalars(
        select(DutyCalendarDay)
        .where(DutyCalendarDay.org_id == county.id)
        .order_by(DutyCalendarDay.date)
    )
    table = [[day.date, CALENDAR_LABELS[day.kind], day.name] for day in days]
    return table_workbook(
        "节假日", f"{county.name} 节假日与调休安排", ["日期", "类型", "名称"], table
    )
