"""The quarantine rules as one declarative list: every rule is reachable, alone, with its exact reason."""

from dataclasses import FrozenInstanceError
from datetime import datetime

import pytest

from sact_pipeline.domain.cleaning import QuarantineRule, clean_submission, quarantine_rules_of
from sact_pipeline.domain.pseudonymise import Pseudonymiser
from sact_pipeline.domain.spec import SACT, V3, V4
from sact_pipeline_tests.builders import raw_frame

SUBMITTED = datetime(2024, 2, 10, 9, 30)
PSEUDONYMISER = Pseudonymiser(b"k" * 32)
V4_ADMINISTRATION = "Administration_Timestamp_(Infusion) or Administration_Date_(Oral_Drug_Dispensed)"
NO_ADMINISTRATION = {"administration_timestamp_infusion": "", "administration_date_oral_drug_dispensed": ""}

# A row (the valid row with these values) that breaks one rule only, per reason of each version.
BREAKS_ONLY = {
    V3: {
        "no usable patient identifier (no valid NHS_Number and no Local_Patient_Identifier)":
            {"nhs_number": "9434765918", "local_patient_identifier": ""},
        "Date_Of_Birth missing": {"date_of_birth": ""},
        "Date_Of_Birth is not a valid ccyy-mm-dd date": {"date_of_birth": "17/05/1960"},
        "Organisation_Identifier_(Code_Of_Provider) missing": {"organisation_identifier_code_of_provider": ""},
        "Primary_Diagnosis and Morphology_ICD-O both missing": {"primary_diagnosis": "", "morphology_icd_o": ""},
        "Regimen missing": {"regimen": "  "},
        "Start_Date_Of_Regimen missing": {"start_date_of_regimen": ""},
        "Start_Date_Of_Regimen is not a valid ccyy-mm-dd date": {"start_date_of_regimen": "2024-02-30"},
        "Start_Date_Of_Cycle missing": {"start_date_of_cycle": ""},
        "Start_Date_Of_Cycle is not a valid ccyy-mm-dd date": {"start_date_of_cycle": "x"},
        "Drug_Name missing": {"drug_name": ""},
        "Administration_Date missing": {"administration_date": ""},
        "Administration_Date is not a valid ccyy-mm-dd date": {"administration_date": "2024-1-8"},
        "Administration_Date after the submission date": {"administration_date": "2024-02-11"},
        "Administration_Date before Date_Of_Birth":
            {"administration_date": "1995-01-01", "date_of_birth": "2000-01-01"},
        "Date_Of_Birth gives an age outside 0-120 at Start_Date_Of_Regimen": {"date_of_birth": "1880-01-01"},
        "Administration_Date before 1990-01-01": {"administration_date": "1985-01-01", "date_of_birth": "1950-01-01"},
    },
    V4: {
        "no usable patient identifier (no valid NHS_Number and no Local_Patient_Identifier)":
            {"nhs_number": "", "local_patient_identifier": ""},
        "Date_Of_Birth missing": {"date_of_birth": ""},
        "Date_Of_Birth is not a valid ccyy-mm-dd date": {"date_of_birth": "1960-13-01"},
        "Organisation_Identifier_(Code_Of_Provider) missing": {"organisation_identifier_code_of_provider": ""},
        "Primary_Diagnosis and Morphology_ICD-O both missing": {"primary_diagnosis": "", "morphology_icd_o": ""},
        "Regimen missing": {"regimen": ""},
        "Start_Date_Of_Regimen missing": {"start_date_of_regimen": ""},
        "Start_Date_Of_Regimen is not a valid ccyy-mm-dd date": {"start_date_of_regimen": "2024-02-30"},
        "Cycle_Number missing": {"cycle_number": ""},
        "Cycle_Number is not a whole number": {"cycle_number": "1.5"},
        "Start_Date_Of_Cycle missing": {"start_date_of_cycle": ""},
        "Start_Date_Of_Cycle is not a valid ccyy-mm-dd date": {"start_date_of_cycle": "08/01/2024"},
        "Drug_Name missing": {"drug_name": ""},
        "Administration_Timestamp_(Infusion) is not an ISO 8601 timestamp with an offset "
        "(e.g. 2026-05-14T10:15:00+01:00)":
            {"administration_timestamp_infusion": "2024-01-08T10:15:00"},
        "Administration_Date_(Oral_Drug_Dispensed) is not a valid ccyy-mm-dd date":
            {**NO_ADMINISTRATION, "administration_date_oral_drug_dispensed": "8/1/2024"},
        "Administration_Timestamp_(Infusion) and Administration_Date_(Oral_Drug_Dispensed) both missing":
            NO_ADMINISTRATION,
        f"{V4_ADMINISTRATION} after the submission date":
            {"administration_timestamp_infusion": "2024-02-11T00:30:00+01:00"},
        f"{V4_ADMINISTRATION} before Date_Of_Birth":
            {**NO_ADMINISTRATION, "administration_date_oral_drug_dispensed": "1995-01-01",
             "date_of_birth": "2000-01-01"},
        "Date_Of_Birth gives an age outside 0-120 at Start_Date_Of_Regimen": {"date_of_birth": "1880-01-01"},
        f"{V4_ADMINISTRATION} before 1990-01-01":
            {"administration_timestamp_infusion": "1985-01-01T10:15:00Z", "date_of_birth": "1950-01-01"},
    },
}


