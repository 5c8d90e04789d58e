"""The suite catalogue: every Great Expectations suite the pipeline runs, and the one registry of them.

Each builder returns a suite's expectations (GX objects: GX is imported on the first call, not on import).
REGISTRY declares once, for each Dagster asset, the suites gating it (its main suite first): name, builder
and the frame it validates. The layer modules name their suites through it, and definitions.py derives the
asset checks (one per asset, naming its suites) from SUITES, which is derived from it. Suite names appear in Data Docs, check metadata and tests: keep them stable.
Running a suite is sact_pipeline.quality's job (validate_frame / validate_parts).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sact_pipeline.domain.cleaning import EARLIEST_ADMINISTRATION as _EARLIEST
from sact_pipeline.domain.cleaning import MAX_AGE
from sact_pipeline.domain.counting import MONTH_STATUSES, SUBMISSION_STATUSES
from sact_pipeline.domain.publication import SACT_VERSIONS_PUBLISHED
from sact_pipeline.domain.summary import DATA_STATUSES
from sact_pipeline.quality import import_gx

if TYPE_CHECKING:  # pragma: no cover - typing only; GX is imported lazily at run time
    import great_expectations as gx

__all__ = [
    "Suite",
    "REGISTRY",
    "SUITES",
    "suites_of",
    "raw_expectations",
    "raw_reconciliation_expectations",
    "clean_expectations",
    "reconciliation_expectations",
    "summary_expectations",
    "published_expectations",
    "disclosure_expectations",
    "data_quality_expectations",
    "data_quality_month_expectations",
    "SHA256_REGEX",
    "PATIENT_KEY_REGEX",
    "PUBLISHED_COUNT_REGEX",
    "PUBLISHED_CHANGE_REGEX",
]

SHA256_REGEX = r"^[0-9a-f]{64}$"
PATIENT_KEY_REGEX = r"^[0-9a-f]{64}$"
# Published cells are text: empty (missing submission), 0, '*' (suppressed), '[c]' (withheld) or a
# multiple of 5 that is at least 10. Changes may be negative and may be +-5. Groups are non-capturing:
# GX runs Series.str.contains(), which warns (UserWarning, every run) on a capturing group.
PUBLISHED_COUNT_REGEX = r"^(?:|0|\*|\[c\]|[1-9][0-9]*[05])$"
PUBLISHED_CHANGE_REGEX = r"^(?:|\*|\[c\]|0|-?[1-9][0-9]*[05]|-?5)$"

RAW_METADATA_COLUMNS: tuple[str, ...] = (
    "reporting_month", "trust_code", "file_name", "file_sha256", "submitted_at", "row_number", "header_version",
)
CLEAN_DATE_COLUMNS: tuple[str, ...] = ("administration_date", "start_date_of_cycle", "start_date_of_regimen")
# patients <= regimens <= cycles <= drug_administrations (nested keys, see domain.counting).
NESTED_MEASURES: tuple[str, ...] = ("patients", "regimens", "cycles", "drug_administrations")
ENGLAND = "ENGLAND"
# The same bounds cleaning quarantines on, so a suite failure means a cleaning defect, not one odd row.
EARLIEST_ADMINISTRATION = _EARLIEST.to_pydatetime()
# GX compares numpy dtypes exactly: "datetime64" alone does not match datetime64[s] (the clean layer's unit).
DATETIME_DTYPES: tuple[str, ...] = ("datetime64[s]", "datetime64[ms]", "datetime64[us]", "datetime64[ns]")


# --------------------------------------------------------------------------------------------------
# The suites: one builder per suite, each returning the suite's expectations


def raw_expectations(
    item_columns: Sequence[str], header_versions: Collection[str] = ("v3",)
) -> list[gx.expectations.Expectation]:
    """The raw layer frame: the items as text plus month, trust, file_name, file_sha256, submitted_at,
    row_number and header_version."""
    ge = import_gx().expectations
    columns = list(dict.fromkeys([*item_columns, *RAW_METADATA_COLUMNS]))
    return [
        ge.ExpectTableColumnsToMatchSet(column_set=columns, exact_match=False),
        ge.ExpectTableRowCountToBeBetween(min_value=1),
        ge.ExpectColumnValuesToMatchRegex(column="file_sha256", regex=SHA256_REGEX),
        ge.ExpectColumnValuesToNotBeNull(column="row_number"),
        ge.ExpectColumnValuesToBeBetween(column="row_number", min_value=1),
        # A version is a file name and its content: the same bytes under two names are two versions.
        ge.ExpectCompoundColumnsToBeUnique(column_list=["row_number", "file_name", "file_sha256"]),
        ge.ExpectColumnValuesToBeInSet(column="header_version", value_set=sorted(header_versions)),
    ]


def clean_expectations(
    code_lists: Mapping[str, Sequence[str]],
    month_start: dt.date | str,
    month_end: dt.date | str,
    *,
    in_month_mostly: float | None = 0.0,
    today: dt.date | None = None,
) -> list[gx.expectations.Expectation]:
    """The clean activity frame.

    month_start/month_end (inclusive) feed one monitoring expectation: administration_date within the
    reporting month, with mostly=in_month_mostly. The default 0.0 never fails; it reports how many clean
    rows fall outside the month (None leaves it out; raise it to gate on that share).
    """
    ge = import_gx().expectations
    upper = dt.datetime.combine(today or dt.date.today(), dt.time.max)
    expectations = [
        ge.ExpectColumnValuesToNotBeNull(column="patient_key"),
        ge.ExpectColumnValuesToMatchRegex(column="patient_key", regex=PATIENT_KEY_REGEX),
    ]
    for column, codes in code_lists.items():  # nulls are allowed: GX leaves them out of the count
        expectations.append(ge.ExpectColumnValuesToBeInSet(column=column, value_set=list(codes), mostly=1.0))
    for column in CLEAN_DATE_COLUMNS:
        expectations.append(ge.ExpectColumnValuesToNotBeNull(column=column))
        expectations.append(
            ge.ExpectColumnValuesToBeInTypeList(column=column, type_list=list(DATETIME_DTYPES))
        )
    expectations.append(
        ge.ExpectColumnValuesToBeBetween(
            column="administration_date", min_value=EARLIEST_ADMINISTRATION, max_value=upper
        )
    )
    if in_month_mostly is not None:
        expectations.append(
            ge.ExpectColumnValuesToBeBetween(
                column="administration_date",
                min_value=_as_datetime(month_start, end=False),
                max_value=_as_datetime(month_end, end=True),
                mostly=in_month_mostly,
            )
        )
    expectations += [
        ge.ExpectColumnValuesToBeBetween(column="age_at_regimen_start", min_value=0, max_value=MAX_AGE),
        ge.ExpectColumnValuesToNotBeNull(column="drug_name"),
        ge.ExpectColumnValuesToNotBeNull(column="regimen"),
    ]
    return expectations


def raw_reconciliation_expectations() -> list[gx.expectations.Expectation]:
    """One row per newly loaded file version: rows loaded equal the rows counted when it was registered."""
    ge = import_gx().expectations
    return [
        ge.ExpectColumnPairValuesToBeEqual(column_A="registered_rows", column_B="loaded_rows"),
        ge.ExpectColumnValuesToBeBetween(column="loaded_rows", min_value=1),
    ]


def reconciliation_expectations(max_quarantine_share: float) -> list[gx.expectations.Expectation]:
    """The reconciliation frame, one row per file version: raw_rows, clean_rows, quarantined_rows, duplicate_rows,
    opted_out_rows, accounted_rows (their sum) and quarantine_share."""
    ge = import_gx().expectations
    return [
        ge.ExpectColumnPairValuesToBeEqual(column_A="raw_rows", column_B="accounted_rows"),
        ge.ExpectColumnValuesToNotBeNull(column="quarantine_share"),
        ge.ExpectColumnValuesToBeBetween(column="quarantine_share", min_value=0, max_value=max_quarantine_share),
    ]


def summary_expectations(
    count_columns: Sequence[str],
    *,
    month_column: str = "reporting_month",
    nested: Sequence[str] = NESTED_MEASURES,
) -> list[gx.expectations.Expectation]:
    """The trust-month summary (domain.summary.summarise_month: its month column is reporting_month).

    Counts are >= 0 where present (null = missing submission); patients <= regimens <= cycles <=
    drug_administrations on rows where both are present; one row per (month, org_code).
    """
    ge = import_gx().expectations
    expectations = [ge.ExpectColumnValuesToBeBetween(column=c, min_value=0) for c in count_columns]
    for smaller, larger in zip(nested, nested[1:]):
        expectations.append(
            ge.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A=larger, column_B=smaller, or_equal=True, ignore_row_if="either_value_is_missing"
            )
        )
    expectations += [
        ge.ExpectCompoundColumnsToBeUnique(column_list=[month_column, "org_code"]),
        ge.ExpectColumnValuesToNotBeNull(column="submission_status"),
        ge.ExpectColumnValuesToBeInSet(column="submission_status", value_set=list(SUBMISSION_STATUSES)),
        ge.ExpectColumnValuesToBeInSet(column="month_status", value_set=list(MONTH_STATUSES)),
        ge.ExpectColumnValuesToBeInSet(column="data_status", value_set=list(DATA_STATUSES)),
    ]
    return expectations


def published_expectations(
    count_columns: Sequence[str], change_columns: Sequence[str], english_codes: Collection[str]
) -> list[gx.expectations.Expectation]:
    """The published table, all cells text: rule R shapes for counts and changes, English trusts plus
    one ENGLAND row, one row per org_code."""
    ge = import_gx().expectations
    expectations = [ge.ExpectColumnValuesToMatchRegex(column=c, regex=PUBLISHED_COUNT_REGEX) for c in count_columns]
    expectations += [ge.ExpectColumnValuesToMatchRegex(column=c, regex=PUBLISHED_CHANGE_REGEX) for c in change_columns]
    expectations += [
        ge.ExpectColumnValuesToNotBeNull(column="org_code"),
        ge.ExpectColumnValuesToBeInSet(column="org_code", value_set=sorted({*english_codes, ENGLAND})),
        ge.ExpectColumnDistinctValuesToContainSet(column="org_code", value_set=[ENGLAND]),
        ge.ExpectColumnValuesToBeUnique(column="org_code"),
        # the SACT version of the file version used: empty for ENGLAND and where none is usable
        ge.ExpectColumnValuesToBeInSet(column="sact_version", value_set=list(SACT_VERSIONS_PUBLISHED)),
        # the month status (one for the whole table, ENGLAND too, by construction); a trust's data status
        ge.ExpectColumnValuesToBeInSet(column="month_status", value_set=list(MONTH_STATUSES)),
        ge.ExpectColumnValuesToBeInSet(column="data_status", value_set=list(DATA_STATUSES)),
    ]
    return expectations


def disclosure_expectations() -> list[gx.expectations.Expectation]:
    """The attacker's view of the tables about to be released (publication.suppressed_cell_ranges): every
    '*' cell must still stand for at least two true counts within 1..7."""
    ge = import_gx().expectations
    return [
        ge.ExpectColumnPairValuesAToBeGreaterThanB(column_A="highest", column_B="lowest"),
        ge.ExpectColumnValuesToBeBetween(column="lowest", min_value=1, max_value=7),
        ge.ExpectColumnValuesToBeBetween(column="highest", min_value=1, max_value=7),
    ]


def _as_datetime(value: dt.date | str, *, end: bool) -> dt.datetime:
    """A month bound as a naive datetime; a bare date is the whole day (00:00 or 23:59:59.999999)."""
    if isinstance(value, str):
        parsed = dt.datetime.fromisoformat(value)
        bare_date = len(value.strip()) <= 10
    elif isinstance(value, dt.datetime):
        parsed, bare_date = value, False
    else:
        parsed, bare_date = dt.datetime.combine(value, dt.time.min), True
    if hasattr(parsed, "to_pydatetime"):  # pandas Timestamp
        parsed = parsed.to_pydatetime()
    if bare_date and end:
        parsed = dt.datetime.combine(parsed.date(), dt.time.max)
    return parsed


def data_quality_expectations(items: Collection[str]) -> list[gx.expectations.Expectation]:
    """A trust-month's item measures (domain.data_quality.item_scores, with the partition columns and the
    trust-month's assessed_rows): each v3 item once, counts that nest (valid <= present <= rows = the
    assessed rows), shares within 0-1. All hold on each trust-month's part of a concatenation
    (quality.decomposes), so a month's trusts validate in one run."""
    ge = import_gx().expectations
    return [
        ge.ExpectColumnValuesToBeInSet(column="item", value_set=sorted(items)),
        ge.ExpectCompoundColumnsToBeUnique(column_list=["reporting_month", "trust_code", "item"]),
        ge.ExpectColumnPairValuesToBeEqual(column_A="rows", column_B="assessed_rows"),
        ge.ExpectColumnPairValuesAToBeGreaterThanB(column_A="rows", column_B="present", or_equal=True),
        ge.ExpectColumnPairValuesAToBeGreaterThanB(column_A="present", column_B="valid", or_equal=True),
        ge.ExpectColumnValuesToBeBetween(column="valid", min_value=0),
        *(ge.ExpectColumnValuesToBeBetween(column=c, min_value=0, max_value=1)
          for c in ("completeness", "validity", "item_score")),
    ]


