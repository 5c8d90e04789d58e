"""What a run is asked to do beyond its partitions, as typed run config (dagster.Config): shown, checked
and editable in the Launchpad under `ops: <step>: config:`. Tags only label runs: the run queue's limits
(`sact/month`), the trusts a run covers (`sact/trusts`, for filters and alerts) and who asked.

Every option has a default that is what a person launching a run from the UI wants; the sensor and the
command line set the others (run_config_for).
"""

from __future__ import annotations

from dagster import Config
from pydantic import Field

from sact_pipeline.run_tags import DISCOVERY_JOB, MONTH_JOB, QUALITY_REPORT_JOB, TRUST_MONTH_JOB


class StepConfig(Config):
    """Options of every step."""

    data_docs: bool = Field(default=True, description=(
        "Build the GX Data Docs at the end of the step. The command line sets false and builds them once, "
        "when its refresh ends."))


class DiscoveryConfig(StepConfig):
    rekey: bool = Field(default=False, description=(
        "Run although the clean layer was built with another pseudonymisation key: set by "
        "`sact-pipeline rekey`, which re-derives every clean trust-month under the new key."))


class TrustMonthConfig(DiscoveryConfig):
    trusts: list[str] = Field(default=[], description=(
        "Build only these trusts of the run's partitions; empty: every trust with a submission."))
    affected_only: bool = Field(default=False, description=(
        "Skip trust-months already built from their current files (what the sensor and the command line "
        "ask for; a person re-running a partition wants it rebuilt)."))


class RefreshConfig(Config):
    """Options of a refresh_landing_zone run."""

    retry_held: bool = Field(default=True, description=(
        "Build again the trust-months whose current files failed a gate (a person asked, and is told again, "
        "as at the command line). The landing-zone sensor sets false: they would fail the same way until a "
        "corrected file arrives."))


def refresh_run_config(*, retry_held: bool) -> dict:
    """The run config of a refresh_landing_zone run (its one op, refresh_layers)."""
    return {"ops": {"refresh_layers": {"config": {"retry_held": retry_held}}}}


# The steps (ops) of each job and the config each takes.
STEP_CONFIG = {"submission_files": DiscoveryConfig, "trust_month_layers": TrustMonthConfig,
               "trust_month_summary": StepConfig, "published_submissions": StepConfig,
               "data_quality_report": StepConfig}
JOB_STEPS = {DISCOVERY_JOB: ("submission_files",), TRUST_MONTH_JOB: ("trust_month_layers",),
             MONTH_JOB: ("trust_month_summary", "published_submissions", "data_quality_report"),
             QUALITY_REPORT_JOB: ("data_quality_report",)}


def run_config_for(job_name: str, **options) -> dict:
    """The run config giving each step of the job the options that apply to it (others are ignored, so one
    set of options serves every job of a refresh); options left at their defaults are left out."""
    ops = {}
    for step in JOB_STEPS[job_name]:
        fields = STEP_CONFIG[step].model_fields
        chosen = {name: value for name, value in options.items()
                  if name in fields and value != fields[name].default}
        if chosen:
            ops[step] = {"config": chosen}
    return {"ops": ops} if ops else {}
