"""The month's HTML report, opened from disk in headless Chromium with the network cut off, as a reader
offline (or NDRS's publishing system) would open it. A screenshot goes to test-artefacts/ (or
SACT_TEST_ARTEFACTS)."""

from __future__ import annotations

import csv
import io
from contextlib import contextmanager

import pytest
from playwright.sync_api import sync_playwright

from sact_pipeline.cli import refresh
from sact_pipeline.layers import Pipeline
from sact_pipeline_tests.builders import write_submission
from sact_pipeline_tests.deployment_harness import artefacts_dir

CHROMIUM = "/usr/bin/chromium"  # Debian's, as `make test` installs it
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]


@contextmanager
def offline_page(url: str):
    """url opened in headless Chromium with the network cut off, as a reader offline opens it: yields the
    page, the URLs it requested and its console and page errors."""
    requests: list[str] = []
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(offline=True, viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.on("request", lambda request: requests.append(request.url))
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(url, wait_until="load")
            yield page, requests, errors
        finally:
            browser.close()


def rows(prefix: str, count: int, day: str) -> list[dict]:
    dates = {key: day for key in ("date_decision_to_treat", "start_date_of_regimen", "start_date_of_cycle",
                                  "administration_date")}
    return [{"nhs_number": "", "local_patient_identifier": f"{prefix}{i:04d}", **dates} for i in range(count)]


@pytest.fixture
def published(tmp_path):
    """Two published months: RR8 on time both months, RBV small (a '*') and late in February, RAJ new
    in February, and a Welsh trust that must not appear."""
    from sact_pipeline.settings import Settings

    settings = Settings.from_env(env={}, home=str(tmp_path / "sact"), first_month="2024-01")
    landing = settings.landing_dir
    write_submission(landing / "SACT_RR8_202401_20240210093000.csv", rows("A", 40, "2024-01-08"))
    write_submission(landing / "SACT_RBV_202401_20240210093000.csv", rows("B", 12, "2024-01-09"))
    write_submission(landing / "SACT_RQF_202401_20240210093000.csv", rows("W", 30, "2024-01-09"))
    write_submission(landing / "SACT_RR8_202402_20240310093000.csv", rows("A", 45, "2024-02-08"))
    write_submission(landing / "SACT_RBV_202402_20240415093000.csv", rows("B", 3, "2024-02-09"))
    write_submission(landing / "SACT_RAJ_202402_20240310093000.csv", rows("C", 22, "2024-02-12"))
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
            "Notes"]
        # The table: every CSV row, cell for cell, with header cells for columns and rows.
        body = page.locator("#table + table tbody tr")
        assert body.count() == len(table) == 4  # RAJ, RBV, RR8, ENGLAND: no Welsh trust
        codes = [body.nth(n).locator("td").first.inner_text() for n in range(body.count())]
        assert codes == [row["org_code"] for row in table]
        rbv = body.nth(codes.index("RBV")).locator("td").all_inner_texts()
        assert rbv[1] == "Late" and "*" in rbv  # status as text, not colour alone; suppressed stays '*'
        assert page.locator("#table + table thead th[scope=col]").count() == 12
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
        # The charts: one per measure, each with a text alternative holding its values.
        charts = page.locator("svg[role=img]")
        assert charts.count() == 4
        assert page.locator("svg[role=img] rect").count() >= 4
        england = next(row for row in table if row["org_code"] == "ENGLAND")
        assert f"2024-02: {england['patients']}" in charts.first.locator("desc").text_content()
        assert "National Disease Registration Service" in page.locator(".notes").inner_text()

        shot = artefacts_dir() / "report-2024-02.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        page.emulate_media(media="print")  # printable: the same content under print CSS
        assert page.locator("svg[role=img]").count() == 4
    assert requests == [html.as_uri()]  # the file itself, nothing fetched: no script, font or image
