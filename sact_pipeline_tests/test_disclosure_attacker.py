"""Property-based: an attacker holding two consecutive published months cannot pin any "*" cell.

The attacker oracle here is written independently of sact_pipeline.domain.disclosure: from the
published table alone (trust cells, the ENGLAND cell, and the changes, which tie current = previous +
change), it bounds every true count by interval arithmetic and asks whether a "*" cell's feasible range
has collapsed to one value. Hypothesis generates the months, weighted towards what breaks naive rules:
columns of zeros and ones, trusts that start or stop submitting, Welsh trusts, England totals that
must be withheld. At least 2,000 cases run in CI (HYPOTHESIS_EXAMPLES raises it for a longer run).
"""

from __future__ import annotations

import os
import re

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sact_pipeline.domain.counting import MEASURES
from sact_pipeline.domain.publication import ENGLAND, publish_month, suppressed_cell_ranges

EXAMPLES = int(os.environ.get("HYPOTHESIS_EXAMPLES", "2000"))
COUNT_CELL = re.compile(r"^(?:|0|\*|\[c\]|[1-9][0-9]*[05])$")
SUPPRESSED, WITHHELD = "*", "[c]"

# Counts: mostly the small values that suppression is about and the edges of rounding (8 and 12 both
# publish as 10; an attacker gains most where true values sit on those edges), sometimes large ones.
counts = st.one_of(st.sampled_from([0, 0, 0, 1, 1, 1, 2, 6, 7, 8, 8, 12, 13, 17, 18]), st.integers(0, 12),
                   st.integers(0, 60), st.integers(0, 5000))
# A trust in two consecutive months: whether it submitted each month, each measure's two counts, and what
# became of its newest file in the second month: used (ok), failed with an earlier version standing (held:
# the counts are that version's), or failed with none (unusable: nothing published, counted 0).
trusts = st.tuples(st.booleans(), st.booleans(), st.lists(st.tuples(counts, counts), min_size=4, max_size=4),
                   st.sampled_from(["ok", "ok", "held", "unusable"]))


def summary(month: str, rows: list[tuple], month_status: str = "final") -> pd.DataFrame:
    """A trust-month summary as the summary layer builds it: rows of (code, English, submitted, counts, data
    status); NA measures for a trust that did not submit or whose every version failed (unusable)."""
    rows = [(*row, "ok")[:5] for row in rows]
    used = [submitted and state != "unusable" for _, _, submitted, _, state in rows]
    frame = pd.DataFrame({
        "reporting_month": month, "org_code": [code for code, *_ in rows],
        "org_name": [f"Trust {code}" for code, *_ in rows], "is_english": [english for _, english, *_ in rows],
        "submission_status": ["on_time" if submitted else "missing" for _, _, submitted, *_ in rows],
        "submitted_at": [pd.Timestamp(f"{month}-28") if submitted else pd.NaT for _, _, submitted, *_ in rows],
        "month_status": month_status,
        "data_status": [state if submitted else "" for _, _, submitted, _, state in rows],
    })
    for number, measure in enumerate(MEASURES):
        frame[measure] = pd.array([values[number] if ok else None for (*_, values, _), ok in zip(rows, used)],
                                  dtype="Int64")
    return frame


def interval(text: str) -> tuple[int, int] | None:
    """What a published count cell says about the true count (None: nothing, for "[c]")."""
    if text == WITHHELD:
        return None
    if text == SUPPRESSED:
        return (1, 7)
    if text in ("", "0"):  # "": no submission, which counts 0 in England's total
        return (0, 0)
    value = int(text)
    return (max(8, value - 2), value + 2)


def implied(cell: str, before: str, change: str) -> str:
    """The current cell as the attacker can read it: the cell itself, or previous + change."""
    if cell in (SUPPRESSED, WITHHELD) and re.fullmatch(r"-?\d+", change) and re.fullmatch(r"\d+", before):
        return str(int(before) + int(change))  # a numeric change beside a hidden cell: the defect we look for
    return cell


