"""Faults in real processes: a refresh SIGKILLed at a point, two refreshes at once, PostgreSQL restarting
mid-run (a server of the test's own). Real SQLite and PostgreSQL warehouses, real Dagster instance folders,
real files; the only thing injected is the fault itself (sact_pipeline_tests/fault_harness.py).

The scenario: step 1 refreshed January to a published state P; step 2 brings a resubmission of one
trust's January (half its rows) and February's files, so a refresh loads new trust-months AND re-publishes
an already published month (January, then February). What a user relies on after any fault: the
published tables and files are P's until the new publication is committed, the warehouse is consistent,
and the next refresh ends exactly where an uninterrupted one does, with no staging files left over.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter
from sqlalchemy.engine import make_url

from sact_pipeline_tests.fault_harness import (
    consistency_problems,
    finish,
    output_files,
    run_refresh,
    snapshot,
    snapshot_differences,
    start_refresh,
    stray_staging_files,
    warehouse_tables,
)
from sact_pipeline_tests.private_postgres import PrivateServer
from sact_pipeline_tests.support import create_database, drop_database, generated_landing

GENERATE = ["generate", "--trusts", "3", "--months", "2", "--end-month", "2024-02", "--patients", "10", "--seed", "5"]
RESUBMITTED = "SACT_RR8_202401_20240420120000.csv"  # step 2: RR8's January again, half its rows
STEP2_DONE = "4 trust-months, 2 months re-published"  # RR8 January, February's three; January and February
NOTHING_TO_DO = "0 trust-months, 0 months re-published"
PUBLISHED_TABLES = ("published_submissions",)

# Where a step-2 refresh is killed (fault_harness SPEC), and whether the publication's commit came first.
KILL_POINTS = {
    # Parsing February's first file: RR8's January is loaded, cleaned and assessed; nothing re-published.
    "parse": ("sact_pipeline.raw_layer:read_submission@2:before", False),
    # Inside RR8 January's clean write (a published trust-month re-derived): rows inserted, not committed.
    # (The PostgreSQL restart test below does the same inside February's first raw write.)
    "clean-load-uncommitted": ("sact_pipeline.warehouse:Warehouse._ready[clean_activity]@1:loaded", False),
    # Re-publishing January: its pack is built, the publication's transaction not started.
    "publish-before-commit": ("sact_pipeline.warehouse:Warehouse.replace[published]@1:before", False),
    # Re-publishing January: the warehouse committed, the files not yet put in their final places.
    # (The data-quality feedback files are swapped in the same way: the filter picks the publication pack.)
    "publish-after-commit": ("sact_pipeline.gating:_place_files[sact_submissions_2024]@1:before", True),
}


def sqlite_url(home: Path) -> str:
    return f"sqlite:///{home / 'warehouse.db'}"


def pack_files(output_dir: Path) -> dict[str, bytes]:
    """The monthly publication packs (CSV, notes, workbook, HTML, manifest) as bytes."""
    return {name: data for name, data in output_files(output_dir).items()
            if name.split("/")[-1].startswith("sact_submissions_")}


def published_tables(url: str) -> dict[str, list]:
    tables = warehouse_tables(url)
    states = [row for row in tables["layer_state"] if row[0] == "published"]
    return {**{name: tables[name] for name in PUBLISHED_TABLES}, "layer_state (published)": states}


@dataclass
class Scenario:
    step2_files: list[tuple[Path, str]]  # (file, path in the landing zone)
    p_home: Path  # step 1 done: January published (SQLite warehouse in it)
    p_published: dict[str, list]
    p_packs: dict[str, bytes]
    reference: dict  # snapshot of an uninterrupted step-2 refresh from P
    pg_template: str | None = None  # P's warehouse on PostgreSQL, and its home
    pg_home: Path | None = None

    def home_from_p(self, tmp_path: Path, source: Path | None = None) -> Path:
        """A copy of P's home with step 2's files in its landing zone."""
        home = tmp_path / "sact"
        shutil.copytree(source or self.p_home, home)
        for path, relative in self.step2_files:
            target = home / "landing" / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
        return home


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> Scenario:
    base = tmp_path_factory.mktemp("faults")
    landing = generated_landing(base / "generated", GENERATE)
    january = landing / "202401" / next(p.name for p in (landing / "202401").glob("SACT_RR8_202401_*.csv"))
    lines = january.read_bytes().splitlines(keepends=True)
    resubmitted = base / RESUBMITTED
    resubmitted.write_bytes(b"".join(lines[: max(2, len(lines) // 2)]))
    step2 = [(p, p.relative_to(landing).as_posix()) for p in sorted((landing / "202402").glob("*.csv"))]
    step2.append((resubmitted, f"late/{RESUBMITTED}"))

    p_home = base / "p" / "sact"
    shutil.copytree(landing / "202401", p_home / "landing" / "202401")
    run = run_refresh(p_home)
    assert run.returncode == 0 and "month 2024-01: published" in run.out, f"step 1 failed:\n{run.output}"
    scenario = Scenario(step2, p_home, published_tables(sqlite_url(p_home)), pack_files(p_home / "published"), {})

    reference_home = scenario.home_from_p(base / "reference")
    run = run_refresh(reference_home)
    assert run.returncode == 0 and STEP2_DONE in run.out, f"the uninterrupted step 2 failed:\n{run.output}"
    scenario.reference = snapshot(reference_home)
    assert consistency_problems(sqlite_url(reference_home)) == []
    return scenario


# --- PostgreSQL warehouses: P's made once, copied (CREATE DATABASE ... TEMPLATE) for each test ---------------

def _database_url(server_url: str, name: str) -> str:
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def pg_scenario(scenario, postgres_server_url, tmp_path_factory) -> Scenario:
    """Step 1 again on a PostgreSQL warehouse: P's database (a template) and its home."""
    name = create_database(postgres_server_url, prefix="sact_fault_")
    try:
        home = tmp_path_factory.mktemp("pg-p") / "sact"
        shutil.copytree(scenario.p_home / "landing", home / "landing")
        run = run_refresh(home, warehouse_url=_database_url(postgres_server_url, name))
        assert run.returncode == 0 and "month 2024-01: published" in run.out, f"step 1 failed:\n{run.output}"
        scenario.pg_template, scenario.pg_home = name, home
        yield scenario
    finally:
        drop_database(postgres_server_url, name)


