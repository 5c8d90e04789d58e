"""Dagster definitions: thin assets around sact_pipeline.layers, one GX check per suite per layer.

Partitions: raw and clean are month x trust (trusts registered dynamically from the landing zone);
the summary and the publication are per month and read the clean tables with SQL, so a trust that
never submits a month does not hold the month back.
"""


import warnings
from collections.abc import Iterator

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
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
    TimeWindowPartitionMapping,
    asset,
    define_asset_job,
)

# Partitioned asset checks (preview) and the month mappings (beta) are what give per-partition results
# and month-level lineage in Dagster 1.13; the warnings say so on every load, to every user.
warnings.filterwarnings("ignore", category=PreviewWarning)
warnings.filterwarnings("ignore", category=BetaWarning)

from sact_pipeline.automation import build_automation, build_run_failure_alerts
from sact_pipeline.layers import LayerGateFailed, LayerOutcome
from sact_pipeline.resources import SactPipelineResource
from sact_pipeline.settings import Settings

TRUSTS = "trusts"  # the dynamic partitions registered from the landing zone
SUITES = {
    "raw_submissions": ("raw_submissions", "raw_reconciliation"),
    "clean_activity": ("clean_activity", "clean_reconciliation"),
    "trust_month_summary": ("trust_month_summary",),
    "published_submissions": ("published_submissions",),
}
TRUST_MONTH_JOB = "trust_month_refresh"
MONTH_JOB = "month_publication"
DISCOVERY_JOB = "discover_submissions"


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


def build_definitions(settings: Settings | None = None) -> Definitions:
    settings = settings or Settings.from_env()
    months = MonthlyPartitionsDefinition(start_date=f"{settings.first_month}-01", end_offset=0)
    # Built per Definitions: partition definitions cache the instance they were last evaluated against.
    trust_months = MultiPartitionsDefinition({"month": months, "trust": DynamicPartitionsDefinition(name=TRUSTS)})

    @asset(group_name="landing", description="Register every file version in the landing zone (SHA-256, "
                                             "timestamp) or reject it with its reason; register new trusts.")
    def submission_files(context: AssetExecutionContext, sact: SactPipelineResource) -> MaterializeResult:
        discovery = sact.pipeline().discover()
        new_trusts = [t for t in discovery.trusts if not context.instance.has_dynamic_partition(TRUSTS, t)]
        if new_trusts:
            context.instance.add_dynamic_partitions(TRUSTS, new_trusts)
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

    discovery_job = define_asset_job(DISCOVERY_JOB, selection=[submission_files])
    trust_month_job = define_asset_job(TRUST_MONTH_JOB, selection=[raw_submissions, clean_activity])
    month_job = define_asset_job(MONTH_JOB, selection=[trust_month_summary, published_submissions])
    landing_zone_sensor, monthly_refresh = build_automation(discovery_job, trust_month_job, month_job)
    run_failure_alerts = build_run_failure_alerts()
    return Definitions(
        assets=[submission_files, raw_submissions, clean_activity, trust_month_summary, published_submissions],
        jobs=[discovery_job, trust_month_job, month_job],
        sensors=[run_failure_alerts, landing_zone_sensor],
        schedules=[monthly_refresh],
        resources={"sact": SactPipelineResource.from_settings(settings)},
    )


def __getattr__(name: str):
    """`defs` is built on first use, so importing this module has no side effects (dagster loads `defs`)."""
    if name == "defs":
        return build_definitions()
    raise AttributeError(name)
