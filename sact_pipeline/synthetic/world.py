"""The simulated world: trusts and their sites and consultants, patients, courses of treatment, cycles, and
the drug administrations that fall in the reporting window.

Vectorised with numpy: courses of treatment start at a steady rate per trust and regimen, run a number of
cycles every 7/14/21/28 days (with occasional one- or two-week delays, early stops and dose reductions),
and every cycle administers each drug of the regimen on its day(s). Every draw comes from the main
generator in a fixed order, except the multi-cycle oral dispensings (their own generator, ``[seed, 6]``).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import date

import numpy as np

from sact_pipeline.synthetic.catalogue import (
    E_AMOUNT,
    E_BASIS,
    E_CAP,
    E_DAY,
    E_FIRST,
    E_LAST,
    E_MULTI,
    E_REGIMEN,
    E_STEP,
    POSTCODE_AREAS,
    R_INTERVAL,
    R_MAX_DAY,
    R_MULTI,
    REGIMEN_INDEX,
    REGIMENS,
    SITE_NAMES,
    SITES,
    WELSH_POSTCODE_AREAS,
    WELSH_TRUST,
    Regimen,
)
from sact_pipeline.synthetic.months import add_months, day_number

MULTI_CYCLE_SHARE = 0.3  # oral dispensings (of courses with >= 2 cycles left) covering 2 or 3 cycles


@dataclass
class World:
    """Everything simulated before any row is written: course-, patient- and row-level numpy arrays."""

    codes: list[str]  # trust codes, English first, RQF last
    org_values: list[str]  # trust and site codes (a dictionary)
    first_day: int
    last_day: int
    first_month_index: int  # numpy datetime64[M] integer of the first reporting month
    # course level
    c_type: np.ndarray
    c_trust: np.ndarray
    c_patient: np.ndarray
    c_start: np.ndarray
    c_cycles: np.ndarray
    c_stopped: np.ndarray
    c_reduced_from: np.ndarray
    c_curative: np.ndarray
    c_weight10: np.ndarray  # weight at start of regimen, tenths of kg
    c_ps: np.ndarray
    c_provider: np.ndarray  # index into org_values
    c_admin_org: np.ndarray
    # patient level (candidate patients, before restriction to those with rows)
    p_site: np.ndarray
    p_female: np.ndarray
    p_height: np.ndarray  # cm
    p_weight: np.ndarray  # kg
    p_trust: np.ndarray
    p_consultant: np.ndarray
    consultant_specialty: np.ndarray
    trust_areas: list[tuple[str, ...]]
    trust_local_style: np.ndarray
    # row level (administrations inside the reporting window)
    r_course: np.ndarray = field(default=None)
    r_cycle_number: np.ndarray = field(default=None)
    r_cycle_start: np.ndarray = field(default=None)
    r_cycle_weight10: np.ndarray = field(default=None)
    r_cycle_ps: np.ndarray = field(default=None)
    r_entry: np.ndarray = field(default=None)
    r_day: np.ndarray = field(default=None)
    r_dose10: np.ndarray = field(default=None)
    r_delayed: np.ndarray = field(default=None)  # the row's cycle started late (a one- or two-week delay)
    r_covers: np.ndarray = field(default=None)  # cycles its dispensing covers: 1 (2-3 multi-cycle), 0 covered



def _expected_span(r: Regimen, ri: int) -> tuple[float, float]:
    """Mean and (nearly) maximum days from first to last administration of a course of this regimen."""
    planned = sum(r.cycles) / 2
    mean_cycles = 0.88 * planned + 0.12 * max(planned / 2, 1)
    mean = (mean_cycles - 1) * r.interval * 1.06 + R_MAX_DAY[ri] + 1
    longest = (r.cycles[1] - 1) * r.interval * 1.15 + R_MAX_DAY[ri] + 1
    return mean, longest


def _size_multipliers(rng, count: int, spread: float = 0.48) -> np.ndarray:
    """Skewed trust sizes with mean 1: log-normal quantiles (sigma = spread), shuffled. The default makes
    the largest of 8 trusts 3-4x the smallest; 0.8 over 150 trusts gives England's ~70x."""
    normal = statistics.NormalDist()
    z = np.array([normal.inv_cdf((i + 0.5) / count) for i in range(count)])
    sizes = np.exp(spread * z)[rng.permutation(count)]
    return sizes / sizes.mean()


