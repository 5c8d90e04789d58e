"""SACT v3 and v4 side by side through the real pipeline (CLI, Dagster, GX, SQLite and PostgreSQL): a mixed
landing zone publishes every trust whichever version it sends, the same records give the same outputs in
either version, and a header name corrected in the data-set table is read."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from sact_pipeline.cli import main
from sact_pipeline.domain.landing import SubmissionRejected, parse_csv_text
from sact_pipeline.domain.organisations import OrganisationRegister
from sact_pipeline.domain.counting import MEASURES
from sact_pipeline.domain.publication import ENGLAND
from sact_pipeline.domain.spec import PACKAGED_TABLE, SACT, V3, V4, DataSetError, load_data_set, read_table
from sact_pipeline.synthetic import generate_submissions
from sact_pipeline.settings import Settings
from sact_pipeline.warehouse import Warehouse
from sact_pipeline.tables import clean_activity, clean_file_versions
from sact_pipeline_tests.builders import VALID_V4_ROW, write_submission
from sact_pipeline_tests.support import SETTING_VARIABLES, published

REGISTER = OrganisationRegister.from_ods_etr()
pytestmark = pytest.mark.usefixtures("isolated_environment")  # refresh exports its settings


def refresh(home: Path, *extra: str) -> int:
    return main(["refresh", "--home", str(home), "--first-month", "2026-01", *extra])


def file_version(path: Path) -> str:
    """The version a generated file was written in, from its column count (v3: 44 items, v4: 60)."""
    with path.open(encoding="cp1252", errors="replace", newline="") as handle:
        width = len(next(csv.reader(handle)))
    return {44: V3, 60: V4}[width]


# --- a mixed landing zone ------------------------------------------------------------------------------------

MIXED_MONTHS = ["2026-06", "2026-07", "2026-08"]


@pytest.fixture(scope="module")
def mixed_landing(tmp_path_factory):
    """The generator's default transition: trusts switching to v4 between April and September, some on v3
    after July, v4 resubmissions of months first sent in v3."""
    landing = tmp_path_factory.mktemp("mixed") / "landing"
    files = generate_submissions(landing, trusts=6, months=len(MIXED_MONTHS), end_month=MIXED_MONTHS[-1],
                                 patients_per_trust=15, seed=23, organisations=REGISTER)
    return landing, files


def test_a_mixed_landing_zone_publishes_every_trust_in_its_version(tmp_path, mixed_landing, warehouse_url, capsys):
    landing, files = mixed_landing
    versions = {f.sact_version for f in files}
    late_v3 = [f for f in files if f.sact_version == V3 and f.reporting_month >= "2026-07"
               and f.org_code != "RQF"]
    switched = {f.org_code for f in files if f.sact_version == V4} & {f.org_code for f in files
                                                                       if f.sact_version == V3}
    assert versions == {V3, V4} and late_v3 and switched  # the landing zone really is mixed
    assert all(file_version(f.path) == f.sact_version for f in files)
    home = tmp_path / "sact"
    shutil.copytree(landing, home / "landing")

    assert refresh(home, "--warehouse-url", warehouse_url) == 0
    summary = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()
               if line.startswith("2026-") or (line.startswith("month ") and "on_time" in line)}
    assert summary["month"][7:9] == ["v3", "v4"]  # trusts of each version, per month, in the printed summary

    newest = {}
    for f in sorted(files, key=lambda f: f.submitted_at):
        newest[(f.reporting_month, f.org_code)] = f
    for month in MIXED_MONTHS:
        table = published(home, month).set_index("org_code")
        assert table.loc[ENGLAND, "sact_version"] == ""
        sent = {trust: f for (m, trust), f in newest.items() if m == month and trust != "RQF"}
        assert sent, month
        for trust, f in sent.items():  # every trust that sent a file is published, in its file's version
            row = table.loc[trust]
            assert row["submission_status"] in ("on_time", "late"), (month, trust)
            assert row["drug_administrations"] != "", (month, trust)
            assert row["sact_version"] == f.sact_version, (month, trust)
        for trust in set(table.index) - set(sent) - {ENGLAND}:
            assert table.loc[trust, "sact_version"] == ""
        used = pd.Series([f.sact_version for f in sent.values()])
        assert summary[month][7:9] == [str((used == V3).sum()), str((used == V4).sum())]
        notes = (home / "published" / month / f"sact_submissions_{month}_notes.txt").read_text()
        assert "sact_version" in notes

    # v3 after full v4 conformance: a finding in the trust's feedback file and the month's data-quality report
    for f in late_v3:
        if newest[(f.reporting_month, f.org_code)] is not f:
            continue  # a later version replaced it
        month = f.reporting_month
        feedback = pd.read_csv(home / "published" / month / "feedback" / f"{f.org_code}_{month}.csv", dtype=str,
                               keep_default_na=False)
        finding = feedback.loc[feedback["item"] == "SACT version"]
        assert len(finding) == 1 and finding["finding"].iloc[0].startswith("v3 after full v4 conformance")
        assert finding["file_name"].iloc[0] == f.path.name and finding["row_number"].iloc[0] == "0"
        report = (home / "published" / "data_quality" / month / f"data_quality_{month}.html").read_text()
        assert "v3 after full v4 conformance" in report


# --- the same records as v3 and as v4 ------------------------------------------------------------------------

EQUIVALENT_MONTHS = ["2026-05", "2026-06"]


def test_the_same_records_as_v3_and_as_v4_give_the_same_clean_rows_counts_and_publication(tmp_path):
    homes = {}
    for version in (V3, V4):
        home = tmp_path / version
        files = generate_submissions(home / "landing", trusts=5, months=len(EQUIVALENT_MONTHS),
                                     end_month=EQUIVALENT_MONTHS[-1], patients_per_trust=20, seed=41,
                                     sact_version=version, organisations=REGISTER)
        assert {f.sact_version for f in files} == {version}
        assert refresh(home) == 0
        homes[version] = home

    for month in EQUIVALENT_MONTHS:
        v3, v4 = published(homes[V3], month), published(homes[V4], month)
        sent = v3["drug_administrations"] != ""
        assert sent.sum() >= 4  # every English trust that sent a file, and its ENGLAND row, below
        assert (v3.loc[sent & (v3["org_code"] != ENGLAND), "sact_version"] == V3).all()
        assert (v4.loc[sent & (v4["org_code"] != ENGLAND), "sact_version"] == V4).all()
        pd.testing.assert_frame_equal(v3.drop(columns="sact_version"), v4.drop(columns="sact_version"))

    def warehouse_rows(home: Path, table, columns: list[str], order: list[str]) -> pd.DataFrame:
        settings = Settings.from_env(env={}, home=str(home), first_month="2026-01")
        warehouse = Warehouse(settings.warehouse_url)
        try:
            frame = warehouse.read(table)
        finally:
            warehouse.dispose()
        return frame[columns].sort_values(order).reset_index(drop=True)

    # Clean rows: every item both versions hold, the derived administration date and the patient key.
    shared = [c for c in clean_activity.c.keys() if c != "file_sha256"  # the files' bytes differ
              and (c not in SACT.version(V3).own | SACT.version(V4).own or c == "administration_date")]
    order = ["reporting_month", "trust_code", "row_number"]
    clean = {v: warehouse_rows(homes[v], clean_activity, shared, order) for v in (V3, V4)}
    assert len(clean[V3]) > 300
    pd.testing.assert_frame_equal(clean[V3], clean[V4])
    # Counts, and where every row went, per file version (names and hashes differ: the bytes do).
    counted = ["reporting_month", "trust_code", "submitted_at", "in_use", *MEASURES, "raw_rows",
               "clean_rows", "quarantined_rows", "duplicate_rows", "opted_out_rows"]
    versions = {v: warehouse_rows(homes[v], clean_file_versions, counted, ["reporting_month", "trust_code",
                                                                             "submitted_at"]) for v in (V3, V4)}
    assert versions[V3]["quarantined_rows"].sum() > 0  # the generated defects were there to be equal
    pd.testing.assert_frame_equal(versions[V3], versions[V4])


# --- the data set as data: an analyst corrects a v4 header name -----------------------------------------------

def corrected_table(tmp_path: Path, name: str, v4_header: str) -> Path:
    """A copy of the packaged table with one item's v4 header renamed, as an analyst would edit it."""
    with PACKAGED_TABLE.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        if row["name"] == name:
            row["v4_header"] = v4_header
    path = tmp_path / "sact_items.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def renamed_v4_file(path: Path, old: str, new: str) -> Path:
    """A valid v4 file whose header says `new` where the packaged table says `old`."""
    write_submission(path, [{"start_date_of_regimen": "2026-05-04", "start_date_of_cycle": "2026-05-04",
                             "date_decision_to_treat": "2026-04-28",
                             "administration_timestamp_infusion": "2026-05-04T10:15:00+01:00"}], version=V4)
    header, rest = path.read_text().split("\n", 1)
    path.write_text(",".join(new if h == old else h for h in header.split(",")) + "\n" + rest)
    return path


