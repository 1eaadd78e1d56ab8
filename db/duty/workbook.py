"""A duty summary as the XLSX a town's assessment sheet (考勤汇总表) takes: one sheet per
level (cadres, villages, towns), ranked, with the period and the figures' rules in the
title. Written with openpyxl in write-only mode (a county's cadres in well under a
second)."""

from __future__ import annotations

import io
from collections.abc import Sequence

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

from .summaries import Line, Summary

FIGURE_HEADERS = [
    "应到天数",
    "按时",
    "迟到次数",
    "迟到分钟",
    "缺勤",
    "请假",
    "外出公干",
    "在岗时长（小时）",
    "到岗天数",
    "在岗率",
    "排名",
]


def _figures(line: Line) -> list[object]:
    f = line.figures
    return [
        f.days_due,
        f.on_time,
        f.late,
        f.late_min,
        f.absent,
        f.leave,
        f.field_duty,
        round(f.present_min / 60, 1),
        f.days_seen,
        f.rate,
        line.rank,
    ]


def _sheet(
    workbook: Workbook,
    name: str,
    title: str,
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    rate_column: int,
) -> None:
    sheet = workbook.create_sheet(name)
    for i, header in enumerate(headers, start=1):
        sheet.column_dimensions[get_column_letter(i)].width = max(8, 2 * len(header) + 2)
    sheet.freeze_panes = "A3"
    title_cell = WriteOnlyCell(sheet, title)
    title_cell.font = Font(bold=True, size=14)
    sheet.append([title_cell])
    header_cells = []
    for header in headers:
        cell = WriteOnlyCell(sheet, header)
        cell.font = Font(bold=True)
        header_cells.append(cell)
    sheet.append(header_cells)
    for row in rows:
        cells: list[object] = []
        for i, value in enumerate(row):
            if i == rate_column and value is not None:
                cell = WriteOnlyCell(sheet, value)
                cell.number_format = "0.0%"
                cells.append(cell)
            else:
                cells.append(value)
        sheet.append(cells)


def summary_workbook(summary: Summary) -> bytes:
    period = f"{summary.starts:%Y-%m-%d} 至 {summary.ends:%Y-%m-%d}"
    note = "（在岗率 =（按时 + 迟到 + 外出公干）/ 应到天数；请假不计应到）"
    workbook = Workbook(write_only=True)
    cadre_headers = ["序号", "乡镇", "村（社区）", "姓名", "职务", "驻村要求天数", *FIGURE_HEADERS]
    _sheet(
        workbook,
        "村干部",
        f"{summary.org_name} 村干部坐班考勤汇总 {period}{note}",
        cadre_headers,
        [
            [n, line.town, line.village, line.name, line.post, line.required_days, *_figures(line)]
            for n, line in enumerate(summary.cadres, start=1)
        ],
        rate_column=len(cadre_headers) - 2,
    )
    village_headers = ["序号", "乡镇", "村（社区）", "在册干部", *FIGURE_HEADERS]
    _sheet(
        workbook,
        "村（社区）",
        f"{summary.org_name} 村（社区）坐班考勤排名 {period}",
        village_headers,
        [
            [n, line.town, line.name, line.cadres, *_figures(line)]
            for n, line in enumerate(summary.villages, start=1)
        ],
        rate_column=len(village_headers) - 2,
    )
    if summary.towns:
        town_headers = ["序号", "乡镇", "在册干部", *FIGURE_HEADERS]
        _sheet(
            workbook,
            "乡镇",
            f"{summary.org_name} 乡镇坐班考勤排名 {period}",
            town_headers,
            [
                [n, line.name, line.cadres, *_figures(line)]
                for n, line in enumerate(summary.towns, start=1)
            ],
            rate_column=len(town_headers) - 2,
        )
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