def choice(rng, options: tuple[tuple[str, float], ...], size: int) -> np.ndarray:
    """Indices into `options` ((name, weight) pairs of the catalogue), drawn with those weights."""
    probabilities = np.array([p for _, p in options], dtype=float)
    return rng.choice(len(options), size=size, p=probabilities / probabilities.sum())


def simulate(rng, codes: list[str], register, month_starts: list[date], per_trust: int,
             size_spread: float = 0.48, *, oral_rng) -> World:
    """The world of the run: `codes` are the trusts (English first, RQF last), `per_trust` the average
    active patients per trust-month. Draws from `rng` in a fixed order (and from `oral_rng`)."""
    n_trusts = len(codes)
    first_day = day_number(month_starts[0])
    last_day = day_number(add_months(month_starts[-1], 1)) - 1
    window = last_day - first_day + 1
    sizes = _size_multipliers(rng, n_trusts, size_spread)
    org_values, trust_sites, provider_site_share = _organisations(rng, codes, register)
    trust_areas = [
        tuple(rng.choice(WELSH_POSTCODE_AREAS if code == WELSH_TRUST else POSTCODE_AREAS, size=2, replace=False))
        for code in codes
    ]
    trust_local_style = rng.integers(0, 3, size=n_trusts)
    consultants = _Consultants.draw(rng, sizes)
    c_type, c_trust, c_start = _first_courses(rng, sizes, per_trust, first_day, window)
    n_first = len(c_type)
    patients = _patients(rng, c_type, c_trust, consultants)

    first = course_details(rng, c_type, c_start)
    parent, f_type, f_start = _follow_on_courses(rng, c_type, first["end"], last_day)
    follow = course_details(rng, f_type, f_start)
    c_type = np.concatenate([c_type, f_type])
    c_trust = np.concatenate([c_trust, c_trust[parent]])
    c_patient = np.concatenate([np.arange(n_first), parent])
    c_start = np.concatenate([c_start, f_start])
    details = {k: np.concatenate([first[k], follow[k]]) for k in first}
    courses = _course_attributes(rng, c_type, c_trust, c_patient, patients["weight"], trust_sites,
                                 provider_site_share)

    world = World(
        codes=codes, org_values=org_values, first_day=first_day, last_day=last_day,
        first_month_index=int(np.datetime64(month_starts[0], "M").astype(np.int64)),
        c_type=c_type, c_trust=c_trust, c_patient=c_patient, c_start=c_start,
        c_cycles=details["cycles"], c_stopped=details["stopped"], c_reduced_from=details["reduced_from"],
        c_curative=courses["curative"], c_weight10=courses["weight10"], c_ps=courses["ps"],
        c_provider=courses["provider"], c_admin_org=courses["admin_org"], p_site=patients["site"],
        p_female=patients["female"], p_height=patients["height"], p_weight=patients["weight"],
        p_trust=c_trust[:n_first].copy(), p_consultant=patients["consultant"],
        consultant_specialty=consultants.specialty, trust_areas=trust_areas,
        trust_local_style=trust_local_style,
    )
    expand_administrations(rng, world, details, courses["gfr"], dispensings(oral_rng, c_type, details["cycles"]))
    return world


def _organisations(rng, codes: list[str], register) -> tuple[list[str], list[list[int]], np.ndarray]:
    """Organisation codes: trusts with 3-character codes may have sites (trust code + 2 digits) where they
    administer (and, 30% of the time, which they give as the provider). Returns the dictionary of codes,
    each trust's indices into it, and each trust's share of courses naming a site as the provider."""
    n_trusts = len(codes)
    org_values = list(codes)
    trust_sites: list[list[int]] = []
    provider_site_share = np.zeros(n_trusts)
    for t, code in enumerate(codes):
        sites = [t]
        if len(code) == 3 and rng.random() < 0.5:
            for k in range(1, int(rng.integers(2, 4)) + 1):
                site = f"{code}{k:02d}"
                if site not in register:
                    org_values.append(site)
                    sites.append(len(org_values) - 1)
            provider_site_share[t] = 0.3
        trust_sites.append(sites)
    return org_values, trust_sites, provider_site_share