def data_quality_month_expectations() -> list[gx.expectations.Expectation]:
    """The month's data-quality table across organisations: one row per trust, score 0-100, shares 0-1,
    every clean and quarantined row assessed (more only where opt-outs removed rows after a raw purge)."""
    ge = import_gx().expectations
    return [
        ge.ExpectColumnValuesToBeUnique(column="org_code"),
        ge.ExpectColumnValuesToNotBeNull(column="org_code"),
        ge.ExpectColumnValuesToBeBetween(column="score", min_value=0, max_value=100),
        ge.ExpectColumnValuesToBeBetween(column="quarantined_share", min_value=0, max_value=1),
        ge.ExpectColumnPairValuesAToBeGreaterThanB(column_A="assessed_rows", column_B="accounted_rows", or_equal=True),
    ]


# --------------------------------------------------------------------------------------------------
# The registry: each asset's suites, declared once


@dataclass(frozen=True)
class Suite:
    """One suite: its name (GX suite, Data Docs, check metadata), the Dagster asset it gates, the frame it
    validates and the builder of its expectations. (The layers call the builder as suites.<builder>(...),
    so a test can swap it with monkeypatch.setattr(suites, ...).)"""

    name: str
    asset: str
    frame: str
    builder: Callable[..., list]


RAW_SUBMISSIONS = Suite("raw_submissions", "raw_submissions",
                        "the raw rows of the newly loaded file versions, items as text", raw_expectations)
