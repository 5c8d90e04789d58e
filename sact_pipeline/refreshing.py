"""A refresh: discovery, then the planner's steps as in-process runs, until nothing is left to do.

`sact-pipeline refresh` and the `refresh_landing_zone` job (what the landing-zone sensor, the monthly
schedule and the Launchpad start) both run this. The runs it makes are ordinary Dagster runs of the
layer jobs, on the instance it is given, visible in the UI with their materialisations and checks; they
share one process, one pipeline (connections, ODS register, key, worker pool) and one Data Docs build at
the end. A run per step in a process of its own cost 10-16 s of imports each on two cores; here a step
costs what its work costs. The order of the steps is the planner's (sact_pipeline.planning).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sact_pipeline.planning import Backfill, Step, StepKind, plan

LOCAL_INSTANCE_YAML = """\
# Written by sact-pipeline for a new local instance: storage stays the SQLite default in this folder.
# Telemetry is off: nothing about NHS data work leaves this machine.
telemetry:
  enabled: false
"""


def prepare_dagster_home(dagster_home: Path) -> None:
    """Create a missing instance folder with telemetry off; an existing dagster.yaml is never touched."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    config = dagster_home / "dagster.yaml"
    if not config.exists():
        config.write_text(LOCAL_INSTANCE_YAML, encoding="utf-8")


@dataclass
class RefreshReport:
    failures: list[str]
    rejected: list[tuple[str, str]]  # rejected files lying in the landing zone now
    trust_months: int
    months: list[str]
    runs: list[str] = field(default_factory=list)  # ids of the runs made, in order

    @property
    def ok(self) -> bool:
        return not self.failures and not self.rejected


@dataclass(frozen=True)
class RefreshRequest:
    """What is asked of a refresh beyond "bring every layer up to date"."""

    backfill: Backfill | None = None
    rekey: bool = False  # re-derive trust-months built with another pseudonymisation key
    retry_held: bool = True  # build held trust-months again (a person asked; the sensor does not)
    tags: dict = field(default_factory=dict)  # on every run made: who asked, the process running them


def run_failure(result) -> str:
    """The first step failure of an in-process run, as one line."""
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            return f"{event.step_key}: {event.step_failure_data.error.message.strip()}"
    return "run failed"


def run_refresh(pipeline, definitions, instance, request: RefreshRequest, *, log=print) -> RefreshReport:
    """Discovery, then every step the planner asks for, as runs of `definitions`' jobs on `instance`.

    One refresh at a time per warehouse (a second waits, then finds only what the first left to do); the
    files of a refresh that was killed are recovered first. Refuses to run when the clean layer was built
    with another pseudonymisation key, unless request.rekey.
    """
    pipeline.pseudonymiser  # fail fast, with the reason, before any run starts
    if not request.rekey:
        pipeline.check_key()
    with pipeline.warehouse.refresh_lock(waiting=lambda: log(
            "another refresh is running on this warehouse: waiting for it to finish")):
        for line in pipeline.recover_interrupted_writes():
            log(f"recovered: {line}")
        return _refresh(pipeline, definitions, instance, request, log)


def _refresh(pipeline, definitions, instance, request: RefreshRequest, log) -> RefreshReport:
    from sact_pipeline.run_tags import DISCOVERY_JOB, fail_runs_of_dead_processes

    # Every run of the refresh: one Data Docs build at its end, not one per step; a rekey may re-derive.
    options = {"data_docs": False, "rekey": request.rekey}
    for run in fail_runs_of_dead_processes(instance):
        log(f"run {run} marked failed: the process running it was killed")
    started = time.monotonic()
    since = datetime.now()  # full precision: scans a second apart must differ
    result = definitions.resolve_job_def(DISCOVERY_JOB).execute_in_process(
        instance=instance, raise_on_error=False, tags=request.tags, run_config=_run_config(DISCOVERY_JOB, options))
    if not result.success:
        return RefreshReport([f"discovery: {run_failure(result)}"], [], 0, [], [result.run_id])
    rejected, failures = _report_discovery(pipeline, since, log)
    runner = _StepRunner(definitions, instance, request, options, log, failures)
    runner.runs.append(result.run_id)
    runner.run_plan(pipeline)
    try:  # nothing new recorded: a few milliseconds
        pipeline.build_data_docs()
    except Exception as error:  # noqa: BLE001 - documentation only: the layers are done and gated
        log(f"GX Data Docs were not built: {type(error).__name__}: {error}")
    log(f"refresh took {time.monotonic() - started:.1f}s: {runner.trust_months} trust-months, "
        f"{len(runner.months)} months re-published")
    return RefreshReport(failures, rejected, runner.trust_months, runner.months, runner.runs)