@pytest.fixture
def pg_copy_of_p(pg_scenario, postgres_server_url):
    """A fresh PostgreSQL warehouse holding P (dropped afterwards)."""
    name = create_database(postgres_server_url, prefix="sact_fault_", template=pg_scenario.pg_template)
    yield _database_url(postgres_server_url, name)
    drop_database(postgres_server_url, name)


def assert_recovers_to_reference(home: Path, reference: dict, url: str | None = None):
    """A refresh (not killed) exits 0 and ends where an uninterrupted step 2 did, with no staging files
    and no run left "started" in the Dagster instance; a further refresh changes nothing. Returns the run."""
    run = run_refresh(home, warehouse_url=url)
    assert run.returncode == 0, f"the refresh after the fault failed:\n{run.output}"
    with DagsterInstance.from_config(str(home / "dagster")) as instance:
        in_flight = instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
                                                           DagsterRunStatus.STARTED]))
    assert in_flight == [], "runs of the killed refresh are still 'started': the sensor would wait for them"
    differences = snapshot_differences(snapshot(home, url), reference)
    assert differences == [], "after recovery, outputs or warehouse differ from an uninterrupted refresh"
    assert stray_staging_files(home / "published", home / "file_swaps") == [], "staging files left behind"
    assert consistency_problems(url or sqlite_url(home)) == []
    before = output_files(home / "published")
    again = run_refresh(home, warehouse_url=url)
    assert again.returncode == 0 and NOTHING_TO_DO in again.out, f"a further refresh found work:\n{again.output}"
    assert output_files(home / "published") == before, "a further refresh changed published files"
    return run


# --- a refresh killed at a point --------------------------------------------------------------------------------

