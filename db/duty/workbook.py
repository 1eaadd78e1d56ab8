"""A duty summary as the XLSX a town's assessment sheet (考勤汇总表) takes: one sheet per
level (cadres, villages, towns), ranked, with the period and the figures' rules in the
title. Written with openpyxl in write-only mode (a county's cadres in well under a
second)."""

from __future__ import annotations

from collections.abc import Sequence

from openpyxl import Workbook

from db.xlsx import workbook_bytes, write_table

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
    "在岗率（%）",
    "排名",
]


def _figures(line: dict) -> list[object]:
    rate = line["rate"]
    return [
        line["days_due"],
        line["on_time"],
        line["late"],
        line["late_min"],
        line["absent"],
        line["leave"],
        line["field_duty"],
        round(line["present_min"] / 60, 1),
        line["days_seen"],
        None if rate is None else round(100 * rate, 1),
        line["rank"],
    ]


def _sheet(
    workbook: Workbook,
    name: str,
    title: str,
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
) -> None:
    write_table(workbook.create_sheet(name), title, headers, rows)


def summary_workbook(summary: dict) -> bytes:
    """The XLSX of a summary in its JSON form (`Summary.to_json()`, or a closed period's
    report as stored): a report's workbook is made when it is downloaded."""
    name = summary["org"]["name"]
    period = f"{summary['starts']} 至 {summary['ends']}"
    note = "（在岗率 =（按时 + 迟到 + 外出公干）/ 应到天数；请假不计应到）"
    workbook = Workbook(write_only=True)
    cadre_headers = [
        "序号",
        "乡镇",
        "村（社区）",
        "姓名",
        "职务",
        "驻村要求（天/月）",
        "驻村达标",
        *FIGURE_HEADERS,
    ]
    _sheet(
        workbook,
        "村干部",
        f"{name} 村干部坐班考勤汇总 {period}{note}",
        cadre_headers,
        [
            [
                n,
                line.get("town", ""),
                line.get("village", ""),
                line["name"],
                line.get("post", ""),
                line.get("required_days"),
                {True: "是", False: "否"}.get(line.get("required_met")),  # type: ignore[arg-type]
                *_figures(line),
            ]
            for n, line in enumerate(summary["cadres"], start=1)
        ],
    )
    village_headers = ["序号", "乡镇", "村（社区）", "在册干部", *FIGURE_HEADERS]
    _sheet(
        workbook,
        "村（社区）",
        f"{name} 村（社区）坐班考勤排名 {period}",
        village_headers,
        [
            [n, line.get("town", ""), line["name"], line.get("cadres", 0), *_figures(line)]
            for n, line in enumerate(summary["villages"], start=1)
        ],
    )
    if summary["towns"]:
        town_headers = ["序号", "乡镇", "在册干部", *FIGURE_HEADERS]
        _sheet(
            workbook,
            "乡镇",
            f"{name} 乡镇坐班考勤排名 {period}",
            town_headers,
            [
                [n, line["name"], line.get("cadres", 0), *_figures(line)]
                for n, line in enumerate(summary["towns"], start=1)
            ],
        )
    return workbook_bytes(workbook)
