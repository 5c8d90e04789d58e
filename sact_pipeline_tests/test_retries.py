"""Transient database errors are retried with backoff; bad data is not retried (real PostgreSQL)."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa
from dagster import DagsterEventType, MultiPartitionKey, instance_for_test
from sqlalchemy.engine import make_url

from sact_pipeline.definitions import DISCOVERY_JOB, TRUST_MONTH_JOB, build_definitions
from sact_pipeline.layers import Pipeline
from sact_pipeline.settings import Settings
from sact_pipeline.warehouse import is_transient_database_error
from sact_pipeline_tests.builders import patients, write_submission
from sact_pipeline_tests.support import admin_engine


@pytest.fixture
def pg_settings(tmp_path, postgres_url) -> Settings:
    return Settings.from_env(env={}, home=str(tmp_path / "sact"), first_month="2024-01", warehouse_url=postgres_url)


def _refuse_connections(server_url: str, database: str, allow: bool) -> None:
    admin = admin_engine(server_url)
    with admin.connect() as connection:
        connection.execute(sa.text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(allow).lower()}'))
        if not allow:  # and drop the sessions the pipeline holds, as a server restart would
            connection.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                       "WHERE datname = :name AND pid <> pg_backend_pid()"), {"name": database})
    admin.dispose()


def test_errors_are_told_apart_on_a_real_server(postgres_url):
    engine = sa.create_engine(make_url(postgres_url).set(drivername="postgresql+psycopg2"))
    with engine.begin() as connection:
        connection.execute(sa.text("create table t (id int primary key)"))
        connection.execute(sa.text("insert into t values (1)"))
    with pytest.raises(sa.exc.IntegrityError) as duplicate, engine.begin() as connection:
        connection.execute(sa.text("insert into t values (1)"))
    assert not is_transient_database_error(duplicate.value)
    with pytest.raises(sa.exc.DataError) as bad_value, engine.begin() as connection:
        connection.execute(sa.text("select 'not a number'::int"))
    assert not is_transient_database_error(bad_value.value)
    refused = sa.create_engine(make_url(postgres_url).set(drivername="postgresql+psycopg2", port=1))
    with pytest.raises(sa.exc.OperationalError) as unreachable:
        refused.connect()
    assert is_transient_database_error(unreachable.value)
    with engine.connect() as connection:
        pid = connection.execute(sa.text("select pg_backend_pid()")).scalar()
        with admin_engine(postgres_url).connect() as admin:
            admin.execute(sa.text("select pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(sa.exc.DBAPIError) as dropped:
            connection.execute(sa.text("select 1"))
    assert is_transient_database_error(dropped.value)
    engine.dispose()
    refused.dispose()


def test_a_step_that_loses_the_database_is_retried_with_backoff_and_succeeds(pg_settings, postgres_url,
                                                                             postgres_server_url):
    write_submission(pg_settings.landing_dir / "SACT_RR8_202401_20240210093000.csv", patients("A", 20))
    defs = build_definitions(pg_settings)
    database = make_url(postgres_url).database
    with instance_for_test() as instance:
        assert defs.resolve_job_def(DISCOVERY_JOB).execute_in_process(instance=instance).success
        _refuse_connections(postgres_server_url, database, allow=False)  # the server goes away...
        reopen = threading.Timer(2.0, _refuse_connections, (postgres_server_url, database, True))  # ...comes back
        reopen.start()
        started = time.monotonic()
        try:
            result = defs.resolve_job_def(TRUST_MONTH_JOB).execute_in_process(
                instance=instance, raise_on_error=False,
                partition_key=MultiPartitionKey({"month": "2024-01-01", "trust": "RR8"}))
        finally:
            reopen.join()
            _refuse_connections(postgres_server_url, database, allow=True)
        assert result.success
        retries = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
        assert 1 <= len(retries) <= 3
        assert time.monotonic() - started >= 5  # waited (backoff 5 s, 10 s, ...) before trying again
        warnings = [r.user_message for r in instance.all_logs(result.run_id) if "transient database error" in
                    (r.user_message or "")]
        assert warnings and "retry 1 of 3 in 5s" in warnings[0]
        assert Pipeline(pg_settings).status.affected_trust_months() == []


def test_bad_data_fails_at_once_without_a_retry(pg_settings):
    bad = patients("A", 18, regimen="") + patients("C", 2)  # quarantine share over the limit
    write_submission(pg_settings.landing_dir / "SACT_RR8_202401_20240210093000.csv", bad)
    defs = build_definitions(pg_settings)
    with instance_for_test() as instance:
        assert defs.resolve_job_def(DISCOVERY_JOB).execute_in_process(instance=instance).success
        result = defs.resolve_job_def(TRUST_MONTH_JOB).execute_in_process(
            instance=instance, raise_on_error=False,
            partition_key=MultiPartitionKey({"month": "2024-01-01", "trust": "RR8"}))
        assert not result.success
        assert not [e for e in result.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
        assert "clean_reconciliation" in next(e for e in result.all_events if e.is_step_failure) \
            .step_failure_data.error.message