def pinned_cells(table: pd.DataFrame, previous: pd.DataFrame | None, measure: str) -> list[str]:
    """The "*" trusts of one measure whose true count the attacker narrows to a single value."""
    rows = dict(zip(table["org_code"], zip(table[measure], table[f"{measure}_change"])))  # plain values: fast
    england_cell, england_change = rows.pop(ENGLAND)
    before = dict(zip(previous["org_code"], previous[measure])) if previous is not None else {}
    cells = {code: implied(cell, before.get(code, ""), change) for code, (cell, change) in rows.items()}
    total = interval(implied(england_cell, before.get(ENGLAND, ""), england_change))
    bounds = {code: interval(cell) for code, cell in cells.items()}
    pinned = []
    for code, (cell, _) in rows.items():
        if cell != SUPPRESSED:
            continue
        low, high = bounds[code] if bounds[code] is not None else (1, 7)
        low, high = max(low, 1), min(high, 7)
        if total is not None:
            others_low = sum(b[0] for c, b in bounds.items() if c != code)
            others_high = sum(b[1] for c, b in bounds.items() if c != code)
            low, high = max(low, total[0] - others_high), min(high, total[1] - others_low)
        if low >= high:  # one value left (or none: the cells contradict each other, as bad)
            pinned.append(f"{code}: {low}..{high}")
    return pinned


def pinned_previous_cells(table: pd.DataFrame, previous: pd.DataFrame, measure: str) -> list[str]:
    """The previous month's "*" trusts the attacker reads back through this month: previous = current - change."""
    before = previous.set_index("org_code")[measure]
    pinned = []
    for code, cell, change in zip(table["org_code"], table[measure], table[f"{measure}_change"]):
        if before.get(code) == SUPPRESSED and re.fullmatch(r"\d+", cell) and re.fullmatch(r"-?\d+", change):
            value = int(cell) - int(change)
            low, high = (max(8, value - 2), value + 2) if value >= 10 and value % 5 == 0 else (value, value)
            if max(low, 1) >= min(high, 7):
                pinned.append(f"{code}: {value}")
    return pinned


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(english=st.one_of(st.lists(trusts, min_size=1, max_size=5), st.lists(trusts, min_size=1, max_size=24)),
       welsh=st.lists(trusts, max_size=3), status=st.sampled_from(["provisional", "final"]))
def test_no_suppressed_cell_can_be_pinned_from_two_published_months(english, welsh, status):
    """Over held trusts (published at an earlier version's counts), unusable ones (counted 0) and
    provisional months (no England change) as much as over ordinary ones."""
    rows = [(f"R{number:02d}", True, *trust) for number, trust in enumerate(english)]
    rows += [(f"7A{number}", False, *trust) for number, trust in enumerate(welsh)]
    previous_summary = summary("2024-01", [(code, is_english, before, [v[0] for v in values])
                                           for code, is_english, before, _, values, _ in rows])
    current_summary = summary("2024-02", [(code, is_english, now, [v[1] for v in values], state)
                                          for code, is_english, _, now, values, state in rows], status)
    previous = publish_month(previous_summary, None)
    current = publish_month(current_summary, previous_summary)

    for table in (previous, current):
        assert set(table["org_code"]) == {f"R{n:02d}" for n in range(len(english))} | {ENGLAND}  # no Welsh row
        for measure in MEASURES:
            assert table[measure].map(COUNT_CELL.fullmatch).all(), table[measure].tolist()  # nothing in 1..7
    for measure in MEASURES:
        assert pinned_cells(previous, None, measure) == []
        assert pinned_cells(current, previous, measure) == []
        assert pinned_previous_cells(current, previous, measure) == []
    # The published gate's own attacker (production code) agrees: every "*" keeps two or more values.
    now, then = current.set_index("org_code").to_dict("index"), previous.set_index("org_code").to_dict("index")
    assert {row["month_status"] for row in now.values()} == {status}
    if status == "provisional":
        assert all(now[ENGLAND][f"{m}_change"] == "" for m in MEASURES)
    unusable = [code for code, english, _, sent, _, state in rows if english and sent and state == "unusable"]
    assert all(now[code][m] == "" for code in unusable for m in MEASURES)
    for table, before in ((previous, None), (current, previous)):
        ranges = suppressed_cell_ranges(table, before)
        assert (ranges["lowest"] < ranges["highest"]).all()
        trust_cells = table.loc[table["org_code"] != ENGLAND, list(MEASURES)].to_numpy()
        assert len(ranges) == int((trust_cells == SUPPRESSED).sum())
    # current = previous + change, wherever both months are numbers: changes come from published cells
    # (England has no change while the month is provisional, asserted above).
    for code, row in now.items():
        if code in then and not (status == "provisional" and code == ENGLAND):
            for measure in MEASURES:
                if row[measure].isdigit() and then[code][measure].isdigit():
                    assert int(row[measure]) - int(then[code][measure]) == int(row[f"{measure}_change"]), (code, measure)


