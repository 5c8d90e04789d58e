"""The SACT v3 data set as the pipeline reads it: items, header names, obligations and code lists.

The column layout is a versioned mapping from header names to canonical item names, so that v4
(60 items, header names not yet public) can be added as a second mapping without touching the
cleaning code. Every layer below raw uses the canonical snake_case column names defined here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MANDATORY = "M"
REQUIRED = "R"
OPTIONAL = "O"
OUTCOME = "outcome"


@dataclass(frozen=True)
class Item:
    """One data item of the SACT data set."""

    number: int
    header: str  # the header name as public code that reads trust files spells it
    column: str  # canonical column name used in every table of the pipeline
    obligation: str  # M, R, O or outcome
    codes: tuple[str, ...] | None = None  # the code list, when the item has one
    identifying: bool = False  # held only in the raw layer


def _two_digit(*codes: int) -> tuple[str, ...]:
    return tuple(f"{c:02d}" for c in codes)


YES_NO = ("Y", "N")

V3_ITEMS: tuple[Item, ...] = (
    Item(1, "NHS_Number", "nhs_number", MANDATORY, identifying=True),
    Item(44, "Local_Patient_Identifier", "local_patient_identifier", MANDATORY, identifying=True),
    Item(43, "NHS_Number_Status_Indicator_Code", "nhs_number_status_indicator_code", MANDATORY,
         _two_digit(*range(1, 9))),
    Item(45, "Person_Family_Name", "person_family_name", MANDATORY, identifying=True),
    Item(46, "Person_Given_Name", "person_given_name", MANDATORY, identifying=True),
    Item(2, "Date_Of_Birth", "date_of_birth", MANDATORY, identifying=True),
    Item(47, "Person_Stated_Gender_Code", "person_stated_gender_code", REQUIRED, ("1", "2", "9", "X")),
    Item(5, "Patient_Postcode", "patient_postcode", MANDATORY, identifying=True),
    Item(7, "Consultant_GMC_Code", "consultant_gmc_code", REQUIRED),
    Item(8, "Consultant_Specialty_Code", "consultant_specialty_code", REQUIRED),
    Item(9, "Organisation_Identifier_(Code_Of_Provider)", "organisation_identifier_code_of_provider", MANDATORY),
    Item(10, "Primary_Diagnosis", "primary_diagnosis", MANDATORY),
    Item(11, "Morphology_ICD-O", "morphology_icd_o", MANDATORY),
    Item(12, "Diagnosis_Code_(SNOMED_CT)", "diagnosis_code_snomed_ct", OPTIONAL),
    Item(49, "Adjunctive_Therapy", "adjunctive_therapy", REQUIRED, ("1", "2", "3", "9")),
    Item(15, "Intent_Of_Treatment", "intent_of_treatment", REQUIRED, _two_digit(1, 2, 3, 4, 5, 98, 99)),
    Item(16, "Regimen", "regimen", MANDATORY),
    Item(17, "Height_At_Start_Of_Regimen", "height_at_start_of_regimen", REQUIRED),
    Item(18, "Weight_At_Start_Of_Regimen", "weight_at_start_of_regimen", REQUIRED),
    Item(50, "Performance_Status_At_Start_Of_Regimen_-_Adult", "performance_status_at_start_of_regimen",
         REQUIRED, ("0", "1", "2", "3", "4")),
    Item(20, "Comorbidity_Adjustment", "comorbidity_adjustment", REQUIRED, YES_NO),
    Item(21, "Date_Decision_To_Treat", "date_decision_to_treat", REQUIRED),
    Item(22, "Start_Date_Of_Regimen", "start_date_of_regimen", MANDATORY),
    Item(23, "Clinical_Trial", "clinical_trial", REQUIRED, _two_digit(1, 2, 99)),
    Item(25, "Cycle_Number", "cycle_number", REQUIRED),
    Item(26, "Start_Date_Of_Cycle", "start_date_of_cycle", MANDATORY),
    Item(27, "Weight_At_Start_Of_Cycle", "weight_at_start_of_cycle", REQUIRED),
    Item(51, "Performance_Status_At_Start_Of_Cycle_-_Adult", "performance_status_at_start_of_cycle",
         REQUIRED, ("0", "1", "2", "3", "4")),
    Item(31, "Drug_Name", "drug_name", MANDATORY),
    Item(52, "DM+D", "dm_d", OPTIONAL),
    Item(32, "Actual_Dose_Per_Administration", "actual_dose_per_administration", REQUIRED),
    Item(53, "Administration_Measurement_Per_Actual_Dose", "administration_measurement_per_actual_dose",
         REQUIRED, _two_digit(1, 2, 3, 4, 5, 6, 7, 98, 99)),
    Item(54, "Other_-_ Administration_Measurement_Per_Actual_Dose",
         "other_administration_measurement_per_actual_dose", OPTIONAL),
    Item(55, "Unit_Of_Measurement_(SNOMED_CT_DM+D)", "unit_of_measurement_snomed_ct_dm_d", REQUIRED),
    Item(33, "SACT_Administration_Route", "sact_administration_route", REQUIRED,
         _two_digit(*range(1, 15), 98)),
    Item(56, "Route_Of_Administration_(SNOMED_CT_DM+D)", "route_of_administration_snomed_ct_dm_d", REQUIRED),
    Item(34, "Administration_Date", "administration_date", MANDATORY),
    Item(35, "Organisation_Identifier_Of_SACT_Administration", "organisation_identifier_of_sact_administration",
         REQUIRED),
    Item(38, "Regimen_Modification_-_Dose_Reduction", "regimen_modification_dose_reduction", OUTCOME, YES_NO),
    Item(57, "Regimen_Outcome_Summary_-_Curative_(Completed_As_Planned)",
         "regimen_outcome_summary_curative_completed_as_planned", OUTCOME, YES_NO),
    Item(58, "Regimen_Outcome_Summary_-_Curative_(Not_Completed_As_Planned)_Reason",
         "regimen_outcome_summary_curative_not_completed_reason", OUTCOME),
    Item(59, "Other_-_Regimen_Outcome_Summary_-_Curative_(Not_Completed_As_Planned)_Reason",
         "other_regimen_outcome_summary_curative_not_completed_reason", OUTCOME),
    Item(60, "Regimen_Outcome_Summary_Non_Curative", "regimen_outcome_summary_non_curative", OUTCOME),
    Item(61, "Regimen_Outcome_Summary_Toxicity", "regimen_outcome_summary_toxicity", OUTCOME, YES_NO),
)

ITEM_COLUMNS: tuple[str, ...] = tuple(item.column for item in V3_ITEMS)
ITEMS_BY_COLUMN: dict[str, Item] = {item.column: item for item in V3_ITEMS}

# Items whose column must be present for a file to be usable at all.
MANDATORY_COLUMNS: tuple[str, ...] = tuple(i.column for i in V3_ITEMS if i.obligation == MANDATORY)
# Items checked for completeness and code-list validity: data-quality findings, not rejections.
REQUIRED_COLUMNS: tuple[str, ...] = tuple(i.column for i in V3_ITEMS if i.obligation == REQUIRED)
IDENTIFYING_COLUMNS: tuple[str, ...] = tuple(i.column for i in V3_ITEMS if i.identifying)
# Two-digit code lists lose their leading zero when a trust's file passed through Excel.
TWO_DIGIT_CODED: tuple[str, ...] = tuple(
    i.column for i in V3_ITEMS if i.codes and all(len(c) == 2 and c.isdigit() for c in i.codes)
)
MANDATORY_DATES: tuple[str, ...] = (
    "date_of_birth", "start_date_of_regimen", "start_date_of_cycle", "administration_date",
)
REQUIRED_DATES: tuple[str, ...] = ("date_decision_to_treat",)
NUMERIC_COLUMNS: tuple[str, ...] = (
    "height_at_start_of_regimen", "weight_at_start_of_regimen", "weight_at_start_of_cycle",
    "actual_dose_per_administration",
)
INTEGER_COLUMNS: tuple[str, ...] = ("cycle_number",)

def normalise_header(name: str) -> str:
    """Header key used for matching: case-insensitive, all whitespace removed (one v3 header has a stray space)."""
    return re.sub(r"\s+", "", name).lower()


V3_HEADERS: dict[str, str] = {normalise_header(item.header): item.column for item in V3_ITEMS}
HEADER_MAPPINGS: dict[str, dict[str, str]] = {"v3": V3_HEADERS}


@dataclass(frozen=True)
class HeaderMatch:
    """How a file's header row maps onto a known data-set version."""

    version: str
    columns: dict[int, str]  # position in the file -> canonical column
    missing_mandatory: tuple[str, ...]
    missing_other: tuple[str, ...]
    unknown: tuple[str, ...]


def match_header(header: list[str]) -> HeaderMatch:
    """Map a header row onto the best-matching data-set version (most recognised names)."""
    best: HeaderMatch | None = None
    for version, mapping in HEADER_MAPPINGS.items():
        columns: dict[int, str] = {}
        unknown: list[str] = []
        for position, name in enumerate(header):
            column = mapping.get(normalise_header(name))
            if column is None or column in columns.values():
                unknown.append(name.strip())
            else:
                columns[position] = column
        present = set(columns.values())
        match = HeaderMatch(
            version=version,
            columns=columns,
            missing_mandatory=tuple(c for c in MANDATORY_COLUMNS if c not in present),
            missing_other=tuple(c for c in ITEM_COLUMNS if c not in present and c not in MANDATORY_COLUMNS),
            unknown=tuple(unknown),
        )
        if best is None or len(match.columns) > len(best.columns):
            best = match
    assert best is not None
    return best
