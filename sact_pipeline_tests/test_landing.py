"""Landing zone: file names, organisations, encodings and the reasons a file is rejected."""

from datetime import date, datetime

import pytest

from sact_pipeline.domain.landing import SubmissionRejected, find_candidate_files, parse_file_name, read_submission
from sact_pipeline.domain.organisations import OrganisationRegister
from sact_pipeline_tests.builders import HEADERS, write_submission

TODAY = date(2024, 6, 15)
ORGANISATIONS = OrganisationRegister.from_ods_etr()


def read(path, landing):
    return read_submission(path, landing, ORGANISATIONS, first_month="2023-01", today=TODAY)


def rejection(path, landing) -> str:
    with pytest.raises(SubmissionRejected) as caught:
        read(path, landing)
    assert path.name in str(caught.value)  # the message names the file
    return caught.value.reason


def test_file_name_parts():
    name = parse_file_name("SACT_RR8_202401_20240210093000.csv", first_month="2023-01", today=TODAY)
    assert (name.org_code, name.reporting_month, name.submitted_at) == ("RR8", "2024-01", datetime(2024, 2, 10, 9, 30))


@pytest.mark.parametrize("file_name, reason", [
    ("RR8_202401.csv", "file name does not follow"),
    ("SACT_RR8_202413_20240210093000.csv", "impossible reporting month"),
    ("SACT_RR8_202201_20240210093000.csv", "before the first month"),
    ("SACT_RR8_202406_20240610093000.csv", "has not ended yet"),
    ("SACT_RR8_202401_20250210093000.csv", "in the future"),
])
def test_bad_names_are_rejected_with_the_reason(file_name, reason):
    with pytest.raises(SubmissionRejected, match=reason):
        parse_file_name(file_name, first_month="2023-01", today=TODAY)


@pytest.mark.parametrize("encoding, newline, bom", [("utf-8", "\n", False), ("utf-8", "\r\n", True),
                                                     ("cp1252", "\r\n", False)])
def test_encodings_and_line_ends_read_the_same(tmp_path, encoding, newline, bom):
    path = write_submission(tmp_path / "SACT_RR8_202401_20240210093000.csv",
                            [{"person_given_name": "Zoë"}, {"regimen": "R, CHOP"}], encoding=encoding, newline=newline)
    if bom:
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    submission, frame = read(path, tmp_path)
    assert submission.encoding == ("utf-8-sig" if bom else encoding)
    assert submission.trust_code == "RR8" and submission.data_rows == 2 and submission.header_version == "v3"
    assert frame["person_given_name"].tolist() == ["Zoë", "Siân"]
    assert frame["regimen"].tolist() == ["FEC-T", "R, CHOP"]
    assert frame["row_number"].tolist() == [1, 2]
    assert len(submission.sha256) == 64


def test_windows_1252_with_a_byte_order_mark(tmp_path):
    path = write_submission(tmp_path / "SACT_RR8_202401_20240210093000.csv", [{"person_given_name": "Renée"}],
                            encoding="cp1252", newline="\r\n")
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    submission, frame = read(path, tmp_path)
    assert submission.encoding == "cp1252"
    assert frame.loc[0, "person_given_name"] == "Renée"


def test_headers_match_case_insensitively_in_any_order_and_extras_are_noted(tmp_path):
    headers = [h.upper() for h in reversed(HEADERS)] + ["Local_Notes"]
    path = write_submission(tmp_path / "SACT_RR801_202401_20240210093000.csv", [{}], headers=headers)
    submission, frame = read(path, tmp_path)
    assert submission.org_code == "RR801" and submission.trust_code == "RR8"  # a site code resolves to its trust
    assert submission.ignored_columns == ("Local_Notes",)
    assert frame.loc[0, "drug_name"] == "EPIRUBICIN"


def test_five_character_trust_codes_are_trusts_not_their_first_three_letters(tmp_path):
    path = write_submission(tmp_path / "SACT_G6V2S_202401_20240210093000.csv", [{}])
    assert read(path, tmp_path)[0].trust_code == "G6V2S"


def test_welsh_health_boards_are_known_organisations():
    assert ORGANISATIONS.resolve_trust("7A4").country == "Wales"
    assert ORGANISATIONS.resolve_trust("RQF").country == "Wales"
    assert ORGANISATIONS.resolve_trust("RR8").is_english


def test_unknown_organisation(tmp_path):
    path = write_submission(tmp_path / "SACT_ZZZ_202401_20240210093000.csv", [{}])
    assert "unknown organisation ZZZ" in rejection(path, tmp_path)


def test_missing_mandatory_columns_are_named(tmp_path):
    headers = [h for h in HEADERS if h not in ("Regimen", "Drug_Name")]
    path = write_submission(tmp_path / "SACT_RR8_202401_20240210093000.csv", [{}], headers=headers)
    assert rejection(path, tmp_path) == "missing mandatory columns: Regimen, Drug_Name (the header is closest to SACT v3)"


def test_missing_required_column_is_read_as_empty(tmp_path):
    headers = [h for h in HEADERS if h != "Clinical_Trial"]
    path = write_submission(tmp_path / "SACT_RR8_202401_20240210093000.csv", [{}], headers=headers)
    _, frame = read(path, tmp_path)
    assert frame.loc[0, "clinical_trial"] == ""


def test_empty_files_and_header_only_files(tmp_path):
    empty = tmp_path / "SACT_RR8_202401_20240210093000.csv"
    empty.write_bytes(b"")
    assert "empty file" in rejection(empty, tmp_path)
    header_only = write_submission(tmp_path / "SACT_RR8_202401_20240211093000.csv", [])
    assert rejection(header_only, tmp_path) == "no data rows after the header"


def test_a_row_with_the_wrong_number_of_fields_is_named_without_quoting_it(tmp_path):
    path = write_submission(tmp_path / "SACT_RR8_202401_20240210093000.csv", [{}, {}, {}])
    lines = path.read_text().splitlines()
    lines[2] += ",9434765919"
    path.write_text("\n".join(lines) + "\n")
    reason = rejection(path, tmp_path)
    assert reason == "row 2 has 45 fields where the header has 44"
    assert "9434765919" not in reason


def test_unreadable_encoding(tmp_path):
    path = tmp_path / "SACT_RR8_202401_20240210093000.csv"
    path.write_bytes(",".join(HEADERS).encode("utf-16-le"))  # UTF-16 without its byte order mark
    assert "unreadable encoding" in rejection(path, tmp_path)


def test_incomplete_and_hidden_files_are_not_candidates(tmp_path):
    for name in ("SACT_RR8_202401_20240210093000.csv", "SACT_RR8_202401_20240210093001.csv.part",
                 "x.tmp", ".DS_Store"):
        (tmp_path / "sub" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "sub" / name).write_text("x")
    assert [p.name for p in find_candidate_files(tmp_path)] == ["SACT_RR8_202401_20240210093000.csv"]
