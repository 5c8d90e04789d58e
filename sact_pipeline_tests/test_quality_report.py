"""The internal data-quality report, built from frames made here, opened from disk in headless Chromium with
the network cut off. A screenshot goes to test-artefacts/ (or SACT_TEST_ARTEFACTS)."""

from __future__ import annotations

import math
from html import escape
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import pandas as pd
import pytest

from sact_pipeline.domain.counting import months_up_to
from sact_pipeline.domain.data_quality import pooled_items
from sact_pipeline.domain.quality_report import SCORE_TEXT, TREND_TEXT, quality_report_html, score_text
from sact_pipeline.domain.spec import SACT, V3, V4, Transition
from sact_pipeline_tests.browser import offline_page
from sact_pipeline_tests.deployment_harness import artefacts_dir

MONTH = "2026-08"  # v4 required from 2026-07
MONTHS = months_up_to(MONTH, 13)  # 2025-08 to 2026-08
NAN = float("nan")
FEEDBACK = {"RBV": "feedback/SACT_RBV_2026-08 feedback.csv", "R0A": "feedback/R0A.csv",
            "RR8": "feedback/RR8.csv"}
SWITCH = MONTHS[9]  # 2026-05: RR8's first month on v4
GROUP = "Administration_Timestamp_(Infusion) or Administration_Date_(Oral_Drug_Dispensed)"


def trusts_frame() -> pd.DataFrame:
    """RAJ sent a file with no rows to assess (no score); the others are scored. RR8 is on v4, whose score
    is over more items: the lowest score, but not the lowest core score (RBV's, on v3). R0A's sites sent
    both versions."""
    return pd.DataFrame({
        "org_code": ["RR8", "RAJ", "RBV", "R0A"],
        "org_name": ["Leeds Teaching Hospitals", "Mid and South Essex", "Royal Berkshire", "Manchester University"],
        "sact_version": ["v4", "v3", "v3", "v3,v4"],
        "score": [70.0, NAN, 71.26, 85.04],
        "core_score": [88.0, NAN, 72.0, 86.0],
        "rows": [2000, 0, 1234, 500],
        "quarantined_rows": [20, 0, 152, 0],
        "quarantined_share": [0.01, NAN, 152 / 1234, 0.0],
        "duplicate_rows": [3, 0, 7, 0],
        "invalid_values": [40, 0, 1500, 2],
        "out_of_month_rows": [0, 0, 12, 1],
        "other_trust_provider_rows": [5, 0, 0, 0],
        "feedback_file": [FEEDBACK["RR8"], "", FEEDBACK["RBV"], FEEDBACK["R0A"]],
    })


def trend_frame() -> pd.DataFrame:
    """Core scores. RR8 every month (and one before the window, not shown), the same core score on v3 and,
    from SWITCH, on v4: a flat line; RBV (v3) without 2025-12 and 2026-01; R0A from 2026-03 with a no-score
    row in 2026-05, on both versions this month; RAJ once before; RXX (no submission this month) twice,
    switching to v4 in 2026-07."""
    rows = [("RR8", "2025-07", 10.0, V3)]
    rows += [("RR8", m, 88.0, V3 if m < SWITCH else V4) for m in MONTHS]
    rows += [("RBV", m, 60.0 + n * 0.55, V3) for n, m in enumerate(MONTHS[:-1])
             if m not in ("2025-12", "2026-01")]
    rows += [("RBV", MONTH, 72.0, V3)]
    rows += [("R0A", m, NAN if m == "2026-05" else 83.0 + n, V3) for n, m in enumerate(MONTHS[7:-1])]
    rows += [("R0A", MONTH, 86.0, "v3,v4"), ("RAJ", "2026-06", 50.0, V3), ("RAJ", MONTH, NAN, V3)]
    rows += [("RXX", "2026-04", 77.7, V3), ("RXX", "2026-07", 78.8, V4)]
    return pd.DataFrame(rows, columns=["org_code", "reporting_month", "core_score", "sact_version"])


