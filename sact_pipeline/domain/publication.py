"""The published table: rule R applied to the summary, changes from published values, an ENGLAND row.

Only English organisations are published (Welsh data needs advance permission). Every count passes
through sact_pipeline.domain.disclosure before it is shown; changes are computed from published cells.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd

from sact_pipeline.domain.counting import FINAL, MEASURES, PROVISIONAL, submission_deadline
from sact_pipeline.domain.disclosure import (
    NOTES_FOOTNOTES,
    SUPPRESSED,
    WITHHELD,
    bounds,
    format_cell,
    protect_column,
    published_change,
)

ENGLAND = "ENGLAND"
PUBLISHED_COLUMNS: tuple[str, ...] = (
    "reporting_month", "org_code", "org_name", "submission_status", "submitted_at",
    *(column for m in MEASURES for column in (m, f"{m}_change")),
    "sact_version", "month_status", "data_status",
)
SACT_VERSIONS_PUBLISHED = ("", "v3", "v4")  # empty: no usable version (and on ENGLAND)
COUNT_COLUMNS: tuple[str, ...] = MEASURES
CHANGE_COLUMNS: tuple[str, ...] = tuple(f"{m}_change" for m in MEASURES)

ACKNOWLEDGEMENT = (
    "This work uses data that has been provided by patients and collected by the NHS as part of their care "
    "and support. The data are collated, maintained and quality assured by the National Disease Registration "
    "Service, which is part of NHS England."
)


def protected_cells(summary: pd.DataFrame) -> dict[str, dict[str, object]]:
    """Published cell per measure per English trust (None for a missing submission) plus ENGLAND."""
    english = summary.loc[summary["is_english"]].sort_values("org_code")
    submitted = english["patients"].notna().to_numpy()
    cells: dict[str, dict[str, object]] = {}
    for measure in MEASURES:
        counts = [int(v) if ok else 0 for v, ok in zip(english[measure].tolist(), submitted)]
        column = protect_column(counts)
        by_trust = {code: (cell if ok else None) for code, cell, ok in
                    zip(english["org_code"], column.trust_cells, submitted)}
        by_trust[ENGLAND] = column.england
        cells[measure] = by_trust
    return cells


def publish_month(summary: pd.DataFrame, previous_summary: pd.DataFrame | None) -> pd.DataFrame:
    """The published table for one month: one row per English trust listed in the summary, then ENGLAND."""
    reporting_month = str(summary["reporting_month"].iloc[0]) if len(summary) else ""
    status = _month_status(summary)
    english = summary.loc[summary["is_english"]].sort_values("org_code")
    current = protected_cells(summary)
    previous = protected_cells(previous_summary) if previous_summary is not None and len(previous_summary) else None

    rows = []
    for record in english.itertuples(index=False):  # one row per trust (~150), not per activity row
        row = {
            "reporting_month": reporting_month,
            "org_code": record.org_code,
            "org_name": record.org_name,
            "submission_status": record.submission_status,
            "submitted_at": _iso(record.submitted_at),
        }
        for measure in MEASURES:
            cell = current[measure][record.org_code]
            before = previous[measure].get(record.org_code) if previous else None
            row[measure] = format_cell(cell)
            row[f"{measure}_change"] = format_cell(published_change(cell, before))
        usable = pd.notna(record.patients) and isinstance(getattr(record, "sact_version", None), str)
        row["sact_version"] = record.sact_version if usable else ""
        row["month_status"] = status
        row["data_status"] = _text(getattr(record, "data_status", ""))
        rows.append(row)
    england = {"reporting_month": reporting_month, "org_code": ENGLAND, "org_name": "England",
               "submission_status": "", "submitted_at": "", "sact_version": "", "month_status": status,
               "data_status": ""}
    for measure in MEASURES:
        cell = current[measure][ENGLAND]
        england[measure] = format_cell(cell)
        # Not like for like while trusts may still send the month: no England change until it is final.
        england[f"{measure}_change"] = "" if status == PROVISIONAL else format_cell(
            published_change(cell, previous[measure][ENGLAND] if previous else None)
        )
    rows.append(england)
    return pd.DataFrame(rows, columns=list(PUBLISHED_COLUMNS)).astype("str")


MEASURE_DEFINITIONS: tuple[tuple[str, str], ...] = (
    ("patients", "distinct patients (by pseudonymised NHS number, or local identifier where it is missing) "
                 "with at least one valid drug administration in the month"),
    ("regimens", "distinct regimens: patient, regimen name and regimen start date"),
    ("cycles", "distinct cycles: regimen, cycle number and cycle start date"),
    ("drug_administrations", "valid drug administration rows, after duplicates and quarantined rows are removed; "
                             "an oral dispensing that covers several cycles (SACT v4 items 82 and 83) is one "
                             "drug administration, and its cycle number and cycle start date one cycle"),
    ("<measure>_change", "this month's published value minus the previous month's published value"),
)
STATUS_DEFINITIONS: tuple[tuple[str, str], ...] = (
    ("on_time", "the first file for the month arrived before the end of the following month (the deadline)"),
    ("late", "the first file for the month arrived after the deadline"),
    ("missing", "no file for the month had arrived when the deadline passed"),
    ("not_yet_due", "no file for the month has arrived yet, and the deadline has not passed: not a failure"),
)
MONTH_STATUS_DEFINITIONS: tuple[tuple[str, str], ...] = (
    ("provisional", "the deadline has not passed: trusts may still send the month on time, so its figures "
                    "will change; England changes are left empty, because they would not compare like "
                    "with like"),
    ("final", "the deadline has passed; late files and corrections are still taken and shown"),
)
DATA_STATUS_DEFINITIONS: tuple[tuple[str, str], ...] = (
    ("ok", "the newest file version received is the one used"),
    ("held", "the newest file version failed validation: the figures, status and submitted_at of the last "
             "version that passed stay published until a corrected file arrives"),
    ("unusable", "no file version received for the month passed validation: counts and changes are empty "
                 "(the trust counts 0 in the England figures) and submitted_at is its newest version's"),
    ("(empty)", "nothing received for the month"),
)


ATTACK_COLUMNS: tuple[str, ...] = ("measure", "org_code", "lowest", "highest")


def suppressed_cell_ranges(table: pd.DataFrame, previous: pd.DataFrame | None) -> pd.DataFrame:
    """What a reader of the published tables can tell about each '*' trust cell: the range of true
    counts left once every published cell, the ENGLAND cell and the changes (current = previous +
    change, and previous = current - change, against the previous month's published table) are taken
    together, by interval arithmetic.

    The published gate requires lowest < highest for every row: this re-checks rule R's promise on the
    very tables about to be released, whatever produced them (a cell rule R would never publish is read
    for what it gives away, not refused with an error). A trust with no submission counts 0."""
    rows = []
    trusts = table.loc[table["org_code"] != ENGLAND]
    england = table.loc[table["org_code"] == ENGLAND].iloc[0]
    before = previous if previous is not None and len(previous) else None
    for measure in MEASURES:
        earlier_cells = dict(zip(before["org_code"], before[measure].astype("str"))) if before is not None else {}

        def earlier(code: str) -> str:
            return earlier_cells.get(code, "")

        def readable(code: str, cell: str, change: str) -> tuple[int, int]:
            """The bounds a reader gets for one cell, through a numeric change if the cell hides itself."""
            if cell in (SUPPRESSED, WITHHELD) and _is_number(change) and earlier(code).isdigit():
                return _text_bounds(str(int(earlier(code)) + int(change)))
            return _text_bounds(cell)

        cells = {code: readable(code, cell, change) for code, cell, change in
                 zip(trusts["org_code"], trusts[measure], trusts[f"{measure}_change"])}
        total = readable(ENGLAND, england[measure], england[f"{measure}_change"])
        low_sum = sum(b[0] for b in cells.values())
        high_sum = sum(b[1] for b in cells.values())
        for code, cell in zip(trusts["org_code"], trusts[measure]):
            if cell != SUPPRESSED:
                continue
            low, high = max(cells[code][0], 1), min(cells[code][1], 7)
            if total != _UNKNOWN:
                others_low, others_high = low_sum - cells[code][0], high_sum - cells[code][1]
                low, high = max(low, total[0] - others_high), min(high, total[1] - others_low)
            rows.append((measure, code, low, high))
        # A '*' of the previous month read back through this month's change (previous = current - change).
        for code, cell, change in zip(table["org_code"], table[measure], table[f"{measure}_change"]):
            if earlier(code) == SUPPRESSED and _is_number(change) and cell.isdigit():
                low, high = _text_bounds(str(int(cell) - int(change)))
                rows.append((measure, f"{code} (previous month)", max(low, 1), min(high, 7)))
    return pd.DataFrame(rows, columns=list(ATTACK_COLUMNS)).astype({"lowest": "int64", "highest": "int64"})


_UNKNOWN = (0, 10**15)  # a withheld (or unreadable) cell: any count


def _is_number(text: str) -> bool:
    return text.lstrip("-").isdigit()


def _text_bounds(text: str) -> tuple[int, int]:
    """The true counts a published text cell can stand for; a number rule R could not have published
    (1-7, or not a multiple of 5) stands for itself exactly."""
    if text in ("", "0"):
        return (0, 0)
    if text == SUPPRESSED:
        return bounds(SUPPRESSED)
    if _is_number(text):
        value = int(text)
        return bounds(value) if value >= 10 and value % 5 == 0 else (value, value)
    return _UNKNOWN


def deadline_text(reporting_month: str, deadline_months: int = 1) -> str:
    """The last day a file for the month is on time, as 'YYYY-MM-DD'."""
    return (submission_deadline(reporting_month, deadline_months) - timedelta(days=1)).strftime("%Y-%m-%d")


def notes_text(reporting_month: str, produced_at: datetime, file_versions: list[str], *,
               month_status: str = FINAL, deadline_months: int = 1) -> str:
    """The notes file published beside each table."""
    deadline = deadline_text(reporting_month, deadline_months)
    state = (f"PROVISIONAL: trusts may send this month on time until {deadline}; the figures will change."
             if month_status == PROVISIONAL else f"Final: the deadline ({deadline}) has passed.")
    lines = [
        f"SACT submissions: reporting month {reporting_month}",
        f"Produced {produced_at:%Y-%m-%dT%H:%M:%S} by sact-pipeline.",
        state,
        "",
        ACKNOWLEDGEMENT,
        "",
        "Disclosure control:",
        *(f"- {note}" for note in NOTES_FOOTNOTES),
        "",
        "Measures:",
        *(f"- {name}: {meaning}" for name, meaning in MEASURE_DEFINITIONS),
        "",
        "Submission status (submission_status):",
        *(f"- {name}: {meaning}" for name, meaning in STATUS_DEFINITIONS),
        "",
        "Month status (month_status):",
        *(f"- {name}: {meaning}" for name, meaning in MONTH_STATUS_DEFINITIONS),
        "",
        "Data status (data_status):",
        *(f"- {name}: {meaning}" for name, meaning in DATA_STATUS_DEFINITIONS),
        "",
        "Only organisations in England are shown. submission_status is judged on the first version received,",
        "whether or not it passed validation. submitted_at is when the version used was submitted. Counts and",
        "changes are empty for a trust with no usable submission: such a trust counts 0 in the England",
        "figures. A change is empty when the trust has no submission in the previous month.",
        "",
        "sact_version is the version of the SACT data set (v3 or v4) of the file version used, the newest where",
        "a trust's sites send files of their own; empty when no version is usable. SACT v4 is accepted for",
        "activity from April 2026 and required from July 2026; a trust still sending v3 is counted the same way.",
        "In v4 the administration date is the calendar date of the infusion timestamp as written (item 80), or",
        "else the oral dispensing date (item 81). The number of cycles an oral dispensing covers (item 83) is",
        "data-quality detail, not a count.",
        "",
        "Built from these submission file versions (file name, SHA-256):",
        *(f"- {version}" for version in file_versions),
    ]
    return "\n".join(lines) + "\n"


def _month_status(summary: pd.DataFrame) -> str:
    """The summary's month_status (a summary stored before the column existed is final)."""
    values = summary["month_status"].dropna().unique() if "month_status" in summary else []
    return str(values[0]) if len(values) else FINAL


def _text(value) -> str:
    return value if isinstance(value, str) else ""


def _iso(value) -> str:
    return pd.Timestamp(value).isoformat() if pd.notna(value) else ""
