"""The month's publication pack beside the CSV: a workbook and a manifest, from the published table only.

Nothing here sees a count that rule R has not already protected: the workbook is the published table
(text cells from domain.publication) with numbers made numbers again, and the manifest lists files
and their SHA-256. The workbook is written with openpyxl, so Excel, LibreOffice and pandas all read it.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Sequence
from datetime import datetime

import pandas as pd
from openpyxl import Workbook
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter

from sact_pipeline.domain.publication import CHANGE_COLUMNS, COUNT_COLUMNS

INTEGER = re.compile(r"^-?\d+$")
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
COUNT_FORMAT = "#,##0"
CHANGE_FORMAT = "+#,##0;-#,##0;0"  # a change shows its sign, as the CSV's numbers do not need to
TABLE_SHEET, NOTES_SHEET = "Table", "Notes"


def workbook_bytes(table: pd.DataFrame, notes: str, produced_at: datetime) -> bytes:
    """An .xlsx of the published table: a Notes sheet first (the notes text, line by line), then the
    table with a frozen header, filters, widths and number formats. Count and change cells that are
    numbers in the CSV are numbers here; markers ('*', '[c]') stay text and empty cells stay empty."""
    book = Workbook()
    notes_sheet = book.active
    notes_sheet.title = NOTES_SHEET
    for number, line in enumerate(notes.splitlines(), start=1):
        notes_sheet.cell(row=number, column=1, value=line or None)
    notes_sheet["A1"].font = Font(bold=True, size=14)
    notes_sheet.column_dimensions["A"].width = 110

    sheet = book.create_sheet(TABLE_SHEET)
    columns = list(table.columns)
    sheet.append(columns)
    formats = {c: COUNT_FORMAT for c in COUNT_COLUMNS} | {c: CHANGE_FORMAT for c in CHANGE_COLUMNS}
    for values in table.itertuples(index=False):  # one row per trust (~150): not a hot path
        sheet.append([_cell(value, column in formats) for column, value in zip(columns, values)])
        for cell in sheet[sheet.max_row]:
            if isinstance(cell.value, str):  # text, never a formula or an error code ("=...", "#N/A")
                cell.data_type = "s"
    for index, column in enumerate(columns, start=1):
        letter = get_column_letter(index)
        sheet[f"{letter}1"].font = Font(bold=True)
        width = max([len(column)] + [len(str(v)) for v in table[column]])
        sheet.column_dimensions[letter].width = min(max(width + 2, 8), 60)
        if column in formats:
            for (cell,) in sheet.iter_rows(min_row=2, min_col=index, max_col=index):
                cell.number_format = formats[column]
                cell.alignment = Alignment(horizontal="right")  # markers line up with the numbers
    sheet.freeze_panes = "A2"
    sheet.auto_filter.ref = sheet.dimensions
    book.properties.creator = "sact-pipeline"
    book.properties.created = produced_at  # (openpyxl stamps 'modified' and the zip entries itself)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _cell(value: str, numeric_column: bool):
    if value == "":
        return None
    if numeric_column and INTEGER.match(value):
        return int(value)
    return CONTROL.sub("", value)  # an ODS name with a control character would make the file invalid


def manifest(month: str, produced_at: datetime, files: dict[str, bytes],
             versions: Sequence[tuple[str, str]]) -> str:
    """JSON listing every file of the pack with its SHA-256 and size, and the submission file versions
    (file name, SHA-256) it was built from, so a reader can check what they hold and where it came from."""
    return json.dumps({
        "reporting_month": month,
        "produced_at": produced_at.isoformat(timespec="seconds"),
        "files": [{"name": name, "sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data)}
                  for name, data in sorted(files.items())],
        "built_from_submission_files": [{"file_name": name, "sha256": sha} for name, sha in versions],
    }, indent=2) + "\n"
