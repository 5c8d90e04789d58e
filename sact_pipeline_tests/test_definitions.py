"""The Dagster definitions on a real test instance: partitions, materialisations, GX checks as gates."""

from __future__ import annotations

import csv
import dataclasses
import io

import pandas as pd
import pytest
from dagster import AssetCheckKey, AssetKey, Definitions, MultiPartitionKey, instance_for_test
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from sact_pipeline.definitions import (
    DISCOVERY_JOB,
    MONTH_JOB,
    QUALITY_REPORT_JOB,
    REFRESH_JOB,
    TRUST_MONTH_JOB,
    build_definitions,
)
from sact_pipeline.layers import Pipeline
from sact_pipeline.trust_months import TrustMonthBuilder
from sact_pipeline.tables import (
    clean_activity,
    clean_file_versions,
    published_submissions,
    raw_submissions,
    trust_month_summary,
)
from sact_pipeline_tests.builders import patients, write_submission

JANUARY = "2024-01"


@pytest.fixture
def instance():
    with instance_for_test() as instance:
        yield instance


def run_all(defs: Definitions, instance, month=JANUARY, trusts=("RBV", "RR8")):
    assert defs.resolve_job_def(DISCOVERY_JOB).execute_in_process(instance=instance).success
    results = {}
    for trust in trusts:
        results[trust] = defs.resolve_job_def(TRUST_MONTH_JOB).execute_in_process(
            instance=instance, raise_on_error=False,
            partition_key=MultiPartitionKey({"month": f"{month}-01", "trust": trust}))
    results[month] = defs.resolve_job_def(MONTH_JOB).execute_in_process(
        instance=instance, raise_on_error=False, partition_key=f"{month}-01")
    return results


def check_status(instance, asset: str, check: str, partition: str):
    key = AssetCheckKey(AssetKey(asset), check)
    info = instance.event_log_storage.get_asset_check_partition_info([key])
    return {i.partition_key: i.latest_execution_status for i in info}.get(partition)


def test_definitions_load_with_every_layer_and_job(settings):
    defs = build_definitions(settings)
    Definitions.validate_loadable(defs)
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys == {"submission_files", "raw_submissions", "clean_activity", "trust_month_summary",
                    "published_submissions", "trust_month_data_quality", "data_quality_report"}
    for job in (DISCOVERY_JOB, TRUST_MONTH_JOB, MONTH_JOB, QUALITY_REPORT_JOB, REFRESH_JOB):
        assert defs.resolve_job_def(job)


def test_a_run_names_the_trusts_it_builds_in_typed_run_config_and_a_misspelt_option_is_refused(settings, instance):
    """The sensor and the command line narrow a trust-month run with run config, not tags: a run over
    the month's range builds only the trusts named, and an option Dagster does not know fails the launch
    (a misspelt tag was silently ignored)."""
    from dagster import DagsterInvalidConfigError

    from sact_pipeline.run_config import run_config_for
    from sact_pipeline.run_tags import trust_month_run

    for trust in ("RR8", "RBV"):
        write_submission(settings.landing_dir / f"SACT_{trust}_202401_20240210093000.csv", patients(trust, 5))
    defs = build_definitions(settings)
    assert defs.resolve_job_def(DISCOVERY_JOB).execute_in_process(instance=instance).success
    tags, options = trust_month_run(instance, JANUARY, ["RR8", "RBV"], affected_only=False)
    job = defs.resolve_job_def(TRUST_MONTH_JOB)
    config = run_config_for(TRUST_MONTH_JOB, **{**options, "trusts": ["RBV"]}, data_docs=False)
    assert config == {"ops": {"trust_month_layers": {"config": {"trusts": ["RBV"], "data_docs": False}}}}
    assert job.execute_in_process(instance=instance, tags=tags, run_config=config).success
    built = {str(key).split("|")[1] for key in instance.get_materialized_partitions(AssetKey("clean_activity"))}
    assert built == {"RBV"}

    with pytest.raises(DagsterInvalidConfigError, match="trust"):
        job.execute_in_process(instance=instance, tags=tags,
                               run_config={"ops": {"trust_month_layers": {"config": {"trust": ["RR8"]}}}})
    assert run_config_for(MONTH_JOB, trusts=["RR8"], rekey=True) == {}  # options a job's steps do not take


