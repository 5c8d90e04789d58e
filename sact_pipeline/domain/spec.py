"""The SACT data set as the pipeline reads it: every item of v3 and v4, from one table shipped as data.

`sact_pipeline/data/sact_items.csv` has one row per item of either version (docs/data-set.md explains
each column). Parsing (which header names mean which item, and which version a file is), the mandatory
checks (which columns a file must hold, which missing or invalid values quarantine a row), the
quarantine reasons, the data-quality items, rules and score, and the GX suites are all read from it. A
registry analyst corrects a header name, an alias or a rule by editing that table; the code holds only
what the table cannot say (how an administration date is derived, how counts are made).

Every layer below raw uses the canonical snake_case names of the `name` column; a warehouse's columns
are those names, so a table that renames an item, changes its type or whether it identifies a patient
is refused (`SACT_DATA_SET_FILE` may point at a corrected copy of the table: see `load_data_set`).
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

V3, V4 = "v3", "v4"
VERSIONS: tuple[str, ...] = (V3, V4)  # oldest first: a tie in the header rule goes to the older version
MANDATORY, REQUIRED, OPTIONAL, OUTCOME = "M", "R", "O", "outcome"
OBLIGATIONS = (MANDATORY, REQUIRED, OPTIONAL, OUTCOME)
# What the pipeline does with an item that is mandatory in the file's version:
QUARANTINE = "quarantine"  # the header must hold it; a row without a usable value is quarantined
HEADER = "header"  # the header must hold it; an empty value is a data-quality finding
SCORE = "score"  # only scored (items new in v4: findings, never rejections)
ENFORCEMENTS = (QUARANTINE, HEADER, SCORE)
ANY, FIRST = "any", "first"  # either-or groups: one usable member is enough / the first member given is used
TYPES = ("text", "code", "date", "timestamp", "number", "integer")
CHECKS = ("any", "nhs_number", "codes", "date", "timestamp", "pattern", "ods_code")
TABLE_COLUMNS = ("item", "name", "section", "v3_header", "v4_header", "aliases", "format", "v3_obligation",
                 "v4_obligation", "either_or", "group_rule", "score_as", "enforcement", "identifier", "type", "check",
                 "codes", "pattern", "rule")
PACKAGED_TABLE = Path(__file__).resolve().parent.parent / "data" / "sact_items.csv"
DATE_RULE = "a valid ccyy-mm-dd date"
TIMESTAMP_RULE = "an ISO 8601 timestamp with an offset (e.g. 2026-05-14T10:15:00+01:00)"
NHS_NUMBER_RULE = "a valid NHS number (10 digits, Modulus 11)"


class DataSetError(ValueError):
    """The data-set table cannot be used; the message names the file, the row and the column."""


def normalise_header(name: str) -> str:
    """Header key used for matching: case-insensitive, all whitespace removed (one v3 header has a stray space)."""
    return re.sub(r"\s+", "", name).lower()


@dataclass(frozen=True, eq=False)
class Item:
    """One data item of the SACT data set, as one row of the table."""

    number: int
    name: str  # canonical column name used in every table of the pipeline
    section: str
    headers: dict[str, str]  # version -> header name (absent: not in that version)
    aliases: tuple[str, ...]  # other header names accepted in every version the item is in
    format: str  # as the standard writes it
    obligations: dict[str, str]  # version -> M, R, O or outcome
    either_or: str  # the group of alternatives it belongs to ('' if none)
    group_rule: str  # ANY or FIRST (groups only)
    score_as: str  # 'item' (scored on its own) or 'group' (its group is scored as one measure)
    enforcement: str  # QUARANTINE, HEADER or SCORE: what its being mandatory means ('' if never mandatory)
    identifying: bool  # held only in the raw layer
    type: str  # how the clean layer holds it: text, code, date, timestamp (text as written), number, integer
    check: str  # its data-quality rule: any, nhs_number, codes, date, timestamp, pattern, ods_code
    codes: tuple[str, ...] | None
    pattern: str  # the regular expression a whole value must match (pattern, ods_code)
    rule: str  # what a valid value is, in the words of a finding ("Drug_Name is not <rule>")

    def header(self, version: str) -> str:
        return self.headers.get(version, "")

    def obligation(self, version: str) -> str:
        return self.obligations.get(version, "")

    def in_version(self, version: str) -> bool:
        return version in self.headers

    def enforced(self, version: str) -> str:
        """What being mandatory means for this item in `version`: '' unless it is mandatory there."""
        return self.enforcement if self.obligation(version) == MANDATORY else ""

    @property
    def needs_valid_value(self) -> bool:
        """Only a valid value can be used (a date to count, an NHS number to key): an invalid one is as good
        as none where the item is enforced by quarantine."""
        return self.check in ("nhs_number", "date", "timestamp") or self.type in ("integer", "number")

    @property
    def two_digit_codes(self) -> bool:
        """Two-digit code lists lose their leading zero when a trust's file passed through Excel."""
        return bool(self.codes) and all(len(c) == 2 and c.isdigit() for c in self.codes)

    @property
    def letter_codes(self) -> bool:
        return bool(self.codes) and any(c.isalpha() for c in self.codes)


