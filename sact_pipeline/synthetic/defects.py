"""Defects: their rates, the draw that gives each row at most one, their injection, and their exact counts.

A row's defect is drawn independently of everything else (one uniform draw per row splits the rows into
disjoint categories), so a v3 and a v4 write of the same records carry the same defects; only the
``missing_v4_item`` gaps are v4's own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sact_pipeline.domain.spec import REQUIRED, SACT, V3, V4
from sact_pipeline.synthetic.columns import Column

INVALID_DATE = "2024-02-30"
INVALID_TIMESTAMP = f"{INVALID_DATE}T10:00:00+00:00"
MANDATORY_DEFECT_KINDS: tuple[str, ...] = (
    "regimen", "drug_name", "start_date_of_cycle", "administration_date", "diagnosis", "patient_identifier",
)
# Items missing_required may pick: required in both versions (a v3 and a v4 write of a record are the same).
REQUIRED_COLUMNS: tuple[str, ...] = tuple(
    i.name for i in SACT.items if i.obligation(V3) == REQUIRED and i.obligation(V4) == REQUIRED)
# New required v4 items that missing_v4_item may leave empty (v4 files only).
NEW_V4_REQUIRED_COLUMNS: tuple[str, ...] = (
    "professional_registration_issuer_code", "professional_registration_entry_identifier", "treatment_context",
    "chemoradiation",
)
# Out-of-list codes used for missing_required defects on coded items (items of REQUIRED_COLUMNS).
BAD_CODES: dict[str, str] = {
    "person_stated_gender_code": "3",
    "intent_of_treatment": "06",
    "performance_status_at_start_of_regimen": "5",
    "clinical_trial": "03",
    "performance_status_at_start_of_cycle": "7",
    "administration_measurement_per_actual_dose": "09",
    "sact_administration_route": "99",
}


@dataclass(frozen=True)
class DefectRates:
    """Probability per data row of each kind of defect (see the package docstring)."""

    invalid_nhs_number: float = 0.02
    missing_mandatory: float = 0.01
    duplicate_rows: float = 0.01
    missing_required: float = 0.03
    out_of_month: float = 0.0
    other_trust_provider: float = 0.0
    # v4 files only, on rows without another defect: one of NEW_V4_REQUIRED_COLUMNS left empty (None: the
    # missing_required rate, so DefectRates(0, 0, 0, 0) is clean in v4 too). Not part of the sum below.
    missing_v4_item: float | None = None

    def __post_init__(self):
        rates = (self.invalid_nhs_number, self.missing_mandatory, self.duplicate_rows, self.missing_required,
                 self.out_of_month, self.other_trust_provider)
        if min(rates) < 0 or sum(rates) > 1:
            raise ValueError("defect rates must be >= 0 and add up to at most 1")
        if self.missing_v4_item is not None and not 0 <= self.missing_v4_item <= 1:
            raise ValueError("the missing_v4_item rate must be between 0 and 1")

    @property
    def v4_item_rate(self) -> float:
        return self.missing_required if self.missing_v4_item is None else self.missing_v4_item


@dataclass(frozen=True)
class FileDefects:
    """Exact defect counts of one written file (rows of the file, duplicates counted once as extra rows)."""

    invalid_nhs_number: int = 0
    missing_mandatory: int = 0
    duplicate_rows: int = 0  # extra copies: rows - distinct rows
    missing_required: int = 0
    missing_mandatory_by_kind: tuple[tuple[str, int], ...] = ()
    # (column, rows left blank, rows given an out-of-list code) per required item with missing_required rows
    missing_required_by_item: tuple[tuple[str, int, int], ...] = ()
    out_of_month: int = 0
    other_trust_provider: int = 0
    missing_v4_item: int = 0  # v4 files only: rows with a new required v4 item left empty
    missing_v4_item_by_item: tuple[tuple[str, int], ...] = ()  # (column, rows) per item with such rows

    @property
    def total(self) -> int:
        return (self.invalid_nhs_number + self.missing_mandatory + self.duplicate_rows + self.missing_required
                + self.out_of_month + self.other_trust_provider + self.missing_v4_item)

    @classmethod
    def count(cls, category: np.ndarray, kinds: np.ndarray, picked: np.ndarray, bad: np.ndarray,
              gaps: np.ndarray, duplicates: int) -> "FileDefects":
        """The counts of a file from the defects of its rows (`RowDefects` fields, one entry per written row,
        a duplicate and its copy both included; `gaps` all -1 for a v3 file)."""
        return cls(
            invalid_nhs_number=int((category == 1).sum()),
            missing_mandatory=int((category == 2).sum()),
            duplicate_rows=duplicates,
            missing_required=int((category == 4).sum()),
            missing_mandatory_by_kind=tuple(
                (name, int((kinds == k).sum())) for k, name in enumerate(MANDATORY_DEFECT_KINDS)),
            missing_required_by_item=tuple(
                (column, int(((picked == k) & ~bad).sum()), int(((picked == k) & bad).sum()))
                for k, column in enumerate(REQUIRED_COLUMNS) if (picked == k).any()),
            out_of_month=int((category == 5).sum()),
            other_trust_provider=int((category == 6).sum()),
            missing_v4_item=int((gaps >= 0).sum()),
            missing_v4_item_by_item=tuple(
                (column, int((gaps == k).sum())) for k, column in enumerate(NEW_V4_REQUIRED_COLUMNS)
                if (gaps == k).any()),
        )


# Items a missing_mandatory defect of each kind leaves blank (an administration_date defect gives an
# impossible date instead).
MANDATORY_BLANKS: dict[str, tuple[str, ...]] = {
    "regimen": ("regimen",), "drug_name": ("drug_name",), "start_date_of_cycle": ("start_date_of_cycle",),
    "diagnosis": ("primary_diagnosis", "morphology_icd_o"),
    "patient_identifier": ("nhs_number", "local_patient_identifier"),
}


@dataclass(frozen=True)
class RowDefects:
    """The defect of every row: its category and, for the kinds that have one, which item it hits.

    Drawn once for the records, whatever version they are written in; the draws of the kind and the
    item are made for every row (so the stream does not depend on the categories).
    """

    category: np.ndarray  # 0 clean, 1 invalid NHS number, 2 missing mandatory, 3 duplicated, 4 missing required,
    #                       5 out of month, 6 other trust's provider code
    kind: np.ndarray  # index into MANDATORY_DEFECT_KINDS (used on missing_mandatory rows)
    required_pick: np.ndarray  # index into REQUIRED_COLUMNS (used on missing_required rows)
    bad_code: np.ndarray  # a coded missing_required item gets an out-of-list code rather than a blank

    @classmethod
    def draw(cls, rng, rates: DefectRates, n: int) -> "RowDefects":
        """One uniform draw per row splits the rows into disjoint categories, then kinds and items."""
        u = rng.random(n)
        bounds = np.cumsum([rates.invalid_nhs_number, rates.missing_mandatory, rates.duplicate_rows,
                            rates.missing_required, rates.out_of_month, rates.other_trust_provider])
        category = np.searchsorted(bounds, u, side="right") + 1
        category[category == len(bounds) + 1] = 0
        kind = rng.integers(0, len(MANDATORY_DEFECT_KINDS), size=n)
        required_pick = rng.integers(0, len(REQUIRED_COLUMNS), size=n)
        bad_code = rng.random(n) < 0.5
        return cls(category, kind, required_pick, bad_code)

    @property
    def mandatory(self) -> np.ndarray:
        return self.category == 2

    @property
    def required(self) -> np.ndarray:
        return self.category == 4

    @property
    def mandatory_kind(self) -> np.ndarray:
        """Per row: the index into MANDATORY_DEFECT_KINDS of a missing_mandatory row, else -1."""
        return np.where(self.mandatory, self.kind, -1)

    @property
    def required_item(self) -> np.ndarray:
        """Per row: the index into REQUIRED_COLUMNS of a missing_required row, else -1."""
        return np.where(self.required, self.required_pick, -1)

    @property
    def required_bad_code(self) -> np.ndarray:
        """Per row: a missing_required row given an out-of-list code (not left blank)."""
        coded = [k for k, c in enumerate(REQUIRED_COLUMNS) if c in BAD_CODES]
        return self.required & self.bad_code & np.isin(self.required_pick, coded)

    @property
    def invalid_date(self) -> np.ndarray:
        """Per row: a missing_mandatory row with an impossible administration date (v4 items 80/81 too)."""
        return self.mandatory & (self.kind == MANDATORY_DEFECT_KINDS.index("administration_date"))

    def inject(self, columns: dict[str, Column], patient: np.ndarray, n_patients: int) -> None:
        """Write the invalid NHS numbers, missing mandatory and missing required items into the v3 columns
        (the NHS number dictionary holds every patient's valid number, then their invalid one)."""
        category = self.category
        rows = np.flatnonzero(category == 1)
        columns["nhs_number"].codes[rows] = n_patients + patient[rows]
        for k, name in enumerate(MANDATORY_DEFECT_KINDS):
            rows = np.flatnonzero(self.mandatory & (self.kind == k))
            if name == "administration_date":
                columns["administration_date"].set(rows, INVALID_DATE)
            for column in MANDATORY_BLANKS.get(name, ()):
                columns[column].set(rows, "")
        for k, column in enumerate(REQUIRED_COLUMNS):
            rows_k = self.required & (self.required_pick == k)
            if column in BAD_CODES:
                columns[column].set(np.flatnonzero(rows_k & self.bad_code), BAD_CODES[column])
                columns[column].set(np.flatnonzero(rows_k & ~self.bad_code), "")
            else:
                columns[column].set(np.flatnonzero(rows_k), "")

    def move_out_of_month(self, columns: dict[str, Column], month: np.ndarray,
                          first_month_index: int) -> np.ndarray:
        """Date the out_of_month rows the last day of the month before their reporting month; returns that
        day for every row (numpy datetime64[D]), which the v4 administration items take too."""
        category = self.category
        previous_day = (month + first_month_index).astype("datetime64[M]").astype("datetime64[D]") - 1
        for day in np.unique(previous_day[category == 5]):
            columns["administration_date"].set(np.flatnonzero((category == 5) & (previous_day == day)), str(day))
        return previous_day

    def swap_provider(self, columns: dict[str, Column], trust: np.ndarray, codes: list[str]) -> None:
        """Give the other_trust_provider rows the code of the next trust of the run as their provider."""
        for t, code in enumerate(codes):
            columns["organisation_identifier_code_of_provider"].set(
                np.flatnonzero((self.category == 6) & (trust == t)), codes[(t + 1) % len(codes)])


def inject_v4_defects(columns: dict[str, Column], invalid_date: np.ndarray, oral: np.ndarray, gap: np.ndarray,
                      gap_pick: np.ndarray) -> np.ndarray:
    """The impossible dates of the v4 administration items (80 on infused rows, 81 on oral ones) and the
    missing_v4_item gaps; returns per row the index into NEW_V4_REQUIRED_COLUMNS of its gap, else -1."""
    columns["administration_timestamp_infusion"].set(np.flatnonzero(invalid_date & ~oral), INVALID_TIMESTAMP)
    columns["administration_date_oral_drug_dispensed"].set(np.flatnonzero(invalid_date & oral), INVALID_DATE)
    for k, name in enumerate(NEW_V4_REQUIRED_COLUMNS):
        columns[name].set(np.flatnonzero(gap & (gap_pick == k)), "")
    return np.where(gap, gap_pick, -1)

