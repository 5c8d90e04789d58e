"""`sact-pipeline`: refresh the pipeline through Dagster, or generate sample submissions.

`refresh` runs on the configured Dagster instance (DAGSTER_HOME), so every run it makes is visible in
the Dagster UI (`make ui`). It only re-runs what changed: a second refresh with no new files does nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sact_pipeline.planning import Backfill, Step, StepKind, plan
from sact_pipeline.settings import Settings, SettingsError


def _settings_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings (override the environment variables)")
    group.add_argument("--home", help="base folder for the defaults (SACT_HOME, default ./.sact)")
    group.add_argument("--landing-dir", help="landing zone (SACT_LANDING_DIR)")
    group.add_argument("--output-dir", help="published files (SACT_OUTPUT_DIR)")
    group.add_argument("--warehouse-url", help="SQLAlchemy URL of the warehouse (SACT_WAREHOUSE_URL)")
    group.add_argument("--dagster-home", help="Dagster instance folder (DAGSTER_HOME)")
    group.add_argument("--first-month", help="first reporting month covered, YYYY-MM (SACT_FIRST_MONTH)")
    group.add_argument("--optout-dir", help="registration opt-out files (SACT_OPTOUT_DIR)")


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(home=args.home, landing_dir=args.landing_dir, output_dir=args.output_dir,
                             warehouse_url=args.warehouse_url, dagster_home=args.dagster_home,
                             first_month=args.first_month, optout_dir=args.optout_dir)


LOCAL_INSTANCE_YAML = """\
# Written by sact-pipeline for a new local instance: storage stays the SQLite default in this folder.
# Telemetry is off: nothing about NHS data work leaves this machine.
telemetry:
  enabled: false
"""


def prepare_dagster_home(dagster_home: Path) -> None:
    """Create a missing instance folder with telemetry off; an existing dagster.yaml is never touched."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    config = dagster_home / "dagster.yaml"
    if not config.exists():
        config.write_text(LOCAL_INSTANCE_YAML, encoding="utf-8")


@dataclass
class RefreshReport:
    failures: list[str]
    rejected: list[tuple[str, str]]  # rejected files lying in the landing zone now
    trust_months: int
    months: list[str]

    @property
    def ok(self) -> bool:
        return not self.failures and not self.rejected


def _run_failure(result) -> str:
    """The first step failure of an in-process run, as one line."""
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            return f"{event.step_key}: {event.step_failure_data.error.message.strip()}"
    return "run failed"


def refresh(settings: Settings, *, log=print, backfill: Backfill | None = None, rekey: bool = False,
            pipeline=None) -> RefreshReport:
    """Discover, then materialise every affected trust-month and month through Dagster.

    With a backfill, every trust-month with files in its range (and trusts) is re-run, then its months
    and the month after the range, whose changes read the last month of it. Refuses to run when the
    clean layer was built with another pseudonymisation key, unless `rekey` (then every trust-month
    built with another key is affected and re-derived from raw). `pipeline`: the one its runs share
    (made here when not given; a caller that gives it can read its measurements).
    """
    from sact_pipeline.layers import Pipeline

    if pipeline is None:  # its own, closed when done (connections, worker processes)
        pipeline = Pipeline(settings)
        try:
            return refresh(settings, log=log, backfill=backfill, rekey=rekey, pipeline=pipeline)
        finally:
            pipeline.dispose()
    prepare_dagster_home(settings.dagster_home)
    pipeline.pseudonymiser  # fail fast, with the reason, before any run starts
    if not rekey:
        pipeline.check_key()
    # One refresh at a time per warehouse: a second one waits, then finds only what the first left to do.
    with pipeline.warehouse.refresh_lock(waiting=lambda: log(
            "another refresh is running on this warehouse: waiting for it to finish")):
        for line in pipeline.recover_interrupted_writes():  # of a refresh that was killed
            log(f"recovered: {line}")
        return _refresh(settings, pipeline, log=log, backfill=backfill, rekey=rekey)


