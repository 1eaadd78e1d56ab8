"""Writing the tables staff open in Excel: a bold title row, a bold header row frozen
under it, plain values below (dates and times as Excel's own). openpyxl's write-only mode:
a county's rows in well under a second. The member roll, the meeting lists, the duty
summaries and the duty rosters all come out of `write_table`."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

DATETIME_FORMAT = "yyyy-mm-dd hh:mm"


def write_table(
    sheet: WriteOnlyWorksheet,
    title: str,
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    widths: Sequence[int] | None = None,
) -> None:
    """`widths` in Excel's characters; left out, each column fits its (CJK) header."""
    for i, header in enumerate(headers):
        width = widths[i] if widths else max(8, 2 * len(header) + 2)
        sheet.column_dimensions[get_column_letter(i + 1)].width = width
    sheet.freeze_panes = "A3"
    title_cell = WriteOnlyCell(sheet, title)
    title_cell.font = Font(bold=True, size=14)
    sheet.append([title_cell])
    cells = []
    for header in headers:
        cell = WriteOnlyCell(sheet, header)
        cell.font = Font(bold=True)
        cells.append(cell)
    sheet.append(cells)
    for row in rows:
        # plain values (a date gets Excel's date format by itself), but for times: a styled
        # cell per value cost most of a county's month
        out: list[object] = []
        for value in row:
            if isinstance(value, dt.datetime):
                cell = WriteOnlyCell(sheet, value)
                cell.number_format = DATETIME_FORMAT
                out.append(cell)
            else:
                out.append(value)
        sheet.append(out)


def table_workbook(
    sheet_name: str,
    title: str,
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    widths: Sequence[int] | None = None,
) -> bytes:
    """A workbook of one table, as bytes."""
    workbook = Workbook(write_only=True)
    write_table(workbook.create_sheet(sheet_name), title, headers, rows, widths)
    return workbook_bytes(workbook)


def workbook_bytes(workbook: Workbook) -> bytes:
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
