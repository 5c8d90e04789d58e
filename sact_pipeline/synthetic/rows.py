"""Rows: one per simulated drug administration, in file order, with the value of every item as a `Column`
(both versions' items, the v4-only ones made only when a v4 file is written), their defects, and the CSV
lines each version is written with.

The records do not depend on the version: every v3 item (all of them shared with v4, under other headers)
is drawn from the main generator; the v4-only items from their own (``[seed, 5]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sact_pipeline.domain.nhs_number import generate_valid
from sact_pipeline.domain.spec import SACT, V3, V4
from sact_pipeline.synthetic.catalogue import (
    DRUG_NAMES,
    E_DRUG,
    E_ORAL,
    E_ROUTE,
    FAMILY_NAMES,
    FEMALE_NAMES,
    MALE_NAMES,
    MG_SNOMED,
    OUTCOME_REASONS,
    R_INTERVAL,
    REGIMENS,
    ROUTE_CODES,
    ROUTES,
    SITE_NAMES,
    SITES,
    UNIT_LETTERS,
)
from sact_pipeline.synthetic.columns import Column, date_strings, timestamps
from sact_pipeline.synthetic.defects import NEW_V4_REQUIRED_COLUMNS, DefectRates, RowDefects, inject_v4_defects
from sact_pipeline.synthetic.versions import Plan
from sact_pipeline.synthetic.world import World, choice

STRAY_SPACE_COLUMNS: tuple[str, ...] = (
    "nhs_number", "person_family_name", "person_given_name", "patient_postcode", "consultant_gmc_code",
    "primary_diagnosis", "intent_of_treatment", "regimen", "drug_name",
)
_WEIGHT_VALUES = [f"{t / 10:.1f}" for t in range(0, 1201)]  # kg, one decimal: the weight items' dictionary


@dataclass
class Rows:
    """Every simulated row (sorted by trust, month, date, patient), its values and defects, and its CSV lines."""

    columns: dict[str, Column] | None  # every item of both versions (dropped once the lines are built)
    trust: np.ndarray
    month: np.ndarray
    patient: np.ndarray
    category: np.ndarray  # 0 clean, 1 invalid NHS number, 2 missing mandatory, 3 duplicated, 4 missing required,
    #                       5 out of month, 6 other trust's provider code
    mandatory_kind: np.ndarray  # index into MANDATORY_DEFECT_KINDS of a missing_mandatory row, else -1
    required_item: np.ndarray  # index into REQUIRED_COLUMNS of a missing_required row, else -1
    required_bad_code: np.ndarray  # a missing_required row given an out-of-list code (not left blank)
    keep: np.ndarray  # written: False for a cycle an earlier multi-cycle dispensing covered
    facts: dict[str, np.ndarray]  # what the v4-only items are made from (row or course level)
    v4_gap: np.ndarray | None = None  # index into NEW_V4_REQUIRED_COLUMNS of an item left empty in v4, else -1
    lines: dict[str, pa.Array] = field(default_factory=dict)  # version -> one CSV line per row of `position`
    position: dict[str, np.ndarray] = field(default_factory=dict)  # version -> row -> index in lines (-1: none)


@dataclass(frozen=True)
class _Sorted:
    """The world's administrations in file order (trust, month, day, patient, drug entry), and the patients
    who have one (renumbered 0..n_patients-1 in world order)."""

    used: np.ndarray  # world patient of each patient with rows
    order: np.ndarray  # world row of each row
    course: np.ndarray
    patient: np.ndarray
    trust: np.ndarray
    month: np.ndarray  # index of the reporting month
    entry: np.ndarray
    admin_day: np.ndarray
    cycle_number: np.ndarray
    cycle_start: np.ndarray

    @classmethod
    def of(cls, w: World) -> "_Sorted":
        """Sorted so that each file's rows are contiguous, in the order a trust's system would list them."""
        r_patient_all = w.c_patient[w.r_course]
        used, r_patient = np.unique(r_patient_all, return_inverse=True)
        r_trust = w.c_trust[w.r_course]
        r_month = w.r_day.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) - w.first_month_index
        order = np.lexsort((w.r_entry, r_patient, w.r_day, r_month, r_trust))
        return cls(used=used, order=order, course=w.r_course[order], patient=r_patient[order], trust=r_trust[order],
                   month=r_month[order], entry=w.r_entry[order], admin_day=w.r_day[order],
                   cycle_number=w.r_cycle_number[order], cycle_start=w.r_cycle_start[order])

    @property
    def n(self) -> int:
        return len(self.order)

    @property
    def n_patients(self) -> int:
        return len(self.used)


class _Dates:
    """The date columns share one dictionary: every day from the earliest date of birth or decision to treat
    to the last administration (quoted for CSV once, whatever the number of rows)."""

    def __init__(self, first: int, last: int):
        self.first = first
        self.values = date_strings(first, last)

    def column(self, days: np.ndarray) -> Column:
        """A date column for `days` (days since 1970-01-01, within the dictionary's range)."""
        return Column(self.values, days - self.first)


def _name_weights(names: tuple[str, ...]) -> np.ndarray:
    """Names with letters outside ASCII (Zoë, Ó Briain, O’Brien...) are about 1 in 20 of those drawn."""
    weights = np.array([0.2 if any(ord(ch) > 127 for ch in name) else 1.0 for name in names])
    return weights / weights.sum()


def build_rows(rng, w: World, defects: DefectRates, stray_space_trust: int) -> Rows:
    """Every row's v3 items and defects (all drawn from `rng`, in a fixed order), and the facts the v4-only
    items are later made from; the rows of English trust #`stray_space_trust` get stray spaces."""
    s = _Sorted.of(w)
    ids = _identities(rng, w, s)
    diagnoses = _diagnoses(rng, w.p_site[s.used])
    dob, c_dtt, dates = _dates(rng, w, s)
    course = _course_codes(rng, w)
    gmc_values = _gmc_codes(rng, len(w.consultant_specialty))
    outcome = _outcomes(w, s, course)
    columns = {
        **_patient_columns(w, s, ids, diagnoses, dates.column(dob[s.patient]), gmc_values),
        **_regimen_columns(w, s, course, dates, c_dtt),
        **_administration_columns(w, s, outcome, dates),
    }
    assert set(columns) == set(SACT.version(V3).columns)

    row_defects = RowDefects.draw(rng, defects, s.n)
    row_defects.inject(columns, s.patient, s.n_patients)
    # Activity dated in the month before the reporting month; a provider code of another trust of the run.
    previous_day = row_defects.move_out_of_month(columns, s.month, w.first_month_index)
    row_defects.swap_provider(columns, s.trust, w.codes)
    _pad_stray_spaces(rng, columns, np.flatnonzero(s.trust == stray_space_trust))

    category = row_defects.category
    administered = s.admin_day.copy()  # the administration date as written (out_of_month included)
    administered[category == 5] = previous_day[category == 5].astype(np.int64)
    facts = {
        "course": s.course, "entry": s.entry, "administered": administered, "covers": outcome["covers"],
        "last": outcome["last_cycle"], "reduced": outcome["reduced"], "delayed": w.r_delayed[s.order],
        "invalid_date": row_defects.invalid_date,
        "c_adjunctive": course["adjunctive"], "c_intent": course["intent"], "c_toxicity": course["toxicity"],
    }
    return Rows(columns=columns, keep=outcome["covers"] > 0, facts=facts, trust=s.trust, month=s.month,
                patient=s.patient, category=category, mandatory_kind=row_defects.mandatory_kind,
                required_item=row_defects.required_item, required_bad_code=row_defects.required_bad_code)


def _identities(rng, w: World, s: _Sorted) -> dict:
    """Per patient with rows: a valid NHS number (and a wrong-check-digit one for the invalid_nhs_number
    defect), a local identifier in the trust's style, a postcode in the trust's areas and a name that
    matches the patient's sex."""
    n_patients = s.n_patients
    p_trust = w.p_trust[s.used]
    nhs = generate_valid(rng, n_patients)
    nhs_int = np.array(nhs, dtype=np.int64) if n_patients else np.zeros(0, dtype=np.int64)
    wrong = (nhs_int % 10 + rng.integers(1, 10, size=n_patients)) % 10
    invalid = (nhs_int - nhs_int % 10 + wrong).astype(str).tolist()
    local_numbers = rng.choice(9_000_000, size=n_patients, replace=False) + 1_000_000
    style = w.trust_local_style[p_trust]
    local_ids = [
        (f"K{num}" if kind == 0 else f"{num:08d}" if kind == 1 else f"MRN{num:07d}")
        for num, kind in zip(local_numbers.tolist(), style.tolist())
    ]
    area_pick = rng.integers(0, 2, size=n_patients)
    district = rng.integers(1, 21, size=n_patients)
    sector = rng.integers(0, 10, size=n_patients)
    unit = UNIT_LETTERS[rng.integers(0, len(UNIT_LETTERS), size=(n_patients, 2))]
    postcodes = [
        f"{w.trust_areas[t][a]}{d} {sec}{u0}{u1}"
        for t, a, d, sec, u0, u1 in zip(p_trust.tolist(), area_pick.tolist(), district.tolist(), sector.tolist(),
                                        unit[:, 0].tolist(), unit[:, 1].tolist())
    ]
    p_female = w.p_female[s.used]
    given = np.where(p_female, rng.choice(len(FEMALE_NAMES), n_patients, p=_name_weights(FEMALE_NAMES)),
                     len(FEMALE_NAMES) + rng.choice(len(MALE_NAMES), n_patients, p=_name_weights(MALE_NAMES)))
    family = rng.choice(len(FAMILY_NAMES), n_patients, p=_name_weights(FAMILY_NAMES))
    return {"nhs": nhs, "invalid": invalid, "local_ids": local_ids, "postcodes": postcodes, "female": p_female,
            "given": given, "family": family}


def _diagnoses(rng, p_site: np.ndarray) -> dict:
    """Per patient with rows: an ICD-10 diagnosis and an ICD-O-3 morphology of the patient's site, as codes
    into the sorted dictionaries of every site's codes."""
    diag_values = sorted({c for s in SITES.values() for c, _ in s.diagnoses})
    morph_values = sorted({c for s in SITES.values() for c, _ in s.morphologies})
    p_diag = np.zeros(len(p_site), dtype=int)
    p_morph = np.zeros(len(p_site), dtype=int)
    for si, name in enumerate(SITE_NAMES):
        sel = np.flatnonzero(p_site == si)
        site = SITES[name]
        p_diag[sel] = np.array([diag_values.index(c) for c, _ in site.diagnoses])[choice(rng, site.diagnoses, len(sel))]
        p_morph[sel] = np.array([morph_values.index(c) for c, _ in site.morphologies])[
            choice(rng, site.morphologies, len(sel))]
    return {"diag_values": diag_values, "morph_values": morph_values, "diag": p_diag, "morph": p_morph}


def _dates(rng, w: World, s: _Sorted) -> tuple[np.ndarray, np.ndarray, _Dates]:
    """A date of birth per patient (an age for the site at the patient's first course start), a decision
    to treat per course (3-28 days before its start), and the date dictionary covering them."""
    first_start_of_patient = np.full(s.n_patients, np.iinfo(np.int64).max)
    np.minimum.at(first_start_of_patient, s.patient, w.c_start[s.course])
    p_site = w.p_site[s.used]
    age_mean = np.array([SITES[name].age[0] for name in SITE_NAMES])[p_site]
    age_sd = np.array([SITES[name].age[1] for name in SITE_NAMES])[p_site]
    age_days = np.rint(np.clip(rng.normal(age_mean, age_sd), 19, 94) * 365.25).astype(np.int64)
    dob = first_start_of_patient - age_days
    c_dtt = w.c_start - rng.integers(3, 29, size=len(w.c_type))
    lo = int(min(dob.min(initial=w.first_day), c_dtt.min(initial=w.first_day)))
    hi = int(max(w.last_day, s.admin_day.max(initial=w.last_day)))
    return dob, c_dtt, _Dates(lo, hi)


def _course_codes(rng, w: World) -> dict:
    """Per course: adjunctive therapy, intent, comorbidity adjustment, clinical trial, whether a stopped
    course stopped for toxicity, and the free-text reason it was not completed (as codes)."""
    n_courses = len(w.c_type)
    c_site = w.p_site[w.c_patient]
    adjuvant_site = np.array([SITES[s].adjuvant for s in SITE_NAMES])[c_site]
    c_adjunctive = np.where(
        w.c_curative & adjuvant_site, np.where(rng.random(n_courses) < 0.7, 0, 1), 2)  # '1', '2', '3'
    c_adjunctive = np.where(rng.random(n_courses) < 0.02, 3, c_adjunctive)  # '9'
    c_intent = np.where(w.c_curative, 0, rng.choice([1, 2, 3, 4], size=n_courses, p=[.6, .2, .1, .1]))
    c_intent = np.where(rng.random(n_courses) < 0.01, 5, c_intent)  # '99'
    c_comorbidity = (rng.random(n_courses) < 0.1).astype(int)  # 'N', 'Y'
    c_trial = np.where(rng.random(n_courses) < 0.05, 0, 1)  # '01', '02'
    c_toxicity = w.c_stopped & (rng.random(n_courses) < 0.5)
    c_reason = rng.integers(0, len(OUTCOME_REASONS), size=n_courses)
    return {"adjunctive": c_adjunctive, "intent": c_intent, "comorbidity": c_comorbidity, "trial": c_trial,
            "toxicity": c_toxicity, "reason": c_reason}


def _gmc_codes(rng, n_consultants: int) -> list[str]:
    """A distinct GMC code (C + 7 digits) per consultant of the run."""
    consultant_ids = rng.choice(9_000_000, size=n_consultants, replace=False) + 1_000_000
    return [f"C{i}" for i in consultant_ids.tolist()]


def _outcomes(w: World, s: _Sorted, course: dict) -> dict:
    """Per row: the cycles its dispensing covers, whether it covers the course's last cycle (where the
    regimen outcome items go), those outcome codes, and whether its dose is reduced."""
    c = s.course
    covers = w.r_covers[s.order]
    last_cycle = s.cycle_number + covers - 1 >= w.c_cycles[c]  # the row (dispensing) covers the last cycle
    last_cycle &= covers > 0
    curative_row = w.c_curative[c]
    completed = np.where(last_cycle & curative_row, np.where(w.c_stopped[c], 1, 0), 2)  # Y, N, ''
    reason = np.where(last_cycle & curative_row & w.c_stopped[c], 1 + course["reason"][c], 0)
    toxicity = np.where(last_cycle, np.where(course["toxicity"][c], 0, 1), 2)
    reduced = (w.c_reduced_from[c] > 0) & (s.cycle_number >= w.c_reduced_from[c])
    return {"covers": covers, "last_cycle": last_cycle, "completed": completed, "reason": reason,
            "toxicity": toxicity, "reduced": reduced}


def _patient_columns(w: World, s: _Sorted, ids: dict, diagnoses: dict, dob: Column,
                     gmc_values: list[str]) -> dict[str, Column]:
    """The items about the patient, their consultant and their diagnosis (v3 items 1-14)."""
    zeros = np.zeros(s.n, dtype=np.int64)
    patient = s.patient
    p_consultant = w.p_consultant[s.used]
    return {
        "nhs_number": Column(ids["nhs"] + ids["invalid"], patient),
        "local_patient_identifier": Column(ids["local_ids"], patient),
        "nhs_number_status_indicator_code": Column(["01"], zeros),
        "person_family_name": Column(FAMILY_NAMES, ids["family"][patient]),
        "person_given_name": Column(list(FEMALE_NAMES) + list(MALE_NAMES), ids["given"][patient]),
        "date_of_birth": dob,
        "person_stated_gender_code": Column(["2", "1"], (~ids["female"][patient]).astype(int)),
        "patient_postcode": Column(ids["postcodes"], patient),
        "consultant_gmc_code": Column(gmc_values, p_consultant[patient]),
        "consultant_specialty_code": Column(["370", "800", "303"], w.consultant_specialty[p_consultant[patient]]),
        "organisation_identifier_code_of_provider": Column(w.org_values, w.c_provider[s.course]),
        "primary_diagnosis": Column(diagnoses["diag_values"], diagnoses["diag"][patient]),
        "morphology_icd_o": Column(diagnoses["morph_values"], diagnoses["morph"][patient]),
        "diagnosis_code_snomed_ct": Column([""], zeros),
    }


def _regimen_columns(w: World, s: _Sorted, course: dict, dates: _Dates, c_dtt: np.ndarray) -> dict[str, Column]:
    """The items about the regimen (course), the same on every row of a course."""
    c = s.course
    return {
        "adjunctive_therapy": Column(["1", "2", "3", "9"], course["adjunctive"][c]),
        "intent_of_treatment": Column(["01", "02", "03", "04", "05", "99"], course["intent"][c]),
        "regimen": Column([r.name for r in REGIMENS], w.c_type[c]),
        "height_at_start_of_regimen": Column([f"{h / 100:.2f}" for h in range(150, 196)],
                                             (w.p_height[w.c_patient].astype(int) - 150)[c]),
        "weight_at_start_of_regimen": Column(_WEIGHT_VALUES, w.c_weight10[c]),
        "performance_status_at_start_of_regimen": Column(["0", "1", "2"], w.c_ps[c]),
        "comorbidity_adjustment": Column(["N", "Y"], course["comorbidity"][c]),
        "date_decision_to_treat": dates.column(c_dtt[c]),
        "start_date_of_regimen": dates.column(w.c_start[c]),
        "clinical_trial": Column(["01", "02"], course["trial"][c]),
    }


def _administration_columns(w: World, s: _Sorted, outcome: dict, dates: _Dates) -> dict[str, Column]:
    """The items about the cycle, the drug administration and the regimen's outcome."""
    zeros = np.zeros(s.n, dtype=np.int64)
    c, entry = s.course, s.entry
    dose_unique, dose_codes = np.unique(w.r_dose10[s.order], return_inverse=True)
    dose_values = [str(t // 10) if t % 10 == 0 else f"{t / 10:.1f}" for t in dose_unique.tolist()]
    return {
        "cycle_number": Column([str(k) for k in range(int(s.cycle_number.max(initial=1)) + 1)], s.cycle_number),
        "start_date_of_cycle": dates.column(s.cycle_start),
        "weight_at_start_of_cycle": Column(_WEIGHT_VALUES, w.r_cycle_weight10[s.order]),
        "performance_status_at_start_of_cycle": Column(["0", "1", "2"], w.r_cycle_ps[s.order]),
        "drug_name": Column(DRUG_NAMES, E_DRUG[entry]),
        "dm_d": Column([""], zeros),
        "actual_dose_per_administration": Column(dose_values, dose_codes),
        "administration_measurement_per_actual_dose": Column(["01"], zeros),
        "other_administration_measurement_per_actual_dose": Column([""], zeros),
        "unit_of_measurement_snomed_ct_dm_d": Column([MG_SNOMED], zeros),
        "sact_administration_route": Column(ROUTE_CODES, E_ROUTE[entry]),
        "route_of_administration_snomed_ct_dm_d": Column([ROUTES[code] for code in ROUTE_CODES], E_ROUTE[entry]),
        "administration_date": dates.column(s.admin_day),
        "organisation_identifier_of_sact_administration": Column(w.org_values, w.c_admin_org[c]),
        "regimen_modification_dose_reduction": Column(["N", "Y"], outcome["reduced"].astype(int)),
        "regimen_outcome_summary_curative_completed_as_planned": Column(["Y", "N", ""], outcome["completed"]),
        "regimen_outcome_summary_curative_not_completed_reason": Column([""], zeros),
        "other_regimen_outcome_summary_curative_not_completed_reason": Column([""] + list(OUTCOME_REASONS),
                                                                             outcome["reason"]),
        "regimen_outcome_summary_non_curative": Column([""], zeros),
        "regimen_outcome_summary_toxicity": Column(["Y", "N", ""], outcome["toxicity"]),
    }


def _pad_stray_spaces(rng, columns: dict[str, Column], rows: np.ndarray) -> None:
    """Stray spaces around ~25% of the values of some columns of `rows` (one trust's rows): a trust whose
    system pads fields, which the pipeline must strip (not a defect)."""
    for column in STRAY_SPACE_COLUMNS:
        columns[column].pad(rows[rng.random(len(rows)) < 0.25], rng)


def write_lines(rng, w: World, rows: Rows, defects: DefectRates, plan: Plan) -> None:
    """The CSV lines of the rows each version is written for (rows covered by a multi-cycle dispensing
    are never written); the v4-only items are made (from `rng`, their own stream) only when a v4 file is."""
    version_of = plan.v4[rows.trust, rows.month]
    as_v4 = version_of | plan.v4_resubmission[rows.trust, rows.month]
    wanted = {V3: rows.keep & ~version_of, V4: rows.keep & as_v4}
    if (plan.v4 | plan.v4_resubmission).any():
        rows.columns.update(_v4_columns(rng, w, rows, defects))
    for version, mask in wanted.items():
        if version == V4 and "administration_timestamp_infusion" not in rows.columns:
            continue
        subset = np.flatnonzero(mask)
        if len(subset):
            arrays = [rows.columns[c].arrow(subset) for c in SACT.version(version).columns]
            rows.lines[version] = pc.binary_join_element_wise(*arrays, ",")
        else:
            rows.lines[version] = pa.array([], pa.string())
        position = np.full(len(mask), -1, dtype=np.int64)
        position[subset] = np.arange(len(subset))
        rows.position[version] = position
    rows.columns = None


def _v4_columns(rng, w: World, rows: Rows, defects: DefectRates) -> dict[str, Column]:
    """The items only v4 has, for every row (same draws whichever rows are written as v4)."""
    f = rows.facts
    n, course = len(rows.trust), f["course"]
    n_courses = len(w.c_type)
    # Course level.
    curative_line = np.where(rng.random(n_courses) < 0.15, 2, 1)
    non_curative_line = rng.choice([1, 2, 3], size=n_courses, p=[.6, .3, .1])
    chemoradiation = ((rng.random(n_courses) < 0.05) & w.c_curative).astype(int)  # with curative radiotherapy
    dose_grade = rng.integers(0, 2, size=n_courses)  # '2', '3'
    # Row level.
    start_time = rng.integers(0, 97, size=n)  # 08:00 to 16:00, in 5 minutes
    gap = (rng.random(n) < defects.v4_item_rate) & (rows.category == 0)
    gap_pick = rng.integers(0, len(NEW_V4_REQUIRED_COLUMNS), size=n)

    zeros = np.zeros(n, dtype=np.int64)
    first_day = int(f["administered"].min()) if n else 0
    oral = E_ORAL[f["entry"]]
    curative = f["c_intent"][course] == 0  # Intent_Of_Treatment '01'
    reduced = f["reduced"]
    stopped = w.c_stopped[course]
    summary = np.where(f["last"], np.where(stopped, np.where(f["c_toxicity"][course], 3, 2), 1), 0)
    intervals = sorted({r.interval for r in REGIMENS})
    gmc = rows.columns["consultant_gmc_code"]
    columns: dict[str, Column] = {
        "professional_registration_issuer_code": Column(["01"], zeros),
        "professional_registration_entry_identifier": Column(gmc.values, gmc.codes),
        "treatment_context": Column(["01", "02", "03", "99"], f["c_adjunctive"][course]),
        "curative_line_of_treatment": Column(["", "1", "2"], np.where(curative, curative_line[course], 0)),
        "non_curative_line_of_treatment": Column(["", "1", "2", "3"],
                                                 np.where(curative, 0, non_curative_line[course])),
        "chemoradiation": Column(["N", "Y"], chemoradiation[course]),
        "regimen_modification": Column(["N"], zeros),
        "cycle_modification": Column(["N"], zeros),
        "cycle_delay": Column(["N", "Y"], f["delayed"].astype(int)),
        "administration_timestamp_infusion": timestamps(f["administered"], _minutes(rows, start_time), ~oral),
        "administration_date_oral_drug_dispensed": Column(
            [""] + date_strings(first_day, int(f["administered"].max(initial=first_day))),
            np.where(oral, f["administered"] - first_day + 1, 0)),
        "cycle_length_in_days": Column([""] + [str(i) for i in intervals],
                                       np.where(oral, np.searchsorted(intervals, R_INTERVAL[w.c_type[course]]) + 1,
                                                0)),
        "number_of_cycles_dispensed": Column(["", "1", "2", "3"], np.where(oral, f["covers"], 0)),
        "dose_modification": Column(["N", "Y"], reduced.astype(int)),
        "reason_for_dose_modification": Column(["", "1"], reduced.astype(int)),
        "toxicity_grade_dose_modification": Column(["", "2", "3"], np.where(reduced, 1 + dose_grade[course], 0)),
        "end_of_regimen_summary": Column(["", "1", "2", "3"], summary),
    }
    for name in SACT.version(V4).columns:
        if name not in rows.columns and name not in columns:
            columns[name] = Column([""], zeros)  # reasons and grades of modifications that did not happen
    rows.v4_gap = inject_v4_defects(columns, f["invalid_date"], oral, gap, gap_pick)
    return columns


def _minutes(rows: Rows, start_time: np.ndarray) -> np.ndarray:
    """Minute of the day of each administration. A patient's drugs of the day are given one after another
    (rows are sorted by day, patient, drug): the first at its start time, each next 30 minutes later, none
    after 18:00."""
    administered = rows.facts["administered"]
    n = len(administered)
    new_visit = np.ones(n, dtype=bool)
    new_visit[1:] = (rows.patient[1:] != rows.patient[:-1]) | (administered[1:] != administered[:-1])
    visit = np.maximum.accumulate(np.where(new_visit, np.arange(n), 0))
    return np.minimum(8 * 60 + 5 * start_time[visit] + 30 * (np.arange(n) - visit), 18 * 60)
