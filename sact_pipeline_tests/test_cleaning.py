"""Cleaning: every raw row accounted for, quarantine reasons, pseudonyms, no identifiers downstream."""

from datetime import datetime

import pandas as pd
import pytest

from sact_pipeline.domain.cleaning import clean_submission
from sact_pipeline.domain.pseudonymise import PseudonymisationKeyError, Pseudonymiser
from sact_pipeline.domain.spec import SACT, V4

IDENTIFYING_COLUMNS = SACT.identifying_columns
from sact_pipeline_tests.builders import VALID_ROW, raw_frame

SUBMITTED = datetime(2024, 2, 10, 9, 30)
PSEUDONYMISER = Pseudonymiser(b"k" * 32)


def clean(rows, trust="RR8"):
    return clean_submission(raw_frame(rows), trust_code=trust, submitted_at=SUBMITTED, pseudonymiser=PSEUDONYMISER)


def reasons_of(rows):
    result = clean(rows)
    return dict(zip(result.quarantine["row_number"], result.quarantine["reasons"]))


def test_a_valid_row_is_clean_and_holds_no_identifier():
    result = clean([{}])
    assert result.clean_rows == 1 and result.quarantined_rows == 0 and result.duplicate_rows == 0
    row = result.clean.iloc[0]
    assert row["patient_key_source"] == "nhs_number"
    assert len(row["patient_key"]) == 64
    assert row["age_at_regimen_start"] == 63 and row["age_band"] == "60-64"
    assert row["postcode_district"] == "LS1"
    for column in IDENTIFYING_COLUMNS:
        assert column not in result.clean.columns
    text = result.clean.astype(str).to_csv()
    for identifier in ("9434765919", "L0001", "Briain", "Siân", "LS1 4AP", "1960-05-17"):
        assert identifier not in text


@pytest.mark.parametrize(
    "override, reason",
    [
        ({"nhs_number": "9434765918", "local_patient_identifier": ""}, "no usable patient identifier"),
        ({"nhs_number": "", "local_patient_identifier": ""}, "no usable patient identifier"),
        ({"date_of_birth": ""}, "Date_Of_Birth missing"),
        ({"date_of_birth": "17/05/1960"}, "Date_Of_Birth is not a valid ccyy-mm-dd date"),
        ({"start_date_of_regimen": "2024-02-30"}, "Start_Date_Of_Regimen is not a valid ccyy-mm-dd date"),
        ({"start_date_of_cycle": ""}, "Start_Date_Of_Cycle missing"),
        ({"administration_date": "2024-1-8"}, "Administration_Date is not a valid ccyy-mm-dd date"),
        ({"regimen": "  "}, "Regimen missing"),
        ({"drug_name": ""}, "Drug_Name missing"),
        ({"organisation_identifier_code_of_provider": ""}, "Organisation_Identifier_(Code_Of_Provider) missing"),
        ({"primary_diagnosis": "", "morphology_icd_o": ""}, "Primary_Diagnosis and Morphology_ICD-O both missing"),
        ({"administration_date": "2024-02-11"}, "Administration_Date after the submission date"),
        ({"administration_date": "1959-01-01"}, "Administration_Date before Date_Of_Birth"),
    ],
)
def test_each_mandatory_failure_quarantines_the_row_with_its_reason(override, reason):
    reasons = reasons_of([{}, override])
    assert list(reasons) == [2]
    assert reason in reasons[2]


def test_every_reason_is_recorded_not_just_the_first():
    reasons = reasons_of([{"regimen": "", "drug_name": "", "date_of_birth": "x"}])
    assert reasons[1].split("; ") == ["Date_Of_Birth is not a valid ccyy-mm-dd date", "Regimen missing",
                                      "Drug_Name missing"]


def test_quarantine_keeps_no_identifiers():
    result = clean([{"regimen": ""}])
    assert not set(IDENTIFYING_COLUMNS) & set(result.quarantine.columns)
    assert "9434765919" not in result.quarantine.to_csv()


def test_one_of_identical_rows_is_kept_and_spaces_do_not_hide_a_duplicate():
    result = clean([{}, {}, {"drug_name": " EPIRUBICIN "}, {"drug_name": "FLUOROURACIL"}])
    assert result.duplicate_rows == 2
    assert result.clean_rows == 2
    assert result.raw_rows == result.clean_rows + result.quarantined_rows + result.duplicate_rows


def test_invalid_nhs_number_falls_back_to_trust_and_local_identifier():
    result = clean([{"nhs_number": "9434765918"}])
    assert result.clean.iloc[0]["patient_key_source"] == "local_patient_identifier"
    dq = result.data_quality.set_index("item")
    assert dq.loc["NHS_Number", "invalid"] == 1


