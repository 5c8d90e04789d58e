"""Deterministic synthetic SACT monthly submission files (v3 and v4), as trusts send them.

`generate_submissions` writes one CSV per trust and reporting month under ``landing_dir/<YYYYMM>/``
named ``SACT_<ORG>_<YYYYMM>_<YYYYMMDDHHMMSS>.csv``: the header row of the file's SACT version (the headers
of ``SACT.version("v3").items`` or ``SACT.version("v4").items``, in the data-set table's order: 44 or 60
columns), then one row per drug administration whose administration date falls in the reporting month.
Everything comes from seeded ``numpy.random.Generator``s: the same arguments give the same files, byte for
byte (the only exception: timestamps that would lie in the future are clamped, see below, which can only
happen when ``end_month`` is one of the last two months).

The simulation is vectorised (numpy, pyarrow): courses of treatment start at a steady rate per trust and
regimen, run a number of cycles every 7/14/21/28 days (with occasional one- or two-week delays, early
stops and dose reductions), and every cycle administers each drug of the regimen on its day(s).
Patients persist across months (same NHS number, local id, name, date of birth, postcode), so a regimen
started months before the first reporting month still appears with later cycle numbers, and some patients
go on to a second regimen (FOLFOX -> CAPECITABINE, FEC-T -> TRASTUZUMAB, ...). About
``patients_per_trust`` patients are active per trust-month, scaled by a skewed trust size (the largest
trusts are 3-4 times the smallest).

Oral drugs dispensed for several cycles: about 30% of the dispensings of the oral monotherapies
(CAPECITABINE, ABIRATERONE) that have at least two cycles of the course left cover 2 or 3 cycles. The row
keeps its own Cycle_Number and Start_Date_Of_Cycle (it is one drug administration and one cycle); the
cycles it covers have no dispensing row. The regimen outcome items (v3) and End_Of_Regimen_Summary (v4)
are on the rows of the dispensing (or cycle) that covers a course's last cycle.

Records and versions
--------------------
The records (rows, patients, dates, values of the items both versions have, and the defects) do not depend
on the version a file is written in: ``sact_version="v3"`` and ``"v4"`` with the same other arguments
describe the same drug administrations in the same files (same names and submission times), written as v3
or v4. Everything version-specific (the switch months of ``"mixed"``, the times of day of v4 timestamps,
the values of the items only v4 has, v4 resubmissions) comes from separate generators seeded with
``[seed, 4]`` (the version plan), ``[seed, 5]`` (v4-only values) and ``[seed, 6]`` (multi-cycle
dispensings, which are records), so the main ``seed`` stream is the same in every mode.

The version of each trust-month (`transition`, a `spec.Transition`): a month before ``transition.v4_from``
is always v3 (a v4 file for it would be rejected). From ``v4_from`` on:

- ``"v3"``: every file is v3; ``"v4"``: every file is v4.
- ``"mixed"`` (default), a realistic transition: each trust (RQF too) gets a switch month, uniform over the
  six months from ``v4_from`` (April to September 2026); about 1 in 8 trusts stay on v3 throughout (at
  least one English trust when there are 8 or more, and at least one English trust switches when there
  are 2 or more). A trust sends v4 from its switch month on. About a third of the switching trusts whose
  month before the switch is in the window (and is ``v4_from`` or later) RESUBMIT that month in v4: the
  same records as the v3 file, written as v4, 2-6 days after it (kind 'resubmission'). When none was
  drawn, there are 4 or more English trusts and the window holds two consecutive months from ``v4_from``
  whose second is a possible switch month, one English trust is made such a case (its switch month moved
  into the window if need be).

v4 rows: the items both versions have as in v3 (item 32 holds the same dose under its v4 header, ...);
Administration_Timestamp_(Infusion) (80) ``{date}T{HH:MM}:00{offset}`` for infused or injected drugs
(08:00-18:00 local time, minutes a multiple of 5, +01:00 during British Summer Time, else +00:00), or
Administration_Date_(Oral_Drug_Dispensed) (81) for oral drugs (route 02, also with Cycle_Length_In_Days =
the regimen's interval and Number_Of_Cycles_Administered_(On_A_Named_Day) = the cycles the dispensing
covers); exactly one of the two. New items: issuer code 62 '01' and entry identifier 63 the consultant's GMC
code; Treatment_Context from the adjunctive therapy (1 -> 01, 2 -> 02, 3 -> 03, 9 -> 99); a curative line
of treatment (1, sometimes 2) when the intent is 01, else a non-curative line (1-3); Chemoradiation N
(rarely Y, on a curative course); Regimen_Modification and Cycle_Modification N; Cycle_Delay Y on delayed
cycles; Dose_Modification Y (reason 1, toxicity grade 2 or 3) on dose-reduced cycles, else N; the other
reasons and grades empty; End_Of_Regimen_Summary on the rows covering a course's last cycle (1 completed
as planned, 3 stopped for toxicity, 2 stopped otherwise). A patient's drugs of one day are timed 30
minutes apart.

Trusts: ``trusts`` open English trusts from the ODS register (open by the first reporting month), picked
by the seed, with a 5-character trust (e.g. G6V2S) among them when ``trusts >= 6``, plus the Welsh trust
RQF (Velindre), which submits like the others (processed, never published). In pick order, the English
trusts play these roles (indices modulo the number of English trusts), in every ``sact_version`` mode
(each file in the version of its trust-month):

- #0 writes UTF-8 with a BOM and CRLF line ends; #1 writes Windows-1252 (cp1252) with CRLF; #2 writes UTF-8
  with LF and stray spaces around ~25% of the values of some columns; everyone else (and RQF) writes UTF-8
  with LF. Fields are quoted only where needed (free-text outcome reasons hold commas and quotes).
- #3 is LATE for the second-to-last month (the last month when ``months == 2``; no late file when
  ``months == 1``): that file is submitted in the second month after its reporting month.
- #4 RESUBMITS the first month: its first file (kind 'on_time') lacks every row of ~10% of its patients
  (at least one patient); a second, complete file (kind 'resubmission') follows 2-12 days later, in the
  same or the next month. Both are in the version of that trust-month; that trust-month is never also a v4
  resubmission of ``"mixed"``.
- #5 does NOT SUBMIT the last month (no file at all). Skipped when it would be the late or resubmitting
  trust (fewer than three English trusts).

Every other file is submitted in the month after its reporting month (day 1-25, any time): kind 'on_time'.
A timestamp that would lie in the future is clamped to an hour before now (a late file clamped back into
the month after its reporting month is then labelled 'on_time': with the default ``end_month`` there is
no late file when ``months == 2``). A trust-month without administrations (only likely when
``patients_per_trust`` is below ~20) is still written, as a header-only nil return with ``rows == 0``.

Defects (`DefectRates`, each a probability per data row; a row gets at most one kind of defect, drawn
independently of everything else, so the sets of rows are disjoint; all but the last are the same records
in a v3 and a v4 write):

- invalid_nhs_number: NHS_Number replaced by the patient's number with a wrong check digit (fails
  Modulus 11, never a repeated-digit number); Local_Patient_Identifier is still present.
- missing_mandatory: exactly one of six kinds, equally likely (`MANDATORY_DEFECT_KINDS`): Regimen blank;
  Drug_Name blank; Start_Date_Of_Cycle blank; an impossible administration date (v3 Administration_Date =
  '2024-02-30'; v4 item 80 = '2024-02-30T10:00:00+00:00' on infused rows, item 81 = '2024-02-30' on oral
  rows); Primary_Diagnosis AND Morphology_ICD-O blank; NHS_Number AND Local_Patient_Identifier blank.
- duplicate_rows: the row is written twice, the copy right after it (an exact duplicate). Duplicated rows
  carry no other defect. Note that FOLFOX legitimately has two FLUOROURACIL administrations on day 1
  (bolus and infusion, different doses): not duplicates.
- missing_required: one item of `REQUIRED_COLUMNS` (required in BOTH versions, so that a v3 and a v4 write
  are equivalent: Cycle_Number, mandatory in v4, is not one), picked uniformly, left blank, or - half the
  time when the item has an entry in `BAD_CODES` - given an out-of-list code.
- out_of_month (default 0): the administration date (v3 Administration_Date, v4 the date of item 80 or
  item 81) set to the last day of the month before the reporting month.
- other_trust_provider (default 0): Organisation_Identifier_(Code_Of_Provider) set to the code of another
  trust of the run (the next one in its list).
- missing_v4_item (default: the missing_required rate), v4 files only: one of the new required v4 items
  (`NEW_V4_REQUIRED_COLUMNS`: 62, 63, 65, 24) left empty on a row without another defect - a data-quality
  finding, never a rejection; the items both versions have are untouched.

With ``DefectRates(0, 0, 0, 0)`` every row is valid: every mandatory and required item present and in its
code list, valid NHS numbers, no duplicates (the stray spaces of trust #2 are not defects). Each
`GeneratedFile` carries the exact counts of its rows in `FileDefects`, and its ``sact_version``.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sact_pipeline.domain.nhs_number import generate_valid
from sact_pipeline.domain.organisations import OrganisationRegister
from sact_pipeline.domain.spec import REQUIRED, SACT, V3, V4, Transition

WELSH_TRUST = "RQF"  # Velindre: submits like the English trusts, processed but never published
SACT_VERSIONS: tuple[str, ...] = (V3, V4, "mixed")
INVALID_DATE = "2024-02-30"
INVALID_TIMESTAMP = f"{INVALID_DATE}T10:00:00+00:00"
MANDATORY_DEFECT_KINDS: tuple[str, ...] = (
    "regimen", "drug_name", "start_date_of_cycle", "administration_date", "diagnosis", "patient_identifier",
)
# Items missing_required may pick: required in both versions (a v3 and a v4 write of a record are the same).
REQUIRED_COLUMNS: tuple[str, ...] = tuple(
    i.name for i in SACT.items if i.obligation(V3) == REQUIRED and i.obligation(V4) == REQUIRED)
# New required v4 items that missing_v4_item may leave empty (v4 files only).
NEW_V4_REQUIRED_COLUMNS: tuple[str, ...] = (
    "professional_registration_issuer_code", "professional_registration_entry_identifier", "treatment_context",
    "chemoradiation",
)
# Out-of-list codes used for missing_required defects on coded items (items of REQUIRED_COLUMNS).
BAD_CODES: dict[str, str] = {
    "person_stated_gender_code": "3",
    "intent_of_treatment": "06",
    "performance_status_at_start_of_regimen": "5",
    "clinical_trial": "03",
    "performance_status_at_start_of_cycle": "7",
    "administration_measurement_per_actual_dose": "09",
    "sact_administration_route": "99",
}
MG_SNOMED = "258684004"  # milligram
ROUTES: dict[str, str] = {"01": "47625008", "02": "26643006", "04": "78421000", "05": "34206005"}  # IV, oral, IM, SC
ORAL_ROUTE = "02"
# The transition of "mixed": trusts switch uniformly over the first SWITCH_MONTHS months of v4; some never
# do; some switching trusts resend in v4 the last month they first sent in v3.
SWITCH_MONTHS = 6
STAY_ON_V3 = 1 / 8
V4_RESUBMISSION_SHARE = 1 / 3
MULTI_CYCLE_SHARE = 0.3  # oral dispensings (of courses with >= 2 cycles left) covering 2 or 3 cycles
STRAY_SPACE_COLUMNS: tuple[str, ...] = (
    "nhs_number", "person_family_name", "person_given_name", "patient_postcode", "consultant_gmc_code",
    "primary_diagnosis", "intent_of_treatment", "regimen", "drug_name",
)


@dataclass(frozen=True)
class DefectRates:
    """Probability per data row of each kind of defect (see the module docstring)."""

    invalid_nhs_number: float = 0.02
    missing_mandatory: float = 0.01
    duplicate_rows: float = 0.01
    missing_required: float = 0.03
    out_of_month: float = 0.0
    other_trust_provider: float = 0.0
    # v4 files only, on rows without another defect: one of NEW_V4_REQUIRED_COLUMNS left empty (None: the
    # missing_required rate, so DefectRates(0, 0, 0, 0) is clean in v4 too). Not part of the sum below.
    missing_v4_item: float | None = None

    def __post_init__(self):
        rates = (self.invalid_nhs_number, self.missing_mandatory, self.duplicate_rows, self.missing_required,
                 self.out_of_month, self.other_trust_provider)
        if min(rates) < 0 or sum(rates) > 1:
            raise ValueError("defect rates must be >= 0 and add up to at most 1")
        if self.missing_v4_item is not None and not 0 <= self.missing_v4_item <= 1:
            raise ValueError("the missing_v4_item rate must be between 0 and 1")

    @property
    def v4_item_rate(self) -> float:
        return self.missing_required if self.missing_v4_item is None else self.missing_v4_item


@dataclass(frozen=True)
class FileDefects:
    """Exact defect counts of one written file (rows of the file, duplicates counted once as extra rows)."""

    invalid_nhs_number: int = 0
    missing_mandatory: int = 0
    duplicate_rows: int = 0  # extra copies: rows - distinct rows
    missing_required: int = 0
    missing_mandatory_by_kind: tuple[tuple[str, int], ...] = ()
    # (column, rows left blank, rows given an out-of-list code) per required item with missing_required rows
    missing_required_by_item: tuple[tuple[str, int, int], ...] = ()
    out_of_month: int = 0
    other_trust_provider: int = 0
    missing_v4_item: int = 0  # v4 files only: rows with a new required v4 item left empty
    missing_v4_item_by_item: tuple[tuple[str, int], ...] = ()  # (column, rows) per item with such rows

    @property
    def total(self) -> int:
        return (self.invalid_nhs_number + self.missing_mandatory + self.duplicate_rows + self.missing_required
                + self.out_of_month + self.other_trust_provider + self.missing_v4_item)


@dataclass(frozen=True)
class GeneratedFile:
    path: Path
    org_code: str
    reporting_month: str  # 'YYYY-MM'
    submitted_at: datetime
    rows: int  # data rows, duplicates included
    kind: str  # 'on_time', 'late' or 'resubmission'
    encoding: str = "utf-8"  # 'utf-8', 'utf-8-sig' (BOM) or 'cp1252'
    line_ending: str = "\n"
    patients: int = 0  # distinct patients with rows in the file
    defects: FileDefects = field(default_factory=FileDefects)
    sact_version: str = V3  # 'v3' or 'v4': the header row and items the file is written in


# --------------------------------------------------------------------------------------------------
# Clinical catalogue
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Site:
    diagnoses: tuple[tuple[str, float], ...]  # ICD-10, probability
    morphologies: tuple[tuple[str, float], ...]  # ICD-O-3
    female: float
    age: tuple[float, float]  # mean, sd at the start of treatment
    haematology: bool = False
    adjuvant: bool = False  # curative treatment is (neo)adjuvant: Adjunctive_Therapy 1/2


SITES: dict[str, _Site] = {
    "breast": _Site((("C50.9", .6), ("C50.4", .25), ("C50.8", .15)), (("8500/3", .8), ("8520/3", .2)),
                    .99, (58, 12), adjuvant=True),
    "colorectal": _Site((("C18.9", .45), ("C18.7", .2), ("C20", .35)), (("8140/3", .9), ("8480/3", .1)),
                        .44, (67, 11), adjuvant=True),
    "lymphoma": _Site((("C83.3", 1.0),), (("9680/3", 1.0),), .45, (64, 13), haematology=True),
    "myeloma": _Site((("C90.0", 1.0),), (("9732/3", 1.0),), .42, (70, 9), haematology=True),
    "lung": _Site((("C34.9", .6), ("C34.1", .4)), (("8140/3", .6), ("8070/3", .3), ("8041/3", .1)),
                  .48, (69, 9)),
    "melanoma": _Site((("C43.9", 1.0),), (("8720/3", 1.0),), .5, (63, 14)),
    "bladder": _Site((("C67.9", 1.0),), (("8120/3", 1.0),), .25, (72, 9)),
    "prostate": _Site((("C61", 1.0),), (("8140/3", 1.0),), 0.0, (73, 8)),
    "ovary": _Site((("C56", 1.0),), (("8441/3", 1.0),), 1.0, (63, 11)),
    "pancreas": _Site((("C25.9", 1.0),), (("8500/3", 1.0),), .48, (68, 10)),
}
_SITE_NAMES = tuple(SITES)


@dataclass(frozen=True)
class _Dose:
    drug: str
    amount: float
    basis: str  # 'm2' (per m2 body surface), 'kg', 'flat' or 'auc' (Calvert: AUC x (GFR + 25))
    route: str = "01"
    day: int = 0  # day of the cycle, 0 = the cycle start date
    first_cycle: int = 1
    last_cycle: int = 999
    step: float = 1.0  # dose rounding, mg
    cap: float = float("inf")
    multi_cycle: bool = False  # an oral drug a dispensing of which may cover 2 or 3 cycles


@dataclass(frozen=True)
class _Regimen:
    name: str
    share: float  # share of active patients
    interval: int  # days between cycles
    cycles: tuple[int, int]  # planned cycles, min and max
    sites: tuple[tuple[str, float], ...]
    curative: float  # probability that the intent is curative
    doses: tuple[_Dose, ...]
    follow_on: tuple[str, float] | None = None  # next regimen for the same patient, probability


REGIMENS: tuple[_Regimen, ...] = (
    _Regimen("FEC-T", .06, 21, (6, 6), (("breast", 1.0),), .95, (
        _Dose("FLUOROURACIL", 500, "m2", last_cycle=3, step=5),
        _Dose("EPIRUBICIN", 100, "m2", last_cycle=3),
        _Dose("CYCLOPHOSPHAMIDE", 500, "m2", last_cycle=3, step=5),
        _Dose("DOCETAXEL", 100, "m2", first_cycle=4),
    ), ("TRASTUZUMAB", .25)),
    _Regimen("AC", .04, 21, (4, 4), (("breast", 1.0),), .9, (
        _Dose("DOXORUBICIN", 60, "m2"),
        _Dose("CYCLOPHOSPHAMIDE", 600, "m2", step=5),
    ), ("PACLITAXEL", .5)),
    _Regimen("PACLITAXEL", .04, 7, (12, 12), (("breast", 1.0),), .7, (_Dose("PACLITAXEL", 80, "m2"),)),
    _Regimen("TRASTUZUMAB", .07, 21, (14, 18), (("breast", 1.0),), .85, (
        _Dose("TRASTUZUMAB", 8, "kg", last_cycle=1),
        _Dose("TRASTUZUMAB", 6, "kg", first_cycle=2),
    )),
    _Regimen("DOCETAXEL", .05, 21, (4, 6), (("prostate", .7), ("breast", .3)), .25, (
        _Dose("DOCETAXEL", 75, "m2"),
    )),
    _Regimen("CAPECITABINE", .06, 21, (4, 8), (("colorectal", .6), ("breast", .4)), .5, (
        _Dose("CAPECITABINE", 1250, "m2", route="02", step=150, multi_cycle=True),
    )),
    _Regimen("FOLFOX", .07, 14, (6, 12), (("colorectal", 1.0),), .6, (
        _Dose("OXALIPLATIN", 85, "m2"),
        _Dose("FOLINIC ACID", 350, "flat"),
        _Dose("FLUOROURACIL", 400, "m2", step=5),
        _Dose("FLUOROURACIL", 2400, "m2", step=10),
    ), ("CAPECITABINE", .2)),
    _Regimen("CAPOX", .06, 21, (4, 8), (("colorectal", 1.0),), .6, (
        _Dose("OXALIPLATIN", 130, "m2"),
        _Dose("CAPECITABINE", 1000, "m2", route="02", step=150),
    ), ("CAPECITABINE", .15)),
    _Regimen("R-CHOP", .05, 21, (6, 6), (("lymphoma", 1.0),), .95, (
        _Dose("RITUXIMAB", 375, "m2", step=10),
        _Dose("CYCLOPHOSPHAMIDE", 750, "m2", step=5),
        _Dose("DOXORUBICIN", 50, "m2"),
        _Dose("VINCRISTINE", 1.4, "m2", step=0.1, cap=2.0),
        _Dose("PREDNISOLONE", 100, "flat", route="02"),
    )),
    _Regimen("PEMBROLIZUMAB", .13, 21, (2, 35), (("lung", .6), ("melanoma", .25), ("bladder", .15)), .15, (
        _Dose("PEMBROLIZUMAB", 200, "flat"),
    )),
    _Regimen("CARBOPLATIN PACLITAXEL", .08, 21, (6, 6), (("ovary", .7), ("lung", .3)), .5, (
        _Dose("PACLITAXEL", 175, "m2"),
        _Dose("CARBOPLATIN", 5, "auc", step=10),
    )),
    _Regimen("PEMETREXED CARBOPLATIN", .04, 21, (4, 4), (("lung", 1.0),), .0, (
        _Dose("PEMETREXED", 500, "m2", step=5),
        _Dose("CARBOPLATIN", 5, "auc", step=10),
    ), ("PEMBROLIZUMAB", .4)),
    _Regimen("GEMCITABINE", .05, 28, (2, 6), (("pancreas", .7), ("bladder", .3)), .05, (
        _Dose("GEMCITABINE", 1000, "m2", day=0, step=10),
        _Dose("GEMCITABINE", 1000, "m2", day=7, step=10),
        _Dose("GEMCITABINE", 1000, "m2", day=14, step=10),
    )),
    _Regimen("ABIRATERONE", .10, 28, (3, 26), (("prostate", 1.0),), .0, (
        _Dose("ABIRATERONE", 1000, "flat", route="02", multi_cycle=True),
    ), ("DOCETAXEL", .15)),
    _Regimen("BORTEZOMIB", .05, 21, (4, 8), (("myeloma", 1.0),), .0, (
        _Dose("BORTEZOMIB", 1.3, "m2", route="05", day=0, step=0.1),
        _Dose("BORTEZOMIB", 1.3, "m2", route="05", day=3, step=0.1),
        _Dose("BORTEZOMIB", 1.3, "m2", route="05", day=7, step=0.1),
        _Dose("BORTEZOMIB", 1.3, "m2", route="05", day=10, step=0.1),
    )),
)
_REGIMEN_INDEX = {r.name: i for i, r in enumerate(REGIMENS)}

FEMALE_NAMES = (
    "Olivia", "Amelia", "Isla", "Ava", "Emily", "Sophie", "Grace", "Lily", "Margaret", "Susan", "Patricia",
    "Elizabeth", "Jean", "Sarah", "Helen", "Karen", "Julie", "Joanne", "Zoë", "Siân", "Renée", "Chloë",
    "Aoife", "Niamh", "Bríd", "Anaïs", "Marta", "Priya", "Aisha", "Fatima", "Noémie",
    "Åsa", "Hélène", "Mary-Jane", "Ann", "Dorothy", "Eleanor", "Gwen", "Ffion", "Carys",
)
MALE_NAMES = (
    "Oliver", "George", "Harry", "Jack", "John", "David", "Michael", "Peter", "Robert", "James", "William",
    "Stephen", "Paul", "Mark", "Andrew", "Richard", "Thomas", "Christopher", "Seán", "José", "Rhodri",
    "Dafydd", "Søren", "François", "Jürgen", "Mohammed", "Rajesh", "Kwame", "Piotr", "Tomás", "Éamon",
    "Brian", "Keith", "Gareth", "Owain", "Iain", "Alan", "Colin", "Derek", "Raymond",
)
FAMILY_NAMES = (
    "Smith", "Jones", "Williams", "Taylor", "Brown", "Davies", "Evans", "Wilson", "Thomas", "Johnson",
    "Roberts", "Robinson", "Thompson", "Wright", "Walker", "White", "Edwards", "Hughes", "Green", "Hall",
    "Lewis", "Harris", "Clarke", "Patel", "Jackson", "Wood", "Turner", "Martin", "Cooper", "Hill", "Ward",
    "Morris", "Moore", "Clark", "Lee", "King", "Baker", "Harrison", "Morgan", "Allen", "Khan", "Ahmed",
    "Singh", "Ó Briain", "O'Neill", "O’Brien", "D'Souza", "Müller", "Brontë", "Núñez", "Öztürk", "Lefèvre",
    "Smith-Jones", "ap Rhys", "Nowak", "Kowalski", "Ferreira", "Gonçalves", "MacDonald", "Ní Bhriain",
)
OUTCOME_REASONS = (
    "Patient choice, declined further treatment",
    "Toxicity; admitted with neutropenic sepsis",
    'Patient "felt too unwell" to continue',
    "Disease progression, referred for radiotherapy",
    "Moved to another trust",
)
POSTCODE_AREAS = (
    "M", "SK", "OL", "BL", "WN", "L", "CH", "WA", "PR", "BB", "LA", "B", "CV", "WV", "DY", "LS", "BD", "HX",
    "HD", "WF", "S", "DN", "HU", "YO", "NE", "SR", "DH", "TS", "DL", "NG", "DE", "LE", "LN", "NN", "PE", "CB",
    "IP", "NR", "CO", "CM", "SS", "LU", "AL", "SG", "HP", "MK", "OX", "RG", "SL", "GU", "PO", "SO", "BH",
    "SP", "SN", "BS", "BA", "GL", "EX", "PL", "TQ", "TR", "TA", "DT", "BN", "TN", "ME", "CT", "RH", "KT",
    "CR", "SM", "BR", "DA", "E", "EC", "N", "NW", "SE", "SW", "W", "WC", "EN", "HA", "IG", "RM", "TW", "UB",
    "CA", "ST", "TF", "SY", "HR", "WR",
)
WELSH_POSTCODE_AREAS = ("CF", "NP", "SA", "LD")
_UNIT_LETTERS = np.array(list("ABDEFGHJLNPQRSTUWXYZ"))


# --------------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------------

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
    """Write synthetic SACT submission files under ``landing_dir``; see the module docstring.

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
    last = _parse_month(end_month) if end_month else _add_months(current, -1)
    if last >= current:
        raise ValueError(f"end_month {last:%Y-%m} has not ended yet")
    month_starts = [_add_months(last, k - months + 1) for k in range(months)]
    register = organisations or OrganisationRegister.from_ods_etr()
    rng = np.random.default_rng(seed)

    english = _pick_trusts(register, trusts, month_starts[0], rng)
    if register.get(WELSH_TRUST) is None:
        raise ValueError(f"the organisation register has no {WELSH_TRUST} (Velindre)")
    codes = english + [WELSH_TRUST]
    roles = _Roles.of(len(english), months)
    plan = _version_plan(np.random.default_rng([seed, 4]), sact_version, transition, month_starts, len(english),
                         len(codes), roles)
    world = _simulate(rng, codes, register, month_starts, patients_per_trust, size_spread,
                      oral_rng=np.random.default_rng([seed, 6]))
    table = _build_rows(rng, world, defects, stray_space_trust=2 % len(english))
    _write_lines(np.random.default_rng([seed, 5]), world, table, defects, plan)
    return _write_files(rng, Path(landing_dir), world, table, english, month_starts, now, roles, plan)


