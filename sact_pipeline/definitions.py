"""Dagster definitions: thin assets around sact_pipeline.layers, one GX check per suite per layer.

Partitions: raw and clean are month x trust (trusts registered dynamically from the landing zone);
the summary and the publication are per month and read the clean tables with SQL, so a trust that
never submits a month does not hold the month back.

Raw and clean run many trust-months in one run (a partition range: single-run backfills from the UI,
and one run per month from the sensor and the CLI), reporting a materialisation and check results per
trust-month. One failing trust-month does not stop the others; the step fails at the end, naming it.
"""


import warnings
from collections.abc import Iterator
from pathlib import Path

from dagster import (
    AssetCheckEvaluation,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    AssetSpec,
    BackfillPolicy,
    BetaWarning,
    Definitions,
    DynamicPartitionsDefinition,
    Failure,
    MaterializeResult,
    MetadataValue,
    MonthlyPartitionsDefinition,
    MultiPartitionsDefinition,
    MultiToSingleDimensionPartitionMapping,
    PreviewWarning,
    RetryRequested,
    OpExecutionContext,
    TimeWindowPartitionMapping,
    asset,
    define_asset_job,
    job,
    multi_asset,
    op,
)
from dagster._core.storage.tags import MAX_RETRIES_TAG

# Partitioned asset checks (preview) and the month mappings (beta) are what give per-partition results
# and month-level lineage in Dagster 1.13; the warnings say so on every load, to every user.
warnings.filterwarnings("ignore", category=PreviewWarning)
warnings.filterwarnings("ignore", category=BetaWarning)

from sact_pipeline.automation import build_automation, build_run_failure_alerts
from sact_pipeline.layers import CLEAN, QUALITY, RAW, LayerGateFailed, LayerHeld, LayerOutcome, Pipeline
from sact_pipeline.resources import GivenPipeline, SactPipelineResource
from sact_pipeline.partitions import by_month, month_of, trust_month_partition, trust_months_of
from sact_pipeline.refreshing import RefreshRequest, run_refresh
from sact_pipeline.run_config import JOB_STEPS, DiscoveryConfig, RefreshConfig, StepConfig, TrustMonthConfig
from sact_pipeline.run_tags import (  # noqa: F401 - the job names: for readers of the definitions
    DISCOVERY_JOB,
    MONTH_JOB,
    PROCESS_TAG,
    QUALITY_REPORT_JOB,
    REFRESH_JOB,
    REFRESH_RUN_TAG,
    TRUST_MONTH_JOB,
    TRUSTS,
    claim_run,
    this_run_process,
)
from sact_pipeline.settings import Settings
from sact_pipeline.suites import SUITES  # asset name -> its suites, main suite first
from sact_pipeline.warehouse import is_transient_database_error

# Built by one step, in this order.
TRUST_MONTH_ASSETS = {RAW: "raw_submissions", CLEAN: "clean_activity", QUALITY: "trust_month_data_quality"}


TRANSIENT_RETRIES = 3  # a step that lost its database connection is retried after 5, 10, then 20 seconds


def retry_transient(context, work):
    """Run work(); a transient database error (connection lost, server restarting, deadlock) asks Dagster
    to retry the step with exponential backoff. Anything else, bad data above all, fails at once."""
    try:
        return work()
    except Exception as error:
        if not is_transient_database_error(error):
            raise
        wait = 5 * 2 ** context.retry_number
        reason = str(getattr(error, "orig", None) or type(error).__name__).strip().splitlines()[0]
        context.log.warning(f"transient database error ({type(error).__name__}: {reason}); retry "
                            f"{context.retry_number + 1} of {TRANSIENT_RETRIES} in {wait}s")
        raise RetryRequested(max_retries=TRANSIENT_RETRIES, seconds_to_wait=wait) from error


def _check_specs(asset_name: str, partitions_def) -> list[AssetCheckSpec]:
    """One check per layer, gx_<asset>: the layer's gate, passed when every suite of it passed. (One check
    per suite doubled the check events of a month: at England scale that was 300 more events, ~5 s.)"""
    suites = " and ".join(f"'{suite}'" for suite in SUITES[asset_name])
    return [AssetCheckSpec(f"gx_{asset_name}", asset=asset_name, partitions_def=partitions_def,
                           description=f"The layer's gate: Great Expectations suite{'s' * (len(SUITES[asset_name]) > 1)} "
                                       f"{suites} on the rows about to be published")]