def _refresh(settings: Settings, pipeline, *, log, backfill: Backfill | None, rekey: bool) -> RefreshReport:
    from dagster import DagsterInstance

    from sact_pipeline.definitions import build_definitions
    from sact_pipeline.run_tags import DISCOVERY_JOB, PROCESS_TAG, fail_runs_of_dead_processes, this_run_process

    defs = build_definitions(settings, pipeline=pipeline)
    tags = {"sact/trigger": "cli-rekey" if rekey else "cli-refresh", PROCESS_TAG: this_run_process()}
    # Every run of the refresh: one Data Docs build at its end, not one per step; a rekey may re-derive.
    options = {"data_docs": False, "rekey": rekey}
    # This instance (not $DAGSTER_HOME) so that --dagster-home works; no dagster.yaml there means SQLite.
    with DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        for run in fail_runs_of_dead_processes(instance):
            log(f"run {run} marked failed: the process running it was killed")
        started = time.monotonic()
        since = datetime.now()  # full precision: scans a second apart must differ
        result = defs.resolve_job_def(DISCOVERY_JOB).execute_in_process(
            instance=instance, raise_on_error=False, tags=tags, run_config=_cli_run_config(DISCOVERY_JOB, options))
        if not result.success:
            return RefreshReport([f"discovery: {_run_failure(result)}"], [], 0, [])
        rejected, failures = _report_discovery(settings, pipeline, since, log)
        runner = _StepRunner(defs, instance, tags, options, log, failures)
        runner.run_plan(pipeline, backfill)
        try:  # nothing new recorded: a few milliseconds
            pipeline.build_data_docs()
        except Exception as error:  # noqa: BLE001 - documentation only: the layers are done and gated
            log(f"GX Data Docs were not built: {type(error).__name__}: {error}")
        log(f"refresh took {time.monotonic() - started:.1f}s: {runner.trust_months} trust-months, "
            f"{len(runner.months)} months re-published")
    return RefreshReport(failures, rejected, runner.trust_months, runner.months)


def _report_discovery(settings: Settings, pipeline, since: datetime, log) -> tuple[list, list[str]]:
    """Log what discovery rejected and the opt-outs it registered: (rejected files, failures)."""
    failures = []
    rejected = [(path, reason) for path, reason, _ in pipeline.landing.rejected_in_landing_zone(seen_since=since)]
    for path, reason in rejected:
        log(f"REJECTED {path}: {reason}")
    for name, reason in pipeline.protection.rejected_optouts():
        log(f"OPT-OUT FILE NOT APPLIED {name}: {reason}")
        failures.append(f"opt-out file {name} in {settings.optout_dir} could not be applied: {reason}")
    pending = pipeline.warehouse.pending_optouts()
    if pending:
        log(f"opt-outs: {len(pending)} trust-months hold patients who opted out; re-deriving them without")
    return rejected, failures


def _cli_run_config(job_name: str, options: dict) -> dict:
    """The run config of an in-process run: its steps' options, and a console that shows our progress
    lines only (Dagster's own events still go to the instance, and the UI)."""
    from sact_pipeline.run_config import run_config_for

    return {**run_config_for(job_name, **options), "loggers": {"console": {"config": {"log_level": "ERROR"}}}}


