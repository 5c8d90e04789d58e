"""A real local deployment for the end-to-end tests: dagster-webserver + dagster-daemon on PostgreSQL.

Loaded as a pytest plugin by test_deployment.py and test_ui_browser.py (``pytest_plugins``), so its
session fixtures are shared: ONE deployment serves both files (starting it and processing the data is
most of their time). It is started exactly as `make up` does, through
``sact_pipeline.deploy.up(Deployment.from_env(env))``, and stopped with ``down`` in the fixture teardown,
which then drops both databases WITH (FORCE), whatever happened in the tests.

- ``alert_webhook``: a tiny HTTP server (a thread) that records the alert POST bodies.
- ``live_deployment``: a temporary SACT_HOME under pytest's tmp path, fresh PostgreSQL databases
  ``sact_test_<hex>_dagster`` (instance) and ``sact_test_<hex>_warehouse`` (used as the loader role
  sact_loader, which `up` makes with db init; the test server lets it in without a password), a free
  port, a 5-second sensor interval, the test pseudonymisation key, SACT_FIRST_MONTH and the webhook URL.
- ``sact_scenario``: the data story the tests follow, each step done once per session whichever test asks
  first: generate submissions and wait for every layer (``load_initial``); a late corrected file for the
  first month (``drop_late_correction``); a resubmission for the last month whose patients cannot be
  identified, so the clean gate fails (``drop_failing_resubmission``).
- ``GraphQL``: a small client over requests posting to <url>/graphql, with the queries the tests need.

Every wait polls a condition and has a timeout; a timeout fails with what was last seen and the tail of
deploy/daemon.log (and of the webserver log when the server is the problem).
"""

from __future__ import annotations

import csv
import hashlib
import http.server
import io
import json
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy.engine import make_url

from sact_pipeline.database import LOADER
from sact_pipeline.deploy import Deployment, down, up
from sact_pipeline.synthetic import DefectRates, GeneratedFile, WELSH_TRUST, generate_submissions
from sact_pipeline.layers import Pipeline
from sact_pipeline.settings import Settings
from sact_pipeline_tests.builders import decode_generated
from sact_pipeline_tests.support import REPOSITORY, TEST_KEY, drop_database

MONTHS = ("2024-01", "2024-02", "2024-03")  # the generated reporting months
FIRST_MONTH = "2024-01"  # SACT_FIRST_MONTH: the monthly partitions start here
SENSOR = "landing_zone_sensor"
SENSOR_TAG = ("sact/trigger", "landing-zone-sensor")
IN_FLIGHT = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")
UP_TO_DATE = "every layer is up to date"  # the landing-zone sensor's skip reason when nothing is left to do
# Generous for a 2-core machine shared with others; typical times are a third of these.
INITIAL_TIMEOUT = 300
STEP_TIMEOUT = 180


