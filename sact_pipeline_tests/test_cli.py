"""`sact-pipeline` end to end on generated data, through Dagster, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from dagster import AssetCheckKey, AssetKey, DagsterInstance, RunsFilter

from sact_pipeline.domain.publication import PUBLISHED_COLUMNS
from sact_pipeline.settings import Settings
from sact_pipeline.warehouse import Warehouse
from sact_pipeline.tables import rejected_files
from sact_pipeline_tests.support import (
    REPOSITORY,
    dagster_postgres_variables,
    generated_landing,
    published,
    run,
)

MONTHS = ["2024-01", "2024-02", "2024-03"]
GENERATE = ["generate", "--trusts", "6", "--months", "3", "--end-month", "2024-03", "--patients", "25",
            "--seed", "11"]
pytestmark = pytest.mark.usefixtures("isolated_environment")  # refresh exports its settings


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """One generated landing zone, copied into each test's SACT_HOME."""
    return generated_landing(tmp_path_factory.mktemp("generated"), GENERATE)


def home_with_landing(tmp_path: Path, generated: Path) -> Path:
    home = tmp_path / "sact"
    shutil.copytree(generated, home / "landing")
    return home


def test_refresh_publishes_every_month_and_a_second_refresh_changes_nothing(tmp_path, generated, capsys):
    home = home_with_landing(tmp_path, generated)
    code, out, err = run(capsys, "refresh", "--home", str(home), "--first-month", "2023-06")
    assert code == 0, err
    for month in MONTHS:
        assert f"month {month}: published" in out
        assert str(home / "published" / month / f"sact_submissions_{month}.csv") in out

    files = sorted(p for p in (home / "landing").rglob("*.csv"))
    late_trust = None
    for month in MONTHS:
        table = published(home, month)
        assert list(table.columns) == list(PUBLISHED_COLUMNS)
        assert table["org_code"].iloc[-1] == "ENGLAND"
        assert table["org_code"].iloc[:-1].tolist() == sorted(table["org_code"].iloc[:-1])
        assert "RQF" not in set(table["org_code"])  # Welsh trust processed, never published
        assert (table["reporting_month"] == month).all()
        counts = table[["patients", "regimens", "cycles", "drug_administrations"]].to_numpy().ravel()
        assert not [c for c in counts if re.fullmatch(r"[1-7]", c)]
        assert all(re.fullmatch(r"|0|\*|\[c\]|[1-9][0-9]*[05]", c) for c in counts)
        if "late" in set(table["submission_status"]):
            late_trust = table.loc[table["submission_status"] == "late", "org_code"].iloc[0]
        notes = (home / "published" / month / f"sact_submissions_{month}_notes.txt").read_text()
        assert "National Disease Registration Service" in notes and "[c]" in notes
    assert late_trust is not None, "the generated late submission is published as late"
    march = published(home, "2024-03").set_index("org_code")
    assert "missing" in set(march["submission_status"])
    missing = march.loc[march["submission_status"] == "missing"].iloc[0]
    assert missing[["patients", "patients_change", "submitted_at"]].tolist() == ["", "", ""]
    february = published(home, "2024-02").set_index("org_code")
    assert february.loc["ENGLAND", "patients_change"] != ""  # changes from the published January figures

    instance_home = home / "dagster"
    with DagsterInstance.from_config(str(instance_home)) as instance:
        runs_before = len(instance.get_runs())
        # One run per month builds all of its trust-months, each with its own materialisation and checks.
        assert len(instance.get_runs(RunsFilter(job_name="trust_month_refresh"))) == 3
        assert len(instance.get_materialized_partitions(AssetKey("clean_activity"))) == 7 * 3 - 1
        checks = instance.event_log_storage.get_asset_check_execution_history(
            AssetCheckKey(AssetKey("clean_activity"), "gx_clean_activity"), limit=100)
        assert sorted(c.partition for c in checks if c.status.value == "SUCCEEDED") == sorted(
            instance.get_materialized_partitions(AssetKey("clean_activity")))
        assert len(instance.get_runs(RunsFilter(job_name="month_publication"))) == 3
    before = {p: p.read_bytes() for p in (home / "published").rglob("*")if p.is_file()}

    code, out, err = run(capsys, "refresh", "--home", str(home), "--first-month", "2023-06")
    assert code == 0, err
    assert "0 trust-months, 0 months re-published" in out
    assert {p: p.read_bytes() for p in (home / "published").rglob("*") if p.is_file()} == before
    with DagsterInstance.from_config(str(instance_home)) as instance:
        assert len(instance.get_runs()) == runs_before + 1  # only the discovery run
    assert files == sorted(p for p in (home / "landing").rglob("*.csv"))  # the landing zone is never touched


