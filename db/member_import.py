"""Member spreadsheets: reading CSV/XLSX rolls with Chinese headers, and writing members in bulk.

The column headers and cell labels are the ones county and town organisation staff use
in Excel (姓名, 性别 男/女, 党员类别 正式党员/预备党员, ...). Reading turns a file into
numbered rows of cell text keyed by member field; `cell_values` turns one row into the
values the members API accepts, so the API's own rules can validate it. `write_chunk`
inserts validated rows, skipping those that repeat an existing member.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import enum
import io
import re
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import TypeVar

import openpyxl
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from .models import ExemptReason, Gender, Member, MemberStatus, OrgKind, OrgUnit, Post

MAX_ROWS = 50_000  # a county's whole roll; anything bigger is a mistake or an attack
HEADER_SEARCH_ROWS = 20  # title and note rows above the header are common in Excel rolls
MAX_COLUMNS = 64
END_AFTER_EMPTY_ROWS = 1000  # Excel files often carry styled empty rows to row 1,048,576


@dataclass(frozen=True)
class Column:
    field: str
    header: str  # what exports write and what errors name when the file has no such column
    aliases: tuple[str, ...] = ()


COLUMNS: tuple[Column, ...] = (
    Column("name", "姓名", ("name",)),
    Column("gender", "性别", ("gender", "sex")),
    Column("birth_date", "出生日期", ("出生年月", "birth_date", "birthdate", "date_of_birth")),
    Column("education", "学历", ("文化程度", "education")),
    Column("joined_date", "入党日期", ("入党时间", "joined_date", "join_date")),
    Column("status", "党员类别", ("党员状态", "status")),
    Column(
        "branch", "所在支部", ("所在党支部", "党支部", "支部", "支部编码", "branch", "branch_code")
    ),
    Column("posts", "职务", ("党内职务", "posts", "post")),
    Column("exempt_reason", "不计入应到人数原因", ("exempt_reason",)),
    Column("exempt_note", "备注", ("exempt_note", "note")),
    Column("phone", "联系电话", ("电话", "手机", "手机号码", "phone", "mobile")),
)
REQUIRED_FIELDS = ("name", "gender", "branch")
HEADERS: dict[str, str] = {c.field: c.header for c in COLUMNS}

GENDER_LABELS: dict[Gender, str] = {Gender.MALE: "男", Gender.FEMALE: "女"}
STATUS_LABELS: dict[MemberStatus, str] = {
    MemberStatus.FORMAL: "正式党员",
    MemberStatus.PROBATIONARY: "预备党员",
}
EXEMPT_LABELS: dict[ExemptReason, str] = {
    ExemptReason.SERIOUSLY_ILL: "重病",
    ExemptReason.WORKING_AWAY: "外出务工",
    ExemptReason.ABROAD: "出国（境）",
    ExemptReason.ELDERLY_INFIRM: "年老体弱",
    ExemptReason.OTHER: "其他",
}
POST_LABELS: dict[Post, str] = {
    Post.SECRETARY: "书记",
    Post.DEPUTY_SECRETARY: "副书记",
    Post.COMMITTEE_MEMBER: "支委委员",
    Post.VILLAGE_CADRE: "村干部",
    Post.GROUP_LEADER: "党小组长",
}
ORG_KIND_LABELS: dict[OrgKind, str] = {
    OrgKind.COUNTY: "县",
    OrgKind.TOWN: "乡镇/街道",
    OrgKind.VILLAGE: "村/社区",
    OrgKind.BRANCH: "党支部",
    OrgKind.GROUP: "党小组",
}


def _key(text: str) -> str:
    # headers and labels as people type them: stray spaces, "*" for required, any case
    return re.sub(r"[\s*＊\ufeff]+", "", text).replace("(", "（").replace(")", "）").lower()


_Label = TypeVar("_Label", bound=enum.StrEnum)


def _lookup(labels: dict[_Label, str], extra: dict[str, _Label] | None = None) -> dict[str, _Label]:
    table: dict[str, _Label] = {_key(label): value for value, label in labels.items()}
    table.update({_key(value.value): value for value in labels})  # the API's own spelling
    table.update({_key(k): v for k, v in (extra or {}).items()})
    return table


_HEADER_FIELDS: dict[str, str] = {
    _key(alias): c.field for c in COLUMNS for alias in (c.header, *c.aliases)
}
_GENDERS = _lookup(GENDER_LABELS, {"男性": Gender.MALE, "女性": Gender.FEMALE})
_STATUSES = _lookup(STATUS_LABELS, {"正式": MemberStatus.FORMAL, "预备": MemberStatus.PROBATIONARY})
_EXEMPTS = _lookup(
    EXEMPT_LABELS,
    {
        "外出务工（已请假）": ExemptReason.WORKING_AWAY,
        "出国": ExemptReason.ABROAD,
        "出境": ExemptReason.ABROAD,
        "出国境": ExemptReason.ABROAD,
    },
)
_POSTS = _lookup(POST_LABELS, {"支部书记": Post.SECRETARY, "支委": Post.COMMITTEE_MEMBER})


@dataclass(frozen=True)
class SheetLayout:
    """What a sheet's header row may say: the header of each field and its aliases (as
    `_key` spells them), the fields a sheet needs, and the one its header row must have."""

    header_fields: Mapping[str, str]  # _key(header or alias) -> field
    headers: Mapping[str, str]  # field -> the header as the template writes it
    required: tuple[str, ...]
    anchor: str = "name"
    needs: str = "需要“姓名”“性别”“所在支部”等列"

    @classmethod
    def of(
        cls,
        columns: Mapping[str, Sequence[str]],
        required: tuple[str, ...],
        anchor: str,
        needs: str,
    ) -> SheetLayout:
        """From {field: (header, alias, ...)}."""
        return cls(
            {_key(alias): f for f, aliases in columns.items() for alias in aliases},
            {f: aliases[0] for f, aliases in columns.items()},
            required,
            anchor,
            needs,
        )


MEMBER_LAYOUT = SheetLayout(_HEADER_FIELDS, HEADERS, REQUIRED_FIELDS)


class ImportFileError(ValueError):
    """The file as a whole cannot be read as a member roll (`unsupported`: not CSV/XLSX)."""

    def __init__(self, message: str, *, unsupported: bool = False, too_big: bool = False):
        super().__init__(message)
        self.message = message
        self.unsupported = unsupported
        self.too_big = too_big


Cell = str | dt.date | None


@dataclass
class SheetRow:
    number: int  # as the spreadsheet numbers it, so that staff can find the row
    cells: dict[str, Cell]


@dataclass
class Sheet:
    headers: dict[str, str]  # field -> the header as written in the file
    rows: list[SheetRow] = field(default_factory=list)

    def header(self, field_name: str) -> str:
        return self.headers.get(field_name, HEADERS.get(field_name, field_name))


# -- reading ------------------------------------------------------------------------------

TEXT_SUFFIXES = {".csv", ".txt", ".tsv"}
XLSX_SUFFIXES = {".xlsx", ".xlsm"}
UNSUPPORTED = "仅支持 Excel 工作簿（.xlsx）和 CSV 文件"


def read_sheet(data: bytes, filename: str, layout: SheetLayout | None = None) -> Sheet:
    """Read a member roll (or another sheet of `layout`'s columns); the content decides the
    format, the name only rules out others."""
    layout = layout or MEMBER_LAYOUT
    suffix = PurePath(filename or "").suffix.lower()
    if suffix and suffix not in TEXT_SUFFIXES | XLSX_SUFFIXES:
        if suffix == ".xls":
            raise ImportFileError(
                UNSUPPORTED + "，请将 .xls 另存为 .xlsx 后再导入", unsupported=True
            )
        raise ImportFileError(f"{UNSUPPORTED}，不支持“{suffix}”文件", unsupported=True)
    if not data:
        raise ImportFileError("文件是空的")
    if data.startswith(b"\xd0\xcf\x11\xe0"):  # OLE2: Excel 97-2003 or an encrypted workbook
        raise ImportFileError(
            UNSUPPORTED + "：这是旧版 .xls 或加密的工作簿，请另存为 .xlsx 后再导入",
            unsupported=True,
        )
    if data.startswith(b"PK\x03\x04"):
        return _read_xlsx(data, layout)
    return _read_csv(_decode(data), layout)


def _decode(data: bytes) -> str:
    if data.startswith(codecs.BOM_UTF8):
        encodings: tuple[str, ...] = ("utf-8-sig",)
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encodings = ("utf-16",)  # Excel's "Unicode text" export
    elif b"\x00" in data[:4096]:
        raise ImportFileError(UNSUPPORTED + "：文件内容不是表格", unsupported=True)
    else:
        # GBK text is almost never valid UTF-8, so trying UTF-8 first tells them apart
        encodings = ("utf-8", "gb18030")
    for encoding in encodings:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise ImportFileError(
        "无法识别文件编码，请在 Excel 中另存为“CSV UTF-8”或 .xlsx", unsupported=True
    )


def _read_csv(text: str, layout: SheetLayout) -> Sheet:
    head = text[:20_000].splitlines()[:HEADER_SEARCH_ROWS]
    delimiter = max(("\t", ";", ","), key=lambda d: sum(line.count(d) for line in head))
    if not any(delimiter in line for line in head):
        delimiter = ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        return _sheet(enumerate(reader, start=1), layout)
    except csv.Error as exc:
        raise ImportFileError(f"CSV 格式有误：第 {reader.line_num} 行附近（{exc}）") from exc


# what an .xlsx (a zip) may unpack to: openpyxl reads the shared-strings table whole,
# even in read-only mode, so a small file of huge XML could take the server's memory
MAX_XLSX_UNPACKED_BYTES = 100 * 1024 * 1024


def _read_xlsx(data: bytes, layout: SheetLayout) -> Sheet:
    unreadable = ImportFileError(UNSUPPORTED + "：无法作为 .xlsx 打开", unsupported=True)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(entry.file_size for entry in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise unreadable from exc
    if unpacked > MAX_XLSX_UNPACKED_BYTES:
        raise ImportFileError(
            f"文件解压后超过 {MAX_XLSX_UNPACKED_BYTES // 2**20} MB，请分成几个文件导入",
            too_big=True,
        )
    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # an untrusted zip of XML fails in many ways; all mean the same
        raise unreadable from exc
    try:
        last_error: ImportFileError | None = None
        # the roll need not be the first sheet: an instructions sheet often comes first
        for worksheet in workbook.worksheets:
            rows = worksheet.iter_rows(min_row=1, max_col=MAX_COLUMNS, values_only=True)
            try:
                return _sheet(enumerate(rows, start=1), layout)
            except ImportFileError as error:
                if error.too_big:
                    raise
                last_error = error
        raise last_error or ImportFileError("工作簿中没有工作表")
    except ImportFileError:
        raise
    except Exception as exc:  # the sheet's XML is read lazily, row by row
        raise unreadable from exc
    finally:
        workbook.close()


def _cell(value: object) -> Cell:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # phone numbers and codes typed as numbers
    text = str(value).strip()
    return text or None


def _sheet(rows: Iterable[tuple[int, Sequence[object]]], layout: SheetLayout) -> Sheet:
    iterator: Iterator[tuple[int, Sequence[object]]] = iter(rows)
    positions: dict[int, str] | None = None
    header_row: Sequence[object] = ()
    for number, values in iterator:
        if number > HEADER_SEARCH_ROWS:
            break
        fields = layout.header_fields
        found = {
            i: fields[_key(str(v))]
            for i, v in enumerate(values[:MAX_COLUMNS])
            if v is not None and _key(str(v)) in fields
        }
        if layout.anchor in found.values() and len(found) >= 2:
            positions, header_row = found, values
            break
    if positions is None:
        raise ImportFileError(f"在前 {HEADER_SEARCH_ROWS} 行中找不到表头行（{layout.needs}）")
    headers: dict[str, str] = {}
    for i, f in positions.items():
        written = str(header_row[i]).replace("\ufeff", "").strip()
        if f in headers:
            raise ImportFileError(f"表头中“{headers[f]}”和“{written}”是同一列，请只保留一个")
        headers[f] = written
    missing = [layout.headers[f] for f in layout.required if f not in headers]
    if missing:
        raise ImportFileError("缺少必需的列：" + "、".join(missing))
    sheet = Sheet(headers)
    empty_run = 0
    for number, values in iterator:
        cells = {f: _cell(values[i]) if i < len(values) else None for i, f in positions.items()}
        if all(v is None for v in cells.values()):
            empty_run += 1
            if empty_run >= END_AFTER_EMPTY_ROWS:
                break
            continue
        empty_run = 0
        if len(sheet.rows) >= MAX_ROWS:
            raise ImportFileError(f"超过 {MAX_ROWS} 行，请分成几个文件导入", too_big=True)
        sheet.rows.append(SheetRow(number, cells))
    return sheet


# -- one row to the API's values ----------------------------------------------------------

_DATE = re.compile(
    r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?"
    r"(?:[\sT]+\d{1,2}:\d{2}(?::\d{2})?)?"  # a midnight time some tools append
)
_COMPACT_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})")
_POST_SPLIT = re.compile(r"[,，、;；/\s]+")


def parse_date(value: Cell) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    match = _DATE.fullmatch(value) or _COMPACT_DATE.fullmatch(value)
    if match is None:
        raise ValueError("日期格式应为 1956-03-08、1956/3/8 或 1956年3月8日")
    try:
        return dt.date(*(int(part) for part in match.groups()))
    except ValueError:
        raise ValueError(f"“{value}”不是有效日期") from None


def _label(value: Cell, table: Mapping[str, object], expected: str) -> object:
    if value is None:
        return None
    found = table.get(_key(str(value)))
    if found is None:
        raise ValueError(expected)
    return found


def cell_values(row: SheetRow) -> tuple[dict[str, object], dict[str, str]]:
    """The API's values for one row (without the branch), and errors by field, in Chinese.

    A field that cannot be read is left out of the values, so the API's rules only
    speak about the fields that could be read.
    """
    cells = row.cells
    values: dict[str, object] = {}
    errors: dict[str, str] = {}

    def text(field_name: str) -> str | None:
        value = cells.get(field_name)
        return value.isoformat() if isinstance(value, dt.date) else value

    readers = {
        "gender": lambda v: _label(v, _GENDERS, "应为“男”或“女”"),
        "birth_date": parse_date,
        "joined_date": parse_date,
        "status": lambda v: _label(v, _STATUSES, "应为“正式党员”或“预备党员”"),
        "exempt_reason": lambda v: _label(
            v, _EXEMPTS, "应为" + "、".join(f"“{x}”" for x in EXEMPT_LABELS.values()) + "或留空"
        ),
        "posts": _posts,
    }
    for name in ("name", "education", "exempt_note", "phone"):
        values[name] = text(name)
    for name, reader in readers.items():
        try:
            values[name] = reader(cells.get(name))
        except ValueError as exc:
            errors[name] = str(exc)
    if values.get("status") is None:
        values.pop("status", None)  # left empty: the API's default (正式党员)
    return values, errors


def _posts(value: Cell) -> list[Post]:
    if value is None:
        return []
    posts: dict[Post, None] = {}
    for part in _POST_SPLIT.split(str(value)):
        if not part:
            continue
        post = _POSTS.get(_key(part))
        if post is None:
            raise ValueError(
                f"未知职务“{part}”，可填：" + "、".join(POST_LABELS.values()) + "，用“、”分隔"
            )
        posts[post] = None
    return list(posts)


# -- branches -----------------------------------------------------------------------------

BRANCH_KINDS = (OrgKind.BRANCH, OrgKind.GROUP)


class BranchIndex:
    """The org units of one subtree, looked up once per import by code or by name."""

    def __init__(self, orgs: Iterable[OrgUnit]) -> None:
        self.by_code: dict[str, OrgUnit] = {}
        self.by_name: dict[str, list[OrgUnit]] = {}
        for org in orgs:
            self.by_code[org.code.strip().lower()] = org
            self.by_name.setdefault(org.name.strip(), []).append(org)

    @classmethod
    async def load(cls, session: AsyncSession, subtree_path: str) -> BranchIndex:
        rows = await session.execute(select(OrgUnit).where(OrgUnit.path.like(f"{subtree_path}%")))
        return cls(rows.scalars())

    def resolve(self, value: Cell) -> OrgUnit:
        """The branch a cell names; ValueError (in Chinese) when it names none of ours."""
        if value is None:
            raise ValueError("必填：填写党支部编码或名称")
        text = str(value).strip()
        org = self.by_code.get(text.lower())
        if org is None:
            named = self.by_name.get(text, [])
            if len(named) > 1:
                raise ValueError(f"有 {len(named)} 个组织名为“{text}”，请改填党支部编码")
            org = named[0] if named else None
        if org is None:
            # one answer for "no such branch" and "not yours": no existence leaks
            raise ValueError(f"找不到“{text}”，或它不在您的管辖范围内")
        if org.kind not in BRANCH_KINDS:
            kind = ORG_KIND_LABELS.get(org.kind, org.kind.value)
            raise ValueError(f"“{text}”是{kind}，党员只能属于党支部或党小组")
        return org


# -- writing ------------------------------------------------------------------------------

DuplicateKey = tuple[str, dt.date | None, int]


@dataclass
class NewMember:
    row: int
    key: DuplicateKey  # (name, birth date, branch id): what makes two rows the same member
    values: dict[str, object]  # Member columns, org_path included


async def write_chunk(
    session: AsyncSession, rows: Sequence[NewMember]
) -> tuple[list[NewMember], list[NewMember]]:
    """Insert the rows that repeat no existing member; (inserted, duplicates).

    The caller owns the transaction, so a failed chunk leaves nothing behind.
    """
    if not rows:
        return [], []
    existing = await session.execute(
        select(Member.name, Member.birth_date, Member.branch_id).where(
            Member.branch_id.in_({r.key[2] for r in rows}),
            Member.name.in_({r.key[0] for r in rows}),
        )
    )
    known = {(name, born, branch) for name, born, branch in existing}
    fresh = [r for r in rows if r.key not in known]
    duplicates = [r for r in rows if r.key in known]
    if fresh:
        await session.execute(insert(Member), [r.values for r in fresh])
    return fresh, duplicates
