"""Counting, timeliness, the trust-month summary and the published table built from it."""

from datetime import date, datetime

import pandas as pd
import pytest

from sact_pipeline.domain.disclosure import NOTES_FOOTNOTES
from sact_pipeline.domain.counting import (
    MEASURES,
    count_activity,
    month_status,
    months_up_to,
    submission_deadline,
    submission_status,
)
from sact_pipeline.domain.organisations import OrganisationRegister
from sact_pipeline.domain.publication import ACKNOWLEDGEMENT, PUBLISHED_COLUMNS, notes_text, publish_month
from sact_pipeline.domain.summary import summarise_month, trust_measures

ORGANISATIONS = OrganisationRegister.from_ods_etr()


def activity(rows):
    frame = pd.DataFrame(rows, columns=["trust", "patient_key", "regimen", "start_date_of_regimen", "cycle_number",
                                        "start_date_of_cycle"])
    return frame


def test_months_up_to_run_back_across_a_year():
    assert months_up_to("2024-02", 4) == ["2023-11", "2023-12", "2024-01", "2024-02"]
    assert months_up_to("2024-02", 13)[0] == "2023-02" and len(months_up_to("2024-02", 13)) == 13


def test_counts_follow_the_definitions():
    clean = activity([
        ("RR8", "p1", "FEC-T", "2024-01-01", 1, "2024-01-01"),
        ("RR8", "p1", " fec-t ", "2024-01-01", 1, "2024-01-01"),  # same regimen and cycle, another drug
        ("RR8", "p1", "FEC-T", "2024-01-01", 2, "2024-01-22"),
        ("RR8", "p1", "AC", "2024-01-05", 1, "2024-01-05"),
        ("RR8", "p2", "FEC-T", "2024-01-01", 1, "2024-01-01"),  # same regimen name, another patient
        ("RBV", "p1", "FEC-T", "2024-01-01", 1, "2024-01-01"),
    ])
    counts = count_activity(clean, ["trust"]).set_index("trust")
    assert counts.loc["RR8"].tolist() == [2, 3, 4, 5]
    assert counts.loc["RBV"].tolist() == [1, 1, 1, 1]


@pytest.mark.parametrize("received, status", [
    (datetime(2024, 2, 29, 23, 59), "on_time"),
    (datetime(2024, 3, 1, 0, 0), "late"),
    (None, "missing"),
])
def test_status_is_judged_on_the_deadline(received, status):
    assert submission_deadline("2024-01") == datetime(2024, 3, 1)
    assert submission_status(received, "2024-01") == status
    assert submission_deadline("2024-12", 2) == datetime(2025, 3, 1)


def files_frame(rows):
    return pd.DataFrame(rows, columns=["trust_code", "reporting_month", "submitted_at", "sha256"])


def versions_frame(rows):
    columns = ["trust_code", "file_sha256", "submitted_at", "in_use", "patients", "regimens", "cycles",
               "drug_administrations", "raw_rows", "quarantined_rows", "duplicate_rows", "data_quality_findings"]
    return pd.DataFrame(rows, columns=columns)


