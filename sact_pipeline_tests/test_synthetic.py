"""The synthetic SACT submission generator: determinism, file layout, the special cases, encodings, defects,
SACT v3 and v4 files and the transition between them.

Generated files are checked independently of the generator: parsed with the csv module, NHS numbers
checked with the `nhs-number` package as an oracle, defects re-derived from the content, UK offsets of
v4 timestamps checked with zoneinfo (Europe/London).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import nhs_number as oracle
import pandas as pd
import pytest

from sact_pipeline.domain import nhs_number
from sact_pipeline.domain.landing import read_submission
from sact_pipeline.domain.organisations import OrganisationRegister
from sact_pipeline.domain.spec import MANDATORY, OUTCOME, REQUIRED, SACT, V3, V4, Transition
from sact_pipeline.synthetic import (
    BAD_CODES,
    INVALID_DATE,
    MANDATORY_DEFECT_KINDS,
    DefectRates,
    generate_submissions,
)
from sact_pipeline_tests.builders import HEADERS, V4_HEADERS, decode_generated

END = "2025-06"
MONTHS = ["2025-03", "2025-04", "2025-05", "2025-06"]
NAME = re.compile(r"^SACT_([A-Z0-9]{3,5})_(\d{6})_(\d{14})\.csv$")
COLUMNS = {V3: list(SACT.version(V3).columns), V4: list(SACT.version(V4).columns)}
# Items a missing_required defect may hit: required in both versions (Cycle_Number is mandatory in v4).
REQUIRED_COLUMNS = [i.name for i in SACT.items if i.obligation(V3) == REQUIRED and i.obligation(V4) == REQUIRED]
# The items both versions have, and the administration date (v3 item 34; v4 the date of item 80 or 81).
SHARED = [c for c in COLUMNS[V3] if c in COLUMNS[V4]] + ["administration_date"]
ORAL_DRUGS = {"CAPECITABINE", "ABIRATERONE", "PREDNISOLONE"}
TIMESTAMP = re.compile(r"^(\d{4}-\d{2}-\d{2})T(\d{2}):(\d{2}):00([+-]\d{2}:\d{2})$")
LONDON = ZoneInfo("Europe/London")
REGISTER = OrganisationRegister.from_ods_etr()


def _generate(tmp_path: Path, **kwargs):
    kwargs.setdefault("end_month", END)
    return generate_submissions(tmp_path, organisations=REGISTER, **kwargs)


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    landing = tmp_path_factory.mktemp("landing")
    return landing, _generate(landing)


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    landing = tmp_path_factory.mktemp("clean")
    return landing, _generate(landing, defects=DefectRates(0, 0, 0, 0), seed=7)


def _read(path: Path) -> tuple[list[str], pd.DataFrame]:
    """The header and the rows of a v3 or v4 file (told apart by its header), by canonical column."""
    text, _ = decode_generated(path.read_bytes())
    records = list(csv.reader(io.StringIO(text, newline="")))
    header, body = records[0], records[1:]
    assert all(len(r) == len(header) for r in body), path.name
    assert header in (HEADERS, V4_HEADERS), path.name
    return header, pd.DataFrame(body, columns=COLUMNS[V3 if header == HEADERS else V4], dtype="string")


def _version(header: list[str]) -> str:
    return V3 if header == HEADERS else V4


def _all_rows(files) -> pd.DataFrame:
    frames = []
    for f in files:
        _, frame = _read(f.path)
        frames.append(frame.assign(file=f.path.name, org=f.org_code, month=f.reporting_month))
    return pd.concat(frames, ignore_index=True)


def _shared(frame: pd.DataFrame) -> pd.DataFrame:
    """A v3 or v4 frame reduced to what both versions say: the shared items and the administration date
    (in v4: the date of item 80 as written, else item 81)."""
    if "administration_date" not in frame:
        stamp = frame["administration_timestamp_infusion"]
        frame = frame.assign(administration_date=stamp.str.slice(0, 10).where(
            stamp != "", frame["administration_date_oral_drug_dispensed"]))
    return frame[SHARED].reset_index(drop=True)


def _stripped(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.apply(lambda column: column.str.strip())


def _valid_dates(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, format="%Y-%m-%d", errors="coerce").notna() & values.str.fullmatch(r"\d{4}-\d{2}-\d{2}")


def _oracle_valid(values: pd.Series) -> pd.Series:
    return values.map(lambda v: bool(v) and oracle.is_valid(v)).astype(bool)


def _defect_masks(frame: pd.DataFrame) -> dict[str, pd.Series]:
    """Each defect kind re-derived from the file content (values already stripped)."""
    blank = frame == ""
    mandatory = (
        blank["regimen"] | blank["drug_name"] | blank["start_date_of_cycle"]
        | ~_valid_dates(frame["administration_date"])
        | (blank["primary_diagnosis"] & blank["morphology_icd_o"])
        | (blank["nhs_number"] & blank["local_patient_identifier"])
    )
    required = pd.Series(False, index=frame.index)
    for column in REQUIRED_COLUMNS:
        codes = SACT.by_name[column].codes
        required |= blank[column] | (~frame[column].isin(codes) if codes else False)
    invalid_nhs = ~blank["nhs_number"] & ~_oracle_valid(frame["nhs_number"])
    return {"missing_mandatory": mandatory, "missing_required": required, "invalid_nhs_number": invalid_nhs}


def test_same_seed_gives_the_same_files_byte_for_byte(tmp_path):
    first = _generate(tmp_path / "a", trusts=4, months=3, patients_per_trust=20, seed=11)
    second = _generate(tmp_path / "b", trusts=4, months=3, patients_per_trust=20, seed=11)
    other = _generate(tmp_path / "c", trusts=4, months=3, patients_per_trust=20, seed=12)

    def snapshot(root, files):
        return {f.path.relative_to(root).as_posix(): f.path.read_bytes() for f in files}

    assert snapshot(tmp_path / "a", first) == snapshot(tmp_path / "b", second)
    assert [(f.org_code, f.reporting_month, f.rows, f.kind, f.defects) for f in first] == \
        [(f.org_code, f.reporting_month, f.rows, f.kind, f.defects) for f in second]
    assert snapshot(tmp_path / "a", first) != snapshot(tmp_path / "c", other)


def test_file_names_folders_and_headers(default_run):
    landing, files = default_run
    assert sorted(p for p in landing.rglob("*") if p.is_file()) == sorted(f.path for f in files)
    for f in files:
        match = NAME.match(f.path.name)
        assert match, f.path.name
        org, month, stamp = match.groups()
        assert org == f.org_code and month == f.reporting_month.replace("-", "")
        assert f.path.parent == landing / month
        assert stamp == f.submitted_at.strftime("%Y%m%d%H%M%S")
        header, frame = _read(f.path)
        assert header == HEADERS
        assert len(frame) == f.rows > 0
    assert {f.reporting_month for f in files} == set(MONTHS)


def test_trusts_include_a_five_character_trust_and_the_welsh_trust(default_run):
    _, files = default_run
    orgs = {f.org_code for f in files}
    assert len(orgs) == 9
    assert "RQF" in orgs and REGISTER.get("RQF").country == "Wales"
    english = orgs - {"RQF"}
    assert all(REGISTER.get(o).is_english and not REGISTER.get(o).close_date for o in english)
    assert any(len(o) == 5 for o in english)
    assert {f.reporting_month for f in files if f.org_code == "RQF"} == set(MONTHS)


def test_submission_timing_late_resubmission_and_missing(default_run):
    _, files = default_run

    def months_after(f) -> int:
        reporting = date.fromisoformat(f.reporting_month + "-01")
        return (f.submitted_at.year - reporting.year) * 12 + f.submitted_at.month - reporting.month

    late = [f for f in files if f.kind == "late"]
    assert len(late) == 1 and late[0].reporting_month == MONTHS[-2] and months_after(late[0]) == 2
    assert all(months_after(f) == 1 for f in files if f.kind == "on_time")
    assert all(f.submitted_at.day <= 25 for f in files if f.kind != "resubmission")

    by_key: dict[tuple[str, str], list] = {}
    for f in files:
        by_key.setdefault((f.org_code, f.reporting_month), []).append(f)
    pairs = [v for v in by_key.values() if len(v) > 1]
    assert len(pairs) == 1
    first, second = sorted(pairs[0], key=lambda f: f.submitted_at)
    assert (first.kind, second.kind) == ("on_time", "resubmission")
    assert first.reporting_month == MONTHS[0] and 1 <= months_after(second) <= 2
    assert first.submitted_at < second.submitted_at and first.rows < second.rows
    assert 0.03 <= 1 - first.rows / second.rows <= 0.3
    _, old = _read(first.path)
    _, new = _read(second.path)
    old_lines, new_lines = set(map(tuple, old.to_numpy().tolist())), set(map(tuple, new.to_numpy().tolist()))
    assert old_lines < new_lines  # the resubmission only adds the missed rows
    missed = new[~new.apply(tuple, axis=1).isin(old_lines)]
    assert not set(missed["local_patient_identifier"]) & set(old["local_patient_identifier"])  # whole patients

    orgs = {f.org_code for f in files}
    missing = [(o, m) for o in orgs for m in MONTHS if (o, m) not in by_key]
    assert len(missing) == 1
    assert missing[0][1] == MONTHS[-1] and missing[0][0] != "RQF"
    assert missing[0][0] not in {late[0].org_code, first.org_code}


def test_encodings_line_ends_and_stray_spaces(default_run):
    _, files = default_run
    by_encoding: dict[str, set[str]] = {}
    for f in files:
        data = f.path.read_bytes()
        text, encoding = decode_generated(data)
        assert encoding == f.encoding
        by_encoding.setdefault(encoding, set()).add(f.org_code)
        crlf = data.count(b"\r\n")
        if f.line_ending == "\r\n":
            assert crlf == data.count(b"\n") == f.rows + 1
        else:
            assert crlf == 0 and data.count(b"\n") == f.rows + 1
        if encoding == "cp1252":
            with pytest.raises(UnicodeDecodeError):
                data.decode("utf-8")
            assert any(ord(ch) > 127 for ch in text)  # non-ASCII names written in Windows-1252
    assert set(by_encoding) == {"utf-8", "utf-8-sig", "cp1252"}
    assert len(by_encoding["utf-8-sig"]) == 1 and len(by_encoding["cp1252"]) == 1
    assert {f.line_ending for f in files if f.encoding != "utf-8"} == {"\r\n"}

    frame = _all_rows(files)
    spaced = (frame[["nhs_number", "person_family_name", "regimen", "drug_name"]]
              .apply(lambda c: c != c.str.strip()).any(axis=1))
    assert spaced.mean() > 0.01
    assert frame.loc[spaced, "org"].nunique() == 1
    names = pd.concat([frame["person_family_name"], frame["person_given_name"]]).str.strip()
    assert names.map(lambda v: any(ord(ch) > 127 for ch in v)).any()
    quoted = [f for f in files if b'"' in f.path.read_bytes()]
    assert quoted  # free-text outcome reasons with commas/quotes are quoted


def test_project_reader_accepts_every_file(default_run):
    landing, files = default_run
    for f in files:
        submission, frame = read_submission(f.path, landing, REGISTER, first_month="2024-01", today=date(2026, 1, 1))
        assert submission.encoding == f.encoding
        assert submission.org_code == f.org_code and submission.reporting_month == f.reporting_month
        assert len(frame) == f.rows and not submission.ignored_columns


def test_defect_counts_match_the_content_and_the_rates(default_run):
    _, files = default_run
    totals = {"invalid_nhs_number": 0, "missing_mandatory": 0, "missing_required": 0, "duplicate_rows": 0}
    rows = 0
    for f in files:
        _, raw = _read(f.path)
        frame = _stripped(raw)
        masks = _defect_masks(frame)
        counts = {name: int(mask.sum()) for name, mask in masks.items()}
        counts["duplicate_rows"] = int(raw.duplicated().sum())
        assert counts == {name: getattr(f.defects, name) for name in counts}, f.path.name
        # The kinds are disjoint, and an invalid NHS number always leaves the local id in place.
        assert not (masks["missing_mandatory"] & masks["missing_required"]).any()
        assert (frame.loc[masks["invalid_nhs_number"], "local_patient_identifier"] != "").all()
        for name in totals:
            totals[name] += counts[name]
        rows += f.rows
    assert rows > 3000
    rates = DefectRates()
    for name, total in totals.items():
        expected = getattr(rates, name) * rows
        assert 0.6 * expected <= total <= 1.4 * expected, (name, total, expected)


def test_mandatory_defect_kinds(default_run):
    _, files = default_run
    frame = _stripped(_all_rows(files))
    by_kind = {name: 0 for name in MANDATORY_DEFECT_KINDS}
    for f in files:
        for name, count in f.defects.missing_mandatory_by_kind:
            by_kind[name] += count
    assert by_kind["administration_date"] == (frame["administration_date"] == INVALID_DATE).sum() > 0
    assert by_kind["patient_identifier"] == ((frame["nhs_number"] == "") & (frame["local_patient_identifier"] == "")).sum()
    assert by_kind["diagnosis"] == ((frame["primary_diagnosis"] == "") & (frame["morphology_icd_o"] == "")).sum()
    assert by_kind["regimen"] == (frame["regimen"] == "").sum()
    assert sum(by_kind.values()) == sum(f.defects.missing_mandatory for f in files)
    bad = set(BAD_CODES.values())
    assert frame[list(BAD_CODES)].isin(bad).any(axis=None)


def test_no_defects_when_all_rates_are_zero(clean_run):
    _, files = clean_run
    raw = _all_rows(files)
    frame = _stripped(raw)
    assert all(f.defects.total == 0 for f in files)
    for name, mask in _defect_masks(frame[COLUMNS[V3]]).items():
        assert not mask.any(), name
    assert not raw.duplicated().any()
    assert _oracle_valid(frame["nhs_number"]).all()
    assert nhs_number.is_valid(nhs_number.normalise(frame["nhs_number"])).all()
    # every mandatory and coded item present and in its code list
    for item in SACT.version(V3).items:
        if item.obligation(V3) in (MANDATORY, REQUIRED):
            assert (frame[item.name] != "").all(), item.header(V3)
        if item.codes and item.obligation(V3) != OUTCOME:
            assert frame[item.name].isin(item.codes).all(), item.header(V3)


def test_invalid_nhs_numbers_fail_modulus_11(default_run):
    _, files = default_run
    frame = _stripped(_all_rows(files))
    numbers = frame.loc[frame["nhs_number"] != "", "nhs_number"]
    valid = _oracle_valid(numbers)
    assert (~valid).sum() == sum(f.defects.invalid_nhs_number for f in files) > 0
    assert numbers.str.fullmatch(r"\d{10}").all()
    assert (nhs_number.is_valid(numbers) == valid).all()


def test_content_is_clinically_coherent(clean_run):
    _, files = clean_run
    frame = _stripped(_all_rows(files))
    dates = {c: pd.to_datetime(frame[c], format="%Y-%m-%d") for c in
             ("date_of_birth", "date_decision_to_treat", "start_date_of_regimen", "start_date_of_cycle",
              "administration_date")}
    assert (dates["administration_date"].dt.strftime("%Y-%m") == frame["month"]).all()
    assert (dates["date_of_birth"] < dates["date_decision_to_treat"]).all()
    assert (dates["date_decision_to_treat"] <= dates["start_date_of_regimen"]).all()
    assert (dates["start_date_of_regimen"] <= dates["start_date_of_cycle"]).all()
    assert (dates["start_date_of_cycle"] <= dates["administration_date"]).all()
    assert (dates["administration_date"] - dates["start_date_of_cycle"]).dt.days.max() <= 14
    height = frame["height_at_start_of_regimen"].astype(float)
    assert height.between(1.50, 1.95).all()
    for column in ("weight_at_start_of_regimen", "weight_at_start_of_cycle"):
        assert frame[column].astype(float).between(45, 120).all()
    assert frame["performance_status_at_start_of_regimen"].isin(["0", "1", "2"]).all()
    assert frame["person_stated_gender_code"].isin(["1", "2"]).all()
    assert frame["consultant_gmc_code"].str.fullmatch(r"C\d{7}").all()
    assert frame["consultant_specialty_code"].isin(["800", "370", "303"]).all()
    assert (frame["administration_measurement_per_actual_dose"] == "01").all()
    assert frame["actual_dose_per_administration"].astype(float).gt(0).all()
    assert frame["primary_diagnosis"].str.fullmatch(r"C\d{2}(\.\d)?").all()
    assert frame["cycle_number"].astype(int).ge(1).all()
    breast = frame["primary_diagnosis"].str.startswith("C50")
    assert frame.loc[frame["regimen"] == "FEC-T", "primary_diagnosis"].str.startswith("C50").all()
    assert frame.loc[breast, "person_stated_gender_code"].eq("2").mean() > 0.9
    assert (frame.loc[frame["drug_name"] == "CAPECITABINE", "sact_administration_route"] == "02").all()
    # provider codes: the trust code, or a site code (trust code + 2 characters) resolving to it
    resolved = frame["organisation_identifier_code_of_provider"].map(lambda c: REGISTER.resolve_trust(c).code)
    assert (resolved == frame["org"]).all()
    assert (frame["organisation_identifier_code_of_provider"].str.len() == 5).any()
    assert (frame["organisation_identifier_code_of_provider"] == frame["org"]).mean() > 0.5


def test_patients_persist_across_months(clean_run):
    _, files = clean_run
    frame = _stripped(_all_rows([f for f in files if f.kind != "resubmission"]))
    identity = ["local_patient_identifier", "person_family_name", "person_given_name", "date_of_birth",
                "patient_postcode", "org"]
    per_number = frame.groupby("nhs_number")[identity].nunique()
    assert (per_number == 1).all(axis=None)
    months_seen = frame.groupby("nhs_number")["month"].nunique()
    assert (months_seen > 1).mean() > 0.4
    # cycles carry on across months: a course's cycle numbers grow with the month
    course = frame.assign(cycle=frame["cycle_number"].astype(int)).groupby(
        ["nhs_number", "regimen", "start_date_of_regimen", "month"])["cycle"].max().reset_index()
    later = course.groupby(["nhs_number", "regimen", "start_date_of_regimen"])["cycle"].apply(
        lambda s: s.is_monotonic_increasing)
    assert later.all()
    assert course["cycle"].max() > 4


def test_trust_sizes_are_skewed_and_near_the_target(default_run):
    _, files = default_run
    patients = pd.DataFrame([(f.org_code, f.reporting_month, f.patients) for f in files if f.kind != "resubmission"],
                            columns=["org", "month", "patients"])
    mean = patients.groupby("org")["patients"].mean()
    assert mean.max() / mean.min() >= 2.5
    assert 40 <= patients["patients"].mean() <= 90


def test_end_month_defaults_to_last_month_and_rejects_future_months(tmp_path):
    files = generate_submissions(tmp_path, trusts=3, months=2, patients_per_trust=10, organisations=REGISTER)
    today = date.today()
    last = date(today.year, today.month, 1) - pd.DateOffset(months=1)
    assert max(f.reporting_month for f in files) == f"{last:%Y-%m}"
    assert all(f.submitted_at.date() <= today for f in files)
    with pytest.raises(ValueError):
        generate_submissions(tmp_path, end_month=f"{today:%Y-%m}", organisations=REGISTER)


# --- SACT v4 and the transition ------------------------------------------------------------------------

V4_MONTHS = ["2026-03", "2026-04", "2026-05", "2026-06", "2026-07"]  # March is before v4: v3 in every mode
V4_RATES = DefectRates(out_of_month=0.02, other_trust_provider=0.01)
NEW_REQUIRED = ["professional_registration_issuer_code", "professional_registration_entry_identifier",
                "treatment_context", "chemoradiation"]


@pytest.fixture(scope="module")
def paired_runs(tmp_path_factory):
    """The same arguments written as v3 and as v4 (with every kind of defect)."""
    runs = {}
    for version in (V3, V4):
        landing = tmp_path_factory.mktemp(version)
        runs[version] = landing, _generate(landing, trusts=4, months=len(V4_MONTHS), end_month=V4_MONTHS[-1],
                                           patients_per_trust=40, seed=31, defects=V4_RATES, sact_version=version)
    return runs


@pytest.fixture(scope="module")
def clean_v4_run(tmp_path_factory):
    landing = tmp_path_factory.mktemp("clean_v4")
    return landing, _generate(landing, trusts=3, months=6, end_month="2026-09", patients_per_trust=60, seed=5,
                              defects=DefectRates(0, 0, 0, 0), sact_version=V4)


@pytest.fixture(scope="module")
def transition_run(tmp_path_factory):
    """The default (mixed) over February to November 2026, 12 English trusts."""
    landing = tmp_path_factory.mktemp("mixed")
    return landing, _generate(landing, trusts=12, months=10, end_month="2026-11", patients_per_trust=12)


def _latest(files) -> dict[tuple[str, str], object]:
    """The file in use per trust-month: the last one submitted."""
    latest = {}
    for f in sorted(files, key=lambda f: f.submitted_at):
        latest[(f.org_code, f.reporting_month)] = f
    return latest


def _check_administration_dates(frame: pd.DataFrame) -> None:
    """Exactly one of items 80 and 81; 80 an ISO 8601 local timestamp (08:00-18:00, 5-minute steps) with the
    UK offset of its date and time, for drugs not taken by mouth; 81 for oral drugs; 82/83 only on oral rows."""
    stamp, oral_date = frame["administration_timestamp_infusion"], frame["administration_date_oral_drug_dispensed"]
    assert ((stamp != "") ^ (oral_date != "")).all()
    invalid = (stamp == INVALID_DATE + "T10:00:00+00:00") | (oral_date == INVALID_DATE)
    for value in stamp[(stamp != "") & ~invalid]:
        match = TIMESTAMP.match(value)
        assert match, value
        day, hour, minute, offset = match.groups()
        assert "08:00" <= f"{hour}:{minute}" <= "18:00" and int(minute) % 5 == 0, value
        local = datetime.fromisoformat(f"{day}T{hour}:{minute}").replace(tzinfo=LONDON)
        expected = "+01:00" if local.utcoffset().total_seconds() == 3600 else "+00:00"
        assert offset == expected, value
    assert _valid_dates(oral_date[(oral_date != "") & ~invalid]).all()
    drug = frame["drug_name"].str.strip()
    named = drug != ""
    assert (oral_date[named & drug.isin(ORAL_DRUGS)] != "").all()
    assert (stamp[named & ~drug.isin(ORAL_DRUGS)] != "").all()
    route = frame["sact_administration_route"].str.strip()  # a defect may blank it or make it '99', never '02'
    assert (oral_date[route == "02"] != "").all() and (stamp[route.isin(["01", "04", "05"])] != "").all()
    oral = oral_date != ""
    assert frame.loc[oral, "cycle_length_in_days"].isin(["21", "28"]).all()
    assert frame.loc[oral, "number_of_cycles_dispensed"].isin(["1", "2", "3"]).all()
    assert (frame.loc[~oral, ["cycle_length_in_days", "number_of_cycles_dispensed"]] == "").all(axis=None)


def test_v4_files_have_the_v4_header_and_one_administration_date(paired_runs, transition_run):
    for landing, files in (paired_runs[V4], transition_run):
        assert {f.sact_version for f in files} == {V3, V4}
        for f in files:
            header, frame = _read(f.path)
            assert _version(header) == f.sact_version and len(frame) == f.rows
            assert f.sact_version == V3 or f.reporting_month >= "2026-04"
            if f.sact_version == V4:
                assert header == V4_HEADERS and len(header) == 60
                _check_administration_dates(frame)
            else:
                assert header == HEADERS and len(header) == 44
    # the BST offsets are both used: summer months and November
    stamps = _all_rows([f for f in transition_run[1] if f.sact_version == V4])["administration_timestamp_infusion"]
    assert stamps.str.endswith("+01:00").any() and stamps.str.endswith("+00:00").any()


def test_project_reader_reads_v4_files_as_v4(paired_runs, transition_run):
    for landing, files in (paired_runs[V4], transition_run):
        for f in files:
            submission, frame = read_submission(f.path, landing, REGISTER, first_month="2024-01", today=date.today())
            assert submission.header_version == f.sact_version
            assert len(frame) == f.rows and not submission.ignored_columns


def test_v3_and_v4_describe_the_same_administrations(paired_runs):
    (v3_landing, v3_files), (v4_landing, v4_files) = paired_runs[V3], paired_runs[V4]
    assert [f.path.relative_to(v3_landing) for f in v3_files] == [f.path.relative_to(v4_landing) for f in v4_files]
    assert {f.reporting_month for f in v4_files if f.sact_version == V3} == {"2026-03"}
    assert {f.sact_version for f in v3_files} == {V3}
    adjunctive_to_context = {"1": "01", "2": "02", "3": "03", "9": "99"}
    for old, new in zip(v3_files, v4_files):
        assert (old.org_code, old.reporting_month, old.submitted_at, old.rows, old.kind, old.encoding,
                old.line_ending, old.patients) == \
            (new.org_code, new.reporting_month, new.submitted_at, new.rows, new.kind, new.encoding,
             new.line_ending, new.patients)
        assert old.defects == replace(new.defects, missing_v4_item=0, missing_v4_item_by_item=())
        if new.sact_version == V3:
            assert old.path.read_bytes() == new.path.read_bytes()
            continue
        _, v3 = _read(old.path)
        _, v4 = _read(new.path)
        pd.testing.assert_frame_equal(_shared(v3), _shared(v4))
        # The new items say what the v3 items said.
        entry = v4["professional_registration_entry_identifier"]
        assert (entry[entry != ""] == v3["consultant_gmc_code"][entry != ""]).all()
        context = v4["treatment_context"]
        assert (context[context != ""] == v3["adjunctive_therapy"][context != ""].map(adjunctive_to_context)).all()
        assert (v4["dose_modification"] == v3["regimen_modification_dose_reduction"]).all()
        summary = v4["end_of_regimen_summary"]
        assert ((summary != "") == (v3["regimen_outcome_summary_toxicity"] != "")).all()
        assert ((summary == "3") == (v3["regimen_outcome_summary_toxicity"] == "Y")).all()
        completed = v3["regimen_outcome_summary_curative_completed_as_planned"]  # only for curative intent
        assert not ((summary == "1") & (completed == "N")).any() and not ((summary != "1") & (completed == "Y")).any()
        # A new required v4 item left empty: counted, one item per row, never on another defect's row.
        gaps = (v4[NEW_REQUIRED] == "").sum(axis=1)
        assert gaps.max() <= 1 and gaps.sum() == new.defects.missing_v4_item
        assert dict((c, n) for c, n in new.defects.missing_v4_item_by_item) == \
            {c: int(n) for c, n in (v4[NEW_REQUIRED] == "").sum().items() if n}
        masks = _defect_masks(_stripped(_shared(v4)))
        assert not (masks["missing_mandatory"] | masks["missing_required"] | masks["invalid_nhs_number"])[
            (gaps > 0).to_numpy()].any()
        # out of month: the date of item 80 or 81 in the month before
        month = pd.Period(new.reporting_month, "M")
        shared = _shared(v4)
        assert (shared["administration_date"].str.slice(0, 7) == str(month - 1)).sum() == new.defects.out_of_month
    totals = {name: sum(getattr(f.defects, name) for f in v4_files)
              for name in ("missing_v4_item", "out_of_month", "other_trust_provider", "missing_mandatory")}
    assert all(totals.values()), totals


def test_new_v4_items_are_realistic(clean_v4_run):
    _, files = clean_v4_run
    frame = _stripped(_all_rows([f for f in files if f.sact_version == V4]))
    assert (frame["professional_registration_issuer_code"] == "01").all()
    assert frame["professional_registration_entry_identifier"].str.fullmatch(r"C\d{7}").all()
    assert frame["treatment_context"].isin(["01", "02", "03", "99"]).all()
    curative = frame["intent_of_treatment"] == "01"
    assert frame.loc[curative, "curative_line_of_treatment"].isin(["1", "2"]).all()
    assert (frame.loc[curative, "non_curative_line_of_treatment"] == "").all()
    assert frame.loc[~curative, "non_curative_line_of_treatment"].isin(["1", "2", "3"]).all()
    assert (frame.loc[~curative, "curative_line_of_treatment"] == "").all()
    assert frame["chemoradiation"].isin(["N", "Y"]).all() and frame["chemoradiation"].eq("N").mean() > 0.9
    assert (frame[["regimen_modification", "cycle_modification"]] == "N").all(axis=None)
    assert frame["cycle_delay"].isin(["N", "Y"]).all() and (frame["cycle_delay"] == "Y").any()
    assert (frame.loc[frame["cycle_number"] == "1", "cycle_delay"] == "N").all()  # a first cycle is never late
    modified = frame["dose_modification"] == "Y"
    assert modified.any() and frame["dose_modification"].isin(["N", "Y"]).all()
    assert (frame.loc[modified, "reason_for_dose_modification"] == "1").all()
    assert frame.loc[modified, "toxicity_grade_dose_modification"].isin(["2", "3"]).all()
    unmodified = frame.loc[~modified, ["reason_for_dose_modification", "toxicity_grade_dose_modification"]]
    assert (unmodified == "").all(axis=None)
    reasons = [c for c in COLUMNS[V4] if c.startswith(("reason_for_", "toxicity_grade_")) and "dose" not in c]
    assert (frame[reasons + ["reason_for_dose_modification_patient_factors"]] == "").all(axis=None)
    summary = frame["end_of_regimen_summary"]
    assert summary.isin(["", "1", "2", "3"]).all() and set(summary) >= {"", "1"}
    # a course's summary is on the rows of one (its last) cycle
    course = ["nhs_number", "regimen", "start_date_of_regimen"]
    ended = frame[summary != ""].groupby(course)
    assert (ended["cycle_number"].nunique() == 1).all() and (ended["end_of_regimen_summary"].nunique() == 1).all()
    cycles = frame.assign(cycle=frame["cycle_number"].astype(int))
    last = cycles.groupby(course)["cycle"].max()
    summarised = cycles[summary != ""].groupby(course)["cycle"].max()
    assert (summarised == last.reindex(summarised.index)).all()


def test_oral_dispensings_may_cover_several_cycles(clean_v4_run):
    _, files = clean_v4_run
    frame = _stripped(_all_rows([f for f in _latest(files).values() if f.sact_version == V4]))
    frame = frame.assign(cycle=frame["cycle_number"].astype(int),
                         covers=pd.to_numeric(frame["number_of_cycles_dispensed"], errors="coerce"))
    oral = frame[frame["administration_date_oral_drug_dispensed"] != ""]
    monotherapy = oral[oral["regimen"] == oral["drug_name"]]
    assert set(monotherapy["regimen"]) == {"CAPECITABINE", "ABIRATERONE"}
    assert monotherapy["number_of_cycles_dispensed"].isin(["2", "3"]).mean() > 0.1
    assert (oral.loc[oral["regimen"] != oral["drug_name"], "number_of_cycles_dispensed"] == "1").all()
    assert (monotherapy["cycle_length_in_days"] == monotherapy["regimen"].map({"CAPECITABINE": "21",
                                                                               "ABIRATERONE": "28"})).all()
    # The next dispensing of a course is for the first cycle the previous one did not cover: covered cycles
    # have no row (and each dispensing row keeps its own cycle number and start date).
    checked = 0
    for _, course in monotherapy.groupby(["nhs_number", "regimen", "start_date_of_regimen"]):
        course = course.sort_values("cycle")
        assert course["cycle"].is_unique
        steps = course["cycle"].diff().dropna().astype(int).to_numpy()
        assert (steps == course["covers"].to_numpy()[:-1]).all()
        checked += (course["covers"].iloc[:-1] > 1).sum()
    assert checked > 0
    dates = pd.to_datetime(monotherapy["administration_date_oral_drug_dispensed"])
    assert ((dates - pd.to_datetime(monotherapy["start_date_of_cycle"])).dt.days.between(0, 14)).all()


def test_mixed_versions_make_a_realistic_transition(transition_run):
    landing, files = transition_run
    english = {f.org_code for f in files} - {"RQF"}
    assert len(english) == 12
    assert all(f.sact_version == V3 for f in files if f.reporting_month < "2026-04")
    by_month: dict[tuple[str, str], list] = {}
    for f in files:
        by_month.setdefault((f.org_code, f.reporting_month), []).append(f)
    resent = []  # (org, month, v3 file, v4 file): a month first sent as v3, resubmitted as v4
    switch: dict[str, str | None] = {}
    for org in english | {"RQF"}:
        first_versions = []
        for (o, month), group in sorted(by_month.items()):
            if o != org:
                continue
            group = sorted(group, key=lambda f: f.submitted_at)
            first_versions.append((month, group[0].sact_version))
            if group[0].sact_version == V3 and group[-1].sact_version == V4:
                assert group[-1].kind == "resubmission" and len(group) == 2
                resent.append((org, month, group[0], group[-1]))
            else:
                assert {f.sact_version for f in group} == {group[0].sact_version}
        versions = [v for _, v in first_versions]
        assert versions == sorted(versions), org  # v3 until the switch, v4 from then on
        switch[org] = next((m for m, v in first_versions if v == V4), None)
    assert all("2026-04" <= month <= "2026-09" for month in switch.values() if month)
    assert any(switch[o] for o in english) and any(switch[o] is None for o in english)
    assert resent and any(org in english for org, *_ in resent)
    # The roles are kept: one late file, one trust-month resubmitted complete in its own version, one missing.
    assert sum(f.kind == "late" for f in files) == 1
    own = [g for g in by_month.values() if len(g) > 1 and len({f.sact_version for f in g}) == 1]
    assert len(own) == 1 and own[0][0].reporting_month == "2026-02" and own[0][0].rows < own[0][1].rows
    assert sum((o, m) not in by_month for o in english for m in {f.reporting_month for f in files}) == 1
    for org, month, old, new in resent:
        assert month >= "2026-04" and str(pd.Period(month, "M") + 1) == switch[org]
        assert 1 <= (new.submitted_at - old.submitted_at).days <= 7
        _, v3 = _read(old.path)
        _, v4 = _read(new.path)
        pd.testing.assert_frame_equal(_shared(v3), _shared(v4))


@pytest.mark.parametrize("version", [V3, V4, "mixed"])
def test_each_mode_is_deterministic(tmp_path, version):
    arguments = dict(trusts=5, months=3, end_month="2026-06", patients_per_trust=15, seed=3, sact_version=version)
    first = _generate(tmp_path / "a", **arguments)
    second = _generate(tmp_path / "b", **arguments)

    def snapshot(root, files):
        return {f.path.relative_to(root).as_posix(): f.path.read_bytes() for f in files}

    assert snapshot(tmp_path / "a", first) == snapshot(tmp_path / "b", second)
    assert [(f.kind, f.sact_version, f.defects) for f in first] == [(f.kind, f.sact_version, f.defects) for f in second]
    expected = {V3: {V3}, V4: {V3, V4}, "mixed": {V3, V4}}[version]
    assert {f.sact_version for f in first} <= expected


def test_no_v4_file_before_v4_is_accepted(tmp_path):
    files = _generate(tmp_path, trusts=3, months=3, end_month="2026-03", patients_per_trust=10, sact_version=V4)
    assert {f.sact_version for f in files} == {V3}
    with pytest.raises(ValueError):
        _generate(tmp_path, trusts=3, months=1, sact_version="v5")


def test_v4_timestamps_follow_the_clocks_going_forward_and_back(tmp_path):
    """With v4 accepted from March 2025 (a Transition setting), the days the clocks change are in v4 files:
    29 March 2025 is GMT, 30 March (clocks forward at 01:00 UTC) BST, 25 October BST, 26 October GMT."""
    files = _generate(tmp_path, trusts=3, months=9, end_month="2025-11", patients_per_trust=40,
                      sact_version=V4, transition=Transition(v4_from="2025-03", v4_only_from="2025-06"))
    assert {f.sact_version for f in files} == {V4}
    frame = _all_rows(files)
    _check_administration_dates(frame)
    stamps = frame["administration_timestamp_infusion"]
    for day, offset in (("2025-03-29", "+00:00"), ("2025-03-30", "+01:00"), ("2025-10-25", "+01:00"),
                        ("2025-10-26", "+00:00")):
        on_day = stamps[stamps.str.startswith(day)]
        assert len(on_day) and on_day.str.endswith(offset).all(), day