@dataclass(frozen=True, eq=False)
class Group:
    """Items of which one is enough (NHS number or local identifier; item 80 or 81)."""

    name: str  # a canonical column the group fills where the version lacks it (administration_date)
    rule: str  # ANY: a row needs one usable member; FIRST: the first member given is the value used
    members: tuple[Item, ...]

    def label(self, version: str) -> str:
        return " or ".join(m.header(version) for m in self.members if m.in_version(version))


@dataclass(frozen=True, eq=False)
class Measure:
    """One line of the data-quality score: an item, or an either-or group scored as one (key: its name)."""

    key: str  # the item's canonical name, or the group's name
    label: str  # the header name(s) a trust knows it by
    obligation: str
    members: tuple[Item, ...]
    rule: str  # the group rule ('' for an item)


class Version:
    """One version of the data set: its items, the header names that mean them, and what it requires."""

    def __init__(self, name: str, items: tuple[Item, ...], groups: dict[str, Group]):
        self.name = name
        self.items = tuple(i for i in items if i.in_version(name))
        self.columns: tuple[str, ...] = tuple(i.name for i in self.items)
        self.by_name: dict[str, Item] = {i.name: i for i in self.items}
        # Items only this version has (the header rule counts them).
        self.own: frozenset[str] = frozenset(
            i.name for i in self.items if not any(i.in_version(other) for other in VERSIONS if other != name))
        self.header_map: dict[str, Item] = {}
        for item in self.items:
            for header in (item.header(name), *item.aliases):
                self.header_map.setdefault(normalise_header(header), item)
        self.groups: dict[str, Group] = {
            key: Group(key, group.rule, tuple(m for m in group.members if m.in_version(name)))
            for key, group in groups.items() if any(m.in_version(name) for m in group.members)}

    def __repr__(self) -> str:
        return f"Version({self.name!r}, {len(self.items)} items)"

    def header(self, column: str) -> str:
        return self.by_name[column].header(self.name)

    def label(self, column: str) -> str:
        """How a trust knows a canonical column in this version: its header, or the group that fills it."""
        if column in self.by_name:
            return self.header(column)
        return self.groups[column].label(self.name)

    def group_of(self, item: Item) -> Group | None:
        return self.groups.get(item.either_or) if item.either_or else None

    @cached_property
    def required_headers(self) -> tuple[tuple[Item, ...], ...]:
        """Columns a file's header must hold: each entry is one item, or the members of a group of which
        one is enough. Items mandatory here and enforced by quarantine or header."""
        required, seen = [], set()
        for item in self.items:
            if item.enforced(self.name) not in (QUARANTINE, HEADER):
                continue
            group = self.group_of(item)
            if group is None:
                required.append((item,))
            elif group.name not in seen:
                seen.add(group.name)
                required.append(tuple(m for m in group.members if m.enforced(self.name) in (QUARANTINE, HEADER)))
        return tuple(required)

    def requirement_label(self, members: tuple[Item, ...]) -> str:
        return " or ".join(m.header(self.name) for m in members)

    @cached_property
    def quarantine_rules(self) -> tuple[Item | Group, ...]:
        """Items (and groups) whose missing or unusable value quarantines a row, in table order."""
        rules, seen = [], set()
        for item in self.items:
            if item.enforced(self.name) != QUARANTINE:
                continue
            group = self.group_of(item)
            if group is None:
                rules.append(item)
            elif group.name not in seen:
                seen.add(group.name)
                rules.append(group)
        return tuple(rules)

    @cached_property
    def measures(self) -> tuple[Measure, ...]:
        """What the data-quality score is made of: the mandatory and required items, each on its own,
        except members of a group scored as one (whose measure takes the place of its first member)."""
        measures, seen = [], set()
        for item in self.items:
            if item.obligation(self.name) not in (MANDATORY, REQUIRED):
                continue
            group = self.group_of(item)
            if group is not None and item.score_as == "group":
                if group.name in seen:
                    continue
                seen.add(group.name)
                measures.append(Measure(group.name, group.label(self.name), item.obligation(self.name),
                                        group.members, group.rule))
            else:
                measures.append(Measure(item.name, item.header(self.name), item.obligation(self.name), (item,), ""))
        return tuple(measures)

    @cached_property
    def group_measures(self) -> tuple[Measure, ...]:
        return tuple(m for m in self.measures if m.rule)