def test_summary_lists_every_trust_seen_so_far_with_status_and_resubmission_change():
    files = files_frame([
        ("RR8", "2024-01", pd.Timestamp("2024-02-10"), "a"),
        ("RR8", "2024-02", pd.Timestamp("2024-04-02"), "b"),  # late first version
        ("RR8", "2024-02", pd.Timestamp("2024-04-09"), "c"),  # its correction
        ("RBV", "2024-01", pd.Timestamp("2024-02-10"), "d"),  # did not submit February
        ("RQF", "2024-02", pd.Timestamp("2024-03-10"), "e"),  # Welsh
        ("RAJ", "2024-03", pd.Timestamp("2024-04-10"), "f"),  # not yet submitting in February
    ])
    clean = activity([("RR8", "p1", "AC", "2024-02-01", 1, "2024-02-01"),
                      ("RR8", "p2", "AC", "2024-02-01", 1, "2024-02-01"),
                      ("RQF", "p9", "AC", "2024-02-01", 1, "2024-02-01")])
    versions = versions_frame([
        ("RR8", "b", pd.Timestamp("2024-04-02"), False, 1, 1, 1, 1, 3, 1, 1, 0),
        ("RR8", "c", pd.Timestamp("2024-04-09"), True, 2, 2, 2, 2, 2, 0, 0, 4),
        ("RQF", "e", pd.Timestamp("2024-03-10"), True, 1, 1, 1, 1, 1, 0, 0, 0),
    ])
    measures = trust_measures(versions, clean.rename(columns={"trust": "trust_code"}).iloc[:0])
    summary = summarise_month("2024-02", files, measures, versions, ORGANISATIONS).set_index("org_code")
    assert list(summary.index) == ["RBV", "RQF", "RR8"]
    rr8 = summary.loc["RR8"]
    assert rr8["submission_status"] == "late" and rr8["versions_received"] == 2
    assert rr8["submitted_at"] == pd.Timestamp("2024-04-09")
    assert (rr8["patients"], rr8["drug_administrations"], rr8["data_quality_findings"]) == (2, 2, 4)
    assert rr8["patients_resubmission_change"] == 1
    assert summary.loc["RBV", "submission_status"] == "missing" and pd.isna(summary.loc["RBV", "patients"])
    assert summary.loc["RQF", "country"] == "Wales" and not summary.loc["RQF", "is_english"]
    assert pd.isna(summary.loc["RQF", "patients_resubmission_change"])


def test_measures_come_from_the_file_in_use_and_sites_sharing_a_trust_are_counted_from_rows():
    """One file in use: its measures as counted when cleaned (no rows needed). A trust whose sites each
    send a file: counted from the clean rows, so a patient seen at both sites counts once, not twice."""
    versions = versions_frame([
        ("RR8", "a", pd.Timestamp("2024-02-05"), True, 2, 2, 2, 3, 3, 0, 0, 0),
        ("RR8", "b", pd.Timestamp("2024-02-06"), True, 2, 2, 2, 2, 2, 0, 0, 0),  # its site, p1 again
        ("RBV", "c", pd.Timestamp("2024-02-01"), False, 9, 9, 9, 9, 9, 0, 0, 0),  # replaced by d
        ("RBV", "d", pd.Timestamp("2024-02-07"), True, 5, 6, 7, 8, 8, 0, 0, 0),
    ])
    rows = activity([("RR8", "p1", "AC", "2024-02-01", 1, "2024-02-01"),
                     ("RR8", "p1", "AC", "2024-02-01", 1, "2024-02-01"),
                     ("RR8", "p2", "AC", "2024-02-01", 1, "2024-02-01"),
                     ("RR8", "p1", "AC", "2024-02-01", 1, "2024-02-01"),  # the site's file: the same patient
                     ("RR8", "p3", "AC", "2024-02-01", 1, "2024-02-01")]).rename(columns={"trust": "trust_code"})
    measures = trust_measures(versions, rows).set_index("trust_code")
    assert measures.loc["RR8"].tolist() == [3, 3, 3, 5]  # not 2 + 2 patients
    assert measures.loc["RBV"].tolist() == [5, 6, 7, 8] and len(measures) == 2


def summary_rows(month, rows):
    """rows: (org_code, status, patients, regimens, cycles, drug_administrations, is_english)."""
    records = []
    for code, status, *counts, english in rows:
        records.append({"reporting_month": month, "org_code": code, "org_name": f"Trust {code}",
                        "is_english": english, "submission_status": status,
                        "submitted_at": pd.Timestamp(f"{month}-28") if counts[0] is not None else pd.NaT,
                        **dict(zip(["patients", "regimens", "cycles", "drug_administrations"], counts))})
    frame = pd.DataFrame(records)
    for m in ["patients", "regimens", "cycles", "drug_administrations"]:
        frame[m] = frame[m].astype("Int64")
    return frame