def test_materialise_trust_months_and_a_month_through_dagster(settings, instance):
    write_submission(settings.landing_dir / "SACT_RR8_202401_20240210093000.csv", patients("A", 12))
    write_submission(settings.landing_dir / "SACT_RBV_202401_20240310093000.csv", patients("B", 3))  # late
    defs = build_definitions(settings)
    results = run_all(defs, instance)
    assert all(result.success for result in results.values())
    assert set(instance.get_dynamic_partitions("trusts")) == {"RBV", "RR8"}

    partition = f"{JANUARY}-01|RR8"
    assert instance.get_latest_materialization_event(AssetKey("clean_activity")) is not None
    assert check_status(instance, "clean_activity", "gx_clean_activity", partition) == \
        AssetCheckExecutionRecordStatus.SUCCEEDED
    assert check_status(instance, "published_submissions", "gx_published_submissions", f"{JANUARY}-01") == \
        AssetCheckExecutionRecordStatus.SUCCEEDED

    pipeline = Pipeline(settings)
    csv_path, notes_path = pipeline.output_paths(JANUARY)
    table = pd.read_csv(csv_path, dtype=str, keep_default_na=False).set_index("org_code")
    assert list(table.index) == ["RBV", "RR8", "ENGLAND"]
    assert table.loc["RR8", ["submission_status", "patients", "drug_administrations"]].tolist() == \
        ["on_time", "10", "10"]
    assert table.loc["RBV", ["submission_status", "patients"]].tolist() == ["late", "*"]
    # [*, 10] allows totals 9..19, none of which pins the *: England 10 + 3 = 13 publishes as 15.
    assert table.loc["ENGLAND", "patients"] == "15"
    assert "National Disease Registration Service" in notes_path.read_text()
    warehouse_table = pipeline.warehouse.read(published_submissions, reporting_month=JANUARY)
    assert warehouse_table.set_index("org_code").loc["RR8", "patients"] == "10"


def test_the_publication_pack_holds_a_workbook_matching_the_csv_and_a_manifest(settings, instance):
    """The workbook: Notes sheet first (title, acknowledgement, definitions, footnotes), then the table
    with frozen header and filters, equal to the CSV cell for cell, numbers as numbers and markers as
    text. The manifest: every file of the pack with its SHA-256, and the submission files used."""
    import hashlib
    import json

    import openpyxl

    from sact_pipeline.domain.disclosure import NOTES_FOOTNOTES
    from sact_pipeline.domain.publication import ACKNOWLEDGEMENT

    write_submission(settings.landing_dir / "SACT_RR8_202401_20240210093000.csv", patients("A", 12))
    write_submission(settings.landing_dir / "SACT_RBV_202401_20240310093000.csv", patients("B", 3))
    write_submission(settings.landing_dir / "SACT_RQF_202401_20240210093000.csv", patients("W", 30))  # Welsh
    assert all(r.success for r in run_all(build_definitions(settings), instance, trusts=("RBV", "RR8", "RQF")).values())
    csv_path, notes_path = Pipeline(settings).output_paths(JANUARY)
    folder = csv_path.parent
    # The pack, and beside it (not in it) the trusts' own feedback files, to be sent to each trust.
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == [
        "sact_submissions_2024-01.csv", "sact_submissions_2024-01.html", "sact_submissions_2024-01.xlsx",
        "sact_submissions_2024-01_manifest.json", "sact_submissions_2024-01_notes.txt"]
    assert sorted(p.name for p in (folder / "feedback").iterdir()) == [
        "RBV_2024-01.csv", "RQF_2024-01.csv", "RR8_2024-01.csv"]

    book = openpyxl.load_workbook(folder / "sact_submissions_2024-01.xlsx")
    assert book.sheetnames == ["Notes", "Table"]
    notes = [row[0] for row in book["Notes"].iter_rows(values_only=True)]
    assert notes[0] == "SACT submissions: reporting month 2024-01" and ACKNOWLEDGEMENT in notes
    assert all(f"- {footnote}" in notes for footnote in NOTES_FOOTNOTES)
    assert any(line and line.startswith("- patients: distinct patients") for line in notes)
    assert [line or "" for line in notes] == notes_path.read_text().splitlines()

    sheet = book["Table"]
    assert sheet.freeze_panes == "A2" and sheet.auto_filter.ref == sheet.dimensions
    rows = list(sheet.iter_rows(values_only=True))
    csv_rows = list(csv.reader(io.StringIO(csv_path.read_text())))
    assert len(rows) == len(csv_rows) == 4  # header, RBV, RR8, ENGLAND: the Welsh trust (RQF) is not shown
    assert Pipeline(settings).warehouse.layer_states("clean").get((JANUARY, "RQF"))  # though it was processed
    header = list(rows[0])
    for row, csv_row in zip(rows, csv_rows):
        assert ["" if value is None else str(value) for value in row] == csv_row  # cell for cell
    rbv, rr8 = dict(zip(header, rows[1])), dict(zip(header, rows[2]))
    assert (rbv["patients"], rr8["patients"], rr8["drug_administrations"]) == ("*", 10, 10)  # text, numbers
    assert sheet.cell(row=3, column=header.index("patients") + 1).number_format == "#,##0"

    event = instance.get_latest_materialization_event(AssetKey("published_submissions")).asset_materialization
    assert event.metadata["england_patients"].value == 15  # a number: the UI plots it across months
    assert sorted(event.metadata["pack_files"].value.splitlines()) == sorted(str(p) for p in folder.iterdir()
                                                                             if p.is_file())
    assert event.metadata["pack_folder"].value == str(folder)

    pack = json.loads((folder / "sact_submissions_2024-01_manifest.json").read_text())
    assert {f["name"]: f["sha256"] for f in pack["files"]} == {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file() and p.suffix != ".json"}
    assert sorted(f["file_name"] for f in pack["built_from_submission_files"]) == [
        "SACT_RBV_202401_20240310093000.csv", "SACT_RR8_202401_20240210093000.csv"]


