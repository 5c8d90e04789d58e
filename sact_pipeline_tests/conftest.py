"""Shared fixtures: a real PostgreSQL database, test settings and a pseudonymisation key.

PostgreSQL is required: if it cannot be reached the tests that need it FAIL with the reason (never skip).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

# The helper modules' plain asserts report like a test's: registered before anything imports them (a test
# module importing a harness is collected before the module that loads it as a plugin).
pytest.register_assert_rewrite("sact_pipeline_tests.builders", "sact_pipeline_tests.browser",
                               "sact_pipeline_tests.support", "sact_pipeline_tests.deployment_harness",
                               "sact_pipeline_tests.fault_harness")

from sact_pipeline.domain.spec import V4  # noqa: E402
from sact_pipeline.settings import Settings  # noqa: E402
from sact_pipeline_tests.builders import dated_patients, write_submission  # noqa: E402
from sact_pipeline_tests.support import (  # noqa: E402
    SETTING_VARIABLES,
    TEST_KEY,
    admin_engine,
    create_database,
    drop_database,
)

DEFAULT_TEST_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(autouse=True)
def pseudonymisation_key(monkeypatch):
    """Every test runs with a known key and no demo mode, unless it changes them."""
    monkeypatch.setenv("SACT_PSEUDONYMISATION_KEY", TEST_KEY)
    monkeypatch.delenv("SACT_PSEUDONYMISATION_KEY_FILE", raising=False)
    monkeypatch.delenv("SACT_DEMO_MODE", raising=False)
    return TEST_KEY


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    url = os.environ.get("SACT_TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL)
    try:
        with admin_engine(url).connect() as connection:
            connection.execute(sa.text("select 1"))
    except Exception as error:  # the message must say what to do, not just the driver error
        pytest.fail(
            f"PostgreSQL is not reachable at {make_url(url).render_as_string(hide_password=True)} "
            f"(SACT_TEST_DATABASE_URL): {error.__class__.__name__}: {str(error).splitlines()[0]}. Start it with "
            "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` or point "
            "SACT_TEST_DATABASE_URL at a server where the user may create databases.",
            pytrace=False,
        )
    return url


@pytest.fixture
def postgres_url(postgres_server_url) -> str:
    """A fresh, empty database for one test, dropped afterwards."""
    name = create_database(postgres_server_url)
    yield make_url(postgres_server_url).set(database=name).render_as_string(hide_password=False)
    drop_database(postgres_server_url, name)


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse_url(request, tmp_path: Path) -> str:
    """The test runs once on each warehouse: an SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'warehouse.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def isolated_environment(monkeypatch):
    """A test that runs the CLI: none of these settings from outside, and whatever the CLI exported to the
    environment undone after it."""
    for name in SETTING_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings on the embedded default (SQLite warehouse) under a temporary SACT_HOME."""
    return Settings.from_env(env={}, home=str(tmp_path / "sact"), first_month="2024-01")


@pytest.fixture
def warehouse(warehouse_url):
    """A Warehouse on each warehouse_url (SQLite, then PostgreSQL), disposed afterwards."""
    from sact_pipeline.warehouse import Warehouse

    warehouse = Warehouse(warehouse_url)
    yield warehouse
    warehouse.dispose()


@pytest.fixture
def switched(tmp_path):
    """Published from May 2026 (no month before: a gap in the charts) to July 2026, through the whole
    pipeline: RR8 sends v3 in May and v4 in July, RBV v3 both months (in July: after full v4 conformance),
    RAJ starts in July on v4; June has no file at all (published: every trust missing, no version). For the
    month's report and its quality report (test_report_browser.py, test_quality_report.py): the Pipeline."""
    from sact_pipeline.cli import refresh
    from sact_pipeline.layers import Pipeline

    settings = Settings.from_env(env={}, home=str(tmp_path / "sact"), first_month="2026-05")
    landing = settings.landing_dir
    write_submission(landing / "SACT_RR8_202605_20260610093000.csv", dated_patients("A", 40, "2026-05-08"))
    write_submission(landing / "SACT_RBV_202605_20260610093000.csv", dated_patients("B", 30, "2026-05-09"))
    write_submission(landing / "SACT_RR8_202607_20260810093000.csv", dated_patients("A", 45, "2026-07-08", V4),
                     version=V4)
    write_submission(landing / "SACT_RBV_202607_20260810093000.csv", dated_patients("B", 33, "2026-07-09"))
    write_submission(landing / "SACT_RAJ_202607_20260810093000.csv", dated_patients("C", 22, "2026-07-12", V4),
                     version=V4)
    report = refresh(settings, log=lambda line: None)
    assert report.ok, report
    return Pipeline(settings)


@pytest.fixture(autouse=True)
def no_stale_dagster_state_storage():
    """Dagster 1.13 keeps the last instance's definitions-state storage in a context variable; a test that
    evaluates schedules or sensors on an instance_for_test can leave it pointing at the closed instance,
    and the next Definitions load fails with "undefined DagsterInstance weakref". Start each test clean."""
    from dagster._core.storage.defs_state.base import _current_storage

    token = _current_storage.set(None)
    yield
    _current_storage.reset(token)


# The files that drive the one live deployment of a session (deployment_harness's session fixtures): on one
# xdist worker, so that the deployment starts, and the scenario's first load runs, once (about 4 minutes).
LIVE_DEPLOYMENT_FILES = {"test_deployment.py", "test_ui_browser.py"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """`--dist loadgroup` (the Makefile): a test file stays on one worker, as with loadfile, so its module
    fixtures are built once; the live-deployment files share one group."""
    for item in items:
        name = item.path.name
        item.add_marker(pytest.mark.xdist_group("live_deployment" if name in LIVE_DEPLOYMENT_FILES else name))