def clean(rows, version):
    return clean_submission(raw_frame(rows, version), trust_code="RR8", submitted_at=SUBMITTED,
                            pseudonymiser=PSEUDONYMISER, sact_version=version)


@pytest.mark.parametrize("version", [V3, V4])
def test_the_rules_are_the_reasons_in_the_order_they_are_written(version):
    rules = quarantine_rules_of(SACT.version(version))
    assert [rule.reason for rule in rules] == list(BREAKS_ONLY[version])
    assert all(isinstance(rule, QuarantineRule) for rule in rules)
    with pytest.raises(FrozenInstanceError):
        rules[0].reason = "changed"


@pytest.mark.parametrize("version, reason", [(v, r) for v in (V3, V4) for r in BREAKS_ONLY[v]])
def test_each_rule_alone_quarantines_its_row_with_exactly_its_reason(version, reason):
    result = clean([{}, BREAKS_ONLY[version][reason]], version)
    assert result.quarantine["row_number"].tolist() == [2]
    assert result.quarantine["reasons"].tolist() == [reason]
    item = next(r.item for r in quarantine_rules_of(SACT.version(version)) if r.reason == reason)
    quarantined = result.findings.loc[result.findings["kind"] == "quarantined", ["row_number", "item", "finding"]]
    assert quarantined.to_records(index=False).tolist() == [(2, item, reason)]


@pytest.mark.parametrize("version", [V3, V4])
def test_a_row_breaking_several_rules_keeps_every_reason_in_rule_order(version):
    broken = {"date_of_birth": "x", "regimen": "", "drug_name": "", "primary_diagnosis": "", "morphology_icd_o": ""}
    reasons = clean([broken], version).quarantine["reasons"].iloc[0].split("; ")
    order = [rule.reason for rule in quarantine_rules_of(SACT.version(version))]
    assert reasons == [r for r in order if r in reasons] and len(reasons) == 4


def test_the_first_administration_given_is_the_one_used_with_no_fall_back():
    result = clean([{"administration_timestamp_infusion": "2024-01-08T25:15:00+00:00",
                     "administration_date_oral_drug_dispensed": "2024-01-08"},
                    {"administration_date_oral_drug_dispensed": "not a date"}], V4)
    assert result.quarantine["row_number"].tolist() == [1]
    assert result.quarantine["reasons"].iloc[0].startswith("Administration_Timestamp_(Infusion) is not an ISO 8601")
    assert result.clean_rows == 1