@dataclass(frozen=True)
class _Consultants:
    """An oncology and a haematology pool of consultants per trust, numbered trust after trust."""

    onc_size: np.ndarray
    haem_size: np.ndarray
    onc_offset: np.ndarray
    haem_offset: np.ndarray
    specialty: np.ndarray  # per consultant: 0 '370', 1 '800', 2 '303'

    @classmethod
    def draw(cls, rng, sizes: np.ndarray) -> "_Consultants":
        """Pools scaled by trust size; an oncologist is a medical (370) or clinical (800) oncologist."""
        onc_size = np.maximum(4, np.rint(10 * sizes)).astype(int)
        haem_size = np.maximum(2, np.rint(4 * sizes)).astype(int)
        onc_offset = np.concatenate([[0], np.cumsum(onc_size + haem_size)[:-1]])
        haem_offset = onc_offset + onc_size
        n_consultants = int((onc_size + haem_size).sum())
        specialty = np.zeros(n_consultants, dtype=int)
        for t in range(len(sizes)):
            specialty[onc_offset[t]:onc_offset[t] + onc_size[t]] = rng.integers(0, 2, size=onc_size[t])
            specialty[haem_offset[t]:haem_offset[t] + haem_size[t]] = 2
        return cls(onc_size, haem_size, onc_offset, haem_offset, specialty)

    def pick(self, rng, haematology: np.ndarray, trust: np.ndarray) -> np.ndarray:
        """A consultant per patient, from the haematology or the oncology pool of the patient's trust."""
        n = len(trust)
        return np.where(
            haematology,
            self.haem_offset[trust] + (rng.random(n) * self.haem_size[trust]).astype(int),
            self.onc_offset[trust] + (rng.random(n) * self.onc_size[trust]).astype(int),
        )


