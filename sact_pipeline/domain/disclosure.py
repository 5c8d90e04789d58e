"""Disclosure control for published SACT tables: rule set R (docs/disclosure-rules.md).

Trust cells follow the NHS England / OpenSAFELY convention (0 stays 0, 1-7 becomes ``*``, the rest is
rounded to the nearest 5). On top of that, the England cell is withheld (``[c]``) whenever publishing it
could let a reader pin a ``*`` trust to one value by subtracting the other published cells. The audit
that decides this reads only the published trust cells, so the decision itself leaks nothing.

Pure Python, integer arithmetic only: no Dagster, no database, no ``round()``.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TypeAlias

try:  # numpy is optional here; only needed to reject numpy booleans explicitly
    import numpy as _np

    _NUMPY_BOOLS: tuple[type, ...] = (_np.bool_,)
except ImportError:  # pragma: no cover
    _NUMPY_BOOLS = ()

SUPPRESSED = "*"
WITHHELD = "[c]"

Cell: TypeAlias = int | str
"""A published cell: 0, a multiple of 5 that is >= 10, ``SUPPRESSED`` or ``WITHHELD``."""

SUPPRESS_MAX = 7  # counts 1..7 are shown as "*"
ROUNDING_SLACK = 2  # a rounded value v stands for v-2..v+2
ENOUGH_ROUNDED_CELLS = 20  # step 4 shortcut: this many +/-2 uncertainties cannot pin a "*"

NOTES_FOOTNOTES: tuple[str, ...] = (
    "Totals are calculated from unrounded data and then rounded, so rows may not add up.",
    "Changes from the previous month are calculated from the rounded figures.",
    "* = a count from 1 to 7, suppressed to protect a small count.",
    "[c] = withheld to protect a small count.",
)
"""Step 6: sentences every published notes file must carry, in this order."""


class DisclosureInputError(ValueError):
    """A count or cell that rule R refuses to coerce (step 1: errors, never silent fixes)."""


def _is_bool(x: object) -> bool:
    return isinstance(x, bool) or (bool(_NUMPY_BOOLS) and isinstance(x, _NUMPY_BOOLS))


def _as_count(x: object) -> int:
    """Validate a raw count: a non-negative Python or numpy integer, never a bool, float or string."""
    if _is_bool(x) or not isinstance(x, numbers.Integral):
        raise DisclosureInputError(f"count must be a non-negative integer, got {x!r} ({type(x).__name__})")
    value = int(x)
    if value < 0:
        raise DisclosureInputError(f"count must be non-negative, got {value}")
    return value


def _as_cell(cell: object) -> Cell:
    """Validate a published cell so that a raw count or a typo cannot slip into the audit."""
    if isinstance(cell, str):
        if cell in (SUPPRESSED, WITHHELD):
            return cell
        raise DisclosureInputError(f"not a published cell: {cell!r}")
    if _is_bool(cell) or not isinstance(cell, numbers.Integral):
        raise DisclosureInputError(f"not a published cell: {cell!r}")
    value = int(cell)
    if value != 0 and (value < 10 or value % 5 != 0):
        raise DisclosureInputError(f"not a published cell (expected 0 or a multiple of 5 >= 10): {value}")
    return value


def protect_count(x: object) -> Cell:
    """Step 2, the trust-cell rule: 0 -> 0, 1..7 -> "*", else the nearest multiple of 5 (halves up).

    ``5 * ((x + 2) // 5)`` rather than ``round()``, which rounds halves to even.
    """
    value = _as_count(x)
    if value == 0:
        return 0
    if value <= SUPPRESS_MAX:
        return SUPPRESSED
    return 5 * ((value + ROUNDING_SLACK) // 5)


def bounds(cell: Cell) -> tuple[int, int]:
    """Step 4: the inclusive range of true counts a published cell can stand for.

    ``[c]`` has no bounds by design (it says nothing), so it is an error to ask.
    """
    checked = _as_cell(cell)
    if checked == WITHHELD:
        raise ValueError("a withheld cell ([c]) has no bounds")
    if checked == SUPPRESSED:
        return (1, SUPPRESS_MAX)
    if checked == 0:
        return (0, 0)
    assert isinstance(checked, int)
    return (max(SUPPRESS_MAX + 1, checked - ROUNDING_SLACK), checked + ROUNDING_SLACK)


def _published_values_between(low: int, high: int) -> Iterator[Cell]:
    """The distinct values of protect_count(s) for s in low..high, without visiting every s."""
    if low == 0:
        yield 0
    if low <= SUPPRESS_MAX and high >= 1:
        yield SUPPRESSED
    if high > SUPPRESS_MAX:
        first = protect_count(max(low, SUPPRESS_MAX + 1))
        last = protect_count(high)
        assert isinstance(first, int) and isinstance(last, int)
        yield from range(first, last + 1, 5)


def england_is_safe(published_trust_cells: Sequence[Cell]) -> bool:
    """Step 4 audit: True when no England value these trust cells allow could pin a "*" trust.

    Uses only the published cells, never the true total, so withholding reveals nothing. Every "*"
    trust has the same bounds [1, 7], so one check per distinct England value P(s) covers all of
    them: a "*" trust lies in [max(1, lo(P) - others_hi), min(7, hi(P) - others_lo)], and because
    each trust ranges over a full integer interval, that range is exactly what an attacker learns.
    """
    cells = [_as_cell(c) for c in published_trust_cells]
    if any(c == WITHHELD for c in cells):
        raise DisclosureInputError("trust cells are never withheld ([c]); only the England cell is")
    stars = sum(1 for c in cells if c == SUPPRESSED)
    if stars == 0:
        return True
    rounded = sum(1 for c in cells if isinstance(c, int) and c >= 10)
    if rounded >= ENOUGH_ROUNDED_CELLS:
        return True  # documented residual risk: only if every rounded cell sits on its rounding edge
    cell_bounds = [bounds(c) for c in cells]
    total_low = sum(lo for lo, _ in cell_bounds)
    total_high = sum(hi for _, hi in cell_bounds)
    others_low = total_low - 1  # the other trusts, seen from any one "*" trust
    others_high = total_high - SUPPRESS_MAX
    for published in _published_values_between(total_low, total_high):
        p_low, p_high = bounds(published)
        star_low = max(1, p_low - others_high)
        star_high = min(SUPPRESS_MAX, p_high - others_low)
        if star_low >= star_high:  # a single value (empty cannot happen, but is no safer)
            return False
    return True


def england_cell(published_trust_cells: Sequence[Cell], true_total: int) -> Cell:
    """Steps 3-4: the England cell, from the unrounded total, or WITHHELD when the audit says so.

    The true total is checked against the trust cells' bounds only to catch a caller mixing up
    columns; it never influences whether the cell is withheld.
    """
    total = _as_count(true_total)
    cells = list(published_trust_cells)
    safe = england_is_safe(cells)  # also validates the cells
    cell_bounds = [bounds(c) for c in cells]
    low, high = sum(lo for lo, _ in cell_bounds), sum(hi for _, hi in cell_bounds)
    if not low <= total <= high:
        raise DisclosureInputError(
            f"true total {total} is inconsistent with the published trust cells (allowed {low}..{high})"
        )
    return protect_count(total) if safe else WITHHELD


@dataclass(frozen=True)
class ProtectedColumn:
    """One measure for one month, ready to publish: a cell per trust (input order) and England."""

    trust_cells: list[Cell]
    england: Cell


def protect_column(counts: Sequence[int]) -> ProtectedColumn:
    """Apply rule R to one column of English trusts (a trust that did not submit passes 0)."""
    values = [_as_count(x) for x in counts]
    trust_cells = [protect_count(v) for v in values]
    return ProtectedColumn(trust_cells=trust_cells, england=england_cell(trust_cells, sum(values)))


def published_change(current: Cell | None, previous: Cell | None) -> Cell | None:
    """Step 5: change from the previous month, from published cells only (never from raw counts).

    None (no submission) on either side gives None (an empty cell); then "[c]" beats "*", so a
    withheld cell never becomes recoverable from a change; otherwise the (possibly negative) difference.
    """
    if current is None or previous is None:
        return None
    now, before = _as_cell(current), _as_cell(previous)
    if now == WITHHELD or before == WITHHELD:
        return WITHHELD
    if now == SUPPRESSED or before == SUPPRESSED:
        return SUPPRESSED
    assert isinstance(now, int) and isinstance(before, int)
    return now - before


def format_cell(cell: Cell | None) -> str:
    """Text for a CSV/notes cell: None -> "", integers (including negative changes) as digits."""
    if cell is None:
        return ""
    if isinstance(cell, str):
        if cell in (SUPPRESSED, WITHHELD):
            return cell
        raise DisclosureInputError(f"unknown marker {cell!r}")
    if _is_bool(cell) or not isinstance(cell, numbers.Integral):
        raise DisclosureInputError(f"not a publishable cell: {cell!r}")
    return str(int(cell))
