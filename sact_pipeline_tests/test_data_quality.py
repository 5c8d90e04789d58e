"""Data quality per trust-month: item completeness and validity, findings by reason, the score, the feedback
file and the month's internal report, recovered exactly from generated files with known injected defects.

The expected counts come from the generator's own record of what it injected into each file
(synthetic.FileDefects), and the feedback file is checked against the file on disk, read with the csv
module: the row it names really has the defect, and none of the row's identifiers is in it.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import numpy as np
import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance

from sact_pipeline.cli import refresh
from sact_pipeline.domain import data_quality as dq
from sact_pipeline.domain import spec
from sact_pipeline.domain.spec import SACT, V3
from sact_pipeline.synthetic import DefectRates, generate_submissions
from sact_pipeline.layers import Pipeline
from sact_pipeline.settings import Settings
from sact_pipeline.tables import quality_findings, quality_items, quality_trust_months
from sact_pipeline_tests.builders import patients, write_submission
from sact_pipeline_tests.support import TEST_KEY

V3_ITEMS = SACT.version(V3).items
HEADER = {item.name: item.header(V3) for item in V3_ITEMS}
NO_IDENTIFIER = "no usable patient identifier (no valid NHS_Number and no Local_Patient_Identifier)"
# synthetic.MANDATORY_DEFECT_KINDS -> (item, quarantine reason, items it leaves empty or invalid)
MANDATORY_KINDS = {
    "regimen": ("Regimen", "Regimen missing", {"Regimen": "missing"}),
    "drug_name": ("Drug_Name", "Drug_Name missing", {"Drug_Name": "missing"}),
    "start_date_of_cycle": ("Start_Date_Of_Cycle", "Start_Date_Of_Cycle missing", {"Start_Date_Of_Cycle": "missing"}),
    "administration_date": ("Administration_Date", "Administration_Date is not a valid ccyy-mm-dd date",
                            {"Administration_Date": "invalid"}),
    "diagnosis": ("Primary_Diagnosis", "Primary_Diagnosis and Morphology_ICD-O both missing",
                  {"Primary_Diagnosis": "missing", "Morphology_ICD-O": "missing"}),
    "patient_identifier": ("NHS_Number", NO_IDENTIFIER, {"NHS_Number": "missing", "Local_Patient_Identifier": "missing"}),
}
RATES = DefectRates(invalid_nhs_number=0.03, missing_mandatory=0.04, duplicate_rows=0.02, missing_required=0.08,
                    out_of_month=0.02, other_trust_provider=0.02)


@pytest.fixture(scope="module")
def assessed(tmp_path_factory):
    """Three trusts over two months with every kind of defect, refreshed end to end (SQLite warehouse)."""
    home = tmp_path_factory.mktemp("dq")
    settings = Settings.from_env(env={}, home=str(home / "sact"), first_month="2025-01")
    files = generate_submissions(settings.landing_dir, trusts=3, months=2, end_month="2025-06",
                                 patients_per_trust=150, defects=RATES, seed=11)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SACT_PSEUDONYMISATION_KEY", TEST_KEY)
        report = refresh(settings, log=lambda line: None)
    assert report.ok, report
    # The version in use per trust-month is the latest one submitted.
    in_use = {}
    for generated in files:
        key = (generated.reporting_month, generated.org_code)
        if key not in in_use or generated.submitted_at > in_use[key].submitted_at:
            in_use[key] = generated
    return settings, in_use


def expected_items(defects) -> dict[str, tuple[int, int]]:
    """(missing, invalid) per item header that the injected defects leave, all others (0, 0)."""
    expected = {header: [0, 0] for header in HEADER.values()}
    for kind, count in defects.missing_mandatory_by_kind:
        for header, how in MANDATORY_KINDS[kind][2].items():
            expected[header][0 if how == "missing" else 1] += count
    expected["NHS_Number"][1] += defects.invalid_nhs_number
    for column, blank, bad_code in defects.missing_required_by_item:
        expected[HEADER[column]][0] += blank
        expected[HEADER[column]][1] += bad_code
    return {header: tuple(counts) for header, counts in expected.items()}


def test_every_injected_defect_is_recovered_per_item_and_reason(assessed):
    settings, in_use = assessed
    pipeline = Pipeline(settings)
    items = pipeline.warehouse.read(quality_items)
    findings = pipeline.warehouse.read(quality_findings)
    trust_months = pipeline.warehouse.read(quality_trust_months).set_index(["reporting_month", "trust_code"])
    assert set(trust_months.index) == set(in_use)  # every trust-month with a file, and none without
    checked_kinds = set()
    for (month, trust), generated in in_use.items():
        defects = generated.defects
        assessed_rows = generated.rows - defects.duplicate_rows
        record = trust_months.loc[(month, trust)]
        assert (record["assessed_rows"], record["quarantined_rows"], record["duplicate_rows"]) == (
            assessed_rows, defects.missing_mandatory, defects.duplicate_rows)
        assert record["out_of_month_rows"] == defects.out_of_month
        assert record["other_trust_provider_rows"] == defects.other_trust_provider

        # Every item: rows missing it and rows holding an invalid value, exactly as injected.
        mine = items.loc[(items["reporting_month"] == month) & (items["trust_code"] == trust)].set_index("item")
        assert len(mine) == 44 and (mine["rows"] == assessed_rows).all()
        expected = expected_items(defects)
        for item in V3_ITEMS:
            missing, invalid = expected[item.header(V3)]
            got = mine.loc[item.header(V3)]
            if item.obligation(V3) in dq.SCORED_OBLIGATIONS:  # optional and outcome items are often left empty
                assert assessed_rows - got["present"] == missing, (month, trust, item.header(V3))
            assert got["present"] - got["valid"] == invalid, (month, trust, item.header(V3))

        # Findings by reason: quarantine reasons per mandatory kind, invalid values per item, the others.
        reasons = findings.loc[(findings["reporting_month"] == month) & (findings["trust_code"] == trust)]
        got = {(k, i, f): n for k, i, f, n in reasons[["kind", "item", "finding", "rows"]].itertuples(index=False)}
        want = {}
        for kind, count in defects.missing_mandatory_by_kind:
            if count:
                item, reason, _ = MANDATORY_KINDS[kind]
                want[(dq.QUARANTINED, item, reason)] = count
        if defects.invalid_nhs_number:
            want[(dq.INVALID, "NHS_Number", f"NHS_Number is not {spec.NHS_NUMBER_RULE}")] = defects.invalid_nhs_number
        for column, _, bad_code in defects.missing_required_by_item:
            if bad_code:
                codes = ", ".join(SACT.by_name[column].codes)
                want[(dq.INVALID, HEADER[column], f"{HEADER[column]} is not one of {codes}")] = bad_code
        if defects.out_of_month:
            want[(dq.OUT_OF_MONTH, "Administration_Date",
                  f"Administration_Date outside the reporting month {month}")] = defects.out_of_month
        other = [key for key in got if key[0] == dq.OTHER_TRUST]
        assert sum(got[key] for key in other) == defects.other_trust_provider
        assert {key: n for key, n in got.items() if key[0] != dq.OTHER_TRUST} == want, (month, trust)
        checked_kinds |= {kind for kind, _, _ in got}

        # The score: 100 x the mean share of valid values over the mandatory and required items.
        scored = [i.header(V3) for i in V3_ITEMS if i.obligation(V3) in dq.SCORED_OBLIGATIONS]
        shares = [(assessed_rows - sum(expected[h])) / assessed_rows for h in scored]
        assert record["score"] == pytest.approx(100 * float(np.mean(shares)))
    # The data really had every kind of row finding (file findings come from v3 after v4 conformance:
    # tested on a mixed landing zone below).
    assert checked_kinds == set(dq.FINDING_KINDS) - {dq.FILE}


def test_the_feedback_file_names_each_defective_row_and_no_identifier(assessed):
    settings, in_use = assessed
    pipeline = Pipeline(settings)
    for (month, trust), generated in in_use.items():
        path = pipeline.feedback_path(month, trust)
        assert path == settings.output_dir / month / "feedback" / f"{trust}_{month}.csv"
        feedback = pd.read_csv(path, dtype=str, keep_default_na=False)
        assert list(feedback.columns) == list(dq.FEEDBACK_COLUMNS)
        defects = generated.defects
        assert len(feedback) == (defects.invalid_nhs_number + defects.missing_mandatory + defects.out_of_month
                                 + defects.other_trust_provider
                                 + sum(bad for _, _, bad in defects.missing_required_by_item))
        assert set(feedback["file_name"]) <= {generated.path.name}
        # The row each line names, read from the file on disk: the item really is empty or invalid there.
        text = generated.path.read_bytes().decode(generated.encoding)
        rows = list(csv.DictReader(io.StringIO(text)))
        for line in feedback.itertuples(index=False):
            row = rows[int(line.row_number) - 1]  # row 1 is the first row after the header
            value = row[line.item].strip()
            if line.finding.endswith("missing") or line.finding == NO_IDENTIFIER:
                assert value == "", line
            elif "is not" in line.finding:
                assert value != "" and (line.item != "NHS_Number" or len(value) == 10), line
            assert line.outcome.startswith("quarantined" if "missing" in line.finding or "ccyy" in line.finding
                                           or line.finding == NO_IDENTIFIER else "kept"), line
        # No identifier of any row of the file is in its feedback.
        written = path.read_text()
        for row in rows:
            for column in ("NHS_Number", "Local_Patient_Identifier", "Person_Family_Name", "Patient_Postcode",
                           "Date_Of_Birth"):
                if row[column].strip():
                    assert row[column].strip() not in written, column


def test_the_month_report_table_trend_and_metadata(assessed):
    settings, in_use = assessed
    pipeline = Pipeline(settings)
    for month in sorted({m for m, _ in in_use}):
        paths = pipeline.quality_report_paths(month)
        table = pd.read_csv(paths["table"], dtype={"org_code": str})
        assert sorted(table["org_code"]) == sorted(t for m, t in in_use if m == month)
        assert (table["assessed_rows"] == table["clean_rows"] + table["quarantined_rows"]).all()
        trend = pd.read_csv(paths["trend"])
        assert list(trend.columns[2:]) == [f"{y}-{m:02d}" for y, m in _thirteen_months(month)]
        html = paths["html"].read_text()
        assert f"SACT data quality: {month}" in html and "Velindre".upper() in html.upper()
        for org in table["org_code"]:  # each trust's feedback link resolves beside the report
            link = table.loc[table["org_code"] == org, "feedback_file"].iloc[0]
            assert (paths["html"].parent / link).resolve() == pipeline.feedback_path(month, org).resolve()

    # Numbers on every materialisation, so the Dagster UI plots them across partitions.
    with DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        events = instance.fetch_materializations(AssetKey("trust_month_data_quality"), limit=100).records
        assert len(events) == len(in_use)
        for event in events:
            metadata = event.asset_materialization.metadata
            for key in ("score", "quarantined_share"):
                assert isinstance(metadata[key].value, float), key
            for key in ("assessed_rows", "quarantined_rows", "invalid_values", "feedback_rows"):
                assert isinstance(metadata[key].value, int), key
            # A link to the GX Data Docs page of the suite run that gated it, built offline-ready.
            page = Path(url2pathname(urlparse(metadata["data_docs trust_month_data_quality"].value).path))
            assert page.is_file() and page.is_relative_to(settings.output_dir / "data_docs")
            assert not re.search(r'src="https?://|<link[^>]*href="https?://', page.read_text())  # nothing fetched
        report = instance.fetch_materializations(AssetKey("data_quality_report"), limit=10).records
        assert {r.asset_materialization.partition[:7] for r in report} == {m for m, _ in in_use}


def _thirteen_months(month: str):
    year, number = int(month[:4]), int(month[5:])
    for back in range(12, -1, -1):
        total = year * 12 + number - 1 - back
        yield total // 12, total % 12 + 1


# --- the rules, case by case ----------------------------------------------------------------------------

VALIDITY_CASES = [  # (column, valid values, invalid values)
    ("patient_postcode", ["LS1 4AP", "ls14ap", "SW1A 1AA"], ["LS1", "12345", "LS1 4AP X"]),
    ("consultant_gmc_code", ["C1234567", "1234567"], ["C12345678", "C-12345"]),
    ("organisation_identifier_code_of_provider", ["RR8", "RR801", "G6V2S"], ["RR", "RR8012", "R R8"]),
    ("primary_diagnosis", ["C50.9", "C509", "C50", "C50X"], ["50.9", "CC50", "C5"]),
    ("morphology_icd_o", ["8500/3", "M85003"], ["850/3", "cancer"]),
    ("height_at_start_of_regimen", ["1.65", "2", "1.7"], ["165", "1.655", "1,65"]),
    ("weight_at_start_of_regimen", ["72.5", "120", "68.125"], ["1200", "72.5555", "seventy"]),
    ("cycle_number", ["1", "12"], ["1.5", "-1", "one"]),
    ("actual_dose_per_administration", ["100", "0.5", ".5"], ["100mg", "1,000"]),
    ("unit_of_measurement_snomed_ct_dm_d", ["258684004"], ["mg", "12345"]),
    ("person_family_name", ["O’Neill", "Siân"], ["x" * 36]),
    ("intent_of_treatment", ["01", "99"], ["06", "1x"]),
    ("person_stated_gender_code", ["1", "X"], ["3", "M"]),
]


@pytest.mark.parametrize("column, good, bad", VALIDITY_CASES, ids=[c[0] for c in VALIDITY_CASES])
def test_each_item_rule_accepts_and_rejects(column, good, bad):
    values = good + bad + [""]
    version = SACT.version(V3)
    items = pd.DataFrame({c: [""] * len(values) for c in version.columns})
    items[column] = values
    dates = {i.name: pd.Series(pd.NaT, index=items.index, dtype="datetime64[s]")
             for i in version.items if i.check == "date"}
    checks = dq.check_items(items, version, dates=dates, nhs_valid=np.zeros(len(values), dtype=bool))
    header = HEADER[column]
    assert checks.present[header].tolist() == [True] * (len(good) + len(bad)) + [False]
    assert checks.valid[header].tolist() == [True] * len(good) + [False] * len(bad) + [False]
    findings = dq.invalid_findings(checks, version, pd.Series(range(1, len(values) + 1)))
    mine = findings.loc[findings["item"] == header]
    assert mine["row_number"].tolist() == list(range(len(good) + 1, len(good) + len(bad) + 1))
    assert set(mine["finding"]) == {f"{header} is not {SACT.by_name[column].rule}"}  # the rule, never the value


def test_the_score_weighs_every_mandatory_and_required_item_equally():
    rows = 100
    quality = pd.DataFrame({"item": [i.header(V3) for i in V3_ITEMS],
                            "obligation": [i.obligation(V3) for i in V3_ITEMS],
                            "rows": rows, "present": rows, "valid": rows, "sact_version": V3})
    quality.loc[quality["item"] == "Regimen", "valid"] = 50  # mandatory: half valid
    quality.loc[quality["item"] == "DM+D", "present"] = 0  # optional: not in the score
    scores = dq.item_scores(quality)
    scored = int(scores["scored"].sum())
    assert scored == sum(i.obligation(V3) in ("M", "R") for i in V3_ITEMS) == 35
    assert dq.overall_score(scores) == pytest.approx(100 * (scored - 0.5) / scored)
    assert dq.overall_score(dq.item_scores(quality.assign(rows=0, present=0, valid=0))) is None


def test_a_failed_assessment_holds_nothing_back_and_is_not_retried(settings, monkeypatch):
    """A trust-month whose data-quality suite fails keeps its last good assessment (none here), fails its
    check, and waits for a new file version: the month is still published and the next refresh, like the
    sensor, has nothing to do."""
    from sact_pipeline import quality, suites

    write_submission(settings.landing_dir / "SACT_RR8_202401_20240210093000.csv", patients("A", 10))
    write_submission(settings.landing_dir / "SACT_RBV_202401_20240210093000.csv", patients("B", 20))
    suite = suites.data_quality_expectations

    def stricter(items):  # a real GX expectation that RBV's 20 assessed rows break
        ge = quality.import_gx().expectations
        return [*suite(items), ge.ExpectColumnValuesToBeBetween(column="assessed_rows", max_value=15)]

    monkeypatch.setattr(suites, "data_quality_expectations", stricter)
    report = refresh(settings, log=lambda line: None)
    assert [f for f in report.failures if "trust_month_data_quality 2024-01 RBV" in f], report.failures
    assert report.months == ["2024-01"]  # published all the same
    pipeline = Pipeline(settings)
    assert pipeline.output_paths("2024-01")[0].exists()
    assessed = pipeline.warehouse.read(quality_trust_months)
    assert assessed["trust_code"].tolist() == ["RR8"] and not pipeline.feedback_path("2024-01", "RBV").exists()
    assert pipeline.status.affected_trust_months() == [] and pipeline.status.held_trust_months() == {}
    again = refresh(settings, log=lambda line: None)
    assert (again.trust_months, again.months, again.failures) == (0, [], [])
    table = pd.read_csv(pipeline.quality_report_paths("2024-01")["table"], dtype=str)
    assert table["org_code"].tolist() == ["RR8"]
