"""Every bad input answered: one table of the files trusts really send, each with its deliberate outcome.

Each case is bytes written under a file name in a real landing zone, then read and cleaned as the
pipeline does: (a) the file is rejected with a reason that names what is wrong, (b) it is parsed and
rows are quarantined with a reason, or (c) it is parsed correctly. Every parsed row is accounted for:
raw rows = clean + quarantined + duplicates. The README table "Bad inputs, and what happens to them"
is this table in words.
"""

from __future__ import annotations

import gzip
import io
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

import pandas as pd
import pytest

from sact_pipeline.cli import refresh
from sact_pipeline.domain.cleaning import CleanedSubmission, clean_submission
from sact_pipeline.domain.landing import SubmissionFile, SubmissionRejected, read_submission, sha256_of
from sact_pipeline.domain.organisations import OrganisationRegister
from sact_pipeline.domain.pseudonymise import Pseudonymiser
from sact_pipeline.domain.spec import SACT, V3, V4, normalise_header
from sact_pipeline.synthetic import generate_submissions
from sact_pipeline.layers import Pipeline
from sact_pipeline.settings import Settings
from sact_pipeline.warehouse import Warehouse
from sact_pipeline.tables import clean_activity, clean_file_versions, rejected_files, submission_files
from sact_pipeline_tests.builders import HEADERS, V4_HEADERS, VALID_ROW, VALID_V4_ROW, write_submission

TODAY = date(2024, 6, 15)
NAME = "SACT_RR8_202401_20240210093000.csv"
ORGANISATIONS = OrganisationRegister.from_ods_etr()
PSEUDONYMISER = Pseudonymiser(b"x" * 40)
TWO_ROWS = [{"cycle_number": "1"}, {"cycle_number": "2", "administration_date": "2024-01-29",
                                    "start_date_of_cycle": "2024-01-29"}]
NAMES = [{"person_given_name": "Siân", "person_family_name": "O’Neill"}, {"cycle_number": "2"}]


def csv_text(rows: list[dict], *, headers: list[str] | None = None, sep: str = ",", newline: str = "\r\n",
             version: str = V3) -> str:
    """A submission as text: the header, then one line per row (the version's valid row with the row's
    overrides; 'x' in a column that is not an item of the version)."""
    headers = headers or (HEADERS if version == V3 else V4_HEADERS)
    by_header = SACT.version(version).header_map
    columns = [by_header[normalise_header(h)].name if normalise_header(h) in by_header else None for h in headers]
    valid = VALID_ROW if version == V3 else VALID_V4_ROW
    lines = [sep.join(headers)]
    for row in rows:
        values = {**valid, **row}
        lines.append(sep.join(_quote(values[c] if c else "x", sep) for c in columns))
    return newline.join(lines) + newline


def _quote(value: str, sep: str) -> str:
    return '"' + value.replace('"', '""') + '"' if any(c in value for c in (sep, '"', "\n", "\r")) else value


def utf8(rows=TWO_ROWS, **options) -> bytes:
    return csv_text(rows, **options).encode("utf-8")


# SACT v4 (from April 2026): the same two administrations, in a May 2026 file read in July 2026.
V4_NAME, V4_TODAY = "SACT_RR8_202605_20260610093000.csv", date(2026, 7, 15)
V4_ROWS = [{"cycle_number": "1", "start_date_of_regimen": "2026-05-04", "start_date_of_cycle": "2026-05-04",
            "date_decision_to_treat": "2026-04-28", "administration_timestamp_infusion": "2026-05-04T10:15:00+01:00"},
           {"cycle_number": "2", "start_date_of_regimen": "2026-05-04", "start_date_of_cycle": "2026-05-25",
            "date_decision_to_treat": "2026-04-28", "administration_timestamp_infusion": "2026-05-25T23:40:00+01:00"}]


def v4(rows=None, *, changes: dict | None = None, **options) -> bytes:
    """A v4 file of V4_ROWS; `changes` overrides items of the second row."""
    rows = rows or [V4_ROWS[0], {**V4_ROWS[1], **(changes or {})}]
    return csv_text(rows, version=V4, **options).encode("utf-8")


def v4_without(*headers: str) -> list[str]:
    return [h for h in V4_HEADERS if h not in headers]


