"""Dagster definitions: thin assets around sact_pipeline.layers, one GX check per suite per layer.

Partitions: raw and clean are month x trust (trusts registered dynamically from the landing zone);
the summary and the publication are per month and read the clean tables with SQL, so a trust that
never submits a month does not hold the month back.
"""


import os
import warnings
from collections.abc import Iterator

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    BetaWarning,
    ConfigurableResource,
    DefaultSensorStatus,
    Definitions,
    EnvVar,
    DynamicPartitionsDefinition,
    Failure,
    MaterializeResult,
    MetadataValue,
    MonthlyPartitionsDefinition,
    MultiPartitionsDefinition,
    MultiToSingleDimensionPartitionMapping,
    PreviewWarning,
    TimeWindowPartitionMapping,
    asset,
    RunFailureSensorContext,
    define_asset_job,
    run_failure_sensor,
)

# Partitioned asset checks (preview) and the month mappings (beta) are what give per-partition results
# and month-level lineage in Dagster 1.13; the warnings say so on every load, to every user.
warnings.filterwarnings("ignore", category=PreviewWarning)
warnings.filterwarnings("ignore", category=BetaWarning)

from sact_pipeline.alerts import WEBHOOK_VARIABLE, RunFailureAlert, raise_alert
from sact_pipeline.layers import LayerGateFailed, LayerOutcome, Pipeline
from sact_pipeline.settings import Settings

TRUSTS = DynamicPartitionsDefinition(name="trusts")
SUITES = {
    "raw_submissions": ("raw_submissions", "raw_reconciliation"),
    "clean_activity": ("clean_activity", "clean_reconciliation"),
    "trust_month_summary": ("trust_month_summary",),
    "published_submissions": ("published_submissions",),
}
TRUST_MONTH_JOB = "trust_month_refresh"
MONTH_JOB = "month_publication"
DISCOVERY_JOB = "discover_submissions"


class SactPipelineResource(ConfigurableResource):
    """Where the pipeline reads and writes. The pseudonymisation key is not here: it is read from the
    environment at run time so it never appears in resource or run config."""

    home: str
    landing_dir: str
    output_dir: str
    warehouse_url: str
    first_month: str
    deadline_months: int
    max_quarantine_share: float
    ods_file: str = ""

    def pipeline(self) -> Pipeline:
        settings = Settings.from_env(env={}, home=self.home, landing_dir=self.landing_dir,
                                     output_dir=self.output_dir, warehouse_url=self.warehouse_url,
                                     first_month=self.first_month, deadline_months=self.deadline_months,
                                     max_quarantine_share=self.max_quarantine_share,
                                     ods_file=self.ods_file or None)
        return Pipeline.for_settings(settings)

    @classmethod
    def from_settings(cls, settings: Settings) -> "SactPipelineResource":
        # A warehouse URL from the environment may carry a password: show the variable's name, not its value.
        from_env = os.environ.get("SACT_WAREHOUSE_URL") == settings.warehouse_url
        return cls(home=str(settings.home), landing_dir=str(settings.landing_dir),
                   output_dir=str(settings.output_dir),
                   warehouse_url=EnvVar("SACT_WAREHOUSE_URL") if from_env else settings.warehouse_url,
                   first_month=settings.first_month, deadline_months=settings.deadline_months,
                   max_quarantine_share=settings.max_quarantine_share,
                   ods_file=str(settings.ods_file or ""))


def month_of(partition_key: str) -> str:
    return partition_key[:7]


def _check_specs(asset_name: str, partitions_def) -> list[AssetCheckSpec]:
    return [AssetCheckSpec(f"gx_{suite}", asset=asset_name, partitions_def=partitions_def,
                           description=f"Great Expectations suite '{suite}' on the rows about to be published")
            for suite in SUITES[asset_name]]


def _check_results(asset_name: str, outcome: LayerOutcome) -> list[AssetCheckResult]:
    if outcome.skipped:  # nothing new was written: the live rows passed these suites when they were loaded
        return [AssetCheckResult(check_name=f"gx_{suite}", passed=True,
                                 metadata={"skipped": "no new file version; live rows passed when loaded"})
                for suite in SUITES[asset_name]]
    return [
        AssetCheckResult(
            check_name=f"gx_{suite.suite}",
            passed=suite.success,
            severity=AssetCheckSeverity.ERROR,
            metadata={**suite.metadata(), **({"failed": MetadataValue.text(suite.message())} if not suite.success else {})},
        )
        for suite in outcome.suites
    ]


def _run_layer(context: AssetExecutionContext, asset_name: str, work) -> Iterator:
    """Run a layer step; a failed suite is reported as failed checks and fails the step, unpublished."""
    try:
        outcome: LayerOutcome = work()
    except LayerGateFailed as failure:
        for result in _check_results(asset_name, failure.outcome):
            yield result
        raise Failure(description=str(failure), metadata={"layer": failure.layer, "partition": failure.partition},
                      allow_retries=False) from None
    metadata = {k: v for k, v in outcome.metadata.items() if isinstance(v, (int, float, str))}
    if "table" in outcome.metadata:
        metadata["preview"] = MetadataValue.md(outcome.metadata["table"].to_markdown(index=False))
    yield MaterializeResult(metadata={"rows": outcome.rows, "skipped": outcome.skipped, **metadata},
                            check_results=_check_results(asset_name, outcome))