def test_a_failing_suite_blocks_publication_and_keeps_the_last_good_tables(settings, instance):
    write_submission(settings.landing_dir / "SACT_RR8_202401_20240210093000.csv", patients("A", 20))
    write_submission(settings.landing_dir / "SACT_RBV_202401_20240210093000.csv", patients("B", 20))
    defs = build_definitions(settings)
    assert all(r.success for r in run_all(defs, instance).values())
    pipeline = Pipeline(settings)
    csv_path, _ = pipeline.output_paths(JANUARY)
    published_before = csv_path.read_bytes()
    clean_before = pipeline.warehouse.read(clean_activity, reporting_month=JANUARY, trust_code="RR8")

    # A resubmission whose rows almost all fail mandatory checks: quarantine share over the limit.
    write_submission(settings.landing_dir / "SACT_RR8_202401_20240215093000.csv",
                     patients("A", 18, regimen="") + patients("C", 2))
    results = run_all(defs, instance, trusts=("RR8",))
    assert not results["RR8"].success
    partition = f"{JANUARY}-01|RR8"
    assert check_status(instance, "clean_activity", "gx_clean_activity", partition) == \
        AssetCheckExecutionRecordStatus.FAILED
    evaluation = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [AssetCheckKey(AssetKey("clean_activity"), "gx_clean_activity")]
    )[AssetCheckKey(AssetKey("clean_activity"), "gx_clean_activity")].event.dagster_event.event_specific_data
    # The layer's one gate names the suite that failed and the expectation, with counts only.
    assert "suite clean_reconciliation" in evaluation.metadata["failed"].value
    assert evaluation.metadata["clean_reconciliation: failed_expectations"].value >= 1
    failure = next(e for e in results["RR8"].all_events if e.is_step_failure)
    assert "quarantine_share" in failure.step_failure_data.error.message

    # The raw layer keeps both versions; the clean layer still holds the last good one.
    raw = pipeline.warehouse.read(raw_submissions, reporting_month=JANUARY, trust_code="RR8")
    assert raw["file_sha256"].nunique() == 2
    clean_after = pipeline.warehouse.read(clean_activity, reporting_month=JANUARY, trust_code="RR8")
    pd.testing.assert_frame_equal(clean_after, clean_before)
    versions = pipeline.warehouse.read(clean_file_versions, reporting_month=JANUARY, trust_code="RR8")
    assert len(versions) == 1
    # The month is not held back: it is published with RR8 held at its last good figures and the
    # failed check listed (names, never row values); RBV is published as before.
    assert results[JANUARY].success
    published = pd.read_csv(csv_path, dtype=str, keep_default_na=False).set_index("org_code")
    before = pd.read_csv(io.BytesIO(published_before), dtype=str, keep_default_na=False).set_index("org_code")
    assert published.loc["RR8", "data_status"] == "held" and before.loc["RR8", "data_status"] == "ok"
    assert published.drop(columns="data_status").equals(before.drop(columns="data_status"))
    html = pipeline.pack_paths(JANUARY)["html"].read_text()
    assert "Files that failed validation" in html and "clean_reconciliation" in html
    assert pipeline.status.affected_trust_months() == [(JANUARY, "RR8")]
    assert list(pipeline.status.held_trust_months()) == [(JANUARY, "RR8")]  # the sensor does not retry it

    # A corrected file releases the trust-month and the month.
    write_submission(settings.landing_dir / "SACT_RR8_202401_20240220093000.csv", patients("A", 19))
    results = run_all(defs, instance, trusts=("RR8",))
    assert results["RR8"].success and results[JANUARY].success
    assert pipeline.status.held_trust_months() == {} and pipeline.status.affected_trust_months() == []
    assert csv_path.read_bytes() != published_before


