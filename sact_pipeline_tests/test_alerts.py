"""Run-failure alerts: the real sensor on a real failed run, delivered to a real local webhook."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from dagster import (
    DagsterEventType,
    DagsterRunStatus,
    MultiPartitionKey,
    RunsFilter,
    build_run_status_sensor_context,
    instance_for_test,
)

from sact_pipeline.alerts import WEBHOOK_VARIABLE, error_line, run_scope
from sact_pipeline.definitions import DISCOVERY_JOB, TRUST_MONTH_JOB, build_definitions
from sact_pipeline.run_config import run_config_for
from sact_pipeline.run_tags import trust_month_run
from sact_pipeline_tests.builders import write_submission


@pytest.fixture
def webhook():
    """A local HTTP endpoint that records what is posted to it (loopback only, stops with the test)."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()
    server.server_close()


def failed_run_context(settings, instance, month_run: bool = False):
    """A trust-month whose file quarantines most rows: the clean gate fails the run (a run for the one
    partition, or with month_run a run over the month's trusts, as the sensor and the CLI ask for)."""
    rows = [{"nhs_number": "", "local_patient_identifier": f"P{i}", "regimen": ""} for i in range(9)]
    write_submission(settings.landing_dir / "SACT_RR8_202401_20240210093000.csv", rows + [{}])
    defs = build_definitions(settings)
    assert defs.resolve_job_def(DISCOVERY_JOB).execute_in_process(instance=instance).success
    if month_run:
        tags, options = trust_month_run(instance, "2024-01", ["RR8"], affected_only=True)
        result = defs.resolve_job_def(TRUST_MONTH_JOB).execute_in_process(
            instance=instance, raise_on_error=False, tags=tags, run_config=run_config_for(TRUST_MONTH_JOB, **options))
    else:
        result = defs.resolve_job_def(TRUST_MONTH_JOB).execute_in_process(
            instance=instance, raise_on_error=False,
            partition_key=MultiPartitionKey({"month": "2024-01-01", "trust": "RR8"}))
    assert not result.success
    run = instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.FAILURE]))[0]
    event = instance.all_logs(run.run_id, of_type=DagsterEventType.RUN_FAILURE)[0].dagster_event
    context = build_run_status_sensor_context(
        sensor_name="run_failure_alerts", dagster_event=event, dagster_instance=instance, dagster_run=run,
    ).for_run_failure()
    return run, context, defs.resolve_sensor_def("run_failure_alerts")


def test_a_failed_run_raises_an_alert_in_the_log_and_on_the_webhook(settings, webhook, monkeypatch, caplog):
    url, received = webhook
    monkeypatch.setenv(WEBHOOK_VARIABLE, url)
    with instance_for_test() as instance:
        run, context, run_failure_alerts = failed_run_context(settings, instance)
        with caplog.at_level(logging.ERROR, logger="sact_pipeline.alerts"):
            run_failure_alerts(context)
    assert len(received) == 1
    text = received[0]["text"]
    assert run.run_id in text and "trust_month_refresh" in text and "2024-01-01|RR8" in text
    assert "clean_activity" in text and "quarantine_share" in text  # the failing step and check
    assert text in caplog.text
    assert "P1" not in text  # no row data


def test_an_unreachable_webhook_is_logged_not_raised(settings, monkeypatch, caplog):
    monkeypatch.setenv(WEBHOOK_VARIABLE, "http://127.0.0.1:9/unreachable")  # discard port: refused
    with instance_for_test() as instance:
        run, context, run_failure_alerts = failed_run_context(settings, instance)
        with caplog.at_level(logging.ERROR, logger="sact_pipeline.alerts"):
            run_failure_alerts(context)
    assert run.run_id in caplog.text
    assert f"could not deliver the alert to {WEBHOOK_VARIABLE}" in caplog.text


def test_the_alert_for_a_run_over_a_month_names_its_trusts_and_the_failure_plainly(settings, webhook, monkeypatch):
    url, received = webhook
    monkeypatch.setenv(WEBHOOK_VARIABLE, url)
    with instance_for_test() as instance:
        run, context, run_failure_alerts = failed_run_context(settings, instance, month_run=True)
        run_failure_alerts(context)
    text = received[0]["text"]
    assert f"run {run.run_id} of trust_month_refresh for 2024-01 trusts RR8 FAILED" in text
    assert "- trust_month_layers: 1 of 1 trust-months failed" in text and "clean_reconciliation" in text
    assert "dagster._core" not in text


def test_run_scope_and_error_line():
    assert run_scope({"dagster/partition": "2024-01-01"}) == "2024-01-01"
    assert run_scope({"sact/month": "2024-02", "sact/trusts": "RR8,RBV"}) == "2024-02 trusts RR8, RBV"
    assert run_scope({"dagster/asset_partition_range_start": "2024-01-01|A",
                      "dagster/asset_partition_range_end": "2024-03-01|Z"}) == "2024-01-01|A to 2024-03-01|Z"
    assert run_scope({}) == ""
    assert error_line("dagster._core.definitions.events.Failure: 2 of 3 failed\ntrace") == "2 of 3 failed"
    assert error_line("ValueError: bad") == "ValueError: bad"  # a plain class name says something
    assert error_line("the raw layer holds no rows: x") == "the raw layer holds no rows: x"