def test_published_table_applies_rule_r_and_changes_come_from_published_values():
    previous = summary_rows("2024-01", [("RAA", "on_time", 12, 12, 12, 12, True),
                                        ("RBB", "on_time", 13, 13, 13, 13, True),
                                        ("RCC", "on_time", 100, 100, 100, 100, True),
                                        ("RQF", "on_time", 50, 50, 50, 50, False)])
    current = summary_rows("2024-02", [("RAA", "on_time", 13, 13, 13, 13, True),
                                       ("RBB", "late", 12, 12, 12, 12, True),
                                       ("RCC", "missing", None, None, None, None, True),
                                       ("RDD", "on_time", 3, 3, 3, 3, True),
                                       ("RQF", "on_time", 60, 60, 60, 60, False)])
    table = publish_month(current, previous).set_index("org_code")
    assert list(table.columns) == [c for c in PUBLISHED_COLUMNS if c != "org_code"]
    assert list(table.index) == ["RAA", "RBB", "RCC", "RDD", "ENGLAND"]  # Welsh trust never published
    assert table.loc["RAA", ["patients", "patients_change"]].tolist() == ["15", "5"]
    assert table.loc["RBB", ["patients", "patients_change"]].tolist() == ["10", "-5"]
    assert table.loc["RCC", ["patients", "patients_change", "submitted_at"]].tolist() == ["", "", ""]
    assert table.loc["RDD", ["patients", "patients_change"]].tolist() == ["*", ""]
    # Published cells [15, 10, missing, *] allow totals 22..36; a total of 22 would publish as 20 and
    # pin the * at exactly 1, so England is withheld, and so is its change.
    assert table.loc["ENGLAND", ["patients", "patients_change"]].tolist() == ["[c]", "[c]"]
    without_small = publish_month(current.loc[current["org_code"] != "RDD"], previous).set_index("org_code")
    assert without_small.loc["ENGLAND", ["patients", "patients_change"]].tolist() == ["25", "-100"]
    assert table.loc["ENGLAND", "submission_status"] == ""


def test_notes_carry_the_acknowledgement_footnotes_and_file_versions():
    text = notes_text("2024-02", datetime(2024, 3, 5, 8, 0), ["SACT_RR8_202402_20240305080000.csv abc123"])
    assert ACKNOWLEDGEMENT in text
    for footnote in NOTES_FOOTNOTES:
        assert f"- {footnote}" in text
    assert "SACT_RR8_202402_20240305080000.csv abc123" in text


def test_the_workbook_keeps_text_as_text_even_when_it_looks_like_a_formula(tmp_path):
    """Names come from the ODS file: '=...' must not become a formula, nor '#N/A' an error cell."""
    import io

    import openpyxl

    from sact_pipeline.domain.pack import workbook_bytes

    current = summary_rows("2024-02", [("RAA", "on_time", 13, 13, 13, 13, True)])
    current["org_name"] = ['=HYPERLINK("http://example.org","x")\x07']
    table = publish_month(current, None)
    table.loc[table["org_code"] == "ENGLAND", "org_name"] = "#N/A"
    book = openpyxl.load_workbook(io.BytesIO(workbook_bytes(table, "notes", datetime(2024, 3, 1))))
    names = [row[2] for row in book["Table"].iter_rows(min_row=2, values_only=True)]
    assert names == ['=HYPERLINK("http://example.org","x")', "#N/A"]
    assert [cell.data_type for cell in book["Table"]["C"][1:]] == ["s", "s"]


# --- provisional months, trusts not yet due, held and unusable trusts (issue 19) ---------------------------

@pytest.mark.parametrize("as_of, received, status, month", [
    (date(2024, 2, 29), None, "not_yet_due", "provisional"),  # the deadline's last day
    (date(2024, 3, 1), None, "missing", "final"),  # the day after
    (date(2024, 2, 10), datetime(2024, 2, 5), "on_time", "provisional"),
    (date(2024, 3, 20), datetime(2024, 3, 4), "late", "final"),
])
def test_nothing_received_is_not_yet_due_until_the_deadline_passes(as_of, received, status, month):
    assert submission_status(received, "2024-01", as_of=as_of) == status
    assert month_status("2024-01", as_of) == month
    assert month_status("2024-01", date(2024, 3, 15), deadline_months=2) == "provisional"


