"""Cleaning one submission file version: typing, validation, pseudonymisation and minimisation.

Every raw row ends up in exactly one place: opted out, clean, quarantined (with every reason), or
duplicate.
Which items a row must hold, and what a valid value is, come from the data-set table for the file's
SACT version (domain.spec): a mandatory item enforced by quarantine that is missing (or, for a date,
timestamp or number, not valid) quarantines the row; other items that are missing or break their rule
are data-quality findings counted per item. In v4 the administration date is the calendar date of the
infusion timestamp (item 80) as written, else the oral dispensing date (item 81). Identifiers (NHS number, local id, names, postcode, date of
birth) never leave this function: the clean layer holds a keyed pseudonym, age and postcode district.
All checks are vectorised over the frame. Every quarantine reason is one rule of
`quarantine_rules_of` (the 'quarantine rules' section below), built from the data-set table and applied in order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sact_pipeline.domain import data_quality as dq
from sact_pipeline.domain import nhs_number
from sact_pipeline.domain.pseudonymise import Pseudonymiser
from sact_pipeline.domain.spec import ANY, FIRST, SACT, V3, Group, Item, Transition, Version

MAX_AGE = 120
NHS_NUMBER_KEYS = "nhs_number"  # the pseudonymisation namespace of patient keys made from NHS numbers
EARLIEST_ADMINISTRATION = pd.Timestamp("1990-01-01")  # the clean suite's lower bound (SACT began in 2012)
ADMINISTRATION_DATE = "administration_date"  # item 34 in v3; in v4 the date of item 80, else item 81
CODED_COLUMNS: dict[str, tuple[str, ...]] = {
    i.name: i.codes for i in SACT.items if i.codes is not None and not i.identifying
}
# Typed columns of the clean layer, by how it holds them (timestamps stay text, as written).
DATE_COLUMNS = tuple(i.name for i in SACT.items if i.type == "date" and not i.identifying)
NUMERIC_COLUMNS = tuple(i.name for i in SACT.items if i.type == "number")
INTEGER_COLUMNS = tuple(i.name for i in SACT.items if i.type == "integer")
# Non-identifying items carried as they arrived into the quarantine table, so analysts can see why.
QUARANTINE_ITEM_COLUMNS = tuple(c for c in SACT.columns if c not in SACT.identifying_columns)
CLEAN_COLUMNS: tuple[str, ...] = (
    "row_number", "patient_key", "patient_key_source", "age_at_regimen_start", "age_band",
    "postcode_district",
) + QUARANTINE_ITEM_COLUMNS
# An ISO 8601 timestamp with an offset (extended format): date, time to the minute or finer, Z or +hh:mm.
TIMESTAMP = (r"(?P<date>\d{4}-\d{2}-\d{2})T(?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:[.,]\d{1,9})?)?"
             r"(?:Z|[+-](?P<offset_hour>\d{2}):(?P<offset_minute>\d{2}))")


@dataclass(frozen=True)
class CleanedSubmission:
    clean: pd.DataFrame
    quarantine: pd.DataFrame  # row_number, reasons, patient_key (may be empty) and non-identifying items
    data_quality: pd.DataFrame  # item, missing, invalid: findings per item, counted on clean rows
    raw_rows: int
    duplicate_rows: int
    opted_out_rows: int = 0  # rows of patients who opted out of registration: removed, counted, nothing else
    # Over the assessed rows (clean and quarantined): completeness and validity per item of the file's
    # version, and every row finding (item and reason, no value): see domain.data_quality.
    item_quality: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(dq.ITEM_QUALITY_COLUMNS)))
    findings: pd.DataFrame = field(default_factory=lambda: dq.concat_findings([]))
    sact_version: str = V3

    @property
    def clean_rows(self) -> int:
        return len(self.clean)

    @property
    def quarantined_rows(self) -> int:
        return len(self.quarantine)

    @property
    def data_quality_findings(self) -> int:
        return int(self.data_quality[["missing", "invalid"]].to_numpy().sum())


# --- quarantine rules ---------------------------------------------------------------------------------------
# Every reason a row is quarantined is made by one of the rule kinds below (each says why it quarantines);
# `quarantine_rules_of` lists them in the order a row's reasons are written. A row keeps every reason it
# breaks, joined with '; ' in that order, each also a finding of its item.


@dataclass(frozen=True)
class AssessedRows:
    """What quarantine rules test, for the rows assessed (neither opted out nor duplicate), in file order."""

    present: pd.DataFrame  # per item header: a value is given (data_quality.check_items)
    valid: pd.DataFrame  # per item header: the value given is valid (False where absent)
    dates: dict[str, pd.Series]  # date and timestamp items parsed, and the administration date (NaT: not valid)
    submitted_on: pd.Timestamp  # the calendar day the file was submitted


@dataclass(frozen=True)
class QuarantineRule:
    """One quarantine reason: the rows it catches are quarantined with `reason`, a finding of `item`."""

    item: str  # the header name (or 'A or B' label) of the SACT item the reason is about
    reason: str  # the text written to the quarantine table and the findings
    fails: Callable[[AssessedRows], pd.Series]  # vectorised: True for each row that breaks the rule


def _missing(header: str) -> QuarantineRule:
    """A mandatory item enforced by quarantine holds nothing: the row cannot be keyed, dated or counted."""
    return QuarantineRule(header, f"{header} missing", lambda rows: ~rows.present[header])


def _not_valid(header: str, rule: str, given_before: tuple[str, ...] = ()) -> QuarantineRule:
    """A value that is only usable when valid (a date to count, an NHS number to key, a number) is not. In
    a 'first' group only the member used (none of `given_before` given) is checked: no silent fall-back."""
    return QuarantineRule(header, f"{header} is not {rule}", lambda rows: (
        rows.present[header] & ~rows.valid[header] & ~rows.present[list(given_before)].any(axis=1)))


def _no_usable(group: Group, headers: tuple[str, ...]) -> QuarantineRule:
    """No member of an 'any' group is usable, where some count only when valid: a patient needs a valid
    NHS number or a local identifier to be keyed at all."""
    needs_valid = [m.needs_valid_value for m in group.members]
    reason = f"no usable {group.name.replace('_', ' ')} (no " + " and no ".join(
        ("valid " if valid else "") + h for valid, h in zip(needs_valid, headers)) + ")"
    return QuarantineRule(headers[0], reason, lambda rows: ~pd.concat(
        [(rows.valid if valid else rows.present)[h] for valid, h in zip(needs_valid, headers)], axis=1).any(axis=1))


def _all_missing(headers: tuple[str, ...]) -> QuarantineRule:
    """Every member of an either-or group is empty: one is enough (a diagnosis, an administration date),
    none is not."""
    reason = " and ".join(headers) + (" both missing" if len(headers) == 2 else " all missing")
    return QuarantineRule(headers[0], reason, lambda rows: ~rows.present[list(headers)].any(axis=1))


def _after_submission(administration: str) -> QuarantineRule:
    """A drug cannot have been given after the file reporting it was submitted."""
    return QuarantineRule(administration, f"{administration} after the submission date",
                          lambda rows: rows.dates[ADMINISTRATION_DATE] > rows.submitted_on)


def _before_birth(administration: str, born: str) -> QuarantineRule:
    """A drug given before the patient was born: one of the two dates is wrong."""
    return QuarantineRule(administration, f"{administration} before {born}",
                          lambda rows: rows.dates[ADMINISTRATION_DATE] < rows.dates["date_of_birth"])


def _age_outside(born: str, started: str) -> QuarantineRule:
    """An implausible age at regimen start would otherwise fail the clean suite for the whole file."""
    def fails(rows: AssessedRows) -> pd.Series:
        age = _age_in_years(rows.dates["date_of_birth"], rows.dates["start_date_of_regimen"])
        return ((age < 0) | (age > MAX_AGE)).fillna(False).astype(bool)
    return QuarantineRule(born, f"{born} gives an age outside 0-{MAX_AGE} at {started}", fails)


def _before_earliest(administration: str) -> QuarantineRule:
    """Activity before the clean suite's lower bound would otherwise fail it for the whole file."""
    return QuarantineRule(administration, f"{administration} before {EARLIEST_ADMINISTRATION:%Y-%m-%d}",
                          lambda rows: rows.dates[ADMINISTRATION_DATE] < EARLIEST_ADMINISTRATION)