@dataclass(frozen=True)
class HeaderMatch:
    """How a file's header row maps onto the version it is read as."""

    version: str
    columns: dict[int, str]  # position in the file -> canonical column
    missing_mandatory: tuple[str, ...]  # header names ('A or B' for a group of which one is enough)
    unknown: tuple[str, ...]  # names read as nothing: local columns, another version's items, repeats


class DataSet:
    """Every item of every version, from the table; `SACT` is the one the pipeline uses."""

    def __init__(self, items: tuple[Item, ...], digest: str, source: str):
        self.items = items
        self.digest = digest  # SHA-256 of the table: a change to it re-derives the clean layer
        self.source = source
        self.columns: tuple[str, ...] = tuple(i.name for i in items)
        self.by_name: dict[str, Item] = {i.name: i for i in items}
        members: dict[str, list[Item]] = {}
        for item in items:
            if item.either_or:
                members.setdefault(item.either_or, []).append(item)
        groups = {name: Group(name, group[0].group_rule, tuple(group)) for name, group in members.items()}
        self.versions: dict[str, Version] = {
            v: Version(v, items, groups) for v in VERSIONS}

    def version(self, name: str) -> Version:
        try:
            return self.versions[name]
        except KeyError:
            raise ValueError(f"unknown SACT version {name!r}: one of {', '.join(VERSIONS)}") from None

    @cached_property
    def identifying_columns(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.items if i.identifying)

    @cached_property
    def core_measures(self) -> frozenset[str]:
        """Score measures every version has (by key): a trust's core score stays comparable when it
        switches version (item 34 in v3 and the 80/81 group in v4 are both the administration date)."""
        keys = [{m.key for m in self.version(v).measures} for v in VERSIONS]
        return frozenset(set.intersection(*keys))

    def columns_of(self, versions) -> tuple[str, ...]:
        """The canonical columns of the given versions, in table order."""
        wanted = set(versions)
        return tuple(i.name for i in self.items if any(i.in_version(v) for v in wanted))

    def match_header(self, header: list[str]) -> HeaderMatch:
        """Read a header row as the version whose own items (those the other version lacks) it holds more
        of; a tie goes to the older version. A name it does not know, a repeat or an item of the other
        version is an unknown (extra) column."""
        keys = [normalise_header(name) for name in header]
        own = {}
        for name in VERSIONS:
            version = self.versions[name]
            own[name] = len({version.header_map[k].name for k in keys
                             if k in version.header_map and version.header_map[k].name in version.own})
        chosen = self.versions[max(VERSIONS, key=lambda v: (own[v], -VERSIONS.index(v)))]
        columns: dict[int, str] = {}
        unknown: list[str] = []
        for position, (name, key) in enumerate(zip(header, keys)):
            item = chosen.header_map.get(key)
            if item is None or item.name in columns.values():
                unknown.append(name.strip())
            else:
                columns[position] = item.name
        present = set(columns.values())
        missing = tuple(chosen.requirement_label(members) for members in chosen.required_headers
                        if not any(m.name in present for m in members))
        return HeaderMatch(chosen.name, columns, missing, tuple(unknown))


