"""The Dagster UI of a real deployment (`make up`), in headless Chromium, as a user sees it.

Shares the deployment and its data story with test_deployment.py (deployment_harness): if that file ran
first, its data and its failed trust-month are reused; run alone, this file makes them itself. Checks:
the global asset lineage shows every layer in order; the partitions view of clean_activity shows the
month x trust grid with materialised partitions; a failed trust-month shows its failure on the run page
and on the partition. Full-page screenshots go to test-artefacts/ (or SACT_TEST_ARTEFACTS).
"""

from __future__ import annotations

import re
import struct
from pathlib import Path
from urllib.parse import quote

import pytest

pytest.register_assert_rewrite("sact_pipeline_tests.deployment_harness")  # before its import: plain asserts there

from playwright.sync_api import Browser, Page, expect  # noqa: E402

from sact_pipeline_tests.browser import chromium  # noqa: E402
from sact_pipeline_tests.deployment_harness import MONTHS, LiveDeployment, Scenario, artefacts_dir  # noqa: E402

pytest_plugins = ["sact_pipeline_tests.deployment_harness"]

LAYERS = ("submission_files", "raw_submissions", "clean_activity", "trust_month_summary", "published_submissions")
UI_TIMEOUT_MS = 45_000  # a page of a busy 2-core machine; every wait below polls until this
MATERIALISED = "div[style*='accent-green']"  # the green status dot of a partition row
WIDE = 3000  # the lineage graph zooms to fit: at this width the expanded asset nodes show their full names


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


@pytest.fixture
def open_page(browser: Browser, live_deployment: LiveDeployment):
    """Open a UI path in a fresh browser context; the first-visit 'Join the Dagster community' dialog is
    skipped whenever it shows up in front of what the test looks at."""
    contexts = []

    def open_(path: str, *, width: int = 1600, height: int = 1000) -> Page:
        context = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(UI_TIMEOUT_MS)
        page.add_locator_handler(page.get_by_text("Join the Dagster community"),
                                 lambda: page.get_by_role("button", name="Skip").click())
        page.goto(live_deployment.url + path, wait_until="domcontentloaded")
        return page

    yield open_
    for context in contexts:
        context.close()


def screenshot(page: Page, name: str) -> Path:
    """A full-page PNG in the artefacts folder, checked to be a real picture of a page."""
    expect(page.get_by_text("Join the Dagster community")).to_be_hidden(timeout=UI_TIMEOUT_MS)
    path = artefacts_dir() / name
    page.screenshot(path=str(path), full_page=True)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 1000 and height >= 600 and len(data) > 20_000, (
        f"{path} looks empty: {width}x{height}, {len(data)} bytes")
    return path


def partition_row(page: Page, key: str):
    """The row of a partition key (a month or a trust) in a dimension list of the partitions view."""
    return page.locator("div[class*='VirtualizedTable_row']", has=page.locator(f'div[title="{key}"]'))


def test_the_global_asset_lineage_shows_every_layer_in_order(open_page, sact_scenario: Scenario):
    sact_scenario.load_initial()
    page = open_page("/asset-groups", width=WIDE, height=1100)  # wide enough for full asset nodes
    expect(page.get_by_text("Global asset lineage").first).to_be_visible(timeout=UI_TIMEOUT_MS)
    graph = page.locator("svg foreignObject")
    for group in ("landing", "raw", "clean", "summary", "published"):  # the layers' groups, collapsed at first
        expect(graph.get_by_text(group, exact=True).first).to_be_visible(timeout=UI_TIMEOUT_MS)
    page.keyboard.press("Alt+KeyE")  # the graph's own shortcut for "Expand all groups" (shown as ⌥E)
    positions = {}
    for layer in LAYERS:
        node = graph.get_by_text(layer, exact=True).first
        expect(node).to_be_visible(timeout=UI_TIMEOUT_MS)
        box = node.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= WIDE, f"{layer} is not wholly on screen: {box}"
        positions[layer] = box["x"]
    assert sorted(LAYERS, key=positions.get) == list(LAYERS), f"left-to-right order in the graph: {positions}"
    screenshot(page, "asset-lineage.png")