def _first_courses(rng, sizes: np.ndarray, per_trust: int, first_day: int,
                   window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First courses: a steady stream of starts per regimen and trust, far enough back that courses begun
    before the first reporting month (and their follow-on regimens) are still running in it. Returns the
    regimen, trust and start day of each course."""
    n_trusts = len(sizes)
    types, trusts_, starts = [], [], []
    for ri, r in enumerate(REGIMENS):
        mean_span, longest = _expected_span(r, ri)
        lookback = longest
        if r.follow_on:
            follow = REGIMENS[REGIMEN_INDEX[r.follow_on[0]]]
            lookback += 42 + _expected_span(follow, REGIMEN_INDEX[follow.name])[1]
        rate = per_trust * sizes * r.share / (mean_span + 30.4)  # starts per day per trust
        counts = rng.poisson(rate * (lookback + window))
        total = int(counts.sum())
        types.append(np.full(total, ri))
        trusts_.append(np.repeat(np.arange(n_trusts), counts))
        starts.append(first_day - int(lookback) + rng.integers(0, int(lookback) + window, size=total))
    return np.concatenate(types), np.concatenate(trusts_), np.concatenate(starts)


def _patients(rng, c_type: np.ndarray, c_trust: np.ndarray, consultants: _Consultants) -> dict[str, np.ndarray]:
    """One patient per first course: the cancer site (from the regimen), sex, height, weight and consultant."""
    n_first = len(c_type)
    p_site = np.zeros(n_first, dtype=int)
    for ri, r in enumerate(REGIMENS):
        sel = np.flatnonzero(c_type == ri)
        p_site[sel] = np.array([SITE_NAMES.index(s) for s, _ in r.sites])[choice(rng, r.sites, len(sel))]
    female_p = np.array([SITES[s].female for s in SITE_NAMES])[p_site]
    p_female = rng.random(n_first) < female_p
    p_height = np.clip(np.where(p_female, rng.normal(163, 6.5, n_first), rng.normal(176, 7, n_first)), 150, 195)
    p_height = np.rint(p_height)
    p_weight = np.clip(np.where(p_female, rng.normal(70, 14, n_first), rng.normal(83, 15, n_first)), 45, 120)
    haem = np.array([SITES[s].haematology for s in SITE_NAMES])[p_site]
    p_consultant = consultants.pick(rng, haem, c_trust)
    return {"site": p_site, "female": p_female, "height": p_height, "weight": p_weight, "consultant": p_consultant}


def _follow_on_courses(rng, c_type: np.ndarray, end: np.ndarray,
                       last_day: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Follow-on regimens for the same patient, 2-6 weeks after the end of the first course (those that
    start in the reporting window or before). Returns the first course, regimen and start day of each."""
    n_first = len(c_type)
    parents, children = [], []
    for ri, r in enumerate(REGIMENS):
        if r.follow_on:
            sel = np.flatnonzero((c_type == ri) & (rng.random(n_first) < r.follow_on[1]))
            parents.append(sel)
            children.append(np.full(len(sel), REGIMEN_INDEX[r.follow_on[0]]))
    parent = np.concatenate(parents)
    f_type = np.concatenate(children)
    f_start = end[parent] + rng.integers(14, 43, size=len(parent))
    keep = f_start <= last_day
    return parent[keep], f_type[keep], f_start[keep]


def _course_attributes(rng, c_type: np.ndarray, c_trust: np.ndarray, c_patient: np.ndarray, p_weight: np.ndarray,
                       trust_sites: list[list[int]], provider_site_share: np.ndarray) -> dict[str, np.ndarray]:
    """Per course: curative intent, weight and performance status at the start, GFR (carboplatin doses),
    the site that administers it and the organisation given as its provider."""
    n_trusts = len(trust_sites)
    n_courses = len(c_type)
    curative_p = np.array([r.curative for r in REGIMENS])[c_type]
    c_curative = rng.random(n_courses) < curative_p
    c_weight = np.clip(p_weight[c_patient] * (1 + rng.normal(0, 0.03, n_courses)), 45, 120)
    c_weight10 = np.rint(c_weight * 10).astype(np.int64)
    c_ps = rng.choice(3, size=n_courses, p=[.4, .45, .15])
    c_gfr = np.clip(rng.normal(80, 20, n_courses), 30, 125)
    site_count = np.array([len(s) for s in trust_sites])
    site_table = np.zeros((n_trusts, site_count.max()), dtype=int)
    for t, sites in enumerate(trust_sites):
        site_table[t, :len(sites)] = sites
    site_pick = (rng.random(n_courses) * site_count[c_trust]).astype(int)
    c_admin_org = site_table[c_trust, site_pick]
    c_provider = np.where(rng.random(n_courses) < provider_site_share[c_trust], c_admin_org, c_trust)
    return {"curative": c_curative, "weight10": c_weight10, "ps": c_ps, "gfr": c_gfr, "admin_org": c_admin_org,
            "provider": c_provider}


def course_details(rng, c_type: np.ndarray, c_start: np.ndarray) -> dict[str, np.ndarray]:
    """Cycles, delays, early stops and dose reductions of courses; cycle-level arrays included."""
    n = len(c_type)
    lo = np.array([r.cycles[0] for r in REGIMENS])[c_type]
    hi = np.array([r.cycles[1] for r in REGIMENS])[c_type]
    planned = lo + (rng.random(n) * (hi - lo + 1)).astype(int)
    stopped = (rng.random(n) < 0.12) & (planned > 1)
    cycles = np.where(stopped, 1 + (rng.random(n) * (planned - 1)).astype(int), planned)
    reduced = rng.random(n) < 0.12
    reduced_from = np.where(reduced & (cycles >= 2), 2 + (rng.random(n) * np.maximum(cycles - 1, 1)).astype(int), 0)
    reduced_from = np.where(reduced_from > cycles, 0, reduced_from)

    course_of = np.repeat(np.arange(n), cycles)
    first_index = np.cumsum(cycles) - cycles
    number = np.arange(len(course_of)) - np.repeat(first_index, cycles) + 1
    delay = rng.choice(np.array([0, 7, 14]), size=len(course_of), p=[.86, .1, .04])
    delay[number == 1] = 0
    cumulative = np.cumsum(delay)
    cumulative -= np.repeat(cumulative[first_index] if n else cumulative[:0], cycles)
    cycle_start = c_start[course_of] + (number - 1) * R_INTERVAL[c_type][course_of] + cumulative
    last_cycle = first_index + cycles - 1
    end = cycle_start[last_cycle] + R_MAX_DAY[c_type] if n else c_start
    return {
        "cycles": cycles, "stopped": stopped, "reduced_from": reduced_from, "end": end,
        "cycle_course": course_of, "cycle_number": number, "cycle_start": cycle_start, "delayed": delay > 0,
    }


def dispensings(rng, c_type: np.ndarray, c_cycles: np.ndarray) -> np.ndarray:
    """Per cycle (courses in order, then cycle numbers): how many cycles the oral dispensing of that cycle
    covers - 1, or 2-3 for a multi-cycle dispensing - or 0 when an earlier dispensing covered the cycle.
    Only courses of a regimen with a multi-cycle drug; 1 for every other cycle. Draws only from `rng`
    (its own stream: the main one is untouched), a fixed number per course."""
    covers = np.ones(int(c_cycles.sum()), dtype=np.int64)
    courses = np.flatnonzero(R_MULTI[c_type])
    if not len(courses):
        return covers
    cycles = c_cycles[courses]
    width = int(cycles.max())
    multi = rng.random((len(courses), width)) < MULTI_CYCLE_SHARE
    span = rng.integers(2, 4, size=(len(courses), width))
    first = (np.cumsum(c_cycles) - c_cycles)[courses]  # position of each course's cycle 1
    covers[np.repeat(R_MULTI[c_type], c_cycles)] = 0  # until a dispensing below covers them
    next_dispensing = np.ones(len(courses), dtype=np.int64)
    for k in range(1, width + 1):  # cycle numbers (at most ~26 steps), every course at once
        at = np.flatnonzero((next_dispensing == k) & (cycles >= k))
        left = cycles[at] - k + 1
        cover = np.where(multi[at, k - 1] & (left >= 2), np.minimum(span[at, k - 1], left), 1)
        covers[first[at] + k - 1] = cover
        next_dispensing[at] = k + cover
    return covers




def expand_administrations(rng, world: World, details: dict[str, np.ndarray], c_gfr: np.ndarray,
                           covers: np.ndarray) -> None:
    """One row per administration: every drug entry of the regimen in every cycle it applies to, on the
    days inside the reporting window; fills the row-level arrays of `world`."""
    cycles = _cycles_near_window(world, details, covers)
    r_cycle, r_entry, r_day = _administrations(world, cycles)
    r_course = cycles["course"][r_cycle]
    cycle_weight10, cycle_ps = _cycle_states(rng, world, cycles["course"], cycles["number"])
    number = cycles["number"][r_cycle]
    world.r_course = r_course
    world.r_cycle_number = number
    world.r_cycle_start = cycles["start"][r_cycle]
    world.r_cycle_weight10 = cycle_weight10[r_cycle]
    world.r_cycle_ps = cycle_ps[r_cycle]
    world.r_entry = r_entry
    world.r_day = r_day
    world.r_dose10 = _doses_10(world, r_course, r_entry, number, c_gfr)
    world.r_delayed = cycles["delayed"][r_cycle]
    world.r_covers = np.where(E_MULTI[r_entry], cycles["covers"][r_cycle], 1)


def _cycles_near_window(world: World, details: dict[str, np.ndarray], covers: np.ndarray) -> dict[str, np.ndarray]:
    """The cycles with an administration that may fall inside the reporting window (the only ones that
    matter): course, start day, regimen, number, delayed and dispensing cover of each."""
    # The cycle arrays of first and follow-on courses were built separately: index courses globally.
    cycle_course = np.repeat(np.arange(len(world.c_type)), world.c_cycles)
    cycle_start = details["cycle_start"]
    cycle_type = world.c_type[cycle_course]
    near = (cycle_start + R_MAX_DAY[cycle_type] >= world.first_day) & (cycle_start <= world.last_day)
    return {"course": cycle_course[near], "start": cycle_start[near], "type": cycle_type[near],
            "number": details["cycle_number"][near], "delayed": details["delayed"][near], "covers": covers[near]}


def _administrations(world: World, cycles: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every drug entry of each cycle's regimen that applies to the cycle's number, kept when its day is in
    the reporting window. Returns, per administration, its cycle (index into `cycles`), entry and day."""
    cycle_type, cycle_number = cycles["type"], cycles["number"]
    by_type = np.argsort(cycle_type, kind="stable")
    bounds = np.searchsorted(cycle_type[by_type], np.arange(len(REGIMENS) + 1))
    rows_cycle, rows_entry = [], []
    for ri in range(len(REGIMENS)):
        cycles_of_type = by_type[bounds[ri]:bounds[ri + 1]]
        number = cycle_number[cycles_of_type]
        for entry in np.flatnonzero(E_REGIMEN == ri):
            if E_FIRST[entry] > 1 or E_LAST[entry] < 999:
                sel = cycles_of_type[(number >= E_FIRST[entry]) & (number <= E_LAST[entry])]
            else:
                sel = cycles_of_type
            rows_cycle.append(sel)
            rows_entry.append(np.full(len(sel), entry))
    r_cycle = np.concatenate(rows_cycle)
    r_entry = np.concatenate(rows_entry)
    r_day = cycles["start"][r_cycle] + E_DAY[r_entry]
    inside = (r_day >= world.first_day) & (r_day <= world.last_day)
    return r_cycle[inside], r_entry[inside], r_day[inside]


def _cycle_states(rng, world: World, cycle_course: np.ndarray,
                  cycle_number: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weight (tenths of kg) and performance status at the start of each cycle: drifting a little from
    those at the start of the regimen, which cycle 1 keeps."""
    n_cycles = len(cycle_course)
    cycle_weight = np.clip(
        world.c_weight10[cycle_course] / 10 * (1 + rng.normal(0, 0.015, n_cycles)), 45, 120)
    cycle_weight10 = np.rint(cycle_weight * 10).astype(np.int64)
    cycle_weight10[cycle_number == 1] = world.c_weight10[cycle_course][cycle_number == 1]
    shift = (rng.random(n_cycles) < 0.1).astype(int) - (rng.random(n_cycles) < 0.05).astype(int)
    cycle_ps = np.clip(world.c_ps[cycle_course] + shift, 0, 2)
    cycle_ps[cycle_number == 1] = world.c_ps[cycle_course][cycle_number == 1]
    return cycle_weight10, cycle_ps


def _doses_10(world: World, r_course: np.ndarray, r_entry: np.ndarray, number: np.ndarray,
              c_gfr: np.ndarray) -> np.ndarray:
    """The dose of each administration in tenths of a mg: per m2 of body surface, per kg, flat or by the
    Calvert formula, capped, reduced by 20% from the course's reduction cycle, rounded to the drug's step."""
    patient = world.c_patient[r_course]
    height = world.p_height[patient]
    weight = world.c_weight10[r_course] / 10
    bsa = np.minimum(np.sqrt(height * weight / 3600), 2.2)
    basis = E_BASIS[r_entry]
    amount = E_AMOUNT[r_entry]
    dose = np.select(
        [basis == 0, basis == 1, basis == 3],
        [amount * bsa, amount * weight, amount * (c_gfr[r_course] + 25)],
        amount,
    )
    dose = np.minimum(dose, E_CAP[r_entry])
    reduced_from = world.c_reduced_from[r_course]
    reduced = (reduced_from > 0) & (number >= reduced_from)
    dose = np.where(reduced, dose * 0.8, dose)
    step = E_STEP[r_entry]
    dose = np.maximum(np.round(dose / step) * step, step)
    return np.rint(dose * 10).astype(np.int64)
