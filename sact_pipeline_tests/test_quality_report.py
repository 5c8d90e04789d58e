"""The internal data-quality report, built from frames made here, opened from disk in headless Chromium with
the network cut off. A screenshot goes to test-artefacts/ (or SACT_TEST_ARTEFACTS)."""

from __future__ import annotations

import math
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import pandas as pd
import pytest

from sact_pipeline.domain.counting import months_up_to
from sact_pipeline.domain.quality_report import SCORE_TEXT, quality_report_html
from sact_pipeline_tests.deployment_harness import artefacts_dir
from sact_pipeline_tests.test_report_browser import offline_page

MONTH = "2024-02"
MONTHS = months_up_to(MONTH, 13)
NAN = float("nan")
FEEDBACK = {"RBV": "feedback/SACT_RBV_2024-02 feedback.csv", "R0A": "feedback/R0A.csv", "RR8": "feedback/RR8.csv"}


def trusts_frame() -> pd.DataFrame:
    """RAJ sent a file with no rows to assess (no score); the others are scored, RBV lowest."""
    return pd.DataFrame({
        "org_code": ["RR8", "RAJ", "RBV", "R0A"],
        "org_name": ["Leeds Teaching Hospitals", "Mid and South Essex", "Royal Berkshire", "Manchester University"],
        "score": [92.5, NAN, 71.26, 85.04],
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
    """RR8 every month (and one before the window, not shown); RBV without 2023-06 and 2023-07; R0A from
    2023-09 with a no-score row in 2023-11; RAJ once before; RXX (no submission this month) twice."""
    rows = [("RR8", "2023-01", 10.0)]
    rows += [("RR8", m, 80.0 + n) for n, m in enumerate(MONTHS[:-1])] + [("RR8", MONTH, 92.5)]
    rows += [("RBV", m, 60.0 + n * 0.55) for n, m in enumerate(MONTHS[:-1]) if m not in ("2023-06", "2023-07")]
    rows += [("RBV", MONTH, 71.26)]
    rows += [("R0A", m, NAN if m == "2023-11" else 83.0 + n) for n, m in enumerate(MONTHS[7:-1])]
    rows += [("R0A", MONTH, 85.04), ("RAJ", "2023-12", 50.0), ("RAJ", MONTH, NAN)]
    rows += [("RXX", "2023-10", 77.7), ("RXX", "2024-01", 78.8)]
    return pd.DataFrame(rows, columns=["org_code", "reporting_month", "score"])


def items_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "item": ["NHS_Number", "Primary_Diagnosis", "Height_At_Start_Of_Regimen", "Date_Of_Death"],
        "obligation": ["M", "R", "O", "outcome"],
        "rows": [3734, 3734, 3734, 3734],
        "completeness": [0.99, 0.875, 0.25, 0.0],
        "validity": [0.995, 0.8, 0.9, NAN],
        "item_score": [0.985, 0.7, NAN, NAN],
        "scored": [True, True, False, False],
    })


def findings_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "item": ["Primary_Diagnosis", "NHS_Number", "Administration_Date", "Primary_Diagnosis", "Regimen"],
        "finding": ["not an ICD-10 code", "no usable patient identifier", "outside the reporting month",
                    "Primary_Diagnosis missing", "another trust is the provider"],
        "kind": ["invalid", "quarantined", "out_of_month", "quarantined", "other_trust"],
        "rows": [1540, 30, 13, 142, 5],
    })