def artefacts_dir() -> Path:
    """Where screenshots go: SACT_TEST_ARTEFACTS, else test-artefacts/ at the repository root."""
    folder = Path(os.environ.get("SACT_TEST_ARTEFACTS") or REPOSITORY / "test-artefacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:])


def sha256_of_tree(folder: Path) -> dict[str, str]:
    """SHA-256 of every visible file under folder (backups and staging files start with a dot)."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(".")}


# --------------------------------------------------------------------------------------------------
# The alert webhook


class AlertWebhook:
    """Records every POST body (decoded JSON when it is JSON) sent to http://127.0.0.1:<port>/..."""

    def __init__(self):
        received: list[dict[str, Any]] = []
        lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode("utf-8", "replace")
                try:
                    payload = json.loads(body)
                except ValueError:
                    payload = None
                with lock:
                    received.append({"path": self.path, "body": body, "json": payload, "at": time.time()})
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):  # keep the test output clean
                pass

        self._received, self._lock = received, lock
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, name="alert-webhook", daemon=True)
        self.thread.start()

    @property
    def received(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._received)

    def texts(self) -> list[str]:
        return [(r["json"] or {}).get("text", r["body"]) if isinstance(r["json"], dict) else r["body"]
                for r in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


# --------------------------------------------------------------------------------------------------
# GraphQL


RUNS_QUERY = """
query Runs($filter: RunsFilter, $limit: Int) {
  runsOrError(filter: $filter, limit: $limit) {
    __typename
    ... on Runs {
      results {
        runId jobName status creationTime startTime endTime updateTime
        tags { key value }
      }
    }
    ... on PythonError { message }
    ... on InvalidPipelineRunsFilterError { message }
  }
}
"""

REPOSITORIES_QUERY = """
query Repositories {
  repositoriesOrError {
    __typename
    ... on RepositoryConnection { nodes { name location { name } } }
    ... on PythonError { message }
  }
}
"""

SENSOR_TICKS_QUERY = """
query SensorTicks($selector: SensorSelector!, $limit: Int) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor {
      name
      sensorState {
        status
        ticks(limit: $limit) {
          tickId status timestamp endTimestamp skipReason runIds runKeys
          error { message }
        }
      }
    }
    ... on SensorNotFoundError { message }
    ... on PythonError { message }
  }
}
"""

LATEST_MATERIALIZATION_QUERY = """
query LatestMaterialization($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    __typename
    ... on AssetNode { assetMaterializations(limit: 1) { partition runId timestamp } }
    ... on AssetNotFoundError { message }
  }
}
"""

MATERIALIZATIONS_QUERY = """
query LatestMaterializations($assetKey: AssetKeyInput!, $partitions: [String!]) {
  assetNodeOrError(assetKey: $assetKey) {
    __typename
    ... on AssetNode {
      isPartitioned
      latestMaterializationByPartition(partitions: $partitions) { partition runId timestamp }
    }
    ... on AssetNotFoundError { message }
  }
}
"""

RUN_EVENTS_QUERY = """
query RunEvents($runId: ID!, $cursor: String) {
  logsForRun(runId: $runId, afterCursor: $cursor, limit: 1000) {
    __typename
    ... on EventConnection {
      cursor hasMore
      events {
        __typename
        ... on MessageEvent { message level }
        ... on ExecutionStepFailureEvent { stepKey error { message } }
        ... on RunFailureEvent { error { message } }
        ... on AssetCheckEvaluationEvent { evaluation { checkName success partition assetKey { path } } }
      }
    }
    ... on RunNotFoundError { message }
    ... on PythonError { message }
  }
}
"""


@dataclass(frozen=True)
class Run:
    run_id: str
    job_name: str
    status: str
    creation_time: float
    end_time: float | None
    update_time: float | None
    tags: dict[str, str]

    @property
    def finished_at(self) -> float:
        return self.end_time or self.update_time or self.creation_time

    def describe(self) -> str:
        partition = self.tags.get("dagster/partition") or " .. ".join(
            v for k, v in sorted(self.tags.items()) if k.startswith("dagster/asset_partition_range")) or "-"
        return f"{self.run_id[:8]} {self.job_name} {partition} {self.status}"


class GraphQL:
    """A minimal client for the webserver's GraphQL endpoint; GraphQL errors fail the test with the query."""

    def __init__(self, url: str):
        self.endpoint = f"{url}/graphql"
        self.session = requests.Session()
        self._repository: dict[str, str] | None = None

    def query(self, text: str, variables: dict[str, Any] | None = None, timeout: float = 60) -> dict[str, Any]:
        response = self.session.post(self.endpoint, json={"query": text, "variables": variables or {}},
                                     timeout=timeout)
        if response.status_code != 200:
            raise AssertionError(f"GraphQL HTTP {response.status_code} from {self.endpoint}: {response.text[:2000]}")
        body = response.json()
        if body.get("errors"):
            raise AssertionError(f"GraphQL errors: {json.dumps(body['errors'])[:2000]}\nquery: {text}")
        return body["data"]

    @staticmethod
    def _ok(result: dict[str, Any], typename: str, what: str) -> dict[str, Any]:
        if result["__typename"] != typename:
            raise AssertionError(f"{what}: GraphQL returned {result['__typename']}: {result.get('message')}")
        return result

    def repository(self) -> dict[str, str]:
        """The one repository of the workspace (location sact_pipeline.definitions)."""
        if self._repository is None:
            result = self._ok(self.query(REPOSITORIES_QUERY)["repositoriesOrError"], "RepositoryConnection",
                              "repositories")
            nodes = result["nodes"]
            assert len(nodes) == 1, f"expected one repository in the workspace, got {nodes}"
            self._repository = {"repositoryName": nodes[0]["name"],
                                "repositoryLocationName": nodes[0]["location"]["name"]}
        return self._repository

    def runs(self, *, tags: dict[str, str] | None = None, statuses: list[str] | None = None,
             limit: int = 1000) -> list[Run]:
        run_filter: dict[str, Any] = {}
        if tags:
            run_filter["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
        if statuses:
            run_filter["statuses"] = statuses
        result = self._ok(self.query(RUNS_QUERY, {"filter": run_filter, "limit": limit})["runsOrError"], "Runs", "runs")
        return [Run(r["runId"], r["jobName"], r["status"], r["creationTime"], r["endTime"], r["updateTime"],
                    {t["key"]: t["value"] for t in r["tags"]}) for r in result["results"]]

    def sensor_ticks(self, name: str = SENSOR, limit: int = 10) -> list[dict[str, Any]]:
        """Latest first."""
        selector = {**self.repository(), "sensorName": name}
        result = self._ok(self.query(SENSOR_TICKS_QUERY, {"selector": selector, "limit": limit})["sensorOrError"],
                          "Sensor", f"sensor {name}")
        return sorted(result["sensorState"]["ticks"], key=lambda t: t["timestamp"], reverse=True)

    def sensor_status(self, name: str = SENSOR) -> str:
        selector = {**self.repository(), "sensorName": name}
        result = self._ok(self.query(SENSOR_TICKS_QUERY, {"selector": selector, "limit": 1})["sensorOrError"],
                          "Sensor", f"sensor {name}")
        return result["sensorState"]["status"]

    def latest_materialization(self, asset: str) -> dict | None:
        """The latest materialisation (partition, runId, timestamp) of an asset, any partition, or None."""
        result = self._ok(self.query(LATEST_MATERIALIZATION_QUERY, {"assetKey": {"path": [asset]}})["assetNodeOrError"],
                          "AssetNode", f"asset {asset}")
        events = result["assetMaterializations"]
        return events[0] if events else None

    def latest_materializations(self, asset: str, partitions: list[str]) -> dict[str, dict | None]:
        """partition -> its latest materialisation (partition, runId, timestamp), or None if it has none."""
        result = self._ok(self.query(MATERIALIZATIONS_QUERY, {"assetKey": {"path": [asset]},
                                                              "partitions": partitions})["assetNodeOrError"],
                          "AssetNode", f"asset {asset}")
        return dict(zip(partitions, result["latestMaterializationByPartition"]))

    def run_events(self, run_id: str) -> list[dict[str, Any]]:
        events, cursor = [], None
        while True:
            result = self._ok(self.query(RUN_EVENTS_QUERY, {"runId": run_id, "cursor": cursor})["logsForRun"],
                              "EventConnection", f"events of run {run_id}")
            events += result["events"]
            cursor = result["cursor"]
            if not result["hasMore"]:
                return events


# --------------------------------------------------------------------------------------------------
# The deployment


@dataclass
class LiveDeployment:
    deployment: Deployment
    graphql: GraphQL
    webhook: AlertWebhook
    databases: tuple[str, str]  # (dagster instance, warehouse)

    @property
    def url(self) -> str:
        return self.deployment.url

    @property
    def home(self) -> Path:
        return self.deployment.home

    @property
    def settings(self) -> Settings:
        return Settings.from_env(env=self.deployment.env)

    @property
    def landing_dir(self) -> Path:
        return self.settings.landing_dir

    @property
    def published_dir(self) -> Path:
        return self.settings.output_dir

    def published_paths(self, month: str) -> tuple[Path, Path]:
        """The CSV and notes of a month, named as the pipeline names them."""
        return Pipeline(self.settings).output_paths(month)

    def published_hashes(self) -> dict[str, str]:
        """The publication packs: the files of each month's folder, not the internal outputs beside them
        (the trusts' feedback files, the data-quality reports, the GX Data Docs)."""
        return {path: digest for path, digest in sha256_of_tree(self.published_dir).items()
                if re.fullmatch(r"\d{4}-\d{2}/[^/]+", path)}

    def daemon_log(self) -> str:
        return self.deployment.log_file("daemon").read_text(errors="replace")

    def diagnostics(self, *, webserver: bool = False) -> str:
        text = f"--- tail of {self.deployment.log_file('daemon')} ---\n{tail(self.deployment.log_file('daemon'))}"
        if webserver:
            text += (f"\n--- tail of {self.deployment.log_file('webserver')} ---\n"
                     f"{tail(self.deployment.log_file('webserver'), 30)}")
        return text

    def wait_for(self, what: str, condition: Callable[[], tuple[bool, Any]], *, timeout: float,
                 interval: float = 1.0) -> Any:
        """Poll condition() -> (done, state) until done; on timeout fail with the last state and the logs."""
        deadline = time.monotonic() + timeout
        state: Any = None
        while True:
            try:
                done, state = condition()
            except (requests.ConnectionError, requests.Timeout) as error:  # the webserver is busy or gone
                done, state = False, f"webserver not answering: {error}"
            if done:
                return state
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}.\nLast state:\n{state}\n"
                            f"{self.diagnostics(webserver=True)}", pytrace=False)
            time.sleep(interval)

    def runs_after(self, since: float) -> list[Run]:
        return [r for r in self.graphql.runs() if r.creation_time >= since]

    def settle(self, since: float, *, what: str, held_allowed: bool = False, timeout: float = STEP_TIMEOUT,
               quiet_seconds: float = 0.0, extra: Callable[[], tuple[bool, str]] | None = None) -> list[Run]:
        """Wait until the automation has finished reacting to what changed at `since`.

        Settled means: at least one run was created since `since`, no run is queued or in progress, and
        the landing-zone sensor has ticked after the last run ended saying every layer is up to date.
        With held_allowed (a trust-month failed on its data, so the sensor cannot say that), a tick after
        the last run that says "up to date" in any words (e.g. "up to date, except ...") will do, as will
        three ticks in a row that launched nothing. quiet_seconds: the last run ended at least that long
        ago (time for a run retry to show up). `extra` adds a condition (e.g. published files exist).
        Returns the runs created since `since`.
        """
        def condition():
            runs = self.graphql.runs()
            new = [r for r in runs if r.creation_time >= since]
            in_flight = [r for r in runs if r.status in IN_FLIGHT]
            ticks = self.graphql.sensor_ticks(limit=8)
            failed_ticks = [t for t in ticks if t["status"] == "FAILURE" and t["timestamp"] >= since]
            if failed_ticks:  # a sensor error will not go away by waiting: say so at once
                pytest.fail(f"the {SENSOR} tick failed while waiting for {what}: "
                            f"{(failed_ticks[0]['error'] or {}).get('message')}\n{self.diagnostics()}", pytrace=False)
            last_end = max([r.finished_at for r in runs] + [since])
            after = [t for t in ticks if t["status"] != "STARTED" and t["timestamp"] > last_end]
            state = [f"runs since the change: {[r.describe() for r in new]}",
                     f"in flight: {[r.describe() for r in in_flight]}",
                     "latest sensor ticks: " + "; ".join(
                         f"{t['status']} {t['skipReason'] or ''} ({len(t['runIds'])} runs)" for t in ticks[:4])]
            if not new or in_flight or time.time() - last_end < quiet_seconds:
                return False, "\n".join(state)
            reason = (after[0]["skipReason"] or "") if after else ""
            if held_allowed:
                sensor_done = "up to date" in reason or (len(after) >= 3 and not any(t["runIds"] for t in after))
            else:
                sensor_done = reason.startswith(UP_TO_DATE)
            if not sensor_done:
                return False, "\n".join(state)
            if extra is not None:
                ok, detail = extra()
                if not ok:
                    return False, "\n".join(state + [detail])
            return True, new

        return self.wait_for(what, condition, timeout=timeout, interval=1.5)


