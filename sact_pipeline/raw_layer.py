"""The raw layer: every accepted file version of a trust-month, as text, with its hash and row numbers.

Raw is the only layer that holds identifiers; it is kept for re-deriving clean (a new key, a rule change,
an opt-out) until retention purges it (sact_pipeline.protection).
"""

from __future__ import annotations

import pandas as pd

from sact_pipeline import suites
from sact_pipeline.context import UsesContext
from sact_pipeline.domain.landing import read_submission, sha256_of
from sact_pipeline.domain.spec import SACT, VERSIONS
from sact_pipeline.gating import LayerOutcome, PreparedWrite, fingerprint, raise_failure
from sact_pipeline.partitions import layer_partition
from sact_pipeline.state import RAW
from sact_pipeline.warehouse import LayerState
from sact_pipeline.tables import raw_submissions


class RawLayer(UsesContext):
    """Loads the file versions of a trust-month not yet in the raw layer (write-audit-publish)."""

    def load(self, month: str, trust: str) -> LayerOutcome:
        """Load every accepted version of a trust-month not yet in the raw layer, as text, with its hash."""
        prepared = self.prepare(month, trust, self.status.accepted_files())
        return raise_failure(self.context.audit_and_write([prepared])[0])

    def prepare(self, month: str, trust: str, files: pd.DataFrame) -> PreparedWrite:
        partition = layer_partition(month, trust)
        versions = files.loc[(files["reporting_month"] == month) & (files["trust_code"] == trust)]
        if versions.empty:
            raise ValueError(f"no accepted submission file for {trust} {month} in the landing zone register")
        loaded_before = self.warehouse.raw_versions(month, trust)
        frames, reconciliation, unavailable, just_loaded = [], [], [], []
        for version in versions.itertuples(index=False):
            if (version.file_name, version.sha256) in loaded_before:
                continue
            path = self.settings.landing_dir / version.relative_path
            data = path.read_bytes() if path.is_file() else b""
            if sha256_of(data) != version.sha256:
                # Overwritten in place or removed before it was loaded: the registered content is gone,
                # and a newer registration of the path (if any) is a version of its own.
                unavailable.append(version.relative_path)
                continue
            with self.measurements.stage("parse"):
                submission, frame = read_submission(path, self.settings.landing_dir, self.organisations,
                                                    first_month=self.settings.first_month, today=self.today,
                                                    data=data, transition=self.settings.transition)
            frame.insert(0, "reporting_month", month)
            frame.insert(1, "trust_code", trust)
            frame.insert(2, "file_name", submission.file_name)
            frame.insert(3, "file_sha256", submission.sha256)
            frame.insert(4, "submitted_at", pd.Timestamp(submission.submitted_at))
            frame.insert(5, "header_version", submission.header_version)
            frames.append(frame)
            just_loaded.append((version.file_name, version.sha256))
            reconciliation.append({"registered_rows": int(version.data_rows), "loaded_rows": len(frame)})
        new_rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        outcome = LayerOutcome(RAW, partition, rows=len(new_rows), metadata={
            "file_versions": len(versions), "new_file_versions": len(frames), "new_rows": len(new_rows),
            "unavailable_file_versions": len(unavailable),
        })
        prepared = PreparedWrite(outcome, month, trust, versions, loaded=new_rows,
                             loaded_versions=frozenset(just_loaded))
        if new_rows.empty:
            outcome.skipped = True
            return prepared
        prepared.checks = [
            (suites.RAW_SUBMISSIONS.name,
             suites.raw_expectations(SACT.columns_of(set(new_rows["header_version"])), VERSIONS), new_rows),
            (suites.RAW_RECONCILIATION.name, suites.raw_reconciliation_expectations(), pd.DataFrame(reconciliation)),
        ]
        prepared.write = lambda: self.warehouse.replace(
            [(raw_submissions, {"reporting_month": month, "trust_code": trust, "file_name": name,
                                "file_sha256": sha}, rows)
             for (name, sha), rows in new_rows.groupby(["file_name", "file_sha256"], sort=False)],
            LayerState(RAW, month, trust, fingerprint(set(versions["sha256"])), len(new_rows)),
        )
        return prepared
