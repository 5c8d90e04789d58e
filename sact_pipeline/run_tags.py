"""The runs the pipeline requests (sensor, CLI): the job, partition, tags and options of each planned step.

A trust-month run covers a partition range (Dagster's range tags) over one month's trusts; its options
(sact_pipeline.run_config) narrow it to the trust-months that need building, so one run per month does
the work of many.
"""

import multiprocessing
import os
import socket
import sys
from typing import NamedTuple

from dagster import DagsterRunStatus, RunsFilter
from dagster._core.storage.tags import (  # noqa: F401 - PARTITION_TAG: for readers of run tags
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG as PARTITION_TAG,
)

from sact_pipeline.partitions import month_partition, trust_month_partition
from sact_pipeline.planning import Step, StepKind

DISCOVERY_JOB = "discover_submissions"
REFRESH_JOB = "refresh_landing_zone"  # discovery and every step after it, in one run (sact_pipeline.refreshing)
JOB_OF_STEP = {StepKind.TRUST_MONTHS: "trust_month_refresh", StepKind.MONTH: "month_publication",
               StepKind.QUALITY_REPORT: "month_data_quality"}  # the last: the month's data-quality report alone
TRUST_MONTH_JOB, MONTH_JOB, QUALITY_REPORT_JOB = JOB_OF_STEP.values()

TRUSTS = "trusts"  # the dynamic partitions registered from the landing zone
ONLY_TRUSTS_TAG = "sact/trusts"  # comma-separated: the trusts a range run builds (a label: filters, alerts)
MONTH_TAG = "sact/month"  # on every run the pipeline requests; dagster.yaml runs one per month at a time
PROCESS_TAG = "sact/process"  # host:pid of the process running the run (the CLI, or the daemon's run worker)
REFRESH_RUN_TAG = "sact/refresh_run"  # on the runs a refresh_landing_zone run makes: its run id
IN_FLIGHT = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
             DagsterRunStatus.STARTED]


def trust_month_run(instance, month: str, trusts, *, affected_only: bool) -> tuple[dict[str, str], dict]:
    """Tags and options of one run over a month's trusts: the partition range from the first to the last
    of them in the registered order (others in between are skipped: the options name which to build)."""
    position = {trust: number for number, trust in enumerate(instance.get_dynamic_partitions(TRUSTS))}
    chosen = sorted(set(trusts), key=lambda trust: position[trust])
    tags = {ASSET_PARTITION_RANGE_START_TAG: trust_month_partition(month, chosen[0]),
            ASSET_PARTITION_RANGE_END_TAG: trust_month_partition(month, chosen[-1]), MONTH_TAG: month,
            ONLY_TRUSTS_TAG: ",".join(chosen)}
    return tags, {"trusts": chosen, "affected_only": affected_only}


class StepRun(NamedTuple):
    job_name: str
    partition_key: str | None  # a month step's partition (a trust-month step's range is in its tags)
    tags: dict[str, str]
    options: dict  # sact_pipeline.run_config: run_config_for(job_name, **options)


def step_run(instance, step: Step) -> StepRun:
    """The run that carries out a planned step."""
    if step.kind is StepKind.TRUST_MONTHS:
        tags, options = trust_month_run(instance, step.month, step.trusts, affected_only=step.affected_only)
        return StepRun(JOB_OF_STEP[step.kind], None, tags, options)
    return StepRun(JOB_OF_STEP[step.kind], month_partition(step.month), {MONTH_TAG: step.month}, {})


def this_run_process() -> str:
    """host:pid of the process running this run, its run worker, which lives as long as the run. A step in a
    process of its own (the multiprocess executor) names its parent, the run worker. A run worker is itself
    a child process too when a code server started it (the daemon's runs): it names itself, not the code
    server, which outlives every run and would hide a run worker that was killed."""
    parent = multiprocessing.parent_process()
    pid = parent.pid if parent is not None and _in_step_process() else os.getpid()
    return f"{socket.gethostname()}:{pid}"


def _in_step_process() -> bool:
    """Whether this code runs in a step process of Dagster's multiprocess executor (its entry point is on
    the stack)."""
    frame = sys._getframe()
    while frame is not None:
        if frame.f_code.co_name == "_execute_command_in_child_process":
            return True
        frame = frame.f_back
    return False


def claim_run(context) -> None:
    """Tag the run with the process running it (once, at its first step), so that a run whose process is
    killed can be told from one still running (fail_runs_of_dead_processes)."""
    if PROCESS_TAG not in context.run.tags:
        context.instance.add_run_tags(context.run.run_id, {PROCESS_TAG: this_run_process()})


def _is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def fail_runs_of_dead_processes(instance) -> list[str]:
    """Mark failed the runs still "started" whose process on this host is gone (SIGKILL, out of memory, a
    restart). Dagster's default run launcher cannot check a run worker's health, so such a run would stay
    in flight for ever: the sensor would wait for it and the run queue count it against its month. A
    failed run is what `run_retries` re-launches. Returns "run id (job)" for each run marked."""
    host = socket.gethostname()
    marked = []
    for run in instance.get_runs(RunsFilter(statuses=IN_FLIGHT)):
        run_host, _, pid = run.tags.get(PROCESS_TAG, "").partition(":")
        if run_host != host or not pid.isdigit() or not _is_gone(int(pid)):
            continue
        instance.report_run_failed(run, message=f"the process running this run ({run_host}:{pid}) is gone "
                                                "(killed, out of memory or restarted)")
        marked.append(f"{run.run_id} ({run.job_name})")
    return marked