class _StepRunner:
    """Carries out the planner's steps as in-process runs, asking the planner again after each batch,
    until nothing is left to do (each kind of step runs at most once per month in a refresh)."""

    def __init__(self, defs, instance, tags: dict, options: dict, log, failures: list[str]):
        self.defs, self.instance, self.tags, self.options, self.log = defs, instance, tags, options, log
        self.failures = failures
        self.trust_months, self.months = 0, []
        self.done: set[tuple[str, str]] = set()

    def run_plan(self, pipeline, backfill: Backfill | None) -> None:
        state = pipeline.status.read()
        if backfill is not None and backfill.unknown_trusts(state.registered):
            self.failures.append(f"backfill: no accepted submission from {', '.join(backfill.unknown_trusts(state.registered))}")
        while True:
            # The command line builds held trust-months again: a person asked, and is told again.
            steps = plan(state, backfill=backfill, done=frozenset(self.done), retry_held=True)
            if not steps.steps:
                self._tell_held(state.held)
                return
            for number, step in enumerate(steps.steps, 1):
                self.done.add(step.done_key)
                self._run(step, number, len(steps.steps))
            state = pipeline.status.read()

    def _tell_held(self, held) -> None:
        """Trust-months whose newest files fail a gate: their months are published without them (the last
        good version's figures, or none), and the refresh fails naming each."""
        for (month, trust), reason in sorted(held.items()):
            self.log(f"{trust} {month}: HELD, its newest file failed a gate; {month} is published with {trust} "
                     f"held (last good version) or unusable: {reason}")
            self.failures.append(f"{trust} {month}: newest file failed a gate (published as held or unusable): "
                                 f"{reason}")

    def _run(self, step: Step, number: int, of: int) -> None:
        from sact_pipeline.run_tags import step_run

        job_name, partition_key, tags, options = step_run(self.instance, step)
        started = time.monotonic()
        result = self.defs.resolve_job_def(job_name).execute_in_process(
            instance=self.instance, raise_on_error=False, tags={**self.tags, **tags}, partition_key=partition_key,
            run_config=_cli_run_config(job_name, {**self.options, **options}))
        if step.kind is StepKind.TRUST_MONTHS:
            self.trust_months += len(step.trusts)
            label = ", ".join(step.trusts) if len(step.trusts) <= 8 else f"{len(step.trusts)} trusts"
            self.log(f"[{number}/{of}] {step.month} {label}: {'ok' if result.success else 'FAILED'} "
                     f"({time.monotonic() - started:.1f}s)")
            what = step.month
        elif step.kind is StepKind.MONTH:
            self.months.append(step.month)
            self.log(f"month {step.month}: {'published' if result.success else 'FAILED'}")
            what = step.month
        else:
            self.log(f"month {step.month}: data-quality report {'built' if result.success else 'FAILED'}")
            what = f"{step.month} data-quality report"
        if not result.success:
            self.failures.append(f"{what}: {_run_failure(result)}")


def print_summary(settings: Settings, log=print, pipeline=None) -> None:
    """Per-month picture from the published tables (published values only) and the file paths."""
    from sact_pipeline.layers import Pipeline
    from sact_pipeline.tables import published_submissions

    pipeline = pipeline or Pipeline(settings)
    published = pipeline.warehouse.read(published_submissions)
    if published.empty:
        log("nothing published yet")
        return
    log("")
    log(f"{'month':<8} {'status':<11} {'trusts':>6} {'on_time':>7} {'late':>5} {'missing':>7} {'not_due':>7} "
        f"{'v3':>3} {'v4':>3} {'patients':>9} {'regimens':>9} {'cycles':>9} {'drug_admins':>11}  published file")
    for month, table in published.groupby("reporting_month"):
        trusts = table.loc[table["org_code"] != "ENGLAND"]
        england = table.loc[table["org_code"] == "ENGLAND"].iloc[0]
        status = trusts["submission_status"].value_counts()
        # trusts whose figures come from a SACT v3 or v4 file
        versions = trusts["sact_version"].value_counts()
        csv_path, _ = pipeline.output_paths(month)
        month_status = england.get("month_status") if isinstance(england.get("month_status"), str) else "final"
        log(f"{month:<8} {month_status:<11} {len(trusts):>6} {status.get('on_time', 0):>7} {status.get('late', 0):>5} "
            f"{status.get('missing', 0):>7} {status.get('not_yet_due', 0):>7} {versions.get('v3', 0):>3} "
            f"{versions.get('v4', 0):>3} {england['patients']:>9} {england['regimens']:>9} "
            f"{england['cycles']:>9} {england['drug_administrations']:>11}  {csv_path}")
        not_used = trusts.loc[trusts["data_status"].isin(["held", "unusable"])] if "data_status" in trusts else trusts.iloc[:0]
        for code, data_status in zip(not_used["org_code"], not_used["data_status"]):
            log(f"         {code}: {data_status} ({'its newest file failed a gate' if data_status == 'held' else 'no usable version'})")
    log("(England figures after disclosure control; notes files sit beside each table)")
    latest = str(published["reporting_month"].max())
    report = pipeline.quality_report_paths(latest)["html"]
    if report.exists():  # internal: for NDRS staff, not for publication
        log(f"internal data-quality report ({latest}): {report}; trusts' feedback files: "
            f"{pipeline.feedback_path(latest, 'TRUST').parent}")
    index = pipeline.data_docs.site_dir / "index.html"
    if index.exists():
        log(f"GX Data Docs (every suite run, offline): {index}")


