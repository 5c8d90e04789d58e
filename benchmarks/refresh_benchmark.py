"""Time a full refresh on generated data, against a floor that does the same domain work bare.

Not a test: run `make bench` (or this script) and copy the figures into the README / BENCHMARKS.md.

    .venv/bin/python benchmarks/refresh_benchmark.py --trusts 20 --months 3 --patients 200 [--warehouse-url URL]

The floor reads every file, cleans, pseudonymises and counts with the domain core only: no Dagster,
no GX, no database. The refresh goes through Dagster, GX gates and the warehouse, as `make run` does.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd


def floor(settings, pipeline) -> tuple[float, int]:
    """Read, clean and count every latest file version with the domain core alone."""
    from sact_pipeline.domain.cleaning import clean_submission
    from sact_pipeline.domain.counting import count_activity
    from sact_pipeline.domain.landing import find_candidate_files, read_submission

    started = time.perf_counter()
    latest: dict[tuple[str, str], tuple] = {}
    rows = 0
    for path in find_candidate_files(settings.landing_dir):
        submission, frame = read_submission(path, settings.landing_dir, pipeline.organisations,
                                            first_month=settings.first_month, today=date.today())
        key = (submission.reporting_month, submission.trust_code)
        if key not in latest or latest[key][0].submitted_at < submission.submitted_at:
            latest[key] = (submission, frame)
    cleaned = []
    for (month, trust), (submission, frame) in latest.items():
        result = clean_submission(frame, trust_code=trust, submitted_at=submission.submitted_at,
                                  pseudonymiser=pipeline.pseudonymiser)
        rows += result.raw_rows
        cleaned.append(result.clean.assign(reporting_month=month, trust=trust))
    count_activity(pd.concat(cleaned, ignore_index=True), ["reporting_month", "trust"])
    return time.perf_counter() - started, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trusts", type=int, default=20)
    parser.add_argument("--months", type=int, default=3)
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--end-month", default="2025-06")
    parser.add_argument("--warehouse-url", help="default: SQLite under the temporary SACT_HOME")
    parser.add_argument("--scale", type=float, help="one month of England (sact-pipeline generate --scale) "
                                                    "times this factor, instead of --trusts/--months/--patients")
    args = parser.parse_args()
    os.environ.setdefault("SACT_PSEUDONYMISATION_KEY", "benchmark-key-0123456789abcdef-0123456789abcdef")

    from sact_pipeline.cli import refresh
    from sact_pipeline.domain.synthetic import generate_submissions
    from sact_pipeline.layers import Pipeline
    from sact_pipeline.settings import Settings

    with tempfile.TemporaryDirectory(prefix="sact-bench-") as home:
        settings = Settings.from_env(env={}, home=home, first_month="2023-01", warehouse_url=args.warehouse_url)
        started = time.perf_counter()
        if args.scale:
            from sact_pipeline.cli import ENGLAND_PATIENTS, ENGLAND_SIZE_SPREAD, ENGLAND_TRUSTS

            args.trusts, args.months = ENGLAND_TRUSTS, 1
            files = generate_submissions(settings.landing_dir, trusts=ENGLAND_TRUSTS, months=1,
                                         end_month=args.end_month, size_spread=ENGLAND_SIZE_SPREAD,
                                         patients_per_trust=round(ENGLAND_PATIENTS * args.scale))
        else:
            files = generate_submissions(settings.landing_dir, trusts=args.trusts, months=args.months,
                                         end_month=args.end_month, patients_per_trust=args.patients)
        generated = time.perf_counter() - started
        rows = sum(f.rows for f in files)
        pipeline = Pipeline(settings)
        floor_seconds, floor_rows = floor(settings, pipeline)

        from sact_pipeline import quality

        from sact_pipeline.layers import STAGE_SECONDS

        STAGE_SECONDS.clear()
        started = time.perf_counter()
        runs_before = quality.RUNS["count"]
        report = refresh(settings, log=lambda line: None)
        gx_runs = quality.RUNS["count"] - runs_before
        refresh_seconds = time.perf_counter() - started
        stages = dict(STAGE_SECONDS)
        started = time.perf_counter()
        again = refresh(settings, log=lambda line: None)
        noop_seconds = time.perf_counter() - started
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
        late = refresh(settings, log=lambda line: None)
        late_seconds = time.perf_counter() - started
        assert late.ok and late.trust_months == 1, late

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    warehouse = "PostgreSQL" if args.warehouse_url else "SQLite"
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"data: {len(files)} files, {rows} rows ({args.trusts} English trusts + 1 Welsh, {args.months} months)")
    print(f"generate:                  {generated:6.1f} s")
    print(f"floor (domain core only):  {floor_seconds:6.1f} s  {floor_rows / floor_seconds:9.0f} rows/s")
    print(f"refresh via Dagster ({warehouse}): {refresh_seconds:6.1f} s  {rows / refresh_seconds:9.0f} rows/s  "
          f"= {refresh_seconds / floor_seconds:.1f} x floor; {report.trust_months} trust-months in "
          f"{args.months} runs (one per month), {len(report.months)} month runs, "
          f"{refresh_seconds / report.trust_months:.2f} s per trust-month")
    print(f"GX suite runs in the refresh: {gx_runs} (4 suites a trust-month if run one by one: "
          f"{4 * report.trust_months})")
    print("per stage (inclusive seconds; the rest is Dagster, events and the run's own bookkeeping):")
    for name, seconds in sorted(stages.items(), key=lambda item: -item[1]):
        print(f"  {name:<28} {seconds:6.1f} s  {seconds / floor_seconds:5.2f} x floor")
    print(f"  {'(rest)':<28} {refresh_seconds - sum(stages.values()):6.1f} s")
    print(f"second refresh (no change): {noop_seconds:5.1f} s")
    print(f"one late resubmission ({original.org_code} {last_month}, {original.rows} rows): {late_seconds:5.1f} s "
          f"({', '.join(late.months)} re-published)")
    print(f"peak resident memory:      {peak_mb:6.0f} MB")


if __name__ == "__main__":
    main()