def held_month():
    """February 2024, published on 20 March (provisional until the end of March): RR8's correction failed
    its gate (its first file stands), RAJ's only file failed (unusable), RBV has sent nothing yet."""
    files = files_frame([
        ("RBV", "2024-01", pd.Timestamp("2024-02-10"), "a"),
        ("RR8", "2024-02", pd.Timestamp("2024-03-05"), "b"),
        ("RR8", "2024-02", pd.Timestamp("2024-03-12"), "c"),  # the correction that failed
        ("RAJ", "2024-02", pd.Timestamp("2024-03-07"), "d"),
        ("RAJ", "2024-02", pd.Timestamp("2024-03-09"), "e"),  # its newest, failed too
        ("RAE", "2024-02", pd.Timestamp("2024-03-02"), "f"),
    ])
    versions = versions_frame([
        ("RR8", "b", pd.Timestamp("2024-03-05"), True, 20, 20, 20, 20, 20, 0, 0, 0),
        ("RAE", "f", pd.Timestamp("2024-03-02"), True, 30, 30, 30, 30, 30, 0, 0, 0),
    ])
    measures = trust_measures(versions, pd.DataFrame(columns=["trust_code"]))
    held = {"RR8": "clean layer: clean_reconciliation failed", "RAJ": "raw layer: raw_submissions failed"}
    return summarise_month("2024-02", files, measures, versions, ORGANISATIONS, as_of=date(2024, 3, 20), held=held)


def test_a_held_trust_keeps_its_last_good_figures_and_an_unusable_one_has_none():
    summary = held_month().set_index("org_code")
    assert set(summary["month_status"]) == {"provisional"}
    rr8, raj, rbv, rae = (summary.loc[code] for code in ("RR8", "RAJ", "RBV", "RAE"))
    assert (rr8["data_status"], rr8["patients"], rr8["submitted_at"]) == ("held", 20, pd.Timestamp("2024-03-05"))
    assert rr8["data_status_reason"] == "clean layer: clean_reconciliation failed"
    assert rr8["submission_status"] == "on_time" and rr8["versions_received"] == 2
    assert raj["data_status"] == "unusable" and pd.isna(raj["patients"])
    assert raj["submitted_at"] == pd.Timestamp("2024-03-09")  # its newest version's
    assert raj["submission_status"] == "on_time"  # from its first arrival
    assert (rbv["data_status"], rbv["submission_status"]) == ("", "not_yet_due")
    assert (rae["data_status"], rae["data_status_reason"]) == ("ok", "")


def test_a_provisional_month_publishes_no_england_change_and_marks_each_trust():
    previous = summary_rows("2024-01", [("RR8", "on_time", 20, 20, 20, 20, True),
                                        ("RAJ", "on_time", 40, 40, 40, 40, True),
                                        ("RAE", "on_time", 30, 30, 30, 30, True),
                                        ("RBV", "on_time", 50, 50, 50, 50, True)])
    table = publish_month(held_month(), previous).set_index("org_code")
    assert list(table.columns)[-3:] == ["sact_version", "month_status", "data_status"]
    assert set(table["month_status"]) == {"provisional"}
    assert table["data_status"].to_dict() == {"RAE": "ok", "RAJ": "unusable", "RBV": "", "RR8": "held",
                                              "ENGLAND": ""}
    assert table.loc["RAJ", ["patients", "patients_change", "submitted_at"]].tolist() == [
        "", "", "2024-03-09T00:00:00"]
    assert table.loc["RR8", ["patients", "patients_change"]].tolist() == ["20", "0"]  # trust changes as ever
    assert table.loc["ENGLAND", "patients"] == "50"  # RR8's last good 20 + RAE's 30; RAJ and RBV count 0
    assert all(table.loc["ENGLAND", f"{m}_change"] == "" for m in MEASURES)
    final = held_month().assign(month_status="final")
    assert publish_month(final, previous).set_index("org_code").loc["ENGLAND", "patients_change"] == "-90"


def test_the_notes_say_provisional_until_the_deadline_and_explain_every_status():
    text = notes_text("2024-02", datetime(2024, 3, 20), [], month_status="provisional")
    assert "PROVISIONAL: trusts may send this month on time until 2024-03-31" in text
    for value in ("not_yet_due", "provisional", "final", "ok", "held", "unusable"):
        assert f"- {value}: " in text
    assert "Final: the deadline (2024-03-31) has passed." in notes_text("2024-02", datetime(2024, 4, 2), [])