def v3_in(month: str, today: date) -> Callable[[], bytes]:
    """A v3 file of two administrations in `month` (YYYY-MM)."""
    day = f"{month}-04"
    return lambda: utf8([{"start_date_of_regimen": day, "start_date_of_cycle": day, "administration_date": day,
                          "date_decision_to_treat": f"{month}-01"}, {"cycle_number": "2", "start_date_of_regimen": day,
                          "start_date_of_cycle": day, "administration_date": day, "date_decision_to_treat": f"{month}-01",
                          "drug_name": "CYCLOPHOSPHAMIDE"}])


def cut_mid_row(rows=TWO_ROWS) -> bytes:
    data = utf8(rows)
    return data[:data.rindex(b"C50.9") + 3]  # a copy interrupted inside the last row


def with_quote_never_closed() -> bytes:
    lines = csv_text([{}, {"cycle_number": "2"}, {"cycle_number": "3"}]).split("\r\n")
    lines[2] = lines[2].replace("FEC-T", '"FEC-T')  # opened in the second row, never closed
    return "\r\n".join(lines).encode("utf-8")


def xlsx() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/worksheets/sheet1.xml", csv_text(TWO_ROWS))
    return buffer.getvalue()


def other_bytes_then_row(insert: bytes) -> bytes:
    data = utf8()
    middle = data.index(b"FEC-T")
    return data[:middle] + insert + data[middle:]


@dataclass(frozen=True)
class Case:
    id: str
    data: Callable[[], bytes]
    name: str = NAME
    rejected: str | None = None  # (a): a substring of SubmissionRejected.reason
    rows: int | None = None  # (b), (c): raw data rows
    clean: int | None = None
    quarantined: tuple[str, int] | None = None  # (b): reason substring, rows with it
    duplicates: int = 0
    values: dict[str, list[str]] = field(default_factory=dict)  # raw items as read, per row
    encoding: str | None = None
    finding: tuple[str, str, int] | None = None  # (item, finding substring, rows): a data-quality finding
    check: Callable[[SubmissionFile, pd.DataFrame, CleanedSubmission], None] | None = None
    today: date = TODAY
    version: str = V3  # the version the file is read as (parsed cases)


def ignored(expected: tuple[str, ...]):
    def check(submission, frame, cleaned):
        assert submission.ignored_columns == expected
    return check


def trust_is(code: str):
    def check(submission, frame, cleaned):
        assert submission.trust_code == code and set(cleaned.clean["organisation_identifier_code_of_provider"]) == {code}
    return check


def clean_dates(*dates: str):
    def check(submission, frame, cleaned):
        assert [f"{d:%Y-%m-%d}" for d in cleaned.clean["administration_date"]] == list(dates)
    return check


def missing_finding(item: str, rows: int):
    """A required item left empty: kept, and counted as missing (completeness), not quarantined."""
    def check(submission, frame, cleaned):
        quality = cleaned.item_quality.set_index("item").loc[item]
        assert (int(quality["rows"]) - int(quality["present"]), quality["obligation"]) == (rows, "R")
        assert cleaned.data_quality.set_index("item").loc[item, "missing"] == rows
    return check


def file_finding(text: str | None):
    """The file's version is (or is not) a finding about the whole file: row 0, kept."""
    def check(submission, frame, cleaned):
        found = cleaned.findings.loc[cleaned.findings["kind"] == "file"]
        if text is None:
            assert found.empty
        else:
            assert found[["row_number", "item", "finding", "quarantined"]].values.tolist() == [
                [0, "SACT version", text, False]]
    return check


REORDERED = list(reversed(HEADERS))
MESSY_HEADERS = [f"  {h.upper()} " if i % 2 else h.lower().replace("_", "_ ", 1) for i, h in enumerate(HEADERS)]
WITHOUT_DRUG_NAME = [h for h in HEADERS if h != "Drug_Name"]
TWICE = HEADERS + ["NHS_Number"]
LONG_REGIMEN = "R" * 10_000

