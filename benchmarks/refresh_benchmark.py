"""Time a full refresh on generated data, against a floor that does the same domain work bare.

Not a test: run `make bench` (or this script) and copy the figures into BENCHMARKS.md.

    .venv/bin/python benchmarks/refresh_benchmark.py --trusts 20 --months 3 --patients 200 [--warehouse-url URL]
    .venv/bin/python benchmarks/refresh_benchmark.py --scale 1 --repeat 3        # one England month, medians
    .venv/bin/python benchmarks/refresh_benchmark.py --series 0.25,0.5,1,2      # how time and memory grow

The floor reads every file, cleans, pseudonymises and counts with the domain core only: no Dagster,
no GX, no database. The refresh goes through Dagster, GX gates and the warehouse, as `make run` does.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd


def latest_files(settings) -> list:
    """The latest file of each organisation and month by its name (no file is read: that is the floor's
    timed work); a file whose name the pipeline rejects is left out, as discovery leaves it."""
    from sact_pipeline.domain.landing import SubmissionRejected, find_candidate_files, parse_file_name

    latest: dict[tuple[str, str], tuple] = {}
    for path in find_candidate_files(settings.landing_dir):
        try:
            name = parse_file_name(path.name, first_month=settings.first_month, today=date.today())
        except SubmissionRejected:
            continue
        key = (name.reporting_month, name.org_code)
        if key not in latest or latest[key][1] < name.submitted_at:
            latest[key] = (path, name.submitted_at)
    return [path for path, _ in latest.values()]


def floor_files(settings, paths: list) -> int:
    """Read, clean, pseudonymise and count the given files with the domain core alone; rows read."""
    from sact_pipeline.domain.cleaning import clean_submission
    from sact_pipeline.domain.counting import count_activity
    from sact_pipeline.domain.landing import SubmissionRejected, read_submission

    pipeline = _FLOOR_PIPELINE[settings]  # loaded, untimed, by _load_domain
    rows, cleaned = 0, []
    for path in paths:
        try:
            submission, frame = read_submission(path, settings.landing_dir, pipeline.organisations,
                                                first_month=settings.first_month, today=date.today(), transition=settings.transition)
        except SubmissionRejected:  # the pipeline rejects it at discovery: no work for either
            continue
        result = clean_submission(frame, trust_code=submission.trust_code, submitted_at=submission.submitted_at,
                                  pseudonymiser=pipeline.pseudonymiser, sact_version=submission.header_version,
                                  transition=settings.transition)
        rows += result.raw_rows
        cleaned.append(result.clean.assign(reporting_month=submission.reporting_month, trust=submission.trust_code))
    if cleaned:
        count_activity(pd.concat(cleaned, ignore_index=True), ["reporting_month", "trust"])
    return rows


def floor(settings, processes: int = 1) -> tuple[float, int]:
    """The floor: every latest file version read, cleaned and counted per trust-month, by the domain core
    alone, in one process or spread file by file over `processes` (the refresh's workers use both cores;
    its ratio to the two-process floor shows what is left to win there). The processes are started and
    loaded before the clock starts, and take the next file as they finish one, largest files first:
    the best a bare script could do."""
    paths = sorted(latest_files(settings), key=lambda path: -path.stat().st_size)
    if processes == 1:
        _load_domain(settings)
        started = time.perf_counter()
        rows = floor_files(settings, paths)
        return time.perf_counter() - started, rows
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_load_domain, initargs=(settings,)) as pool:
        for started in [pool.submit(time.sleep, 0.5) for _ in range(processes)]:  # every process up and loaded
            started.result()
        started = time.perf_counter()
        rows = sum(pool.map(floor_files, [settings] * len(paths), [[path] for path in paths]))
        return time.perf_counter() - started, rows


_FLOOR_PIPELINE: dict = {}  # a floor process's pipeline, by settings


def _load_domain(settings) -> None:
    """A floor process's start: the imports, the ODS register and the key (not timed)."""
    from sact_pipeline.layers import Pipeline

    pipeline = _FLOOR_PIPELINE.setdefault(settings, Pipeline(settings))
    _ = (pipeline.organisations, pipeline.pseudonymiser)  # loaded now, not in the timed work


def generate(args, landing_dir: Path) -> list:
    from sact_pipeline.cli import england_shape
    from sact_pipeline.synthetic import generate_submissions

    shape = england_shape(args.scale) if args.scale else {
        "trusts": args.trusts, "months": args.months, "patients_per_trust": args.patients}
    return generate_submissions(landing_dir, end_month=args.end_month, sact_version=args.sact_version, **shape)


