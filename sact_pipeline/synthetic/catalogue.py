"""The clinical catalogue of the simulation: cancer sites, regimens and their doses, names and postcodes.

Pure data (and the per-drug-entry numpy arrays derived from it, which the vectorised simulation indexes):
nothing here draws a random number.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WELSH_TRUST = "RQF"  # Velindre: submits like the English trusts, processed but never published

MG_SNOMED = "258684004"  # milligram
ROUTES: dict[str, str] = {"01": "47625008", "02": "26643006", "04": "78421000", "05": "34206005"}  # IV, oral, IM, SC
ORAL_ROUTE = "02"


@dataclass(frozen=True)
class Site:
    """A cancer site: what its patients are diagnosed with, and who they are (sex, age)."""

    diagnoses: tuple[tuple[str, float], ...]  # ICD-10, probability
    morphologies: tuple[tuple[str, float], ...]  # ICD-O-3
    female: float
    age: tuple[float, float]  # mean, sd at the start of treatment
    haematology: bool = False
    adjuvant: bool = False  # curative treatment is (neo)adjuvant: Adjunctive_Therapy 1/2


SITES: dict[str, Site] = {
    "breast": Site((("C50.9", .6), ("C50.4", .25), ("C50.8", .15)), (("8500/3", .8), ("8520/3", .2)),
                   .99, (58, 12), adjuvant=True),
    "colorectal": Site((("C18.9", .45), ("C18.7", .2), ("C20", .35)), (("8140/3", .9), ("8480/3", .1)),
                       .44, (67, 11), adjuvant=True),
    "lymphoma": Site((("C83.3", 1.0),), (("9680/3", 1.0),), .45, (64, 13), haematology=True),
    "myeloma": Site((("C90.0", 1.0),), (("9732/3", 1.0),), .42, (70, 9), haematology=True),
    "lung": Site((("C34.9", .6), ("C34.1", .4)), (("8140/3", .6), ("8070/3", .3), ("8041/3", .1)),
                 .48, (69, 9)),
    "melanoma": Site((("C43.9", 1.0),), (("8720/3", 1.0),), .5, (63, 14)),
    "bladder": Site((("C67.9", 1.0),), (("8120/3", 1.0),), .25, (72, 9)),
    "prostate": Site((("C61", 1.0),), (("8140/3", 1.0),), 0.0, (73, 8)),
    "ovary": Site((("C56", 1.0),), (("8441/3", 1.0),), 1.0, (63, 11)),
    "pancreas": Site((("C25.9", 1.0),), (("8500/3", 1.0),), .48, (68, 10)),
}
SITE_NAMES = tuple(SITES)


@dataclass(frozen=True)
class Dose:
    """One drug entry of a regimen: how much, on which day of the cycle, in which cycles."""

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
class Regimen:
    """A SACT regimen: its cycles, the sites it treats, its doses and what may follow it."""

    name: str
    share: float  # share of active patients
    interval: int  # days between cycles
    cycles: tuple[int, int]  # planned cycles, min and max
    sites: tuple[tuple[str, float], ...]
    curative: float  # probability that the intent is curative
    doses: tuple[Dose, ...]
    follow_on: tuple[str, float] | None = None  # next regimen for the same patient, probability


REGIMENS: tuple[Regimen, ...] = (
    Regimen("FEC-T", .06, 21, (6, 6), (("breast", 1.0),), .95, (
        Dose("FLUOROURACIL", 500, "m2", last_cycle=3, step=5),
        Dose("EPIRUBICIN", 100, "m2", last_cycle=3),
        Dose("CYCLOPHOSPHAMIDE", 500, "m2", last_cycle=3, step=5),
        Dose("DOCETAXEL", 100, "m2", first_cycle=4),
    ), ("TRASTUZUMAB", .25)),
    Regimen("AC", .04, 21, (4, 4), (("breast", 1.0),), .9, (
        Dose("DOXORUBICIN", 60, "m2"),
        Dose("CYCLOPHOSPHAMIDE", 600, "m2", step=5),
    ), ("PACLITAXEL", .5)),
    Regimen("PACLITAXEL", .04, 7, (12, 12), (("breast", 1.0),), .7, (Dose("PACLITAXEL", 80, "m2"),)),
    Regimen("TRASTUZUMAB", .07, 21, (14, 18), (("breast", 1.0),), .85, (
        Dose("TRASTUZUMAB", 8, "kg", last_cycle=1),
        Dose("TRASTUZUMAB", 6, "kg", first_cycle=2),
    )),
    Regimen("DOCETAXEL", .05, 21, (4, 6), (("prostate", .7), ("breast", .3)), .25, (
        Dose("DOCETAXEL", 75, "m2"),
    )),
    Regimen("CAPECITABINE", .06, 21, (4, 8), (("colorectal", .6), ("breast", .4)), .5, (
        Dose("CAPECITABINE", 1250, "m2", route="02", step=150, multi_cycle=True),
    )),
    Regimen("FOLFOX", .07, 14, (6, 12), (("colorectal", 1.0),), .6, (
        Dose("OXALIPLATIN", 85, "m2"),
        Dose("FOLINIC ACID", 350, "flat"),
        Dose("FLUOROURACIL", 400, "m2", step=5),
        Dose("FLUOROURACIL", 2400, "m2", step=10),
    ), ("CAPECITABINE", .2)),
    Regimen("CAPOX", .06, 21, (4, 8), (("colorectal", 1.0),), .6, (
        Dose("OXALIPLATIN", 130, "m2"),
        Dose("CAPECITABINE", 1000, "m2", route="02", step=150),
    ), ("CAPECITABINE", .15)),
    Regimen("R-CHOP", .05, 21, (6, 6), (("lymphoma", 1.0),), .95, (
        Dose("RITUXIMAB", 375, "m2", step=10),
        Dose("CYCLOPHOSPHAMIDE", 750, "m2", step=5),
        Dose("DOXORUBICIN", 50, "m2"),
        Dose("VINCRISTINE", 1.4, "m2", step=0.1, cap=2.0),
        Dose("PREDNISOLONE", 100, "flat", route="02"),
    )),
    Regimen("PEMBROLIZUMAB", .13, 21, (2, 35), (("lung", .6), ("melanoma", .25), ("bladder", .15)), .15, (
        Dose("PEMBROLIZUMAB", 200, "flat"),
    )),
    Regimen("CARBOPLATIN PACLITAXEL", .08, 21, (6, 6), (("ovary", .7), ("lung", .3)), .5, (
        Dose("PACLITAXEL", 175, "m2"),
        Dose("CARBOPLATIN", 5, "auc", step=10),
    )),
    Regimen("PEMETREXED CARBOPLATIN", .04, 21, (4, 4), (("lung", 1.0),), .0, (
        Dose("PEMETREXED", 500, "m2", step=5),
        Dose("CARBOPLATIN", 5, "auc", step=10),
    ), ("PEMBROLIZUMAB", .4)),
    Regimen("GEMCITABINE", .05, 28, (2, 6), (("pancreas", .7), ("bladder", .3)), .05, (
        Dose("GEMCITABINE", 1000, "m2", day=0, step=10),
        Dose("GEMCITABINE", 1000, "m2", day=7, step=10),
        Dose("GEMCITABINE", 1000, "m2", day=14, step=10),
    )),
    Regimen("ABIRATERONE", .10, 28, (3, 26), (("prostate", 1.0),), .0, (
        Dose("ABIRATERONE", 1000, "flat", route="02", multi_cycle=True),
    ), ("DOCETAXEL", .15)),
    Regimen("BORTEZOMIB", .05, 21, (4, 8), (("myeloma", 1.0),), .0, (
        Dose("BORTEZOMIB", 1.3, "m2", route="05", day=0, step=0.1),
        Dose("BORTEZOMIB", 1.3, "m2", route="05", day=3, step=0.1),
        Dose("BORTEZOMIB", 1.3, "m2", route="05", day=7, step=0.1),
        Dose("BORTEZOMIB", 1.3, "m2", route="05", day=10, step=0.1),
    )),
)
REGIMEN_INDEX = {r.name: i for i, r in enumerate(REGIMENS)}

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
UNIT_LETTERS = np.array(list("ABDEFGHJLNPQRSTUWXYZ"))

# Per drug entry (every dose of every regimen, in catalogue order) and per regimen, as arrays the
# simulation indexes by entry or regimen number.
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
