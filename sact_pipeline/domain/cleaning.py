"""Cleaning one submission file version: typing, validation, pseudonymisation and minimisation.

Every raw row ends up in exactly one place: opted out, clean, quarantined (with every reason), or
duplicate.
Mandatory-item failures quarantine a row; required items that are missing or off their code list are
data-quality findings counted per item. Identifiers (NHS number, local id, names, postcode, date of
birth) never leave this function: the clean layer holds a keyed pseudonym, age and postcode district.
All checks are vectorised over the frame.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from sact_pipeline.domain import data_quality as dq
from sact_pipeline.domain import nhs_number
from sact_pipeline.domain.pseudonymise import Pseudonymiser
from sact_pipeline.domain.spec import (
    IDENTIFYING_COLUMNS,
    INTEGER_COLUMNS,
    ITEM_COLUMNS,
    ITEMS_BY_COLUMN,
    MANDATORY_DATES,
    NUMERIC_COLUMNS,
    REQUIRED_COLUMNS,
    REQUIRED_DATES,
    TWO_DIGIT_CODED,
    V3_ITEMS,
)

MAX_AGE = 120
NHS_NUMBER_KEYS = "nhs_number"  # the pseudonymisation namespace of patient keys made from NHS numbers
EARLIEST_ADMINISTRATION = pd.Timestamp("1990-01-01")  # the clean suite's lower bound (SACT began in 2012)
CODED_COLUMNS: dict[str, tuple[str, ...]] = {
    i.column: i.codes for i in V3_ITEMS if i.codes is not None and not i.identifying
}
DATE_COLUMNS = tuple(c for c in MANDATORY_DATES + REQUIRED_DATES if c != "date_of_birth")
# Non-identifying items carried as they arrived into the quarantine table, so analysts can see why.
QUARANTINE_ITEM_COLUMNS = tuple(c for c in ITEM_COLUMNS if c not in IDENTIFYING_COLUMNS)
CLEAN_COLUMNS: tuple[str, ...] = (
    "row_number", "patient_key", "patient_key_source", "age_at_regimen_start", "age_band",
    "postcode_district",
) + tuple(c for c in ITEM_COLUMNS if c not in IDENTIFYING_COLUMNS)


def header_of(column: str) -> str:
    return ITEMS_BY_COLUMN[column].header


@dataclass(frozen=True)
class CleanedSubmission:
    clean: pd.DataFrame
    quarantine: pd.DataFrame  # row_number, reasons, patient_key (may be empty) and non-identifying items
    data_quality: pd.DataFrame  # item, missing, invalid: findings per item, counted on clean rows
    raw_rows: int
    duplicate_rows: int
    opted_out_rows: int = 0  # rows of patients who opted out of registration: removed, counted, nothing else
    # Over the assessed rows (clean and quarantined): completeness and validity per v3 item, and every row
    # finding (item and reason, no value): see domain.data_quality.
    item_quality: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(dq.ITEM_QUALITY_COLUMNS)))
    findings: pd.DataFrame = field(default_factory=lambda: dq.concat_findings([]))

    @property
    def clean_rows(self) -> int:
        return len(self.clean)

    @property
    def quarantined_rows(self) -> int:
        return len(self.quarantine)

    @property
    def data_quality_findings(self) -> int:
        return int(self.data_quality[["missing", "invalid"]].to_numpy().sum())


def clean_submission(
    raw: pd.DataFrame, *, trust_code: str, submitted_at: datetime, pseudonymiser: Pseudonymiser,
    opted_out: frozenset[str] | set[str] = frozenset(), reporting_month: str | None = None,
    trust_of: Callable[[str], str | None] | None = None,
) -> CleanedSubmission:
    """Clean one file version (raw frame: row_number plus the 44 items as text).

    `opted_out`: patient keys (pseudonyms of NHS numbers) of patients who opted out of registration. Their
    rows are removed first, before duplicates and quarantine, so nothing of them reaches any table: rows
    with their NHS number, and rows of the file with the same Local_Patient_Identifier (the same patient
    where a row lacks a valid NHS number).
    `reporting_month` ('YYYY-MM'): activity dated outside it is a finding; `trust_of` (provider code -> its
    trust, None if unknown): a provider code of another trust is a finding, an unknown one invalid."""
    items = pd.DataFrame({c: raw[c].astype("str").str.strip() for c in ITEM_COLUMNS}, index=raw.index)
    nhs = nhs_number.normalise(items["nhs_number"])
    nhs_valid = nhs_number.is_valid(nhs).to_numpy()
    nhs_key = pd.Series(pd.NA, index=items.index, dtype="str")
    if nhs_valid.any():  # once per distinct number, for the opt-out match and the patient key alike
        nhs_key[nhs_valid] = pseudonymiser.pseudonymise(nhs[nhs_valid], NHS_NUMBER_KEYS)
    opted = _opted_out_rows(nhs_key, nhs_valid, items["local_patient_identifier"], opted_out)
    duplicated = np.zeros(len(items), dtype=bool)
    duplicated[~opted] = items.loc[~opted].duplicated(keep="first").to_numpy()
    kept = ~opted & ~duplicated
    items, nhs, nhs_valid, nhs_key = items.loc[kept], nhs[kept], nhs_valid[kept], nhs_key[kept]
    row_number = raw["row_number"].loc[kept].astype("int64")

    for column in TWO_DIGIT_CODED:  # '1' -> '01': Excel drops the leading zero of two-digit codes
        items[column] = items[column].where(~items[column].str.fullmatch(r"\d"), "0" + items[column])
    for column, codes in CODED_COLUMNS.items():
        if any(c.isalpha() for c in codes):
            items[column] = items[column].str.upper()

    local_id = items["local_patient_identifier"]
    has_local = (local_id != "").to_numpy()
    patient_key = nhs_key.copy()
    by_local = ~nhs_valid & has_local
    if by_local.any():
        patient_key[by_local] = pseudonymiser.pseudonymise(trust_code + "\x1f" + local_id[by_local],
                                                           "local_patient_identifier")
    key_source = np.where(nhs_valid, "nhs_number", np.where(by_local, "local_patient_identifier", ""))

    dates = {c: _parse_dates(items[c]) for c in MANDATORY_DATES + REQUIRED_DATES}
    reasons = _Reasons(items.index, row_number)
    reasons.add(~(nhs_valid | has_local), "no usable patient identifier (no valid NHS_Number and no "
                                          "Local_Patient_Identifier)", "nhs_number")
    for column in MANDATORY_DATES:
        missing = (items[column] == "").to_numpy()
        reasons.add(missing, f"{header_of(column)} missing", column)
        reasons.add(~missing & dates[column].isna().to_numpy(), f"{header_of(column)} is not a valid ccyy-mm-dd date",
                    column)
    for column in ("regimen", "drug_name", "organisation_identifier_code_of_provider"):
        reasons.add((items[column] == "").to_numpy(), f"{header_of(column)} missing", column)
    reasons.add(((items["primary_diagnosis"] == "") & (items["morphology_icd_o"] == "")).to_numpy(),
                "Primary_Diagnosis and Morphology_ICD-O both missing", "primary_diagnosis")
    administered = dates["administration_date"]
    reasons.add((administered > pd.Timestamp(submitted_at.date())).to_numpy(),
                "Administration_Date after the submission date", "administration_date")
    reasons.add((administered < dates["date_of_birth"]).to_numpy(), "Administration_Date before Date_Of_Birth",
                "administration_date")
    # Implausible values that would otherwise fail the clean suite for the whole file: one row, one reason.
    age = _age_in_years(dates["date_of_birth"], dates["start_date_of_regimen"])
    reasons.add(((age < 0) | (age > MAX_AGE)).fillna(False).to_numpy(dtype=bool),
                f"Date_Of_Birth gives an age outside 0-{MAX_AGE} at Start_Date_Of_Regimen", "date_of_birth")
    reasons.add((administered < EARLIEST_ADMINISTRATION).to_numpy(),
                f"Administration_Date before {EARLIEST_ADMINISTRATION:%Y-%m-%d}", "administration_date")

    # Data quality of every assessed row (clean or quarantined), before identifiers are dropped.
    others = []
    provider_known = None
    if trust_of is not None:
        provider, provider_known = dq.provider_findings(items["organisation_identifier_code_of_provider"].str.upper(),
                                                        row_number, trust_code, trust_of)
        others.append(provider)
    checks = dq.check_items(items, dates=dates, nhs_valid=nhs_valid, provider_known=provider_known)
    others.insert(0, dq.invalid_findings(checks, row_number))
    if reporting_month is not None:
        others.append(dq.activity_findings(administered, row_number, reporting_month))
    findings = dq.row_findings(reasons.findings(), others)

    quarantined = reasons.any()
    # Frames are built from whole columns at once: column-by-column inserts cost more than the rows.
    quarantine = pd.concat([
        pd.DataFrame({"row_number": row_number[quarantined], "reasons": reasons.text()[quarantined],
                      "patient_key": patient_key[quarantined]}),
        items.loc[quarantined, list(QUARANTINE_ITEM_COLUMNS)],
    ], axis=1)

    keep = ~quarantined
    kept = items.loc[keep]
    age = _age_in_years(dates["date_of_birth"][keep], dates["start_date_of_regimen"][keep])
    columns = {
        "row_number": row_number[keep],
        "patient_key": patient_key[keep],
        "patient_key_source": pd.Series(key_source[keep], index=kept.index, dtype="str"),
        "age_at_regimen_start": age,
        "age_band": _age_band(age),
        "postcode_district": _postcode_district(kept["patient_postcode"]),
    }
    for column in QUARANTINE_ITEM_COLUMNS:
        if column in dates:
            columns[column] = dates[column][keep]
        elif column in NUMERIC_COLUMNS:
            columns[column] = pd.to_numeric(kept[column], errors="coerce").astype("Float64")
        elif column in INTEGER_COLUMNS:
            columns[column] = _to_integer(kept[column])
        elif column in CODED_COLUMNS:  # off-list codes are findings (counted below), held as unknown
            columns[column] = kept[column].where(kept[column].isin(CODED_COLUMNS[column]), pd.NA)
        else:
            columns[column] = kept[column].replace("", pd.NA)
    clean = pd.DataFrame(columns)[list(CLEAN_COLUMNS)].reset_index(drop=True)

    data_quality = _data_quality(checks, keep)
    return CleanedSubmission(
        clean=clean,
        quarantine=quarantine.reset_index(drop=True),
        data_quality=data_quality,
        raw_rows=len(raw),
        duplicate_rows=int(duplicated.sum()),
        opted_out_rows=int(opted.sum()),
        item_quality=checks.item_quality(),
        findings=findings,
    )


def _opted_out_rows(nhs_key: pd.Series, nhs_valid: np.ndarray, local_id: pd.Series, opted_out) -> np.ndarray:
    """Rows of opted-out patients: a valid NHS number whose key is opted out, and any row of the file
    with the same local identifier as such a row (matched on keys and identifiers in memory only)."""
    if not opted_out:
        return np.zeros(len(nhs_key), dtype=bool)
    opted = nhs_valid & nhs_key.isin(opted_out).to_numpy()
    if opted.any():
        locals_of_opted = set(local_id[opted]) - {""}
        opted |= local_id.isin(locals_of_opted).to_numpy()
    return opted


class _Reasons:
    """Accumulates every quarantine reason per row, with the item it is about, vectorised."""

    def __init__(self, index: pd.Index, row_number: pd.Series):
        self._index = index
        self._row_number = row_number
        self._rules: list[tuple[np.ndarray, str, str]] = []

    def add(self, mask: np.ndarray, reason: str, column: str) -> None:
        self._rules.append((np.asarray(mask, dtype=bool), reason, column))

    def any(self) -> np.ndarray:
        result = np.zeros(len(self._index), dtype=bool)
        for mask, _, _ in self._rules:
            result |= mask
        return result

    def findings(self) -> pd.DataFrame:
        """One finding per rule a row broke: its row number, the item and the reason."""
        return dq.concat_findings([dq.quarantine_findings(self._row_number, mask, header_of(column), reason)
                                   for mask, reason, column in self._rules if mask.any()])

    def text(self) -> pd.Series:
        text = np.full(len(self._index), "", dtype=object)
        for mask, reason, _ in self._rules:
            if mask.any():
                text[mask] = np.where(text[mask] == "", reason, text[mask] + "; " + reason)
        return pd.Series(text, index=self._index, dtype="str")


def _parse_dates(values: pd.Series) -> pd.Series:
    """Strict ccyy-mm-dd dates; anything else is NaT. Parsed once per distinct value (dates repeat a lot)."""
    distinct = pd.Series(values.unique())
    shaped = distinct.where(distinct.str.fullmatch(r"\d{4}-\d{2}-\d{2}"))
    parsed = pd.to_datetime(shaped, format="%Y-%m-%d", errors="coerce")
    lookup = pd.Series(parsed.to_numpy(), index=distinct.to_numpy())
    return pd.Series(lookup.reindex(values.to_numpy()).to_numpy(), index=values.index).astype("datetime64[s]")


def _age_in_years(born: pd.Series, on: pd.Series) -> pd.Series:
    years = on.dt.year - born.dt.year
    before_birthday = (on.dt.month < born.dt.month) | ((on.dt.month == born.dt.month) & (on.dt.day < born.dt.day))
    return (years - before_birthday.astype("int64")).astype("Int64")


def _age_band(age: pd.Series) -> pd.Series:
    low = (age // 5) * 5
    band = low.astype("str") + "-" + (low + 4).astype("str")
    return band.where(age.notna(), pd.NA).where(age < 90, "90+").astype("str")


def _postcode_district(postcode: pd.Series) -> pd.Series:
    """Outward code only (e.g. 'LS1 4AP' -> 'LS1'): enough for geography, not enough to locate a home."""
    compact = postcode.str.upper().str.replace(r"\s+", "", regex=True)
    district = compact.str[:-3].where(compact.str.len() >= 5)
    return district.where(district.str.fullmatch(r"[A-Z]{1,2}[0-9][A-Z0-9]?"), pd.NA).astype("str")


def _to_integer(values: pd.Series) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce")
    return numbers.where(numbers == numbers.round()).astype("Int64")


def _data_quality(checks: dq.ItemChecks, clean_rows: np.ndarray) -> pd.DataFrame:
    """The summary's findings on clean rows: per required or coded item (and NHS_Number), how many rows
    miss a required item and how many hold a value outside its rules (domain.data_quality)."""
    checked = list(dict.fromkeys(REQUIRED_COLUMNS + tuple(CODED_COLUMNS) + ("nhs_number",)))
    headers = [header_of(c) for c in checked]
    present = checks.present.loc[clean_rows, headers]
    invalid = (present & ~checks.valid.loc[clean_rows, headers]).sum().to_numpy(dtype="int64")
    missing = (~present).sum().to_numpy(dtype="int64")
    required = np.array([c in REQUIRED_COLUMNS or c == "nhs_number" for c in checked])
    return pd.DataFrame({"item": headers, "missing": np.where(required, missing, 0), "invalid": invalid})
