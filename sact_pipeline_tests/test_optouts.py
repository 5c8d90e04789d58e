"""Registration opt-outs in the domain core: reading opt-out files, and removing opted-out rows first."""

from datetime import datetime

import pandas as pd
import pytest

from sact_pipeline.domain.cleaning import clean_submission
from sact_pipeline.domain.optouts import OptOutFileRejected, read_optout_file
from sact_pipeline.domain.pseudonymise import Pseudonymiser
from sact_pipeline_tests.builders import raw_frame

PSEUDONYMISER = Pseudonymiser(b"o" * 32)
OPTED = "9434765919"
OTHER = "4010232137"


def test_an_optout_file_is_read_with_any_spacing_and_case_and_invalid_rows_are_named_not_shown():
    data = ("nhs_number , note\n 943 476 5919 ,a\n401-023-2137,b\n9434765918,c\n\n,d\n4444444444,e\n"
            .encode("utf-8"))
    listed = read_optout_file("optouts_2024-03.csv", data)
    assert listed.nhs_numbers.tolist() == [OPTED, OTHER]
    assert listed.invalid_rows == (3, 4, 5)  # checksum fails, empty, repeated digits (the blank line is skipped)
    assert listed.note == "rows 3, 4, 5 hold no valid NHS number (Modulus 11) and were not applied"
    assert "9434765918" not in listed.note


def test_an_optout_file_in_windows_1252_with_a_bom_and_a_single_column_is_read():
    assert read_optout_file("a.csv", "\ufeffNHS_Number\r\n9434765919\r\n".encode("utf-8")).nhs_numbers.tolist() == [OPTED]
    assert read_optout_file("b.csv", "NHS_Number,Name\r\n9434765919,Siân\r\n".encode("cp1252")).nhs_numbers.tolist() == [OPTED]


@pytest.mark.parametrize("data, reason", [
    (b"", "the file is empty"),
    (b"NHS No\n9434765919\n", "no NHS_Number column"),
    (b"N\x00H\x00S\x00", "NUL bytes"),
])
def test_an_unreadable_optout_file_is_rejected_with_its_reason(data, reason):
    with pytest.raises(OptOutFileRejected) as error:
        read_optout_file("optouts.csv", data)
    assert reason in error.value.reason and error.value.file_name == "optouts.csv"


def test_pseudonyms_of_an_optout_list_match_the_clean_layers_patient_keys():
    listed = read_optout_file("o.csv", b"NHS_Number\n9434765919\n943 476 5919\n")
    keys = listed.pseudonyms(PSEUDONYMISER)
    assert len(keys) == 1  # one patient, listed twice
    cleaned = clean_submission(raw_frame([{}]), trust_code="RR8", submitted_at=datetime(2024, 2, 10),
                               pseudonymiser=PSEUDONYMISER)
    assert cleaned.clean["patient_key"].tolist() == keys.tolist()


def test_rows_of_an_opted_out_patient_are_removed_first_and_every_row_is_still_accounted_for():
    opted = frozenset(read_optout_file("o.csv", f"NHS_Number\n{OPTED}\n".encode()).pseudonyms(PSEUDONYMISER))
    other = {"nhs_number": OTHER, "local_patient_identifier": "L0002"}
    rows = [
        {},  # opted out (NHS number 9434765919, local identifier L0001)
        {},  # opted out (and a duplicate of the row before: counted once, as opted out)
        {"nhs_number": "943 476 5919", "regimen": ""},  # opted out, although it would be quarantined
        other,  # clean
        other,  # duplicate
        {**other, "regimen": ""},  # quarantined
        {"nhs_number": "9434765918", "local_patient_identifier": "L0003"},  # invalid NHS number: kept by local id
        {"nhs_number": "", "drug_name": "PACLITAXEL"},  # no NHS number, but L0001: the opted-out patient
        {"nhs_number": "9434765918", "drug_name": "DOCETAXEL"},  # a mistyped NHS number, L0001: them too
    ]
    result = clean_submission(raw_frame(rows), trust_code="RR8", submitted_at=datetime(2024, 2, 10),
                              pseudonymiser=PSEUDONYMISER, opted_out=opted)
    assert result.opted_out_rows == 5
    assert (result.clean_rows, result.quarantined_rows, result.duplicate_rows) == (2, 1, 1)
    assert result.raw_rows == result.opted_out_rows + result.clean_rows + result.quarantined_rows + result.duplicate_rows
    assert result.clean["row_number"].tolist() == [4, 7] and result.quarantine["row_number"].tolist() == [6]
    kept_keys = set(result.clean["patient_key"]) | set(result.quarantine["patient_key"])
    assert not kept_keys & opted
    without = clean_submission(raw_frame(rows), trust_code="RR8", submitted_at=datetime(2024, 2, 10),
                               pseudonymiser=PSEUDONYMISER)
    assert without.opted_out_rows == 0 and without.clean_rows + without.quarantined_rows == 7


def test_without_optouts_nothing_is_removed():
    result = clean_submission(raw_frame([{}, {"nhs_number": OTHER}]), trust_code="RR8",
                              submitted_at=datetime(2024, 2, 10), pseudonymiser=PSEUDONYMISER)
    assert result.opted_out_rows == 0 and result.clean_rows == 2
    assert pd.api.types.is_integer_dtype(result.clean["row_number"])