def test_a_failing_published_suite_keeps_the_last_publication(settings, instance):
    """A wrong upstream (a Welsh trust flagged English in the summary) must not reach the public."""
    import sqlalchemy as sa


    write_submission(settings.landing_dir / "SACT_RR8_202401_20240210093000.csv", patients("A", 20))
    write_submission(settings.landing_dir / "SACT_RQF_202401_20240210093000.csv", patients("W", 20))
    defs = build_definitions(settings)
    assert all(r.success for r in run_all(defs, instance, trusts=("RR8", "RQF")).values())
    pipeline = Pipeline(settings)
    csv_path, notes_path = pipeline.output_paths(JANUARY)
    before = (csv_path.read_bytes(), notes_path.read_bytes())
    table_before = pipeline.warehouse.read(published_submissions, reporting_month=JANUARY)
    assert "RQF" not in set(table_before["org_code"]) and "RQF" not in before[1].decode()

    with pipeline.warehouse.engine.begin() as connection:
        connection.execute(sa.update(trust_month_summary).where(trust_month_summary.c.org_code == "RQF")
                           .values(is_english=True))
    result = defs.resolve_job_def(MONTH_JOB).execute_in_process(
        instance=instance, raise_on_error=False, partition_key=f"{JANUARY}-01",
        asset_selection=[AssetKey("published_submissions")])
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "expect_column_values_to_be_in_set(org_code" in failure.step_failure_data.error.message
    assert check_status(instance, "published_submissions", "gx_published_submissions", f"{JANUARY}-01") == \
        AssetCheckExecutionRecordStatus.FAILED
    assert (csv_path.read_bytes(), notes_path.read_bytes()) == before
    pd.testing.assert_frame_equal(pipeline.warehouse.read(published_submissions, reporting_month=JANUARY),
                                  table_before)
    assert not list(csv_path.parent.glob(".*"))  # no temporary or backup file left behind


def test_the_latest_version_is_used_even_when_it_repeats_an_earlier_file(settings, instance):
    first = write_submission(settings.landing_dir / "SACT_RR8_202401_20240210093000.csv", patients("A", 20))
    write_submission(settings.landing_dir / "SACT_RR8_202401_20240211093000.csv", patients("A", 10))
    defs = build_definitions(settings)
    assert all(r.success for r in run_all(defs, instance, trusts=("RR8",)).values())
    pipeline = Pipeline(settings)
    summary_rows = pipeline.warehouse.read(published_submissions, reporting_month=JANUARY).set_index("org_code")
    assert summary_rows.loc["RR8", "patients"] == "10"

    resent = settings.landing_dir / "SACT_RR8_202401_20240212093000.csv"
    resent.write_bytes(first.read_bytes())  # the trust sends its first file again, as the correction
    assert pipeline.status.affected_trust_months() == []  # nothing changes until discovery registers the file
    results = run_all(defs, instance, trusts=("RR8",))
    assert all(r.success for r in results.values())
    table = pipeline.warehouse.read(published_submissions, reporting_month=JANUARY).set_index("org_code")
    assert table.loc["RR8", "patients"] == "20"
    assert table.loc["RR8", "submitted_at"] == "2024-02-12T09:30:00"
    versions = pipeline.warehouse.read(clean_file_versions, reporting_month=JANUARY, trust_code="RR8")
    assert len(versions) == 3 and versions["in_use"].sum() == 1


