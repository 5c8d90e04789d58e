"""The month's HTML report, opened from disk in headless Chromium with the network cut off, as a reader
offline (or NDRS's publishing system) would open it. A screenshot goes to test-artefacts/ (or
SACT_TEST_ARTEFACTS)."""

from __future__ import annotations

import csv
import io

import pandas as pd
import pytest

from sact_pipeline.cli import refresh
from sact_pipeline.domain.counting import months_up_to
from sact_pipeline.domain.publication import PUBLISHED_COLUMNS
from sact_pipeline.domain.report import report_html
from sact_pipeline.domain.spec import Transition
from sact_pipeline.layers import Pipeline
from sact_pipeline_tests.browser import offline_page
from sact_pipeline_tests.builders import dated_patients, write_submission
from sact_pipeline_tests.deployment_harness import artefacts_dir


@pytest.fixture
def published(tmp_path):
    """Two published months: RR8 on time both months, RBV small (a '*') and late in February, RAJ new
    in February, and a Welsh trust that must not appear."""
    from sact_pipeline.settings import Settings

    settings = Settings.from_env(env={}, home=str(tmp_path / "sact"), first_month="2024-01")
    landing = settings.landing_dir
    write_submission(landing / "SACT_RR8_202401_20240210093000.csv", dated_patients("A", 40, "2024-01-08"))
    write_submission(landing / "SACT_RBV_202401_20240210093000.csv", dated_patients("B", 12, "2024-01-09"))
    write_submission(landing / "SACT_RQF_202401_20240210093000.csv", dated_patients("W", 30, "2024-01-09"))
    write_submission(landing / "SACT_RR8_202402_20240310093000.csv", dated_patients("A", 45, "2024-02-08"))
    write_submission(landing / "SACT_RBV_202402_20240415093000.csv", dated_patients("B", 3, "2024-02-09"))
    write_submission(landing / "SACT_RAJ_202402_20240310093000.csv", dated_patients("C", 22, "2024-02-12"))
    report = refresh(settings, log=lambda line: None)
    assert report.ok, report
    return Pipeline(settings).output_paths("2024-02")[0]


def test_the_report_opens_offline_with_its_table_grid_and_charts(published):
    html = published.with_suffix(".html")
    table = list(csv.DictReader(io.StringIO(published.read_text())))
    with offline_page(html.as_uri()) as (page, requests, errors):
        assert page.title() == "SACT data submissions: 2024-02"
        assert page.locator("h1").inner_text() == "SACT data submissions: 2024-02"
        assert page.locator("h2").all_inner_texts() == [
            "Submissions by trust", "Timeliness over the last 13 months", "England over the last 13 months",
            "SACT v4 adoption", "Notes"]
        # The table: every CSV row, cell for cell, with header cells for columns and rows.
        body = page.locator("#table + table tbody tr")
        assert body.count() == len(table) == 4  # RAJ, RBV, RR8, ENGLAND: no Welsh trust
        codes = [body.nth(n).locator("td").first.inner_text() for n in range(body.count())]
        assert codes == [row["org_code"] for row in table]
        rbv = body.nth(codes.index("RBV")).locator("td").all_inner_texts()
        assert rbv[1] == "Late" and "*" in rbv  # status as text, not colour alone; suppressed stays '*'
        assert page.locator("#table + table thead th[scope=col]").count() == 14
        assert page.locator("#table + table thead th").all_inner_texts()[-2:] == ["SACT version", "Data status"]
        assert [body.nth(n).locator("td").all_inner_texts()[-2] for n in range(body.count())] == [
            row["sact_version"] for row in table] == ["v3", "v3", "v3", ""]  # ENGLAND has none
        assert [body.nth(n).locator("td").last.inner_text() for n in range(body.count())] == ["OK", "OK", "OK", ""]
        # The grid: a row per trust, a column per published month, each status in words.
        grid = page.locator("table.grid tbody tr")
        assert grid.count() == 3
        months = page.locator("table.grid thead th").all_inner_texts()
        assert months[0] == "Trust" and len(months) == 14 and months[1:3] == ["2023-02", "2023-03"]
        assert months[-2:] == ["2024-01", "2024-02"]  # 13 consecutive months, ending with this one
        raj = grid.filter(has_text="RAJ").locator("td").all_inner_texts()
        assert raj[-1] == "On time" and all(c.startswith("\u2013") for c in raj[:-1])  # new in February
        rbv = grid.filter(has_text="RBV").locator("td").all_inner_texts()
        assert rbv[-2:] == ["On time", "Late"]
        # The charts: one per measure and the v4 adoption, each with a text alternative holding its values.
        charts = page.locator("svg[role=img]")
        assert charts.count() == 5
        # 2024 is before v4: no trust on it in a published month, and no bar where a month was not published.
        adoption = page.locator("figure.adoption svg").locator("desc").text_content()
        assert "2023-02: not published;" in adoption
        assert "2024-01: 0 of 2 trusts; 2024-02: 0 of 3 trusts" in adoption
        assert page.locator("figure.adoption rect.bar").count() == 2
        versions = page.locator("table.versions tbody tr")
        assert versions.filter(has_text="RR8").locator("td").all_inner_texts()[-2:] == ["v3", "v3"]
        assert page.locator("svg[role=img] rect").count() >= 4
        england = next(row for row in table if row["org_code"] == "ENGLAND")
        assert f"2024-02: {england['patients']}" in charts.first.locator("desc").text_content()
        assert "National Disease Registration Service" in page.locator(".notes").inner_text()

        shot = artefacts_dir() / "report-2024-02.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        page.emulate_media(media="print")  # printable: the same content under print CSS
        assert page.locator("svg[role=img]").count() == 5
    assert requests == [html.as_uri()]  # the file itself, nothing fetched: no script, font or image