def quarantine_rules_of(version: Version) -> tuple[QuarantineRule, ...]:
    """Every quarantine rule of a file of this version, in the order a row's reasons are written: those the
    data-set table enforces by quarantine (`Version.quarantine_rules`, in table order), then plausibility."""
    rules: list[QuarantineRule] = []
    for enforced in version.quarantine_rules:
        if isinstance(enforced, Item):
            header = enforced.header(version.name)
            rules += [_missing(header)] + ([_not_valid(header, enforced.rule)] if enforced.needs_valid_value else [])
            continue
        headers = tuple(m.header(version.name) for m in enforced.members)
        if enforced.rule == ANY:
            needs_valid = any(m.needs_valid_value for m in enforced.members)
            rules.append(_no_usable(enforced, headers) if needs_valid else _all_missing(headers))
        else:  # FIRST: the first member given is the value used, and it must be valid
            rules += [_not_valid(h, m.rule, headers[:n]) for n, (m, h) in enumerate(zip(enforced.members, headers))]
            rules.append(_all_missing(headers))
    administration = version.label(ADMINISTRATION_DATE)
    born, started = version.header("date_of_birth"), version.header("start_date_of_regimen")
    return (*rules, _after_submission(administration), _before_birth(administration, born),
            _age_outside(born, started), _before_earliest(administration))