@dataclass(frozen=True)
class Transition:
    """When v4 is accepted, and when v3 becomes a finding (DCB1533 Amd 22/2025; both settings)."""

    v4_from: str = "2026-04"  # SACT_V4_FIRST_MONTH: no v4 file for a month before it
    v4_only_from: str = "2026-07"  # SACT_V4_ONLY_FROM: full conformance; a v3 file from then is a finding

    def rejection(self, version: str, reporting_month: str) -> str | None:
        """Why a file of this version cannot be for this month (None if it can)."""
        if version == V4 and reporting_month < self.v4_from:
            return (f"a SACT v4 file for reporting month {reporting_month}, before v4 was accepted "
                    f"({self.v4_from}, SACT_V4_FIRST_MONTH): send the month as v3")
        return None

    def finding(self, version: str, reporting_month: str) -> str | None:
        """A data-quality finding on the whole file (None if none): v3 is accepted for any month, so that
        a supplier's delay is not penalised, but NDRS wants to see who is late to convert."""
        if version == V3 and reporting_month >= self.v4_only_from:
            return f"v3 after full v4 conformance (v4 only from {self.v4_only_from})"
        return None


# --- the table ----------------------------------------------------------------------------------------------

def read_table(path: Path) -> DataSet:
    """Load and check a data-set table; DataSetError names the file, row and column of what is wrong."""
    path = Path(path)
    data = path.read_bytes()
    rows = list(csv.DictReader(data.decode("utf-8-sig").splitlines()))
    if not rows or set(TABLE_COLUMNS) - set(rows[0]):
        missing = sorted(set(TABLE_COLUMNS) - set(rows[0] if rows else {}))
        raise DataSetError(f"{path}: the table lacks column(s) {', '.join(missing) or '(no rows)'}")
    items = tuple(_item(path, number, row) for number, row in enumerate(rows, start=2))
    _check_table(path, items)
    return DataSet(items, hashlib.sha256(data).hexdigest(), str(path))


