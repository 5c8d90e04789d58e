"""End to end on a real deployment (`make up`: dagster-webserver + dagster-daemon on PostgreSQL), seen
through the webserver's GraphQL API and the published files, as an operator would see it.

The tests run in order on one deployment (deployment_harness): the sensor processes generated
submissions; a late corrected file for the first month re-publishes that month and the next only; a
resubmission whose patients cannot be identified fails its trust-month, raises an alert, and leaves the
publication as it was. They assert outcomes (run statuses, materialised partitions, files), never how
many runs a trust-month took: the run shape (per trust-month, or per month over a partition range) may
change.
"""

from __future__ import annotations

import csv
import re
import socket
import subprocess

import pytest

pytest.register_assert_rewrite("sact_pipeline_tests.deployment_harness")  # before its import: plain asserts there

from sact_pipeline.run_tags import PROCESS_TAG, REFRESH_JOB, REFRESH_RUN_TAG  # noqa: E402
from sact_pipeline_tests.deployment_harness import MONTHS, SENSOR_TAG, Delivery, LiveDeployment, Run, Scenario  # noqa: E402

pytest_plugins = ["sact_pipeline_tests.deployment_harness"]


def month_files(hashes: dict[str, str], month: str) -> dict[str, str]:
    return {path: digest for path, digest in hashes.items() if path.startswith(f"{month}/")}


def trust_month_keys(scenario: Scenario) -> list[str]:
    return [f"{month}-01|{trust}" for month, trust in scenario.trust_months()]


def unmaterialised(live: LiveDeployment, asset: str, partitions: list[str]) -> list[str]:
    latest = live.graphql.latest_materializations(asset, partitions)
    return [p for p in partitions if latest[p] is None]


def rematerialised_by(live: LiveDeployment, asset: str, partitions: list[str], runs: list[Run]) -> dict[str, bool]:
    """Whether each partition's latest materialisation was made by one of `runs`."""
    ids = {r.run_id for r in runs}
    latest = live.graphql.latest_materializations(asset, partitions)
    return {p: bool(latest[p]) and latest[p]["runId"] in ids for p in partitions}


def failure_messages(live: LiveDeployment, run_id: str) -> list[str]:
    """The step failures and the run failure of a run, as the UI shows them."""
    messages = []
    for event in live.graphql.run_events(run_id):
        if event["__typename"] == "ExecutionStepFailureEvent":
            messages.append(f"{event['stepKey']}: {(event.get('error') or {}).get('message', '')} {event['message']}")
        elif event["__typename"] == "RunFailureEvent":
            messages.append(f"run: {(event.get('error') or {}).get('message', '')} {event['message']}")
    return messages


def failed_checks(live: LiveDeployment, run_id: str) -> list[tuple[str, str | None]]:
    return [(e["evaluation"]["checkName"], e["evaluation"]["partition"]) for e in live.graphql.run_events(run_id)
            if e["__typename"] == "AssetCheckEvaluationEvent" and not e["evaluation"]["success"]]


def deployment_processes(live: LiveDeployment) -> dict[int, str]:
    """pid -> command of every process alive in the deployment's sessions (the webserver's and the daemon's,
    each started in a session of its own: they, their code servers and any run worker still running)."""
    sessions = {int(live.deployment.pid_file(name).read_text()) for name in ("webserver", "daemon")}
    listing = subprocess.run(["ps", "-eo", "pid=,sid=,args="], capture_output=True, text=True, check=True).stdout
    processes = {}
    for line in listing.splitlines():
        pid, sid, command = (line.split(None, 2) + [""])[:3]
        if int(sid) in sessions:
            processes[int(pid)] = command[:120]
    assert len(processes) >= 2, listing  # the webserver and the daemon at least
    return processes


def published_row(live: LiveDeployment, month: str, org: str) -> dict[str, str]:
    with live.published_paths(month)[0].open(newline="", encoding="utf-8") as stream:
        return next(row for row in csv.DictReader(stream) if row["org_code"] == org)