def _check_results(asset_name: str, outcome: LayerOutcome) -> list[AssetCheckResult]:
    check_name = f"gx_{asset_name}"
    if outcome.skipped:  # nothing new was written: the live rows passed these suites when they were loaded
        return [AssetCheckResult(check_name=check_name, passed=True,
                                 metadata={"skipped": "no new file version; live rows passed when loaded"})]
    metadata: dict = {"suites": ", ".join(s.suite for s in outcome.suites)}
    for number, suite in enumerate(outcome.suites):  # the layer's main suite unprefixed, the others by name
        prefix = "" if number == 0 else f"{suite.suite}: "
        metadata.update({f"{prefix}{key}": value for key, value in suite.metadata().items() if key != "suite"})
    if not outcome.success:
        metadata["failed"] = MetadataValue.text(outcome.failures())
    return [AssetCheckResult(check_name=check_name, passed=outcome.success, severity=AssetCheckSeverity.ERROR,
                             metadata=metadata)]


def _outcome_metadata(outcome: LayerOutcome) -> dict:
    metadata = {k: v for k, v in outcome.metadata.items() if isinstance(v, (int, float, str))}
    for key in [k for k in metadata if k.startswith("data_docs ")]:  # a link to the suite run's page
        metadata[key] = MetadataValue.url(Path(metadata[key]).as_uri())
    if "table" in outcome.metadata:
        metadata["preview"] = MetadataValue.md(outcome.metadata["table"].to_markdown(index=False))
    return {"rows": outcome.rows, "skipped": outcome.skipped, **metadata}


def _run_trust_months(context: AssetExecutionContext, sact: SactPipelineResource, config: TrustMonthConfig) -> None:
    """Build raw then clean (whichever are selected) for every trust-month of the run's partitions that has
    a submission (of config.trusts, if named); with config.affected_only only those not yet built from their
    current files. A month's trusts are built together; events are reported per trust-month."""
    claim_run(context)
    pipeline = sact.pipeline()
    if not config.rekey:
        pipeline.check_key()  # never mix pseudonyms of two keys: a key change needs `sact-pipeline rekey`
    files = pipeline.status.accepted_files()
    submitted = set(pipeline.status.trust_month_fingerprints(files))
    wanted = [tm for tm in trust_months_of(context.partition_keys) if tm in submitted]
    if config.trusts:
        wanted = [tm for tm in wanted if tm[1] in set(config.trusts)]
    if config.affected_only:
        affected = set(pipeline.status.affected_trust_months(files))
        wanted = [tm for tm in wanted if tm in affected]
    layers = [layer for layer, name in TRUST_MONTH_ASSETS.items() if AssetKey(name) in context.selected_asset_keys]
    failures = []
    for month, trusts in by_month(wanted).items():
        # GX once per suite for a batch; each trust-month is reported as soon as it is written.
        for layer, trust, result in pipeline.iter_trust_months(month, trusts, layers, files):
            asset_name = TRUST_MONTH_ASSETS[layer]
            partition = trust_month_partition(month, trust)
            if isinstance(result, (LayerGateFailed, LayerHeld)):
                if isinstance(result, LayerGateFailed):
                    for check in _check_results(asset_name, result.outcome):
                        _log_check(context, asset_name, check, partition)
                failures.append(f"{asset_name} {month} {trust}: {result}")
                context.log.error(failures[-1])
                continue
            context.log_event(AssetMaterialization(AssetKey(asset_name), partition=partition,
                                                   metadata=_outcome_metadata(result)))
            for check in _check_results(asset_name, result):
                _log_check(context, asset_name, check, partition)
    context.log.info(f"{len(wanted) - len(failures)} of {len(wanted)} trust-months built "
                     f"({len(context.partition_keys)} partitions in the run)")
    _build_data_docs(context, pipeline, config)
    if failures:
        # One line: alerts and the run list show the first line of a failure.
        raise Failure(description=f"{len(failures)} of {len(wanted)} trust-months failed and kept their last "
                                  "good rows: " + " | ".join(failures),
                      metadata={"failed_trust_months": len(failures)}, allow_retries=False)


