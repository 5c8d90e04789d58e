"""Time the path people wait on in the UI: a deployment's landing-zone sensor, from files landing to
published files on disk.

Not a test: run `make bench-sensor` (or this script) and copy the figures into BENCHMARKS.md.

    .venv/bin/python benchmarks/sensor_benchmark.py [--interval 30] [--trusts 8 --months 4 --patients 25]

It starts the deployment of `make up` (dagster-webserver and dagster-daemon on fresh PostgreSQL
databases, the sensor at SACT_SENSOR_INTERVAL, default 30 s as shipped) in a temporary SACT_HOME, then:
1. moves a generated landing zone (by default 8 trusts x 4 months: 32 files, about 2,800 rows) into the
   landing zone at once and times until every month's published table is on disk and nothing is in
   flight;
2. drops a late corrected file for the first month (half its rows) and times until the first two months
   are re-published and nothing is in flight.
The clock starts when the files land, so it includes the sensor's wait for files to be complete. Then
`make down`, and the databases are dropped. Prints one JSON line, and the runs each phase made.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

KEY = "benchmark-key-0123456789abcdef-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def published_hashes(output_dir: Path, months: list[str]) -> dict[str, str | None]:
    hashes = {}
    for month in months:
        path = output_dir / month / f"sact_submissions_{month}.csv"
        hashes[month] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    return hashes


def runs_since(instance, since: float) -> list:
    from dagster import RunsFilter

    return [record.dagster_run for record in instance.get_run_records(RunsFilter(created_after=_utc(since)))]


def describe_runs(instance, since: float, phase: str) -> None:
    """On stderr, each run since `since`: job, and seconds from `since` to its creation, start and end."""
    from dagster import RunsFilter

    for record in reversed(instance.get_run_records(RunsFilter(created_after=_utc(since)))):
        times = [record.create_timestamp.timestamp(), record.start_time, record.end_time]
        offsets = " ".join(f"{t - since:6.1f}" if t else "     -" for t in times)
        print(f"[{phase}] {record.dagster_run.job_name:<22} created/started/ended at {offsets}  "
              f"{record.dagster_run.status.value}", file=sys.stderr)


def _utc(timestamp: float):
    from datetime import datetime, timezone

    return datetime.fromtimestamp(timestamp, tz=timezone.utc)


def wait_until(what: str, condition, timeout: float) -> float:
    """Seconds until condition() holds (polled every 0.5 s)."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.5)
    return time.monotonic() - started


def idle(instance) -> bool:
    from dagster import RunsFilter

    from sact_pipeline.run_tags import IN_FLIGHT

    return not instance.get_runs(RunsFilter(statuses=IN_FLIGHT), limit=1)


def late_correction(landing: Path, month: str) -> Path:
    """A corrected resubmission of the first trust's file for `month`, half its rows, sent later."""
    from datetime import datetime, timedelta

    first = sorted(landing.glob(f"**/SACT_R*_{month.replace('-', '')}_*.csv"))[0]  # an English trust's
    org, stamp = first.name.split("_")[1], first.stem.split("_")[3]
    lines = first.read_bytes().splitlines(keepends=True)  # as sent: the generator writes cp1252 files too
    later = (datetime.strptime(stamp, "%Y%m%d%H%M%S") + timedelta(days=1)).strftime("%Y%m%d%H%M%S")
    path = landing / "late" / f"SACT_{org}_{month.replace('-', '')}_{later}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_suffix(".csv.part")
    staged.write_bytes(b"".join(lines[: 1 + max(1, (len(lines) - 1) // 2)]))
    staged.rename(path)
    return path


def drop_databases(admin_url, *names: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        for name in names:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def measure(args) -> dict:
    from dagster import DagsterInstance

    from sact_pipeline.deploy import Deployment, down, up
    from sact_pipeline.synthetic import generate_submissions

    home = Path(tempfile.mkdtemp(prefix="sact-sensor-bench-"))
    stem = f"sact_bench_{uuid.uuid4().hex[:10]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SACT_", "DAGSTER_"))}
    env.update({"SACT_HOME": str(home / "sact"), "SACT_UI_PORT": str(free_port()), "DAGSTER_PG_DB": f"{stem}_dagster",
                "SACT_WAREHOUSE_URL": f"postgresql+psycopg2://sact_loader@127.0.0.1:5432/{stem}_warehouse",
                "SACT_SENSOR_INTERVAL": str(args.interval), "SACT_PSEUDONYMISATION_KEY": KEY,
                "SACT_FIRST_MONTH": "2024-01"})
    deployment = Deployment.from_env(env)
    staging = home / "staging"
    files = generate_submissions(staging, trusts=args.trusts - 1, months=args.months, end_month=args.end_month,
                                 patients_per_trust=args.patients, seed=11)
    months = sorted({f.reporting_month for f in files})
    rows = sum(f.rows for f in files)
    landing = deployment.home / "landing"
    output = deployment.home / "published"
    result: dict = {"interval": args.interval, "files": len(files), "rows": rows, "months": len(months)}
    started = time.monotonic()
    up(deployment, wait_seconds=300, log=lambda line: None)
    result["start_s"] = round(time.monotonic() - started, 1)
    os.environ.update({k: v for k, v in deployment.env.items() if k.startswith("DAGSTER_")})  # its dagster.yaml reads them
    try:
        with DagsterInstance.from_config(deployment.env["DAGSTER_HOME"]) as instance:
            landing.parent.mkdir(parents=True, exist_ok=True)
            since = time.time()
            shutil.copytree(staging, landing, dirs_exist_ok=True)  # the whole landing zone at once
            result["first_load_s"] = round(wait_until(
                "every month published", lambda: None not in published_hashes(output, months).values()
                and idle(instance) and runs_since(instance, since), args.timeout), 1)
            result["first_load_runs"] = len(runs_since(instance, since))
            describe_runs(instance, since, "first load")
            time.sleep(args.interval + 2)  # a tick that finds nothing to do
            before = published_hashes(output, months)
            since = time.time()
            late_correction(landing, months[0])
            changed = lambda: [m for m, h in published_hashes(output, months).items() if h != before[m]]  # noqa: E731
            result["late_correction_s"] = round(wait_until(
                "the first two months re-published", lambda: len(changed()) >= min(2, len(months))
                and idle(instance), args.timeout), 1)
            result["late_correction_runs"] = len(runs_since(instance, since))
            describe_runs(instance, since, "late correction")
            result["late_correction_months"] = changed()
    finally:
        down(deployment, log=lambda line: None)
        drop_databases(deployment.dagster_url().set(database="postgres"), f"{stem}_dagster", f"{stem}_warehouse")
        shutil.rmtree(home, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=int, default=30, help="SACT_SENSOR_INTERVAL, seconds (shipped: 30)")
    parser.add_argument("--trusts", type=int, default=8, help="trusts, the Welsh one included")
    parser.add_argument("--months", type=int, default=4)
    parser.add_argument("--patients", type=int, default=25, help="patients per trust per month (average)")
    parser.add_argument("--end-month", default="2024-04")
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    print(json.dumps(measure(args)))


if __name__ == "__main__":
    main()