def test_the_report_shows_the_switch_to_sact_v4(switched):
    """A real pipeline across the switch: the published table, the adoption chart and the version grid."""
    month = "2026-07"
    months = months_up_to(month, 13)
    csv_path = switched.output_paths(month)[0]
    table = list(csv.DictReader(io.StringIO(csv_path.read_text())))
    assert {row["org_code"]: row["sact_version"] for row in table} == {
        "RAJ": "v4", "RBV": "v3", "RR8": "v4", "ENGLAND": ""}
    html = csv_path.with_suffix(".html")
    with offline_page(html.as_uri()) as (page, requests, errors):
        body = page.locator("#table + table tbody tr")
        versions = [body.nth(n).locator("td").all_inner_texts()[-2] for n in range(body.count())]
        assert versions == ["v4", "v3", "v4", ""]  # RAJ, RBV, RR8, ENGLAND

        section = page.locator("#sact-version ~ p").first.inner_text()
        assert "from April 2026" in section and "must from July 2026" in section
        assert "flagged in NDRS's data-quality report" in section
        chart = page.locator("figure.adoption svg[role=img]")
        assert chart.get_attribute("aria-labelledby") == "adoption-title adoption-desc"
        desc = chart.locator("desc").text_content()
        expected = [f"{m}: not published" for m in months[:10]]  # before the first published month: gaps
        expected += ["2026-05: 0 of 2 trusts", "2026-06: 0 of 2 trusts", "2026-07: 2 of 3 trusts"]
        assert desc.startswith("; ".join(expected))
        # A bar (with its number) for each published month only; 0 is written, a gap is not.
        assert chart.locator("rect.bar").count() == 3
        assert chart.locator("text.count").all_text_contents() == ["0", "0", "2"]
        assert chart.locator("line.milestone").count() == 2  # April (accepted) and July (required)

        grid = page.locator("table.versions tbody tr")
        assert page.locator("table.versions thead th").all_inner_texts() == ["Trust", *months]
        assert grid.count() == 3
        cells = {code: grid.filter(has_text=f"({code})").locator("td").all_inner_texts()
                 for code in ("RAJ", "RBV", "RR8")}
        blank = "\u2013"
        assert cells["RR8"][-3:-2] == ["v3"] and cells["RR8"][-1] == "v4"
        assert cells["RBV"][-3] == "v3" and cells["RBV"][-1] == "v3"
        assert cells["RAJ"][-1] == "v4"
        for code, values in cells.items():  # June (no file) and every month before May: no version
            assert all(v.startswith(blank) for v in values[:-3] + [values[-2]]), code
        assert all(v.startswith(blank) for v in cells["RAJ"][:-1])

        shot = artefacts_dir() / f"report-{month}.png"
        page.screenshot(path=str(shot), full_page=True)
        page.emulate_media(media="print")
        assert page.locator("figure.adoption rect.bar").count() == 3
    assert requests == [html.as_uri()]
    assert errors == []