@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_a_refresh_killed_at_any_point_leaves_a_consistent_state_and_the_next_refresh_completes(
        point, scenario, tmp_path):
    spec, after_commit = KILL_POINTS[point]
    home = scenario.home_from_p(tmp_path)
    url = sqlite_url(home)

    run = run_refresh(home, kill_at=spec)
    assert run.killed and f"SIGKILL at {spec}" in run.err, f"the refresh was not killed at {spec}:\n{run.output}"
    assert consistency_problems(url) == [], f"inconsistent warehouse after a kill at {point}"
    published = published_tables(url)
    if not after_commit:
        assert published == scenario.p_published, f"published tables changed by a refresh killed at {point}"
        changed = sorted(name for name in set(scenario.p_packs) | set(pack_files(home / "published"))
                         if pack_files(home / "published").get(name) != scenario.p_packs.get(name))
        assert changed == [], "published files differ from P's after a kill before the publication's commit"
    else:  # committed: January's new table is the publication, and its files follow from the journal
        new_january = [row for row in scenario.reference["tables"]["published_submissions"] if row[0] == "2024-01"]
        january = [row for row in published["published_submissions"] if row[0] == "2024-01"]
        assert january == new_january, "the committed publication is not January's new table"
        assert january != [row for row in scenario.p_published["published_submissions"] if row[0] == "2024-01"]

    recovery = assert_recovers_to_reference(home, scenario.reference)
    assert "marked failed: the process running it was killed" in recovery.out
    if point.startswith("publish"):  # the refresh settled the killed one's journal before anything else
        settled = "recovered: completed" if after_commit else "recovered: rolled back"
        assert f"{settled} an interrupted write of sact_submissions_2024-01" in recovery.out, recovery.output


# --- two refreshes at once ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("warehouse", ["sqlite", "postgresql"])
def test_two_refreshes_at_once_both_succeed_and_publish_once(warehouse, scenario, tmp_path, request):
    if warehouse == "sqlite":
        home, url = scenario.home_from_p(tmp_path), None
    else:
        url = request.getfixturevalue("pg_copy_of_p")
        home = request.getfixturevalue("pg_scenario").home_from_p(tmp_path, source=scenario.pg_home)
    first = start_refresh(home, warehouse_url=url)
    second = start_refresh(home, warehouse_url=url)
    runs = [finish(first), finish(second)]
    for run in runs:
        assert run.returncode == 0, f"one of two refreshes at once failed:\n{run.output}"
    url = url or sqlite_url(home)
    assert consistency_problems(url) == []
    differences = snapshot_differences(snapshot(home, url), scenario.reference)
    assert differences == [], "two refreshes at once ended elsewhere than one uninterrupted refresh"
    assert stray_staging_files(home / "published", home / "file_swaps") == []
    assert sorted(STEP2_DONE in run.out for run in runs) == [False, True] and any(
        NOTHING_TO_DO in run.out for run in runs), (
        "one refresh does the work and the other, waiting for it, finds nothing to do:\n"
        + "\n".join(run.output for run in runs))


# --- PostgreSQL restarting in the middle of a run -----------------------------------------------------------------

@pytest.fixture
def private_copy_of_p(pg_scenario, postgres_server_url):
    """P's PostgreSQL warehouse on a server of the test's own, which the test may restart while the rest of
    the suite goes on using the shared one."""
    server = PrivateServer()
    try:
        yield server, server.copy_database(_database_url(postgres_server_url, pg_scenario.pg_template), "sact_p")
    finally:
        server.remove()


def test_postgresql_restarting_inside_a_write_leaves_no_partial_table(pg_scenario, private_copy_of_p, tmp_path):
    server, url = private_copy_of_p
    home = pg_scenario.home_from_p(tmp_path, source=pg_scenario.pg_home)
    # February's first raw write: rows copied in, not committed, when the server restarts under it.
    spec = "sact_pipeline.warehouse:Warehouse._ready[raw_submissions]@2:loaded"
    run = run_refresh(home, kill_at=spec, hook=server.restart_command, warehouse_url=url)
    assert "hook exited 0" in run.err, f"PostgreSQL was not restarted at {spec}:\n{run.output}"
    server.wait_until_up()
    assert run.returncode in (0, 1), f"the refresh neither succeeded nor failed cleanly:\n{run.output}"
    assert consistency_problems(url) == [], "a partial write survived the restart"
    if run.returncode == 0:  # the write lost its connection, and its step was retried (backoff) and succeeded
        assert "FAILED" not in run.out + run.err
        with DagsterInstance.from_config(str(home / "dagster")) as instance:
            retries = [event for record in instance.get_runs() for event in instance.all_logs(
                record.run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY)]
        assert retries, "the refresh succeeded without retrying: the restart did not reach the write"
    assert_recovers_to_reference(home, pg_scenario.reference, url)