def _report_discovery(pipeline, since: datetime, log) -> tuple[list, list[str]]:
    """Log what discovery rejected and the opt-outs it registered: (rejected files, failures)."""
    failures = []
    rejected = [(path, reason) for path, reason, _ in pipeline.landing.rejected_in_landing_zone(seen_since=since)]
    for path, reason in rejected:
        log(f"REJECTED {path}: {reason}")
    for name, reason in pipeline.protection.rejected_optouts():
        log(f"OPT-OUT FILE NOT APPLIED {name}: {reason}")
        failures.append(f"opt-out file {name} in {pipeline.settings.optout_dir} could not be applied: {reason}")
    pending = pipeline.warehouse.pending_optouts()
    if pending:
        log(f"opt-outs: {len(pending)} trust-months hold patients who opted out; re-deriving them without")
    return rejected, failures


def _run_config(job_name: str, options: dict) -> dict:
    """The run config of an in-process run: its steps' options, and a console that shows our progress
    lines only (Dagster's own events still go to the instance, and the UI)."""
    from sact_pipeline.run_config import run_config_for

    return {**run_config_for(job_name, **options), "loggers": {"console": {"config": {"log_level": "ERROR"}}}}


class _StepRunner:
    """Carries out the planner's steps as in-process runs, asking the planner again after each batch,
    until nothing is left to do (each kind of step runs at most once per month in a refresh)."""

    def __init__(self, definitions, instance, request: RefreshRequest, options: dict, log, failures: list[str]):
        self.definitions, self.instance, self.request, self.log = definitions, instance, request, log
        self.options, self.failures = options, failures
        self.trust_months, self.months, self.runs = 0, [], []
        self.done: set[tuple[str, str]] = set()

    def run_plan(self, pipeline) -> None:
        backfill = self.request.backfill
        state = pipeline.status.read()
        if backfill is not None and backfill.unknown_trusts(state.registered):
            self.failures.append(f"backfill: no accepted submission from {', '.join(backfill.unknown_trusts(state.registered))}")
        while True:
            steps = plan(state, backfill=backfill, done=frozenset(self.done), retry_held=self.request.retry_held)
            if not steps.steps:
                self._tell_held(state.held)
                return
            for number, step in enumerate(steps.steps, 1):
                self.done.add(step.done_key)
                self._run(step, number, len(steps.steps))
            state = pipeline.status.read()

    def _tell_held(self, held) -> None:
        """Trust-months whose newest files fail a gate: their months are published without them (the last
        good version's figures, or none). A refresh that tried them again fails naming each; one that left
        them alone (the sensor's) says so, and fails only if a run it made failed."""
        for (month, trust), reason in sorted(held.items()):
            self.log(f"{trust} {month}: HELD, its newest file failed a gate; {month} is published with {trust} "
                     f"held (last good version) or unusable: {reason}")
            if self.request.retry_held:
                self.failures.append(f"{trust} {month}: newest file failed a gate (published as held or "
                                     f"unusable): {reason}")

    def _run(self, step: Step, number: int, of: int) -> None:
        from sact_pipeline.run_tags import step_run

        job_name, partition_key, tags, options = step_run(self.instance, step)
        started = time.monotonic()
        result = self.definitions.resolve_job_def(job_name).execute_in_process(
            instance=self.instance, raise_on_error=False, tags={**self.request.tags, **tags},
            partition_key=partition_key, run_config=_run_config(job_name, {**self.options, **options}))
        self.runs.append(result.run_id)
        if step.kind is StepKind.TRUST_MONTHS:
            self.trust_months += len(step.trusts)
            label = ", ".join(step.trusts) if len(step.trusts) <= 8 else f"{len(step.trusts)} trusts"
            self.log(f"[{number}/{of}] {step.month} {label}: {'ok' if result.success else 'FAILED'} "
                     f"({time.monotonic() - started:.1f}s)")
            what = step.month
        elif step.kind is StepKind.MONTH:
            self.months.append(step.month)
            self.log(f"month {step.month}: {'published' if result.success else 'FAILED'}")
            what = step.month
        else:
            self.log(f"month {step.month}: data-quality report {'built' if result.success else 'FAILED'}")
            what = f"{step.month} data-quality report"
        if not result.success:
            self.failures.append(f"{what}: {run_failure(result)}")