@run_failure_sensor(name="run_failure_alerts", default_status=DefaultSensorStatus.RUNNING,
                    description=f"Alert on every failed run: to the log, and to ${WEBHOOK_VARIABLE} when set.")
def run_failure_alerts(context: RunFailureSensorContext) -> None:
    run = context.dagster_run
    failures = tuple(
        f"{event.step_key}: {event.step_failure_data.error.message.strip().splitlines()[0]}"
        for event in context.get_step_failure_events()
        if event.step_failure_data and event.step_failure_data.error
    )
    alert = RunFailureAlert(run.run_id, run.job_name, run.tags.get("dagster/partition", ""), failures)
    context.log.error(alert.text())
    raise_alert(alert, os.environ.get(WEBHOOK_VARIABLE))


def build_definitions(settings: Settings | None = None) -> Definitions:
    settings = settings or Settings.from_env()
    months = MonthlyPartitionsDefinition(start_date=f"{settings.first_month}-01", end_offset=0)
    trust_months = MultiPartitionsDefinition({"month": months, "trust": TRUSTS})

    @asset(group_name="landing", description="Register every file version in the landing zone (SHA-256, "
                                             "timestamp) or reject it with its reason; register new trusts.")
    def submission_files(context: AssetExecutionContext, sact: SactPipelineResource) -> MaterializeResult:
        discovery = sact.pipeline().discover()
        new_trusts = [t for t in discovery.trusts if not context.instance.has_dynamic_partition(TRUSTS.name, t)]
        if new_trusts:
            context.instance.add_dynamic_partitions(TRUSTS.name, new_trusts)
        for path, reason in discovery.rejected_new:
            context.log.error(f"rejected {path}: {reason}")
        for path, reason in discovery.rejected_known:
            context.log.warning(f"still rejected, left in the landing zone: {path}: {reason}")
        return MaterializeResult(metadata={
            "new_file_versions": len(discovery.accepted_new), "new_rejected_files": len(discovery.rejected_new),
            "rejected_files_in_landing_zone": len(discovery.rejected_new) + len(discovery.rejected_known),
            "trusts": len(discovery.trusts), "new_trusts": MetadataValue.text(", ".join(new_trusts) or "none"),
        })

    @asset(partitions_def=trust_months, deps=[submission_files], group_name="raw",
           check_specs=_check_specs("raw_submissions", trust_months),
           description="Every version of a trust's monthly file: the 44 v3 items as text, file name, "
                       "SHA-256, submitted-at and row number.")
    def raw_submissions(context: AssetExecutionContext, sact: SactPipelineResource):
        keys = context.partition_key.keys_by_dimension
        yield from _run_layer(context, "raw_submissions", lambda: sact.pipeline().load_raw(month_of(keys["month"]), keys["trust"]))

    @asset(partitions_def=trust_months, deps=[raw_submissions], group_name="clean",
           check_specs=_check_specs("clean_activity", trust_months),
           description="Typed, validated, pseudonymised activity from the latest file version; quarantine "
                       "with reasons; data-quality findings per item; counts per file version.")
    def clean_activity(context: AssetExecutionContext, sact: SactPipelineResource):
        keys = context.partition_key.keys_by_dimension
        yield from _run_layer(context, "clean_activity", lambda: sact.pipeline().clean(month_of(keys["month"]), keys["trust"]))

    @asset(partitions_def=months, group_name="summary",
           deps=[AssetDep(clean_activity, partition_mapping=MultiToSingleDimensionPartitionMapping("month"))],
           check_specs=_check_specs("trust_month_summary", months),
           description="Per trust that has submitted up to the month: counts, timeliness, resubmission "
                       "changes, quarantined, duplicate and data-quality counts.")
    def trust_month_summary(context: AssetExecutionContext, sact: SactPipelineResource):
        yield from _run_layer(context, "trust_month_summary", lambda: sact.pipeline().summarise(month_of(context.partition_key)))

    @asset(partitions_def=months, group_name="published",
           deps=[AssetDep(trust_month_summary, partition_mapping=TimeWindowPartitionMapping(
               start_offset=-1, end_offset=0, allow_nonexistent_upstream_partitions=True))],
           check_specs=_check_specs("published_submissions", months),
           description="Disclosure-controlled table (rule R) with changes from published values, an ENGLAND "
                       "row and the NDRS acknowledgement; English organisations only.")
    def published_submissions(context: AssetExecutionContext, sact: SactPipelineResource):
        yield from _run_layer(context, "published_submissions", lambda: sact.pipeline().publish(month_of(context.partition_key)))

    return Definitions(
        assets=[submission_files, raw_submissions, clean_activity, trust_month_summary, published_submissions],
        jobs=[
            define_asset_job(DISCOVERY_JOB, selection=[submission_files]),
            define_asset_job(TRUST_MONTH_JOB, selection=[raw_submissions, clean_activity]),
            define_asset_job(MONTH_JOB, selection=[trust_month_summary, published_submissions]),
        ],
        sensors=[run_failure_alerts],
        resources={"sact": SactPipelineResource.from_settings(settings)},
    )


def __getattr__(name: str):
    """`defs` is built on first use, so importing this module has no side effects (dagster loads `defs`)."""
    if name == "defs":
        return build_definitions()
    raise AttributeError(name)