def _build_data_docs(context: AssetExecutionContext, pipeline, config: StepConfig) -> None:
    """Data Docs after each step that ran suites (unless the refresh command builds them once at its end).
    Documentation only: a build that fails is logged."""
    if not config.data_docs:
        return
    try:
        index = pipeline.build_data_docs()
    except Exception as error:  # noqa: BLE001 - the layer's own work is done and gated
        context.log.warning(f"GX Data Docs were not built: {type(error).__name__}: {error}")
    else:
        context.log.info(f"GX Data Docs: {index}")


def _log_check(context: AssetExecutionContext, asset_name: str, result: AssetCheckResult, partition: str) -> None:
    context.log_event(AssetCheckEvaluation(
        asset_key=AssetKey(asset_name), check_name=result.check_name, passed=result.passed,
        metadata=result.metadata, severity=result.severity, partition=partition))


def _run_layer(context: AssetExecutionContext, sact: SactPipelineResource, config: StepConfig, asset_name: str,
               work) -> Iterator:
    """Run a layer step; a failed suite is reported as failed checks and fails the step, unpublished."""
    claim_run(context)
    try:
        outcome: LayerOutcome = retry_transient(context, work)
    except LayerGateFailed as failure:
        for result in _check_results(asset_name, failure.outcome):
            yield result
        _build_data_docs(context, sact.pipeline(), config)
        raise Failure(description=str(failure), metadata={"layer": failure.layer, "partition": failure.partition},
                      allow_retries=False) from None
    except LayerHeld as held:
        raise Failure(description=str(held), allow_retries=False) from None
    _build_data_docs(context, sact.pipeline(), config)
    yield MaterializeResult(metadata=_outcome_metadata(outcome), check_results=_check_results(asset_name, outcome))


def _discover_submissions(context: AssetExecutionContext, sact: SactPipelineResource,
                          config: DiscoveryConfig) -> MaterializeResult:
    """Discovery, its new trusts registered as partitions, and what it rejected or registered, logged."""
    claim_run(context)
    discovery = retry_transient(context, lambda: sact.pipeline().discover(check_key=not config.rekey))
    new_trusts = [t for t in discovery.trusts if not context.instance.has_dynamic_partition(TRUSTS, t)]
    if new_trusts:
        context.instance.add_dynamic_partitions(TRUSTS, new_trusts)
    for path, reason in discovery.rejected_new:
        context.log.error(f"rejected {path}: {reason}")
    for path, reason in discovery.rejected_known:
        context.log.warning(f"still rejected, left in the landing zone: {path}: {reason}")
    for name, note, trust_months in discovery.optouts_new:
        if note.startswith("rejected"):
            context.log.error(f"opt-out file {name} {note}: applied to nothing until a readable copy arrives")
        else:
            context.log.info(f"opt-out file {name} registered: {trust_months} trust-months hold its patients "
                             f"and are re-derived without them{'; ' + note if note else ''}")
    return MaterializeResult(metadata={
        "new_optout_files": len(discovery.optouts_new),
        "optout_trust_months_to_rederive": sum(count for _, _, count in discovery.optouts_new),
        "new_file_versions": len(discovery.accepted_new), "new_rejected_files": len(discovery.rejected_new),
        "rejected_files_in_landing_zone": len(discovery.rejected_new) + len(discovery.rejected_known),
        "trusts": len(discovery.trusts), "new_trusts": MetadataValue.text(", ".join(new_trusts) or "none"),
    })


# The jobs' default run config: every step of a run in the run's own process. A step in a process of its
# own re-imports Dagster, GX and pandas (~10 s a step on two cores) to do a few seconds of work, and a
# run's steps follow one another anyway; the trust-month step has its own worker pool for big months.
# Shown, and editable, in the Launchpad (`multiprocess:` instead gives each step its own process).
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}
MONTH_OF_TRUST_MONTH = MultiToSingleDimensionPartitionMapping("month")  # a month's layer reads its trust-months