def clean_submission(
    raw: pd.DataFrame, *, trust_code: str, submitted_at: datetime, pseudonymiser: Pseudonymiser,
    opted_out: frozenset[str] | set[str] = frozenset(), reporting_month: str | None = None,
    trust_of: Callable[[str], str | None] | None = None, sact_version: str = V3,
    transition: Transition | None = None,
) -> CleanedSubmission:
    """Clean one file version (raw frame: row_number plus the items of its SACT version as text).

    `opted_out`: patient keys (pseudonyms of NHS numbers) of patients who opted out of registration. Their
    rows are removed first, before duplicates and quarantine, so nothing of them reaches any table: rows
    with their NHS number, and rows of the file with the same Local_Patient_Identifier (the same patient
    where a row lacks a valid NHS number).
    `reporting_month` ('YYYY-MM'): activity dated outside it is a finding; `trust_of` (provider code -> its
    trust, None if unknown): a provider code of another trust is a finding, an unknown one invalid;
    `transition`: when the file's version is itself a finding (v3 after full v4 conformance)."""
    version = SACT.version(sact_version)
    items = pd.DataFrame({c: raw[c].fillna("").astype("str").str.strip() for c in version.columns}, index=raw.index)
    nhs = nhs_number.normalise(items["nhs_number"])
    nhs_valid = nhs_number.is_valid(nhs).to_numpy()
    nhs_key = pd.Series(pd.NA, index=items.index, dtype="str")
    if nhs_valid.any():  # once per distinct number, for the opt-out match and the patient key alike
        nhs_key[nhs_valid] = pseudonymiser.pseudonymise(nhs[nhs_valid], NHS_NUMBER_KEYS)
    opted = _opted_out_rows(nhs_key, nhs_valid, items["local_patient_identifier"], opted_out)
    duplicated = np.zeros(len(items), dtype=bool)
    duplicated[~opted] = items.loc[~opted].duplicated(keep="first").to_numpy()
    kept = ~opted & ~duplicated
    items, nhs, nhs_valid, nhs_key = items.loc[kept], nhs[kept], nhs_valid[kept], nhs_key[kept]
    row_number = raw["row_number"].loc[kept].astype("int64")
    items = _normalise_codes(items, version)
    patient_key, key_source = _patient_keys(items["local_patient_identifier"], nhs_valid, nhs_key, trust_code,
                                            pseudonymiser)
    dates = _item_dates(items, version)
    provider, provider_known = None, None
    if trust_of is not None:
        provider, provider_known = dq.provider_findings(items["organisation_identifier_code_of_provider"].str.upper(),
                                                        row_number, trust_code, trust_of)
    checks = dq.check_items(items, version, dates=dates, nhs_valid=nhs_valid, provider_known=provider_known)

    rows = AssessedRows(checks.present, checks.valid, dates, pd.Timestamp(submitted_at.date()))
    reasons = _Reasons(items.index, row_number, quarantine_rules_of(version), rows)
    # Data quality of every assessed row (clean or quarantined), before identifiers are dropped.
    others = _other_findings(items, checks, dates, version, row_number, provider, reporting_month, transition)
    findings = dq.row_findings(reasons.findings(), others)

    quarantined = reasons.any()
    # Frames are built from whole columns at once: column-by-column inserts cost more than the rows.
    quarantine = pd.DataFrame({"row_number": row_number[quarantined], "reasons": reasons.text()[quarantined],
                               "patient_key": patient_key[quarantined],
                               **{c: items.loc[quarantined, c] if c in version.by_name else None
                                  for c in QUARANTINE_ITEM_COLUMNS}})
    keep = ~quarantined
    clean = _clean_frame(items, keep, row_number, patient_key, key_source, dates)
    return CleanedSubmission(
        clean=clean,
        quarantine=quarantine.reset_index(drop=True),
        data_quality=_data_quality(checks, version, keep),
        raw_rows=len(raw),
        duplicate_rows=int(duplicated.sum()),
        opted_out_rows=int(opted.sum()),
        item_quality=checks.item_quality(),
        findings=findings,
        sact_version=version.name,
    )