CASES = [
    # --- (a) rejected: the file cannot be used; it stays in the landing zone with its reason -------------
    Case("zero-byte file", lambda: b"", rejected="empty file: no header row"),
    Case("header only", lambda: utf8([]), rejected="no data rows after the header"),
    Case("UTF-16 without a byte order mark", lambda: csv_text(TWO_ROWS).encode("utf-16-le"),
         rejected="NUL bytes (first at byte offset 1; binary, or UTF-16 without a byte order mark?)"),
    Case("neither UTF-8 nor Windows-1252", lambda: other_bytes_then_row(b"\x81\x8d"),
         rejected="unreadable encoding: neither UTF-8 nor Windows-1252"),
    Case("NUL bytes inside a row", lambda: other_bytes_then_row(b"\x00"), rejected="the file holds NUL bytes"),
    Case("binary file named .csv", lambda: bytes(range(256)) * 8, rejected="NUL bytes (first at byte offset 0"),
    Case("gzip-compressed CSV", lambda: gzip.compress(utf8()),
         rejected="not a CSV file: gzip-compressed: unzip it and send the .csv"),
    Case("Excel workbook (.xlsx) named .csv", xlsx, rejected="Excel workbook (.xlsx): send the sheet saved as CSV"),
    Case("missing mandatory column", lambda: utf8(headers=WITHOUT_DRUG_NAME),
         rejected="missing mandatory columns: Drug_Name (the header is closest to SACT v3)"),
    Case("header of another data set", lambda: b"patient,drug,dose\r\n1,2,3\r\n",
         rejected="header not recognised as SACT v3 or v4"),
    Case("duplicated column", lambda: utf8(headers=TWICE), rejected="column NHS_Number appears twice in the header"),
    Case("unbalanced quotes", with_quote_never_closed,
         rejected="unbalanced double quotes in the record starting on line 3"),
    Case("truncated last line", cut_mid_row, rejected="row 2 has 12 fields where the header has 44"),
    Case("a row with an extra field", lambda: utf8().replace(b"FEC-T,", b"FEC-T,extra,", 1),
         rejected="row 1 has 45 fields where the header has 44"),
    Case("unknown organisation in the file name", lambda: utf8(), name="SACT_ZZZ_202401_20240210093000.csv",
         rejected="unknown organisation ZZZ"),
    Case("reporting month in the future", lambda: utf8(), name="SACT_RR8_202409_20240610093000.csv",
         rejected="reporting month 2024-09 has not ended yet"),
    Case("submission timestamp in the future", lambda: utf8(), name="SACT_RR8_202401_20250210093000.csv",
         rejected="in the future"),
    Case("file name not matching the pattern", lambda: utf8(), name="RR8 SACT January 2024.csv",
         rejected="file name does not follow SACT_<ORG>_<YYYYMM>_<YYYYMMDDHHMMSS>.csv"),
    Case("file name with a month that does not exist", lambda: utf8(), name="SACT_RR8_202413_20240210093000.csv",
         rejected="impossible reporting month"),
    # --- (b) parsed, rows quarantined with the reason ------------------------------------------------------
    Case("dates as dd/mm/yyyy", lambda: utf8([{}, {"cycle_number": "2", "administration_date": "29/01/2024"}]),
         rows=2, clean=1, quarantined=("Administration_Date is not a valid ccyy-mm-dd date", 1)),
    Case("dates as Excel serial numbers", lambda: utf8([{"administration_date": "45299", "start_date_of_cycle": "45299"},
                                                        {"cycle_number": "2", "administration_date": "45320"}]),
         rows=2, clean=0, quarantined=("Administration_Date is not a valid ccyy-mm-dd date", 2)),
    Case("mandatory item empty", lambda: utf8([{}, {"cycle_number": "2", "drug_name": ""}]),
         rows=2, clean=1, quarantined=("Drug_Name missing", 1)),
    # --- (c) parsed correctly ------------------------------------------------------------------------------
    Case("UTF-16 LE with a byte order mark", lambda: b"\xff\xfe" + csv_text(NAMES).encode("utf-16-le"),
         rows=2, clean=2, encoding="utf-16", values={"person_given_name": ["Siân", "Siân"],
                                                     "person_family_name": ["O’Neill", "Ó Briain"]}),
    Case("UTF-16 BE with a byte order mark", lambda: b"\xfe\xff" + csv_text(NAMES).encode("utf-16-be"),
         rows=2, clean=2, encoding="utf-16", values={"person_family_name": ["O’Neill", "Ó Briain"]}),
    Case("Excel 'Unicode text' (UTF-16 LE with a BOM, tab-delimited)",
         lambda: "\ufeff".encode("utf-16-le") + csv_text(NAMES, sep="\t").encode("utf-16-le"),
         rows=2, clean=2, encoding="utf-16", values={"person_given_name": ["Siân", "Siân"]}),
    Case("Windows-1252 names", lambda: csv_text(NAMES).encode("cp1252"), rows=2, clean=2, encoding="cp1252",
         values={"person_given_name": ["Siân", "Siân"], "person_family_name": ["O’Neill", "Ó Briain"]}),
    Case("UTF-8 names without a BOM", lambda: utf8(NAMES), rows=2, clean=2, encoding="utf-8",
         values={"person_family_name": ["O’Neill", "Ó Briain"]}),
    Case("UTF-8 names with a BOM", lambda: b"\xef\xbb\xbf" + utf8(NAMES), rows=2, clean=2, encoding="utf-8-sig",
         values={"person_family_name": ["O’Neill", "Ó Briain"]}),
    Case("semicolon-delimited", lambda: utf8([{"regimen": "R, CHOP"}, {"cycle_number": "2"}], sep=";"),
         rows=2, clean=2, values={"regimen": ["R, CHOP", "FEC-T"], "cycle_number": ["1", "2"]}),
    Case("tab-delimited", lambda: utf8([{"regimen": "R, CHOP"}, {"cycle_number": "2"}], sep="\t", newline="\n"),
         rows=2, clean=2, values={"regimen": ["R, CHOP", "FEC-T"], "drug_name": ["EPIRUBICIN"] * 2}),
    # Found by the fuzzer (test_fuzzing.py): a lone CR in the header line raised csv.Error.
    Case("old Mac line ends (CR only)", lambda: utf8([{}, {"cycle_number": "2"}], newline="\r"), rows=2, clean=2,
         values={"cycle_number": ["1", "2"]}),
    Case("a stray CR and a control byte instead of a header", lambda: b"\r\x01", rejected="empty file: no header row"),
    Case("reordered columns", lambda: utf8(headers=REORDERED), rows=2, clean=2,
         values={"cycle_number": ["1", "2"], "nhs_number": ["9434765919"] * 2}),
    Case("extra columns", lambda: utf8(headers=HEADERS[:5] + ["Ward"] + HEADERS[5:] + ["Local_Notes"]),
         rows=2, clean=2, values={"cycle_number": ["1", "2"]}, check=ignored(("Ward", "Local_Notes"))),
    Case("header names in other case and with spaces", lambda: utf8(headers=MESSY_HEADERS), rows=2, clean=2,
         values={"drug_name": ["EPIRUBICIN"] * 2, "cycle_number": ["1", "2"]}, check=ignored(())),
    Case("quoted fields with embedded newlines", lambda: utf8([{"regimen": "FEC-T\r\nweek 2"},
                                                               {"cycle_number": "2", "regimen": 'AC "dose-dense"\nx'}]),
         rows=2, clean=2, values={"regimen": ["FEC-T\r\nweek 2", 'AC "dose-dense"\nx']}),
    Case("a quote inside an unquoted field is text", lambda: utf8([{}]).replace(b"FEC-T", b'FEC"T'),
         rows=1, clean=1, values={"regimen": ['FEC"T']}),
    Case("blank lines are skipped", lambda: utf8().replace(b"\r\n", b"\r\n\r\n", 2), rows=2, clean=2),
    Case("identical rows", lambda: utf8([{}, {}, {"cycle_number": "2"}]), rows=3, clean=2, duplicates=1),
    Case("numbers with thousands separators", lambda: utf8([{"actual_dose_per_administration": "1,500"},
                                                            {"cycle_number": "2"}]),
         rows=2, clean=2, values={"actual_dose_per_administration": ["1,500", "150"]},
         finding=("Actual_Dose_Per_Administration", "Actual_Dose_Per_Administration is not a number", 1)),
    Case("a 10,000-character field", lambda: utf8([{"regimen": LONG_REGIMEN}, {"cycle_number": "2"}]),
         rows=2, clean=2, values={"regimen": [LONG_REGIMEN, "FEC-T"]},
         finding=("Regimen", "Regimen is not at most 150 characters", 1)),
    Case("unknown organisation code in a row", lambda: utf8([{"organisation_identifier_code_of_provider": "ZZ9"},
                                                            {"cycle_number": "2"}]),
         rows=2, clean=2, finding=("Organisation_Identifier_(Code_Of_Provider)",
                                   "Organisation_Identifier_(Code_Of_Provider) is not an organisation code known", 1)),
    Case("Welsh organisation (RQF)", lambda: utf8([{"organisation_identifier_code_of_provider": "RQF",
                                                    "organisation_identifier_of_sact_administration": "RQF",
                                                    "cycle_number": n} for n in "12"]),
         name="SACT_RQF_202401_20240210093000.csv", rows=2, clean=2, check=trust_is("RQF")),
    # --- SACT v4 ---------------------------------------------------------------------------------------------
    Case("v4 file", v4, name=V4_NAME, today=V4_TODAY, version=V4, rows=2, clean=2,
         check=clean_dates("2026-05-04", "2026-05-25")),  # 23:40 BST is still the 25th: as written, not UTC
    Case("v4 oral dispensing date instead of a timestamp", lambda: v4(changes={
        "administration_timestamp_infusion": "", "administration_date_oral_drug_dispensed": "2026-05-26",
        "sact_administration_route": "02", "cycle_length_in_days": "21", "number_of_cycles_dispensed": "3"}),
         name=V4_NAME, today=V4_TODAY, version=V4, rows=2, clean=2, check=clean_dates("2026-05-04", "2026-05-26")),
    Case("v4 header missing both item 80 and 81 columns",
         lambda: v4(headers=v4_without("Administration_Timestamp_(Infusion)", "Administration_Date_(Oral_Drug_Dispensed)")),
         name=V4_NAME, today=V4_TODAY, rejected="missing mandatory columns: Administration_Timestamp_(Infusion) or "
                                                "Administration_Date_(Oral_Drug_Dispensed) (the header is closest to SACT v4)"),
    Case("v4 header missing Cycle_Number", lambda: v4(headers=v4_without("Cycle_Number")), name=V4_NAME,
         today=V4_TODAY, rejected="missing mandatory columns: Cycle_Number (the header is closest to SACT v4)"),
    Case("v4 header with one of item 80 and 81", lambda: v4(headers=v4_without("Administration_Date_(Oral_Drug_Dispensed)")),
         name=V4_NAME, today=V4_TODAY, version=V4, rows=2, clean=2),
    Case("v4 row with both item 80 and 81 empty", lambda: v4(changes={"administration_timestamp_infusion": ""}),
         name=V4_NAME, today=V4_TODAY, version=V4, rows=2, clean=1, quarantined=(
             "Administration_Timestamp_(Infusion) and Administration_Date_(Oral_Drug_Dispensed) both missing", 1)),
    Case("v4 timestamp without an offset", lambda: v4(changes={"administration_timestamp_infusion": "2026-05-25T10:15:00"}),
         name=V4_NAME, today=V4_TODAY, version=V4, rows=2, clean=1, quarantined=(
             "Administration_Timestamp_(Infusion) is not an ISO 8601 timestamp with an offset", 1)),
    Case("v4 timestamp with an impossible time",
         lambda: v4(changes={"administration_timestamp_infusion": "2026-05-25T25:15:00+01:00"}),
         name=V4_NAME, today=V4_TODAY, version=V4, rows=2, clean=1, quarantined=(
             "Administration_Timestamp_(Infusion) is not an ISO 8601 timestamp with an offset", 1)),
    Case("v4 timestamp not valid beside a valid item 81", lambda: v4(changes={
        "administration_timestamp_infusion": "25/05/2026 10:15", "administration_date_oral_drug_dispensed": "2026-05-25"}),
         name=V4_NAME, today=V4_TODAY, version=V4, rows=2, clean=1, quarantined=(
             "Administration_Timestamp_(Infusion) is not an ISO 8601 timestamp", 1)),  # no silent fall-back
    Case("v4 item 81 not a valid date", lambda: v4(changes={
        "administration_timestamp_infusion": "", "administration_date_oral_drug_dispensed": "2026-05-32"}),
         name=V4_NAME, today=V4_TODAY, version=V4, rows=2, clean=1, quarantined=(
             "Administration_Date_(Oral_Drug_Dispensed) is not a valid ccyy-mm-dd date", 1)),
    Case("v4 item 80 and a different date in item 81", lambda: v4(changes={
        "administration_date_oral_drug_dispensed": "2026-05-20"}),
         name=V4_NAME, today=V4_TODAY, version=V4, rows=2, clean=2, check=clean_dates("2026-05-04", "2026-05-25"),
         finding=("Administration_Date_(Oral_Drug_Dispensed)", "differs from the date of "
                  "Administration_Timestamp_(Infusion), which is used", 1)),
    Case("v4 header with a v3-only column added", lambda: v4(headers=V4_HEADERS + ["Administration_Date"]),
         name=V4_NAME, today=V4_TODAY, version=V4, rows=2, clean=2, check=ignored(("Administration_Date",))),
    Case("v4 file for 2025-12", lambda: v4(), name="SACT_RR8_202512_20260110093000.csv", today=V4_TODAY,
         rejected="a SACT v4 file for reporting month 2025-12, before v4 was accepted (2026-04"),
    Case("Cycle_Number empty in v4", lambda: v4(changes={"cycle_number": ""}), name=V4_NAME, today=V4_TODAY,
         version=V4, rows=2, clean=1, quarantined=("Cycle_Number missing", 1)),
    Case("Cycle_Number not a whole number in v4", lambda: v4(changes={"cycle_number": "2a"}), name=V4_NAME,
         today=V4_TODAY, version=V4, rows=2, clean=1, quarantined=("Cycle_Number is not a whole number", 1)),
    Case("Cycle_Number empty in v3", lambda: utf8([{}, {"cycle_number": "", "drug_name": "CYCLOPHOSPHAMIDE"}]),
         rows=2, clean=2, check=missing_finding("Cycle_Number", 1)),
    Case("a new v4 item not in its format", lambda: v4(changes={"curative_line_of_treatment": "first"}),
         name=V4_NAME, today=V4_TODAY, version=V4, rows=2, clean=2,
         finding=("Curative_Line_Of_Treatment", "Curative_Line_Of_Treatment is not a whole number", 1)),
    Case("v4 header aliases (Person_Birth_Date, Primary_Diagnosis_(ICD-10))", lambda: v4(headers=[
        {"Date_Of_Birth": "Person_Birth_Date", "Primary_Diagnosis": "Primary_Diagnosis_(ICD-10)"}.get(h, h)
        for h in V4_HEADERS]), name=V4_NAME, today=V4_TODAY, version=V4, rows=2, clean=2, check=ignored(())),
    Case("v3 file after full v4 conformance", v3_in("2026-08", date(2026, 9, 20)),
         name="SACT_RR8_202608_20260910093000.csv", today=date(2026, 9, 20), rows=2, clean=2,
         check=file_finding("v3 after full v4 conformance (v4 only from 2026-07)")),
    Case("v3 file in the transition months", v3_in("2026-05", V4_TODAY), name=V4_NAME, today=V4_TODAY, rows=2,
         clean=2, check=file_finding(None)),
]