def build_definitions(settings: Settings | None = None, executor=None, pipeline: Pipeline | None = None
                      ) -> Definitions:
    """Everything Dagster loads. Runs execute in one process each (IN_PROCESS) unless `executor` is given:
    a Kubernetes code location passes dagster_k8s.k8s_job_executor, a pod per step (README). The command
    line passes its `pipeline`, which its in-process runs then share."""
    settings = pipeline.settings if pipeline is not None else settings or Settings.from_env()
    months = MonthlyPartitionsDefinition(start_date=f"{settings.first_month}-01", end_offset=0)
    # Built per Definitions: partition definitions cache the instance they were last evaluated against.
    trust_months = MultiPartitionsDefinition({"month": months, "trust": DynamicPartitionsDefinition(name=TRUSTS)})

    @asset(group_name="landing", description="Register every file version in the landing zone (SHA-256, "
                                             "timestamp) or reject it with its reason; register new trusts.")
    def submission_files(context: AssetExecutionContext, sact: SactPipelineResource,
                         config: DiscoveryConfig) -> MaterializeResult:
        return _discover_submissions(context, sact, config)

    # One step builds raw then clean per trust-month: a multi_asset with can_subset, so that the outputs and
    # check results are optional and reported per trust-month of a range run (and not at all for a trust
    # that did not submit), and so that one trust-month's failure does not hold back the clean layer of
    # the others. Either asset can still be materialised alone.
    @multi_asset(
        name="trust_month_layers",
        specs=[
            AssetSpec("raw_submissions", partitions_def=trust_months, deps=[submission_files], group_name="raw",
                      skippable=True, description="Every version of a trust's monthly file: the 44 v3 items as "
                                                  "text, file name, SHA-256, submitted-at and row number."),
            AssetSpec("clean_activity", partitions_def=trust_months, deps=["raw_submissions"], group_name="clean",
                      skippable=True, description="Typed, validated, pseudonymised activity from the latest file "
                                                  "version; quarantine with reasons; data-quality findings per "
                                                  "item; counts per file version."),
            AssetSpec("trust_month_data_quality", partitions_def=trust_months, deps=["clean_activity"],
                      group_name="quality", skippable=True,
                      description="Internal: completeness and validity of every SACT item, the overall score, "
                                  "quarantined rows per reason, duplicates, activity outside the month, provider "
                                  "codes of another trust; the trust's feedback file (no identifiers)."),
        ],
        check_specs=[spec for name in TRUST_MONTH_ASSETS.values() for spec in _check_specs(name, trust_months)],
        can_subset=True, backfill_policy=BackfillPolicy.single_run(),
    )
    def trust_month_layers(context: AssetExecutionContext, sact: SactPipelineResource, config: TrustMonthConfig):
        retry_transient(context, lambda: _run_trust_months(context, sact, config))
        yield from ()  # a generator: results are logged per trust-month, none is returned

    @asset(partitions_def=months, group_name="summary",
           deps=[AssetDep("clean_activity", partition_mapping=MONTH_OF_TRUST_MONTH)],
           check_specs=_check_specs("trust_month_summary", months),
           description="Per trust that has submitted up to the month: counts, timeliness, resubmission "
                       "changes, quarantined, duplicate and data-quality counts.")
    def trust_month_summary(context: AssetExecutionContext, sact: SactPipelineResource, config: StepConfig):
        yield from _run_layer(context, sact, config, "trust_month_summary", lambda: sact.pipeline().summarise(month_of(context.partition_key)))

    @asset(partitions_def=months, group_name="published",
           deps=[AssetDep(trust_month_summary, partition_mapping=TimeWindowPartitionMapping(
               start_offset=-1, end_offset=0, allow_nonexistent_upstream_partitions=True))],
           check_specs=_check_specs("published_submissions", months),
           description="Disclosure-controlled table (rule R) with changes from published values, an ENGLAND "
                       "row and the NDRS acknowledgement; English organisations only.")
    def published_submissions(context: AssetExecutionContext, sact: SactPipelineResource, config: StepConfig):
        yield from _run_layer(context, sact, config, "published_submissions", lambda: sact.pipeline().publish(month_of(context.partition_key)))

    @asset(partitions_def=months, group_name="quality",
           deps=[AssetDep("trust_month_data_quality", partition_mapping=MONTH_OF_TRUST_MONTH), trust_month_summary],
           check_specs=_check_specs("data_quality_report", months),
           description="Internal, not published: the month's data-quality table across submitting organisations, "
                       "the score per trust over 13 months and the HTML report, beside the GX Data Docs.")
    def data_quality_report(context: AssetExecutionContext, sact: SactPipelineResource, config: StepConfig):
        yield from _run_layer(context, sact, config, "data_quality_report",
                              lambda: sact.pipeline().report_quality(month_of(context.partition_key)))

    jobs = _jobs(IN_PROCESS if executor is None else None)  # the layer jobs, then the refresh job
    landing_zone_sensor, monthly_refresh = build_automation(jobs[-1])
    return Definitions(
        assets=[submission_files, trust_month_layers, trust_month_summary, published_submissions, data_quality_report],
        jobs=jobs,
        sensors=[build_run_failure_alerts(), landing_zone_sensor],
        schedules=[monthly_refresh],
        resources={"sact": GivenPipeline(pipeline).as_resource() if pipeline is not None
                   else SactPipelineResource.from_settings(settings)},
        executor=executor,
    )