def _normalise_codes(items: pd.DataFrame, version: Version) -> pd.DataFrame:
    """Coded items as their code lists write them: '1' -> '01' (Excel drops the leading zero of two-digit
    codes), letter codes upper-cased."""
    for item in version.items:
        if item.two_digit_codes:
            single = dq.per_distinct(items[item.name], lambda distinct: distinct.str.fullmatch(r"\d"))
            if single.any():
                items[item.name] = items[item.name].where(~single, "0" + items[item.name])
        elif item.letter_codes:
            items[item.name] = items[item.name].str.upper()
    return items


def _patient_keys(local_id: pd.Series, nhs_valid: np.ndarray, nhs_key: pd.Series, trust_code: str,
                  pseudonymiser: Pseudonymiser) -> tuple[pd.Series, np.ndarray]:
    """Each row's patient key and its source: the NHS number's pseudonym, else a pseudonym of the trust and
    local identifier (a local identifier is unique only within its trust), else none."""
    has_local = (local_id != "").to_numpy()
    patient_key = nhs_key.copy()
    by_local = ~nhs_valid & has_local
    if by_local.any():
        patient_key[by_local] = pseudonymiser.pseudonymise(trust_code + "\x1f" + local_id[by_local],
                                                           "local_patient_identifier")
    return patient_key, np.where(nhs_valid, "nhs_number", np.where(by_local, "local_patient_identifier", ""))


def _item_dates(items: pd.DataFrame, version: Version) -> dict[str, pd.Series]:
    """Dates and timestamps parsed (NaT where not valid); a group that stands for an item the version lacks
    (v4's 80/81 for the administration date) gives the date of the member used."""
    dates = {i.name: (_parse_timestamps if i.type == "timestamp" else _parse_dates)(items[i.name])
             for i in version.items if i.check in ("date", "timestamp")}
    for group in version.groups.values():
        if group.rule == FIRST and group.name not in version.by_name and group.name in SACT.by_name:
            dates[group.name] = _first_given(items, dates, group.members)
    return dates


def _other_findings(items: pd.DataFrame, checks: dq.ItemChecks, dates: dict[str, pd.Series], version: Version,
                    row_number: pd.Series, provider: pd.DataFrame | None, reporting_month: str | None,
                    transition: Transition | None) -> list[pd.DataFrame]:
    """Findings that do not quarantine: invalid values, conflicting group members, another trust's or an
    unknown provider, activity outside the reporting month, and the file's version itself."""
    others = [dq.invalid_findings(checks, version, row_number)]
    others += [dq.conflict_findings(items, dates, group, version, row_number) for group in version.groups.values()
               if group.rule == FIRST]
    if provider is not None:
        others.append(provider)
    if reporting_month is not None:
        others.append(dq.activity_findings(dates[ADMINISTRATION_DATE], row_number, reporting_month,
                                           version.label(ADMINISTRATION_DATE)))
        note = (transition or Transition()).finding(version.name, reporting_month)
        if note is not None:  # about the whole file: its header row, row 0
            others.append(dq.file_findings(note))
    return others