def test_the_partitions_view_of_clean_activity_shows_the_month_by_trust_grid(open_page, sact_scenario: Scenario,
                                                                            live_deployment: LiveDeployment):
    scenario = sact_scenario.load_initial()
    page = open_page("/assets/clean_activity?view=partitions", height=1200)
    # The counts of the grid: every generated trust-month is materialised, or failed (a bad resubmission).
    materialised = page.get_by_text(re.compile(r"^Materialized \(\d+\)$"))
    failed = page.get_by_text(re.compile(r"^Failed \(\d+\)$"))
    expect(materialised).to_be_visible(timeout=UI_TIMEOUT_MS)
    counts = {label: int(re.search(r"\d+", locator.inner_text()).group())
              for label, locator in (("materialized", materialised), ("failed", failed))}
    expected_failed = 1 if scenario.failing else 0
    assert counts == {"materialized": len(scenario.trust_months()) - expected_failed, "failed": expected_failed}

    page.get_by_placeholder(re.compile("Filter by month")).fill("2024-0")  # the generated months, not 2026's
    for month in MONTHS:
        row = partition_row(page, f"{month}-01")
        expect(row).to_be_visible(timeout=UI_TIMEOUT_MS)
        expect(row.locator(MATERIALISED)).to_be_visible(timeout=UI_TIMEOUT_MS)
    for trust in scenario.trusts:
        row = partition_row(page, trust)
        expect(row).to_be_visible(timeout=UI_TIMEOUT_MS)
        expect(row.locator(MATERIALISED)).to_be_visible(timeout=UI_TIMEOUT_MS)

    # One cell of the grid: a month, then a trust, shows that partition's latest materialisation.
    month, trust = scenario.trust_months()[0]
    partition_row(page, f"{month}-01").click()
    partition_row(page, trust).click()
    expect(page).to_have_url(re.compile(re.escape(f"partition={quote(f'{month}-01|{trust}', safe='')}")),
                             timeout=UI_TIMEOUT_MS)
    expect(page.get_by_text(f"{month}-01|{trust}", exact=True).first).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.get_by_text("Latest materialization").first).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.get_by_text("clean_rows", exact=True).first).to_be_visible(timeout=UI_TIMEOUT_MS)  # its metadata
    screenshot(page, "clean-activity-partitions.png")


def test_a_failed_trust_month_shows_its_failure_on_the_run_and_the_partition(open_page, sact_scenario: Scenario):
    failing = sact_scenario.drop_failing_resubmission()
    failed = [r for r in failing.runs if r.status == "FAILURE" and r.job_name == "trust_month_refresh"]
    assert failed, f"no run failed after the bad resubmission: {[r.describe() for r in failing.runs]}"
    run = failed[0]
    trust_month = rf"{failing.month}(-01)?\|{failing.org}"

    page = open_page(f"/runs/{run.run_id}", height=2000)  # tall: the run's whole event log is rendered
    expect(page.get_by_text("Failure", exact=True).first).to_be_visible(timeout=UI_TIMEOUT_MS)
    message = page.get_by_text(re.compile(rf"{trust_month}.*Great Expectations suite")).first
    expect(message).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.get_by_text(re.compile("clean_reconciliation")).first).to_be_visible(timeout=UI_TIMEOUT_MS)
    screenshot(page, "failed-run.png")

    page = open_page(f"/assets/clean_activity?view=partitions&partition={quote(failing.trust_month, safe='')}",
                     height=1200)
    runs = "|".join(r.run_id[:8] for r in failed)  # the latest of them, if the daemon retried
    expect(page.get_by_text(re.compile(rf"Run ({runs})\w* failed")).first).to_be_visible(timeout=UI_TIMEOUT_MS)
    screenshot(page, "failed-partition.png")
