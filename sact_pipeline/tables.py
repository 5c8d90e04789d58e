"""The warehouse's tables (SQLAlchemy Core), by schema: what each layer holds, its keys and types.

On PostgreSQL the tables live in three schemas, so that access can be granted by what a table holds
(sact_pipeline/database.py makes the roles): `raw` (identifiable rows and the opt-out control, the loader
only), `clean` (what analysts read) and `published`. SQLite has no schemas: the warehouse's engine maps
the three to none, so every Core statement is the same on both.
"""

from __future__ import annotations

import sqlalchemy as sa

from sact_pipeline.domain.cleaning import (
    CLEAN_COLUMNS,
    DATE_COLUMNS,
    INTEGER_COLUMNS,
    NUMERIC_COLUMNS,
    QUARANTINE_ITEM_COLUMNS,
)
from sact_pipeline.domain.counting import MEASURES
from sact_pipeline.domain.data_quality import TRUST_MONTH_COUNTS
from sact_pipeline.domain.publication import PUBLISHED_COLUMNS
from sact_pipeline.domain.spec import SACT
from sact_pipeline.domain.summary import SUMMARY_COLUMNS, SUMMARY_COUNT_COLUMNS

RAW_SCHEMA = "raw"  # identifiable submissions and registration opt-outs: the loader only
CLEAN_SCHEMA = "clean"  # the file register and the pseudonymised layers: analysts read them
PUBLISHED_SCHEMA = "published"  # small numbers protected: anyone with the reader role
SCHEMAS = (RAW_SCHEMA, CLEAN_SCHEMA, PUBLISHED_SCHEMA)

metadata = sa.MetaData()


def _partition_columns() -> list[sa.Column]:
    return [sa.Column("reporting_month", sa.String(7), nullable=False),
            sa.Column("trust_code", sa.String(5), nullable=False)]