def _item(path: Path, line: int, row: dict[str, str]) -> Item:
    def fail(column: str, problem: str):
        raise DataSetError(f"{path} line {line}, column {column}: {problem}")

    row = {key: (value or "").strip() for key, value in row.items() if key}
    try:
        number = int(row["item"])
    except ValueError:
        fail("item", f"not a number: {row['item']!r}")
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,62}", row["name"]):
        fail("name", "a canonical name is lower-case letters, digits and _ (at most 63 characters)")
    headers, obligations = {}, {}
    for version in VERSIONS:
        header, obligation = row[f"{version}_header"], row[f"{version}_obligation"]
        if bool(header) != bool(obligation):
            fail(f"{version}_obligation", f"give both a {version} header and a {version} obligation, or neither")
        if obligation and obligation not in OBLIGATIONS:
            fail(f"{version}_obligation", f"{obligation!r} is not one of {', '.join(OBLIGATIONS)}")
        if header:
            headers[version], obligations[version] = header, obligation
    if not headers:
        fail("v3_header", "the item is in no version")
    for column, allowed in (("type", TYPES), ("check", CHECKS), ("enforcement", ("", *ENFORCEMENTS)),
                            ("group_rule", ("", ANY, FIRST)), ("score_as", ("", "item", "group")),
                            ("identifier", ("yes", "no"))):
        if row[column] not in allowed:
            fail(column, f"{row[column]!r} is not one of {', '.join(a or '(empty)' for a in allowed)}")
    if MANDATORY in obligations.values() and not row["enforcement"]:
        fail("enforcement", "a mandatory item needs an enforcement: quarantine, header or score")
    if bool(row["either_or"]) != bool(row["group_rule"]):
        fail("group_rule", "an either-or group needs its rule (any or first), and a rule needs a group")
    codes = tuple(row["codes"].split()) or None
    if (row["check"] == "codes") != (codes is not None):
        fail("codes", "check 'codes' needs its code list (codes separated by spaces), and only it has one")
    pattern = row["pattern"]
    if (row["check"] in ("pattern", "ods_code")) != bool(pattern):
        fail("pattern", "checks 'pattern' and 'ods_code' need a regular expression, and only they have one")
    if pattern:
        try:
            re.compile(pattern)
        except re.error as error:
            fail("pattern", f"not a regular expression: {error}")
    rule = row["rule"] or {"nhs_number": NHS_NUMBER_RULE, "date": DATE_RULE, "timestamp": TIMESTAMP_RULE,
                           "codes": "one of " + ", ".join(codes or ()), "any": "any value"}.get(row["check"], "")
    if not rule:
        fail("rule", "a pattern check needs its rule in words (what a valid value is)")
    return Item(number=number, name=row["name"], section=row["section"], headers=headers,
                aliases=tuple(a.strip() for a in row["aliases"].split("|") if a.strip()), format=row["format"],
                obligations=obligations, either_or=row["either_or"], group_rule=row["group_rule"],
                score_as=row["score_as"] or "item", enforcement=row["enforcement"],
                identifying=row["identifier"] == "yes", type=row["type"], check=row["check"], codes=codes,
                pattern=pattern, rule=rule)


def _check_table(path: Path, items: tuple[Item, ...]) -> None:
    for attribute in ("name", "number"):
        values = [getattr(i, attribute) for i in items]
        repeated = sorted({str(v) for v in values if values.count(v) > 1})
        if repeated:
            raise DataSetError(f"{path}: item {attribute} {', '.join(repeated)} appears more than once")
    for version in VERSIONS:
        seen: dict[str, str] = {}
        for item in items:
            if not item.in_version(version):
                continue
            for header in (item.header(version), *item.aliases):
                key = normalise_header(header)
                if key in seen and seen[key] != item.name:
                    raise DataSetError(f"{path}: header {header!r} means both {seen[key]} and {item.name} in "
                                       f"{version}")
                seen[key] = item.name
    groups: dict[str, set] = {}
    for item in items:
        if item.either_or:
            groups.setdefault(item.either_or, set()).add((item.group_rule, item.score_as))
    for name, settings in groups.items():
        if len(settings) > 1:
            raise DataSetError(f"{path}: the members of either-or group {name} disagree on group_rule or score_as")


def load_data_set(env: dict[str, str] | None = None) -> DataSet:
    """The packaged table, or the corrected copy named by SACT_DATA_SET_FILE. A copy may change header
    names, aliases, formats, obligations, enforcement and rules; its items, canonical names, types and
    identifier flags must be the packaged table's (the warehouse's columns, and what may leave raw)."""
    packaged = read_table(PACKAGED_TABLE)
    override = (os.environ if env is None else env).get("SACT_DATA_SET_FILE", "").strip()
    if not override:
        return packaged
    data_set = read_table(Path(override).expanduser())
    def shape(ds: DataSet):
        return [(i.number, i.name, i.type, i.identifying) for i in sorted(ds.items, key=lambda i: i.number)]
    if shape(data_set) != shape(packaged):
        raise DataSetError(f"{override} (SACT_DATA_SET_FILE): its items, names, types or identifier flags differ "
                           "from the packaged data set's; only headers, aliases, formats, obligations, enforcement "
                           "and rules may be corrected there")
    return data_set


SACT: DataSet = load_data_set()
