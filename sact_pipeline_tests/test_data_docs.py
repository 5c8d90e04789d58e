"""sact_pipeline.data_docs on real GX runs, real files and headless Chromium with the network cut off: the
site lists every recorded result, its pages open offline, no row value reaches a file, the store stays
bounded and a batch result shared by several trust-months is stored once. A screenshot of the index goes
to test-artefacts/ (or SACT_TEST_ARTEFACTS)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import multiprocessing
import pickle
import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from sact_pipeline import quality as q
from sact_pipeline import suites
from sact_pipeline.data_docs import VENDOR_DIR, DataDocs
from sact_pipeline_tests.browser import chromium
from sact_pipeline_tests.builders import CODE_LISTS, FAKE_NHS, KEY_2, clean_frame
from sact_pipeline_tests.deployment_harness import artefacts_dir

PSEUDONYM = "5f0c" * 16  # a 64-hex patient key
MONTH = (dt.date(2025, 1, 1), dt.date(2025, 1, 31))


def failing_clean_frame() -> pd.DataFrame:
    """Identifiers where codes and keys belong: 2 bad patient keys, 2 bad intents, 1 bad gender code."""
    frame = clean_frame()
    frame["patient_key"] = pd.Series([FAKE_NHS, PSEUDONYM.upper(), KEY_2], dtype="str")
    frame["intent_of_treatment"] = pd.Series([FAKE_NHS, PSEUDONYM, "01"], dtype="str")
    frame["person_stated_gender_code"] = pd.Series([PSEUDONYM, "1", "2"], dtype="str")
    return frame


def validate_clean(frame: pd.DataFrame) -> q.SuiteOutcome:
    return q.validate_frame("clean_activity", suites.clean_expectations(CODE_LISTS, *MONTH), frame)


def reconciliation(accounted: int = 10) -> q.SuiteOutcome:
    frame = pd.DataFrame({"raw_rows": [10], "accounted_rows": [accounted], "quarantine_share": [0.0]})
    return q.validate_frame("clean_reconciliation", suites.reconciliation_expectations(0.1), frame)


def results(store: Path, suite: str) -> list[Path]:
    return sorted((store / "validations" / suite).rglob("*.json"))


def pages(site: Path, suite: str) -> list[Path]:
    return sorted((site / "validations" / suite).rglob("*.html"))


def test_the_site_lists_both_results_and_its_pages_open_offline(tmp_path):
    passed, failed = validate_clean(clean_frame()), validate_clean(failing_clean_frame())
    assert passed.success and not failed.success
    assert [o.unexpected for o in failed.failed] == [2, 2, 1]
    docs = DataDocs(tmp_path / "site", tmp_path / "store")
    passed_page = docs.record(passed, "clean_activity 2025-01 RR8")
    failed_page = docs.record(failed, "clean_activity 2025-01 RBV")
    assert passed_page != failed_page and passed_page.is_absolute() and not failed_page.exists()
    index = docs.build()
    assert index == (tmp_path / "site" / "index.html").resolve()
    assert passed_page.exists() and failed_page.exists()
    assert docs.record(reconciliation(), "clean_reconciliation 2025-01 RR8") is not None  # a second suite, built next time
    docs.build()

    requests: list[str] = []
    failures: list[str] = []
    errors: list[str] = []
    with chromium() as browser:
        for scheme in ("light", "dark"):  # the dark scheme swaps the navbar logo for another image
            context = browser.new_context(offline=True, color_scheme=scheme, viewport={"width": 1400, "height": 900})
            context.set_default_timeout(120_000)  # generous: the machine may be busy with other tests
            page = context.new_page()
            page.on("request", lambda request: requests.append(request.url))
            page.on("requestfailed", lambda request: failures.append(f"{request.url}: {request.failure}"))
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(index.as_uri(), wait_until="load")

            # bootstrap-table (vendored) fills the table: nothing would be listed without it.
            rows = page.locator("#Validation-Results table tbody tr")
            assert rows.count() == 3
            assert page.locator("#Expectation-Suites table tbody tr").count() == 2
            rr8 = rows.filter(has_text="clean_activity 2025-01 RR8")
            rbv = rows.filter(has_text="clean_activity 2025-01 RBV")
            assert rr8.locator(".ge-success-icon").count() == 1 and rr8.locator(".ge-failed-icon").count() == 0
            assert rbv.locator(".ge-failed-icon").count() == 1 and rbv.locator(".ge-success-icon").count() == 0
            assert rows.filter(has_text="clean_reconciliation 2025-01 RR8").locator(".ge-success-icon").count() == 1
            # The font-awesome icons are drawn with the vendored webfont.
            assert page.evaluate("document.fonts.check('900 16px \"Font Awesome 6 Free\"')")
            if scheme == "light":
                shot = artefacts_dir() / "data-docs-index.png"
                page.screenshot(path=str(shot), full_page=True)
                assert shot.stat().st_size > 10_000

                # Follow the failed result: the failing expectations with their unexpected counts.
                rbv.first.click()
                page.wait_for_url("**/validations/clean_activity/**")
                assert Path(page.url.removeprefix("file://").replace("%20", " ")) == failed_page
                body = page.locator("body").inner_text()
                assert "clean_activity 2025-01 RBV" in body and "Failed" in body
                assert "2 unexpected values found" in body and "1 unexpected values found" in body
                assert "patient_key" in body and "intent_of_treatment" in body

                # The suite page, from the index's Expectation Suites tab. (Clicking a suite link in a
                # result's row would also fire the row's own link, and one navigation aborts the other.)
                page.goto(index.as_uri(), wait_until="load")
                page.locator("#Expectation-Suites-tab").click()
                page.locator("#Expectation-Suites table tbody tr", has_text="clean_activity").click()
                page.wait_for_url("**/expectations/clean_activity.html")
                suite = page.locator("body").inner_text()
                assert "clean_activity" in suite and "patient_key" in suite
                assert "^[0-9a-f]{64}$" in suite
            context.close()
    assert failures == [] and errors == []
    assert requests and all(url.startswith("file://") for url in requests)
    assert any("/static/vendor/bootstrap-table@1.19.1/" in url for url in requests)
    assert any(url.endswith("/static/vendor/fontawesome-free@6.6.0/webfonts/fa-solid-900.woff2") for url in requests)


def test_no_row_value_reaches_a_file(tmp_path):
    frame = failing_clean_frame()
    failed = validate_clean(frame)
    assert not failed.success and failed.failed
    assert FAKE_NHS in frame.to_csv() and PSEUDONYM in frame.to_csv()
    # The raw suite on an identifier in the hash column (twice, with one row number) and in the version.
    raw_frame = pd.DataFrame({
        "nhs_number": [FAKE_NHS, PSEUDONYM], "reporting_month": "2025-01", "trust_code": "RAA",
        "file_name": "f.csv", "file_sha256": [FAKE_NHS, FAKE_NHS], "submitted_at": pd.Timestamp("2025-02-10"),
        "row_number": [1, 1], "header_version": [PSEUDONYM, "v3"],
    })
    raw = q.validate_frame("raw_submissions", suites.raw_expectations(["nhs_number"]), raw_frame)
    assert not raw.success and len(raw.failed) == 3
    # A suite that errors on a missing column (GX's error messages may quote values; they are not kept).
    errored = q.validate_frame("clean_reconciliation", suites.reconciliation_expectations(0.1),
                               pd.DataFrame({"raw_rows": [FAKE_NHS], "quarantine_share": [PSEUDONYM]}))
    assert not errored.success
    for outcome in (failed, raw, errored):
        text = json.dumps(outcome.validation)
        assert FAKE_NHS not in text and PSEUDONYM not in text and PSEUDONYM.upper() not in text
        assert "pandas_data_fingerprint" not in text and "Traceback" not in text

    docs = DataDocs(tmp_path / "site", tmp_path / "store")
    for number, outcome in enumerate((failed, raw, errored)):
        docs.record(outcome, f"privacy run {number}")
    docs.build()
    scanned = 0
    for root in (tmp_path / "site", tmp_path / "store"):
        for path in root.rglob("*"):
            if path.is_file() and not path.is_relative_to(tmp_path / "site" / "static"):
                data = path.read_bytes()
                scanned += 1
                for value in (FAKE_NHS, PSEUDONYM, PSEUDONYM.upper()):
                    assert value.encode() not in data, f"{value} in {path}"
    # The scan reads what was written: the run names are there, and so is every failed expectation's count.
    written = b"".join(p.read_bytes() for p in (tmp_path / "store").rglob("*.json"))
    assert b"privacy run 1" in written and b'"unexpected_count": 2' in written
    assert scanned >= 9  # 3 results, 3 suites, 3 pages, the index (and GX's backend ids)


def test_each_suite_keeps_only_its_newest_results(tmp_path):
    docs = DataDocs(tmp_path / "site", tmp_path / "store", keep_per_suite=2)
    recorded = [docs.record(reconciliation(accounted), f"clean_activity 2025-0{n} RR8")
                for n, accounted in enumerate((10, 9, 10, 8), start=1)]
    other = docs.record(validate_clean(clean_frame()), "clean_activity 2025-01 RR8")
    docs.build()
    store, site = tmp_path / "store", tmp_path / "site"
    assert len(results(store, "clean_reconciliation")) == 2
    assert pages(site, "clean_reconciliation") == sorted(recorded[2:])
    assert not any(path.exists() or path.parent.exists() for path in recorded[:2])  # no empty folders left
    assert other.exists() and len(results(store, "clean_activity")) == 1
    # Pages built before a later prune go too, and the index lists only what is kept.
    docs.record(reconciliation(7), "clean_activity 2025-05 RR8")
    index = docs.build().read_text()
    assert len(pages(site, "clean_reconciliation")) == 2 and not recorded[2].exists()
    assert "clean_activity 2025-05 RR8" in index and "clean_activity 2025-03 RR8" not in index


def test_a_batch_result_shared_by_several_trust_months_is_stored_once(tmp_path):
    frames = [clean_frame(), clean_frame().iloc[:2]]
    shared = q.validate_parts("clean_activity", suites.clean_expectations(CODE_LISTS, *MONTH), frames)
    assert [o.rows for o in shared] == [3, 2] and shared[0].validation is shared[1].validation is not None
    assert pickle.loads(pickle.dumps(shared[0])) == shared[0]  # outcomes cross worker processes
    assert pickle.loads(pickle.dumps(shared[0])).validation == shared[0].validation
    docs = DataDocs(tmp_path / "site", tmp_path / "store")
    first = docs.record(shared[0], "clean_activity 2025-01 (2 trusts)")
    second = docs.record(shared[1], "clean_activity 2025-01 RBV")
    assert first == second
    assert len(results(tmp_path / "store", "clean_activity")) == 1
    docs.build()
    assert pages(tmp_path / "site", "clean_activity") == [first]


def test_every_pipeline_suite_renders_without_charts(tmp_path, caplog):
    """Vega is not vendored: only chart-drawing renderers need it, and no page of the pipeline's suites
    (passing, failing, on no rows) has one, nor any CDN or S3 URL left; GX renders every page without error."""
    summary = pd.DataFrame({"reporting_month": ["2025-01"] * 2, "org_code": ["RAA", "RAA"],
                            "patients": [5, 9], "regimens": [4, 9], "cycles": [4, 9], "drug_administrations": [4, 9],
                            "submission_status": ["on_time", "early"], "month_status": ["final", "final"],
                            "data_status": ["ok", "held"]})
    published = pd.DataFrame({"org_code": ["RAA", "WALES"], "patients": ["10", "3"], "patients_change": ["5", "x"],
                              "sact_version": ["v4", "v9"], "month_status": ["final", "later"],
                              "data_status": ["ok", "fine"]})
    disclosure = pd.DataFrame({"lowest": [1, 3], "highest": [3, 3]})
    recon = pd.DataFrame({"registered_rows": [3, 4], "loaded_rows": [3, 5]})
    no_rows = pd.DataFrame({c: pd.Series([], dtype="str") for c in (*suites.RAW_METADATA_COLUMNS, "nhs_number")})
    outcomes = [
        q.validate_frame("raw_submissions", suites.raw_expectations(["nhs_number"]), no_rows),
        validate_clean(clean_frame()), validate_clean(failing_clean_frame()), reconciliation(), reconciliation(9),
        q.validate_frame("raw_reconciliation", suites.raw_reconciliation_expectations(), recon),
        q.validate_frame("trust_month_summary", suites.summary_expectations(suites.NESTED_MEASURES), summary),
        q.validate_frame("published_submissions", suites.published_expectations(["patients"], ["patients_change"], ["RAA"]),
                         published),
        q.validate_frame("published_disclosure", suites.disclosure_expectations(), disclosure),
    ]
    docs = DataDocs(tmp_path / "site", tmp_path / "store")
    caplog.set_level(logging.WARNING)
    for number, outcome in enumerate(outcomes):
        docs.record(outcome, f"run {number}")
    docs.build()
    problems = [r.getMessage()[:300] for r in caplog.records
                if r.name.startswith(("great_expectations", "sact_pipeline")) and r.levelno >= logging.WARNING]
    assert problems == []
    html = [p for p in (tmp_path / "site").rglob("*.html") if "static" not in p.parts]
    assert len(html) == 1 + 9 + 7  # the index, a page per result, a page per suite
    for path in html:
        text = path.read_text()
        assert "vega" not in text.lower(), path
        # Nothing is loaded from the network (links to greatexpectations.io stay links), every file is here.
        assert not re.search(r"<(?:script|link|img)\b[^>]*\b(?:src|href)=[\"']?https?://|url\([\"']?https?://", text), path
        for local in re.findall(r"(?:src|href)=\"([^\"#?]+\.(?:js|css|png|ico))", text):
            assert (path.parent / local).resolve().is_file(), (path, local)


def _record_and_build(site: str, store: str, blob: bytes, run_name: str) -> int:
    outcomes = pickle.loads(blob)
    docs = DataDocs(Path(site), Path(store))
    for number, outcome in enumerate(outcomes):
        docs.record(outcome, f"{run_name} {number}")
        docs.build()
    return len(outcomes)


def test_two_processes_record_and_build_at_once(tmp_path):
    outcomes = [reconciliation(accounted) for accounted in (10, 9, 8, 7, 6, 5)]
    site, store = str(tmp_path / "site"), str(tmp_path / "store")
    # ProcessPoolExecutor, not multiprocessing.Pool: Pool.__exit__ terminates its workers, and it hung here
    # once, both jobs done, joining a worker that stayed blocked on the pool's queue lock (a CPython race).
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        jobs = [pool.submit(_record_and_build, site, store, pickle.dumps(outcomes[n::2]), f"refresh {n}")
                for n in range(2)]
        assert [job.result(timeout=120) for job in jobs] == [3, 3]
    assert len(results(tmp_path / "store", "clean_reconciliation")) == 6
    assert len(pages(tmp_path / "site", "clean_reconciliation")) == 6
    index = (tmp_path / "site" / "index.html").read_text()
    assert all(f"refresh {n} {m}" in index for n in range(2) for m in range(3))
    assert not (tmp_path / "store" / "pending.jsonl").exists()


def test_the_vendored_files_are_small_and_licensed():
    files = [p for p in VENDOR_DIR.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 2_500_000
    packages = {p.relative_to(VENDOR_DIR).parts[0] for p in files if p.parent != VENDOR_DIR}
    for package in packages:
        assert list((VENDOR_DIR / package).glob("LICENSE*")), package
        assert package in (VENDOR_DIR / "README.md").read_text()


@pytest.fixture(autouse=True)
def _gx_results_store_stays_empty():
    """Recording and building never put anything in quality's own GX context."""
    yield
    assert q._engine().context.validation_results_store.list_keys() == []
