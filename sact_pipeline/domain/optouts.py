"""Registration opt-outs: reading an opt-out file into NHS numbers, and keeping only their pseudonyms.

Patients may opt out of disease registration; their records must not be held or used. Opt-outs arrive as
CSV files with an NHS_Number column (one number per row, spaces or hyphens anywhere). The numbers leave
this module only as keyed pseudonyms in the same namespace as the clean layer's patient keys, so rows can
be matched without the pipeline keeping the list itself. Errors name the file and rows, never a value.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
import pandas as pd

from sact_pipeline.domain import nhs_number
from sact_pipeline.domain.cleaning import NHS_NUMBER_KEYS
from sact_pipeline.domain.landing import SubmissionRejected, decode
from sact_pipeline.domain.pseudonymise import Pseudonymiser

NHS_NUMBER_COLUMN = "nhs_number"
MAX_ROWS_NAMED = 20


class OptOutFileRejected(ValueError):
    """An opt-out file that cannot be read at all; it is recorded with this reason and applied to nothing."""

    def __init__(self, file_name: str, reason: str):
        super().__init__(f"{file_name}: {reason}")
        self.file_name, self.reason = file_name, reason


@dataclass(frozen=True)
class OptOutList:
    """The valid NHS numbers of one opt-out file (normalised) and the rows that held no valid one."""

    file_name: str
    nhs_numbers: pd.Series = field(repr=False)  # never shown, even in a traceback
    invalid_rows: tuple[int, ...]  # 1-based data row numbers (the header is row 0)

    @property
    def note(self) -> str:
        """'' when every row was used; otherwise which rows were not (never their values)."""
        if not self.invalid_rows:
            return ""
        shown = ", ".join(map(str, self.invalid_rows[:MAX_ROWS_NAMED]))
        more = f" and {len(self.invalid_rows) - MAX_ROWS_NAMED} more" if len(self.invalid_rows) > MAX_ROWS_NAMED else ""
        return f"rows {shown}{more} hold no valid NHS number (Modulus 11) and were not applied"

    def pseudonyms(self, pseudonymiser: Pseudonymiser) -> pd.Series:
        """Distinct patient keys, as the clean layer derives them from a valid NHS number."""
        distinct = pd.Series(self.nhs_numbers.unique(), dtype="str")
        return pseudonymiser.pseudonymise(distinct, NHS_NUMBER_KEYS)


def read_optout_file(file_name: str, data: bytes) -> OptOutList:
    """Valid NHS numbers of an opt-out file; rows without one are named in the list's note.

    Rejected (OptOutFileRejected) when it cannot be decoded or has no NHS_Number column: an opt-out is
    never half-read silently."""
    try:
        text, _ = decode(file_name, data)
    except SubmissionRejected as error:
        raise OptOutFileRejected(file_name, error.reason) from None
    if not text.strip():
        raise OptOutFileRejected(file_name, "the file is empty (no NHS_Number header)")
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, ValueError) as error:
        raise OptOutFileRejected(file_name, f"not a readable CSV file ({type(error).__name__})") from None
    headers = {str(c).strip().lower(): c for c in frame.columns}
    if NHS_NUMBER_COLUMN not in headers:
        raise OptOutFileRejected(file_name, "no NHS_Number column in the header row")
    numbers = nhs_number.normalise(frame[headers[NHS_NUMBER_COLUMN]])
    valid = nhs_number.is_valid(numbers).to_numpy()
    invalid_rows = tuple(int(i) + 1 for i in frame.index[~valid])
    return OptOutList(file_name, numbers[valid].reset_index(drop=True), invalid_rows)