def _database_names() -> tuple[str, str]:
    stem = f"sact_test_{uuid.uuid4().hex[:12]}"
    return f"{stem}_dagster", f"{stem}_warehouse"


def deployment_environment(home: Path, server_url: str, databases: tuple[str, str], port: int,
                           webhook_url: str) -> dict[str, str]:
    """The environment `make up` would be given: this process's, without any SACT_/DAGSTER_ setting of the
    machine, plus the test settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SACT_", "DAGSTER_")) and k not in ("PYTEST_CURRENT_TEST",)}
    server = make_url(server_url)
    env.update({
        "SACT_HOME": str(home),
        "SACT_UI_HOST": "127.0.0.1",
        "SACT_UI_PORT": str(port),
        "DAGSTER_PG_HOST": server.host or "127.0.0.1",
        "DAGSTER_PG_PORT": str(server.port or 5432),
        "DAGSTER_PG_USERNAME": server.username or "postgres",
        "DAGSTER_PG_PASSWORD": server.password or "",
        "DAGSTER_PG_DB": databases[0],
        # As the loader role, which `up` makes with db init: the deployment runs with the loader's rights.
        "SACT_WAREHOUSE_URL": server.set(drivername="postgresql+psycopg2", database=databases[1], username=LOADER,
                                         password=None).render_as_string(hide_password=False),
        "SACT_SENSOR_INTERVAL": "5",
        "SACT_PSEUDONYMISATION_KEY": TEST_KEY,
        "SACT_FIRST_MONTH": FIRST_MONTH,
        "SACT_MAX_QUARANTINE_SHARE": "0.5",
        "SACT_ALERT_WEBHOOK_URL": webhook_url,
    })
    return env


@pytest.fixture(scope="session")
def alert_webhook():
    webhook = AlertWebhook()
    yield webhook
    webhook.close()


@pytest.fixture(scope="session")
def live_deployment(tmp_path_factory, postgres_server_url, alert_webhook):
    """`make up` on fresh databases; `make down` and DROP DATABASE ... WITH (FORCE) afterwards, always."""
    home = tmp_path_factory.mktemp("deployment") / "sact"
    databases = _database_names()
    env = deployment_environment(home, postgres_server_url, databases, free_port(), alert_webhook.url)
    deployment = Deployment.from_env(env)
    messages: list[str] = []
    live = LiveDeployment(deployment, GraphQL(deployment.url), alert_webhook, databases)
    started = time.monotonic()
    try:
        try:
            up(deployment, wait_seconds=120, log=messages.append)
        except SystemExit as error:  # deploy.up reports a failed start this way; pytest must not exit
            pytest.fail(f"make up failed: {error}\n{live.diagnostics(webserver=True)}", pytrace=False)
        print(f"\n[deployment] up in {time.monotonic() - started:.1f}s on {deployment.url} "
              f"(SACT_HOME {home}; databases {', '.join(databases)})")
        yield live
    finally:
        try:
            down(deployment, log=messages.append)
        finally:
            drop_database(postgres_server_url, *databases)


# --------------------------------------------------------------------------------------------------
# The scenario


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    """A generated file's header and rows, whatever its encoding (UTF-8, BOM or Windows-1252)."""
    text, _ = decode_generated(path.read_bytes())
    rows = list(csv.reader(io.StringIO(text, newline="")))
    return rows[0], rows[1:]


