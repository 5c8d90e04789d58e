"""The synthetic SACT submission generator: determinism, file layout, the special cases, encodings, defects.

Generated files are checked independently of the generator: parsed with the csv module, NHS numbers
checked with the `nhs-number` package as an oracle, defects re-derived from the content.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import date
from pathlib import Path

import nhs_number as oracle
import pandas as pd
import pytest

from sact_pipeline.domain import nhs_number, spec
from sact_pipeline.domain.landing import read_submission
from sact_pipeline.domain.organisations import OrganisationRegister
from sact_pipeline.domain.synthetic import (
    BAD_CODES,
    INVALID_DATE,
    MANDATORY_DEFECT_KINDS,
    DefectRates,
    generate_submissions,
)

END = "2025-06"
MONTHS = ["2025-03", "2025-04", "2025-05", "2025-06"]
NAME = re.compile(r"^SACT_([A-Z0-9]{3,5})_(\d{6})_(\d{14})\.csv$")
HEADERS = [item.header for item in spec.V3_ITEMS]
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


def _decode(data: bytes) -> tuple[str, str]:
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8"), "utf-8-sig"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("cp1252"), "cp1252"


def _read(path: Path) -> tuple[list[str], pd.DataFrame]:
    text, _ = _decode(path.read_bytes())
    records = list(csv.reader(io.StringIO(text, newline="")))
    header, body = records[0], records[1:]
    assert all(len(r) == len(header) for r in body), path.name
    return header, pd.DataFrame(body, columns=list(spec.ITEM_COLUMNS), dtype="string")


def _all_rows(files) -> pd.DataFrame:
    frames = []
    for f in files:
        _, frame = _read(f.path)
        frames.append(frame.assign(file=f.path.name, org=f.org_code, month=f.reporting_month))
    return pd.concat(frames, ignore_index=True)


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
    for column in spec.REQUIRED_COLUMNS:
        codes = spec.ITEMS_BY_COLUMN[column].codes
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
        text, encoding = _decode(data)
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
    for name, mask in _defect_masks(frame[list(spec.ITEM_COLUMNS)]).items():
        assert not mask.any(), name
    assert not raw.duplicated().any()
    assert _oracle_valid(frame["nhs_number"]).all()
    assert nhs_number.is_valid(nhs_number.normalise(frame["nhs_number"])).all()
    # every mandatory and coded item present and in its code list
    for item in spec.V3_ITEMS:
        if item.obligation in (spec.MANDATORY, spec.REQUIRED):
            assert (frame[item.column] != "").all(), item.header
        if item.codes and item.obligation != spec.OUTCOME:
            assert frame[item.column].isin(item.codes).all(), item.header


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