submission_files = sa.Table(
    "submission_files", metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("relative_path", sa.Text, primary_key=True),
    sa.Column("file_name", sa.Text, nullable=False),
    sa.Column("org_code", sa.String(5), nullable=False),
    sa.Column("trust_code", sa.String(5), nullable=False),
    sa.Column("reporting_month", sa.String(7), nullable=False),
    sa.Column("submitted_at", sa.DateTime, nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("encoding", sa.String(16), nullable=False),
    sa.Column("header_version", sa.String(8), nullable=False),
    sa.Column("data_rows", sa.BigInteger, nullable=False),
    sa.Column("ignored_columns", sa.Text, nullable=False),
    sa.Column("registered_at", sa.DateTime, nullable=False),
    schema=CLEAN_SCHEMA,
)

rejected_files = sa.Table(
    "rejected_files", metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("relative_path", sa.Text, primary_key=True),
    sa.Column("file_name", sa.Text, nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("rejected_at", sa.DateTime, nullable=False),
    sa.Column("last_seen_at", sa.DateTime, nullable=False),  # still in the landing zone at that scan
    schema=CLEAN_SCHEMA,
)

raw_submissions = sa.Table(
    "raw_submissions", metadata,
    *_partition_columns(),
    sa.Column("file_name", sa.Text, nullable=False),
    sa.Column("file_sha256", sa.String(64), nullable=False),
    sa.Column("submitted_at", sa.DateTime, nullable=False),
    sa.Column("header_version", sa.String(8), nullable=False),
    sa.Column("row_number", sa.BigInteger, nullable=False),
    # Every item of either SACT version as text: NULL where the file's version lacks the item.
    *(sa.Column(column, sa.Text) for column in SACT.columns),
    sa.Index("ix_raw_submissions_partition", "reporting_month", "trust_code"),
    schema=RAW_SCHEMA,
)


def _clean_type(column: str):
    if column in DATE_COLUMNS:
        return sa.Date
    if column in NUMERIC_COLUMNS:
        return sa.Float
    if column in INTEGER_COLUMNS or column in ("row_number", "age_at_regimen_start"):
        return sa.BigInteger
    return sa.Text


clean_activity = sa.Table(
    "clean_activity", metadata,
    *_partition_columns(),
    sa.Column("file_sha256", sa.String(64), nullable=False),
    *(sa.Column(column, _clean_type(column)) for column in CLEAN_COLUMNS),
    sa.Index("ix_clean_activity_partition", "reporting_month", "trust_code"),
    schema=CLEAN_SCHEMA,
)

clean_quarantine = sa.Table(
    "clean_quarantine", metadata,
    *_partition_columns(),
    sa.Column("file_sha256", sa.String(64), nullable=False),
    sa.Column("row_number", sa.BigInteger, nullable=False),
    sa.Column("reasons", sa.Text, nullable=False),
    sa.Column("patient_key", sa.String(64)),
    *(sa.Column(column, sa.Text) for column in QUARANTINE_ITEM_COLUMNS),
    sa.Index("ix_clean_quarantine_partition", "reporting_month", "trust_code"),
    schema=CLEAN_SCHEMA,
)

clean_data_quality = sa.Table(
    "clean_data_quality", metadata,
    *_partition_columns(),
    sa.Column("item", sa.Text, nullable=False),
    sa.Column("missing", sa.BigInteger, nullable=False),
    sa.Column("invalid", sa.BigInteger, nullable=False),
    schema=CLEAN_SCHEMA,
)

# Data quality, over the assessed rows (clean and quarantined) of the files in use (domain.data_quality).
clean_item_quality = sa.Table(
    "clean_item_quality", metadata,
    *_partition_columns(),
    sa.Column("file_sha256", sa.String(64), nullable=False),
    sa.Column("item", sa.Text, nullable=False),
    sa.Column("obligation", sa.String(8), nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("present", sa.BigInteger, nullable=False),
    sa.Column("valid", sa.BigInteger, nullable=False),
    # the file's SACT version (the default fills rows of a warehouse made before v4 was read: all v3)
    sa.Column("sact_version", sa.String(8), nullable=False, server_default="v3"),
    sa.Index("ix_clean_item_quality_partition", "reporting_month", "trust_code"),
    schema=CLEAN_SCHEMA,
)

clean_findings = sa.Table(
    # One row per finding of a row (item and reason, never a value): the trust's feedback file.
    "clean_findings", metadata,
    *_partition_columns(),
    sa.Column("file_sha256", sa.String(64), nullable=False),
    sa.Column("file_name", sa.Text, nullable=False),
    sa.Column("row_number", sa.BigInteger, nullable=False),
    sa.Column("item", sa.Text, nullable=False),
    sa.Column("finding", sa.Text, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("quarantined", sa.Boolean, nullable=False),
    sa.Index("ix_clean_findings_partition", "reporting_month", "trust_code"),
    schema=CLEAN_SCHEMA,
)

# The data-quality layer (internal: never published): per item, per trust-month, and findings by reason.
quality_items = sa.Table(
    "quality_items", metadata,
    *_partition_columns(),
    sa.Column("item", sa.Text, nullable=False),
    sa.Column("obligation", sa.String(8), nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("present", sa.BigInteger, nullable=False),
    sa.Column("valid", sa.BigInteger, nullable=False),
    sa.Column("completeness", sa.Float),
    sa.Column("validity", sa.Float),
    sa.Column("item_score", sa.Float),
    sa.Column("scored", sa.Boolean, nullable=False),
    sa.Column("sact_version", sa.String(8), nullable=False, server_default="v3"),
    sa.Column("core", sa.Boolean, nullable=False, server_default=sa.false()),  # scored in every version
    sa.Index("ix_quality_items_partition", "reporting_month", "trust_code"),
    schema=CLEAN_SCHEMA,
)

quality_trust_months = sa.Table(
    "quality_trust_months", metadata,
    *_partition_columns(),
    sa.Column("score", sa.Float),
    sa.Column("core_score", sa.Float),  # over the measures both versions score: comparable across a switch
    sa.Column("sact_version", sa.String(16), nullable=False, server_default="v3"),
    *(sa.Column(c, sa.BigInteger, nullable=False) for c in TRUST_MONTH_COUNTS),
    sa.Column("quarantined_share", sa.Float, nullable=False),
    sa.Column("feedback_file", sa.Text, nullable=False),
    sa.Column("assessed_at", sa.DateTime, nullable=False),
    sa.Index("ix_quality_trust_months_partition", "reporting_month", "trust_code"),
    schema=CLEAN_SCHEMA,
)

quality_findings = sa.Table(
    "quality_findings", metadata,
    *_partition_columns(),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("item", sa.Text, nullable=False),
    sa.Column("finding", sa.Text, nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Index("ix_quality_findings_partition", "reporting_month", "trust_code"),
    schema=CLEAN_SCHEMA,
)

clean_file_versions = sa.Table(
    "clean_file_versions", metadata,
    *_partition_columns(),
    sa.Column("org_code", sa.String(5), nullable=False),  # the trust, or the site that sent the file
    sa.Column("file_sha256", sa.String(64), nullable=False),
    sa.Column("file_name", sa.Text, nullable=False),
    sa.Column("submitted_at", sa.DateTime, nullable=False),
    sa.Column("in_use", sa.Boolean, nullable=False),
    *(sa.Column(m, sa.BigInteger, nullable=False) for m in MEASURES),
    sa.Column("raw_rows", sa.BigInteger, nullable=False),
    sa.Column("clean_rows", sa.BigInteger, nullable=False),
    sa.Column("quarantined_rows", sa.BigInteger, nullable=False),
    sa.Column("duplicate_rows", sa.BigInteger, nullable=False),
    sa.Column("data_quality_findings", sa.BigInteger, nullable=False),
    # internal only: never summarised or published (the default fills rows of a warehouse made before it)
    sa.Column("opted_out_rows", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("pseudonymisation_key_id", sa.String(16), nullable=False),
    sa.Column("sact_version", sa.String(8), nullable=False, server_default="v3"),  # of the file (v3 before v4)
    schema=CLEAN_SCHEMA,
)

# Registration opt-outs: the files (by content) and the patients they list, as pseudonyms only.
optout_files = sa.Table(
    "optout_files", metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("file_name", sa.Text, nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(8), nullable=False),  # 'applied', or 'rejected' (unreadable: applied to nothing)
    sa.Column("entries", sa.BigInteger, nullable=False),  # valid NHS numbers listed
    sa.Column("invalid_entries", sa.BigInteger, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),  # why rejected, or which rows were invalid (never values)
    sa.Column("registered_at", sa.DateTime, nullable=False),
    schema=RAW_SCHEMA,
)

optout_patients = sa.Table(
    "optout_patients", metadata,
    sa.Column("patient_key", sa.String(64), primary_key=True),
    sa.Column("pseudonymisation_key_id", sa.String(16), primary_key=True),
    sa.Column("file_sha256", sa.String(64), primary_key=True),
    sa.Index("ix_optout_patients_file", "file_sha256"),  # a new file's patients, looked up in clean rows
    schema=RAW_SCHEMA,
)

optout_pending = sa.Table(
    "optout_pending", metadata,
    # Trust-months whose clean rows held a patient of an opt-out file not yet applied to them: affected
    # until clean is re-derived with that file applied (the write that applies it deletes the row).
    sa.Column("reporting_month", sa.String(7), primary_key=True),
    sa.Column("trust_code", sa.String(5), primary_key=True),
    sa.Column("file_sha256", sa.String(64), primary_key=True),
    schema=RAW_SCHEMA,
)

raw_purges = sa.Table(
    "raw_purges", metadata,
    # Trust-months whose identifiable raw rows and files were purged under the retention setting; the
    # file register keeps their names, hashes and row counts.
    sa.Column("reporting_month", sa.String(7), primary_key=True),
    sa.Column("trust_code", sa.String(5), primary_key=True),
    sa.Column("raw_rows", sa.BigInteger, nullable=False),
    sa.Column("files_deleted", sa.BigInteger, nullable=False),
    sa.Column("purged_at", sa.DateTime, nullable=False),
    schema=RAW_SCHEMA,
)


def _summary_type(column: str):
    if column in SUMMARY_COUNT_COLUMNS or column.endswith("_resubmission_change"):
        return sa.BigInteger
    if column.endswith("_at"):
        return sa.DateTime
    if column == "is_english":
        return sa.Boolean
    return sa.Text


trust_month_summary = sa.Table(
    "trust_month_summary", metadata,
    *(sa.Column(column, _summary_type(column)) for column in SUMMARY_COLUMNS),
    sa.Index("ix_trust_month_summary_month", "reporting_month"),
    schema=CLEAN_SCHEMA,
)

published_submissions = sa.Table(
    "published_submissions", metadata,
    *(sa.Column(column, sa.Text) for column in PUBLISHED_COLUMNS),
    sa.Index("ix_published_submissions_month", "reporting_month"),
    schema=PUBLISHED_SCHEMA,
)

layer_state = sa.Table(
    "layer_state", metadata,
    sa.Column("layer", sa.String(32), primary_key=True),
    sa.Column("reporting_month", sa.String(7), primary_key=True),
    sa.Column("trust_code", sa.String(5), primary_key=True),  # '' for month-level layers
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("row_count", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    schema=CLEAN_SCHEMA,
)


gate_failures = sa.Table(
    "gate_failures", metadata,
    # The last Great Expectations gate a trust-month failed, per layer, and on which inputs: while its file
    # versions are unchanged the trust-month is held (not retried by the sensor) and its month is not
    # re-published. Cleared when the layer next succeeds for the trust-month.
    sa.Column("reporting_month", sa.String(7), primary_key=True),
    sa.Column("trust_code", sa.String(5), primary_key=True),
    sa.Column("layer", sa.String(32), primary_key=True),
    sa.Column("inputs_fingerprint", sa.String(64), nullable=False),
    sa.Column("message", sa.Text, nullable=False),  # suite and expectation names with counts: no row values
    sa.Column("failed_at", sa.DateTime, nullable=False),
    schema=CLEAN_SCHEMA,
)


file_swaps = sa.Table(
    "file_swaps", metadata,
    # Files published with a warehouse write (gating.swap_in): a swap's token is committed in the write's
    # transaction, so after a crash the journal of the swap says whether to finish it or roll it back.
    sa.Column("token", sa.String(32), primary_key=True),
    sa.Column("committed_at", sa.DateTime, nullable=False),
    schema=CLEAN_SCHEMA,
)
