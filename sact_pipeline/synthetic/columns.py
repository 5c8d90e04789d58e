"""Text columns as a small dictionary of values and one code per row, and the CSV fields they become.

Every item of a simulated row is such a column: building one from numpy codes and editing rows (defects,
stray spaces) is cheap, and its values are quoted for CSV once, not once per row.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sact_pipeline.synthetic.months import day_number


class Column:
    """A text column as a small dictionary of values and one code per row (fast to build and edit)."""

    def __init__(self, values, codes):
        self.values = list(values)
        self.codes = np.asarray(codes, dtype=np.int64).copy()

    def code_of(self, value: str) -> int:
        """The code of `value`, added to the dictionary if it is new (defects bring values of their own)."""
        try:
            return self.values.index(value)
        except ValueError:
            self.values.append(value)
            return len(self.values) - 1

    def set(self, rows: np.ndarray, value: str) -> None:
        """Give `rows` this value (a value is added to the dictionary only when some row takes it)."""
        if len(rows):
            self.codes[rows] = self.code_of(value)

    def pad(self, rows: np.ndarray, rng) -> None:
        """Stray spaces: a leading, trailing or both-sides space around the (non-empty) values of rows."""
        rows = rows[np.asarray([v != "" for v in self.values])[self.codes[rows]]]
        if not len(rows):
            return
        m = len(self.values)
        self.values = self.values + [" " + v for v in self.values] + [v + " " for v in self.values] + \
            [" " + v + "  " for v in self.values]
        self.codes[rows] += m * rng.integers(1, 4, size=len(rows))

    def arrow(self, rows: np.ndarray | None = None) -> pa.Array:
        """The column (or its `rows`) as CSV fields: values holding a comma, quote or line break quoted
        (quotes doubled)."""
        values = pa.array(self.values, pa.string())
        needs_quotes = pc.match_substring_regex(values, '[,"\r\n]')
        if pc.any(needs_quotes).as_py():
            quoted = pc.binary_join_element_wise('"', pc.replace_substring(values, '"', '""'), '"', "")
            values = pc.if_else(needs_quotes, quoted, values)
        return values.take(pa.array(self.codes if rows is None else self.codes[rows]))


def date_strings(first: int, last: int) -> list[str]:
    """Every date from day `first` to day `last` as 'YYYY-MM-DD': the dictionary of a date column."""
    return np.datetime_as_string(np.arange(first, last + 1).astype("datetime64[D]"), unit="D").tolist()


def timestamps(days: np.ndarray, minutes: np.ndarray, rows: np.ndarray) -> Column:
    """ISO 8601 local timestamps with their UK offset on `rows` (empty elsewhere): {date}T{HH:MM}:00+01:00 in
    British Summer Time, else +00:00. Daytime only: BST from the last Sunday of March (it begins at 01:00
    UTC) to the day before the last Sunday of October (it ends at 01:00 UTC)."""
    key = days * 1440 + minutes  # minutes since 1970-01-01 (local time)
    distinct, codes = np.unique(key[rows], return_inverse=True)
    text = np.datetime_as_string(distinct.astype("datetime64[m]"), unit="m").tolist()
    summer = _british_summer_time(distinct // 1440).tolist()
    values = [""] + [f"{t}:00{'+01:00' if bst else '+00:00'}" for t, bst in zip(text, summer)]
    all_codes = np.zeros(len(days), dtype=np.int64)
    all_codes[rows] = codes.reshape(-1) + 1
    return Column(values, all_codes)


def _british_summer_time(days: np.ndarray) -> np.ndarray:
    """Whether each date (days since 1970-01-01) is in British Summer Time during the day."""
    years, year_of = np.unique(days.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970,
                               return_inverse=True)

    def last_sunday(year: int, month: int) -> int:
        end = date(year, month, 31)
        return day_number(end - timedelta(days=(end.weekday() + 1) % 7))

    start = np.array([last_sunday(y, 3) for y in years.tolist()], dtype=np.int64)
    end = np.array([last_sunday(y, 10) for y in years.tolist()], dtype=np.int64)
    year_of = year_of.reshape(-1)
    return (days >= start[year_of]) & (days < end[year_of])