def _jobs(job_config: dict | None) -> list:
    """The pipeline's jobs in run_config.JOB_STEPS's order, each selecting the assets its steps build, and
    the refresh job that runs them as the planner says."""
    assets_of_step = {"trust_month_layers": list(TRUST_MONTH_ASSETS.values())}
    return [define_asset_job(name, selection=[asset for step in steps for asset in assets_of_step.get(step, [step])],
                             config=job_config) for name, steps in JOB_STEPS.items()] + [_refresh_job(job_config)]


def _refresh_job(job_config: dict | None):
    """Discovery and every step the planner asks for after it, as runs of the layer jobs made inside this
    run's process (sact_pipeline.refreshing, as `sact-pipeline refresh` does): what the landing-zone sensor
    and the monthly schedule request. One process start and one sensor tick for the whole chain, where a
    run per step cost a process start (imports: 10-16 s on two cores) and a tick each."""

    @op(name="refresh_layers", description="Register the landing zone, then build every trust-month and month "
                                           "behind its inputs, in the planner's order, as runs of the layer jobs.")
    def refresh_layers(context: OpExecutionContext, sact: SactPipelineResource, config: RefreshConfig) -> None:
        claim_run(context)
        pipeline = sact.pipeline()
        # The runs it makes: named after this one; never re-launched by the daemon on their own (a refresh
        # run whose process died is, and plans again); tagged with this process, so marked failed with it.
        request = RefreshRequest(retry_held=config.retry_held, tags={
            "sact/trigger": context.run.tags.get("sact/trigger", "launchpad"), REFRESH_RUN_TAG: context.run_id,
            PROCESS_TAG: this_run_process(), MAX_RETRIES_TAG: "0"})
        report = retry_transient(context, lambda: run_refresh(
            pipeline, build_definitions(pipeline=pipeline), context.instance, request, log=context.log.info))
        for path, reason in report.rejected:
            context.log.warning(f"rejected, left in the landing zone: {path}: {reason}")
        if report.failures:
            raise Failure(description=f"{len(report.failures)} failed: " + " | ".join(report.failures),
                          metadata={"failures": len(report.failures), "runs": len(report.runs)}, allow_retries=False)

    @job(name=REFRESH_JOB, config=job_config, description=(
        "Bring every layer up to date with the landing zone: discovery, then one run per step the planner "
        "asks for (trust-months, months in order, data-quality reports), made in this run's process."))
    def refresh_landing_zone():
        refresh_layers()

    return refresh_landing_zone


def __getattr__(name: str):
    """`defs` is built on first use, so importing this module has no side effects (dagster loads `defs`)."""
    if name == "defs":
        return build_definitions()
    raise AttributeError(name)
