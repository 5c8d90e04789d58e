"""Partition keys, built and parsed in one place.

Dagster names a month partition by its first day ("2026-04-01") and a trust-month by that and the trust
("2026-04-01|RXX"); the warehouse records a layer's state per "2026-04|RXX" (a month layer: "2026-04").
Everything else in the pipeline speaks of (month "YYYY-MM", trust code).
"""

from __future__ import annotations

from collections.abc import Iterable

SEPARATOR = "|"


def month_partition(month: str) -> str:
    """Dagster's key of a month partition: its first day."""
    return f"{month}-01"


def month_of(partition_key: str) -> str:
    """YYYY-MM of a month or trust-month partition key (Dagster's or the warehouse's)."""
    return partition_key[:7]


def trust_month_partition(month: str, trust: str) -> str:
    """Dagster's key of a trust-month partition (dimensions sort month, then trust)."""
    return f"{month_partition(month)}{SEPARATOR}{trust}"


def trust_months_of(partition_keys: Iterable[str]) -> list[tuple[str, str]]:
    """(month, trust) of each Dagster trust-month key, in the order given."""
    pairs = (key.split(SEPARATOR) for key in partition_keys)
    return [(month_of(month_key), trust) for month_key, trust in pairs]


def layer_partition(month: str, trust: str) -> str:
    """The warehouse's name of a trust-month in a layer's state and outcomes."""
    return f"{month}{SEPARATOR}{trust}"


def split_layer_partition(partition: str) -> tuple[str, str]:
    """(month, trust) of layer_partition's name."""
    month, trust = partition.split(SEPARATOR)
    return month, trust


def by_month(trust_months: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """The trusts of each month, months and trusts in the order first met."""
    grouped: dict[str, list[str]] = {}
    for month, trust in trust_months:
        grouped.setdefault(month, []).append(trust)
    return grouped
