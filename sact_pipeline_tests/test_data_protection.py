"""Data protection end to end: opt-outs, key changes and rekey, and no identifier anywhere downstream.

The whole pipeline runs through the CLI (so through Dagster) on generated data whose NHS numbers, names,
postcodes and dates of birth are read back from the landing zone: they are the known identifiers.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from sact_pipeline.domain import nhs_number
from sact_pipeline.domain.counting import MEASURES, count_activity
from sact_pipeline.domain.pseudonymise import Pseudonymiser
from sact_pipeline.layers import Pipeline
from sact_pipeline.settings import Settings
from sact_pipeline.tables import (
    clean_activity,
    clean_file_versions,
    clean_quarantine,
    metadata,
    optout_files,
    optout_patients,
    raw_purges,
    raw_submissions,
    submission_files,
    trust_month_summary,
)
from sact_pipeline_tests.builders import decode_generated
from sact_pipeline_tests.support import TEST_KEY, generated_landing, published_text, run

pytestmark = pytest.mark.usefixtures("isolated_environment")  # refresh exports its settings

MONTHS = ["2024-01", "2024-02", "2024-03"]
GENERATE = ["generate", "--trusts", "3", "--months", "3", "--end-month", "2024-03", "--patients", "20",
            "--seed", "5"]
NEW_KEY = "a-new-pseudonymisation-key-for-2025-rotation-0123456789"
FILE_NAME = re.compile(r"SACT_(\w+?)_(\d{4})(\d{2})_\d{14}")


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    return generated_landing(tmp_path_factory.mktemp("generated"), GENERATE)


def landing_rows(landing: Path) -> pd.DataFrame:
    """Every row of every landing file as text, with its file, organisation and month."""
    frames = []
    for path in sorted(landing.rglob("*.csv")):
        text, _ = decode_generated(path.read_bytes())
        frame = pd.read_csv(pd.io.common.StringIO(text), dtype=str, keep_default_na=False)
        frame.columns = [c.strip().lower() for c in frame.columns]
        org, year, month = FILE_NAME.search(path.name).groups()
        frames.append(frame.assign(file_name=path.name, org=org, month=f"{year}-{month}"))
    rows = pd.concat(frames, ignore_index=True)
    rows["nhs"] = nhs_number.normalise(rows["nhs_number"])
    return rows


def refreshed_home(tmp_path: Path, generated: Path, capsys, *extra: str) -> Path:
    home = tmp_path / "sact"
    shutil.copytree(generated, home / "landing")
    code, out, err = run(capsys, "refresh", "--home", str(home), "--first-month", "2023-06", *extra)
    assert code == 0, err
    return home


def opted_out_patient(pipeline: Pipeline, rows: pd.DataFrame) -> str:
    """An NHS number with clean rows at one English trust in all three months (the most rows)."""
    clean = pipeline.warehouse.read(clean_activity)
    candidates = rows.loc[nhs_number.is_valid(rows["nhs"]) & (rows["org"] != "RQF"), "nhs"].unique()
    keys = Pseudonymiser(TEST_KEY.encode()).pseudonymise(pd.Series(candidates), "nhs_number")
    by_key = dict(zip(keys, candidates))
    held = clean.loc[clean["patient_key"].isin(by_key)]
    spread = held.groupby("patient_key").agg(months=("reporting_month", "nunique"), trusts=("trust_code", "nunique"),
                                             rows=("reporting_month", "size"))
    chosen = spread.loc[(spread["months"] == 3) & (spread["trusts"] == 1)].sort_values("rows").index[-1]
    return by_key[chosen]


def write_optouts(home: Path, *numbers: str, name: str = "optouts_20240520.csv") -> Path:
    folder = home / "optouts"
    folder.mkdir(exist_ok=True)
    path = folder / name
    spaced = [f"{n[:3]} {n[3:6]} {n[6:]}" for n in numbers]  # as typed by hand: any spacing
    path.write_text("NHS_Number\n" + "\n".join(spaced) + "\n")
    return path


def test_an_opted_out_patient_disappears_from_every_month_and_counts_drop_by_exactly_their_part(
        tmp_path, generated, capsys, warehouse_url):
    home = refreshed_home(tmp_path / "before", generated, capsys, "--warehouse-url", warehouse_url)
    pipeline = Pipeline(Settings.from_env(env={}, home=str(home), warehouse_url=warehouse_url))
    rows = landing_rows(home / "landing")
    patient = opted_out_patient(pipeline, rows)
    key = Pseudonymiser(TEST_KEY.encode()).pseudonymise(pd.Series([patient]), "nhs_number").iloc[0]
    clean_before = pipeline.warehouse.read(clean_activity)
    theirs = clean_before.loc[clean_before["patient_key"] == key]
    part = count_activity(theirs, ["reporting_month", "trust_code"]).set_index(["reporting_month", "trust_code"])
    assert len(part) == 3
    summary_before = pipeline.warehouse.read(trust_month_summary).set_index(["reporting_month", "org_code"])

    write_optouts(home, patient)
    code, out, err = run(capsys, "refresh", "--home", str(home), "--first-month", "2023-06",
                         "--warehouse-url", warehouse_url)
    assert code == 0, err
    assert "opt-outs: 3 trust-months hold patients who opted out" in out
    assert all(f"month {m}: published" in out for m in MONTHS)

    for table in (clean_activity, clean_quarantine):
        assert key not in set(pipeline.warehouse.read(table)["patient_key"])
    summary = pipeline.warehouse.read(trust_month_summary).set_index(["reporting_month", "org_code"])
    expected = summary_before.copy()
    for (month, trust), counts in part.iterrows():
        for measure in MEASURES:
            expected.loc[(month, trust), measure] -= counts[measure]
    pd.testing.assert_frame_equal(summary[list(MEASURES)], expected[list(MEASURES)])

    # The internal count of removed rows: exactly the patient's rows in each file version in use.
    versions = pipeline.warehouse.read(clean_file_versions)
    in_use = versions.loc[versions["in_use"]].set_index("file_name")["opted_out_rows"]
    theirs_in_files = rows.loc[rows["nhs"] == patient].groupby("file_name").size()
    assert in_use[in_use > 0].to_dict() == {f: n for f, n in theirs_in_files.items() if f in in_use}
    assert not any("opted" in c for c in pd.read_csv(pipeline.output_paths("2024-01")[0]).columns)

    # Every published output is what it would have been had the patient never been in the data.
    fresh = tmp_path / "fresh" / "sact"
    shutil.copytree(generated, fresh / "landing")
    write_optouts(fresh, patient)
    assert run(capsys, "refresh", "--home", str(fresh), "--first-month", "2023-06")[0] == 0  # on SQLite
    for month in MONTHS:
        assert (home / "published" / month / f"sact_submissions_{month}.csv").read_bytes() == \
            (fresh / "published" / month / f"sact_submissions_{month}.csv").read_bytes()

    code, out, _ = run(capsys, "refresh", "--home", str(home), "--first-month", "2023-06",
                       "--warehouse-url", warehouse_url)
    assert code == 0 and "0 trust-months, 0 months re-published" in out


def test_a_changed_key_is_refused_and_rekey_rederives_every_partition_under_the_new_one(
        tmp_path, generated, capsys, monkeypatch):
    home = tmp_path / "sact"
    shutil.copytree(generated, home / "landing")
    rows = landing_rows(home / "landing")
    patient, later = rows.loc[nhs_number.is_valid(rows["nhs"]) & (rows["org"] != "RQF"), "nhs"].unique()[:2]
    optouts = write_optouts(home, patient)
    assert run(capsys, "refresh", "--home", str(home), "--first-month", "2023-06")[0] == 0
    pipeline = Pipeline(Settings.from_env(env={}, home=str(home)))
    keys_before = set(pipeline.warehouse.read(clean_activity)["patient_key"])
    files = {p: p.read_bytes() for p in (home / "published").rglob("*") if p.is_file()}

    monkeypatch.setenv("SACT_PSEUDONYMISATION_KEY", NEW_KEY)
    new_id = Pseudonymiser(NEW_KEY.encode()).key_id
    code, out, err = run(capsys, "refresh", "--home", str(home), "--first-month", "2023-06")
    assert code == 2
    assert "not the key the warehouse was built with" in err and "sact-pipeline rekey" in err
    assert "registered opt-out files have no patient keys under it" in err
    assert new_id in err and NEW_KEY not in out + err and TEST_KEY not in out + err
    assert {p: p.read_bytes() for p in files} == files  # nothing ran
    write_optouts(home, later, name="optouts_20240601.csv")  # not registered under a key that is not in use
    assert run(capsys, "refresh", "--home", str(home), "--first-month", "2023-06")[0] == 2
    assert len(pipeline.warehouse.read(optout_files)) == 1

    moved = optouts.rename(tmp_path / optouts.name)
    code, out, err = run(capsys, "rekey", "--home", str(home), "--first-month", "2023-06")
    assert code == 2 and "cannot rekey" in err and optouts.name in err
    moved.rename(optouts)

    code, out, err = run(capsys, "rekey", "--home", str(home), "--first-month", "2023-06")
    assert code == 0, err
    assert f"rekey to key id {new_id}: 1 opt-out files re-derived" in out
    assert re.search(r"\[3/3\] 2024-03 .*: ok", out)  # progress, month by month
    fresh = Pipeline(Settings.from_env(env={}, home=str(home)))
    versions = fresh.warehouse.read(clean_file_versions)
    assert set(versions.loc[versions["in_use"], "pseudonymisation_key_id"]) == {new_id}
    keys_after = set(fresh.warehouse.read(clean_activity)["patient_key"])
    assert len(keys_after) == len(keys_before) - 1  # the patient of the second opt-out is gone
    assert not keys_after & keys_before  # every pseudonym re-derived
    opted_keys = set(Pseudonymiser(NEW_KEY.encode()).pseudonymise(pd.Series([patient, later]), "nhs_number"))
    assert not opted_keys & keys_after  # the first still opted out under the new key, the second applied
    assert set(fresh.warehouse.read(optout_patients)["pseudonymisation_key_id"]) == {new_id}  # old key's gone
    # The figures are those of a first run under the new key with both opt-outs: only pseudonyms changed.
    first = tmp_path / "first" / "sact"
    shutil.copytree(generated, first / "landing")
    shutil.copytree(home / "optouts", first / "optouts")
    assert run(capsys, "refresh", "--home", str(first), "--first-month", "2023-06")[0] == 0
    for month in MONTHS:
        assert fresh.output_paths(month)[0].read_bytes() == \
            (first / "published" / month / f"sact_submissions_{month}.csv").read_bytes()
    code, out, _ = run(capsys, "refresh", "--home", str(home), "--first-month", "2023-06")
    assert code == 0 and "0 trust-months, 0 months re-published" in out


@pytest.mark.parametrize("setting, reason", [
    ({"SACT_PSEUDONYMISATION_KEY": "short-key-31-bytes-long-0123456"}, "at least 32 bytes, got 31"),
    ({"SACT_PSEUDONYMISATION_KEY_FILE": "{home}/missing.key"}, "cannot read the pseudonymisation key file"),
    ({"SACT_PSEUDONYMISATION_KEY_FILE": "{home}/short.key"}, "at least 32 bytes, got 20"),
    ({}, "no pseudonymisation key"),
])
def test_a_missing_or_short_key_is_refused_with_the_reason_and_never_shown(tmp_path, generated, capsys,
                                                                          monkeypatch, setting, reason):
    home = tmp_path / "sact"
    shutil.copytree(generated, home / "landing")
    (home / "short.key").write_text("twenty-bytes-key-000\n")
    monkeypatch.delenv("SACT_PSEUDONYMISATION_KEY")
    for name, value in setting.items():
        monkeypatch.setenv(name, value.format(home=home))
    code, out, err = run(capsys, "refresh", "--home", str(home), "--first-month", "2023-06")
    assert code == 2 and reason in err
    assert "short-key-31" not in out + err and "twenty-bytes" not in out + err
    assert not (home / "published").exists() and not (home / "warehouse.db").exists()


def test_no_identifier_reaches_any_table_but_raw_any_output_file_the_event_log_or_the_run_logs(
        tmp_path, generated, capsys):
    home = tmp_path / "sact"
    shutil.copytree(generated, home / "landing")
    rows = landing_rows(home / "landing")
    opted = rows.loc[nhs_number.is_valid(rows["nhs"]), "nhs"].unique()[:5]
    write_optouts(home, *opted)
    code, out, err = run(capsys, "refresh", "--home", str(home), "--first-month", "2023-06")
    assert code == 0, err

    identifiers = set()
    for column in ("nhs_number", "nhs", "local_patient_identifier", "person_family_name", "person_given_name",
                   "patient_postcode", "date_of_birth"):
        identifiers |= {v.strip() for v in rows[column] if len(v.strip()) >= 4}
    identifiers |= {p.replace(" ", "") for p in rows["patient_postcode"] if len(p.strip()) >= 5}
    assert len(identifiers) > 300 and set(opted) <= identifiers
    names = {v.strip() for c in ("person_family_name", "person_given_name") for v in rows[c] if len(v.strip()) >= 4}

    warehouse = Pipeline(Settings.from_env(env={}, home=str(home))).warehouse
    downstream = {f"table {t.name}": warehouse.read(t).to_csv() for t in metadata.sorted_tables if t is not raw_submissions}
    for path in (home / "published").rglob("*"):  # the pack, feedback files, data-quality report, Data Docs
        if path.is_file():
            downstream[f"published file {path.relative_to(home)}"] = published_text(path)
    for path in (home / "data_docs_store").rglob("*"):  # the suite results behind the Data Docs
        if path.is_file():
            downstream[f"data docs store {path.relative_to(home)}"] = path.read_text()
    # The Dagster instance: event log and run storage (SQLite), compute logs (the run logs), everything.
    for path in (home / "dagster").rglob("*"):
        if path.is_file():
            downstream[f"dagster file {path.relative_to(home)}"] = path.read_bytes().decode("utf-8", "replace")
    downstream["refresh output"] = out + err
    assert len(downstream) > 20
    leaks = []
    for where, text in downstream.items():
        words = set(re.findall(r"[\w'’-]+", text))
        leaks += [(where, v) for v in identifiers if (v in words if v in names else v in text)]
    assert leaks == []
    assert TEST_KEY not in "".join(downstream.values())


def months_to_keep_from(first_kept: str) -> int:
    """--keep-months that keeps `first_kept` and every later month, from today's last ended month."""
    from datetime import date

    from sact_pipeline.domain.counting import previous_month

    last = previous_month(date.today().strftime("%Y-%m"))
    return (int(last[:4]) * 12 + int(last[5:])) - (int(first_kept[:4]) * 12 + int(first_kept[5:])) + 1