def test_a_v4_header_renamed_in_the_table_is_read(tmp_path):
    old = SACT.by_name["drug_name"].header(V4)
    table = corrected_table(tmp_path, "drug_name", "Drug_Name_Given")
    path = renamed_v4_file(tmp_path / "SACT_RR8_202605_20260610090000.csv", old, "Drug_Name_Given")
    text = path.read_text()

    with pytest.raises(SubmissionRejected) as caught:
        parse_csv_text(path.name, text)  # the packaged table does not know the new name
    assert str(caught.value) == (f"{path.name}: missing mandatory columns: Drug_Name "
                                 "(the header is closest to SACT v4)")

    corrected = load_data_set({"SACT_DATA_SET_FILE": str(table)})
    assert corrected.digest != SACT.digest
    frame, version, extras = parse_csv_text(path.name, text, data_set=corrected)
    assert version == V4 and not extras
    assert frame["drug_name"].tolist() == [VALID_V4_ROW["drug_name"]]


def test_a_corrected_table_is_used_by_the_whole_pipeline(tmp_path):
    """SACT_DATA_SET_FILE read by a refresh in its own process (the table is loaded at import): the renamed
    header is read, the trust published in v4; without it the same file is rejected."""
    old = SACT.by_name["drug_name"].header(V4)
    table = corrected_table(tmp_path, "drug_name", "Drug_Name_Given")
    for corrected in (False, True):
        home = tmp_path / ("corrected" if corrected else "packaged")
        renamed_v4_file(home / "landing" / "RR8" / "SACT_RR8_202605_20260610090000.csv", old, "Drug_Name_Given")
        env = {k: v for k, v in os.environ.items() if k not in SETTING_VARIABLES}
        if corrected:
            env["SACT_DATA_SET_FILE"] = str(table)
        done = subprocess.run([sys.executable, "-m", "sact_pipeline.cli", "refresh", "--home", str(home),
                               "--first-month", "2026-05"], env=env, capture_output=True, text=True, timeout=600)
        if corrected:
            assert done.returncode == 0, done.stderr[-3000:]
            row = published(home, "2026-05").set_index("org_code").loc["RR8"]
            assert (row["sact_version"], row["submission_status"]) == (V4, "on_time")
            assert row["drug_administrations"] != ""
        else:
            assert done.returncode != 0
            assert "missing mandatory columns: Drug_Name" in done.stdout + done.stderr


