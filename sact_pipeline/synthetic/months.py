"""Reporting months and day numbers: the calendar arithmetic every part of the generator shares."""

from __future__ import annotations

from datetime import date, datetime

import numpy as np


def parse_month(value: str) -> date:
    """The first day of a 'YYYY-MM' month (a longer ISO date is cut to its month)."""
    try:
        return datetime.strptime(value.strip()[:7], "%Y-%m").date()
    except ValueError as error:
        raise ValueError(f"a month must be YYYY-MM, got {value!r}") from error


def add_months(first: date, count: int) -> date:
    """The first day of the month `count` months after (or before) the month of `first`."""
    index = first.year * 12 + first.month - 1 + count
    return date(index // 12, index % 12 + 1, 1)


def day_number(value: date) -> int:
    """Days since 1970-01-01: the simulation keeps every date as such an integer (vectorised)."""
    return int(np.datetime64(value, "D").astype(np.int64))