def floor_in_child(settings, processes: int = 1) -> tuple[float, int, float]:
    """The floor in a fresh process: (seconds, rows, that process's peak memory in MB)."""
    seconds, rows = floor(settings, processes)
    return seconds, rows, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine_reference() -> float:
    """Seconds for a fixed pure-Python loop (median of 3): shared machines vary by a third from hour to
    hour, so figures from different sessions are compared through this and through the floor ratio."""
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for number in range(10_000_000):
            total += number
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def measure(args) -> dict:
    """One measurement: generate, floor, refresh, no-op refresh, one late resubmission; in this process."""
    os.environ.setdefault("SACT_PSEUDONYMISATION_KEY", "benchmark-key-0123456789abcdef-0123456789abcdef")

    from sact_pipeline.cli import refresh
    from sact_pipeline.layers import Pipeline
    from sact_pipeline.settings import Settings

    result: dict = {"reference_loop_s": machine_reference()}
    with tempfile.TemporaryDirectory(prefix="sact-bench-") as home:
        warehouse_url = args.warehouse_url
        if warehouse_url:  # a fresh database per measurement, so every run starts from the same state
            warehouse_url = fresh_postgres_database(warehouse_url)
        settings = Settings.from_env(env={}, home=home, first_month="2023-01", warehouse_url=warehouse_url,
                                     workers=args.workers)
        # Generation and the floor run in child processes: this process's peak memory is then the refresh's
        # alone (the floor holds the whole month at once, the refresh a batch of trusts at a time).
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as child:
            started = time.perf_counter()
            files = child.submit(generate, args, settings.landing_dir).result()
            result["generate_s"] = time.perf_counter() - started
            result["floor_s"], result["floor_rows"], result["floor_peak_rss_mb"] = child.submit(
                floor_in_child, settings).result()
            result["floor_2p_s"], _, _ = child.submit(floor_in_child, settings, 2).result()
        if args.scale:
            from sact_pipeline.cli import england_shape

            args.trusts, args.months = england_shape()["trusts"], 1
        result.update(files=len(files), rows=sum(f.rows for f in files), trusts=args.trusts, months=args.months,
                      largest_file_rows=max(f.rows for f in files))

        pipeline = Pipeline(settings)  # the refresh's runs share it, and measure into it
        measured = pipeline.measurements
        started = time.perf_counter()
        report = refresh(settings, log=lambda line: None, pipeline=pipeline)
        result["refresh_s"] = time.perf_counter() - started
        result["gx_runs"] = measured.suite_runs
        result["trust_months"], result["month_runs"] = report.trust_months, len(report.months)
        result["stages"] = dict(measured.stage_seconds)
        worker_peaks = dict(measured.worker_peak_mb)
        started = time.perf_counter()
        again = refresh(settings, log=lambda line: None, pipeline=pipeline)
        result["noop_s"] = time.perf_counter() - started
        assert report.ok and again.trust_months == 0, (report, again)

        # One late corrected resubmission: the median-sized trust of the last month sends its file again a
        # day later with its last row removed; time the refresh that re-publishes what it affects.
        last_month = max(f.reporting_month for f in files)
        candidates = sorted((f for f in files if f.reporting_month == last_month and f.rows > 1),
                            key=lambda f: f.rows)
        original = candidates[len(candidates) // 2]
        source = Path(original.path)
        stamp = source.stem.rsplit("_", 1)[1]
        later = (datetime.strptime(stamp, "%Y%m%d%H%M%S") + timedelta(days=1)).strftime("%Y%m%d%H%M%S")
        lines = source.read_bytes().splitlines(keepends=True)
        (source.parent / source.name.replace(stamp, later)).write_bytes(b"".join(lines[:-1]))
        started = time.perf_counter()
        late = refresh(settings, log=lambda line: None, pipeline=pipeline)
        result["late_s"] = time.perf_counter() - started
        assert late.ok and late.trust_months == 1, late
        result.update(late_trust=f"{original.org_code} {last_month}", late_rows=original.rows,
                      late_months=list(late.months))

        # Registration opt-outs: one patient from each of `--optouts` trusts of the last month opts out; time
        # the refresh that registers the file, re-derives the trust-months holding them and re-publishes.
        numbers = optout_sample(files, last_month, args.optouts)
        settings.optout_dir.mkdir(parents=True, exist_ok=True)
        (settings.optout_dir / "optouts_bench.csv").write_text("NHS_Number\n" + "\n".join(numbers) + "\n")
        measured.clear()
        started = time.perf_counter()
        optouts = refresh(settings, log=lambda line: None, pipeline=pipeline)
        result["optout_s"] = time.perf_counter() - started
        result["optout_stages"] = dict(measured.stage_seconds)
        for pid, peak in measured.worker_peak_mb.items():
            worker_peaks[pid] = max(worker_peaks.get(pid, 0.0), peak)
        assert optouts.ok, optouts
        result.update(optout_patients=len(numbers), optout_trust_months=optouts.trust_months,
                      optout_months=list(optouts.months))
        if warehouse_url:
            drop_postgres_database(warehouse_url)
    # The refresh's process plus its workers' peaks: an upper bound of what was resident at once.
    result["main_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["worker_peak_rss_mb"] = sorted(worker_peaks.values())
    result["peak_rss_mb"] = result["main_peak_rss_mb"] + sum(result["worker_peak_rss_mb"])
    result["workers"] = len(worker_peaks) or 1  # the processes that built the month (1: its own process)
    return result


def optout_sample(files, month: str, count: int) -> list[str]:
    """The first valid NHS number of `count` files of the month (one patient each from that many trusts)."""
    from sact_pipeline.domain import nhs_number
    from sact_pipeline.domain.landing import decode

    numbers = []
    for file in sorted((f for f in files if f.reporting_month == month), key=lambda f: str(f.path))[:count]:
        text, _ = decode(Path(file.path).name, Path(file.path).read_bytes())
        frame = pd.read_csv(pd.io.common.StringIO(text), dtype=str, keep_default_na=False)
        column = next(c for c in frame.columns if c.strip().lower() == "nhs_number")
        values = nhs_number.normalise(frame[column])
        valid = values[nhs_number.is_valid(values)]
        numbers += valid.iloc[:1].tolist()
    return numbers


def fresh_postgres_database(url: str) -> str:
    import sqlalchemy as sa

    from sact_pipeline.database import create_database

    fresh = sa.make_url(url).set(database=f"sact_bench_{os.getpid()}")
    drop_postgres_database(fresh)  # left over from an interrupted measurement of the same pid
    create_database(fresh)
    return fresh.render_as_string(hide_password=False)


def drop_postgres_database(url) -> None:
    """DROP ... WITH (FORCE): the refresh's cached engines may still hold connections to it."""
    import sqlalchemy as sa

    target = sa.make_url(url)
    admin = sa.create_engine(target.set(database="postgres", drivername="postgresql+psycopg2"),
                             isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)')
    admin.dispose()


def print_one(result: dict, warehouse: str) -> None:
    floor_s, refresh_s = result["floor_s"], result["refresh_s"]
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"reference loop {result['reference_loop_s']:.2f} s")
    print(f"data: {result['files']} files, {result['rows']} rows ({result['trusts']} English trusts + 1 Welsh, "
          f"{result['months']} months; largest file {result['largest_file_rows']} rows)")
    print(f"generate:                  {result['generate_s']:6.1f} s")
    print(f"floor (domain core only):  {floor_s:6.1f} s  {result['floor_rows'] / floor_s:9.0f} rows/s; "
          f"on 2 processes {result['floor_2p_s']:.1f} s")
    print(f"refresh via Dagster ({warehouse}, {result['workers']} worker(s)): {refresh_s:6.1f} s  "
          f"{result['rows'] / refresh_s:9.0f} rows/s  = {refresh_s / floor_s:.1f} x floor, "
          f"{refresh_s / result['floor_2p_s']:.1f} x the 2-process floor; {result['trust_months']} trust-months in "
          f"{result['months']} runs (one per month), {result['month_runs']} month runs")
    print(f"GX suite runs in the refresh: {result['gx_runs']} (4 suites a trust-month if run one by one: "
          f"{4 * result['trust_months']})")
    print("per stage (inclusive seconds, summed over worker processes; the rest is Dagster, events and the "
          "run's own bookkeeping):")
    for name, seconds in sorted(result["stages"].items(), key=lambda item: -item[1]):
        print(f"  {name:<28} {seconds:6.1f} s  {seconds / floor_s:5.2f} x floor")
    if result["workers"] == 1:  # with workers the stages overlap and their sum exceeds the wall time
        print(f"  {'(rest)':<28} {refresh_s - sum(result['stages'].values()):6.1f} s")
    print(f"second refresh (no change): {result['noop_s']:5.1f} s")
    print(f"one late resubmission ({result['late_trust']}, {result['late_rows']} rows): {result['late_s']:5.1f} s "
          f"({', '.join(result['late_months'])} re-published)")
    print(f"an opt-out file of {result['optout_patients']} patients (one per trust): {result['optout_s']:5.1f} s "
          f"({result['optout_trust_months']} trust-months re-derived, {', '.join(result['optout_months'])} "
          "re-published)")
    print("  its stages: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in
                                       sorted(result["optout_stages"].items(), key=lambda item: -item[1])))
    workers = " + ".join(f"{mb:.0f}" for mb in result["worker_peak_rss_mb"]) or "none"
    print(f"peak resident memory:      {result['peak_rss_mb']:6.0f} MB (the refreshes' process "
          f"{result['main_peak_rss_mb']:.0f} MB + workers {workers}; the floor's own process: "
          f"{result['floor_peak_rss_mb']:.0f} MB)")


