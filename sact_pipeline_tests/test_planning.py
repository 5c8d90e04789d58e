"""The planner: what runs next, decided from the pipeline's state alone (no Dagster, no warehouse).

The landing-zone sensor and `sact-pipeline refresh`/`backfill` both carry out these steps; the state is
written out here as the warehouse would report it.
"""

import hashlib

from sact_pipeline.partitions import (
    by_month,
    layer_partition,
    month_of,
    month_partition,
    split_layer_partition,
    trust_month_partition,
    trust_months_of,
)
from sact_pipeline.planning import Backfill, PipelineState, plan

MONTHS = ("2026-04", "2026-05", "2026-06")


def state(*, affected=(), held=None, behind=(), reports_behind=(), registered=None) -> PipelineState:
    """Three months, trusts RAA and RBB each month; months in `behind` are not published from their
    current inputs, reports in `reports_behind` not built from theirs."""
    registered = registered or {(m, t): f"files-{m}-{t}" for m in MONTHS for t in ("RAA", "RBB")}
    month_inputs = {m: f"month-inputs-{m}" for m in MONTHS}
    report_inputs = {m: f"report-inputs-{m}" for m in MONTHS}
    return PipelineState(
        registered=registered, affected=frozenset(affected), held=held or {},
        trust_month_inputs={tm: f"inputs-{f}" for tm, f in registered.items()}, months=MONTHS,
        month_inputs=month_inputs, published={m: f for m, f in month_inputs.items() if m not in behind},
        report_inputs=report_inputs, reported={m: f for m, f in report_inputs.items() if m not in reports_behind})


def kinds(steps) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(step.kind.value, step.month, step.trusts) for step in steps]


def test_an_up_to_date_pipeline_has_nothing_to_run():
    decided = plan(state())
    assert decided.steps == () and decided.up_to_date


def test_affected_trust_months_are_built_first_one_run_per_month_all_months_at_once():
    decided = plan(state(affected={("2026-05", "RBB"), ("2026-04", "RAA"), ("2026-05", "RAA")},
                         behind={"2026-04", "2026-05"}, reports_behind={"2026-04"}))
    assert kinds(decided.steps) == [("trust-months", "2026-04", ("RAA",)), ("trust-months", "2026-05", ("RAA", "RBB"))]
    assert all(step.affected_only for step in decided.steps)


def test_a_trust_month_run_key_names_its_trusts_and_their_inputs():
    step = plan(state(affected={("2026-05", "RAA"), ("2026-05", "RBB")})).steps[0]
    expected = hashlib.sha256(b"RAAinputs-files-2026-05-RAARBBinputs-files-2026-05-RBB").hexdigest()[:16]
    assert step.run_key == f"trust-months-2026-05|{expected}"
    changed = state(affected={("2026-05", "RAA"), ("2026-05", "RBB")},
                    registered={**state().registered, ("2026-05", "RBB"): "a corrected file"})
    assert plan(changed).steps[0].run_key != step.run_key  # a new file version: asked for again


def test_the_sensor_does_not_retry_a_held_trust_month_and_the_command_line_does():
    held = {("2026-05", "RBB"): "clean layer: 3 rows failed"}
    current = state(affected={("2026-05", "RBB"), ("2026-06", "RAA")}, held=held)
    assert kinds(plan(current).steps) == [("trust-months", "2026-06", ("RAA",))]
    assert kinds(plan(current, retry_held=True).steps) == [("trust-months", "2026-05", ("RBB",)),
                                                           ("trust-months", "2026-06", ("RAA",))]


def test_months_publish_one_at_a_time_earliest_first_after_the_trust_months():
    decided = plan(state(behind={"2026-06", "2026-05"}, reports_behind={"2026-04"}))
    assert kinds(decided.steps) == [("month", "2026-05", ())]
    assert decided.steps[0].run_key == "month-2026-05|month-inputs-202"  # inputs named in 16 characters
    assert decided.steps[0].inputs == "month-inputs-2026-05"


def test_a_held_trust_month_never_holds_back_its_month():
    held = {("2026-05", "RBB"): "raw layer: bad file"}
    decided = plan(state(held=held, behind={"2026-05", "2026-06"}))
    # the month is published (with RBB marked held or unusable), then the month after it
    assert kinds(decided.steps) == [("month", "2026-05", ())]
    assert kinds(plan(state(held=held, behind={"2026-05", "2026-06"}), done=frozenset({("month", "2026-05")})
                      ).steps) == [("month", "2026-06", ())]
    # an up-to-date month with a held trust-month: nothing to run (the sensor does not retry RBB)
    assert plan(state(held=held)).up_to_date


def test_data_quality_reports_behind_come_last_all_at_once():
    decided = plan(state(reports_behind={"2026-06", "2026-04"}))
    assert kinds(decided.steps) == [("quality-report", "2026-04", ()), ("quality-report", "2026-06", ())]
    assert decided.steps[0].run_key == "quality-report-2026-04|report-inputs-20"


def test_a_refresh_runs_each_step_of_a_month_once_and_its_publication_builds_its_report():
    current = state(behind={"2026-05", "2026-06"}, reports_behind={"2026-05", "2026-06"})
    first = plan(current).steps[0]
    after = plan(current, done=frozenset({first.done_key}))
    assert kinds(after.steps) == [("month", "2026-06", ())]
    done = frozenset({first.done_key, after.steps[0].done_key})
    assert plan(current, done=done).steps == ()  # the month runs built both reports (or failed trying)


def test_a_backfill_rebuilds_its_range_and_republishes_it_and_the_month_after():
    backfill = Backfill("2026-04", "2026-05", trusts=("RBB",))
    decided = plan(state(), backfill=backfill)
    assert kinds(decided.steps) == [("trust-months", "2026-04", ("RBB",)), ("trust-months", "2026-05", ("RBB",))]
    assert not any(step.affected_only for step in decided.steps)
    done = {step.done_key for step in decided.steps}
    published = []
    while (steps := plan(state(), backfill=backfill, done=frozenset(done)).steps):
        published += [step.month for step in steps]
        done |= {step.done_key for step in steps}
    assert published == ["2026-04", "2026-05", "2026-06"]  # June's changes read May


def test_a_backfill_names_trusts_that_sent_nothing():
    assert Backfill("2026-04", "2026-05", ("RBB", "RZZ")).unknown_trusts(state().registered) == ["RZZ"]
    assert Backfill("2026-04", "2026-05").covers("2026-05", "RAA")
    assert not Backfill("2026-04", "2026-05", ("RBB",)).covers("2026-05", "RAA")


def test_partition_keys_are_built_and_read_back_in_one_place():
    assert month_partition("2026-05") == "2026-05-01" and month_of("2026-05-01") == "2026-05"
    key = trust_month_partition("2026-05", "RAA")
    assert key == "2026-05-01|RAA" and trust_months_of([key]) == [("2026-05", "RAA")]
    assert split_layer_partition(layer_partition("2026-05", "RAA")) == ("2026-05", "RAA")
    assert by_month([("2026-05", "RBB"), ("2026-04", "RAA"), ("2026-05", "RAA")]) == {
        "2026-05": ["RBB", "RAA"], "2026-04": ["RAA"]}