# --------------------------------------------------------------------------------------------------
# Roles and versions
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Roles:
    """The trust-months of the special cases, as (English trust index, month index)."""

    late: tuple[int, int] | None
    resubmission: tuple[int, int]
    missing: tuple[int, int] | None

    @classmethod
    def of(cls, n_english: int, months: int) -> "_Roles":
        late = (3 % n_english, months - 2 if months >= 3 else 1) if months >= 2 else None
        resubmission = (4 % n_english, 0)
        missing = (5 % n_english, months - 1)
        if (late is not None and missing[0] == late[0]) or missing[0] == resubmission[0]:
            missing = None
        return cls(late, resubmission, missing)


@dataclass(frozen=True)
class _Plan:
    """The SACT version of every trust-month, and the v4 resubmissions of "mixed"."""

    v4: np.ndarray  # (trusts, months) bool: the trust-month is written as v4
    v4_resubmission: np.ndarray  # (trusts, months) bool: first sent as v3, then resent as v4
    resubmission_delay: tuple[timedelta, ...]  # per trust: after the v3 file


def _version_plan(rng, sact_version: str, transition: Transition, month_starts: list[date], n_english: int,
                  n_trusts: int, roles: _Roles) -> _Plan:
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
        return _Plan(v4, resubmission, delay)

    if n_english >= 8 and not stays[:n_english].any():
        stays[order[0]] = True
    if n_english >= 2 and stays[:n_english].all():
        stays[order[-1]] = False
    first = _parse_month(transition.v4_from)
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
    return _Plan(v4, resubmission, delay)