def test_files_from_a_trusts_sites_add_up_and_each_site_resubmits_its_own(settings, instance):
    write_submission(settings.landing_dir / "SACT_RR801_202401_20240210093000.csv", patients("A", 12))
    write_submission(settings.landing_dir / "SACT_RR802_202401_20240211093000.csv", patients("B", 30))
    defs = build_definitions(settings)
    assert all(r.success for r in run_all(defs, instance, trusts=("RR8",)).values())
    pipeline = Pipeline(settings)
    table = pipeline.warehouse.read(published_submissions, reporting_month=JANUARY).set_index("org_code")
    assert table.loc["RR8", "patients"] == "40"  # 42 patients from two sites, not one site's file

    write_submission(settings.landing_dir / "SACT_RR801_202401_20240215093000.csv", patients("A", 20))
    assert all(r.success for r in run_all(defs, instance, trusts=("RR8",)).values())
    table = pipeline.warehouse.read(published_submissions, reporting_month=JANUARY).set_index("org_code")
    assert table.loc["RR8", ["patients", "submitted_at"]].tolist() == ["50", "2024-02-15T09:30:00"]
    summary = pipeline.warehouse.read(trust_month_summary, reporting_month=JANUARY).set_index("org_code")
    assert summary.loc["RR8", "versions_received"] == 3
    assert summary.loc["RR8", "patients_resubmission_change"] == 8  # the site's 12 patients became 20
    clean = pipeline.warehouse.read(clean_activity, reporting_month=JANUARY, trust_code="RR8")
    assert clean["file_sha256"].nunique() == 2 and len(clean) == 50


def test_a_month_of_trusts_is_validated_together_and_a_failing_trust_is_pinned(settings, instance):
    from sact_pipeline.layers import CLEAN, RAW, LayerGateFailed

    for trust, rows in (("RR8", patients("A", 20)), ("RBV", patients("B", 20)),
                        ("RAJ", patients("C", 18, regimen="") + patients("D", 2))):  # RAJ quarantines 90%
        write_submission(settings.landing_dir / f"SACT_{trust}_202401_20240210093000.csv", rows)
    assert build_definitions(settings).resolve_job_def(DISCOVERY_JOB).execute_in_process(instance=instance).success
    pipeline = Pipeline(settings)
    built = pipeline.build_trust_months(JANUARY, ["RR8", "RBV", "RAJ"])
    # raw: 2 suites, one run each for the three; clean: clean_activity passes together (1 run), the
    # reconciliation fails together and is then run per trust-month (1 + 3); data quality: one run for
    # the two trust-months whose clean layer was written.
    assert pipeline.measurements.suite_runs == 2 + 1 + 4 + 1
    assert all(not isinstance(r, Exception) for r in built[RAW].values())
    assert isinstance(built[CLEAN]["RAJ"], LayerGateFailed) and "clean_reconciliation" in str(built[CLEAN]["RAJ"])
    assert [built[CLEAN][t].rows for t in ("RR8", "RBV")] == [20, 20]
    assert pipeline.status.affected_trust_months() == [(JANUARY, "RAJ")]  # the others are written
    assert {s.rows for s in built[CLEAN]["RR8"].suites} == {20, 1}  # each sees its own rows, not the batch


def test_trust_months_are_batched_by_registered_rows(settings, instance, monkeypatch):
    from sact_pipeline.layers import CLEAN

    for trust in ("RR8", "RBV", "RAJ"):
        write_submission(settings.landing_dir / f"SACT_{trust}_202401_20240210093000.csv", patients(trust, 10))
    assert build_definitions(settings).resolve_job_def(DISCOVERY_JOB).execute_in_process(instance=instance).success
    pipeline = Pipeline(settings)
    monkeypatch.setattr(TrustMonthBuilder, "BATCH_ROWS", 15)  # one trust per batch: memory bounded by the largest trust
    built = pipeline.build_trust_months(JANUARY, ["RR8", "RBV", "RAJ"])
    assert pipeline.measurements.suite_runs == 3 * 5  # raw 2, clean 2, data quality 1
    assert sorted(built[CLEAN]) == ["RAJ", "RBV", "RR8"] and pipeline.status.affected_trust_months() == []