def print_medians(label: str, results: list[dict]) -> None:
    """One Markdown table row of medians (BENCHMARKS.md): floor, refresh, ratio, late, no-op, memory."""
    def median(key):
        return statistics.median(r[key] for r in results)

    ratios = statistics.median(r["refresh_s"] / r["floor_s"] for r in results)
    ratios_2p = statistics.median(r["refresh_s"] / r["floor_2p_s"] for r in results)
    print(f"| {label} | {median('rows'):,.0f} | {len(results)} | {median('reference_loop_s'):.2f} s | "
          f"{median('floor_s'):.1f} s | {median('floor_2p_s'):.1f} s | {median('refresh_s'):.1f} s | {ratios:.1f}x | "
          f"{ratios_2p:.1f}x | {median('late_s'):.1f} s | "
          f"{median('noop_s'):.1f} s | {median('peak_rss_mb'):,.0f} MB | {median('floor_peak_rss_mb'):,.0f} MB |",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trusts", type=int, default=20)
    parser.add_argument("--months", type=int, default=3)
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--end-month", default="2025-06")
    parser.add_argument("--warehouse-url", help="a PostgreSQL server URL (a fresh database is made on it for "
                                                "each measurement); default: SQLite under a temporary SACT_HOME")
    parser.add_argument("--scale", type=float, help="one month of England (sact-pipeline generate --scale) "
                                                    "times this factor, instead of --trusts/--months/--patients")
    parser.add_argument("--series", help="comma-separated scales (e.g. 0.25,0.5,1,2): a table row of medians "
                                         "for each, every measurement in a process of its own")
    parser.add_argument("--repeat", type=int, default=1, help="measurements per row (medians are reported)")
    parser.add_argument("--workers", type=int, help="worker processes for a large month (SACT_WORKERS); "
                                                   "default: the pipeline's (up to 2 cores)")
    parser.add_argument("--optouts", type=int, default=100, help="patients in the timed opt-out file (one from "
                                                                 "each of that many trusts of the last month)")
    parser.add_argument("--sact-version", choices=("v3", "v4", "mixed"), default="mixed",
                        help="the files' SACT version (generate --sact-version; mixed is v3 before 2026-04)")
    parser.add_argument("--json", action="store_true", help="print one measurement as JSON (used by --series)")
    args = parser.parse_args()
    warehouse = "PostgreSQL" if args.warehouse_url else "SQLite"

    if args.json:
        print(json.dumps(measure(args)))
        return
    if not args.series and args.repeat == 1:
        print_one(measure(args), warehouse)
        return
    scales = [float(s) for s in args.series.split(",")] if args.series else [args.scale]
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{warehouse}; medians of {args.repeat} measurement(s), each in its own process")
    print("| data | rows | runs | reference loop | floor | floor, 2 processes | refresh | refresh / floor "
          "| refresh / 2-process floor | late resubmission | no-op refresh | peak memory (refresh) "
          "| peak memory (floor) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for scale in scales:
        results = []
        for _ in range(args.repeat):
            command = [sys.executable, __file__, "--json", "--end-month", args.end_month,
                       "--sact-version", args.sact_version]
            command += ["--scale", str(scale)] if scale else ["--trusts", str(args.trusts), "--months",
                                                              str(args.months), "--patients", str(args.patients)]
            command += ["--warehouse-url", args.warehouse_url] if args.warehouse_url else []
            command += ["--workers", str(args.workers)] if args.workers else []
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            results.append(json.loads(output.strip().splitlines()[-1]))
        label = f"England x {scale:g}, {warehouse}" if scale else f"{args.trusts} trusts x {args.months} months, {warehouse}"
        label += f", SACT {args.sact_version}" if args.sact_version != "mixed" else ""
        label += f", {results[0]['workers']} worker{'s' * (results[0]['workers'] > 1)}"
        print_medians(label, results)


if __name__ == "__main__":
    main()
