"""Counting activity and judging timeliness: the measures NDRS watches per trust and month."""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd

MEASURES: tuple[str, ...] = ("patients", "regimens", "cycles", "drug_administrations")
ON_TIME, LATE, MISSING, NOT_YET_DUE = "on_time", "late", "missing", "not_yet_due"
SUBMISSION_STATUSES: tuple[str, ...] = (ON_TIME, LATE, MISSING, NOT_YET_DUE)
PROVISIONAL, FINAL = "provisional", "final"  # month_status: a month is final once its deadline has passed
MONTH_STATUSES: tuple[str, ...] = (PROVISIONAL, FINAL)

REGIMEN_KEY = ["patient_key", "regimen_key", "start_date_of_regimen"]
CYCLE_KEY = REGIMEN_KEY + ["cycle_number", "start_date_of_cycle"]


def count_activity(clean: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Patients, regimens, cycles and drug administrations per group of clean rows.

    patients = distinct patient keys; regimens = distinct (patient, upper-cased trimmed Regimen,
    Start_Date_Of_Regimen); cycles = distinct (regimen, Cycle_Number, Start_Date_Of_Cycle);
    drug administrations = clean rows. Nested keys make patients <= regimens <= cycles <= rows.
    """
    frame = clean[by + ["patient_key", "start_date_of_regimen", "cycle_number", "start_date_of_cycle"]].copy()
    frame["regimen_key"] = clean["regimen"].astype("str").str.strip().str.upper()

    def distinct(keys: list[str], name: str) -> pd.Series:
        return frame.drop_duplicates(by + keys).groupby(by, dropna=False).size().rename(name)

    counts = pd.concat(
        [
            distinct(["patient_key"], "patients"),
            distinct(REGIMEN_KEY, "regimens"),
            distinct(CYCLE_KEY, "cycles"),
            frame.groupby(by, dropna=False).size().rename("drug_administrations"),
        ],
        axis=1,
    )
    return counts.fillna(0).astype("int64").reset_index()


def submission_deadline(reporting_month: str, deadline_months: int = 1) -> datetime:
    """On time means received before the end of the month `deadline_months` after the reporting month."""
    year, month = map(int, reporting_month.split("-"))
    month_index = year * 12 + (month - 1) + deadline_months + 1
    return datetime(month_index // 12, month_index % 12 + 1, 1)


def month_status(reporting_month: str, as_of: date, deadline_months: int = 1) -> str:
    """`provisional` while trusts may still send the month on time, `final` from its deadline on."""
    return FINAL if as_of >= submission_deadline(reporting_month, deadline_months).date() else PROVISIONAL


def submission_status(first_received: datetime | None, reporting_month: str, deadline_months: int = 1,
                      as_of: date | None = None) -> str:
    """Judged on the FIRST version received: a later correction does not make a late trust on time.
    Nothing received is `not_yet_due` before the deadline (as of `as_of`, the day the month is
    published) and `missing` from it on; with no `as_of` the deadline is taken as passed."""
    if first_received is None or pd.isna(first_received):
        if as_of is not None and month_status(reporting_month, as_of, deadline_months) == PROVISIONAL:
            return NOT_YET_DUE
        return MISSING
    return ON_TIME if first_received < submission_deadline(reporting_month, deadline_months) else LATE


def previous_month(reporting_month: str) -> str:
    year, month = map(int, reporting_month.split("-"))
    return f"{year - 1}-12" if month == 1 else f"{year}-{month - 1:02d}"


def months_up_to(reporting_month: str, count: int) -> list[str]:
    """`count` consecutive months ending with `reporting_month`, oldest first (YYYY-MM)."""
    year, month = map(int, reporting_month.split("-"))
    last = year * 12 + month - 1
    return [f"{index // 12}-{index % 12 + 1:02d}" for index in range(last - count + 1, last + 1)]
