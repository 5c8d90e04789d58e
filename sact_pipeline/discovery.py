"""Discovery: register every new file version in the landing zone (SHA-256, timestamp) or reject it with
its reason, after registering new opt-out files."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from sact_pipeline.context import PipelineContext, UsesContext
from sact_pipeline.domain.landing import SubmissionRejected, find_candidate_files, read_submission, sha256_of
from sact_pipeline.protection import DataProtection
from sact_pipeline.tables import rejected_files, submission_files


@dataclass(frozen=True)
class Discovery:
    accepted_new: list[str]
    rejected_new: list[tuple[str, str]]  # (relative path, reason)
    rejected_known: list[tuple[str, str]]
    trusts: list[str]
    optouts_new: list[tuple[str, str, int]] = field(default_factory=list)  # (file, note or rejection, trust-months)


class LandingZone(UsesContext):
    """The landing zone as the pipeline has registered it."""

    def __init__(self, context: PipelineContext, protection: DataProtection):
        super().__init__(context)
        self.protection = protection

    def discover(self, *, check_key: bool = True) -> Discovery:
        """Register new opt-out files (first: a submission registered in the same scan is cleaned with them
        applied), then every new file version in the landing zone, accepted or rejected with its reason.
        Refuses on a changed key (check_key), unless a rekey runs: opt-outs registered under a wrong key
        would never be applied under the right one."""
        with self.measurements.stage("discover"):
            if check_key:
                self.protection.check_key()
            optouts = self.protection.register_optouts()
            return dataclasses.replace(self._discover(), optouts_new=optouts)

    def _discover(self) -> Discovery:
        landing = self.settings.landing_dir
        landing.mkdir(parents=True, exist_ok=True)
        known_files = self.warehouse.read(submission_files)
        known_rejections = self.warehouse.read(rejected_files)
        accepted_keys = set(zip(known_files["relative_path"], known_files["sha256"]))
        accepted, rejected, recovered = [], [], []
        now = datetime.now()
        for path in find_candidate_files(landing):
            data = path.read_bytes()
            relative = path.relative_to(landing).as_posix()
            digest = sha256_of(data)
            if (relative, digest) in accepted_keys:
                continue
            # Rejected files are checked again: some reasons pass with time or configuration (a month that
            # has now ended, a newer ODS register, SACT_FIRST_MONTH).
            try:
                submission, _ = read_submission(path, landing, self.organisations,
                                                first_month=self.settings.first_month, today=self.today, data=data,
                                                transition=self.settings.transition)
            except SubmissionRejected as rejection:
                rejected.append({"sha256": digest, "relative_path": relative, "file_name": path.name,
                                 "size_bytes": len(data), "reason": rejection.reason, "rejected_at": now})
                continue
            except Exception as error:  # never let one unreadable file stop the others; no data in the reason
                rejected.append({"sha256": digest, "relative_path": relative, "file_name": path.name,
                                 "size_bytes": len(data), "rejected_at": now,
                                 "reason": f"could not be read as CSV ({type(error).__name__})"})
                continue
            recovered.append((relative, digest))
            accepted.append({
                "sha256": submission.sha256, "relative_path": relative, "file_name": submission.file_name,
                "org_code": submission.org_code, "trust_code": submission.trust_code,
                "reporting_month": submission.reporting_month, "submitted_at": submission.submitted_at,
                "size_bytes": submission.size_bytes, "encoding": submission.encoding,
                "header_version": submission.header_version, "data_rows": submission.data_rows,
                "ignored_columns": ", ".join(submission.ignored_columns), "registered_at": now,
            })
        known_rejected = set(zip(known_rejections["relative_path"], known_rejections["sha256"]))
        self.warehouse.register_files(pd.DataFrame(accepted), pd.DataFrame(rejected), accepted_again=recovered)
        return Discovery(
            accepted_new=[a["relative_path"] for a in accepted],
            rejected_new=[(r["relative_path"], r["reason"]) for r in rejected
                          if (r["relative_path"], r["sha256"]) not in known_rejected],
            rejected_known=[(r["relative_path"], r["reason"]) for r in rejected
                            if (r["relative_path"], r["sha256"]) in known_rejected],
            trusts=sorted(set(self.status.accepted_files()["trust_code"])),
        )

    def rejected_in_landing_zone(self, seen_since: datetime) -> list[tuple[str, str, datetime]]:
        """Rejected files the scan since `seen_since` found in the landing zone: (path, reason, first rejected)."""
        rejected = self.warehouse.read(rejected_files).sort_values("rejected_at")
        return [(r.relative_path, r.reason, r.rejected_at.to_pydatetime()) for r in rejected.itertuples()
                if r.last_seen_at >= pd.Timestamp(seen_since)]
