"""The monthly cycle as NDRS lives it, end to end on real files through Dagster (SQLite and PostgreSQL),
with the clock injected (no sleeping): a month is provisional until its deadline, with trusts not yet due;
it turns final at the first refresh after the deadline with no new file; and one trust's bad file never
holds back its month: the trust is published held (its last good figures) or unusable (none), the
refresh fails naming it, and a corrected file releases it."""

from __future__ import annotations

import re
from datetime import date

import pandas as pd
import pytest

from sact_pipeline.cli import _run_and_report
from sact_pipeline.domain.counting import MEASURES
from sact_pipeline.layers import Pipeline
from sact_pipeline.settings import Settings
from sact_pipeline.tables import published_submissions, trust_month_summary
from sact_pipeline_tests.builders import dated_patients, write_submission
from sact_pipeline_tests.support import published

pytestmark = pytest.mark.usefixtures("isolated_environment")


def failing(prefix: str, day: str) -> list[dict]:
    """Rows that almost all lack a regimen: quarantined over the limit, so the clean gate fails."""
    return [{**row, "regimen": ""} for row in dated_patients(prefix, 18, day)] + dated_patients(f"{prefix}X", 2, day)


def refresh_on(settings: Settings, today: date, capsys) -> tuple[int, str, str]:
    """`sact-pipeline refresh` as run on `today`: its exit code, stdout and stderr."""
    pipeline = Pipeline(settings, today=today)
    try:
        code = _run_and_report(settings, pipeline=pipeline)
    finally:
        pipeline.dispose()
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def rows(home, month: str) -> dict[str, dict[str, str]]:
    return published(home, month).set_index("org_code").to_dict("index")


