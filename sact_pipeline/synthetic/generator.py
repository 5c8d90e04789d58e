"""The entry point: `generate_submissions` picks the trusts, plans the versions, simulates the world and
writes its rows as files (see the package docstring for what it writes)."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import numpy as np

from sact_pipeline.domain.organisations import OrganisationRegister
from sact_pipeline.domain.spec import V3, V4, Transition
from sact_pipeline.synthetic.catalogue import WELSH_TRUST
from sact_pipeline.synthetic.defects import DefectRates
from sact_pipeline.synthetic.files import GeneratedFile, write_files
from sact_pipeline.synthetic.months import add_months, parse_month
from sact_pipeline.synthetic.rows import build_rows, write_lines
from sact_pipeline.synthetic.versions import Roles, version_plan
from sact_pipeline.synthetic.world import simulate

SACT_VERSIONS: tuple[str, ...] = (V3, V4, "mixed")


def generate_submissions(
    landing_dir: Path,
    *,
    trusts: int = 8,
    months: int = 4,
    end_month: str | None = None,
    patients_per_trust: int = 60,
    seed: int = 2026,
    defects: DefectRates = DefectRates(),
    organisations: OrganisationRegister | None = None,
    size_spread: float = 0.48,
    sact_version: str = "mixed",
    transition: Transition = Transition(),
) -> list[GeneratedFile]:
    """Write synthetic SACT submission files under ``landing_dir``; see the package docstring.

    ``end_month`` ('YYYY-MM', default: the month before the current one) is the last reporting month and
    ``months`` the number of consecutive reporting months ending there. ``sact_version`` is 'v3', 'v4' or
    'mixed' (the version of each trust-month from ``transition.v4_from`` on; earlier months are v3).
    Returns the files written, sorted by reporting month, organisation and submission time.
    """
    if trusts < 1 or months < 1 or patients_per_trust < 1:
        raise ValueError("trusts, months and patients_per_trust must be at least 1")
    if sact_version not in SACT_VERSIONS:
        raise ValueError(f"sact_version must be one of {', '.join(SACT_VERSIONS)}, got {sact_version!r}")
    now = datetime.now().replace(microsecond=0)
    current = date(now.year, now.month, 1)
    last = parse_month(end_month) if end_month else add_months(current, -1)
    if last >= current:
        raise ValueError(f"end_month {last:%Y-%m} has not ended yet")
    month_starts = [add_months(last, k - months + 1) for k in range(months)]
    register = organisations or OrganisationRegister.from_ods_etr()
    rng = np.random.default_rng(seed)

    english = pick_trusts(register, trusts, month_starts[0], rng)
    if register.get(WELSH_TRUST) is None:
        raise ValueError(f"the organisation register has no {WELSH_TRUST} (Velindre)")
    codes = english + [WELSH_TRUST]
    roles = Roles.of(len(english), months)
    plan = version_plan(np.random.default_rng([seed, 4]), sact_version, transition, month_starts, len(english),
                        len(codes), roles)
    world = simulate(rng, codes, register, month_starts, patients_per_trust, size_spread,
                     oral_rng=np.random.default_rng([seed, 6]))
    table = build_rows(rng, world, defects, stray_space_trust=2 % len(english))
    write_lines(np.random.default_rng([seed, 5]), world, table, defects, plan)
    return write_files(rng, Path(landing_dir), world, table, english, month_starts, now, roles, plan)


def pick_trusts(register: OrganisationRegister, count: int, first_month: date, rng) -> list[str]:
    """`count` English trusts open by the first reporting month, picked by the seed; one with a 5-character
    code among them when there are 6 or more (such codes are rarer, and the pipeline must read them)."""
    opened_by = first_month.strftime("%Y%m%d")
    candidates = sorted(
        o.code for o in register
        if o.is_english and not o.close_date and (o.open_date or "00000000") <= opened_by
    )
    if count > len(candidates):
        raise ValueError(f"only {len(candidates)} open English trusts to pick from, asked for {count}")
    picked = [candidates[i] for i in rng.permutation(len(candidates))[:count]]
    five = [c for c in candidates if len(c) == 5]
    if count >= 6 and five and not any(len(c) == 5 for c in picked):
        picked[-1] = five[int(rng.integers(len(five)))]
    return picked
