"""Small, readable SACT rows and files for tests."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sact_pipeline.domain.spec import ITEM_COLUMNS, V3_ITEMS, normalise_header

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
assert set(VALID_ROW) == set(ITEM_COLUMNS)
HEADERS = [item.header for item in V3_ITEMS]


def raw_frame(rows: list[dict]) -> pd.DataFrame:
    """A raw frame as the landing reader returns it: row_number plus every item as text."""
    frame = pd.DataFrame([{**VALID_ROW, **row} for row in rows], columns=list(ITEM_COLUMNS)).astype("str")
    frame.insert(0, "row_number", range(1, len(frame) + 1))
    return frame


def write_submission(path: Path, rows: list[dict], *, encoding: str = "utf-8", newline: str = "\n",
                     headers: list[str] | None = None) -> Path:
    """Write a submission file the way a trust system would."""
    headers = headers or HEADERS
    by_header = {normalise_header(item.header): item.column for item in V3_ITEMS}
    lines = [",".join(headers)]
    for row in rows:
        values = {**VALID_ROW, **row}
        columns = [by_header.get(normalise_header(h)) for h in headers]
        lines.append(",".join(_quote(values[c]) if c else "" for c in columns))
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (newline.join(lines) + newline).encode(encoding)
    path.write_bytes(data)
    return path


def _quote(value: str) -> str:
    return f'"{value}"' if any(c in value for c in ',"\n') else value