def _run_and_report(settings: Settings, backfill: Backfill | None = None, rekey: bool = False,
                    pipeline=None) -> int:
    """Refresh (or backfill, or rekey), print the summary, failures and rejected files; the exit code.
    One pipeline for all of it: the caller's, or one made and closed here."""
    from sact_pipeline.domain.pseudonymise import PseudonymisationKeyError
    from sact_pipeline.keys import is_demo_key
    from sact_pipeline.layers import Pipeline

    if pipeline is None:
        pipeline = Pipeline(settings)
        try:
            return _run_and_report(settings, backfill, rekey, pipeline)
        finally:
            pipeline.dispose()

    if is_demo_key(settings.home):
        print(f"note: using the local DEMO pseudonymisation key in {settings.home} (SACT_DEMO_MODE=1); "
              "set SACT_PSEUDONYMISATION_KEY or SACT_PSEUDONYMISATION_KEY_FILE for real data")
    try:
        report = refresh(settings, backfill=backfill, rekey=rekey, pipeline=pipeline)
    except PseudonymisationKeyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print_summary(settings, pipeline=pipeline)
    for failure in report.failures:
        print(f"FAILED {failure}", file=sys.stderr)
    for path, reason in report.rejected:
        print(f"REJECTED {path}: {reason} (recorded in rejected_files; move the file out of the landing zone "
              f"once dealt with)", file=sys.stderr)
    return 0 if report.ok else 1


def _refresh_command(args: argparse.Namespace) -> int:
    return _run_and_report(_settings(args))


def _backfill_command(args: argparse.Namespace) -> int:
    from sact_pipeline.settings import parse_month

    settings = _settings(args)
    first, last = parse_month(args.from_month, "--from"), parse_month(args.to_month, "--to")
    if first > last:
        print(f"error: --from {first} is after --to {last}", file=sys.stderr)
        return 2
    trusts = tuple(code.strip().upper() for code in args.trust or ())
    return _run_and_report(settings, Backfill(first, last, trusts))


def _rekey_command(args: argparse.Namespace) -> int:
    """Re-derive the opt-out list and every clean trust-month under the configured key (resumable: a
    second run re-derives only what the first did not finish)."""
    from sact_pipeline.domain.pseudonymise import PseudonymisationKeyError
    from sact_pipeline.layers import Pipeline

    settings = _settings(args)
    pipeline = Pipeline(settings)
    try:
        key_id = pipeline.pseudonymiser.key_id
        others = {k for k in pipeline.warehouse.clean_key_ids().values() if k != key_id}
        files = pipeline.protection.rekey_optouts()
    except PseudonymisationKeyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"rekey to key id {key_id}: {files} opt-out files re-derived; clean trust-months built with "
          f"{', '.join(sorted(others)) or 'no other key'} are re-derived from raw")
    code = _run_and_report(settings, rekey=True, pipeline=pipeline)
    if code == 0:
        pipeline.protection.forget_unused_optout_keys()  # earlier keys' opt-out pseudonyms, once nothing is built with them
    kept = sorted(f"{m} {t}" for (m, t), k in pipeline.warehouse.clean_key_ids().items() if k != key_id)
    if kept:
        print(f"{len(kept)} trust-months keep the key they were built with: their raw rows were purged (no "
              f"identifiers are held to re-derive them) or their files fail a gate (re-derived under the new key "
              f"when a corrected file arrives): {', '.join(kept)}")
    return code


