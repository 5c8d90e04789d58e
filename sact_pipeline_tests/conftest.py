"""Shared fixtures: a real PostgreSQL database, test settings and a pseudonymisation key.

PostgreSQL is required: if it cannot be reached the tests that need it FAIL with the reason (never skip).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from sact_pipeline.settings import Settings

TEST_KEY = "test-pseudonymisation-key-0123456789abcdef-not-for-real-data"
DEFAULT_TEST_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _admin_engine(url: str) -> sa.Engine:
    parsed = make_url(url).set(drivername="postgresql+psycopg2")
    return sa.create_engine(parsed, isolation_level="AUTOCOMMIT")


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
        with _admin_engine(url).connect() as connection:
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
    name = f"sact_test_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine(postgres_server_url)
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = make_url(postgres_server_url).set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse_url(request, tmp_path: Path) -> str:
    """The test runs once on each warehouse: an SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'warehouse.db'}"
    return request.getfixturevalue("postgres_url")


# The settings `sact-pipeline refresh` exports to the environment for Dagster (and the test's own).
SETTING_VARIABLES = ("SACT_HOME", "SACT_LANDING_DIR", "SACT_OUTPUT_DIR", "SACT_WAREHOUSE_URL", "DAGSTER_HOME",
                     "SACT_FIRST_MONTH", "SACT_DEADLINE_MONTHS", "SACT_MAX_QUARANTINE_SHARE", "SACT_ODS_FILE",
                     "SACT_DATA_SET_FILE", "SACT_V4_FIRST_MONTH", "SACT_V4_ONLY_FROM")


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


@pytest.fixture(autouse=True)
def no_stale_dagster_state_storage():
    """Dagster 1.13 keeps the last instance's definitions-state storage in a context variable; a test that
    evaluates schedules or sensors on an instance_for_test can leave it pointing at the closed instance,
    and the next Definitions load fails with "undefined DagsterInstance weakref". Start each test clean."""
    from dagster._core.storage.defs_state.base import _current_storage

    token = _current_storage.set(None)
    yield
    _current_storage.reset(token)


def pytest_configure(config):
    config.addinivalue_line("markers", "restarts_postgres: restarts the shared PostgreSQL server (runs last)")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """A test that restarts the shared PostgreSQL server runs after every other test, its module's tests
    just before it: the session's live Dagster deployment (webserver, daemon) and other tests' connection
    pools never see the restart. (After a server restart Dagster's webserver fails requests with an Internal
    Server Error until each storage's pooled connection, dead with the old server, has failed once.)
    `make test` runs it in a pytest of its own, after the others (see the Makefile)."""
    restarting = {item.module for item in items if item.get_closest_marker("restarts_postgres")}
    items.sort(key=lambda item: (item.module in restarting, item.get_closest_marker("restarts_postgres") is not None))
