"""`sact-pipeline`: refresh the pipeline through Dagster, or generate sample submissions.

`refresh` runs on the configured Dagster instance (DAGSTER_HOME), so every run it makes is visible in
the Dagster UI (`make ui`). It only re-runs what changed: a second refresh with no new files does nothing.
"""

from __future__ import annotations

import argparse
import sys

from sact_pipeline.planning import Backfill
from sact_pipeline.refreshing import RefreshReport, RefreshRequest, prepare_dagster_home, run_refresh
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


def refresh(settings: Settings, *, log=print, backfill: Backfill | None = None, rekey: bool = False,
            pipeline=None) -> RefreshReport:
    """Discover, then materialise every affected trust-month and month through Dagster, as in-process runs
    on the instance in settings.dagster_home (sact_pipeline.refreshing).

    With a backfill, every trust-month with files in its range (and trusts) is re-run, then its months
    and the month after the range, whose changes read the last month of it. Refuses to run when the
    clean layer was built with another pseudonymisation key, unless `rekey` (then every trust-month
    built with another key is affected and re-derived from raw). `pipeline`: the one its runs share
    (made here when not given; a caller that gives it can read its measurements).
    """
    from dagster import DagsterInstance

    from sact_pipeline.definitions import build_definitions
    from sact_pipeline.layers import Pipeline
    from sact_pipeline.run_tags import PROCESS_TAG, this_run_process

    if pipeline is None:  # its own, closed when done (connections, worker processes)
        pipeline = Pipeline(settings)
        try:
            return refresh(settings, log=log, backfill=backfill, rekey=rekey, pipeline=pipeline)
        finally:
            pipeline.dispose()
    prepare_dagster_home(settings.dagster_home)
    request = RefreshRequest(backfill=backfill, rekey=rekey, retry_held=True, tags={
        "sact/trigger": "cli-rekey" if rekey else "cli-refresh", PROCESS_TAG: this_run_process()})
    # This instance (not $DAGSTER_HOME) so that --dagster-home works; no dagster.yaml there means SQLite.
    with DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        return run_refresh(pipeline, build_definitions(settings, pipeline=pipeline), instance, request, log=log)


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