def _deliver(path: Path, header: list[str], rows: list[list[str]]) -> None:
    """Upload as a trust would: written under .part (ignored by the sensor), then renamed into place."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    partial.write_text(buffer.getvalue(), encoding="utf-8", newline="")
    os.replace(partial, path)


def _column(header: list[str], name: str) -> int:
    return [h.strip().lower() for h in header].index(name.lower())


@dataclass
class Delivery:
    """A file dropped into the landing zone by the scenario, and what the deployment did with it."""

    org: str
    month: str
    path: Path
    since: float
    hashes_before: dict[str, str]
    hashes_after: dict[str, str] = field(default_factory=dict)
    runs: list[Run] = field(default_factory=list)

    @property
    def trust_month(self) -> str:
        return f"{self.month}-01|{self.org}"


class Scenario:
    """The data story, each step once per session: whichever test needs a step first makes it happen."""

    def __init__(self, live: LiveDeployment):
        self.live = live
        self.generated: list[GeneratedFile] = []
        self.initial_runs: list[Run] = []
        self.initial_hashes: dict[str, str] = {}
        self.initial_seconds = 0.0
        self.late: Delivery | None = None
        self.failing: Delivery | None = None

    # --- what was generated ---------------------------------------------------------------------------
    @property
    def trusts(self) -> list[str]:
        return sorted({f.org_code for f in self.generated})

    @property
    def english_trusts(self) -> list[str]:
        return [t for t in self.trusts if t != WELSH_TRUST]

    def trust_months(self) -> list[tuple[str, str]]:
        return sorted({(f.reporting_month, f.org_code) for f in self.generated})

    def latest_file(self, org: str, month: str) -> GeneratedFile:
        return max((f for f in self.generated if f.org_code == org and f.reporting_month == month),
                   key=lambda f: f.submitted_at)

    def _published_exist(self) -> tuple[bool, str]:
        missing = [str(p) for m in MONTHS for p in self.live.published_paths(m) if not p.is_file()]
        return not missing, f"published files missing: {missing}"

    # --- steps ----------------------------------------------------------------------------------------
    def load_initial(self) -> "Scenario":
        """3 English trusts (+ the Welsh trust), 2024-01..2024-03, ~20 patients each: wait for every layer."""
        if self.generated:
            return self
        since = time.time()
        started = time.monotonic()
        self.generated = generate_submissions(self.live.landing_dir, trusts=3, months=len(MONTHS),
                                              end_month=MONTHS[-1], patients_per_trust=20, seed=7,
                                              defects=DefectRates())
        self.initial_runs = self.live.settle(since, what="the sensor to process the generated submissions",
                                             timeout=INITIAL_TIMEOUT, extra=self._published_exist)
        self.initial_hashes = self.live.published_hashes()
        self.initial_seconds = time.monotonic() - started
        print(f"\n[scenario] initial load settled in {self.initial_seconds:.1f}s, {len(self.initial_runs)} runs")
        return self

    def drop_late_correction(self) -> Delivery:
        """A corrected resubmission for the FIRST month from an English trust, sent late, with half its rows."""
        self.load_initial()
        if self.late:
            return self.late
        month = MONTHS[0]
        org = next(t for t in self.english_trusts if (month, t) in self.trust_months())
        header, rows = _read_csv(self.latest_file(org, month).path)
        path = self.live.landing_dir / "late" / f"SACT_{org}_{month.replace('-', '')}_20240420120000.csv"
        before = self.live.published_hashes()
        since = time.time()
        started = time.monotonic()
        _deliver(path, header, rows[: max(1, len(rows) // 2)])
        delivery = Delivery(org, month, path, since, before)
        delivery.runs = self.live.settle(since, what=f"the late correction {path.name} to be processed")
        delivery.hashes_after = self.live.published_hashes()
        print(f"\n[scenario] late correction settled in {time.monotonic() - started:.1f}s, {len(delivery.runs)} runs")
        self.late = delivery
        return delivery

    def drop_failing_resubmission(self) -> Delivery:
        """A resubmission for the LAST month in which ~90% of the rows carry an invalid NHS number (fails
        Modulus 11) and no local patient identifier: those rows are quarantined, more than
        SACT_MAX_QUARANTINE_SHARE, so the clean reconciliation suite fails the trust-month."""
        self.load_initial()
        if self.failing:
            return self.failing
        month = MONTHS[-1]
        org = next(t for t in self.english_trusts if (month, t) in self.trust_months())
        header, rows = _read_csv(self.latest_file(org, month).path)
        nhs, local = _column(header, "NHS_Number"), _column(header, "Local_Patient_Identifier")
        broken = [list(r) for r in rows]
        for index, row in enumerate(broken):
            if index % 10:  # 9 rows in 10
                row[nhs], row[local] = "1234567890", ""
        path = self.live.landing_dir / f"SACT_{org}_{month.replace('-', '')}_20240520120000.csv"
        before = self.live.published_hashes()
        alerts_before = len(self.live.webhook.received)
        since = time.time()
        started = time.monotonic()
        _deliver(path, header, broken)
        delivery = Delivery(org, month, path, since, before)

        def failed_and_alerted() -> tuple[bool, str]:
            failed = [r for r in self.live.runs_after(since) if r.status == "FAILURE"]
            alerts = self.live.webhook.texts()[alerts_before:]
            alerted = [r for r in failed if any(r.run_id in a for a in alerts)]
            return bool(alerted) and len(alerted) == len(failed), (
                f"failed runs: {[r.describe() for r in failed]}; alerts received since the drop: {len(alerts)}")

        # quiet_seconds: the daemon's run-retry consumer looks every 5 s; a retry would show up by then.
        delivery.runs = self.live.settle(since, what=f"the failing resubmission {path.name} to fail and be alerted",
                                         held_allowed=True, quiet_seconds=8, extra=failed_and_alerted)
        delivery.hashes_after = self.live.published_hashes()
        print(f"\n[scenario] failing resubmission settled in {time.monotonic() - started:.1f}s, "
              f"{len(delivery.runs)} runs")
        self.failing = delivery
        return delivery


@pytest.fixture(scope="session")
def sact_scenario(live_deployment) -> Scenario:
    return Scenario(live_deployment)