def outcome(tmp_path, case: Case):
    path = tmp_path / case.name
    path.write_bytes(case.data())
    try:
        submission, frame = read_submission(path, tmp_path, ORGANISATIONS, first_month="2023-01", today=case.today)
    except SubmissionRejected as rejection:
        assert path.name in str(rejection)  # the message names the file
        return rejection, None, None
    cleaned = clean_submission(frame, trust_code=submission.trust_code, submitted_at=submission.submitted_at,
                               pseudonymiser=PSEUDONYMISER, reporting_month=submission.reporting_month,
                               trust_of=_trust_of, sact_version=submission.header_version)
    return submission, frame, cleaned


def _trust_of(code: str) -> str | None:
    organisation = ORGANISATIONS.resolve_trust(code)
    return organisation.code if organisation is not None else None


def test_the_table_has_every_kind_of_bad_input():
    assert len(CASES) >= 25 and len({c.id for c in CASES}) == len(CASES)
    assert sum(c.rejected is not None for c in CASES) >= 10 and sum(c.quarantined is not None for c in CASES) >= 2


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_every_bad_input_has_its_outcome(tmp_path, case):
    submission, frame, cleaned = outcome(tmp_path, case)
    if case.rejected is not None:
        assert isinstance(submission, SubmissionRejected), f"parsed, expected a rejection: {case.rejected}"
        assert case.rejected in submission.reason
        assert "9434765919" not in submission.reason and "Siân" not in submission.reason  # never row contents
        return
    assert isinstance(submission, SubmissionFile), f"rejected: {getattr(submission, 'reason', '')}"
    assert submission.header_version == case.version
    # Every row is accounted for.
    assert submission.data_rows == len(frame) == cleaned.raw_rows == case.rows
    assert cleaned.raw_rows == cleaned.clean_rows + cleaned.quarantined_rows + cleaned.duplicate_rows
    assert (cleaned.clean_rows, cleaned.duplicate_rows) == (case.clean, case.duplicates)
    assert frame["row_number"].tolist() == list(range(1, case.rows + 1))
    if case.quarantined is not None:
        reason, count = case.quarantined
        assert cleaned.quarantine["reasons"].str.contains(reason, regex=False).sum() == count
    else:
        assert cleaned.quarantined_rows == 0, cleaned.quarantine["reasons"].tolist()
    if case.encoding is not None:
        assert submission.encoding == case.encoding
    for column, values in case.values.items():
        assert frame[column].tolist() == values, column
    if case.finding is not None:
        item, text, count = case.finding
        found = cleaned.findings.loc[(cleaned.findings["item"] == item) & (cleaned.findings["kind"] == "invalid")]
        assert found["finding"].str.contains(text, regex=False).sum() == count, found["finding"].tolist()
        assert not found["quarantined"].any()  # counted by data quality, the row kept
        if text.startswith(f"{item} is not"):  # a value that breaks its rule: the item's validity counts it too
            quality = cleaned.item_quality.set_index("item").loc[item]
            assert int(quality["present"]) - int(quality["valid"]) == count
    if case.check is not None:
        case.check(submission, frame, cleaned)