# --------------------------------------------------------------------------------------------------
# Months and trusts
# --------------------------------------------------------------------------------------------------

def _parse_month(value: str) -> date:
    try:
        return datetime.strptime(value.strip()[:7], "%Y-%m").date()
    except ValueError as error:
        raise ValueError(f"a month must be YYYY-MM, got {value!r}") from error


def _add_months(first: date, count: int) -> date:
    index = first.year * 12 + first.month - 1 + count
    return date(index // 12, index % 12 + 1, 1)


def _pick_trusts(register: OrganisationRegister, count: int, first_month: date, rng) -> list[str]:
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


# --------------------------------------------------------------------------------------------------
# Simulation: trusts, courses, cycles, administrations
# --------------------------------------------------------------------------------------------------

def _day(value: date) -> int:
    return int(np.datetime64(value, "D").astype(np.int64))


@dataclass
class _World:
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


_ENTRIES = [(ri, d) for ri, r in enumerate(REGIMENS) for d in r.doses]
E_REGIMEN = np.array([ri for ri, _ in _ENTRIES])
E_DAY = np.array([d.day for _, d in _ENTRIES])
E_FIRST = np.array([d.first_cycle for _, d in _ENTRIES])
E_LAST = np.array([d.last_cycle for _, d in _ENTRIES])
E_AMOUNT = np.array([d.amount for _, d in _ENTRIES], dtype=float)
E_BASIS = np.array([("m2", "kg", "flat", "auc").index(d.basis) for _, d in _ENTRIES])
E_STEP = np.array([d.step for _, d in _ENTRIES], dtype=float)
E_CAP = np.array([d.cap for _, d in _ENTRIES], dtype=float)
DRUG_NAMES = sorted({d.drug for _, d in _ENTRIES})
E_DRUG = np.array([DRUG_NAMES.index(d.drug) for _, d in _ENTRIES])
ROUTE_CODES = sorted(ROUTES)
E_ROUTE = np.array([ROUTE_CODES.index(d.route) for _, d in _ENTRIES])
E_ORAL = np.array([d.route == ORAL_ROUTE for _, d in _ENTRIES])
E_MULTI = np.array([d.multi_cycle for _, d in _ENTRIES])
R_INTERVAL = np.array([r.interval for r in REGIMENS])
R_MULTI = np.array([any(d.multi_cycle for d in r.doses) for r in REGIMENS])
assert all(len(r.doses) == 1 for r in REGIMENS if any(d.multi_cycle for d in r.doses)), \
    "multi-cycle dispensing is decided per cycle: only for an oral monotherapy"
R_MAX_DAY = np.array([max(d.day for d in r.doses) for r in REGIMENS])


def _expected_span(r: _Regimen, ri: int) -> tuple[float, float]:
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


def _choice(rng, options: tuple[tuple[str, float], ...], size: int) -> np.ndarray:
    probabilities = np.array([p for _, p in options], dtype=float)
    return rng.choice(len(options), size=size, p=probabilities / probabilities.sum())


def _simulate(rng, codes: list[str], register, month_starts: list[date], per_trust: int,
              size_spread: float = 0.48, *, oral_rng) -> _World:
    n_trusts = len(codes)
    first_day = _day(month_starts[0])
    last_day = _day(_add_months(month_starts[-1], 1)) - 1
    window = last_day - first_day + 1
    sizes = _size_multipliers(rng, n_trusts, size_spread)

    # Organisation codes: trusts with 3-character codes may have sites (trust code + 2 digits).
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
    trust_areas = [
        tuple(rng.choice(WELSH_POSTCODE_AREAS if code == WELSH_TRUST else POSTCODE_AREAS, size=2, replace=False))
        for code in codes
    ]
    trust_local_style = rng.integers(0, 3, size=n_trusts)

    # Consultants: an oncology and a haematology pool per trust.
    onc_size = np.maximum(4, np.rint(10 * sizes)).astype(int)
    haem_size = np.maximum(2, np.rint(4 * sizes)).astype(int)
    onc_offset = np.concatenate([[0], np.cumsum(onc_size + haem_size)[:-1]])
    haem_offset = onc_offset + onc_size
    n_consultants = int((onc_size + haem_size).sum())
    consultant_specialty = np.zeros(n_consultants, dtype=int)  # 0 '370', 1 '800', 2 '303'
    for t in range(n_trusts):
        consultant_specialty[onc_offset[t]:onc_offset[t] + onc_size[t]] = rng.integers(0, 2, size=onc_size[t])
        consultant_specialty[haem_offset[t]:haem_offset[t] + haem_size[t]] = 2

    # First courses: a steady stream of starts per regimen and trust, far enough back that courses
    # begun before the first reporting month are still running in it.
    types, trusts_, starts = [], [], []
    for ri, r in enumerate(REGIMENS):
        mean_span, longest = _expected_span(r, ri)
        lookback = longest
        if r.follow_on:
            follow = REGIMENS[_REGIMEN_INDEX[r.follow_on[0]]]
            lookback += 42 + _expected_span(follow, _REGIMEN_INDEX[follow.name])[1]
        rate = per_trust * sizes * r.share / (mean_span + 30.4)  # starts per day per trust
        counts = rng.poisson(rate * (lookback + window))
        total = int(counts.sum())
        types.append(np.full(total, ri))
        trusts_.append(np.repeat(np.arange(n_trusts), counts))
        starts.append(first_day - int(lookback) + rng.integers(0, int(lookback) + window, size=total))
    c_type = np.concatenate(types)
    c_trust = np.concatenate(trusts_)
    c_start = np.concatenate(starts)
    n_first = len(c_type)

    # Patients: one per first course.
    p_site = np.zeros(n_first, dtype=int)
    for ri, r in enumerate(REGIMENS):
        sel = np.flatnonzero(c_type == ri)
        p_site[sel] = np.array([_SITE_NAMES.index(s) for s, _ in r.sites])[_choice(rng, r.sites, len(sel))]
    female_p = np.array([SITES[s].female for s in _SITE_NAMES])[p_site]
    p_female = rng.random(n_first) < female_p
    p_height = np.clip(np.where(p_female, rng.normal(163, 6.5, n_first), rng.normal(176, 7, n_first)), 150, 195)
    p_height = np.rint(p_height)
    p_weight = np.clip(np.where(p_female, rng.normal(70, 14, n_first), rng.normal(83, 15, n_first)), 45, 120)
    haem = np.array([SITES[s].haematology for s in _SITE_NAMES])[p_site]
    p_consultant = np.where(
        haem,
        haem_offset[c_trust] + (rng.random(n_first) * haem_size[c_trust]).astype(int),
        onc_offset[c_trust] + (rng.random(n_first) * onc_size[c_trust]).astype(int),
    )
    c_patient = np.arange(n_first)

    first = _course_details(rng, c_type, c_start)
    # Follow-on regimens for the same patient, 2-6 weeks after the end of the first.
    parents, children = [], []
    for ri, r in enumerate(REGIMENS):
        if r.follow_on:
            sel = np.flatnonzero((c_type == ri) & (rng.random(n_first) < r.follow_on[1]))
            parents.append(sel)
            children.append(np.full(len(sel), _REGIMEN_INDEX[r.follow_on[0]]))
    parent = np.concatenate(parents)
    f_type = np.concatenate(children)
    f_start = first["end"][parent] + rng.integers(14, 43, size=len(parent))
    keep = f_start <= last_day
    parent, f_type, f_start = parent[keep], f_type[keep], f_start[keep]
    follow = _course_details(rng, f_type, f_start)

    c_type = np.concatenate([c_type, f_type])
    c_trust = np.concatenate([c_trust, c_trust[parent]])
    c_patient = np.concatenate([c_patient, parent])
    c_start = np.concatenate([c_start, f_start])
    details = {k: np.concatenate([first[k], follow[k]]) for k in first}
    n_courses = len(c_type)

    # Course attributes.
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

    world = _World(
        codes=codes, org_values=org_values, first_day=first_day, last_day=last_day,
        first_month_index=int(np.datetime64(month_starts[0], "M").astype(np.int64)),
        c_type=c_type, c_trust=c_trust, c_patient=c_patient, c_start=c_start,
        c_cycles=details["cycles"], c_stopped=details["stopped"], c_reduced_from=details["reduced_from"],
        c_curative=c_curative, c_weight10=c_weight10, c_ps=c_ps, c_provider=c_provider,
        c_admin_org=c_admin_org, p_site=p_site, p_female=p_female, p_height=p_height, p_weight=p_weight,
        p_trust=c_trust[:n_first].copy(), p_consultant=p_consultant,
        consultant_specialty=consultant_specialty, trust_areas=trust_areas,
        trust_local_style=trust_local_style,
    )
    _expand_administrations(rng, world, details, c_gfr, _dispensings(oral_rng, c_type, details["cycles"]))
    return world


def _course_details(rng, c_type: np.ndarray, c_start: np.ndarray) -> dict[str, np.ndarray]:
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


def _dispensings(rng, c_type: np.ndarray, c_cycles: np.ndarray) -> np.ndarray:
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


def _expand_administrations(rng, world: _World, details: dict[str, np.ndarray], c_gfr: np.ndarray,
                            covers: np.ndarray) -> None:
    """One row per administration: every drug entry of the regimen in every cycle it applies to."""
    # The cycle arrays of first and follow-on courses were built separately: index courses globally.
    cycle_course = np.repeat(np.arange(len(world.c_type)), world.c_cycles)
    cycle_start = details["cycle_start"]
    cycle_type = world.c_type[cycle_course]
    # Only cycles with an administration that may fall inside the reporting window matter.
    near = (cycle_start + R_MAX_DAY[cycle_type] >= world.first_day) & (cycle_start <= world.last_day)
    cycle_course, cycle_start, cycle_type = cycle_course[near], cycle_start[near], cycle_type[near]
    cycle_number = details["cycle_number"][near]
    cycle_delayed = details["delayed"][near]
    cycle_covers = covers[near]

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
    r_day = cycle_start[r_cycle] + E_DAY[r_entry]
    inside = (r_day >= world.first_day) & (r_day <= world.last_day)
    r_cycle, r_entry, r_day = r_cycle[inside], r_entry[inside], r_day[inside]
    r_course = cycle_course[r_cycle]

    # Weight and performance status at the start of each cycle (cycle 1: those at the start of the regimen).
    n_cycles = len(cycle_course)
    cycle_weight = np.clip(
        world.c_weight10[cycle_course] / 10 * (1 + rng.normal(0, 0.015, n_cycles)), 45, 120)
    cycle_weight10 = np.rint(cycle_weight * 10).astype(np.int64)
    cycle_weight10[cycle_number == 1] = world.c_weight10[cycle_course][cycle_number == 1]
    shift = (rng.random(n_cycles) < 0.1).astype(int) - (rng.random(n_cycles) < 0.05).astype(int)
    cycle_ps = np.clip(world.c_ps[cycle_course] + shift, 0, 2)
    cycle_ps[cycle_number == 1] = world.c_ps[cycle_course][cycle_number == 1]

    # Doses, in tenths of a mg.
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
    number = cycle_number[r_cycle]
    reduced_from = world.c_reduced_from[r_course]
    reduced = (reduced_from > 0) & (number >= reduced_from)
    dose = np.where(reduced, dose * 0.8, dose)
    step = E_STEP[r_entry]
    dose = np.maximum(np.round(dose / step) * step, step)
    world.r_course = r_course
    world.r_cycle_number = number
    world.r_cycle_start = cycle_start[r_cycle]
    world.r_cycle_weight10 = cycle_weight10[r_cycle]
    world.r_cycle_ps = cycle_ps[r_cycle]
    world.r_entry = r_entry
    world.r_day = r_day
    world.r_dose10 = np.rint(dose * 10).astype(np.int64)
    world.r_delayed = cycle_delayed[r_cycle]
    world.r_covers = np.where(E_MULTI[r_entry], cycle_covers[r_cycle], 1)


# --------------------------------------------------------------------------------------------------
# Rows: columns as (dictionary of strings, codes), defects, CSV lines
# --------------------------------------------------------------------------------------------------

class _Column:
    """A text column as a small dictionary of values and one code per row (fast to build and edit)."""

    def __init__(self, values, codes):
        self.values = list(values)
        self.codes = np.asarray(codes, dtype=np.int64).copy()

    def code_of(self, value: str) -> int:
        try:
            return self.values.index(value)
        except ValueError:
            self.values.append(value)
            return len(self.values) - 1

    def set(self, rows: np.ndarray, value: str) -> None:
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


@dataclass
class _Rows:
    """Every simulated row (sorted by trust, month, date, patient), its values and defects, and its CSV lines."""

    columns: dict[str, _Column] | None  # every item of both versions (dropped once the lines are built)
    trust: np.ndarray
    month: np.ndarray
    patient: np.ndarray
    category: np.ndarray  # 0 clean, 1 invalid NHS number, 2 missing mandatory, 3 duplicated, 4 missing required,
    #                       5 out of month, 6 other trust's provider code
    mandatory_kind: np.ndarray
    required_item: np.ndarray  # index into REQUIRED_COLUMNS of a missing_required row, else -1
    required_bad_code: np.ndarray  # a missing_required row given an out-of-list code (not left blank)
    keep: np.ndarray  # written: False for a cycle an earlier multi-cycle dispensing covered
    facts: dict[str, np.ndarray]  # what the v4-only items are made from (row or course level)
    v4_gap: np.ndarray | None = None  # index into NEW_V4_REQUIRED_COLUMNS of an item left empty in v4, else -1
    lines: dict[str, pa.Array] = field(default_factory=dict)  # version -> one CSV line per row of `position`
    position: dict[str, np.ndarray] = field(default_factory=dict)  # version -> row -> index in lines (-1: none)


def _name_weights(names: tuple[str, ...]) -> np.ndarray:
    """Names with letters outside ASCII (Zoë, Ó Briain, O’Brien...) are about 1 in 20 of those drawn."""
    weights = np.array([0.2 if any(ord(ch) > 127 for ch in name) else 1.0 for name in names])
    return weights / weights.sum()


def _date_strings(first: int, last: int) -> list[str]:
    return np.datetime_as_string(np.arange(first, last + 1).astype("datetime64[D]"), unit="D").tolist()


def _build_rows(rng, w: _World, defects: DefectRates, stray_space_trust: int) -> _Rows:
    # Restrict patients to those with rows, then sort rows.
    r_patient_all = w.c_patient[w.r_course]
    used, r_patient = np.unique(r_patient_all, return_inverse=True)
    n_patients = len(used)
    r_trust = w.c_trust[w.r_course]
    r_month = w.r_day.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) - w.first_month_index
    order = np.lexsort((w.r_entry, r_patient, w.r_day, r_month, r_trust))
    course = w.r_course[order]
    patient = r_patient[order]
    trust = r_trust[order]
    month = r_month[order]
    entry = w.r_entry[order]
    admin_day = w.r_day[order]
    cycle_number = w.r_cycle_number[order]
    cycle_start = w.r_cycle_start[order]
    n = len(order)

    # Patient identities (only for patients with rows).
    p_trust = w.p_trust[used]
    p_site = w.p_site[used]
    p_female = w.p_female[used]
    nhs = generate_valid(rng, n_patients)
    nhs_int = np.array(nhs, dtype=np.int64) if n_patients else np.zeros(0, dtype=np.int64)
    wrong = (nhs_int % 10 + rng.integers(1, 10, size=n_patients)) % 10
    invalid = (nhs_int - nhs_int % 10 + wrong).astype(str).tolist()
    local_numbers = rng.choice(9_000_000, size=n_patients, replace=False) + 1_000_000
    style = w.trust_local_style[p_trust]
    local_ids = [
        (f"K{num}" if s == 0 else f"{num:08d}" if s == 1 else f"MRN{num:07d}")
        for num, s in zip(local_numbers.tolist(), style.tolist())
    ]
    area_pick = rng.integers(0, 2, size=n_patients)
    district = rng.integers(1, 21, size=n_patients)
    sector = rng.integers(0, 10, size=n_patients)
    unit = _UNIT_LETTERS[rng.integers(0, len(_UNIT_LETTERS), size=(n_patients, 2))]
    postcodes = [
        f"{w.trust_areas[t][a]}{d} {s}{u0}{u1}"
        for t, a, d, s, u0, u1 in zip(p_trust.tolist(), area_pick.tolist(), district.tolist(), sector.tolist(),
                                      unit[:, 0].tolist(), unit[:, 1].tolist())
    ]
    given_values = list(FEMALE_NAMES) + list(MALE_NAMES)
    given = np.where(p_female, rng.choice(len(FEMALE_NAMES), n_patients, p=_name_weights(FEMALE_NAMES)),
                     len(FEMALE_NAMES) + rng.choice(len(MALE_NAMES), n_patients, p=_name_weights(MALE_NAMES)))
    family = rng.choice(len(FAMILY_NAMES), n_patients, p=_name_weights(FAMILY_NAMES))

    # Diagnosis per patient.
    diag_values = sorted({c for s in SITES.values() for c, _ in s.diagnoses})
    morph_values = sorted({c for s in SITES.values() for c, _ in s.morphologies})
    p_diag = np.zeros(n_patients, dtype=int)
    p_morph = np.zeros(n_patients, dtype=int)
    for si, name in enumerate(_SITE_NAMES):
        sel = np.flatnonzero(p_site == si)
        site = SITES[name]
        p_diag[sel] = np.array([diag_values.index(c) for c, _ in site.diagnoses])[_choice(rng, site.diagnoses, len(sel))]
        p_morph[sel] = np.array([morph_values.index(c) for c, _ in site.morphologies])[
            _choice(rng, site.morphologies, len(sel))]

    # Dates: date of birth per patient, decision to treat per course.
    first_start_of_patient = np.full(n_patients, np.iinfo(np.int64).max)
    np.minimum.at(first_start_of_patient, patient, w.c_start[course])
    age_mean = np.array([SITES[s].age[0] for s in _SITE_NAMES])[p_site]
    age_sd = np.array([SITES[s].age[1] for s in _SITE_NAMES])[p_site]
    age_days = np.rint(np.clip(rng.normal(age_mean, age_sd), 19, 94) * 365.25).astype(np.int64)
    dob = first_start_of_patient - age_days
    n_courses = len(w.c_type)
    c_dtt = w.c_start - rng.integers(3, 29, size=n_courses)
    lo = int(min(dob.min(initial=w.first_day), c_dtt.min(initial=w.first_day)))
    hi = int(max(w.last_day, admin_day.max(initial=w.last_day)))
    date_values = _date_strings(lo, hi)

    def dates(days: np.ndarray) -> _Column:
        return _Column(date_values, days - lo)

    # Course-level codes.
    c_site = w.p_site[w.c_patient]
    adjuvant_site = np.array([SITES[s].adjuvant for s in _SITE_NAMES])[c_site]
    c_adjunctive = np.where(
        w.c_curative & adjuvant_site, np.where(rng.random(n_courses) < 0.7, 0, 1), 2)  # '1', '2', '3'
    c_adjunctive = np.where(rng.random(n_courses) < 0.02, 3, c_adjunctive)  # '9'
    c_intent = np.where(w.c_curative, 0, rng.choice([1, 2, 3, 4], size=n_courses, p=[.6, .2, .1, .1]))
    c_intent = np.where(rng.random(n_courses) < 0.01, 5, c_intent)  # '99'
    c_comorbidity = (rng.random(n_courses) < 0.1).astype(int)  # 'N', 'Y'
    c_trial = np.where(rng.random(n_courses) < 0.05, 0, 1)  # '01', '02'
    c_height = w.p_height[w.c_patient].astype(int) - 150  # index into height strings
    c_toxicity = w.c_stopped & (rng.random(n_courses) < 0.5)
    c_reason = rng.integers(0, len(OUTCOME_REASONS), size=n_courses)

    weight_values = [f"{t / 10:.1f}" for t in range(0, 1201)]
    consultant_ids = rng.choice(9_000_000, size=len(w.consultant_specialty), replace=False) + 1_000_000
    gmc_values = [f"C{i}" for i in consultant_ids.tolist()]
    p_consultant = w.p_consultant[used]
    dose_unique, dose_codes = np.unique(w.r_dose10[order], return_inverse=True)
    dose_values = [str(t // 10) if t % 10 == 0 else f"{t / 10:.1f}" for t in dose_unique.tolist()]

    covers = w.r_covers[order]
    last_cycle = cycle_number + covers - 1 >= w.c_cycles[course]  # the row (dispensing) covers the last cycle
    last_cycle &= covers > 0
    curative_row = w.c_curative[course]
    completed = np.where(last_cycle & curative_row, np.where(w.c_stopped[course], 1, 0), 2)  # Y, N, ''
    reason = np.where(last_cycle & curative_row & w.c_stopped[course], 1 + c_reason[course], 0)
    toxicity = np.where(last_cycle, np.where(c_toxicity[course], 0, 1), 2)
    reduced = (w.c_reduced_from[course] > 0) & (cycle_number >= w.c_reduced_from[course])

    zeros = np.zeros(n, dtype=np.int64)
    columns: dict[str, _Column] = {
        "nhs_number": _Column(nhs + invalid, patient),
        "local_patient_identifier": _Column(local_ids, patient),
        "nhs_number_status_indicator_code": _Column(["01"], zeros),
        "person_family_name": _Column(FAMILY_NAMES, family[patient]),
        "person_given_name": _Column(given_values, given[patient]),
        "date_of_birth": dates(dob[patient]),
        "person_stated_gender_code": _Column(["2", "1"], (~p_female[patient]).astype(int)),
        "patient_postcode": _Column(postcodes, patient),
        "consultant_gmc_code": _Column(gmc_values, p_consultant[patient]),
        "consultant_specialty_code": _Column(["370", "800", "303"], w.consultant_specialty[p_consultant[patient]]),
        "organisation_identifier_code_of_provider": _Column(w.org_values, w.c_provider[course]),
        "primary_diagnosis": _Column(diag_values, p_diag[patient]),
        "morphology_icd_o": _Column(morph_values, p_morph[patient]),
        "diagnosis_code_snomed_ct": _Column([""], zeros),
        "adjunctive_therapy": _Column(["1", "2", "3", "9"], c_adjunctive[course]),
        "intent_of_treatment": _Column(["01", "02", "03", "04", "05", "99"], c_intent[course]),
        "regimen": _Column([r.name for r in REGIMENS], w.c_type[course]),
        "height_at_start_of_regimen": _Column([f"{h / 100:.2f}" for h in range(150, 196)], c_height[course]),
        "weight_at_start_of_regimen": _Column(weight_values, w.c_weight10[course]),
        "performance_status_at_start_of_regimen": _Column(["0", "1", "2"], w.c_ps[course]),
        "comorbidity_adjustment": _Column(["N", "Y"], c_comorbidity[course]),
        "date_decision_to_treat": dates(c_dtt[course]),
        "start_date_of_regimen": dates(w.c_start[course]),
        "clinical_trial": _Column(["01", "02"], c_trial[course]),
        "cycle_number": _Column([str(k) for k in range(int(cycle_number.max(initial=1)) + 1)], cycle_number),
        "start_date_of_cycle": dates(cycle_start),
        "weight_at_start_of_cycle": _Column(weight_values, w.r_cycle_weight10[order]),
        "performance_status_at_start_of_cycle": _Column(["0", "1", "2"], w.r_cycle_ps[order]),
        "drug_name": _Column(DRUG_NAMES, E_DRUG[entry]),
        "dm_d": _Column([""], zeros),
        "actual_dose_per_administration": _Column(dose_values, dose_codes),
        "administration_measurement_per_actual_dose": _Column(["01"], zeros),
        "other_administration_measurement_per_actual_dose": _Column([""], zeros),
        "unit_of_measurement_snomed_ct_dm_d": _Column([MG_SNOMED], zeros),
        "sact_administration_route": _Column(ROUTE_CODES, E_ROUTE[entry]),
        "route_of_administration_snomed_ct_dm_d": _Column([ROUTES[c] for c in ROUTE_CODES], E_ROUTE[entry]),
        "administration_date": dates(admin_day),
        "organisation_identifier_of_sact_administration": _Column(w.org_values, w.c_admin_org[course]),
        "regimen_modification_dose_reduction": _Column(["N", "Y"], reduced.astype(int)),
        "regimen_outcome_summary_curative_completed_as_planned": _Column(["Y", "N", ""], completed),
        "regimen_outcome_summary_curative_not_completed_reason": _Column([""], zeros),
        "other_regimen_outcome_summary_curative_not_completed_reason": _Column([""] + list(OUTCOME_REASONS), reason),
        "regimen_outcome_summary_non_curative": _Column([""], zeros),
        "regimen_outcome_summary_toxicity": _Column(["Y", "N", ""], toxicity),
    }
    assert set(columns) == set(SACT.version(V3).columns)

    # Defects: one uniform draw per row splits the rows into disjoint categories.
    u = rng.random(n)
    bounds = np.cumsum([defects.invalid_nhs_number, defects.missing_mandatory, defects.duplicate_rows,
                        defects.missing_required, defects.out_of_month, defects.other_trust_provider])
    category = np.searchsorted(bounds, u, side="right") + 1
    category[category == len(bounds) + 1] = 0
    kind = rng.integers(0, len(MANDATORY_DEFECT_KINDS), size=n)
    required_pick = rng.integers(0, len(REQUIRED_COLUMNS), size=n)
    bad_code = rng.random(n) < 0.5

    rows = np.flatnonzero(category == 1)
    columns["nhs_number"].codes[rows] = n_patients + patient[rows]
    mandatory = category == 2
    blank = {
        "regimen": ("regimen",), "drug_name": ("drug_name",), "start_date_of_cycle": ("start_date_of_cycle",),
        "diagnosis": ("primary_diagnosis", "morphology_icd_o"),
        "patient_identifier": ("nhs_number", "local_patient_identifier"),
    }
    for k, name in enumerate(MANDATORY_DEFECT_KINDS):
        rows = np.flatnonzero(mandatory & (kind == k))
        if name == "administration_date":
            columns["administration_date"].set(rows, INVALID_DATE)
        for column in blank.get(name, ()):
            columns[column].set(rows, "")
    required = category == 4
    for k, column in enumerate(REQUIRED_COLUMNS):
        rows_k = required & (required_pick == k)
        if column in BAD_CODES:
            columns[column].set(np.flatnonzero(rows_k & bad_code), BAD_CODES[column])
            columns[column].set(np.flatnonzero(rows_k & ~bad_code), "")
        else:
            columns[column].set(np.flatnonzero(rows_k), "")
    required_bad_code = required & bad_code & np.isin(required_pick, [k for k, c in enumerate(REQUIRED_COLUMNS)
                                                                      if c in BAD_CODES])
    # Activity dated in the month before the reporting month; a provider code of another trust of the run.
    previous_day = (month + w.first_month_index).astype("datetime64[M]").astype("datetime64[D]") - 1
    for day in np.unique(previous_day[category == 5]):
        columns["administration_date"].set(np.flatnonzero((category == 5) & (previous_day == day)), str(day))
    for t, code in enumerate(w.codes):
        columns["organisation_identifier_code_of_provider"].set(
            np.flatnonzero((category == 6) & (trust == t)), w.codes[(t + 1) % len(w.codes)])

    # Stray spaces in one trust's file.
    in_trust = np.flatnonzero(trust == stray_space_trust)
    for column in STRAY_SPACE_COLUMNS:
        columns[column].pad(in_trust[rng.random(len(in_trust)) < 0.25], rng)

    administered = admin_day.copy()  # the administration date as written (out_of_month included)
    administered[category == 5] = previous_day[category == 5].astype(np.int64)
    facts = {
        "course": course, "entry": entry, "administered": administered, "covers": covers, "last": last_cycle,
        "reduced": reduced, "delayed": w.r_delayed[order],
        "invalid_date": mandatory & (kind == MANDATORY_DEFECT_KINDS.index("administration_date")),
        "c_adjunctive": c_adjunctive, "c_intent": c_intent, "c_toxicity": c_toxicity,
    }
    return _Rows(columns=columns, keep=covers > 0, facts=facts, trust=trust, month=month, patient=patient,
                 category=category,
                 mandatory_kind=np.where(mandatory, kind, -1), required_item=np.where(required, required_pick, -1),
                 required_bad_code=required_bad_code)


def _write_lines(rng, w: _World, rows: _Rows, defects: DefectRates, plan: _Plan) -> None:
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


def _v4_columns(rng, w: _World, rows: _Rows, defects: DefectRates) -> dict[str, _Column]:
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
    # A patient's drugs of the day are given one after another (rows are sorted by day, patient, drug): the
    # first at its start time, each next 30 minutes later, none after 18:00.
    new_visit = np.ones(n, dtype=bool)
    new_visit[1:] = (rows.patient[1:] != rows.patient[:-1]) | (f["administered"][1:] != f["administered"][:-1])
    visit = np.maximum.accumulate(np.where(new_visit, np.arange(n), 0))
    minute = np.minimum(8 * 60 + 5 * start_time[visit] + 30 * (np.arange(n) - visit), 18 * 60)
    oral = E_ORAL[f["entry"]]
    curative = f["c_intent"][course] == 0  # Intent_Of_Treatment '01'
    reduced = f["reduced"]
    stopped = w.c_stopped[course]
    summary = np.where(f["last"], np.where(stopped, np.where(f["c_toxicity"][course], 3, 2), 1), 0)
    intervals = sorted({r.interval for r in REGIMENS})
    columns: dict[str, _Column] = {
        "professional_registration_issuer_code": _Column(["01"], zeros),
        "professional_registration_entry_identifier": _Column(rows.columns["consultant_gmc_code"].values,
                                                              rows.columns["consultant_gmc_code"].codes),
        "treatment_context": _Column(["01", "02", "03", "99"], f["c_adjunctive"][course]),
        "curative_line_of_treatment": _Column(["", "1", "2"], np.where(curative, curative_line[course], 0)),
        "non_curative_line_of_treatment": _Column(["", "1", "2", "3"],
                                                  np.where(curative, 0, non_curative_line[course])),
        "chemoradiation": _Column(["N", "Y"], chemoradiation[course]),
        "regimen_modification": _Column(["N"], zeros),
        "cycle_modification": _Column(["N"], zeros),
        "cycle_delay": _Column(["N", "Y"], f["delayed"].astype(int)),
        "administration_timestamp_infusion": _timestamps(f["administered"], minute, ~oral),
        "administration_date_oral_drug_dispensed": _Column(
            [""] + _date_strings(first_day, int(f["administered"].max(initial=first_day))),
            np.where(oral, f["administered"] - first_day + 1, 0)),
        "cycle_length_in_days": _Column([""] + [str(i) for i in intervals],
                                        np.where(oral, np.searchsorted(intervals, R_INTERVAL[w.c_type[course]]) + 1,
                                                 0)),
        "number_of_cycles_dispensed": _Column(["", "1", "2", "3"], np.where(oral, f["covers"], 0)),
        "dose_modification": _Column(["N", "Y"], reduced.astype(int)),
        "reason_for_dose_modification": _Column(["", "1"], reduced.astype(int)),
        "toxicity_grade_dose_modification": _Column(["", "2", "3"], np.where(reduced, 1 + dose_grade[course], 0)),
        "end_of_regimen_summary": _Column(["", "1", "2", "3"], summary),
    }
    for name in SACT.version(V4).columns:
        if name not in rows.columns and name not in columns:
            columns[name] = _Column([""], zeros)  # reasons and grades of modifications that did not happen
    invalid = f["invalid_date"]
    columns["administration_timestamp_infusion"].set(np.flatnonzero(invalid & ~oral), INVALID_TIMESTAMP)
    columns["administration_date_oral_drug_dispensed"].set(np.flatnonzero(invalid & oral), INVALID_DATE)
    for k, name in enumerate(NEW_V4_REQUIRED_COLUMNS):
        columns[name].set(np.flatnonzero(gap & (gap_pick == k)), "")
    rows.v4_gap = np.where(gap, gap_pick, -1)
    return columns


def _timestamps(days: np.ndarray, minutes: np.ndarray, rows: np.ndarray) -> _Column:
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
    return _Column(values, all_codes)


def _british_summer_time(days: np.ndarray) -> np.ndarray:
    """Whether each date (days since 1970-01-01) is in British Summer Time during the day."""
    years, year_of = np.unique(days.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970,
                               return_inverse=True)

    def last_sunday(year: int, month: int) -> int:
        end = date(year, month, 31)
        return _day(end - timedelta(days=(end.weekday() + 1) % 7))

    start = np.array([last_sunday(y, 3) for y in years.tolist()], dtype=np.int64)
    end = np.array([last_sunday(y, 10) for y in years.tolist()], dtype=np.int64)
    year_of = year_of.reshape(-1)
    return (days >= start[year_of]) & (days < end[year_of])


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------

def _joined(lines: pa.Array, eol: str) -> bytes:
    if len(lines) == 0:
        return b""
    with_eol = pc.binary_join_element_wise(lines, pa.scalar(""), eol)  # line + eol + ''
    array = with_eol.combine_chunks() if isinstance(with_eol, pa.ChunkedArray) else with_eol
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int32, count=len(array) + 1, offset=array.offset * 4)
    return array.buffers()[2].to_pybytes()[offsets[0]:offsets[-1]]


def _write_files(rng, landing: Path, w: _World, rows: _Rows, english: list[str], month_starts: list[date],
                 now: datetime, roles: _Roles, plan: _Plan) -> list[GeneratedFile]:
    n_english = len(english)
    n_trusts = len(w.codes)
    months = len(month_starts)
    late, resub, missing = roles.late, roles.resubmission, roles.missing
    encodings = {0: ("utf-8-sig", "\r\n"), 1 % n_english: ("cp1252", "\r\n")} if n_english > 1 else \
        {0: ("utf-8-sig", "\r\n")}

    # Submission times, drawn for every trust-month whatever its role (determinism).
    days = rng.integers(0, 25, size=(n_trusts, months))
    seconds = rng.integers(0, 86400, size=(n_trusts, months))
    resub_delay = timedelta(days=int(rng.integers(2, 13)), seconds=int(rng.integers(0, 86400)))
    latest = now - timedelta(hours=1)

    # Rows written (not covered by an earlier multi-cycle dispensing); each duplicated row followed by its copy.
    final = np.sort(np.concatenate([np.flatnonzero(rows.keep), np.flatnonzero(rows.keep & (rows.category == 3))]),
                    kind="stable")
    key = rows.trust[final] * months + rows.month[final]
    headers = {v: ",".join(item.header(v) for item in SACT.version(v).items) for v in (V3, V4)}
    written: list[GeneratedFile] = []
    for t, code in enumerate(w.codes):
        encoding, eol = encodings.get(t, ("utf-8", "\n")) if t < n_english else ("utf-8", "\n")
        for m, start in enumerate(month_starts):
            if missing is not None and (t, m) == missing:
                continue
            version = V4 if plan.v4[t, m] else V3
            lo, hi = np.searchsorted(key, [t * months + m, t * months + m + 1])
            indices = final[lo:hi]
            is_late = late is not None and (t, m) == late
            submitted = datetime.combine(_add_months(start, 2 if is_late else 1), datetime.min.time()) + \
                timedelta(days=int(days[t, m]), seconds=int(seconds[t, m]))
            submitted = min(submitted, latest)
            is_late = is_late and (submitted.year * 12 + submitted.month) - (start.year * 12 + start.month) >= 2
            versions = [(indices, submitted, "late" if is_late else "on_time", version)]
            if (t, m) == resub and t < n_english:
                patients = np.unique(rows.patient[indices])
                dropped = rng.choice(patients, size=max(1, round(0.1 * len(patients))), replace=False) \
                    if len(patients) else patients
                first = indices[~np.isin(rows.patient[indices], dropped)]
                second_time = min(submitted + resub_delay, now - timedelta(minutes=30))
                if second_time <= submitted:
                    second_time = submitted + timedelta(seconds=1)
                versions = [(first, submitted, "on_time", version), (indices, second_time, "resubmission", version)]
            if plan.v4_resubmission[t, m]:  # the same records again, as v4, a few days later
                again = min(submitted + plan.resubmission_delay[t], now - timedelta(minutes=30))
                if again <= submitted:
                    again = submitted + timedelta(seconds=1)
                versions.append((indices, again, "resubmission", V4))
            for selected, stamp, kind, as_version in versions:
                written.append(_write_one(landing, code, start, stamp, kind, selected, rows, headers[as_version],
                                          encoding, eol, as_version))
    written.sort(key=lambda f: (f.reporting_month, f.org_code, f.submitted_at))
    return written


def _write_one(landing: Path, code: str, month: date, stamp: datetime, kind: str, selected: np.ndarray,
               rows: _Rows, header: str, encoding: str, eol: str, version: str) -> GeneratedFile:
    lines = rows.lines[version].take(pa.array(rows.position[version][selected]))
    text = (header + eol).encode("utf-8") + _joined(lines, eol)
    if encoding == "cp1252":
        data = text.decode("utf-8").encode("cp1252")
    elif encoding == "utf-8-sig":
        data = b"\xef\xbb\xbf" + text
    else:
        data = text
    folder = landing / f"{month:%Y%m}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"SACT_{code}_{month:%Y%m}_{stamp:%Y%m%d%H%M%S}.csv"
    path.write_bytes(data)
    category = rows.category[selected]
    kinds = rows.mandatory_kind[selected]
    picked, bad = rows.required_item[selected], rows.required_bad_code[selected]
    gaps = rows.v4_gap[selected] if version == V4 else np.full(len(selected), -1)
    distinct = len(np.unique(selected))
    defects = FileDefects(
        invalid_nhs_number=int((category == 1).sum()),
        missing_mandatory=int((category == 2).sum()),
        duplicate_rows=len(selected) - distinct,
        missing_required=int((category == 4).sum()),
        missing_mandatory_by_kind=tuple(
            (name, int((kinds == k).sum())) for k, name in enumerate(MANDATORY_DEFECT_KINDS)),
        missing_required_by_item=tuple(
            (column, int(((picked == k) & ~bad).sum()), int(((picked == k) & bad).sum()))
            for k, column in enumerate(REQUIRED_COLUMNS) if (picked == k).any()),
        out_of_month=int((category == 5).sum()),
        other_trust_provider=int((category == 6).sum()),
        missing_v4_item=int((gaps >= 0).sum()),
        missing_v4_item_by_item=tuple(
            (column, int((gaps == k).sum())) for k, column in enumerate(NEW_V4_REQUIRED_COLUMNS) if (gaps == k).any()),
    )
    return GeneratedFile(
        path=path, org_code=code, reporting_month=f"{month:%Y-%m}", submitted_at=stamp, rows=len(selected),
        kind=kind, encoding=encoding, line_ending=eol, patients=len(np.unique(rows.patient[selected])),
        defects=defects, sact_version=version,
    )