def test_provisional_months_turn_final_and_one_trusts_bad_file_never_holds_back_its_month(
        tmp_path, warehouse_url, capsys):
    settings = Settings.from_env(env={}, home=str(tmp_path / "sact"), first_month="2024-01",
                                 warehouse_url=warehouse_url)
    home, landing = settings.home, settings.landing_dir
    for trust, count in (("RR8", 20), ("RBV", 30), ("RAJ", 25)):
        write_submission(landing / f"SACT_{trust}_202401_20240210093000.csv",
                         dated_patients(trust[1:], count, "2024-01-15"))
    write_submission(landing / "SACT_RR8_202402_20240305093000.csv", dated_patients("R8", 20, "2024-02-12"))
    write_submission(landing / "SACT_RBV_202402_20240306093000.csv", dated_patients("BV", 30, "2024-02-12"))

    # 20 March: February's deadline (31 March) has not passed. RAJ is not yet due, which is no failure.
    code, out, err = refresh_on(settings, date(2024, 3, 20), capsys)
    assert code == 0, err
    # the summary printed: month, status, trusts, on time, late, missing, not yet due
    assert re.search(r"^2024-02 +provisional +3 +2 +0 +0 +1 ", out, re.MULTILINE), out
    february = rows(home, "2024-02")
    assert {r["month_status"] for r in february.values()} == {"provisional"}
    assert rows(home, "2024-01")["ENGLAND"]["month_status"] == "final"
    assert (february["RAJ"]["submission_status"], february["RAJ"]["data_status"]) == ("not_yet_due", "")
    assert february["RR8"]["data_status"] == "ok" and february["ENGLAND"]["patients"] == "50"
    assert all(february["ENGLAND"][f"{m}_change"] == "" for m in MEASURES)  # not like for like yet
    assert february["RR8"]["patients_change"] == "0"  # a trust's change is as ever
    pack = Pipeline(settings).pack_paths("2024-02")
    html, notes = pack["html"].read_text(), pack["notes"].read_text()
    assert "Provisional." in html and "until 2024-03-31" in html and "Not yet due" in html
    assert "PROVISIONAL: trusts may send this month on time until 2024-03-31" in notes
    january_csv = Pipeline(settings).output_paths("2024-01")[0]
    january_before = january_csv.read_bytes()

    # 1 April, nothing new: the deadline passing alone re-publishes February as final.
    code, out, err = refresh_on(settings, date(2024, 4, 1), capsys)
    assert code == 0, err
    assert "month 2024-02: published" in out and "month 2024-01: published" not in out
    february = rows(home, "2024-02")
    assert {r["month_status"] for r in february.values()} == {"final"}
    assert february["RAJ"]["submission_status"] == "missing"
    assert february["ENGLAND"]["patients_change"] == "-25"  # 50 against January's 75
    assert january_csv.read_bytes() == january_before
    assert "Provisional." not in pack["html"].read_text()
    code, out, _ = refresh_on(settings, date(2024, 4, 2), capsys)  # again: nothing to do
    assert code == 0 and not re.search(r"month \d{4}-\d{2}: published", out)

    # 20 April: March arrives with RAJ's first file failing its gate; February gets a bad resubmission
    # from RR8 and RAJ's late first file. Both months are published; the refresh fails naming both.
    write_submission(landing / "SACT_RR8_202403_20240410093000.csv", dated_patients("R8", 35, "2024-03-11"))
    write_submission(landing / "SACT_RBV_202403_20240410093000.csv", dated_patients("BV", 30, "2024-03-11"))
    write_submission(landing / "SACT_RAJ_202403_20240412093000.csv", failing("AJ", "2024-03-11"))
    write_submission(landing / "SACT_RR8_202402_20240415093000.csv", failing("R8", "2024-02-12"))
    write_submission(landing / "SACT_RAJ_202402_20240416093000.csv", dated_patients("AJ", 25, "2024-02-14"))
    code, out, err = refresh_on(settings, date(2024, 4, 20), capsys)
    assert code == 1
    assert "FAILED RR8 2024-02: newest file failed a gate" in err and "clean_reconciliation" in err
    assert "FAILED RAJ 2024-03: newest file failed a gate" in err
    assert "month 2024-02: published" in out and "month 2024-03: published" in out
    assert "RR8: held (its newest file failed a gate)" in out and "RAJ: unusable (no usable version)" in out
    february, march = rows(home, "2024-02"), rows(home, "2024-03")
    held = february["RR8"]  # its last good version's figures, status and time
    assert (held["data_status"], held["patients"], held["submitted_at"], held["submission_status"]) == (
        "held", "20", "2024-03-05T09:30:00", "on_time")
    assert (february["RAJ"]["submission_status"], february["RAJ"]["data_status"],
            february["RAJ"]["patients"]) == ("late", "ok", "25")
    assert february["ENGLAND"]["patients"] == "75" and february["ENGLAND"]["month_status"] == "final"
    unusable = march["RAJ"]  # counted 0, its newest version's time, its status from its first arrival
    assert (unusable["data_status"], unusable["patients"], unusable["patients_change"],
            unusable["submitted_at"], unusable["submission_status"]) == (
        "unusable", "", "", "2024-04-12T09:30:00", "on_time")
    assert march["ENGLAND"]["patients"] == "65" and march["ENGLAND"]["month_status"] == "provisional"
    assert (march["RR8"]["data_status"], march["RBV"]["data_status"]) == ("ok", "ok")
    march_html = Pipeline(settings).pack_paths("2024-03")["html"].read_text()
    listed = march_html.split('id="not-used"')[1].split("</table>")[0]
    assert "RAJ" in listed and "Unusable" in listed and "clean_reconciliation" in listed and "RR8" not in listed
    assert "unexpected of" not in march_html  # the failed check by name: its counts are not rule-R protected
    # what the planner, the data-quality report and the warehouse say agrees with the published files
    pipeline = Pipeline(settings, today=date(2024, 4, 20))
    assert set(pipeline.status.held_trust_months()) == {("2024-02", "RR8"), ("2024-03", "RAJ")}
    stored = pipeline.warehouse.read(published_submissions, reporting_month="2024-03").set_index("org_code")
    assert stored.loc["RAJ", "data_status"] == "unusable"
    summary = pipeline.warehouse.read(trust_month_summary, reporting_month="2024-02").set_index("org_code")
    assert "clean_reconciliation" in summary.loc["RR8", "data_status_reason"]
    report = pipeline.quality_report_paths("2024-03")
    table = pd.read_csv(report["table"], dtype=str, keep_default_na=False).set_index("org_code")
    assert "RAJ" not in table.index and table.loc["RR8", "data_status"] == "ok"  # RAJ: nothing to assess
    listed = report["html"].read_text().split('id="not-used"')[1].split("</table>")[0]
    assert "RAJ" in listed and "Unusable" in listed and "clean_reconciliation" in listed
    february_report = pd.read_csv(pipeline.quality_report_paths("2024-02")["table"], dtype=str).set_index("org_code")
    assert february_report.loc["RR8", "data_status"] == "held"  # assessed on its last good version
    pipeline.dispose()

    # 21 April: corrected files release both at once.
    write_submission(landing / "SACT_RR8_202402_20240421080000.csv", dated_patients("R8", 40, "2024-02-12"))
    write_submission(landing / "SACT_RAJ_202403_20240421080000.csv", dated_patients("AJ", 25, "2024-03-11"))
    code, out, err = refresh_on(settings, date(2024, 4, 21), capsys)
    assert code == 0, err
    february, march = rows(home, "2024-02"), rows(home, "2024-03")
    assert (february["RR8"]["data_status"], february["RR8"]["patients"]) == ("ok", "40")
    assert (march["RAJ"]["data_status"], march["RAJ"]["patients"], march["RAJ"]["submission_status"]) == (
        "ok", "25", "on_time")
    assert march["ENGLAND"]["patients"] == "90" and february["ENGLAND"]["patients"] == "95"
    assert 'id="not-used"' not in Pipeline(settings).pack_paths("2024-03")["html"].read_text()


