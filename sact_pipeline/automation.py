"""Automation: the landing-zone sensor that keeps every layer up to date, and the monthly schedule.

The sensor reconciles what is in the landing zone with what the layers were built from, one step a tick:
1. complete new or changed files (same size and time on two ticks; .part/.tmp never) whose content
   (SHA-256) is new, in the landing zone or the opt-out folder -> a discovery run; the cursor keeps name,
   size, time and hash of each file; (an opt-out marks the trust-months holding its patients, and step 2
   re-derives them, then step 3 re-publishes their months);
2. trust-months whose registered file versions differ from their clean partition -> runs for them,
   grouped into one run per month (a partition range over the month's trusts);
3. when no trust-month run is queued or running, the earliest month whose inputs changed -> its month run
   (then, at the next tick, the month after it if the figures it reads changed).
A trust-month whose current files failed a gate is held: not retried, and its month is not re-published
(the previous publication stands) until a new version of the file arrives; the tick says which.
Run keys carry the input fingerprints, so a request is made once per state: a run that failed on bad data
is not retried until its inputs change, and a late file for any month, however old, works the same way.
The schedule requests a discovery run each month, a safety net for files that arrived unnoticed.
"""

from __future__ import annotations

import hashlib
import json
import os
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
from sact_pipeline.assessment import QUALITY, QUALITY_REPORT
from sact_pipeline.resources import SactPipelineResource
from sact_pipeline.run_tags import IN_FLIGHT, MONTH_TAG, fail_runs_of_dead_processes, trust_month_run_tags

JobTarget = Any  # what define_asset_job returns (its class is not exported by dagster)


def _in_flight(instance, job_name: str) -> bool:
    return bool(instance.get_runs(RunsFilter(job_name=job_name, statuses=IN_FLIGHT), limit=1))


def build_automation(discovery: JobTarget, trust_month: JobTarget, month: JobTarget, quality_report: JobTarget):
    """The sensor and schedule for the jobs of build_definitions (the daemon needs them as targets)."""
    discovery_job, trust_month_job, month_job = discovery.name, trust_month.name, month.name
    quality_report_job = quality_report.name

    @sensor(name="landing_zone_sensor", minimum_interval_seconds=int(os.environ.get("SACT_SENSOR_INTERVAL", 30)),
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

        files = pipeline.accepted_files()
        fingerprints = pipeline.trust_month_fingerprints(files)
        held = pipeline.held_trust_months(files)
        by_month: dict[str, list[str]] = {}
        for month, trust in pipeline.affected_trust_months():
            if (month, trust) not in held:  # failed on these very files: retrying cannot help
                by_month.setdefault(month, []).append(trust)
        busy = {run.tags.get(MONTH_TAG) for run in instance.get_runs(  # a run for the month is on its way:
            RunsFilter(job_name=trust_month_job, statuses=IN_FLIGHT))}  # what it leaves is asked for after
        by_month = {month: trusts for month, trusts in by_month.items() if month not in busy}
        # A run key names everything a trust-month is built from: its files, the key, the opt-outs still to
        # apply to it (an opt-out re-derives a trust-month whose files are unchanged: a new request).
        # And its data-quality state: a trust-month whose assessment alone is behind is a new request too.
        pending = pipeline.optout_pending()
        key_id = pipeline.pseudonymiser.key_id
        assessed = pipeline.warehouse.layer_states(QUALITY)
        requests = [  # one run per month builds all of its affected trust-months
            RunRequest(run_key=f"trust-months-{month}|" + hashlib.sha256("".join(
                           f"{t}{fingerprints[(month, t)]}{key_id}{sorted(pending.get((month, t), ()))}"
                           f"{assessed.get((month, t), '')}"
                           for t in sorted(trusts)).encode()).hexdigest()[:16],
                       job_name=trust_month_job,
                       tags={"sact/trigger": "landing-zone-sensor",
                             **trust_month_run_tags(instance, month, trusts, affected_only=True)})
            for month, trusts in sorted(by_month.items())
        ]
        if requests:
            return SensorResult(run_requests=requests, cursor=json.dumps(cursor))
        if any(_in_flight(instance, job) for job in (trust_month_job, month_job, quality_report_job)):
            return SensorResult(skip_reason="waiting for runs in progress", cursor=json.dumps(cursor))
        held_months = {month for month, _ in held}
        months = pipeline.months_with_data()
        for month in months:  # earliest first: a month's changes read the month before
            if month not in held_months and pipeline.month_is_affected(month):
                return SensorResult(run_requests=[RunRequest(
                    run_key=f"month-{month}|{pipeline.month_fingerprint(month)[:16]}", job_name=month_job,
                    partition_key=f"{month}-01", tags={"sact/trigger": "landing-zone-sensor", MONTH_TAG: month})],
                    cursor=json.dumps(cursor))
        # Internal data-quality reports behind their assessments (a held month's too), after every
        # publication and all at once: one that fails (asked once per state: run keys) holds nothing back.
        reported = pipeline.warehouse.layer_states(QUALITY_REPORT)
        reports = [RunRequest(run_key=f"quality-report-{month}|{fingerprint[:16]}", job_name=quality_report_job,
                              partition_key=f"{month}-01", tags={"sact/trigger": "landing-zone-sensor", MONTH_TAG: month})
                   for month in months for fingerprint in [pipeline.quality_report_fingerprint(month)]
                   if reported.get((month, "")) != fingerprint]
        if reports:
            return SensorResult(run_requests=reports, cursor=json.dumps(cursor))
        if held:
            return SensorResult(skip_reason="up to date, except trust-months that failed their gates (their "
                                            "months keep the previous publication until a corrected file "
                                            "arrives): " + ", ".join(f"{m} {t}" for m, t in sorted(held)),
                                cursor=json.dumps(cursor))
        return SensorResult(skip_reason="every layer is up to date", cursor=json.dumps(cursor))

    @schedule(name="monthly_refresh", job=discovery,
              cron_schedule=os.environ.get("SACT_SCHEDULE_CRON", "0 6 1 * *"),
              execution_timezone=os.environ.get("SACT_SCHEDULE_TIMEZONE", "Europe/London"),
              default_status=DefaultScheduleStatus.RUNNING,
              description="Monthly: register the landing zone; the landing-zone sensor refreshes what changed.")
    def monthly_refresh(context: ScheduleEvaluationContext):
        return RunRequest(run_key=f"monthly-{context.scheduled_execution_time:%Y-%m-%d}",
                          tags={"sact/trigger": "monthly-schedule"})

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
        raise_alert(alert, os.environ.get(WEBHOOK_VARIABLE))

    return run_failure_alerts