def test_the_sensor_processes_new_submissions_through_every_layer(live_deployment, sact_scenario):
    live, scenario = live_deployment, sact_scenario.load_initial()
    graphql = live.graphql
    assert graphql.sensor_status() == "RUNNING"  # on by default: nobody switched it on

    runs = graphql.runs()
    sensor_runs = graphql.runs(tags=dict([SENSOR_TAG]))
    assert sensor_runs, "the landing-zone sensor launched no run"
    assert {r.run_id for r in sensor_runs} == {r.run_id for r in runs}, (
        f"runs not launched by the sensor: {[r.describe() for r in runs if r not in sensor_runs]}")
    assert [r.describe() for r in runs if r.status != "SUCCESS"] == []
    # One refresh run (a tick, a process start) made the layer runs, in this order, in its own process.
    assert {REFRESH_JOB, "discover_submissions", "trust_month_refresh", "month_publication"} <= {r.job_name for r in runs}
    # Each run names the process that ran it (the sensor marks a run failed once that process is gone):
    # the run worker, which has exited now, never the code server that started it, which outlives runs.
    living = deployment_processes(live)
    for run in runs:
        host, _, pid = run.tags.get(PROCESS_TAG, "").partition(":")
        assert host == socket.gethostname() and pid.isdigit(), run.describe()
        assert int(pid) not in living, f"{run.describe()} names {living[int(pid)]}, which outlives its runs"
    refresh_ids = {r.run_id for r in runs if r.job_name == REFRESH_JOB}
    assert all(r.tags.get(REFRESH_RUN_TAG) in refresh_ids for r in runs if r.job_name != REFRESH_JOB), (
        [r.describe() for r in runs])

    # Every layer has the partitions the landing zone implies (3 English trusts + the Welsh one, 3 months).
    assert len(scenario.english_trusts) == 3 and len(scenario.trusts) == 4
    assert graphql.latest_materialization("submission_files") is not None
    trust_months = trust_month_keys(scenario)
    assert len(trust_months) >= 10  # the generator leaves one trust-month out (a missing submission)
    for asset in ("raw_submissions", "clean_activity"):
        assert unmaterialised(live, asset, trust_months) == [], asset
    for asset in ("trust_month_summary", "published_submissions"):
        assert unmaterialised(live, asset, [f"{m}-01" for m in MONTHS]) == [], asset

    for month in MONTHS:
        csv_path, notes_path = live.published_paths(month)
        assert csv_path.is_file() and notes_path.is_file()
        rows = list(csv.DictReader(csv_path.open(newline="", encoding="utf-8")))
        assert rows[-1]["org_code"] == "ENGLAND"
        assert sorted(r["org_code"] for r in rows[:-1]) == scenario.english_trusts  # Welsh trust not published
    # Each month's pack, and nothing else (no temporary or .previous file left behind).
    assert set(scenario.initial_hashes) == {f"{m}/sact_submissions_{m}{end}" for m in MONTHS for end in
                                            (".csv", ".html", ".xlsx", "_manifest.json", "_notes.txt")}
    # Beside them, internal: each month's data-quality report, the trusts' feedback files, the Data Docs.
    for month in MONTHS:
        assert (live.published_dir / "data_quality" / month / f"data_quality_{month}.html").is_file(), month
        assert len(list((live.published_dir / month / "feedback").glob("*.csv"))) >= 3, month
    assert (live.published_dir / "data_docs" / "index.html").is_file()


def test_a_late_correction_republishes_its_month_and_the_next_only(live_deployment, sact_scenario):
    live = live_deployment
    late: Delivery = sact_scenario.drop_late_correction()
    first, second, third = MONTHS

    assert late.runs, "no run followed the late correction"
    assert [r.describe() for r in late.runs if r.status != "SUCCESS"] == []
    assert all(r.tags.get(SENSOR_TAG[0]) == SENSOR_TAG[1] for r in late.runs), [r.describe() for r in late.runs]

    # The trust-month was rebuilt, and the first two months re-published; the third was not touched.
    assert rematerialised_by(live, "clean_activity", [late.trust_month], late.runs) == {late.trust_month: True}
    assert rematerialised_by(live, "published_submissions", [f"{m}-01" for m in MONTHS], late.runs) == {
        f"{first}-01": True, f"{second}-01": True, f"{third}-01": False}

    before, after = late.hashes_before, late.hashes_after
    for month in (first, second):
        changed = {p for p, digest in month_files(after, month).items() if before.get(p) != digest}
        assert changed == set(month_files(before, month)), f"{month}: changed {changed}"
    assert month_files(after, third) == month_files(before, third), "the third month must be byte-identical"

    corrected = published_row(live, first, late.org)
    assert corrected["submitted_at"] == "2024-04-20T12:00:00"  # the version now in use
    assert late.path.name in live.published_paths(first)[1].read_text(encoding="utf-8")