# --- in the landing zone: versions, files still arriving, and a whole refresh ---------------------------

def test_the_same_file_dropped_twice_under_two_names_is_two_versions_and_the_latest_is_used(settings):
    landing = settings.landing_dir
    first = write_submission(landing / "SACT_RR8_202401_20240210093000.csv", TWO_ROWS)
    pipeline = Pipeline(settings, today=date(2024, 6, 1))
    assert pipeline.discover().accepted_new == [first.name]
    pipeline.load_raw("2024-01", "RR8")
    pipeline.clean("2024-01", "RR8")
    again = landing / "resent" / "SACT_RR8_202401_20240212080000.csv"  # dropped again, a later timestamp
    again.parent.mkdir()
    again.write_bytes(first.read_bytes())
    assert pipeline.discover().accepted_new == ["resent/" + again.name]
    versions = pipeline.status.accepted_files()
    assert versions["sha256"].nunique() == 1 and len(versions) == 2  # one content, two versions
    assert versions["file_name"].iloc[-1] == again.name  # the latest timestamp is the version in use
    pipeline.load_raw("2024-01", "RR8")
    pipeline.clean("2024-01", "RR8")
    used = pipeline.warehouse.read(clean_file_versions, reporting_month="2024-01", trust_code="RR8")
    assert used.loc[used["in_use"].astype(bool), "file_name"].tolist() == [again.name]
    activity = pipeline.warehouse.read(clean_activity, reporting_month="2024-01", trust_code="RR8")
    assert len(activity) == len(TWO_ROWS)  # its rows once, not once per copy