def render(**changes) -> str:
    frames = {"trusts": trusts_frame(), "trend": trend_frame(), "items": items_frame(), "findings": findings_frame()}
    frames.update(changes)
    return quality_report_html(MONTH, frames.pop("trusts"), frames.pop("trend"), frames.pop("items"),
                               frames.pop("findings"), data_docs=changes.get("data_docs", "gx/data_docs/index.html"))


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
    shown = trend.loc[trend["reporting_month"].isin(MONTHS)].pivot(index="org_code", columns="reporting_month",
                                                                   values="score").reindex(columns=MONTHS)
    with offline_page(report.as_uri()) as (page, requests, errors):
        assert page.title() == f"SACT data quality: {MONTH}"
        assert page.locator("h1").inner_text() == f"SACT data quality: {MONTH}"
        assert "not for publication" in page.locator("h1 + p").inner_text()
        assert page.locator("h2").all_inner_texts() == [
            "Trusts by score", "Score over the last 13 months", "Scores by trust over the last 13 months",
            "Data items", "Findings", "How the score is made"]
        assert page.locator("a", has_text="Data Docs").get_attribute("href") == "gx/data_docs/index.html"

        # The trust table: worst first (no score at all first), every measure as the contract gives it.
        trusts = page.locator("table.trusts tbody tr")
        assert trusts.count() == 4
        assert page.locator("table.trusts thead th[scope=col]").count() == 11
        assert page.locator("table.trusts tbody th[scope=row]").all_inner_texts() == [
            "Mid and South Essex", "Royal Berkshire", "Manchester University", "Leeds Teaching Hospitals"]
        cells = [trusts.nth(n).locator("td").all_inner_texts() for n in range(4)]
        assert [row[0] for row in cells] == ["RAJ", "RBV", "R0A", "RR8"]
        assert cells[0][:4] == ["RAJ", "no score", "0", "0"] and cells[0][4] == "no rows" and cells[0][-1] == "none"
        assert cells[1][:-1] == ["RBV", "71.3", "1,234", "152", "12.3%", "7", "1,500", "12", "0"]
        assert cells[2][1:5] == ["85.0", "500", "0", "0.0%"]
        assert cells[3][1:5] == ["92.5", "2,000", "20", "1.0%"]
        # Each feedback link resolves to the file beside the report, and names its trust for a screen reader.
        links = page.locator("table.trusts tbody a")
        assert links.count() == 3
        for n, code in enumerate(["RBV", "R0A", "RR8"]):
            href = links.nth(n).evaluate("a => a.href")
            assert href.startswith("file://")
            target = Path(url2pathname(urlparse(href).path))
            assert target == report.parent / FEEDBACK[code] and target.is_file()
        assert "for Royal Berkshire" in links.first.text_content()

        # The trend grid: 13 consecutive month columns; a month without a score says so, never 0.
        heads = page.locator("table.grid thead th").all_inner_texts()
        assert heads == ["Trust", *MONTHS] and len(MONTHS) == 13
        grid = page.locator("table.grid tbody tr")
        assert grid.count() == 5  # the four trusts of the month, in the table's order, then RXX
        labels = page.locator("table.grid tbody th").all_inner_texts()
        assert [label.split("(")[-1][:3] for label in labels[:4]] == ["RAJ", "RBV", "R0A", "RR8"]
        assert labels[4].startswith("RXX")
        row = {code: grid.nth(n).locator("td").all_inner_texts()
               for n, code in enumerate(["RAJ", "RBV", "R0A", "RR8", "RXX"])}
        assert all(len(values) == 13 for values in row.values())
        for code, values in row.items():
            expected = [one(shown.loc[code, m]) or "no data" for m in MONTHS]
            assert values == expected, code
        assert row["RBV"][MONTHS.index("2023-06")] == row["RBV"][MONTHS.index("2023-07")] == "no data"
        assert row["R0A"][MONTHS.index("2023-11")] == "no data" and row["R0A"][:7] == ["no data"] * 7
        assert row["RR8"][0] == "80.0"  # 2023-01 (score 10.0) is outside the 13 months
        assert row["RXX"][-1] == "no data" and row["RAJ"][-1] == "no data"

        # The chart: the median line plus the month's scored trusts lowest first (3 here), a point per
        # line and month with data, every value in its text alternative.
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
        assert chart.get_attribute("aria-labelledby") == "trend-title trend-desc"
        assert "lowest-scoring" in chart.locator("title#trend-title").text_content()
        desc = chart.locator("desc").text_content()
        assert f"{MONTH}: 85.0 (of 3 trusts)" in desc  # the median of 92.5, 71.26 and 85.04
        for code, name in (("RBV", "Royal Berkshire"), ("R0A", "Manchester University"),
                           ("RR8", "Leeds Teaching Hospitals")):
            values = "; ".join(f"{m}: {one(shown.loc[code, m]) or 'no data'}" for m in MONTHS)
            assert f"{name} ({code}): {values}." in desc
        assert "Royal Berkshire (RBV): 2023-02: 60.0;" in desc and "2023-06: no data" in desc
        assert "RAJ" not in desc and "RXX" not in desc  # no score this month: not one of the lines

        # Items: scored items marked in words; absent values said, not left as 0.
        items = page.locator("table.items tbody tr")
        assert items.count() == 4
        nhs = items.nth(0).locator("td").all_inner_texts()
        assert nhs == ["Mandatory", "Yes", "3,734", "99.0%", "99.5%", "98.5"]
        death = items.nth(3).locator("td").all_inner_texts()
        assert death == ["Outcome", "No", "3,734", "0.0%", "no values", "not scored"]
        assert items.nth(2).locator("td").all_inner_texts()[-1] == "not scored"

        # Findings: a row group per kind, most rows first within each.
        groups = page.locator("table.findings tbody.kind")
        assert groups.count() == 4
        assert [groups.nth(n).locator("th").inner_text() for n in range(4)] == [
            "Quarantined rows (172 in all)", "Invalid values (1,540 in all)",
            "Rows outside the reporting month (13 in all)", "Rows with another trust as provider (5 in all)"]
        quarantined = groups.first.locator("tr:has(td)")
        assert [quarantined.nth(n).locator("td").all_inner_texts() for n in range(2)] == [
            ["Primary_Diagnosis", "Primary_Diagnosis missing", "142"],
            ["NHS_Number", "no usable patient identifier", "30"]]
        assert page.locator("#score + p").inner_text() == SCORE_TEXT

        shot = artefacts_dir() / f"quality-report-{MONTH}.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        page.emulate_media(media="print")
        assert page.locator("svg[role=img] circle").count() == sum(expected_points.values())
    assert requests == [report.as_uri()]  # the file itself, nothing fetched: no script, font or image
    assert errors == []


def test_every_text_value_is_escaped():
    hostile = "<script>alert(1)</script>"
    trusts = trusts_frame()
    trusts.loc[trusts["org_code"] == "RBV", "org_name"] = hostile
    trusts.loc[trusts["org_code"] == "RR8", "feedback_file"] = 'feedback/a"b<c>.csv'
    trusts.loc[trusts["org_code"] == "R0A", "feedback_file"] = "javascript:alert(1)"
    items = items_frame()
    items.loc[0, "item"] = "A&B<i>"
    findings = findings_frame()
    findings.loc[0, "finding"] = "<img src=x onerror=alert(1)>"
    findings.loc[1, "kind"] = "<b>new kind</b>"
    html = render(trusts=trusts, items=items, findings=findings, data_docs='"><script>x</script>')
    assert "<script" not in html and "<img" not in html and "<i>" not in html and "<b>" not in html
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