def test_a_trust_month_failing_its_gate_is_alerted_and_its_month_published_with_it_held(live_deployment,
                                                                                        sact_scenario):
    live = live_deployment
    failing: Delivery = sact_scenario.drop_failing_resubmission()
    month_key = failing.month  # YYYY-MM
    problems: list[str] = []  # every requirement is checked, so one report says everything that is wrong

    failed = [r for r in failing.runs if r.status == "FAILURE"]
    # The layer run that built the trust-month fails with its gate; the refresh run that made it, too.
    layer_runs = [r for r in failed if r.job_name != REFRESH_JOB]
    if not layer_runs or not any(r.job_name == REFRESH_JOB for r in failed):
        problems.append(f"a layer run and its refresh run should have failed after the bad resubmission: "
                        f"{[r.describe() for r in failing.runs]}")
    if not all(r.tags.get(SENSOR_TAG[0]) == SENSOR_TAG[1] or r.tags.get("dagster/parent_run_id")
               for r in failing.runs):
        problems.append(f"runs not started by the sensor (or as a retry of one): "
                        f"{[r.describe() for r in failing.runs]}")
    other_failures = [r.describe() for r in live.graphql.runs(statuses=["FAILURE"]) if r.creation_time < failing.since]
    if other_failures:
        problems.append(f"runs failed before the bad file arrived: {other_failures}")

    trust_month = re.compile(rf"{month_key}(-01)?\|{failing.org}\b")
    for run in failed:
        if run.job_name == REFRESH_JOB:  # it names what failed; the checks are on the layer run
            text = "\n".join(failure_messages(live, run.run_id))
            if not trust_month.search(text):
                problems.append(f"the refresh run {run.run_id} does not name the trust-month {failing.trust_month}: "
                                f"{text}")
            continue
        tag_values = " ".join(run.tags.values())
        if month_key not in tag_values or failing.org not in tag_values:
            problems.append(f"the tags of failed run {run.run_id} do not name {failing.trust_month}: {run.tags}")
        messages = failure_messages(live, run.run_id)
        text = "\n".join(messages)
        if not messages:
            problems.append(f"run {run.run_id} failed without a step or run failure event")
        if not trust_month.search(text):
            problems.append(f"the failure of run {run.run_id} does not name the trust-month "
                            f"{failing.trust_month}: {text}")
        if "clean_reconciliation" not in text:
            problems.append(f"the failure of run {run.run_id} does not name the failing Great Expectations suite "
                            f"'clean_reconciliation' (the quarantine share): {text!r}")
        checks = failed_checks(live, run.run_id)
        if ("gx_clean_activity", failing.trust_month) not in checks:
            problems.append(f"run {run.run_id} records no failed gx_clean_activity check (the clean gate) for "
                            f"{failing.trust_month}: {checks}")

    alerts = live.webhook.texts()
    daemon_log = live.daemon_log()
    for run in failed:
        mine = [a for a in alerts if run.run_id in a]
        if not mine:
            problems.append(f"the webhook received no alert naming run {run.run_id}: {alerts}")
        elif not any(trust_month.search(a) for a in mine):
            problems.append(f"the alert for run {run.run_id} does not name the trust-month "
                            f"{failing.trust_month}: {mine}")
        if not re.search(rf"run {run.run_id}\b.*FAILED", daemon_log):
            problems.append(f"deploy/daemon.log holds no alert line for run {run.run_id}")

    # The month is not held back: it is re-published at once with the trust held at its last good
    # figures (only its data_status changes), and no other month's files change.
    before, after = failing.hashes_before, failing.hashes_after
    others = {p: d for p, d in after.items() if not p.startswith(f"{month_key}/")}
    if others != {p: d for p, d in before.items() if not p.startswith(f"{month_key}/")}:
        problems.append(f"published files of other months changed after {failing.trust_month} failed")
    republished = rematerialised_by(live, "published_submissions", [f"{month_key}-01"], failing.runs)
    if not republished[f"{month_key}-01"]:
        problems.append(f"published_submissions {month_key} was not re-published with {failing.org} held")
    row = published_row(live, month_key, failing.org)
    if row.get("data_status") != "held":
        problems.append(f"{failing.org} is published as {row.get('data_status')!r} in {month_key}, not 'held'")
    assert not problems, "\n".join(problems)


LAUNCH_BACKFILL = """
mutation Backfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { invalidOutputName }
  }
}"""
BACKFILL_STATUS = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status }
    ... on PythonError { message }
  }
}"""


def test_a_backfill_of_a_whole_month_from_the_ui_is_one_run(live_deployment, sact_scenario):
    """What the UI's Materialize > backfill does: raw and clean for every trust of February."""
    live, scenario = live_deployment, sact_scenario.load_initial()
    month = MONTHS[1]
    partitions = [f"{month}-01|{trust}" for m, trust in scenario.trust_months() if m == month]
    hashes_before = live.published_hashes()
    result = live.graphql.query(LAUNCH_BACKFILL, {"params": {
        "partitionNames": partitions,
        "assetSelection": [{"path": ["raw_submissions"]}, {"path": ["clean_activity"]}]}})["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result
    backfill = result["backfillId"]

    def finished():
        status = live.graphql.query(BACKFILL_STATUS, {"id": backfill})["partitionBackfillOrError"]
        runs = live.graphql.runs(tags={"dagster/backfill": backfill})
        done = status.get("status") not in (None, "REQUESTED", "CANCELING") and runs and \
            all(r.status not in ("QUEUED", "NOT_STARTED", "STARTING", "STARTED") for r in runs)
        return done, (status, [r.describe() for r in runs])

    status, _ = live.wait_for(f"the backfill of {month}", finished, timeout=180, interval=2)
    runs = live.graphql.runs(tags={"dagster/backfill": backfill})
    assert [r.status for r in runs] == ["SUCCESS"], (status, [r.describe() for r in runs])  # one run, not one per trust
    assert status["status"].startswith("COMPLETED"), status
    rebuilt = rematerialised_by(live, "clean_activity", partitions, runs)
    assert all(rebuilt.values()), rebuilt
    # The same files rebuilt give the same rows: nothing to re-publish, every published file unchanged.
    assert live.published_hashes() == hashes_before
