"""Small, readable SACT rows, files and frames for tests.

A helper module, not a test module: import from here, never from a test module."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sact_pipeline.domain.spec import SACT, V3, V4, normalise_header

VALID_ROW = {
    "nhs_number": "9434765919", "local_patient_identifier": "L0001", "nhs_number_status_indicator_code": "01",
    "person_family_name": "Ó Briain", "person_given_name": "Siân", "date_of_birth": "1960-05-17",
    "person_stated_gender_code": "2", "patient_postcode": "LS1 4AP", "consultant_gmc_code": "C1234567",
    "consultant_specialty_code": "800", "organisation_identifier_code_of_provider": "RR8",
    "primary_diagnosis": "C50.9", "morphology_icd_o": "8500/3", "diagnosis_code_snomed_ct": "",
    "adjunctive_therapy": "1", "intent_of_treatment": "01", "regimen": "FEC-T",
    "height_at_start_of_regimen": "1.65", "weight_at_start_of_regimen": "70.5",
    "performance_status_at_start_of_regimen": "0", "comorbidity_adjustment": "N",
    "date_decision_to_treat": "2024-01-02", "start_date_of_regimen": "2024-01-08", "clinical_trial": "02",
    "cycle_number": "1", "start_date_of_cycle": "2024-01-08", "weight_at_start_of_cycle": "70.5",
    "performance_status_at_start_of_cycle": "0", "drug_name": "EPIRUBICIN", "dm_d": "",
    "actual_dose_per_administration": "150", "administration_measurement_per_actual_dose": "01",
    "other_administration_measurement_per_actual_dose": "", "unit_of_measurement_snomed_ct_dm_d": "258684004",
    "sact_administration_route": "01", "route_of_administration_snomed_ct_dm_d": "47625008",
    "administration_date": "2024-01-08", "organisation_identifier_of_sact_administration": "RR8",
    "regimen_modification_dose_reduction": "N", "regimen_outcome_summary_curative_completed_as_planned": "",
    "regimen_outcome_summary_curative_not_completed_reason": "",
    "other_regimen_outcome_summary_curative_not_completed_reason": "",
    "regimen_outcome_summary_non_curative": "", "regimen_outcome_summary_toxicity": "",
}
V3_COLUMNS = SACT.version(V3).columns
assert set(VALID_ROW) == set(V3_COLUMNS)
HEADERS = [item.header(V3) for item in SACT.version(V3).items]
# The same administration as a v4 row: the date in the infusion timestamp (item 80), the items v4 dropped
# gone, and its new items filled in.
VALID_V4_ROW = {
    **{c: v for c, v in VALID_ROW.items() if c in SACT.version(V4).by_name},
    "professional_registration_issuer_code": "01", "professional_registration_entry_identifier": "C1234567",
    "treatment_context": "01", "curative_line_of_treatment": "1", "non_curative_line_of_treatment": "",
    "chemoradiation": "N", "regimen_modification": "N", "reason_for_regimen_modification": "",
    "reason_for_regimen_modification_patient_factors": "", "toxicity_grade_regimen_modification": "",
    "cycle_modification": "N", "reason_for_cycle_modification": "", "reason_for_cycle_modification_patient_factors": "",
    "toxicity_grade_cycle_modification": "", "cycle_delay": "N", "reason_for_cycle_delay": "",
    "reason_for_cycle_delay_patient_factors": "", "toxicity_grade_cycle_delay": "",
    "administration_timestamp_infusion": "2024-01-08T10:15:00+00:00", "administration_date_oral_drug_dispensed": "",
    "cycle_length_in_days": "", "number_of_cycles_dispensed": "", "dose_modification": "N",
    "reason_for_dose_modification": "", "reason_for_dose_modification_patient_factors": "",
    "toxicity_grade_dose_modification": "", "end_of_regimen_summary": "",
}
assert set(VALID_V4_ROW) == set(SACT.version(V4).columns)
V4_HEADERS = [item.header(V4) for item in SACT.version(V4).items]

# Values for frames a layer's suite validates (sact_pipeline.quality).
FAKE_NHS = "9434765919"  # a well-formed test NHS number placed in failing columns; must never leak
KEY_1 = "1f" * 32  # patient keys (64 hex characters)
KEY_2 = "2e" * 32
CODE_LISTS = {"intent_of_treatment": ("01", "02", "98"), "person_stated_gender_code": ("1", "2", "9", "X")}


def patients(prefix: str, count: int, **overrides) -> list[dict]:
    """Rows for `count` distinct patients (local identifiers prefix0000, prefix0001, ..., no NHS number, so
    any count is valid), each with `overrides`."""
    return [{"nhs_number": "", "local_patient_identifier": f"{prefix}{i:04d}", **overrides} for i in range(count)]


def dated_patients(prefix: str, count: int, day: str, version: str = V3) -> list[dict]:
    """`patients(prefix, count)` with every date `day` (v4: in the infusion timestamp, item 80)."""
    dates = {key: day for key in ("date_decision_to_treat", "start_date_of_regimen", "start_date_of_cycle")}
    dates |= {"administration_timestamp_infusion": f"{day}T10:15:00+01:00"} if version == V4 else {
        "administration_date": day}
    return patients(prefix, count, **dates)


def raw_frame(rows: list[dict], version: str = V3) -> pd.DataFrame:
    """A raw frame as the landing reader returns it: row_number plus every item of the version as text."""
    valid, columns = (VALID_ROW, V3_COLUMNS) if version == V3 else (VALID_V4_ROW, SACT.version(V4).columns)
    frame = pd.DataFrame([{**valid, **row} for row in rows], columns=list(columns)).astype("str")
    frame.insert(0, "row_number", range(1, len(frame) + 1))
    return frame


def clean_frame() -> pd.DataFrame:
    """The clean layer's frame as its suite sees it: three rows of January 2025 that pass it (CODE_LISTS)."""
    dates = pd.to_datetime(["2025-01-06", "2025-01-13", "2025-01-20"]).astype("datetime64[s]")
    return pd.DataFrame({
        "row_number": [1, 2, 3],
        "patient_key": pd.Series([KEY_1, KEY_1, KEY_2], dtype="str"),
        "age_at_regimen_start": pd.array([54, 54, 7], dtype="Int64"),
        "intent_of_treatment": pd.Series(["01", pd.NA, "98"], dtype="str"),
        "person_stated_gender_code": pd.Series(["1", "2", pd.NA], dtype="str"),
        "administration_date": dates,
        "start_date_of_cycle": dates,
        "start_date_of_regimen": pd.to_datetime(["2024-12-02"] * 3).astype("datetime64[s]"),
        "drug_name": ["EPIRUBICIN", "EPIRUBICIN", "VINCRISTINE"],
        "regimen": ["FEC", "FEC", "VCR"],
    })


def decode_generated(data: bytes) -> tuple[str, str]:
    """A generated (or trust's) file's bytes as text, and the encoding they were in: UTF-8 with or without
    a byte-order mark, else Windows-1252."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8"), "utf-8-sig"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("cp1252"), "cp1252"


def write_submission(path: Path, rows: list[dict], *, encoding: str = "utf-8", newline: str = "\n",
                     headers: list[str] | None = None, version: str = V3) -> Path:
    """Write a submission file the way a trust system would: the version's header (or `headers`), then a
    line per row (the version's valid row with the row's overrides; empty in a column of no item)."""
    headers = headers or (HEADERS if version == V3 else V4_HEADERS)
    valid = VALID_ROW if version == V3 else VALID_V4_ROW
    by_header = {key: item.name for key, item in SACT.version(version).header_map.items()}
    lines = [",".join(headers)]
    for row in rows:
        values = {**valid, **row}
        columns = [by_header.get(normalise_header(h)) for h in headers]
        lines.append(",".join(_quote(values.get(c, "")) if c else "" for c in columns))
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (newline.join(lines) + newline).encode(encoding)
    path.write_bytes(data)
    return path


def _quote(value: str) -> str:
    return f'"{value}"' if any(c in value for c in ',"\n') else value