def _purge_raw_command(args: argparse.Namespace) -> int:
    """Apply the raw retention setting: identifiable raw rows and files of older months go; registers stay."""
    from sact_pipeline.layers import Pipeline

    settings = _settings(args)
    keep = args.keep_months if args.keep_months is not None else settings.raw_retention_months
    if not keep:
        print("error: no raw retention set: give --keep-months N or set SACT_RAW_RETENTION_MONTHS (reporting months "
              "of identifiable raw rows to keep)", file=sys.stderr)
        return 2
    pipeline = Pipeline(settings)
    with pipeline.warehouse.refresh_lock(waiting=lambda: print("a refresh is running on this warehouse: waiting "
                                                               "for it to finish before purging")):
        purge = pipeline.protection.purge_raw(keep, dry_run=args.dry_run, log=print)
    if purge.skipped:
        print(f"not purged, their clean layer is not current (pending files, opt-outs, a gate failure or another "
              f"key; a later purge takes them): {', '.join(purge.skipped)}")
    verb = "would purge" if args.dry_run else "purged"
    print(f"{verb} {purge.rows} identifiable raw rows of {purge.trust_months} trust-months and {purge.files} files "
          f"from before {purge.cutoff} (keeping {keep} months); the file registers keep their names, hashes and "
          "row counts, and the clean, summary and published layers are unchanged")
    return 0


def _generate_command(args: argparse.Namespace) -> int:
    from sact_pipeline.synthetic import DefectRates, generate_submissions

    settings = _settings(args)
    landing = settings.landing_dir
    if args.if_empty and landing.exists() and any(p.is_file() for p in landing.rglob("*")):
        print(f"landing zone {landing} already holds files: nothing generated")
        return 0
    rates = {name: getattr(args, name) for name in DEFECT_NAMES}
    try:
        defects = DefectRates(**{name: rate * args.defect_scale for name, rate in rates.items()})
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    shape = {"trusts": args.trusts, "months": args.months, "patients_per_trust": args.patients}
    if args.scale:
        try:
            factor = 1.0 if args.scale == "england" else float(args.scale)
        except ValueError:
            factor = 0.0
        if not factor > 0:
            print(f"error: --scale takes 'england' or a positive factor such as 0.25, 0.5, 1 or 2, got {args.scale!r}",
                  file=sys.stderr)
            return 2
        shape = england_shape(factor)
    try:
        files = generate_submissions(landing, end_month=args.end_month, seed=args.seed, defects=defects,
                                     sact_version=args.sact_version, transition=settings.transition, **shape)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    rows = sum(f.rows for f in files)
    v4 = sum(f.sact_version == "v4" for f in files)
    print(f"generated {len(files)} submission files ({rows} rows) in {landing}: {len(files) - v4} SACT v3, {v4} v4")
    return 0


# One month of England: ~150 submitting trusts, ~450,000 drug administrations, sizes from a few hundred
# rows to tens of thousands (log-normal spread 0.95); patients per trust calibrated on seed 2026 (448,806 rows).
ENGLAND_TRUSTS = 150
ENGLAND_PATIENTS = 1095
ENGLAND_SIZE_SPREAD = 0.95


def england_shape(factor: float = 1.0) -> dict:
    """generate_submissions arguments for one month of England times `factor` (the same 150 trusts,
    each `factor` times the size): what `generate --scale` and the benchmark generate."""
    return {"trusts": ENGLAND_TRUSTS, "months": 1, "patients_per_trust": round(ENGLAND_PATIENTS * factor),
            "size_spread": ENGLAND_SIZE_SPREAD}