def test_a_large_month_built_by_worker_processes_equals_one_process_build(warehouse_url, tmp_path, instance,
                                                                          monkeypatch):
    """A month above PARALLEL_MIN_ROWS is built batch by batch in worker processes that write their own
    trust-months: the warehouse must hold exactly what one process builds, a gate failure must come back
    whole (its suites and reason) and leave the trust-month unwritten, and the timings come home."""
    from sact_pipeline.domain.pseudonymise import Pseudonymiser
    from sact_pipeline.layers import CLEAN, QUALITY, RAW, LayerGateFailed
    from sact_pipeline.settings import Settings
    from sact_pipeline.tables import (
        clean_data_quality,
        clean_findings,
        clean_item_quality,
        clean_quarantine,
        quality_findings,
        quality_items,
    )

    monkeypatch.setattr(TrustMonthBuilder, "PARALLEL_MIN_ROWS", 0)  # these few rows count as a large month
    monkeypatch.setattr(TrustMonthBuilder, "BATCH_ROWS", 60)  # two workers: batches of at most 30 rows, 3 batches
    trusts = {"RR8": patients("A", 25) + patients("Q", 2, regimen="") + patients("A", 1),  # quarantine, duplicate
              "RBV": patients("B", 20), "RAJ": patients("C", 18, regimen="") + patients("D", 2)}  # RAJ fails
    tables = (raw_submissions, clean_activity, clean_quarantine, clean_data_quality, clean_file_versions,
              clean_item_quality, clean_findings, quality_items, quality_findings)
    built, stored = {}, {}
    for workers, url in ((2, warehouse_url), (1, f"sqlite:///{tmp_path / 'one-process.db'}")):
        settings = Settings.from_env(env={}, home=str(tmp_path / f"sact-{workers}"), first_month="2024-01",
                                     warehouse_url=url, workers=workers)
        for trust, rows in trusts.items():
            write_submission(settings.landing_dir / f"SACT_{trust}_202401_20240210093000.csv", rows)
        assert build_definitions(settings).resolve_job_def(DISCOVERY_JOB).execute_in_process(instance=instance).success
        # The run's key is not the one in the environment the workers inherit: they must use the run's.
        pipeline = Pipeline(settings, pseudonymiser=Pseudonymiser(b"the run's own key, not in the environment!"))
        built[workers] = pipeline.build_trust_months(JANUARY, list(trusts))
        measured = pipeline.measurements  # the workers' figures come home
        assert measured.suite_runs > 0 and measured.stage_seconds["clean and pseudonymise"] > 0
        assert bool(measured.worker_peak_mb) == (workers > 1)
        assert pipeline.status.affected_trust_months() == [(JANUARY, "RAJ")]  # the others are written, RAJ is not
        stored[workers] = {t.name: pipeline.warehouse.read(t, reporting_month=JANUARY) for t in tables}
        if workers == 2:
            assert pipeline.trust_months._pool._processes, "the month was not built in worker processes"
            pipeline.dispose()
            assert pipeline.trust_months._pool is None

    failure = built[2][CLEAN]["RAJ"]
    assert isinstance(failure, LayerGateFailed) and "clean_reconciliation" in str(failure)
    assert failure.outcome.failures() == built[1][CLEAN]["RAJ"].outcome.failures()
    for layer in (RAW, CLEAN, QUALITY):
        assert sorted(built[2][layer]) == sorted(trusts if layer != QUALITY else ("RR8", "RBV"))
        for trust in ("RR8", "RBV"):
            two, one = (_comparable(built[n][layer][trust].metadata) for n in (2, 1))
            assert two == one
            if "table" in built[1][layer][trust].metadata:
                pd.testing.assert_frame_equal(built[2][layer][trust].metadata["table"],
                                              built[1][layer][trust].metadata["table"])
    for name, frame in stored[2].items():
        keys = [c for c in ("trust_code", "file_name", "row_number", "item", "patient_key", "drug_name")
                if c in frame]
        pd.testing.assert_frame_equal(frame.sort_values(keys, ignore_index=True),
                                      stored[1][name].sort_values(keys, ignore_index=True), obj=name)
    assert len(stored[2]["clean_activity"]) == 25 + 20 and len(stored[2]["clean_quarantine"]) == 2


def _comparable(metadata: dict) -> dict:
    """Metadata of two builds in two homes: without the paths (feedback file, Data Docs page) and tables."""
    return {k: v for k, v in metadata.items() if k != "table" and not k.startswith("data_docs")
            and not k.endswith("_path")}


