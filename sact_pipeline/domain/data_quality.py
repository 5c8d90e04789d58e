"""Data quality of a trust's submission, item by item: completeness, validity, row findings and the score.

What the NHS Data Quality Maturity Index does for other data sets, for the 44 SACT v3 items:
- completeness: the share of assessed rows holding a value for the item;
- validity: the share of those values in the right format or on the item's code list
  (sact-submissions.md), identifiers included (checked in memory; only counts leave);
- item score: the share of assessed rows holding a valid value (completeness x validity);
- the trust-month score: 100 x the mean item score over the mandatory and required items, every such
  item weighted equally (ITEM_WEIGHTS says so in one place), as the DQMI weights its items.
Assessed rows are the rows of the file versions in use, less duplicates and opted-out patients: the clean
and the quarantined rows. Row findings (quarantine reasons, invalid values, activity outside the reporting
month, a provider code of another trust) name the item and the reason, never a value: they make the
feedback file a trust fixes its extract from.
All checks are vectorised over whole columns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sact_pipeline.domain.spec import MANDATORY, MANDATORY_DATES, REQUIRED, REQUIRED_DATES, V3_ITEMS

QUARANTINED, INVALID, OUT_OF_MONTH, OTHER_TRUST = "quarantined", "invalid", "out_of_month", "other_trust"
FINDING_KINDS = (QUARANTINED, INVALID, OUT_OF_MONTH, OTHER_TRUST)
FINDING_COLUMNS = ("row_number", "item", "finding", "kind", "quarantined")
ITEM_QUALITY_COLUMNS = ("item", "obligation", "rows", "present", "valid")
SCORED_OBLIGATIONS = (MANDATORY, REQUIRED)
# Every mandatory and required item counts the same in the score (as in the DQMI); change a weight here.
ITEM_WEIGHTS: dict[str, float] = {i.header: 1.0 for i in V3_ITEMS if i.obligation in SCORED_OBLIGATIONS}

ODS_CODE = r"[A-Z0-9]{3,5}"
SNOMED_ID = r"[0-9]{6,18}"
# Format rules of the items without a code list (those with one are checked against it): a regular
# expression the whole value must match (upper-cased where codes are letters), or a maximum length.
FORMATS: dict[str, tuple[str, str]] = {
    # column: (description used in findings, full-match regular expression)
    "local_patient_identifier": ("1 to 20 characters", r".{1,20}"),
    "person_family_name": ("at most 35 characters", r".{1,35}"),
    "person_given_name": ("at most 35 characters", r".{1,35}"),
    "patient_postcode": ("a UK postcode", r"(?i)[A-Z]{1,2}[0-9][A-Z0-9]?\s*[0-9][A-Z]{2}"),  # 'E1  6AN' too
    "consultant_gmc_code": ("1 to 8 letters or digits", r"[A-Za-z0-9]{1,8}"),
    "consultant_specialty_code": ("1 to 3 letters or digits", r"[A-Za-z0-9]{1,3}"),
    "organisation_identifier_code_of_provider": ("an organisation code known to ODS (3 to 5 letters or digits)",
                                                 f"(?i){ODS_CODE}"),
    "primary_diagnosis": ("an ICD-10 code (e.g. C50.9 or C509)", r"(?i)[A-Z][0-9]{2}(\.?[0-9X]{1,2})?[A-Z]?"),
    "morphology_icd_o": ("an ICD-O-3 morphology code (e.g. 8500/3)", r"(?i)M?[0-9]{4}/?[0-9]"),
    "diagnosis_code_snomed_ct": ("a SNOMED CT identifier (6 to 18 digits)", SNOMED_ID),
    "regimen": ("at most 150 characters", r".{1,150}"),
    "height_at_start_of_regimen": ("a height in metres (n1.n2)", r"[0-9](\.[0-9]{1,2})?"),
    "weight_at_start_of_regimen": ("a weight in kg (n3.n3)", r"[0-9]{1,3}(\.[0-9]{1,3})?"),
    "cycle_number": ("a whole number", r"[0-9]{1,4}"),
    "weight_at_start_of_cycle": ("a weight in kg (n3.n3)", r"[0-9]{1,3}(\.[0-9]{1,3})?"),
    "drug_name": ("at most 55 characters", r".{1,55}"),
    "dm_d": ("a dm+d identifier (6 to 18 digits)", SNOMED_ID),
    "actual_dose_per_administration": ("a number", r"[0-9]+(\.[0-9]+)?|\.[0-9]+"),
    "other_administration_measurement_per_actual_dose": ("at most 15 characters", r".{1,15}"),
    "unit_of_measurement_snomed_ct_dm_d": ("a SNOMED CT identifier (6 to 18 digits)", SNOMED_ID),
    "route_of_administration_snomed_ct_dm_d": ("a SNOMED CT identifier (6 to 18 digits)", SNOMED_ID),
    "organisation_identifier_of_sact_administration": ("an ODS code of 3 to 5 letters or digits", f"(?i){ODS_CODE}"),
}
DATE_FORMAT = "a valid ccyy-mm-dd date"
NHS_NUMBER_FORMAT = "a valid NHS number (10 digits, Modulus 11)"


def rule_of(column: str) -> str:
    """What a valid value of the item is, in the words a finding uses."""
    item = next(i for i in V3_ITEMS if i.column == column)
    if column == "nhs_number":
        return NHS_NUMBER_FORMAT
    if item.codes is not None:
        return "one of " + ", ".join(item.codes)
    if column in FORMATS:
        return FORMATS[column][0]
    return DATE_FORMAT if column in MANDATORY_DATES + REQUIRED_DATES else "any value"


@dataclass(frozen=True)
class ItemChecks:
    """Per assessed row and item: whether a value is present, and whether it is valid (False where absent)."""

    present: pd.DataFrame
    valid: pd.DataFrame

    def item_quality(self) -> pd.DataFrame:
        """One row per v3 item: item (header), obligation, rows, present, valid."""
        return pd.DataFrame({
            "item": [i.header for i in V3_ITEMS],
            "obligation": [i.obligation for i in V3_ITEMS],
            "rows": len(self.present),
            "present": self.present.sum().to_numpy(dtype="int64"),
            "valid": self.valid.sum().to_numpy(dtype="int64"),
        })


def check_items(items: pd.DataFrame, *, dates: Mapping[str, pd.Series], nhs_valid: np.ndarray,
                provider_known: np.ndarray | None = None) -> ItemChecks:
    """Completeness and validity of every v3 item. `items`: the items as trimmed text (codes already
    normalised: two-digit codes zero-padded, letter codes upper-cased); `dates`: the date items parsed
    (NaT where not a valid ccyy-mm-dd date); `nhs_valid`: Modulus 11 result per row; `provider_known`:
    whether the provider code is a known ODS organisation (None: format only)."""
    present, valid = {}, {}
    for item in V3_ITEMS:
        values = items[item.column]
        has = (values != "").to_numpy()
        if item.column == "nhs_number":
            ok = np.asarray(nhs_valid, dtype=bool)
        elif item.codes is not None:
            ok = values.isin(item.codes).to_numpy()
        elif item.column in dates:
            ok = dates[item.column].notna().to_numpy()
        elif item.column in FORMATS:
            ok = values.str.fullmatch(FORMATS[item.column][1]).fillna(False).to_numpy(dtype=bool)
        else:
            ok = has
        if item.column == "organisation_identifier_code_of_provider" and provider_known is not None:
            ok = ok & provider_known
        present[item.header], valid[item.header] = has, has & ok
    return ItemChecks(pd.DataFrame(present, index=items.index), pd.DataFrame(valid, index=items.index))


def invalid_findings(checks: ItemChecks, row_number: pd.Series) -> pd.DataFrame:
    """A finding per present but invalid value: row_number, item, finding, kind."""
    frames = []
    for item in V3_ITEMS:
        bad = (checks.present[item.header] & ~checks.valid[item.header]).to_numpy()
        if bad.any():
            frames.append(_findings(row_number[bad], item.header, f"{item.header} is not {rule_of(item.column)}",
                                    INVALID))
    return concat_findings(frames)


def activity_findings(administration_date: pd.Series, row_number: pd.Series, reporting_month: str) -> pd.DataFrame:
    """Drug administrations dated outside the reporting month (a valid date only)."""
    start = pd.Timestamp(f"{reporting_month}-01")
    outside = (administration_date.notna() & ((administration_date < start)
                                              | (administration_date >= start + pd.offsets.MonthBegin(1))))
    mask = outside.to_numpy(dtype=bool)
    return _findings(row_number[mask], "Administration_Date", f"Administration_Date outside the reporting month "
                                                             f"{reporting_month}", OUT_OF_MONTH)


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
    """Completeness, validity and item score per item (item_quality summed over a trust-month's files)."""
    rows = item_quality["rows"].astype("float64")
    present = item_quality["present"].astype("float64")
    scored = item_quality["obligation"].isin(SCORED_OBLIGATIONS)
    return item_quality.assign(
        completeness=(present / rows).where(rows > 0),
        validity=(item_quality["valid"] / present).where(present > 0),
        item_score=(item_quality["valid"] / rows).where(rows > 0),
        scored=scored,
    )


def overall_score(scores: pd.DataFrame) -> float | None:
    """100 x the weighted mean item score over the scored items; None when no row was assessed."""
    scored = scores.loc[scores["scored"] & scores["item_score"].notna()]
    if scored.empty:
        return None
    weights = scored["item"].map(ITEM_WEIGHTS).fillna(1.0)
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
    summed = (item_quality.groupby(["item", "obligation"], as_index=False, sort=False)[["rows", "present", "valid"]]
              .sum())
    items = item_scores(summed)
    by_reason = findings_by_reason(findings)
    kinds = findings.groupby("kind")["row_number"].size() if len(findings) else pd.Series(dtype="int64")
    clean_rows, quarantined = int(versions["clean_rows"].sum()), int(versions["quarantined_rows"].sum())
    # The rows the item measures cover: clean + quarantined, except where opt-outs removed rows after the
    # raw rows were purged (the items cannot be measured again; they stand as measured).
    assessed = int(items["rows"].iloc[0]) if len(items) else 0
    record = {
        "score": overall_score(items),
        "assessed_rows": assessed, "clean_rows": clean_rows, "quarantined_rows": quarantined,
        "quarantined_share": quarantined / assessed if assessed else 0.0,
        "duplicate_rows": int(versions["duplicate_rows"].sum()),
        # values that break their item's rule, quarantined or not (a quarantine reason of a missing value is not)
        "invalid_values": int((items["present"] - items["valid"]).sum()),
        "out_of_month_rows": int(kinds.get(OUT_OF_MONTH, 0)),
        "other_trust_provider_rows": int(kinds.get(OTHER_TRUST, 0)),
        "feedback_rows": len(findings),
    }
    return Assessment(items=items, record=record, by_reason=by_reason)


def pooled_items(items: pd.DataFrame) -> pd.DataFrame:
    """Item measures over every trust of a month: the counts added up, the shares taken again."""
    summed = items.groupby(["item", "obligation"], as_index=False, sort=False)[["rows", "present", "valid"]].sum()
    return item_scores(summed)
