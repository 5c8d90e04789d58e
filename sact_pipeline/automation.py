"""Automation: the landing-zone sensor that keeps every layer up to date, and the monthly schedule.

Each tick the sensor:
1. watches the landing zone and the opt-out folder: complete new or changed files (same size and time
   on two ticks; .part/.tmp never) whose content (SHA-256) is new -> a discovery run; the cursor keeps
   name, size, time and hash of each file;
2. otherwise asks the planner (sact_pipeline.planning: the same order `sact-pipeline refresh` follows)
   what runs next, given the runs in flight, and requests it: the trust-months behind their inputs (one
   run per month), else the earliest month to publish, else the data-quality reports behind.
Run keys carry the input fingerprints, so a request is made once per state: a run that failed on bad data
is not retried until its inputs change, and a late file for any month, however old, works the same way.
A month's deadline passing is one of its inputs too (provisional -> final), so the first tick after
midnight on the deadline day re-publishes the month as final, with no new file and no daily schedule.
The schedule requests a discovery run at 06:00 on the 1st of each month (SACT_SCHEDULE_CRON), a safety
net for files that arrived unnoticed: that is the morning a month's deadline has just passed (end of the
following month), so the month two back turns final in the same pass. A month is first published as soon
as one file for it arrives (provisional, the other trusts not yet due).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from dagster import (
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunRequest,
    RunsFilter,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    run_failure_sensor,
    schedule,
    sensor,
)

from sact_pipeline.alerts import WEBHOOK_VARIABLE, RunFailureAlert, error_line, raise_alert, run_scope
from sact_pipeline.domain.landing import sha256_of_file, stat_candidates
from sact_pipeline.domain.pseudonymise import PseudonymisationKeyError
from sact_pipeline.planning import InFlight, Step, plan
from sact_pipeline.resources import SactPipelineResource
from sact_pipeline.run_config import run_config_for
from sact_pipeline.settings import AutomationSettings
from sact_pipeline.run_tags import IN_FLIGHT, MONTH_TAG, fail_runs_of_dead_processes, step_run

JobTarget = Any  # what define_asset_job returns (its class is not exported by dagster)


def _in_flight(instance, job_name: str) -> bool:
    return bool(instance.get_runs(RunsFilter(job_name=job_name, statuses=IN_FLIGHT), limit=1))


def build_automation(discovery: JobTarget, trust_month: JobTarget, month: JobTarget, quality_report: JobTarget):
    """The sensor and schedule for the jobs of build_definitions (the daemon needs them as targets)."""
    discovery_job, trust_month_job, month_job = discovery.name, trust_month.name, month.name
    quality_report_job = quality_report.name
    automation = AutomationSettings.from_env()

    @sensor(name="landing_zone_sensor", minimum_interval_seconds=automation.sensor_interval,
            default_status=DefaultSensorStatus.RUNNING, jobs=[discovery, trust_month, month, quality_report],
            description="Picks up new, late and corrected submissions and re-runs exactly what they affect.")
    def landing_zone_sensor(context: SensorEvaluationContext, sact: SactPipelineResource):
        pipeline = sact.pipeline()
        try:
            pipeline.check_key()
        except PseudonymisationKeyError as error:  # nothing runs on a changed key: restore it or rekey
            return SkipReason(str(error))
        for run in fail_runs_of_dead_processes(context.instance):  # else their months would wait for ever
            context.log.warning(f"run {run} marked failed: the process running it is gone")
        cursor = json.loads(context.cursor) if context.cursor else {"seen": {}, "registered": {}}
        seen = _watched_files(pipeline.settings)
        stable = {path: list(stat) for path, stat in seen.items() if cursor["seen"].get(path) == list(stat)}
        # registered: [size, mtime, sha256] of each file as last handed to discovery
        changed = sorted(path for path, stat in stable.items() if cursor["registered"].get(path, [])[:2] != stat)
        cursor["seen"] = {path: list(stat) for path, stat in seen.items()}
        instance = context.instance

        if changed:
            if _in_flight(instance, discovery_job):
                return SkipReason("waiting for the discovery run in progress")
            hashes = {path: sha256_of_file(_watched_path(pipeline.settings, path)) for path in changed}
            new_content = {path: digest for path, digest in hashes.items()
                           if digest and cursor["registered"].get(path, [])[2:] != [digest]}
            cursor["registered"].update({path: stable[path] + [hashes[path]] for path in changed if hashes[path]})
            if new_content:  # a file only touched (same bytes) needs no discovery run
                key = hashlib.sha256(json.dumps(new_content, sort_keys=True).encode()).hexdigest()[:16]
                return SensorResult(run_requests=[RunRequest(run_key=f"discover-{key}", job_name=discovery_job,
                                                             tags={"sact/trigger": "landing-zone-sensor"})],
                                    cursor=json.dumps(cursor))
        if _in_flight(instance, discovery_job):
            return SensorResult(skip_reason="waiting for the discovery run in progress", cursor=json.dumps(cursor))

        # What to run next is the planner's (sact_pipeline.planning), as for `sact-pipeline refresh`.
        busy = {run.tags.get(MONTH_TAG) for run in instance.get_runs(  # a run for the month is on its way:
            RunsFilter(job_name=trust_month_job, statuses=IN_FLIGHT))}  # what it leaves is asked for after
        in_flight = InFlight(frozenset(busy), any(_in_flight(instance, job)
                                                  for job in (trust_month_job, month_job, quality_report_job)))
        state = pipeline.status.read()
        next_steps = plan(state, in_flight=in_flight)
        if next_steps.steps:
            return SensorResult(run_requests=[_run_request(instance, step) for step in next_steps.steps],
                                cursor=json.dumps(cursor))
        if next_steps.waiting:
            return SensorResult(skip_reason=next_steps.waiting, cursor=json.dumps(cursor))
        if state.held:
            return SensorResult(skip_reason="up to date, except trust-months that failed their gates (their "
                                            "months are published with them held or unusable until a "
                                            "corrected file arrives): " + ", ".join(f"{m} {t}" for m, t in sorted(state.held)),
                                cursor=json.dumps(cursor))
        return SensorResult(skip_reason="every layer is up to date", cursor=json.dumps(cursor))

    @schedule(name="monthly_refresh", job=discovery,
              cron_schedule=automation.schedule_cron, execution_timezone=automation.schedule_timezone,
              default_status=DefaultScheduleStatus.RUNNING,
              description="Monthly: register the landing zone; the landing-zone sensor refreshes what changed.")
    def monthly_refresh(context: ScheduleEvaluationContext):
        return RunRequest(run_key=f"monthly-{context.scheduled_execution_time:%Y-%m-%d}",
                          tags={"sact/trigger": "monthly-schedule"})

    return landing_zone_sensor, monthly_refresh


def _run_request(instance, step: Step) -> RunRequest:
    """A planned step as a run request; its run key names its inputs, so it is requested once per state."""
    job_name, partition_key, tags, options = step_run(instance, step)
    return RunRequest(run_key=step.run_key, job_name=job_name, partition_key=partition_key,
                      run_config=run_config_for(job_name, **options),
                      tags={"sact/trigger": "landing-zone-sensor", **tags})


OPTOUT_PREFIX = "opt-out::"  # cursor keys of files in SACT_OPTOUT_DIR (landing-zone keys are relative paths)


def _watched_files(settings) -> dict[str, tuple[int, int]]:
    """(size, mtime) of the landing zone's candidate files and of the opt-out folder's, by cursor key."""
    seen = stat_candidates(settings.landing_dir)
    seen.update({OPTOUT_PREFIX + path: stat for path, stat in stat_candidates(settings.optout_dir).items()})
    return seen


def _watched_path(settings, key: str):
    if key.startswith(OPTOUT_PREFIX):
        return settings.optout_dir / key[len(OPTOUT_PREFIX):]
    return settings.landing_dir / key


def build_run_failure_alerts():
    """A run-failure sensor per Definitions (a module-level one would be shared, with its instance, by all)."""

    @run_failure_sensor(name="run_failure_alerts", default_status=DefaultSensorStatus.RUNNING,
                        description=f"Alert on every failed run: to the log, and to ${WEBHOOK_VARIABLE} when set.")
    def run_failure_alerts(context: RunFailureSensorContext) -> None:
        run = context.dagster_run
        failures = tuple(
            f"{event.step_key}: {error_line(event.step_failure_data.error.message)}"
            for event in context.get_step_failure_events()
            if event.step_failure_data and event.step_failure_data.error
        )
        alert = RunFailureAlert(run.run_id, run.job_name, run_scope(run.tags), failures)
        context.log.error(alert.text())
        raise_alert(alert, AutomationSettings.from_env().alert_webhook_url)

    return run_failure_alerts