def published_table(month: str, versions: dict[str, str | None], *, column: bool = True) -> pd.DataFrame:
    """A published table as the warehouse gives it back (text cells): a row per trust with its version
    (None: NULL, as a row published before the column existed reads back), and ENGLAND."""
    counts = {column: "10" for column in PUBLISHED_COLUMNS
              if column.startswith(("patients", "regimens", "cycles", "drug_administrations"))}
    trusts = [{"reporting_month": month, "org_code": code, "org_name": f"Trust {code}", **counts,
               "submission_status": "on_time", "submitted_at": f"{month}-20T09:30:00",
               "sact_version": version} for code, version in versions.items()]
    england = {"reporting_month": month, "org_code": "ENGLAND", "org_name": "England", **counts,
               "submission_status": "", "submitted_at": "",
               "sact_version": "v4"}  # never counted, whatever it holds
    frame = pd.DataFrame(trusts + [england], columns=list(PUBLISHED_COLUMNS))
    frame["sact_version"] = frame["sact_version"].astype("str")  # NULL reads back as 'None'
    return frame if column else frame.drop(columns="sact_version")


def test_the_adoption_chart_counts_v4_trusts_per_published_month(tmp_path):
    """Counts from a history with a switch, a month never published (a gap, not 0), rows published before
    the column existed (no column, or NULL: blank), and ENGLAND left out."""
    month = "2026-09"
    months = months_up_to(month, 13)
    history = pd.concat([
        published_table("2026-02", {"RR8": "v3", "RBV": "v3"}, column=False),  # before the column: blank
        published_table("2026-03", {"RR8": None, "RBV": None}),  # NULL: blank
        published_table("2026-04", {"RR8": "v3", "RBV": "v3", "RAJ": ""}),  # RAJ: no usable version
        published_table("2026-05", {"RR8": "v4", "RBV": "v3", "RAJ": "v3"}),  # RR8 switches
        # 2026-06 never published: a gap
        published_table("2026-07", {"RR8": "v4", "RBV": "v3", "RAJ": "v4"}),
        published_table("2026-08", {"RR8": "v4", "RBV": "v4", "RAJ": "v4"}),
        published_table("2024-09", {"RR8": "v4"}),  # outside the 13 months: not shown
    ], ignore_index=True)
    table = published_table(month, {"RR8": "v4", "RBV": "v3", "RAJ": "v4"})
    html = tmp_path / "report.html"
    html.write_text(report_html(month, table, "notes", history, Transition("2026-04", "2026-07")),
                    encoding="utf-8")
    expected = {"2026-02": "0 of 2", "2026-03": "0 of 2", "2026-04": "0 of 3", "2026-05": "1 of 3",
                "2026-07": "2 of 3", "2026-08": "3 of 3", "2026-09": "2 of 3"}
    with offline_page(html.as_uri()) as (page, requests, errors):
        chart = page.locator("figure.adoption svg[role=img]")
        desc = chart.locator("desc").text_content()
        for m in months:
            said = f"{m}: {expected[m]} trusts" if m in expected else f"{m}: not published"
            assert said in desc, m
        assert chart.locator("rect.bar").count() == len(expected)  # no bar (not even 0) for June or 2025
        counts = [expected[m].split()[0] for m in sorted(expected)]
        assert chart.locator("text.count").all_text_contents() == counts
        heights = [float(h) for h in chart.locator("rect.bar").evaluate_all(
            "bars => bars.map(b => b.getAttribute('height'))")]
        assert heights[:3] == [0.0, 0.0, 0.0] and heights[5] == max(heights)
        assert heights[4] == heights[6] > heights[3] > 0

        grid = page.locator("table.versions tbody tr")
        assert grid.count() == 3  # the month's trusts, not ENGLAND
        rr8 = grid.filter(has_text="(RR8)").locator("td").all_inner_texts()
        shown = dict(zip(months, rr8))
        switch = ("2026-04", "2026-05", "2026-07", "2026-08", "2026-09")
        assert [shown[m] for m in switch] == ["v3", "v4", "v4", "v4", "v4"]
        for m in ("2025-09", "2026-02", "2026-03", "2026-06"):  # unpublished, or published without a version
            assert shown[m].startswith("\u2013") and "no version" in shown[m], m
        raj = dict(zip(months, grid.filter(has_text="(RAJ)").locator("td").all_inner_texts()))
        assert raj["2026-04"].startswith("\u2013") and raj["2026-05"] == "v3" and raj["2026-07"] == "v4"
        assert grid.filter(has_text="(RAJ)").locator("span.version-tag.v4").count() == 3  # colour and text
    assert requests == [html.as_uri()]
    assert errors == []