def items_frame() -> pd.DataFrame:
    """The month's items as the pipeline pools them (data_quality.pooled_items over the trust-months' item
    counts): v3 items over RAJ, RBV and R0A's v3 site; v4 items, named as v4 names them, over RR8 and R0A's
    v4 site."""
    counts = pd.DataFrame([
        (V3, "NHS_Number", "M", 1734, 1717, 1708),
        (V3, "Primary_Diagnosis", "R", 1734, 1517, 1214),
        (V3, "Consultant_GMC_Code", "R", 1734, 1734, 1734),  # scored in v3 only: not core
        (V3, "Diagnosis_Code_(SNOMED_CT)", "O", 1734, 433, 390),
        (V3, "Regimen_Modification_-_Dose_Reduction", "outcome", 1734, 0, 0),
        (V4, "NHS_Number", "M", 2000, 1990, 1990),
        (V4, "Treatment_Context", "R", 2000, 1500, 1200),  # new in v4: scored, not core
        (V4, "Administration_Timestamp_(Infusion)", "M", 2000, 1800, 1800),  # a member of the group below
        (V4, GROUP, "M", 2000, 2000, 1950),  # scored as one, as v3's Administration_Date (core)
    ], columns=["sact_version", "item", "obligation", "rows", "present", "valid"])
    return pooled_items(counts)


def findings_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "item": ["Primary_Diagnosis", "NHS_Number", "Administration_Date", "Primary_Diagnosis", "Regimen",
                 "SACT version"],
        "finding": ["not an ICD-10 code", "no usable patient identifier", "outside the reporting month",
                    "Primary_Diagnosis missing", "another trust is the provider",
                    "v3 after full v4 conformance (v4 only from 2026-07)"],
        "kind": ["invalid", "quarantined", "out_of_month", "quarantined", "other_trust", "file"],
        "rows": [1540, 30, 13, 142, 5, 2],
    })


def render(**changes) -> str:
    frames = {"trusts": trusts_frame(), "trend": trend_frame(), "items": items_frame(), "findings": findings_frame()}
    frames.update(changes)
    options = {"data_docs": changes.get("data_docs", "gx/data_docs/index.html")}
    options |= {"transition": changes["transition"]} if "transition" in changes else {}
    return quality_report_html(MONTH, frames.pop("trusts"), frames.pop("trend"), frames.pop("items"),
                               frames.pop("findings"), **options)


def one(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.1f}"


@pytest.fixture
def report(tmp_path) -> Path:
    path = tmp_path / "quality" / f"SACT_quality_{MONTH}.html"
    for relative in FEEDBACK.values():
        (path.parent / relative).parent.mkdir(parents=True, exist_ok=True)
        (path.parent / relative).write_text("row_number,reasons\n")
    path.write_text(render(), encoding="utf-8")
    return path