def test_a_raw_purge_keeps_the_registers_and_every_later_layer_and_optouts_still_reach_purged_months(
        tmp_path, generated, capsys):
    home = refreshed_home(tmp_path, generated, capsys)
    pipeline = Pipeline(Settings.from_env(env={}, home=str(home)))
    landing_before = sorted(p.name for p in (home / "landing").rglob("*.csv"))
    rows = landing_rows(home / "landing")
    registers = {t: pipeline.warehouse.read(t) for t in (submission_files, clean_activity, trust_month_summary)}
    published = {p: p.read_bytes() for p in (home / "published").rglob("*") if p.is_file()}
    keep = months_to_keep_from("2024-02")

    code, out, err = run(capsys, "purge-raw", "--home", str(home))
    assert code == 2 and "SACT_RAW_RETENTION_MONTHS" in err
    code, out, err = run(capsys, "purge-raw", "--home", str(home), "--keep-months", "1")  # a month still open
    assert code == 2 and "at least 2 months (SACT_DEADLINE_MONTHS + 1)" in err
    code, out, _ = run(capsys, "purge-raw", "--home", str(home), "--keep-months", str(keep), "--dry-run")
    january = rows.loc[rows["month"] == "2024-01"]
    assert code == 0 and f"would purge {len(january)} identifiable raw rows of 4 trust-months and " \
                         f"{january['file_name'].nunique()} files from before 2024-02" in out
    assert sorted(p.name for p in (home / "landing").rglob("*.csv")) == landing_before

    code, out, err = run(capsys, "purge-raw", "--home", str(home), "--keep-months", str(keep))
    assert code == 0, err
    raw = pipeline.warehouse.read(raw_submissions)
    assert sorted(set(raw["reporting_month"])) == ["2024-02", "2024-03"]
    assert len(raw) == len(rows) - len(january)
    assert sorted(p.name for p in (home / "landing").rglob("*.csv")) == sorted(
        n for n in landing_before if n not in set(january["file_name"]))
    for table, before in registers.items():  # the file register and every later layer: untouched
        pd.testing.assert_frame_equal(pipeline.warehouse.read(table), before)
    assert {p: p.read_bytes() for p in published} == published
    purges = pipeline.warehouse.read(raw_purges)
    assert purges["raw_rows"].sum() == len(january) and set(purges["reporting_month"]) == {"2024-01"}
    code, out, _ = run(capsys, "refresh", "--home", str(home), "--first-month", "2023-06")
    assert code == 0 and "0 trust-months, 0 months re-published" in out

    # An opt-out still reaches the purged month: its clean rows lose the patient, its counts drop.
    patient = opted_out_patient(pipeline, rows)
    key = Pseudonymiser(TEST_KEY.encode()).pseudonymise(pd.Series([patient]), "nhs_number").iloc[0]
    clean = registers[clean_activity]
    theirs = clean.loc[clean["patient_key"] == key]
    part = count_activity(theirs, ["reporting_month", "trust_code"]).set_index(["reporting_month", "trust_code"])
    write_optouts(home, patient)
    code, out, err = run(capsys, "refresh", "--home", str(home), "--first-month", "2023-06")
    assert code == 0, err
    assert key not in set(pipeline.warehouse.read(clean_activity)["patient_key"])
    summary = pipeline.warehouse.read(trust_month_summary).set_index(["reporting_month", "org_code"])
    before = registers[trust_month_summary].set_index(["reporting_month", "org_code"])
    for (month, trust), counts in part.iterrows():
        assert summary.loc[(month, trust), list(MEASURES)].tolist() == \
            (before.loc[(month, trust), list(MEASURES)] - counts[list(MEASURES)]).tolist()
    versions = pipeline.warehouse.read(clean_file_versions)
    january_in_use = versions.loc[versions["in_use"] & (versions["reporting_month"] == "2024-01")]
    assert january_in_use["opted_out_rows"].sum() == ((january["nhs"] == patient)
                                                      & january["file_name"].isin(january_in_use["file_name"])).sum()
