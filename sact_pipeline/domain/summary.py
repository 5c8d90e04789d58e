"""The trust-month summary: counts, timeliness and resubmission changes for one reporting month."""

from __future__ import annotations

import pandas as pd

from sact_pipeline.domain.counting import MEASURES, count_activity, submission_deadline
from sact_pipeline.domain.organisations import OrganisationRegister

SUMMARY_COLUMNS: tuple[str, ...] = (
    "reporting_month", "org_code", "org_name", "country", "is_english", "submission_status",
    "first_submitted_at", "submitted_at", "versions_received", "file_sha256",
    *MEASURES,
    "raw_rows", "quarantined_rows", "duplicate_rows", "data_quality_findings",
    *(f"{m}_resubmission_change" for m in MEASURES),
)
SUMMARY_COUNT_COLUMNS: tuple[str, ...] = (
    *MEASURES, "raw_rows", "quarantined_rows", "duplicate_rows", "data_quality_findings", "versions_received",
)


def summarise_month(
    reporting_month: str,
    files: pd.DataFrame,
    clean_month: pd.DataFrame,
    versions: pd.DataFrame,
    organisations: OrganisationRegister,
    deadline_months: int = 1,
) -> pd.DataFrame:
    """One row per trust that has submitted anything up to this month.

    files: accepted file versions (trust_code, reporting_month, submitted_at) of this and earlier months.
    clean_month: the clean rows of this month (trust plus the counted columns), latest version per trust.
    versions: per cleaned file version of this month (trust_code, file_sha256, submitted_at, in_use, the
    measures, raw_rows, quarantined_rows, duplicate_rows, data_quality_findings).
    """
    known = files.loc[files["reporting_month"] <= reporting_month]
    trusts = sorted(known["trust_code"].unique())
    this_month = known.loc[known["reporting_month"] == reporting_month]
    received = this_month.groupby("trust_code").agg(
        first_submitted_at=("submitted_at", "min"), versions_received=("submitted_at", "size")
    )
    summary = pd.DataFrame({"org_code": trusts}).set_index("org_code", drop=False)
    summary = summary.join(received)

    in_use = versions.loc[versions["in_use"]].set_index("trust_code")
    summary = summary.join(
        in_use[["submitted_at", "file_sha256", "raw_rows", "quarantined_rows", "duplicate_rows",
                "data_quality_findings"]]
    )
    if len(clean_month):
        counts = count_activity(clean_month.rename(columns={"trust": "trust_code"}), ["trust_code"])
        summary = summary.join(counts.set_index("trust_code"))
    else:
        summary = summary.join(pd.DataFrame(columns=list(MEASURES), dtype="Int64"))
    has_clean = summary["file_sha256"].notna()
    for measure in MEASURES:  # a version can be clean with zero usable rows: count 0, not missing
        summary[measure] = summary[measure].astype("Int64").mask(has_clean & summary[measure].isna(), 0)

    previous = _previous_versions(versions)
    for measure in MEASURES:
        change = summary[measure] - previous[measure].reindex(summary.index).astype("Int64")
        summary[f"{measure}_resubmission_change"] = change

    deadline = pd.Timestamp(submission_deadline(reporting_month, deadline_months))
    first = summary["first_submitted_at"]
    summary["submission_status"] = (
        pd.Series("missing", index=summary.index, dtype="str")
        .mask(first.notna() & (first < deadline), "on_time")
        .mask(first.notna() & (first >= deadline), "late")
    )
    # Rows without a usable version in the clean layer stay 'missing' for counts but keep their status.
    organisations_by_code = {code: organisations.get(code) for code in trusts}
    summary["org_name"] = [o.name if o else "" for o in organisations_by_code.values()]
    summary["country"] = [o.country if o else "Other" for o in organisations_by_code.values()]
    summary["is_english"] = [bool(o and o.is_english) for o in organisations_by_code.values()]
    summary["reporting_month"] = reporting_month
    for column in SUMMARY_COUNT_COLUMNS:
        summary[column] = summary[column].astype("Int64")
    return summary[list(SUMMARY_COLUMNS)].reset_index(drop=True)


def _previous_versions(versions: pd.DataFrame) -> pd.DataFrame:
    """Counts of the version received just before the one in use, per trust (resubmission change)."""
    if versions.empty:
        return pd.DataFrame(columns=list(MEASURES))
    used_at = versions.loc[versions["in_use"]].set_index("trust_code")["submitted_at"]
    earlier = versions.loc[versions["submitted_at"] < versions["trust_code"].map(used_at)]
    latest_earlier = earlier.sort_values("submitted_at").groupby("trust_code").tail(1)
    return latest_earlier.set_index("trust_code")[list(MEASURES)]