def test_the_quality_report_opens_offline_with_its_tables_and_chart(report):
    trend = trend_frame()
    shown = (trend.loc[trend["reporting_month"].isin(MONTHS)]
             .pivot(index="org_code", columns="reporting_month", values="core_score").reindex(columns=MONTHS))
    with offline_page(report.as_uri()) as (page, requests, errors):
        assert page.title() == f"SACT data quality: {MONTH}"
        assert page.locator("h1").inner_text() == f"SACT data quality: {MONTH}"
        assert "not for publication" in page.locator("h1 + p").inner_text()
        assert page.locator("h2").all_inner_texts() == [
            "Trusts by score", "Core score over the last 13 months",
            "Core scores by trust over the last 13 months", "Data items", "Findings", "How the score is made"]
        assert page.locator("a", has_text="Data Docs").get_attribute("href") == "gx/data_docs/index.html"
        summary = page.locator("h1 + p + p").inner_text()
        assert "Median trust score 71.3; lowest 70.0, highest 85.0; median core score 86.0." in summary
        assert "SACT version: 2 on v3, 1 on v3 and v4, 1 on v4." in summary

        # The trust table: worst score first (no score at all first), each trust's version, its score over
        # its own version's items and its core score, every measure as the contract gives it.
        trusts = page.locator("table.trusts tbody tr")
        assert trusts.count() == 4
        assert page.locator("table.trusts thead th[scope=col]").all_inner_texts()[:5] == [
            "Trust", "Code", "SACT version", "Score", "Core score"]
        assert page.locator("table.trusts thead th[scope=col]").count() == 14
        assert page.locator("table.trusts tbody th[scope=row]").all_inner_texts() == [
            "Mid and South Essex", "Leeds Teaching Hospitals", "Royal Berkshire", "Manchester University"]
        cells = [trusts.nth(n).locator("td").all_inner_texts() for n in range(4)]
        assert [row[0] for row in cells] == ["RAJ", "RR8", "RBV", "R0A"]
        assert cells[0][:6] == ["RAJ", "v3", "no score", "no score", "0", "0"]
        assert cells[0][6] == "no rows" and cells[0][-1] == "none"
        assert cells[1][1:8] == ["v4", "70.0", "88.0", "2,000", "20", "1.0%", "3"]
        assert cells[2][:-1] == [
            "RBV", "v3", "71.3", "72.0", "1,234", "152", "12.3%", "7", "1,500", "12", "0", "OK"]
        assert cells[3][1:7] == ["v3 and v4", "85.0", "86.0", "500", "0", "0.0%"]
        # Each feedback link resolves to the file beside the report, and names its trust for a screen reader.
        links = page.locator("table.trusts tbody a")
        assert links.count() == 3
        for n, code in enumerate(["RR8", "RBV", "R0A"]):
            href = links.nth(n).evaluate("a => a.href")
            assert href.startswith("file://")
            target = Path(url2pathname(urlparse(href).path))
            assert target == report.parent / FEEDBACK[code] and target.is_file()
        assert "for Royal Berkshire" in links.nth(1).text_content()

        # The trend is the core score, and the report says why, beside it.
        assert page.locator("#trend + p").inner_text() == TREND_TEXT
        assert "does not jump when it switches from v3 to v4" in TREND_TEXT

        # The trend grid: 13 consecutive month columns of core scores; a month without one says so, never
        # 0; the month a trust's version changes says so.
        heads = page.locator("table.grid thead th").all_inner_texts()
        assert heads == ["Trust", *MONTHS] and len(MONTHS) == 13
        grid = page.locator("table.grid tbody tr")
        assert grid.count() == 5  # the four trusts of the month, in the table's order, then RXX
        labels = page.locator("table.grid tbody th").all_inner_texts()
        assert [label.split("(")[-1][:3] for label in labels[:4]] == ["RAJ", "RR8", "RBV", "R0A"]
        assert labels[4].startswith("RXX")
        row = {code: grid.nth(n).locator("td").all_inner_texts()
               for n, code in enumerate(["RAJ", "RR8", "RBV", "R0A", "RXX"])}
        assert all(len(values) == 13 for values in row.values())
        switches = {("RR8", SWITCH): "v4", ("R0A", MONTH): "v3 and v4", ("RXX", "2026-07"): "v4"}
        for code, values in row.items():
            expected = [(one(shown.loc[code, m]) or "no data")
                        + (f" to {switches[code, m]}" if (code, m) in switches else "") for m in MONTHS]
            assert values == expected, code
        assert row["RR8"] == ["88.0"] * 9 + ["88.0 to v4"] + ["88.0"] * 3  # the switch: no jump
        assert row["RBV"][MONTHS.index("2025-12")] == row["RBV"][MONTHS.index("2026-01")] == "no data"
        assert row["R0A"][MONTHS.index("2026-05")] == "no data" and row["R0A"][:7] == ["no data"] * 7
        assert row["RXX"][-1] == "no data" and row["RAJ"][-1] == "no data"

        # The chart: the median line plus the month's trusts of lowest core score first (3 here: RBV, not
        # RR8 of the lowest score), a point per line and month with data, every value in its text alternative.
        chart = page.locator("figure.trend svg[role=img]")
        assert chart.count() == 1
        lines = chart.locator("g.line")
        assert [lines.nth(n).get_attribute("data-line") for n in range(lines.count())] == [
            "RBV", "R0A", "RR8", "median"]
        median = shown.median(axis=0, skipna=True)
        expected_points = {code: int(shown.loc[code].notna().sum()) for code in ("RBV", "R0A", "RR8")}
        expected_points["median"] = int(median.notna().sum())
        assert expected_points == {"RBV": 11, "R0A": 5, "RR8": 13, "median": 13}
        for n, key in enumerate(["RBV", "R0A", "RR8", "median"]):
            assert lines.nth(n).locator("circle").count() == expected_points[key], key
        assert chart.locator("circle").count() == sum(expected_points.values())
        # RR8 switched from v3 to v4 with the same core score: its line is flat, one unbroken path.
        rr8 = chart.locator('g.line[data-line="RR8"]')
        assert len(set(rr8.locator("circle").evaluate_all("cs => cs.map(c => c.getAttribute('cy'))"))) == 1
        path = rr8.locator("path").get_attribute("d")
        assert path.count("M") == 1 and len({point.split(",")[1] for point in path[1:].split(" L")}) == 1
        assert chart.get_attribute("aria-labelledby") == "trend-title trend-desc"
        assert "Core data-quality score" in chart.locator("title#trend-title").text_content()
        desc = chart.locator("desc").text_content()
        assert f"{MONTH}: 86.0 (of 3 trusts)" in desc  # the median of 88.0, 72.0 and 86.0
        for code, name in (("RBV", "Royal Berkshire"), ("R0A", "Manchester University"),
                           ("RR8", "Leeds Teaching Hospitals")):
            values = "; ".join(f"{m}: {one(shown.loc[code, m]) or 'no data'}" for m in MONTHS)
            assert f"{name} ({code}): {values}." in desc
        assert "Royal Berkshire (RBV): 2025-08: 60.0;" in desc and "2025-12: no data" in desc
        assert "RAJ" not in desc and "RXX" not in desc  # no score this month: not one of the lines
        assert "lowest core score" in page.locator("figure.trend figcaption").inner_text()

        # Items: a row group per version, never mixed; scored and core items marked in words; absent values
        # said, not left as 0.
        groups = page.locator("table.items tbody.version")
        assert [groups.nth(n).get_attribute("data-version") for n in range(groups.count())] == ["v3", "v4"]
        assert groups.nth(0).locator("th[scope=rowgroup]").inner_text() == (
            "SACT v3: 3 scored items, pooled over 3 trust(s)")  # RAJ, RBV and R0A's v3 site
        assert groups.nth(1).locator("th[scope=rowgroup]").inner_text() == (
            "SACT v4: 3 scored items, pooled over 2 trust(s)")  # RR8 and R0A's v4 site
        v3 = {r.locator("th").inner_text(): r.locator("td").all_inner_texts()
              for r in groups.nth(0).locator("tr:has(td)").all()}
        v4 = {r.locator("th").inner_text(): r.locator("td").all_inner_texts()
              for r in groups.nth(1).locator("tr:has(td)").all()}
        assert list(v3) == ["NHS_Number", "Primary_Diagnosis", "Consultant_GMC_Code",
                            "Diagnosis_Code_(SNOMED_CT)", "Regimen_Modification_-_Dose_Reduction"]
        assert list(v4) == ["NHS_Number", "Treatment_Context", "Administration_Timestamp_(Infusion)", GROUP]
        assert v3["NHS_Number"] == ["Mandatory", "Yes", "Yes", "1,734", "99.0%", "99.5%", "98.5"]
        assert v3["Consultant_GMC_Code"][:3] == ["Required", "Yes", "No"]  # scored, but only in v3
        assert v3["Regimen_Modification_-_Dose_Reduction"] == [
            "Outcome", "No", "No", "1,734", "0.0%", "no values", "0.0"]  # shown, though not in the score
        assert v4["NHS_Number"] == ["Mandatory", "Yes", "Yes", "2,000", "99.5%", "100.0%", "99.5"]
        assert v4["Treatment_Context"][:3] == ["Required", "Yes", "No"]
        assert v4[GROUP][:3] == ["Mandatory", "Yes", "Yes"]  # v4's administration date: core
        assert v4["Administration_Timestamp_(Infusion)"][1:3] == ["No", "No"]  # scored in its group

        # Findings: a row group per kind, most rows first within each; a finding on a whole file is its own.
        groups = page.locator("table.findings tbody.kind")
        assert groups.count() == 5
        assert [groups.nth(n).locator("th").inner_text() for n in range(5)] == [
            "Quarantined rows (172 in all)", "Invalid values (1,540 in all)",
            "Rows outside the reporting month (13 in all)", "Rows with another trust as provider (5 in all)",
            "File findings (2 files)"]
        quarantined = groups.first.locator("tr:has(td)")
        assert [quarantined.nth(n).locator("td").all_inner_texts() for n in range(2)] == [
            ["Primary_Diagnosis", "Primary_Diagnosis missing", "142"],
            ["NHS_Number", "no usable patient identifier", "30"]]
        assert groups.nth(4).locator("td").all_inner_texts() == [
            "SACT version", "v3 after full v4 conformance (v4 only from 2026-07)", "2"]
        assert page.locator("#score + p").inner_text() == SCORE_TEXT

        shot = artefacts_dir() / f"quality-report-{MONTH}.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        page.emulate_media(media="print")
        assert page.locator("svg[role=img] circle").count() == sum(expected_points.values())
    assert requests == [report.as_uri()]  # the file itself, nothing fetched: no script, font or image
    assert errors == []


