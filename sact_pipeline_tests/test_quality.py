"""sact_pipeline.quality on real GX (no mocks): each layer suite passes a good frame and names the
failing expectation with its unexpected count on a bad one; no row value ever reaches an outcome."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from sact_pipeline import quality as q
from sact_pipeline import suites
from sact_pipeline.measurements import Measurements
from sact_pipeline_tests.builders import CODE_LISTS, FAKE_NHS, clean_frame

SHA_A = "a" * 64
SHA_B = "0123456789abcdef" * 4
ITEMS = ("nhs_number", "regimen", "drug_name")
MEASURES = ("patients", "regimens", "cycles", "drug_administrations")
SUMMARY_COUNTS = (*MEASURES, "raw_rows", "versions_received")
CHANGES = tuple(f"{m}_change" for m in MEASURES)
ENGLISH = ("RAA", "RBB", "RCC")


def by_name(outcome: q.SuiteOutcome, name: str) -> q.ExpectationOutcome:
    matches = [o for o in outcome.outcomes if o.expectation == name]
    assert len(matches) == 1, [o.expectation for o in outcome.outcomes]
    return matches[0]


def assert_fails_with(outcome: q.SuiteOutcome, name: str, unexpected: int | None, evaluated: int | None = None):
    assert not outcome.success
    failing = by_name(outcome, name)
    assert not failing.success
    assert failing.unexpected == unexpected
    if evaluated is not None:
        assert failing.evaluated == evaluated
    assert name in [o.expectation for o in outcome.failed]
    lines = outcome.message().splitlines()
    line = next(line for line in lines if line.startswith(name + ":"))
    if unexpected is not None:
        assert f"{unexpected} unexpected of {failing.evaluated}" in line
    assert outcome.metadata()["failed_expectations"] == len(outcome.failed)


def assert_no_leak(outcome: q.SuiteOutcome, *values: str) -> None:
    rendered = [repr(outcome), outcome.message(), repr(outcome.metadata()), str(outcome.metadata())]
    for value in values:
        for text in rendered:
            assert value not in text
    # GX's own copy of the results is not kept either.
    assert q._engine().context.validation_results_store.list_keys() == []


# ---------------------------------------------------------------------------------------------- raw


def raw_frame(rows: int = 3) -> pd.DataFrame:
    return pd.DataFrame({
        "nhs_number": pd.Series([FAKE_NHS] * rows, dtype="str"),
        "regimen": ["FEC"] * rows,
        "drug_name": ["EPIRUBICIN"] * rows,
        "reporting_month": "2025-01",
        "trust_code": "RAA",
        "file_name": "RAA_202501_20250210120000.csv",
        "file_sha256": SHA_A,
        "submitted_at": pd.Timestamp("2025-02-10 12:00:00"),
        "row_number": range(1, rows + 1),
        "header_version": "v3",
    })


def test_raw_passes():
    outcome = q.validate_frame("raw", suites.raw_expectations(ITEMS), raw_frame())
    assert outcome.success, outcome.message()
    assert outcome.rows == 3
    assert "passed" in outcome.message()
    meta = outcome.metadata()
    assert meta["rows"] == 3 and meta["failed_expectations"] == 0
    assert meta["evaluated_expectations"] == len(outcome.outcomes) == len(suites.raw_expectations(ITEMS))
    assert meta["expect_table_row_count_to_be_between(1..) observed"] == "3"


def test_raw_fails_and_names_the_expectation():
    frame = raw_frame(4)
    frame.loc[1, "file_sha256"] = FAKE_NHS
    frame.loc[2, "file_sha256"] = SHA_A.upper()
    frame.loc[3, "row_number"] = 1  # (1, SHA_A) twice
    frame.loc[0, "header_version"] = "v4"
    outcome = q.validate_frame("raw", suites.raw_expectations(ITEMS), frame)
    assert_fails_with(outcome, "expect_column_values_to_match_regex(file_sha256)", 2, 4)
    assert_fails_with(outcome, "expect_compound_columns_to_be_unique(row_number, file_name, file_sha256)", 2, 4)
    assert_fails_with(outcome, "expect_column_values_to_be_in_set(header_version)", 1, 4)
    assert by_name(outcome, "expect_column_values_to_be_between(row_number, 1..)").success
    assert_no_leak(outcome, FAKE_NHS, "v4")


def test_raw_missing_columns_and_empty_frame():
    frame = raw_frame().drop(columns=["header_version", "drug_name"]).iloc[0:0]
    outcome = q.validate_frame("raw", suites.raw_expectations(ITEMS), frame)
    columns = by_name(outcome, "expect_table_columns_to_match_set(10 columns)")
    assert not columns.success
    assert columns.observed == "missing columns: drug_name, header_version"
    rows = by_name(outcome, "expect_table_row_count_to_be_between(1..)")
    assert not rows.success and rows.observed == "0"
    missing = by_name(outcome, "expect_column_values_to_be_in_set(header_version)")
    assert not missing.success and missing.observed == "error: column header_version does not exist"
    assert "expect_table_row_count_to_be_between(1..): observed 0" in outcome.message()


# -------------------------------------------------------------------------------------------- clean


def clean_suite(**kwargs):
    return suites.clean_expectations(CODE_LISTS, dt.date(2025, 1, 1), dt.date(2025, 1, 31), **kwargs)


def test_clean_passes():
    outcome = q.validate_frame("clean", clean_suite(), clean_frame())
    assert outcome.success, outcome.message()
    in_month = by_name(outcome, "expect_column_values_to_be_between(administration_date, 2025-01-01..2025-01-31, mostly=0)")
    assert in_month.unexpected == 0


def test_clean_fails_and_names_the_expectation():
    frame = clean_frame()
    frame.loc[0, "patient_key"] = FAKE_NHS
    frame.loc[1, "patient_key"] = pd.NA
    frame.loc[2, "intent_of_treatment"] = FAKE_NHS
    frame.loc[0, "age_at_regimen_start"] = 121
    frame.loc[1, "administration_date"] = pd.Timestamp("1989-12-31")
    frame.loc[2, "drug_name"] = None
    outcome = q.validate_frame("clean", clean_suite(today=dt.date(2025, 2, 10)), frame)
    assert_fails_with(outcome, "expect_column_values_to_match_regex(patient_key)", 1, 3)
    assert_fails_with(outcome, "expect_column_values_to_not_be_null(patient_key)", 1, 3)
    assert_fails_with(outcome, "expect_column_values_to_be_in_set(intent_of_treatment)", 1, 3)
    assert_fails_with(outcome, "expect_column_values_to_be_between(age_at_regimen_start, 0..120)", 1, 3)
    assert_fails_with(outcome, "expect_column_values_to_be_between(administration_date, 1990-01-01..2025-02-10)", 1)
    assert_fails_with(outcome, "expect_column_values_to_not_be_null(drug_name)", 1)
    # Informative only by default: out-of-month rows are counted, not failed.
    in_month = by_name(outcome, "expect_column_values_to_be_between(administration_date, 2025-01-01..2025-01-31, mostly=0)")
    assert in_month.success and in_month.unexpected == 1
    assert by_name(outcome, "expect_column_values_to_be_in_set(person_stated_gender_code)").success
    assert_no_leak(outcome, FAKE_NHS, "121", "1989")


def test_clean_dates_must_be_datetimes():
    frame = clean_frame()
    frame["start_date_of_cycle"] = frame["start_date_of_cycle"].dt.strftime("%Y-%m-%d")
    outcome = q.validate_frame("clean", clean_suite(in_month_mostly=None), frame)
    typed = by_name(outcome, "expect_column_values_to_be_in_type_list(start_date_of_cycle)")
    assert not typed.success and typed.unexpected is None
    assert typed.observed == "str"
    assert [o.expectation for o in outcome.failed] == [typed.expectation]


# ----------------------------------------------------------------------------------- reconciliation


def reconciliation_frame(raw: int = 100, clean: int = 90, quarantined: int = 6, duplicate: int = 3,
                         opted_out: int = 1) -> pd.DataFrame:
    accounted = clean + quarantined + duplicate + opted_out
    return pd.DataFrame([{
        "raw_rows": raw, "clean_rows": clean, "quarantined_rows": quarantined, "duplicate_rows": duplicate,
        "opted_out_rows": opted_out, "accounted_rows": accounted, "quarantine_share": quarantined / raw,
    }])


def test_reconciliation_passes():
    outcome = q.validate_frame("reconciliation", suites.reconciliation_expectations(0.1), reconciliation_frame())
    assert outcome.success, outcome.message()


def test_reconciliation_fails_and_names_the_expectation():
    frame = reconciliation_frame(raw=100, clean=80, quarantined=15)  # 99 accounted, 15% quarantined
    outcome = q.validate_frame("reconciliation", suites.reconciliation_expectations(0.1), frame)
    assert_fails_with(outcome, "expect_column_pair_values_to_be_equal(raw_rows, accounted_rows)", 1, 1)
    assert_fails_with(outcome, "expect_column_values_to_be_between(quarantine_share, 0..0.1)", 1, 1)
    assert_no_leak(outcome, "0.15", "99")


# ------------------------------------------------------------------------------------------ summary


def summary_frame() -> pd.DataFrame:
    frame = pd.DataFrame({
        "reporting_month": ["2025-01"] * 3,
        "org_code": ["RAA", "RBB", "RCC"],
        "submission_status": ["on_time", "late", "missing"],
        "patients": [10, 3, None],
        "regimens": [12, 3, None],
        "cycles": [20, 4, None],
        "drug_administrations": [55, 4, None],
        "raw_rows": [60, 4, None],
        "versions_received": [1, 2, None],
        "month_status": ["final"] * 3,
        "data_status": ["ok", "held", ""],
    })
    for column in SUMMARY_COUNTS:
        frame[column] = frame[column].astype("Int64")
    return frame


def test_summary_passes_with_missing_submissions():
    outcome = q.validate_frame("summary", suites.summary_expectations(SUMMARY_COUNTS), summary_frame())
    assert outcome.success, outcome.message()


def test_summary_fails_and_names_the_expectation():
    frame = summary_frame()
    frame.loc[0, "regimens"] = 9  # fewer regimens than patients
    frame.loc[1, "cycles"] = -1  # negative, and fewer cycles than regimens
    frame.loc[2, "org_code"] = "RAA"
    frame.loc[2, "submission_status"] = FAKE_NHS
    outcome = q.validate_frame("summary", suites.summary_expectations(SUMMARY_COUNTS), frame)
    assert_fails_with(outcome, "expect_column_pair_values_a_to_be_greater_than_b(regimens, patients)", 1, 3)
    assert_fails_with(outcome, "expect_column_pair_values_a_to_be_greater_than_b(cycles, regimens)", 1, 3)
    assert by_name(outcome, "expect_column_pair_values_a_to_be_greater_than_b(drug_administrations, cycles)").success
    assert_fails_with(outcome, "expect_column_values_to_be_between(cycles, 0..)", 1, 3)
    assert_fails_with(outcome, "expect_compound_columns_to_be_unique(reporting_month, org_code)", 2, 3)
    assert_fails_with(outcome, "expect_column_values_to_be_in_set(submission_status)", 1, 3)
    assert_no_leak(outcome, FAKE_NHS)


# ---------------------------------------------------------------------------------------- published


def published_frame() -> pd.DataFrame:
    rows = [
        # org_code, then (count, change) per measure
        ("RAA", "10", "15", "*", "[c]", "0", "-5", "1005", "5"),
        ("RBB", "0", "[c]", "25", "1005", "*", "[c]", "[c]", "0"),
        ("RCC", "", "", "", "", "", "", "", ""),
        ("ENGLAND", "20", "-20", "40", "-1010", "15", "*", "2010", "10"),
    ]
    columns = ["org_code", *(c for pair in zip(MEASURES, CHANGES) for c in pair)]
    frame = pd.DataFrame(rows, columns=columns).astype("str")
    return frame.assign(sact_version=["v3", "v4", "", ""],  # none usable for RCC; none on ENGLAND
                        month_status="provisional", data_status=["ok", "held", "unusable", ""])


def published_suite():
    return suites.published_expectations(MEASURES, CHANGES, ENGLISH)


def test_published_passes():
    outcome = q.validate_frame("published", published_suite(), published_frame())
    assert outcome.success, outcome.message()


@pytest.mark.parametrize("cell", ["1", "7", "12", "5", "-0", " 10", "10.0", FAKE_NHS])
def test_published_count_cells_follow_rule_r(cell):
    frame = published_frame()
    frame.loc[0, "cycles"] = cell
    outcome = q.validate_frame("published", published_suite(), frame)
    assert_fails_with(outcome, "expect_column_values_to_match_regex(cycles)", 1, 4)
    assert len(outcome.failed) == 1
    assert_no_leak(outcome, FAKE_NHS)


@pytest.mark.parametrize("version", ["v5", "V4", "4", " v3"])
def test_published_sact_version_is_v3_v4_or_empty(version):
    frame = published_frame()
    frame.loc[1, "sact_version"] = version
    outcome = q.validate_frame("published", published_suite(), frame)
    assert_fails_with(outcome, "expect_column_values_to_be_in_set(sact_version)", 1, 4)
    assert len(outcome.failed) == 1


def test_a_published_table_has_known_month_and_data_statuses():
    frame = published_frame()
    frame.loc[3, "month_status"] = "provisionally"
    frame.loc[0, "data_status"] = "fine"
    outcome = q.validate_frame("published", published_suite(), frame)
    assert_fails_with(outcome, "expect_column_values_to_be_in_set(month_status)", 1, 4)
    assert_fails_with(outcome, "expect_column_values_to_be_in_set(data_status)", 1, 4)
    assert len(outcome.failed) == 2


def test_published_fails_and_names_the_expectation():
    frame = published_frame()
    frame.loc[0, "regimens_change"] = "3"
    frame.loc[1, "regimens_change"] = FAKE_NHS
    frame.loc[3, "org_code"] = "W0123"  # no ENGLAND row, and a Welsh code
    frame.loc[2, "org_code"] = "RAA"
    outcome = q.validate_frame("published", published_suite(), frame)
    assert_fails_with(outcome, "expect_column_values_to_match_regex(regimens_change)", 2, 4)
    assert_fails_with(outcome, "expect_column_values_to_be_in_set(org_code)", 1, 4)
    assert_fails_with(outcome, "expect_column_values_to_be_unique(org_code)", 2, 4)
    england = by_name(outcome, "expect_column_distinct_values_to_contain_set(org_code)")
    assert not england.success and england.observed == "missing: ENGLAND"
    assert_no_leak(outcome, FAKE_NHS, "W0123")


# -------------------------------------------------------------------------------------- the wrapper


def test_same_suite_name_with_new_expectations_uses_the_new_ones():
    import great_expectations as gx

    frame = pd.DataFrame({"a": [1, 2, None], "b": [5, 6, 7]})
    first = q.validate_frame("replaced", [gx.expectations.ExpectColumnValuesToNotBeNull(column="a")], frame)
    assert [o.expectation for o in first.outcomes] == ["expect_column_values_to_not_be_null(a)"]
    assert not first.success

    second_suite = [
        gx.expectations.ExpectColumnValuesToBeBetween(column="b", min_value=0, max_value=6),
        gx.expectations.ExpectTableRowCountToEqual(value=3),
    ]
    second = q.validate_frame("replaced", second_suite, frame)
    assert [o.expectation for o in second.outcomes] == [
        "expect_column_values_to_be_between(b, 0..6)", "expect_table_row_count_to_equal(3)",
    ]
    assert second.failed[0].unexpected == 1
    # The caller's objects are copied, not bound to the suite: they can be used again anywhere.
    assert all(e.id is None for e in second_suite)
    again = q.validate_frame("another_name", second_suite, frame)
    assert [o.expectation for o in again.outcomes] == [o.expectation for o in second.outcomes]
    assert q._engine().context.suites.get("replaced").expectations[0].column == "b"


def test_duplicate_names_are_made_unique_and_metadata_is_flat():
    import great_expectations as gx

    frame = pd.DataFrame({"a": [1, 2, 3]})
    twice = [gx.expectations.ExpectColumnValuesToNotBeNull(column="a"),
             gx.expectations.ExpectColumnValuesToNotBeNull(column="a", mostly=1.0, description="again")]
    outcome = q.validate_frame("twice", twice, frame)
    assert [o.expectation for o in outcome.outcomes] == [
        "expect_column_values_to_not_be_null(a)", "expect_column_values_to_not_be_null(a)#2",
    ]
    assert all(isinstance(v, (int, float, str)) for v in outcome.metadata().values())


def test_empty_suite_is_refused():
    with pytest.raises(ValueError):
        q.validate_frame("empty", [], pd.DataFrame({"a": [1]}))


def test_between_columns_are_compared_vectorised_without_changing_the_result():
    # datetime64[s] and nullable Int64 are cast for GX (its per-value path is ~1 s per 500k rows);
    # a date outside the datetime64[ns] range keeps its dtype and is still counted.
    frame = clean_frame()
    frame.loc[1, "age_at_regimen_start"] = pd.NA
    frame.loc[2, "administration_date"] = pd.Timestamp("2300-01-01").as_unit("s")
    dtypes = frame.dtypes.copy()
    batch = q._vectorisable(frame, clean_suite())
    assert str(batch["age_at_regimen_start"].dtype) == "float64"
    assert str(batch["start_date_of_cycle"].dtype) == "datetime64[s]"  # not under a between expectation
    assert str(batch["administration_date"].dtype) == "datetime64[s]"  # 2300 does not fit in [ns]
    outcome = q.validate_frame("clean", clean_suite(today=dt.date(2025, 2, 10)), frame)
    assert (frame.dtypes == dtypes).all()
    assert [(o.expectation, o.unexpected) for o in outcome.failed] == [
        ("expect_column_values_to_be_between(administration_date, 1990-01-01..2025-02-10)", 1),
    ]
    assert by_name(outcome, "expect_column_values_to_be_between(age_at_regimen_start, 0..120)").evaluated == 3
    assert str(q._vectorisable(clean_frame(), clean_suite())["administration_date"].dtype) == "datetime64[ns]"


# ------------------------------------------------------------------ one run for many trust-months


def test_row_wise_suites_decompose_and_aggregates_do_not():
    ge = q.import_gx().expectations
    assert q.decomposes(suites.raw_expectations(ITEMS))
    assert q.decomposes(suites.raw_reconciliation_expectations())
    assert q.decomposes(suites.clean_expectations(CODE_LISTS, dt.date(2025, 1, 1), dt.date(2025, 1, 31)))
    assert q.decomposes(suites.reconciliation_expectations(0.1))
    # A pass of the whole says nothing of each part for these:
    assert not q.decomposes([ge.ExpectTableRowCountToBeBetween(min_value=1, max_value=10)])
    assert not q.decomposes([ge.ExpectColumnMeanToBeBetween(column="x", min_value=0)])
    assert not q.decomposes([ge.ExpectColumnValuesToNotBeNull(column="x", mostly=0.9)])


def test_parts_that_pass_together_take_one_run_and_a_failure_is_pinned_to_its_part():
    expectations = suites.reconciliation_expectations(0.1)
    good = [reconciliation_frame(), reconciliation_frame(raw=50, clean=45, quarantined=3, duplicate=1)]
    measured = Measurements()
    outcomes = q.validate_parts("reconciliation", expectations, good, measurements=measured)
    assert measured.suite_runs == 1
    assert [(o.success, o.rows) for o in outcomes] == [(True, 1), (True, 1)]
    assert {o.unexpected for o in outcomes[0].outcomes} <= {0, None}

    bad = reconciliation_frame(raw=100, clean=80, quarantined=15)
    measured = Measurements()
    outcomes = q.validate_parts("reconciliation", expectations, [good[0], bad, good[1]], measurements=measured)
    assert measured.suite_runs == 4  # together (fails), then each part on its own
    assert [o.success for o in outcomes] == [True, False, True]
    assert_fails_with(outcomes[1], "expect_column_values_to_be_between(quarantine_share, 0..0.1)", 1, 1)


def test_parts_with_different_columns_are_validated_one_by_one():
    """A column missing from one part would be hidden by the other parts' columns in a concatenation."""
    frames = [raw_frame(), raw_frame().drop(columns=["drug_name"])]
    measured = Measurements()
    outcomes = q.validate_parts("raw", suites.raw_expectations(ITEMS), frames, measurements=measured)
    assert measured.suite_runs == 2
    assert [o.success for o in outcomes] == [True, False]
