"""Automation: the landing-zone sensor that keeps every layer up to date, and the monthly schedule.

Both request one kind of run: refresh_landing_zone, which registers the landing zone and then makes, in
its own process, a run of the layer jobs for every step the planner asks for (sact_pipeline.refreshing:
what `sact-pipeline refresh` does). So a change costs one sensor tick and one process start, whatever
it affects: a late file re-publishes its month and the months after it in that one run.

Each tick the sensor:
1. marks failed the runs whose process is gone (else it would wait for them for ever);
2. watches the landing zone and the opt-out folder: a file is complete when it has not been written
   for SACT_FILE_QUIET_SECONDS (default 10), or its size and time are the same on two ticks (.part/.tmp
   never); complete new or changed files whose content (SHA-256) is new -> a refresh run. The cursor
   keeps name, size, time and hash;
3. otherwise, when no run of the pipeline is in flight, asks the planner (sact_pipeline.planning) whether
   anything is behind its inputs (an opt-out applied, a month's deadline passed, a run that failed on a
   transient error) -> a refresh run.
Run keys carry the new content or the planned steps' input fingerprints, so a request is made once per
state: a trust-month that failed on bad data is not retried until its files change (the refresh run the
sensor asks for leaves held trust-months alone), and a late file for any month, however old, works the
same way. A month's deadline passing is one of its inputs (provisional -> final), so the first tick after
midnight on the deadline day re-publishes the month as final, with no new file and no daily schedule.
The schedule requests a refresh run at 06:00 on the 1st of each month (SACT_SCHEDULE_CRON), a safety net
for files that arrived unnoticed: that is the morning a month's deadline has just passed (end of the
following month), so the month two back turns final in the same pass. A month is first published as soon
as one file for it arrives (provisional, the other trusts not yet due).
"""

from __future__ import annotations

import hashlib
import json
import time
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
from sact_pipeline.planning import plan
from sact_pipeline.resources import SactPipelineResource
from sact_pipeline.run_config import refresh_run_config
from sact_pipeline.run_tags import IN_FLIGHT, JOB_OF_STEP, REFRESH_JOB, DISCOVERY_JOB, fail_runs_of_dead_processes
from sact_pipeline.settings import AutomationSettings

JobTarget = Any  # what define_asset_job and @job return
PIPELINE_JOBS = frozenset({REFRESH_JOB, DISCOVERY_JOB, *JOB_OF_STEP.values()})
SENSOR_TRIGGER = {"sact/trigger": "landing-zone-sensor"}


def _runs_in_flight(instance) -> list[str]:
    """Job names of the pipeline's runs queued or running (a refresh, or a layer run from the Launchpad)."""
    return sorted({run.job_name for run in instance.get_runs(RunsFilter(statuses=IN_FLIGHT))
                   if run.job_name in PIPELINE_JOBS})


def _refresh_request(run_key: str) -> RunRequest:
    """A refresh run as the sensor wants it: held trust-months left alone until their files change."""
    return RunRequest(run_key=run_key, job_name=REFRESH_JOB, tags=SENSOR_TRIGGER,
                      run_config=refresh_run_config(retry_held=False))


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def build_automation(refresh: JobTarget):
    """The sensor and schedule for the refresh job of build_definitions (the daemon needs it as target)."""
    automation = AutomationSettings.from_env()

    @sensor(name="landing_zone_sensor", minimum_interval_seconds=automation.sensor_interval,
            default_status=DefaultSensorStatus.RUNNING, jobs=[refresh],
            description="Picks up new, late and corrected submissions and opt-outs, and months whose deadline "
                        "passed; one refresh run re-runs exactly what they affect.")
    def landing_zone_sensor(context: SensorEvaluationContext, sact: SactPipelineResource):
        pipeline = sact.pipeline()
        try:
            pipeline.check_key()
        except PseudonymisationKeyError as error:  # nothing runs on a changed key: restore it or rekey
            return SkipReason(str(error))
        instance = context.instance
        for run in fail_runs_of_dead_processes(instance):  # else the sensor would wait for ever
            context.log.warning(f"run {run} marked failed: the process running it is gone")
        cursor = json.loads(context.cursor) if context.cursor else {"seen": {}, "registered": {}}
        seen = _watched_files(pipeline.settings)
        quiet_since = (time.time() - automation.file_quiet_seconds) * 1e9  # mtime in ns
        stable = {path: list(stat) for path, stat in seen.items()
                  if cursor["seen"].get(path) == list(stat) or stat[1] <= quiet_since}
        # registered: [size, mtime, sha256] of each file as last handed to a refresh run
        changed = sorted(path for path, stat in stable.items() if cursor["registered"].get(path, [])[:2] != stat)
        busy = _runs_in_flight(instance)
        if changed and busy:  # looked at again once they finish (the cursor is left as it was)
            return SkipReason(f"new files wait for the runs in progress ({', '.join(busy)})")
        cursor["seen"] = {path: list(stat) for path, stat in seen.items()}
        if changed:
            hashes = {path: sha256_of_file(_watched_path(pipeline.settings, path)) for path in changed}
            new_content = {path: digest for path, digest in hashes.items()
                           if digest and cursor["registered"].get(path, [])[2:] != [digest]}
            cursor["registered"].update({path: stable[path] + [hashes[path]] for path in changed if hashes[path]})
            if new_content:  # a file only touched (same bytes) needs no run
                return SensorResult(run_requests=[_refresh_request(f"files-{_digest(new_content)}")],
                                    cursor=json.dumps(cursor))
        if busy:
            return SensorResult(skip_reason=f"waiting for runs in progress ({', '.join(busy)})",
                                cursor=json.dumps(cursor))

        # Anything else behind its inputs is the planner's to say (sact_pipeline.planning).
        state = pipeline.status.read()
        steps = plan(state).steps
        if steps:
            return SensorResult(run_requests=[_refresh_request(f"steps-{_digest([s.run_key for s in steps])}")],
                                cursor=json.dumps(cursor))
        if state.held:
            return SensorResult(skip_reason="up to date, except trust-months that failed their gates (their "
                                            "months are published with them held or unusable until a "
                                            "corrected file arrives): " + ", ".join(f"{m} {t}" for m, t in sorted(state.held)),
                                cursor=json.dumps(cursor))
        return SensorResult(skip_reason="every layer is up to date", cursor=json.dumps(cursor))

    @schedule(name="monthly_refresh", job=refresh,
              cron_schedule=automation.schedule_cron, execution_timezone=automation.schedule_timezone,
              default_status=DefaultScheduleStatus.RUNNING,
              description="Monthly: register the landing zone and refresh whatever changed (refresh_landing_zone).")
    def monthly_refresh(context: ScheduleEvaluationContext):
        return RunRequest(run_key=f"monthly-{context.scheduled_execution_time:%Y-%m-%d}",
                          tags={"sact/trigger": "monthly-schedule"}, run_config=refresh_run_config(retry_held=False))

    return landing_zone_sensor, monthly_refresh


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

    # monitor_all_code_locations: the layer runs a refresh run makes in its process have no code location
    # of their own (Dagster's default would watch only runs launched from this one, and miss them).
    @run_failure_sensor(name="run_failure_alerts", default_status=DefaultSensorStatus.RUNNING,
                        monitor_all_code_locations=True,
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