def test_a_held_trust_whose_last_good_rows_hold_a_patient_who_since_opted_out_is_published_unusable(
        tmp_path, capsys):
    """Its last good version cannot be re-derived without the patient until a corrected file arrives, so
    its figures are not published (never counting the patient); the rest of the month is."""
    settings = Settings.from_env(env={}, home=str(tmp_path / "sact"), first_month="2024-01")
    opted = [{**row, "nhs_number": "9434765919", "local_patient_identifier": ""}
             for row in dated_patients("OO", 2, "2024-01-15")]
    write_submission(settings.landing_dir / "SACT_RR8_202401_20240210093000.csv",
                     dated_patients("R8", 20, "2024-01-15") + opted)
    write_submission(settings.landing_dir / "SACT_RBV_202401_20240210093000.csv", dated_patients("BV", 30, "2024-01-15"))
    code, _, err = refresh_on(settings, date(2024, 3, 20), capsys)
    assert code == 0, err
    assert rows(settings.home, "2024-01")["RR8"]["patients"] == "20"  # 21 patients, rounded

    # Its correction fails its gate: held at its last good figures, which still count the patient...
    write_submission(settings.landing_dir / "SACT_RR8_202401_20240321093000.csv", failing("R8", "2024-01-15"))
    code, _, err = refresh_on(settings, date(2024, 3, 21), capsys)
    assert code == 1 and "FAILED RR8 2024-01" in err
    assert (rows(settings.home, "2024-01")["RR8"]["data_status"], rows(settings.home, "2024-01")["RR8"]["patients"]) \
        == ("held", "20")
    # ...until the patient opts out: those rows cannot be re-derived without them, so nothing of RR8 is counted.
    settings.optout_dir.mkdir(parents=True, exist_ok=True)
    (settings.optout_dir / "optouts_20240322.csv").write_text("NHS_Number\n943 476 5919\n")
    code, out, err = refresh_on(settings, date(2024, 3, 22), capsys)
    assert code == 1 and "FAILED RR8 2024-01" in err and "month 2024-01: published" in out
    january = rows(settings.home, "2024-01")
    assert (january["RR8"]["data_status"], january["RR8"]["patients"]) == ("unusable", "")
    assert (january["RBV"]["data_status"], january["RBV"]["patients"]) == ("ok", "30")
    pipeline = Pipeline(settings)
    published_html = pipeline.pack_paths("2024-01")["html"].read_text()
    internal_html = pipeline.quality_report_paths("2024-01")["html"].read_text()
    assert "clean_reconciliation" in published_html.split('id="not-used"')[1]
    assert "opted out" not in published_html  # said to NDRS staff only
    assert "opted out of registration" in internal_html.split('id="not-used"')[1]
    pipeline.dispose()
