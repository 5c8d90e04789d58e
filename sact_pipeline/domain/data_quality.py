"""Data quality of a trust's submission, item by item: completeness, validity, row findings and the score.

What the NHS Data Quality Maturity Index does for other data sets, for the items of the file's SACT
version (44 in v3, 60 in v4), with the rules of the data-set table (domain.spec):
- completeness: the share of assessed rows holding a value for the item;
- validity: the share of those values in the right format or on the item's code list, identifiers
  included (checked in memory; only counts leave);
- item score: the share of assessed rows holding a valid value (completeness x validity);
- the trust-month score: 100 x the mean item score over the version's mandatory and required items
  (an either-or group the table scores as one, such as v4's items 80/81, counts once), every such
  measure weighted equally (ITEM_WEIGHTS says so in one place), as the DQMI weights its items;
- the core score: the same over the measures both versions share, so that a trust's 13-month trend
  stays comparable when it switches from v3 to v4.
Assessed rows are the rows of the file versions in use, less duplicates and opted-out patients: the clean
and the quarantined rows. Row findings (quarantine reasons, invalid values, activity outside the reporting
month, a provider code of another trust) name the item and the reason, never a value: they make the
feedback file a trust fixes its extract from. A finding about the whole file (v3 after full v4
conformance) is on row 0, the header.
All checks are vectorised over whole columns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sact_pipeline.domain.spec import ANY, MANDATORY, REQUIRED, SACT, V3, Group, Version

QUARANTINED, INVALID, OUT_OF_MONTH, OTHER_TRUST, FILE = "quarantined", "invalid", "out_of_month", "other_trust", "file"
FINDING_KINDS = (QUARANTINED, INVALID, OUT_OF_MONTH, OTHER_TRUST, FILE)
FINDING_COLUMNS = ("row_number", "item", "finding", "kind", "quarantined")
ITEM_QUALITY_COLUMNS = ("item", "obligation", "rows", "present", "valid", "sact_version")
SCORED_OBLIGATIONS = (MANDATORY, REQUIRED)
FILE_ITEM = "SACT version"  # the 'item' of a finding about the whole file
# Every scored measure counts the same (as in the DQMI): give a measure (an item's canonical name, or an
# either-or group's) another weight here.
ITEM_WEIGHTS: dict[str, float] = {}


def measures_of(version: str) -> dict[str, tuple[str, bool, bool]]:
    """Per label of a scored measure of the version: its key, whether both versions score it (core), and
    whether it is an either-or group scored as one (its members have rows of their own)."""
    return {m.label: (m.key, m.key in SACT.core_measures, bool(m.rule)) for m in SACT.version(version).measures}


@dataclass(frozen=True)
class ItemChecks:
    """Per assessed row, by item header (and either-or group scored as one): whether a value is present,
    and whether it is valid (False where absent)."""

    version: str
    present: pd.DataFrame
    valid: pd.DataFrame

    def item_quality(self) -> pd.DataFrame:
        """One row per item of the version (and group measure): item (header), obligation, rows, present,
        valid, sact_version."""
        version = SACT.version(self.version)
        obligation = {i.header(self.version): i.obligation(self.version) for i in version.items}
        obligation |= {m.label: m.obligation for m in version.group_measures}
        return pd.DataFrame({
            "item": list(self.present.columns),
            "obligation": [obligation[label] for label in self.present.columns],
            "rows": len(self.present),
            "present": self.present.sum().to_numpy(dtype="int64"),
            "valid": self.valid.sum().to_numpy(dtype="int64"),
            "sact_version": self.version,
        })


def per_distinct(values: pd.Series, test) -> np.ndarray:
    """`test` (a Series of text -> a boolean Series) run once per distinct value and spread back to every
    row: most items hold a few hundred distinct values over thousands of rows, so a regular expression
    per row would be most of the cost of a wide (v4) file."""
    codes, distinct = pd.factorize(values)  # one hash pass; -1 for a missing value
    passed = np.append(test(pd.Series(distinct, dtype="str")).fillna(False).to_numpy(dtype=bool), False)
    return passed[codes]


def check_items(items: pd.DataFrame, version: Version, *, dates: Mapping[str, pd.Series], nhs_valid: np.ndarray,
                provider_known: np.ndarray | None = None) -> ItemChecks:
    """Completeness and validity of every item of the version, and of its groups scored as one. `items`:
    the items as trimmed text (codes already normalised: two-digit codes zero-padded, letter codes
    upper-cased); `dates`: the date and timestamp items parsed (NaT where not valid); `nhs_valid`:
    Modulus 11 result per row; `provider_known`: whether the provider code is a known ODS organisation
    (None: format only)."""
    present, valid = {}, {}
    for item in version.items:
        values = items[item.name]
        has = (values != "").to_numpy()
        if item.check == "nhs_number":
            ok = np.asarray(nhs_valid, dtype=bool)
        elif item.check == "codes":
            ok = values.isin(item.codes).to_numpy()
        elif item.check in ("date", "timestamp"):
            ok = dates[item.name].notna().to_numpy()
        elif item.check in ("pattern", "ods_code"):
            ok = per_distinct(values, lambda distinct, p=item.pattern: distinct.str.fullmatch(p))
        else:
            ok = has
        if item.check == "ods_code" and provider_known is not None:
            ok = ok & provider_known
        header = item.header(version.name)
        present[header], valid[header] = has, has & ok
    for measure in version.group_measures:  # present: any member; valid: the member used (FIRST) or any (ANY)
        headers = [m.header(version.name) for m in measure.members]
        given = np.zeros(len(items), dtype=bool)
        good = np.zeros(len(items), dtype=bool)
        for header in headers:
            good |= valid[header] if measure.rule == ANY else (present[header] & ~given & valid[header])
            given |= present[header]
        present[measure.label], valid[measure.label] = given, good
    return ItemChecks(version.name, pd.DataFrame(present, index=items.index), pd.DataFrame(valid, index=items.index))


def invalid_findings(checks: ItemChecks, version: Version, row_number: pd.Series) -> pd.DataFrame:
    """A finding per present but invalid value of an item: row_number, item, finding, kind."""
    frames = []
    for item in version.items:
        header = item.header(version.name)
        bad = (checks.present[header] & ~checks.valid[header]).to_numpy()
        if bad.any():
            frames.append(_findings(row_number[bad], header, f"{header} is not {item.rule}", INVALID))
    return concat_findings(frames)


def conflict_findings(items: pd.DataFrame, dates: Mapping[str, pd.Series], group: Group, version: Version,
                      row_number: pd.Series) -> pd.DataFrame:
    """A FIRST group's later member given with a date other than the one used (v4: an oral dispensing
    date beside an infusion timestamp of another day): the first is used, the other is a finding."""
    frames = []
    used = pd.Series(pd.NaT, index=items.index, dtype="datetime64[s]")
    for member in group.members:
        given = items[member.name] != ""
        value = dates.get(member.name)
        if value is None:
            continue
        if used.notna().any():
            differs = (given & value.notna() & used.notna() & (value != used)).to_numpy(dtype=bool)
            header = member.header(version.name)
            first = next(m.header(version.name) for m in group.members)
            frames.append(_findings(row_number[differs], header, f"{header} differs from the date of {first}, "
                                                                 "which is used", INVALID))
        used = used.where(used.notna() | ~given, value)
    return concat_findings(frames)


def file_findings(finding: str) -> pd.DataFrame:
    """A finding about the file as a whole, on its header row (row 0)."""
    return _findings(pd.Series([0], dtype="int64"), FILE_ITEM, finding, FILE)


def activity_findings(administration_date: pd.Series, row_number: pd.Series, reporting_month: str,
                      item: str = "Administration_Date") -> pd.DataFrame:
    """Drug administrations dated outside the reporting month (a valid date only); `item`: how the file's
    version names the administration date."""
    start = pd.Timestamp(f"{reporting_month}-01")
    outside = (administration_date.notna() & ((administration_date < start)
                                              | (administration_date >= start + pd.offsets.MonthBegin(1))))
    mask = outside.to_numpy(dtype=bool)
    return _findings(row_number[mask], item, f"{item} outside the reporting month {reporting_month}", OUT_OF_MONTH)


def provider_findings(provider: pd.Series, row_number: pd.Series, trust_code: str,
                      trust_of: Callable[[str], str | None]) -> tuple[pd.DataFrame, np.ndarray]:
    """Provider codes that belong to another trust, and whether each row's provider code is known at all.
    `trust_of` maps a provider code to its trust (None: unknown); it runs once per distinct code."""
    distinct = pd.Series(provider.unique())
    trusts = pd.Series([trust_of(code) if code else None for code in distinct], index=distinct.to_numpy(), dtype=object)
    owner = pd.Series(trusts.reindex(provider.to_numpy()).to_numpy(), index=provider.index)
    known = owner.notna().to_numpy()
    elsewhere = known & (owner != trust_code).to_numpy()
    frames = [_findings(row_number[elsewhere & (owner == other).to_numpy()],
                        "Organisation_Identifier_(Code_Of_Provider)",
                        f"Organisation_Identifier_(Code_Of_Provider) belongs to another trust ({other})", OTHER_TRUST)
              for other in sorted(set(owner[elsewhere]))]
    return concat_findings(frames), known


def _findings(row_number: pd.Series, item: str, finding: str, kind: str) -> pd.DataFrame:
    return pd.DataFrame({"row_number": row_number.to_numpy(dtype="int64"), "item": item, "finding": finding,
                         "kind": kind, "quarantined": kind == QUARANTINED})


def quarantine_findings(row_number: pd.Series, mask: np.ndarray, item: str, reason: str) -> pd.DataFrame:
    """The rows a quarantine rule caught, as findings of its item."""
    return _findings(row_number[np.asarray(mask, dtype=bool)], item, reason, QUARANTINED)


def concat_findings(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame({"row_number": pd.Series(dtype="int64"), "item": pd.Series(dtype="str"),
                             "finding": pd.Series(dtype="str"), "kind": pd.Series(dtype="str"),
                             "quarantined": pd.Series(dtype="bool")})
    return pd.concat(frames, ignore_index=True)


def row_findings(quarantine: pd.DataFrame, others: list[pd.DataFrame]) -> pd.DataFrame:
    """Every finding of a file's rows: the quarantine reasons, then the other findings except an invalid
    value its row was already quarantined for; each marked with whether its row was quarantined."""
    others_frame = concat_findings(others)
    if len(quarantine) and len(others_frame):
        seen = pd.MultiIndex.from_frame(quarantine[["row_number", "item"]])
        repeat = pd.MultiIndex.from_frame(others_frame[["row_number", "item"]]).isin(seen)
        others_frame = others_frame.loc[~(repeat & (others_frame["kind"] == INVALID).to_numpy())]
    findings = concat_findings([quarantine, others_frame])
    findings["quarantined"] = findings["row_number"].isin(quarantine["row_number"]).to_numpy()
    return findings


# --- the trust-month assessment --------------------------------------------------------------------------

def item_scores(item_quality: pd.DataFrame) -> pd.DataFrame:
    """Completeness, validity and item score per item (item_quality summed over a trust-month's files), with
    whether the item is scored in its version, its measure's key, and whether both versions score it."""
    rows = item_quality["rows"].astype("float64")
    present = item_quality["present"].astype("float64")
    versions = item_quality["sact_version"] if "sact_version" in item_quality else pd.Series(V3, index=item_quality.index)
    lookup = {version: measures_of(version) for version in set(versions)}
    measure = [lookup[v].get(label) for v, label in zip(versions, item_quality["item"])]
    return item_quality.assign(
        sact_version=versions.to_numpy(),
        completeness=(present / rows).where(rows > 0),
        validity=(item_quality["valid"] / present).where(present > 0),
        item_score=(item_quality["valid"] / rows).where(rows > 0),
        scored=[m is not None for m in measure],
        measure=[m[0] if m else "" for m in measure],
        core=[bool(m and m[1]) for m in measure],
        group=[bool(m and m[2]) for m in measure],
    )


def overall_score(scores: pd.DataFrame, *, core: bool = False) -> float | None:
    """100 x the weighted mean item score over the scored measures (only those both versions share, with
    core=True); None when no row was assessed."""
    scored = scores.loc[scores["scored"] & scores["item_score"].notna() & (scores["core"] if core else True)]
    if scored.empty:
        return None
    weights = scored["measure"].map(ITEM_WEIGHTS).fillna(1.0)
    return float(100 * (scored["item_score"] * weights).sum() / weights.sum())


def findings_by_reason(findings: pd.DataFrame) -> pd.DataFrame:
    """Rows per (kind, item, finding): a quarantined row with two reasons counts once under each."""
    if findings.empty:
        return pd.DataFrame(columns=["kind", "item", "finding", "rows"]).astype({"rows": "int64"})
    return (findings.groupby(["kind", "item", "finding"], as_index=False, sort=True)
            .agg(rows=("row_number", "size")))


FEEDBACK_COLUMNS = ("file_name", "row_number", "item", "finding", "outcome")


def feedback_rows(findings: pd.DataFrame) -> pd.DataFrame:
    """The feedback file a trust fixes its extract from: every finding by file name and row number (as the
    file numbers its data rows, the header being row 0), item and reason, and what happened to the row.
    No value of the row is in it."""
    ordered = findings.sort_values(["file_name", "row_number", "kind", "item"], kind="stable")
    return pd.DataFrame({
        "file_name": ordered["file_name"].to_numpy(), "row_number": ordered["row_number"].to_numpy(),
        "item": ordered["item"].to_numpy(), "finding": ordered["finding"].to_numpy(),
        "outcome": np.where(ordered["quarantined"].to_numpy(dtype=bool), "quarantined: not counted until sent again",
                            "kept: counted"),
    })


# --- a trust-month, and a month across trusts ----------------------------------------------------------

TRUST_MONTH_COUNTS = ("assessed_rows", "clean_rows", "quarantined_rows", "duplicate_rows", "invalid_values",
                      "out_of_month_rows", "other_trust_provider_rows", "feedback_rows")


@dataclass(frozen=True)
class Assessment:
    """A trust-month's data quality: items (item_scores), the trust-month record, findings by reason."""

    items: pd.DataFrame
    record: dict
    by_reason: pd.DataFrame


def assess_trust_month(item_quality: pd.DataFrame, findings: pd.DataFrame, versions: pd.DataFrame) -> Assessment:
    """item_quality: per item (and file), rows, present, valid; findings: the row findings of the files in
    use; versions: the files in use with clean_rows, quarantined_rows and duplicate_rows."""
    item_quality = item_quality if "sact_version" in item_quality else item_quality.assign(sact_version=V3)
    summed = (item_quality.groupby(["sact_version", "item", "obligation"], as_index=False, sort=False)
              [["rows", "present", "valid"]].sum())
    items = item_scores(summed)
    by_reason = findings_by_reason(findings)
    kinds = findings.groupby("kind")["row_number"].size() if len(findings) else pd.Series(dtype="int64")
    clean_rows, quarantined = int(versions["clean_rows"].sum()), int(versions["quarantined_rows"].sum())
    # The rows the item measures cover: clean + quarantined, except where opt-outs removed rows after the
    # raw rows were purged (the items cannot be measured again; they stand as measured).
    assessed = int(assessed_rows(items).sum())
    record = {
        "score": overall_score(items), "core_score": overall_score(items, core=True),
        # the versions whose items were assessed (a trust and its sites may send different versions)
        "sact_version": ",".join(sorted(set(items["sact_version"]))),
        "assessed_rows": assessed, "clean_rows": clean_rows, "quarantined_rows": quarantined,
        "quarantined_share": quarantined / assessed if assessed else 0.0,
        "duplicate_rows": int(versions["duplicate_rows"].sum()),
        # values that break their item's rule, quarantined or not (a quarantine reason of a missing value is not)
        "invalid_values": int((items["present"] - items["valid"]).loc[~items["group"]].sum()),
        "out_of_month_rows": int(kinds.get(OUT_OF_MONTH, 0)),
        "other_trust_provider_rows": int(kinds.get(OTHER_TRUST, 0)),
        "feedback_rows": len(findings),
    }
    return Assessment(items=items, record=record, by_reason=by_reason)


def assessed_rows(items: pd.DataFrame) -> pd.Series:
    """Rows assessed per SACT version (every item of a version is measured on each of its rows)."""
    return items.groupby("sact_version", sort=True)["rows"].first().astype("int64")


def pooled_items(items: pd.DataFrame) -> pd.DataFrame:
    """Item measures over every trust of a month: the counts added up, the shares taken again."""
    items = items if "sact_version" in items else items.assign(sact_version=V3)
    summed = (items.groupby(["sact_version", "item", "obligation"], as_index=False, sort=False)
              [["rows", "present", "valid"]].sum())
    return item_scores(summed)
