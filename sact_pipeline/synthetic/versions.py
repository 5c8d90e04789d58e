"""Which trust-months are special cases, and which SACT version each trust-month is written in.

The version plan draws only from its own generator (seeded ``[seed, 4]``), so the records are the same
whichever ``sact_version`` mode is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from sact_pipeline.domain.spec import V4, Transition
from sact_pipeline.synthetic.months import parse_month

# The transition of "mixed": trusts switch uniformly over the first SWITCH_MONTHS months of v4; some never
# do; some switching trusts resend in v4 the last month they first sent in v3.
SWITCH_MONTHS = 6
STAY_ON_V3 = 1 / 8
V4_RESUBMISSION_SHARE = 1 / 3


@dataclass(frozen=True)
class Roles:
    """The trust-months of the special cases, as (English trust index, month index)."""

    late: tuple[int, int] | None
    resubmission: tuple[int, int]
    missing: tuple[int, int] | None

    @classmethod
    def of(cls, n_english: int, months: int) -> "Roles":
        late = (3 % n_english, months - 2 if months >= 3 else 1) if months >= 2 else None
        resubmission = (4 % n_english, 0)
        missing = (5 % n_english, months - 1)
        if (late is not None and missing[0] == late[0]) or missing[0] == resubmission[0]:
            missing = None
        return cls(late, resubmission, missing)


@dataclass(frozen=True)
class Plan:
    """The SACT version of every trust-month, and the v4 resubmissions of "mixed"."""

    v4: np.ndarray  # (trusts, months) bool: the trust-month is written as v4
    v4_resubmission: np.ndarray  # (trusts, months) bool: first sent as v3, then resent as v4
    resubmission_delay: tuple[timedelta, ...]  # per trust: after the v3 file


def version_plan(rng, sact_version: str, transition: Transition, month_starts: list[date], n_english: int,
                 n_trusts: int, roles: Roles) -> Plan:
    """The version of every trust-month for ``sact_version`` (see the package docstring for "mixed")."""
    months = len(month_starts)
    accepted = np.array([f"{m:%Y-%m}" >= transition.v4_from for m in month_starts])
    # Every draw is made in every mode, in this order (the plan depends on nothing else).
    stays = rng.random(n_trusts) < STAY_ON_V3
    offset = rng.integers(0, SWITCH_MONTHS, size=n_trusts)
    resends = rng.random(n_trusts) < V4_RESUBMISSION_SHARE
    order = rng.permutation(n_english)  # which English trust takes a case that must exist
    fallback_month = float(rng.random())
    delay = tuple(timedelta(days=int(d), seconds=int(s))
                  for d, s in zip(rng.integers(2, 7, size=n_trusts), rng.integers(0, 86400, size=n_trusts)))
    v4 = np.zeros((n_trusts, months), dtype=bool)
    resubmission = np.zeros((n_trusts, months), dtype=bool)
    if sact_version == V4:
        v4[:, :] = accepted
    if sact_version != "mixed":
        return Plan(v4, resubmission, delay)

    if n_english >= 8 and not stays[:n_english].any():
        stays[order[0]] = True
    if n_english >= 2 and stays[:n_english].all():
        stays[order[-1]] = False
    first = parse_month(transition.v4_from)
    window_start = month_starts[0].year * 12 + month_starts[0].month - 1
    first_switch = first.year * 12 + first.month - 1 - window_start  # month index of v4_from
    never = months + SWITCH_MONTHS + 1
    switch = np.where(stays, never, first_switch + offset)

    def blocked(t: int, m: int) -> bool:
        """A trust-month that cannot also be a v4 resubmission (it has a resubmission, or no file)."""
        return (t, m) in ((roles.resubmission, roles.missing) if t < n_english else ())

    def eligible(t: int) -> bool:
        s = int(switch[t])
        return 1 <= s < months and bool(accepted[s - 1]) and not blocked(t, s - 1)

    chosen = [t for t in range(n_trusts) if resends[t] and eligible(t)]
    if n_english >= 4 and not any(t < n_english for t in chosen):
        candidates = [int(t) for t in order if eligible(int(t))]
        if candidates:
            chosen.append(candidates[0])
        else:  # move a switching trust's switch into the window, where it allows one
            months_ok = [s for s in range(1, months)
                         if accepted[s - 1] and first_switch <= s < first_switch + SWITCH_MONTHS]
            if months_ok:
                s = months_ok[int(fallback_month * len(months_ok))]
                for t in (int(t) for t in order):
                    if not stays[t] and not blocked(t, s - 1):
                        switch[t] = s
                        chosen.append(t)
                        break
    for t in range(n_trusts):
        v4[t] = accepted & (np.arange(months) >= switch[t])
    for t in chosen:
        resubmission[t, int(switch[t]) - 1] = True
    return Plan(v4, resubmission, delay)