def test_an_error_in_a_worker_stops_the_month_after_reporting_what_was_written(settings, instance, monkeypatch):
    """A worker's unexpected error (here the database refusing clean rows) reaches the step with the
    worker's traceback, after the trust-months already written are reported; no batch starts after it,
    and none is still writing when the step fails (a retry must not race it)."""
    import sqlalchemy as sa

    from sact_pipeline.layers import RAW
    from sact_pipeline.trust_months import WorkerTraceback

    monkeypatch.setattr(TrustMonthBuilder, "PARALLEL_MIN_ROWS", 0)
    monkeypatch.setattr(TrustMonthBuilder, "BATCH_ROWS", 20)  # two workers, batches of one trust: three batches
    for trust in ("RR8", "RBV", "RAJ"):
        write_submission(settings.landing_dir / f"SACT_{trust}_202401_20240210093000.csv", patients(trust, 10))
    assert build_definitions(settings).resolve_job_def(DISCOVERY_JOB).execute_in_process(instance=instance).success
    pipeline = Pipeline(dataclasses.replace(settings, workers=2))
    with pipeline.warehouse.engine.begin() as connection:
        connection.exec_driver_sql("CREATE TRIGGER refuse_clean BEFORE INSERT ON clean_activity "
                                   "BEGIN SELECT RAISE(ABORT, 'clean rows refused by the test'); END")

    reported = []
    with pytest.raises(sa.exc.IntegrityError, match="clean rows refused by the test") as raised:
        for layer, trust, result in pipeline.iter_trust_months(JANUARY, ["RR8", "RBV", "RAJ"]):
            reported.append((layer, trust, type(result).__name__))
    assert isinstance(raised.value.__cause__, WorkerTraceback)
    assert "in worker process" in str(raised.value.__cause__) and "_build_batch" in str(raised.value.__cause__)
    assert raised.value.params is None  # the rows being written never travel back
    # The two batches being built were reported (raw written, clean refused); the third never started.
    assert sorted(reported) == [(RAW, "RBV", "LayerOutcome"), (RAW, "RR8", "LayerOutcome")]
    assert sorted(pipeline.warehouse.layer_states(RAW)) == [(JANUARY, "RBV"), (JANUARY, "RR8")]
    assert pipeline.warehouse.layer_states("clean") == {}


def test_clean_from_raw_rows_in_memory_equals_clean_from_raw_read_back(warehouse_url, tmp_path, instance):
    """Clean takes the rows raw has just loaded in the same run (no read back); it must build exactly
    what it builds from the raw layer as stored, on either warehouse: dates, codes, quarantine and all."""
    from sact_pipeline.tables import clean_data_quality, clean_quarantine

    from sact_pipeline.settings import Settings

    settings = Settings.from_env(env={}, home=str(tmp_path / "sact"), first_month="2024-01",
                                 warehouse_url=warehouse_url)
    write_submission(settings.landing_dir / "SACT_RR8_202401_20240210093000.csv",
                     patients("A", 12) + patients("Q", 2, regimen="") + patients("A", 1))  # quarantine, duplicate
    write_submission(settings.landing_dir / "SACT_RBV_202401_20240210093000.csv", patients("B", 5))
    assert build_definitions(settings).resolve_job_def(DISCOVERY_JOB).execute_in_process(instance=instance).success
    pipeline = Pipeline(settings)
    tables = (clean_activity, clean_quarantine, clean_data_quality, clean_file_versions)

    def stored(trust):
        return {t.name: pipeline.warehouse.read(t, reporting_month=JANUARY, trust_code=trust) for t in tables}

    built = pipeline.build_trust_months(JANUARY, ["RR8", "RBV"])  # raw and clean in one go: the handoff
    assert all(not isinstance(r, Exception) for layer in built.values() for r in layer.values())
    in_memory = {trust: stored(trust) for trust in ("RR8", "RBV")}
    assert len(in_memory["RR8"]["clean_activity"]) == 12 and len(in_memory["RR8"]["clean_quarantine"]) == 2

    for trust in ("RR8", "RBV"):
        pipeline.clean(JANUARY, trust)  # clean alone: reads raw back from the warehouse
        for name, frame in stored(trust).items():
            pd.testing.assert_frame_equal(frame, in_memory[trust][name], obj=f"{trust} {name}")