def test_pseudonyms_are_stable_across_trusts_for_nhs_numbers_but_local_ids_are_per_trust():
    a, b = clean([{}], trust="RR8"), clean([{}], trust="RBV")
    assert a.clean["patient_key"].iloc[0] == b.clean["patient_key"].iloc[0]
    a = clean([{"nhs_number": ""}], trust="RR8")
    b = clean([{"nhs_number": ""}], trust="RBV")
    assert a.clean["patient_key"].iloc[0] != b.clean["patient_key"].iloc[0]


def test_another_key_gives_other_pseudonyms_and_short_keys_are_refused():
    other = clean_submission(raw_frame([{}]), trust_code="RR8", submitted_at=SUBMITTED,
                             pseudonymiser=Pseudonymiser(b"z" * 32))
    assert other.clean["patient_key"].iloc[0] != clean([{}]).clean["patient_key"].iloc[0]
    with pytest.raises(PseudonymisationKeyError, match="at least 32 bytes"):
        Pseudonymiser(b"short")


def test_required_items_missing_or_off_their_code_list_are_findings_not_rejections():
    result = clean([{"intent_of_treatment": "7", "person_stated_gender_code": "", "clinical_trial": "2",
                     "cycle_number": "one", "comorbidity_adjustment": "y"}])
    assert result.clean_rows == 1
    dq = result.data_quality.set_index("item")
    assert dq.loc["Intent_Of_Treatment", "invalid"] == 1  # '07' is not a code
    assert dq.loc["Person_Stated_Gender_Code", "missing"] == 1
    assert dq.loc["Clinical_Trial", "invalid"] == 0  # '2' is Excel's '02'
    assert dq.loc["Cycle_Number", "invalid"] == 1
    assert dq.loc["Comorbidity_Adjustment", "invalid"] == 0  # case does not matter
    assert result.clean.iloc[0]["clinical_trial"] == "02"
    assert pd.isna(result.clean.iloc[0]["intent_of_treatment"])  # off-list codes are held as unknown
    assert pd.isna(result.clean.iloc[0]["cycle_number"])
    assert result.data_quality_findings == int(result.data_quality[["missing", "invalid"]].to_numpy().sum())


def test_typed_columns():
    row = clean([{}]).clean.iloc[0]
    assert row["administration_date"] == pd.Timestamp("2024-01-08")
    assert row["cycle_number"] == 1
    assert row["weight_at_start_of_regimen"] == pytest.approx(70.5)


def test_a_file_of_only_bad_rows_is_fully_accounted():
    rows = [{"regimen": ""}] * 3 + [{"nhs_number": "", "local_patient_identifier": "", "drug_name": "X"}]
    result = clean(rows)
    assert (result.clean_rows, result.quarantined_rows, result.duplicate_rows) == (0, 2, 2)
    assert VALID_ROW["regimen"] == "FEC-T"  # the builder's rows are untouched


# The v4 administration date: the calendar date of item 80 as written (never converted to UTC), strictly
# ISO 8601 with an offset; item 81 only where item 80 is empty.
@pytest.mark.parametrize("stamp, date", [
    ("2024-01-08T10:15:00+00:00", "2024-01-08"),
    ("2024-01-08T23:30:00-05:00", "2024-01-08"),  # 04:30 UTC the next day: the local date counts
    ("2024-01-08T00:15:00+01:00", "2024-01-08"),  # 23:15 UTC the day before
    ("2024-01-08T10:15Z", "2024-01-08"),
    ("2024-01-08T10:15:00.250+00:00", "2024-01-08"),
    ("2024-01-08T10:15:00", None),  # no offset
    ("2024-01-08 10:15:00+00:00", None),  # a space, not T
    ("2024-01-08T24:00:00+00:00", None),
    ("2024-01-08T10:60:00+00:00", None),
    ("2024-01-08T10:15:00+15:00", None),
    ("2024-02-30T10:15:00+00:00", None),  # no such day
    ("٢٠٢٤-01-08T10:15:00+00:00", None),  # digits that are not ASCII
    ("2024-01-08T10:15:00+00:00 extra", None),
])
def test_the_v4_administration_date_is_the_local_date_of_item_80(stamp, date):
    frame = raw_frame([{"administration_timestamp_infusion": stamp}], version=V4)
    result = clean_submission(frame, trust_code="RR8", submitted_at=SUBMITTED, pseudonymiser=PSEUDONYMISER,
                              sact_version=V4)
    if date is None:
        assert result.clean_rows == 0
        assert result.quarantine["reasons"].iloc[0].startswith(
            "Administration_Timestamp_(Infusion) is not an ISO 8601 timestamp with an offset")
    else:
        assert result.clean["administration_date"].tolist() == [pd.Timestamp(date)]
