"""Tags on the runs the pipeline requests (sensor, CLI): which trust-months a run builds, and its month.

A trust-month run covers a partition range (Dagster's range tags) over one month's trusts; the scope
tags narrow it to the trust-months that need building, so one run per month does the work of many.
"""

from dagster._core.storage.tags import (  # noqa: F401 - PARTITION_TAG: for readers of run tags
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG as PARTITION_TAG,
)

TRUSTS = "trusts"  # the dynamic partitions registered from the landing zone
SCOPE_TAG = "sact/scope"  # "affected": a range run skips trust-months already built from their current files
ONLY_TRUSTS_TAG = "sact/trusts"  # comma-separated: a range run builds only these trusts
MONTH_TAG = "sact/month"  # on every run the pipeline requests; dagster.yaml runs one per month at a time
REKEY_TAG = "sact/rekey"  # "1": the run may re-derive clean partitions built with another key (`rekey`)
# "end-of-refresh": the run's steps leave the Data Docs build to the command that launched it (once, at its end)
DATA_DOCS_TAG = "sact/data-docs"


def trust_month_run_tags(instance, month: str, trusts, *, affected_only: bool) -> dict[str, str]:
    """Tags for one run over a month's trusts: the partition range from the first to the last of them in
    the registered order (others in between are skipped: scope or the trust list says which to build)."""
    position = {trust: number for number, trust in enumerate(instance.get_dynamic_partitions(TRUSTS))}
    chosen = sorted(set(trusts), key=lambda trust: position[trust])
    tags = {ASSET_PARTITION_RANGE_START_TAG: f"{month}-01|{chosen[0]}",
            ASSET_PARTITION_RANGE_END_TAG: f"{month}-01|{chosen[-1]}", MONTH_TAG: month,
            ONLY_TRUSTS_TAG: ",".join(chosen)}
    if affected_only:
        tags[SCOPE_TAG] = "affected"
    return tags