def test_a_late_resubmission_republishes_its_month_and_the_next(tmp_path, generated, capsys):
    home = home_with_landing(tmp_path, generated)
    assert run(capsys, "refresh", "--home", str(home), "--first-month", "2023-06")[0] == 0
    march_before = (home / "published" / "2024-03" / "sact_submissions_2024-03.csv").read_bytes()
    january_before = published(home, "2024-01").set_index("org_code")
    january_file = next(p for p in sorted((home / "landing").rglob("SACT_*_202401_*.csv"))
                        if p.name.split("_")[1] in january_before.index)  # an English trust's file
    org = january_file.name.split("_")[1]
    lines = january_file.read_bytes().splitlines(keepends=True)
    corrected = home / "landing" / "late" / f"SACT_{org}_202401_20240420120000.csv"
    corrected.parent.mkdir()
    corrected.write_bytes(b"".join(lines[: max(2, len(lines) // 2)]))  # a correction with half the rows
    code, out, err = run(capsys, "refresh", "--home", str(home), "--first-month", "2023-06")
    assert code == 0, err
    assert f"[1/1] 2024-01 {org}: ok" in out
    assert "month 2024-01: published" in out and "month 2024-02: published" in out
    assert "month 2024-03" not in out
    assert (home / "published" / "2024-03" / "sact_submissions_2024-03.csv").read_bytes() == march_before
    assert str(corrected.name) in (home / "published" / "2024-01" / "sact_submissions_2024-01_notes.txt").read_text()
    january = published(home, "2024-01").set_index("org_code")
    assert january.loc[org, "submitted_at"] == "2024-04-20T12:00:00"
    assert january.loc[org, "submission_status"] == january_before.loc[org, "submission_status"]  # first version
    assert int(january.loc[org, "drug_administrations"]) < int(january_before.loc[org, "drug_administrations"])

    # A backfill re-runs what it names, whatever the fingerprints say, and re-publishes the month after.
    january_csv = (home / "published" / "2024-01" / "sact_submissions_2024-01.csv").read_bytes()
    code, out, err = run(capsys, "backfill", "--home", str(home), "--first-month", "2023-06",
                         "--from", "2024-01", "--to", "2024-01", "--trust", org.lower())
    assert code == 0, err
    assert f"[1/1] 2024-01 {org}: ok" in out
    assert "month 2024-01: published" in out and "month 2024-02: published" in out
    assert "month 2024-03" not in out
    assert (home / "published" / "2024-01" / "sact_submissions_2024-01.csv").read_bytes() == january_csv
    code, out, err = run(capsys, "backfill", "--home", str(home), "--from", "2024-02", "--to", "2024-01")
    assert code == 2 and "is after" in err
    code, out, err = run(capsys, "backfill", "--home", str(home), "--first-month", "2023-06",
                         "--from", "2024-03", "--to", "2024-03", "--trust", "RZZ")
    assert code == 1 and "no accepted submission from RZZ" in err


def test_a_rejected_file_is_recorded_left_in_place_and_fails_the_refresh(tmp_path, generated, capsys):
    home = home_with_landing(tmp_path, generated)
    bad = home / "landing" / "SACT_ZZZ_202402_20240305100000.csv"
    shutil.copy(next((home / "landing").rglob("SACT_*_202402_*.csv")), bad)
    empty = home / "landing" / "SACT_RR8_202402_20240306100000.csv"
    empty.write_bytes(b"")
    code, out, err = run(capsys, "refresh", "--home", str(home), "--first-month", "2023-06")
    assert code == 1
    assert "REJECTED SACT_ZZZ_202402_20240305100000.csv: unknown organisation ZZZ" in err
    assert "REJECTED SACT_RR8_202402_20240306100000.csv: empty file" in err
    assert bad.exists() and empty.exists()
    assert (home / "published" / "2024-02" / "sact_submissions_2024-02.csv").exists()  # the rest still ran
    settings = Settings.from_env(env={}, home=str(home))
    rejected = Warehouse(settings.warehouse_url).read(rejected_files)
    assert sorted(rejected["file_name"]) == [empty.name, bad.name]
    code, out, err = run(capsys, "refresh", "--home", str(home), "--first-month", "2023-06")
    assert code == 1 and "REJECTED SACT_ZZZ_202402_20240305100000.csv" in err  # until it is moved out
    assert "0 trust-months, 0 months re-published" in out
    bad.unlink()
    empty.unlink()
    assert run(capsys, "refresh", "--home", str(home), "--first-month", "2023-06")[0] == 0


def test_postgresql_warehouse_and_dagster_instance_give_the_same_publication(tmp_path, generated, capsys,
                                                                             postgres_url, monkeypatch):
    sqlite_home = home_with_landing(tmp_path / "a", generated)
    assert run(capsys, "refresh", "--home", str(sqlite_home), "--first-month", "2023-06")[0] == 0

    pg_home = home_with_landing(tmp_path / "b", generated)
    dagster_home = tmp_path / "dagster-pg"
    dagster_home.mkdir()
    shutil.copy(REPOSITORY / "dagster.yaml", dagster_home / "dagster.yaml")
    for name, value in dagster_postgres_variables(postgres_url).items():
        monkeypatch.setenv(name, value)
    code, out, err = run(capsys, "refresh", "--home", str(pg_home), "--first-month", "2023-06",
                         "--warehouse-url", postgres_url, "--dagster-home", str(dagster_home))
    assert code == 0, err
    for month in MONTHS:
        pd.testing.assert_frame_equal(published(pg_home, month), published(sqlite_home, month))
    engine = sa.create_engine(sa.engine.make_url(postgres_url).set(drivername="postgresql+psycopg2"))
    with engine.connect() as connection:  # the Dagster runs are stored in PostgreSQL, not in SQLite files
        runs = connection.execute(sa.text("select count(*) from runs where status = 'SUCCESS'")).scalar()
        published_rows = connection.execute(sa.text("select count(*) from published.published_submissions")).scalar()
    engine.dispose()
    assert runs == 1 + 3 + 3  # discovery, one trust-month run per month, one publication per month
    assert published_rows == sum(len(published(pg_home, m)) for m in MONTHS)
    assert not list(dagster_home.glob("**/*.db"))


def test_generate_at_england_scale_is_skewed_and_grows_with_the_factor(tmp_path, capsys):
    import collections

    counts = {}
    for factor in ("0.25", "0.5"):
        home = tmp_path / factor
        code, out, err = run(capsys, "generate", "--home", str(home), "--scale", factor, "--end-month", "2024-03")
        assert code == 0, err
        per_trust = collections.Counter()
        for path in (home / "landing").rglob("*.csv"):
            per_trust[path.name.split("_")[1]] += path.read_bytes().count(b"\n") - 1  # data rows
        counts[factor] = per_trust
    quarter, half = counts["0.25"], counts["0.5"]
    # 150 English trusts and the Welsh one, less the trust whose role is to miss the (only) month.
    assert len(quarter) == len(half) == 150
    assert 0.8 * 450_000 / 4 < sum(quarter.values()) < 1.2 * 450_000 / 4
    assert 1.8 < sum(half.values()) / sum(quarter.values()) < 2.2  # linear in the factor
    sizes = sorted(half.values())
    assert sizes[-1] > 30 * sizes[1]  # large cancer centres against small trusts
    code, _, err = run(capsys, "generate", "--home", str(tmp_path / "bad"), "--scale", "big")
    assert code == 2 and "--scale takes 'england' or a positive factor" in err