DEFECT_NAMES = ("invalid_nhs_number", "missing_mandatory", "duplicate_rows", "missing_required")


def main(argv: list[str] | None = None) -> int:
    from sact_pipeline.synthetic import DefectRates

    parser = argparse.ArgumentParser(prog="sact-pipeline", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    refresh_parser = commands.add_parser("refresh", help="discover submissions and refresh every affected layer")
    _settings_arguments(refresh_parser)
    refresh_parser.set_defaults(handler=_refresh_command)

    backfill = commands.add_parser("backfill", help="re-run a range of months (and trusts) whatever changed")
    _settings_arguments(backfill)
    backfill.add_argument("--from", dest="from_month", required=True, help="first reporting month, YYYY-MM")
    backfill.add_argument("--to", dest="to_month", required=True, help="last reporting month, YYYY-MM")
    backfill.add_argument("--trust", action="append", metavar="CODE",
                          help="only this trust (repeatable); months are re-published for all trusts")
    backfill.set_defaults(handler=_backfill_command)

    rekey = commands.add_parser("rekey", help="after a change of pseudonymisation key: re-derive the opt-out "
                                              "list and the clean layer from raw under the new key")
    _settings_arguments(rekey)
    rekey.set_defaults(handler=_rekey_command)

    purge = commands.add_parser("purge-raw", help="delete identifiable raw rows and landing files older than the "
                                                  "retention (SACT_RAW_RETENTION_MONTHS); registers are kept")
    _settings_arguments(purge)
    purge.add_argument("--keep-months", type=int, help="reporting months to keep, counted back from the last month "
                                                       "that has ended (default SACT_RAW_RETENTION_MONTHS)")
    purge.add_argument("--dry-run", action="store_true", help="say what would be purged; change nothing")
    purge.set_defaults(handler=_purge_raw_command)

    generate = commands.add_parser("generate", help="write realistic synthetic submissions into the landing zone")
    _settings_arguments(generate)
    generate.add_argument("--trusts", type=int, default=8, help="English trusts (a Welsh one is always added)")
    generate.add_argument("--months", type=int, default=4, help="consecutive reporting months")
    generate.add_argument("--end-month", help="last reporting month, YYYY-MM (default: last month)")
    generate.add_argument("--patients", type=int, default=60, help="patients per trust per month (average)")
    generate.add_argument("--seed", type=int, default=2026)
    generate.add_argument("--scale", metavar="england|FACTOR",
                          help="one month of England (~150 trusts, ~450,000 rows, skewed sizes), times FACTOR "
                               "(0.25, 0.5, 1, 2); replaces --trusts, --months and --patients")
    defaults = DefectRates()
    for name in DEFECT_NAMES:
        generate.add_argument(f"--{name.replace('_', '-')}", dest=name, type=float, default=getattr(defaults, name),
                              help=f"share of rows with this defect (default {getattr(defaults, name)})")
    generate.add_argument("--defect-scale", type=float, default=1.0,
                          help="multiply every defect rate (0 for clean data)")
    generate.add_argument("--sact-version", choices=("v3", "v4", "mixed"), default="mixed",
                          help="SACT version of the files from SACT_V4_FIRST_MONTH on (earlier months are always v3); "
                               "mixed (default): trusts switch to v4 between April and September 2026, a few stay "
                               "on v3, some resend their last v3 month as v4")
    generate.add_argument("--if-empty", action="store_true", help="do nothing if the landing zone holds files")
    generate.set_defaults(handler=_generate_command)

    from sact_pipeline.database import add_db_parser  # here: it loads the warehouse (pandas) on import

    add_db_parser(commands)

    args = parser.parse_args(argv)
    from sact_pipeline.warehouse import WarehouseError

    try:
        return args.handler(args)
    except (SettingsError, WarehouseError) as error:  # e.g. the loader before `db init`: say what to run
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
