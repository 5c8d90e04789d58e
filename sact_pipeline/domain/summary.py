"""The trust-month summary: counts, timeliness and resubmission changes for one reporting month."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

import pandas as pd

from sact_pipeline.domain.counting import FINAL, MEASURES, count_activity, month_status, submission_status
from sact_pipeline.domain.organisations import OrganisationRegister

SUMMARY_COLUMNS: tuple[str, ...] = (
    "reporting_month", "org_code", "org_name", "country", "is_english", "submission_status",
    "first_submitted_at", "submitted_at", "versions_received", "file_sha256", "sact_version",
    *MEASURES,
    "raw_rows", "quarantined_rows", "duplicate_rows", "data_quality_findings",
    *(f"{m}_resubmission_change" for m in MEASURES),
    "month_status", "data_status", "data_status_reason",
)
# data_status of a trust that sent anything for the month (empty when nothing arrived)
OK, HELD, UNUSABLE = "ok", "held", "unusable"
DATA_STATUSES: tuple[str, ...] = ("", OK, HELD, UNUSABLE)
SUMMARY_COUNT_COLUMNS: tuple[str, ...] = (
    *MEASURES, "raw_rows", "quarantined_rows", "duplicate_rows", "data_quality_findings", "versions_received",
)


def sites_sharing_trusts(versions: pd.DataFrame) -> list[str]:
    """Trusts with more than one file in use this month (a trust and its sites): their measures need the
    clean rows, because a patient seen at two sites counts once."""
    in_use = versions.loc[versions["in_use"]].groupby("trust_code").size()
    return sorted(in_use.index[in_use > 1])


def trust_measures(versions: pd.DataFrame, clean_rows: pd.DataFrame) -> pd.DataFrame:
    """The measures per trust (trust_code + MEASURES) of the trusts with a file in use.

    A trust with one file in use (the usual case) has that file's measures, counted when it was cleaned;
    only the trusts of sites_sharing_trusts are counted from their clean rows (clean_rows: those trusts'
    rows, with trust_code and the counted columns). So a month is summarised without reading its rows."""
    shared = sites_sharing_trusts(versions)
    single = versions.loc[versions["in_use"] & ~versions["trust_code"].isin(shared), ["trust_code", *MEASURES]]
    clean_rows = clean_rows.loc[clean_rows["trust_code"].isin(shared)]  # rows of other trusts: not needed
    parts = [single] + ([count_activity(clean_rows, ["trust_code"])] if len(clean_rows) else [])
    return pd.concat(parts, ignore_index=True).astype({m: "int64" for m in MEASURES})


def summarise_month(
    reporting_month: str,
    files: pd.DataFrame,
    measures: pd.DataFrame,
    versions: pd.DataFrame,
    organisations: OrganisationRegister,
    deadline_months: int = 1,
    *,
    as_of: date | None = None,
    held: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """One row per trust that has submitted anything up to this month.

    files: accepted file versions (trust_code, reporting_month, submitted_at) of this and earlier months.
    measures: per trust with a file in use, its measures (trust_measures).
    versions: per cleaned file version of this month (trust_code, file_sha256, submitted_at, in_use, the
    measures, raw_rows, quarantined_rows, duplicate_rows, data_quality_findings, sact_version).
    as_of: the day the month is published (provisional or final, not yet due or missing); None: final.
    held: trusts whose newest version failed a gate, with the failed check. Such a trust keeps its last
    good version's figures (`held`) or, with none in versions, has none (`unusable`): one trust's bad file
    never holds back the month.
    """
    held = held or {}
    known = files.loc[files["reporting_month"] <= reporting_month]
    trusts = sorted(known["trust_code"].unique())
    this_month = known.loc[known["reporting_month"] == reporting_month]
    received = this_month.groupby("trust_code").agg(
        first_submitted_at=("submitted_at", "min"), versions_received=("submitted_at", "size")
    )
    summary = pd.DataFrame({"org_code": trusts}).set_index("org_code", drop=False)
    summary = summary.join(received)

    # A trust's sites may each send a file: every file in use counts, the latest says when it updated (and
    # which SACT version the trust sends).
    if "sact_version" not in versions:
        versions = versions.assign(sact_version="v3")
    in_use = versions.loc[versions["in_use"]].sort_values("submitted_at").groupby("trust_code").agg(
        submitted_at=("submitted_at", "max"), file_sha256=("file_sha256", ",".join),
        sact_version=("sact_version", "last"),
        raw_rows=("raw_rows", "sum"), quarantined_rows=("quarantined_rows", "sum"),
        duplicate_rows=("duplicate_rows", "sum"), data_quality_findings=("data_quality_findings", "sum"),
    )
    summary = summary.join(in_use)
    summary = summary.join(measures.set_index("trust_code")[list(MEASURES)])
    has_clean = summary["file_sha256"].notna()
    for measure in MEASURES:  # a version can be clean with zero usable rows: count 0, not missing
        summary[measure] = summary[measure].astype("Int64").mask(has_clean & summary[measure].isna(), 0)

    changes = _previous_versions(versions)
    for measure in MEASURES:
        summary[f"{measure}_resubmission_change"] = changes[measure].reindex(summary.index).astype("Int64")

    summary["submission_status"] = [  # one per trust, not per activity row
        submission_status(first, reporting_month, deadline_months, as_of) for first in summary["first_submitted_at"]
    ]
    summary["month_status"] = month_status(reporting_month, as_of, deadline_months) if as_of else FINAL
    received_any = summary["versions_received"].notna()
    summary["data_status"] = [
        "" if not sent else (HELD if has else UNUSABLE) if code in held or not has else OK
        for code, sent, has in zip(summary.index, received_any, has_clean)]
    summary["data_status_reason"] = [held.get(code, "") if sent else "" for code, sent in
                                     zip(summary.index, received_any)]
    # No version usable: when it last sent one (its figures are empty; a held trust's are its last good).
    newest = this_month.groupby("trust_code")["submitted_at"].max()
    unusable = summary["data_status"] == UNUSABLE
    summary.loc[unusable, "submitted_at"] = newest.reindex(summary.index[unusable]).to_numpy()
    organisations_by_code = {code: organisations.get(code) for code in trusts}
    summary["org_name"] = [o.name if o else "" for o in organisations_by_code.values()]
    summary["country"] = [o.country if o else "Other" for o in organisations_by_code.values()]
    summary["is_english"] = [bool(o and o.is_english) for o in organisations_by_code.values()]
    summary["reporting_month"] = reporting_month
    for column in SUMMARY_COUNT_COLUMNS:
        summary[column] = summary[column].astype("Int64")
    return summary[list(SUMMARY_COLUMNS)].reset_index(drop=True)


def _previous_versions(versions: pd.DataFrame) -> pd.DataFrame:
    """What each trust's counts were before its latest file replaced an earlier one (resubmission change).

    With one submitting organisation per trust (the usual case) this is the version received just before
    the one in use. Where sites send their own files, the latest file's change against its own site's
    previous file is applied to the trust's counts (an approximation: patients can span sites).
    """
    if versions.empty or "org_code" not in versions:
        versions = versions.assign(org_code=versions.get("trust_code"))
    if versions.empty:
        return pd.DataFrame(columns=list(MEASURES))
    ordered = versions.sort_values("submitted_at")
    latest = ordered.loc[ordered["in_use"]].groupby("trust_code").tail(1)
    rows = {}
    for record in latest.itertuples(index=False):  # one per trust
        same_org = ordered.loc[(ordered["trust_code"] == record.trust_code) & (ordered["org_code"] == record.org_code)
                               & (ordered["submitted_at"] < record.submitted_at)]
        if len(same_org):
            rows[record.trust_code] = {m: getattr(record, m) - same_org.iloc[-1][m] for m in MEASURES}
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(MEASURES))
