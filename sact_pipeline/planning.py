"""What runs next: one pure function from the pipeline's state to the steps to run now.

A refresh (sact_pipeline.refreshing: `sact-pipeline refresh`, `backfill`, and the refresh runs the
landing-zone sensor and the schedule request) turns the steps into in-process runs and asks again after
the steps it ran, so the order lives here alone; the sensor asks whether anything is behind at all:

1. trust-months whose clean or data-quality layer is behind their inputs (a new file version, a key, an
   opt-out): one step per month over its affected trusts; all months at once. A trust-month whose current
   files failed a gate is held: the refresh runs the sensor asks for do not retry it (it would fail
   again), a person at the command line or the Launchpad does (and is told again);
2. then the earliest month whose publication is behind its inputs, alone: a
   month's changes read the month before, so the month after is asked for again once it is published.
   A held trust-month never holds its month back: the month is published with that trust marked held
   (its last good figures) or unusable; a trust becoming held or released, and the month's deadline
   passing (provisional to final), are among the month's inputs;
3. then the data-quality reports behind their assessments, all at once.

A step's run key names its inputs, so it is asked for once per state: a run that failed on bad data is
not asked for again until its inputs change. No Dagster here: tested directly (test_planning.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from sact_pipeline.partitions import by_month

TrustMonth = tuple[str, str]  # (YYYY-MM, trust code)


class StepKind(Enum):
    """What a step builds; the value starts its run key."""

    TRUST_MONTHS = "trust-months"  # raw, clean and data quality of a month's trusts
    MONTH = "month"  # the month's summary, publication and data-quality report
    QUALITY_REPORT = "quality-report"  # the month's data-quality report alone


@dataclass(frozen=True)
class Step:
    kind: StepKind
    month: str
    trusts: tuple[str, ...] = ()  # TRUST_MONTHS: the trusts to build
    affected_only: bool = True  # TRUST_MONTHS: skip trusts already built from their current inputs
    inputs: str = ""  # fingerprint of what the step is built from

    @property
    def run_key(self) -> str:
        return f"{self.kind.value}-{self.month}|{self.inputs[:16]}"

    @property
    def done_key(self) -> tuple[str, str]:
        """A refresh runs each kind of step for a month at most once (its inputs may change as it runs)."""
        return self.kind.value, self.month


@dataclass(frozen=True)
class Backfill:
    """Re-run a range of months whatever the fingerprints say (something upstream was wrong)."""

    first_month: str
    last_month: str
    trusts: tuple[str, ...] = ()

    def covers(self, month: str, trust: str | None = None) -> bool:
        return self.first_month <= month <= self.last_month and (trust is None or not self.trusts
                                                                  or trust in self.trusts)

    def unknown_trusts(self, registered: Mapping[TrustMonth, str]) -> list[str]:
        """Trusts named that sent no accepted file (a typo, or a trust not yet registered)."""
        return sorted(set(self.trusts) - {trust for _, trust in registered})


@dataclass(frozen=True)
class PipelineState:
    """What the planner needs to know, read from the warehouse (sact_pipeline.state)."""

    registered: Mapping[TrustMonth, str]  # every trust-month with an accepted file: its files' fingerprint
    affected: frozenset[TrustMonth]  # clean or data quality behind the files, key and opt-outs
    held: Mapping[TrustMonth, str]  # current files failed a gate: the failure
    trust_month_inputs: Mapping[TrustMonth, str]  # what building a trust-month reads (files, key, ...)
    months: tuple[str, ...]  # every month from the first with data to the last, in order
    month_inputs: Mapping[str, str]  # what each month's publication is built from
    published: Mapping[str, str]  # month_inputs of each month when it was last published
    report_inputs: Mapping[str, str]  # what each month's data-quality report is built from
    reported: Mapping[str, str]  # report_inputs when each report was last built


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]  # to run now, in this order

    @property
    def up_to_date(self) -> bool:
        return not self.steps


def plan(state: PipelineState, *, backfill: Backfill | None = None, done: frozenset[tuple[str, str]] = frozenset(),
         retry_held: bool = False) -> Plan:
    """The steps to run now (see the module docstring); `done`: done_keys of steps already run by this
    refresh; `retry_held`: build held trust-months again (the command line)."""
    trust_months = [step for step in _trust_month_steps(state, backfill, retry_held) if step.done_key not in done]
    if trust_months:
        return Plan(tuple(trust_months))
    for month in _months_to_publish(state, backfill):
        step = Step(StepKind.MONTH, month, inputs=state.month_inputs[month])
        if step.done_key not in done:
            return Plan((step,))
    reports = [Step(StepKind.QUALITY_REPORT, month, inputs=state.report_inputs[month]) for month in state.months
               if state.reported.get(month) != state.report_inputs[month]
               and (StepKind.MONTH.value, month) not in done  # that run built the report (or failed before)
               and (StepKind.QUALITY_REPORT.value, month) not in done]
    return Plan(tuple(reports))


def _trust_month_steps(state: PipelineState, backfill: Backfill | None, retry_held: bool) -> list[Step]:
    """One step per month over its trust-months to build: the affected ones, or a backfill's range."""
    if backfill is None:
        wanted = [tm for tm in sorted(state.affected) if retry_held or tm not in state.held]
    else:
        wanted = [tm for tm in sorted(state.registered) if backfill.covers(*tm)]
    return [Step(StepKind.TRUST_MONTHS, month, tuple(trusts), affected_only=backfill is None,
                 inputs=_trust_month_inputs(state, month, trusts))
            for month, trusts in sorted(by_month(wanted).items())]


def _trust_month_inputs(state: PipelineState, month: str, trusts: list[str]) -> str:
    joined = "".join(f"{trust}{state.trust_month_inputs[(month, trust)]}" for trust in sorted(trusts))
    return hashlib.sha256(joined.encode()).hexdigest()


def _months_to_publish(state: PipelineState, backfill: Backfill | None) -> list[str]:
    """Months whose publication is behind its inputs, and a backfill's range and the month after it (its
    changes read the range's last month), in order."""
    chosen = []
    for number, month in enumerate(state.months):
        forced = backfill is not None and (backfill.covers(month) or (
            number > 0 and state.months[number - 1] == backfill.last_month))
        if forced or state.published.get(month) != state.month_inputs[month]:
            chosen.append(month)
    return chosen