def test_a_table_that_changes_what_may_not_change_is_refused_naming_it(tmp_path):
    path = corrected_table(tmp_path, "drug_name", "Drug_Name")
    text = path.read_text().replace("\n34,administration_date,", "\n34,date_administered,", 1)
    path.write_text(text)
    with pytest.raises(DataSetError, match="SACT_DATA_SET_FILE.*items, names, types or identifier flags"):
        load_data_set({"SACT_DATA_SET_FILE": str(path)})

    lines = PACKAGED_TABLE.read_text(encoding="utf-8").splitlines()
    broken = tmp_path / "broken.csv"
    header = next(csv.reader([lines[0]]))
    row = next(csv.reader([lines[5]]))
    row[header.index("type")] = "colour"
    broken.write_text("\n".join([lines[0], *lines[1:5], ",".join(f'"{v}"' for v in row), *lines[6:]]) + "\n")
    with pytest.raises(DataSetError, match=r"broken\.csv line 6, column type: 'colour' is not one of"):
        read_table(broken)


def test_dagster_runs_use_the_transition_months_the_cli_was_given(tmp_path):
    """Both months are in the clean fingerprint: a Dagster run on other months would re-derive every clean
    trust-month the CLI had just made, and judge v3 files by other dates."""
    from sact_pipeline.resources import SactPipelineResource

    settings = Settings.from_env(env={"SACT_V4_FIRST_MONTH": "2026-05", "SACT_V4_ONLY_FROM": "2026-09"},
                                 home=str(tmp_path))
    pipeline = SactPipelineResource.from_settings(settings).pipeline()
    try:
        assert pipeline.settings.transition == settings.transition
        assert (settings.transition.v4_from, settings.transition.v4_only_from) == ("2026-05", "2026-09")
    finally:
        pipeline.warehouse.dispose()