def _clean_frame(items: pd.DataFrame, keep: np.ndarray, row_number: pd.Series, patient_key: pd.Series,
                 key_source: np.ndarray, dates: dict[str, pd.Series]) -> pd.DataFrame:
    """The clean rows with no identifier: a patient key, age and postcode district, then the typed items."""
    kept = items.loc[keep]
    age = _age_in_years(dates["date_of_birth"][keep], dates["start_date_of_regimen"][keep])
    columns = {
        "row_number": row_number[keep],
        "patient_key": patient_key[keep],
        "patient_key_source": pd.Series(key_source[keep], index=kept.index, dtype="str"),
        "age_at_regimen_start": age,
        "age_band": _age_band(age),
        "postcode_district": _postcode_district(kept["patient_postcode"]),
    }
    for column in QUARANTINE_ITEM_COLUMNS:
        columns[column] = _clean_values(SACT.by_name[column], kept, dates, keep)
    return pd.DataFrame(columns, index=kept.index)[list(CLEAN_COLUMNS)].reset_index(drop=True)


def _clean_values(item: Item, kept: pd.DataFrame, dates: dict[str, pd.Series], keep: np.ndarray) -> pd.Series:
    """One clean column, typed as the table says; NA throughout for an item the file's version lacks
    (except a column a group fills: v4's administration date)."""
    if item.name in dates and item.type == "date":
        return dates[item.name][keep]
    if item.name not in kept:
        dtype = {"date": "datetime64[s]", "number": "Float64", "integer": "Int64"}.get(item.type, "str")
        return pd.Series(pd.NA if dtype != "datetime64[s]" else pd.NaT, index=kept.index, dtype=dtype)
    values = kept[item.name]
    if item.type == "number":
        return pd.to_numeric(values, errors="coerce").astype("Float64")
    if item.type == "integer":
        return _to_integer(values)
    if item.codes is not None:  # off-list codes are findings (counted below), held as unknown
        return values.where(values.isin(item.codes), pd.NA)
    return values.replace("", pd.NA)


def _first_given(items: pd.DataFrame, dates: dict[str, pd.Series], members: tuple[Item, ...]) -> pd.Series:
    """Per row, the parsed value of the first member given (NaT if that value is not valid, or none is)."""
    result = pd.Series(pd.NaT, index=items.index, dtype="datetime64[s]")
    for member in reversed(members):
        given = (items[member.name] != "").to_numpy()
        result = result.where(~given, dates[member.name])
    return result


def _opted_out_rows(nhs_key: pd.Series, nhs_valid: np.ndarray, local_id: pd.Series, opted_out) -> np.ndarray:
    """Rows of opted-out patients: a valid NHS number whose key is opted out, and any row of the file
    with the same local identifier as such a row (matched on keys and identifiers in memory only)."""
    if not opted_out:
        return np.zeros(len(nhs_key), dtype=bool)
    opted = nhs_valid & nhs_key.isin(opted_out).to_numpy()
    if opted.any():
        locals_of_opted = set(local_id[opted]) - {""}
        opted |= local_id.isin(locals_of_opted).to_numpy()
    return opted


class _Reasons:
    """The rows each quarantine rule catches, in rule order; a row keeps every reason it breaks."""

    def __init__(self, index: pd.Index, row_number: pd.Series, rules: tuple[QuarantineRule, ...],
                 rows: AssessedRows):
        self._index = index
        self._row_number = row_number
        self._caught = [(np.asarray(rule.fails(rows), dtype=bool), rule) for rule in rules]

    def any(self) -> np.ndarray:
        result = np.zeros(len(self._index), dtype=bool)
        for mask, _ in self._caught:
            result |= mask
        return result

    def findings(self) -> pd.DataFrame:
        """One finding per rule a row broke: its row number, the item and the reason."""
        return dq.concat_findings([dq.quarantine_findings(self._row_number, mask, rule.item, rule.reason)
                                   for mask, rule in self._caught if mask.any()])

    def text(self) -> pd.Series:
        """Every reason of a row, joined with '; ' in rule order ('' for a row that broke none)."""
        text = np.full(len(self._index), "", dtype=object)
        for mask, rule in self._caught:
            if mask.any():
                text[mask] = np.where(text[mask] == "", rule.reason, text[mask] + "; " + rule.reason)
        return pd.Series(text, index=self._index, dtype="str")