def test_how_the_score_is_made_reads_plainly_and_follows_the_settings():
    """The numbers of items from the data-set table, the dates from the transition the report is given."""
    assert f"{len(SACT.version(V3).measures)} in v3, {len(SACT.version(V4).measures)} in v4" in SCORE_TEXT
    assert f"the {len(SACT.core_measures)} items both versions score" in SCORE_TEXT
    assert "accepted from April 2026 and required from July 2026" in SCORE_TEXT
    assert "listed under File findings" in SCORE_TEXT
    for hack in ("ITEM_WEIGHTS", "measures", "len("):
        assert hack not in SCORE_TEXT
    later = Transition(v4_from="2026-05", v4_only_from="2026-10")
    html = render(transition=later)
    assert escape(score_text(later)) in html and "required from October 2026" in html
    assert escape(SCORE_TEXT) not in html


def test_every_text_value_is_escaped():
    hostile = "<script>alert(1)</script>"
    trusts = trusts_frame()
    trusts.loc[trusts["org_code"] == "RBV", "org_name"] = hostile
    trusts.loc[trusts["org_code"] == "RR8", "feedback_file"] = 'feedback/a"b<c>.csv'
    trusts.loc[trusts["org_code"] == "R0A", "feedback_file"] = "javascript:alert(1)"
    trusts.loc[trusts["org_code"] == "R0A", "sact_version"] = "<u>v9</u>"
    trend = trend_frame()
    switch = (trend["org_code"] == "RXX") & (trend["reporting_month"] == "2026-07")
    trend.loc[switch, "sact_version"] = "<u>v8</u>"
    items = items_frame()
    items.loc[0, "item"] = "A&B<i>"
    items.loc[1, "sact_version"] = '"><u>v7'
    findings = findings_frame()
    findings.loc[0, "finding"] = "<img src=x onerror=alert(1)>"
    findings.loc[1, "kind"] = "<b>new kind</b>"
    html = render(trusts=trusts, trend=trend, items=items, findings=findings,
                  data_docs='"><script>x</script>')
    assert "<script" not in html and "<img" not in html and "<i>" not in html and "<b>" not in html
    assert "<u>" not in html and "&lt;u&gt;v9&lt;/u&gt;" in html and "to &lt;u&gt;v8&lt;/u&gt;" in html
    assert 'data-version="&quot;&gt;&lt;u&gt;v7"' in html  # an unknown version: a row group of its own
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # in the table, the grid, the chart's lines and desc
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 4
    assert "A&amp;B&lt;i&gt;" in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&lt;b&gt;new kind&lt;/b&gt;" in html
    assert 'href="javascript:' not in html and 'href="javascript%3Aalert%281%29"' in html  # stays a relative path
    assert 'href="feedback/a%22b%3Cc%3E.csv"' in html
    assert 'href="%22%3E%3Cscript%3Ex%3C/script%3E"' in html