def test_the_same_file_dropped_twice_in_one_scan_is_loaded_and_cleaned_once(settings):
    landing = settings.landing_dir
    first = write_submission(landing / "SACT_RR8_202401_20240210093000.csv", TWO_ROWS)
    again = landing / "SACT_RR8_202401_20240212080000.csv"
    again.write_bytes(first.read_bytes())
    pipeline = Pipeline(settings, today=date(2024, 6, 1))
    assert sorted(pipeline.discover().accepted_new) == sorted([first.name, again.name])
    raw = pipeline.load_raw("2024-01", "RR8")  # both versions in one load: every version is kept
    assert raw.rows == 2 * len(TWO_ROWS)
    pipeline.clean("2024-01", "RR8")
    used = pipeline.warehouse.read(clean_file_versions, reporting_month="2024-01", trust_code="RR8")
    assert used.loc[used["in_use"].astype(bool), "file_name"].tolist() == [again.name]
    activity = pipeline.warehouse.read(clean_activity, reporting_month="2024-01", trust_code="RR8")
    assert len(activity) == len(TWO_ROWS)


def test_a_file_still_being_written_is_ignored_then_rejected_when_cut_then_accepted_once_complete(settings):
    landing = settings.landing_dir
    landing.mkdir(parents=True)
    complete = utf8()
    name = "SACT_RR8_202401_20240210093000.csv"
    part = landing / (name + ".part")
    part.write_bytes(complete[:len(complete) // 2])  # a copy in progress, named as such
    pipeline = Pipeline(settings, today=date(2024, 6, 1))
    discovery = pipeline.discover()
    assert discovery.accepted_new == [] and discovery.rejected_new == []
    part.unlink()
    path = landing / name
    path.write_bytes(cut_mid_row())  # a copy without a temporary name, caught mid-row
    discovery = pipeline.discover()
    assert discovery.accepted_new == []
    assert discovery.rejected_new == [(name, "row 2 has 12 fields where the header has 44")]
    path.write_bytes(complete)  # the copy finishes: new content, a new SHA-256
    discovery = pipeline.discover()
    assert discovery.accepted_new == [name] and discovery.rejected_known == []
    assert pipeline.status.accepted_files()["sha256"].tolist() == [sha256_of(complete)]


def _other_trust(trust: str) -> list[dict]:
    numbers = ["9434765919", "4010232137", "3417284996", "8314495581", "9876543210"]
    return [{"nhs_number": n, "local_patient_identifier": f"L{i}", "organisation_identifier_code_of_provider": trust,
             "organisation_identifier_of_sact_administration": trust} for i, n in enumerate(numbers)]


def test_a_refresh_with_bad_files_rejects_them_publishes_the_rest_and_leaves_good_trusts_as_they_were(
        tmp_path, isolated_environment):
    generated = tmp_path / "generated"
    files = generate_submissions(generated, trusts=3, months=1, end_month="2024-01", patients_per_trust=30, seed=8)
    good = sorted({f.org_code for f in files if ORGANISATIONS.resolve_trust(f.org_code).is_english})
    assert len(good) == 2  # and a Welsh trust, processed but not published
    homes = {}
    for kind in ("good", "mixed"):
        homes[kind] = Settings.from_env(env={}, home=str(tmp_path / kind), first_month="2024-01")
        shutil.copytree(generated, homes[kind].landing_dir)
    landing = homes["mixed"].landing_dir
    later = "202401_20240301120000.csv"  # newer than the good files: a rejected one must not displace them
    bad = {
        f"SACT_{good[0]}_{later}": (b"", "empty file"),
        f"SACT_{good[1]}_{later}": (gzip.compress(utf8()), "gzip-compressed: unzip it and send the .csv"),
        f"SACT_{good[0]}_202401_20240302120000.csv": (cut_mid_row(), "row 2 has 12 fields where the header has 44"),
        "SACT_RGT_202401_20240210093000.csv": (b"\xff\xfe" + csv_text(_other_trust("RGT")).encode("utf-16-le"), None),
        "SACT_RM1_202401_20240210093000.csv": (utf8(_other_trust("RM1"), sep=";"), None),
    }
    for name, (data, _) in bad.items():
        (landing / name).write_bytes(data)
    lines = []
    reports = {kind: refresh(settings, log=lines.append) for kind, settings in homes.items()}

    assert reports["good"].ok, reports["good"]
    rejected = {name: reason for name, reason in bad.items() if reason[1] is not None}
    assert sorted(p for p, _ in reports["mixed"].rejected) == sorted(rejected)
    assert not reports["mixed"].failures
    recorded = Warehouse(homes["mixed"].warehouse_url).read(rejected_files)
    assert sorted(recorded["file_name"]) == sorted(rejected)
    for row in recorded.itertuples():
        assert rejected[row.file_name][1] in row.reason
        assert (landing / row.file_name).exists()  # left in place
    registered = Warehouse(homes["mixed"].warehouse_url).read(submission_files).set_index("file_name")
    assert registered.loc["SACT_RGT_202401_20240210093000.csv", "encoding"] == "utf-16"

    def published(settings) -> pd.DataFrame:
        csv_path, _ = Pipeline(settings).output_paths("2024-01")
        return pd.read_csv(csv_path, dtype=str, keep_default_na=False).set_index("org_code")

    mixed, alone = published(homes["mixed"]), published(homes["good"])
    assert set(mixed.index) == {"ENGLAND", "RGT", "RM1", *good}  # the parsed bad files are published too
    assert set(alone.index) == {"ENGLAND", *good}
    versions = Warehouse(homes["mixed"].warehouse_url).read(clean_file_versions).set_index("trust_code")
    for trust in ("RGT", "RM1"):  # every row of the UTF-16 and the semicolon file is clean (5 is disclosive)
        assert versions.loc[trust, ["raw_rows", "clean_rows", "quarantined_rows"]].tolist() == [5, 5, 0]
    pd.testing.assert_frame_equal(mixed.loc[good], alone.loc[good])
    log = "\n".join(lines)
    assert "9434765919" not in log and "Siân" not in log and "Ó Briain" not in log  # no identifier in any log