def _parse_dates(values: pd.Series) -> pd.Series:
    """Strict ccyy-mm-dd dates; anything else is NaT. Parsed once per distinct value (dates repeat a lot)."""
    distinct = pd.Series(values.unique())
    shaped = distinct.where(distinct.str.fullmatch(r"\d{4}-\d{2}-\d{2}"))
    parsed = pd.to_datetime(shaped, format="%Y-%m-%d", errors="coerce")
    lookup = pd.Series(parsed.to_numpy(), index=distinct.to_numpy())
    return pd.Series(lookup.reindex(values.to_numpy()).to_numpy(), index=values.index).astype("datetime64[s]")


def _parse_timestamps(values: pd.Series) -> pd.Series:
    """The calendar date of ISO 8601 timestamps with an offset, as written (local time: not converted to
    UTC); NaT for anything else, an impossible date or time included. Once per distinct value, fields
    taken by pyarrow's regex engine (infusion times are nearly all distinct: pandas' extract was slow)."""
    distinct = pd.Series(values.unique(), dtype="str")
    matched = pc.extract_regex(pa.array(distinct.to_numpy(dtype=object), type=pa.string(), from_pandas=True),
                               f"^(?:{TIMESTAMP})$")  # null where the whole value is not one
    fields = {name: pd.Series(column.to_pandas(), dtype="str")
              for name, column in zip((f.name for f in matched.type), matched.flatten())}
    number = {name: pd.to_numeric(fields[name], errors="coerce").fillna(0)
              for name in ("hour", "minute", "second", "offset_hour", "offset_minute")}
    possible = ((number["hour"] <= 23) & (number["minute"] <= 59) & (number["second"] <= 59)
                & (number["offset_hour"] <= 14) & (number["offset_minute"] <= 59))
    day = pd.to_datetime(fields["date"].where(possible & fields["date"].notna()), format="%Y-%m-%d",
                         errors="coerce")
    lookup = pd.Series(day.to_numpy(), index=distinct.to_numpy())
    return pd.Series(lookup.reindex(values.to_numpy()).to_numpy(), index=values.index).astype("datetime64[s]")


def _age_in_years(born: pd.Series, on: pd.Series) -> pd.Series:
    years = on.dt.year - born.dt.year
    before_birthday = (on.dt.month < born.dt.month) | ((on.dt.month == born.dt.month) & (on.dt.day < born.dt.day))
    return (years - before_birthday.astype("int64")).astype("Int64")


def _age_band(age: pd.Series) -> pd.Series:
    low = (age // 5) * 5
    band = low.astype("str") + "-" + (low + 4).astype("str")
    return band.where(age.notna(), pd.NA).where(age < 90, "90+").astype("str")


def _postcode_district(postcode: pd.Series) -> pd.Series:
    """Outward code only (e.g. 'LS1 4AP' -> 'LS1'): enough for geography, not enough to locate a home."""
    compact = postcode.str.upper().str.replace(r"\s+", "", regex=True)
    district = compact.str[:-3].where(compact.str.len() >= 5)
    return district.where(district.str.fullmatch(r"[A-Z]{1,2}[0-9][A-Z0-9]?"), pd.NA).astype("str")


def _to_integer(values: pd.Series) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce")
    return numbers.where(numbers == numbers.round()).astype("Int64")


def _data_quality(checks: dq.ItemChecks, version: Version, clean_rows: np.ndarray) -> pd.DataFrame:
    """The summary's findings on clean rows: per required or coded item (and NHS_Number) of the file's
    version, how many rows miss a required item and how many hold a value outside its rules
    (domain.data_quality)."""
    checked = [i for i in version.items if i.obligation(version.name) == "R" or i.codes is not None
               or i.name == "nhs_number"]
    headers = [i.header(version.name) for i in checked]
    present = checks.present.loc[clean_rows, headers]
    invalid = (present & ~checks.valid.loc[clean_rows, headers]).sum().to_numpy(dtype="int64")
    missing = (~present).sum().to_numpy(dtype="int64")
    required = np.array([i.obligation(version.name) == "R" or i.name == "nhs_number" for i in checked])
    return pd.DataFrame({"item": headers, "missing": np.where(required, missing, 0), "invalid": invalid})