def test_a_missing_column_is_named():
    with pytest.raises(ValueError, match="trusts lacks column.*feedback_file"):
        render(trusts=trusts_frame().drop(columns=["feedback_file"]))


def test_no_data_docs_and_no_findings():
    html = render(findings=findings_frame().iloc[0:0], data_docs=None)
    assert "Data Docs" not in html and "No findings." in html


def test_the_quality_report_of_a_real_switch_to_v4(switched):
    """Through the whole pipeline: RR8 sent v3 in May 2026 and v4 in July, equally complete. Its score
    changes with the version's items, its core score (the trend) does not; RBV's v3 file for July, after
    full v4 conformance, is a file finding."""
    month = "2026-07"
    paths = switched.quality_report_paths(month)
    table = pd.read_csv(paths["table"], dtype={"org_code": str}).set_index("org_code")
    before = pd.read_csv(switched.quality_report_paths("2026-05")["table"], dtype={"org_code": str})
    before = before.set_index("org_code")
    assert table["sact_version"].to_dict() == {"RAJ": "v4", "RBV": "v3", "RR8": "v4"}
    assert before.loc["RR8", "sact_version"] == "v3"
    assert before.loc["RR8", "score"] != table.loc["RR8", "score"]  # over v3's items, then over v4's
    assert before.loc["RR8", "core_score"] == table.loc["RR8", "core_score"]
    trend = pd.read_csv(paths["trend"], dtype={"org_code": str}).set_index("org_code")
    assert trend.loc["RR8", "2026-05"] == trend.loc["RR8", "2026-07"] == table.loc["RR8", "core_score"]

    with offline_page(paths["html"].as_uri()) as (page, requests, errors):
        rows = page.locator("table.trusts tbody tr")
        cells = [rows.nth(n).locator("td").all_inner_texts() for n in range(rows.count())]
        versions = {row[0]: row[1] for row in cells}
        assert versions == {"RAJ": "v4", "RBV": "v3", "RR8": "v4"}
        rr8 = page.locator("table.grid tbody tr", has_text="(RR8)").locator("td").all_inner_texts()
        core = f"{table.loc['RR8', 'core_score']:.1f}"
        assert rr8[-3:] == [core, "no data", f"{core} to v4"]  # May on v3, no June, July on v4: flat
        cy = page.locator('figure.trend g.line[data-line="RR8"] circle').evaluate_all(
            "cs => cs.map(c => c.getAttribute('cy'))")
        assert len(cy) == 2 and cy[0] == cy[1]
        groups = page.locator("table.items tbody.version")
        assert [groups.nth(n).get_attribute("data-version") for n in range(groups.count())] == ["v3", "v4"]
        heads = [groups.nth(n).locator("th[scope=rowgroup]").inner_text() for n in range(2)]
        assert "pooled over 1 trust(s)" in heads[0] and "pooled over 2 trust(s)" in heads[1]  # RBV; RAJ, RR8
        assert "Administration_Date" in groups.nth(0).inner_text()
        assert "Administration_Timestamp_(Infusion)" in groups.nth(1).inner_text()
        assert "Administration_Timestamp_(Infusion)" not in groups.nth(0).inner_text()
        file = page.locator("table.findings tbody.kind", has_text="File findings")
        assert file.locator("th").inner_text() == "File findings (1 file)"
        assert file.locator("td").all_inner_texts() == [
            "SACT version", "v3 after full v4 conformance (v4 only from 2026-07)", "1"]
    assert requests == [paths["html"].as_uri()]
    assert errors == []
