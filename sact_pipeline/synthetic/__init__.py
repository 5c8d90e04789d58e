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

Modules (each imports only those above it): `months` (calendar arithmetic), `catalogue` (sites, regimens,
names: pure data), `columns` (a text column as a dictionary and codes, its CSV fields), `defects` (rates,
the per-row draw, injection, counts), `versions` (special-case roles and the version plan), `world` (the
simulation: trusts, patients, courses, cycles, administrations), `rows` (every item of every row, v3 and
v4, and the CSV lines), `files` (submission times, encodings, file names and writing) and `generator`
(`generate_submissions`).
"""

from sact_pipeline.synthetic.catalogue import WELSH_TRUST
from sact_pipeline.synthetic.defects import (
    BAD_CODES,
    INVALID_DATE,
    INVALID_TIMESTAMP,
    MANDATORY_DEFECT_KINDS,
    NEW_V4_REQUIRED_COLUMNS,
    REQUIRED_COLUMNS,
    DefectRates,
    FileDefects,
)
from sact_pipeline.synthetic.files import GeneratedFile
from sact_pipeline.synthetic.generator import SACT_VERSIONS, generate_submissions

__all__ = [
    "BAD_CODES",
    "INVALID_DATE",
    "INVALID_TIMESTAMP",
    "MANDATORY_DEFECT_KINDS",
    "NEW_V4_REQUIRED_COLUMNS",
    "REQUIRED_COLUMNS",
    "SACT_VERSIONS",
    "WELSH_TRUST",
    "DefectRates",
    "FileDefects",
    "GeneratedFile",
    "generate_submissions",
]