def test_the_oracle_finds_the_known_weakness_rule_r_closes():
    """The oracle must be able to fail: trusts [1, 8, 8] with England published as 15 (what plain
    suppress-then-round does) pin the "*" trust to 1; rule R withholds that England cell instead."""
    table = pd.DataFrame({"org_code": ["RA", "RB", "RC", ENGLAND], "patients": ["*", "10", "10", "15"],
                          "patients_change": ["", "", "", ""]})
    assert pinned_cells(table, None, "patients") == ["RA: 1..1"]
    rows = [("RA", True, True, [1, 1, 1, 1]), ("RB", True, True, [8, 8, 8, 8]), ("RC", True, True, [8, 8, 8, 8])]
    published = publish_month(summary("2024-02", rows), None)
    assert published.set_index("org_code").loc[ENGLAND, "patients"] == WITHHELD
    assert pinned_cells(published, None, "patients") == []
    # A change computed from raw counts beside a "*" would give the value away; the oracle reads it.
    leaky = table.assign(patients=["*", "10", "10", WITHHELD], patients_change=["-5", "", "", ""])
    before = pd.DataFrame({"org_code": ["RA", "RB", "RC", ENGLAND], "patients": ["10", "10", "10", "30"]})
    assert pinned_cells(leaky, before, "patients") == ["RA: 8..7"]


def test_the_published_gate_refuses_tables_that_pin_a_cell():
    """The published layer's second suite (published_disclosure) runs the attacker on the tables about
    to be released: a table that pins a '*' (England 15 over [*, 10, 10]) fails it, rule R's passes."""
    from sact_pipeline import quality, suites

    leaky = pd.DataFrame({"org_code": ["RA", "RB", "RC", ENGLAND], **{m: ["*", "10", "10", "15"] for m in MEASURES},
                          **{f"{m}_change": [""] * 4 for m in MEASURES}})
    ranges = suppressed_cell_ranges(leaky, None)
    assert ranges[["lowest", "highest"]].drop_duplicates().values.tolist() == [[1, 1]]
    outcome = quality.validate_frame("published_disclosure", suites.disclosure_expectations(), ranges)
    assert not outcome.success and "highest" in outcome.message()

    rows = [("RA", True, True, [1, 1, 1, 1]), ("RB", True, True, [8, 8, 8, 8]), ("RC", True, True, [8, 8, 8, 8])]
    safe = suppressed_cell_ranges(publish_month(summary("2024-02", rows), None), None)
    assert quality.validate_frame("published_disclosure", suites.disclosure_expectations(), safe).success

    # Changes computed from raw counts would give a previous '*' away (previous = current - change), and a
    # withheld trust cell (never rule R's) is read as "any count" rather than crashing the gate.
    before = pd.DataFrame({"org_code": ["RA", "RB", ENGLAND], **{m: ["*", "[c]", "30"] for m in MEASURES}})
    now = pd.DataFrame({"org_code": ["RA", "RB", ENGLAND], **{m: ["10", "20", "30"] for m in MEASURES},
                        **{f"{m}_change": ["5", "", "0"] for m in MEASURES}})
    assert pinned_previous_cells(now, before, "patients") == ["RA: 5"]
    leak = suppressed_cell_ranges(now, before)
    assert leak.loc[leak["measure"] == "patients", ["org_code", "lowest", "highest"]].values.tolist() == [
        ["RA (previous month)", 5, 5]]
    assert not quality.validate_frame("published_disclosure", suites.disclosure_expectations(), leak).success