RAW_RECONCILIATION = Suite("raw_reconciliation", "raw_submissions",
                           "one row per newly loaded file version: registered vs loaded rows",
                           raw_reconciliation_expectations)
CLEAN_ACTIVITY = Suite("clean_activity", "clean_activity", "the clean activity rows of a trust-month",
                       clean_expectations)
CLEAN_RECONCILIATION = Suite("clean_reconciliation", "clean_activity",
                             "one row per file version: raw rows accounted for as clean, quarantined, "
                             "duplicate or opted out", reconciliation_expectations)
TRUST_MONTH_SUMMARY = Suite("trust_month_summary", "trust_month_summary",
                            "the month's summary, one row per organisation", summary_expectations)
PUBLISHED_SUBMISSIONS = Suite("published_submissions", "published_submissions",
                              "the published table, all cells text", published_expectations)
PUBLISHED_DISCLOSURE = Suite("published_disclosure", "published_submissions",
                             "the attacker's view of the suppressed cells about to be released",
                             disclosure_expectations)
TRUST_MONTH_DATA_QUALITY = Suite("trust_month_data_quality", "trust_month_data_quality",
                                 "a trust-month's item measures", data_quality_expectations)
DATA_QUALITY_MONTH = Suite("data_quality_month", "data_quality_report",
                           "the month's data-quality table, one row per organisation",
                           data_quality_month_expectations)

REGISTRY: tuple[Suite, ...] = (
    RAW_SUBMISSIONS, RAW_RECONCILIATION,
    CLEAN_ACTIVITY, CLEAN_RECONCILIATION,
    TRUST_MONTH_SUMMARY,
    PUBLISHED_SUBMISSIONS, PUBLISHED_DISCLOSURE,
    TRUST_MONTH_DATA_QUALITY,
    DATA_QUALITY_MONTH,
)


def suites_of(asset: str) -> tuple[Suite, ...]:
    """The suites gating an asset, its main suite first."""
    return tuple(s for s in REGISTRY if s.asset == asset)


# Asset name -> its suites' names, main suite first (the asset checks: definitions.py).
SUITES: dict[str, tuple[str, ...]] = {s.asset: tuple(x.name for x in suites_of(s.asset)) for s in REGISTRY}
