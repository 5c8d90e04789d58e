"""The work of each layer, with its Great Expectations gate: write-audit-publish per partition.

Each step builds the rows a layer is about to publish, validates them with the layer's GX suites, and
only when every suite passes swaps them into the live tables in one transaction. A failing suite
raises LayerGateFailed and the live tables keep their last good rows. Dagster assets are thin wrappers
around these functions, so the same work runs (and is tested) without Dagster.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import pickle
import threading
import traceback
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cached_property
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from sact_pipeline import quality
from sact_pipeline.data_docs import DataDocs
from sact_pipeline.assessment import QUALITY, DataQualityLayer
from sact_pipeline.domain.cleaning import CODED_COLUMNS, clean_submission
from sact_pipeline.domain.counting import MEASURES, count_activity, months_up_to, previous_month
from sact_pipeline.domain.landing import SubmissionRejected, find_candidate_files, read_submission, sha256_of
from sact_pipeline.domain.organisations import OrganisationRegister
from sact_pipeline.domain.pack import manifest, workbook_bytes
from sact_pipeline.domain.report import REPORT_MONTHS, report_html
from sact_pipeline.domain.publication import (
    CHANGE_COLUMNS,
    COUNT_COLUMNS,
    notes_text,
    publish_month,
    suppressed_cell_ranges,
)
from sact_pipeline.domain.spec import SACT, VERSIONS
from sact_pipeline.domain.summary import sites_sharing_trusts, summarise_month, trust_measures
from sact_pipeline.partitions import layer_partition, month_partition, split_layer_partition
from sact_pipeline.gating import (  # noqa: F401 - LayerOutcome and friends are used from here too
    STAGE_SECONDS,
    LayerGateFailed,
    LayerHeld,
    LayerOutcome,
    fingerprint,
    PreparedWrite,
    raise_failure,
    recover_swaps,
    stage,
    swap_in,
)
from sact_pipeline.keys import load_pseudonymiser
from sact_pipeline.protection import NO_OPTOUTS, DataProtection, OptOuts
from sact_pipeline.settings import Settings
from sact_pipeline.state import PipelineStatus
from sact_pipeline.warehouse import (
    LayerState,
    Warehouse,
    clean_activity,
    clean_data_quality,
    clean_file_versions,
    clean_findings,
    clean_item_quality,
    clean_quarantine,
    published_submissions,
    raw_submissions,
    rejected_files,
    submission_files,
    trust_month_summary,
)

RAW, CLEAN, SUMMARY, PUBLISHED = "raw", "clean", "summary", "published"
TRUST_MONTH_LAYERS = (RAW, CLEAN, QUALITY)  # built in this order, a batch of a month's trusts at a time
WORKER_PEAK_MB: dict[int, float] = {}  # peak resident memory of each worker process (by pid), for the benchmark


@dataclass(frozen=True)
class Discovery:
    accepted_new: list[str]
    rejected_new: list[tuple[str, str]]  # (relative path, reason)
    rejected_known: list[tuple[str, str]]
    trusts: list[str]
    optouts_new: list[tuple[str, str, int]] = field(default_factory=list)  # (file, note or rejection, trust-months)


_PIPELINES: dict[tuple[Settings, date], "Pipeline"] = {}

class Pipeline(DataProtection, DataQualityLayer):
    """Everything one process needs to run the layers: settings, warehouse, organisations and key."""

    def __init__(self, settings: Settings, *, today: date | None = None):
        self.settings = settings
        self.today = today or date.today()

    @classmethod
    def for_settings(cls, settings: Settings) -> "Pipeline":
        """One pipeline (engine, ODS register, key) per settings per process, shared by every step and run
        in it: an in-process refresh makes dozens of runs, and each would otherwise connect afresh."""
        key = (settings, date.today())
        if key not in _PIPELINES:
            _PIPELINES[key] = cls(settings)
        return _PIPELINES[key]

    @cached_property
    def warehouse(self) -> Warehouse:
        return Warehouse(self.settings.warehouse_url)

    @cached_property
    def status(self) -> PipelineStatus:
        """What each layer was built from, what is behind and what is held (sact_pipeline.state)."""
        return PipelineStatus(self.settings, self.warehouse, self.organisations, lambda: self.pseudonymiser.key_id)

    @cached_property
    def data_docs(self) -> DataDocs:
        """GX Data Docs of every suite run: the site under $SACT_OUTPUT_DIR/data_docs, its store in SACT_HOME."""
        return DataDocs(self.settings.output_dir / "data_docs", self.settings.home / "data_docs_store")

    def document(self, suite: str, outcomes: list[tuple[LayerOutcome, str, quality.SuiteOutcome]]) -> None:
        """Record suite runs for the Data Docs and link each from its layer's metadata. outcomes: (the layer
        outcome, its trust or '', the suite outcome); a run shared by a batch is one page, named for it."""
        shared = Counter(id(o.validation) for _, _, o in outcomes if o.validation is not None)
        pages: dict[int, Path | None] = {}
        for layer_outcome, trust, outcome in outcomes:
            if outcome.validation is None:
                continue
            if id(outcome.validation) not in pages:  # once per GX run (a record is a few ms)
                together = shared[id(outcome.validation)]
                name = f"{layer_outcome.layer} {layer_outcome.partition[:7]} " + (
                    f"({together} trusts)" if together > 1 else trust or "month")
                pages[id(outcome.validation)] = self.data_docs.record(outcome, name.strip())
            if pages[id(outcome.validation)] is not None:
                layer_outcome.metadata[f"data_docs {suite}"] = str(pages[id(outcome.validation)])

    def swap_in(self, files: dict[Path, bytes], write) -> None:
        """Publish files with the warehouse write `write(hook)` (which runs hook in its transaction), so a
        crash at any point leaves both old or both new (gating.swap_in)."""
        swap_in(files, write, journal_dir=self.settings.home / "file_swaps", ledger=self.warehouse)

    def recover_interrupted_writes(self) -> list[str]:
        """Finish or roll back the file swaps of processes that died mid-way; one line for each."""
        return recover_swaps(self.settings.home / "file_swaps", self.warehouse)

    def build_data_docs(self) -> Path:
        """Render the Data Docs of the suite runs recorded since the last build (after each step)."""
        with stage("Data Docs"):
            return self.data_docs.build()

    def trust_of_provider(self, code: str) -> str | None:
        """The trust a provider code belongs to (a trust's own code, or a site's), None if ODS does not know it."""
        organisation = self.organisations.resolve_trust(code)
        return organisation.code if organisation is not None else None

    @cached_property
    def organisations(self) -> OrganisationRegister:
        return OrganisationRegister.from_ods_etr(self.settings.ods_file)

    @cached_property
    def pseudonymiser(self):
        return load_pseudonymiser(self.settings.home)

    # --- landing zone -----------------------------------------------------------------------------------
    def discover(self, *, check_key: bool = True) -> Discovery:
        """Register new opt-out files (first: a submission registered in the same scan is cleaned with them
        applied), then every new file version in the landing zone, accepted or rejected with its reason.
        Refuses on a changed key (check_key), unless a rekey runs: opt-outs registered under a wrong key
        would never be applied under the right one."""
        with stage("discover"):
            if check_key:
                self.check_key()
            optouts = self.register_optouts()
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

    def _gate(self, outcome: LayerOutcome, month: str, trust: str, files: pd.DataFrame) -> None:
        """outcome.gate(), recording a failure against the trust-month's current file versions."""
        if outcome.success:
            return
        inputs = self.status.trust_month_fingerprints(files).get((month, trust), "")
        self.warehouse.record_gate_failure(outcome.layer, month, trust, inputs, outcome.failures())
        outcome.gate()

    # --- raw ----------------------------------------------------------------------------------------------
    def load_raw(self, month: str, trust: str) -> LayerOutcome:
        """Load every accepted version of a trust-month not yet in the raw layer, as text, with its hash."""
        return raise_failure(self._finish([self._prepare_raw(month, trust, self.status.accepted_files())])[0])

    def _prepare_raw(self, month: str, trust: str, files: pd.DataFrame) -> PreparedWrite:
        partition = layer_partition(month, trust)
        versions = files.loc[(files["reporting_month"] == month) & (files["trust_code"] == trust)]
        if versions.empty:
            raise ValueError(f"no accepted submission file for {trust} {month} in the landing zone register")
        loaded_before = self._raw_versions(month, trust)
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
            with stage("parse"):
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
            ("raw_submissions", quality.raw_expectations(SACT.columns_of(set(new_rows["header_version"])),
                                                         VERSIONS), new_rows),
            ("raw_reconciliation", quality.raw_reconciliation_expectations(), pd.DataFrame(reconciliation)),
        ]
        prepared.write = lambda: self.warehouse.replace(
            [(raw_submissions, {"reporting_month": month, "trust_code": trust, "file_name": name,
                                "file_sha256": sha}, rows)
             for (name, sha), rows in new_rows.groupby(["file_name", "file_sha256"], sort=False)],
            LayerState(RAW, month, trust, fingerprint(set(versions["sha256"])), len(new_rows)),
        )
        return prepared

    def _raw_versions(self, month: str, trust: str) -> set[tuple[str, str]]:
        query = sa.select(raw_submissions.c.file_name, raw_submissions.c.file_sha256).distinct().where(
            raw_submissions.c.reporting_month == month, raw_submissions.c.trust_code == trust)
        with self.warehouse.engine.connect() as connection:
            return {(name, sha) for name, sha in connection.execute(query)}

    # --- clean --------------------------------------------------------------------------------------------
    def clean(self, month: str, trust: str) -> LayerOutcome:
        """Clean every raw version of a trust-month; the latest version from each submitting organisation
        (the trust, or each of its sites) becomes the trust's clean data."""
        return raise_failure(self._finish([self._prepare_clean(month, trust, self.status.accepted_files(),
                                                                optouts=self.opted_out())])[0])

    def _prepare_clean(self, month: str, trust: str, files: pd.DataFrame,
                       held: dict[tuple[str, str], str] | None = None, loaded: PreparedWrite | None = None,
                       optouts: OptOuts = NO_OPTOUTS) -> PreparedWrite:
        """`loaded`: the raw step of this trust-month in the same run; when it loaded every registered
        version, its rows are used as they are instead of reading them back from the warehouse.
        `optouts`: opted-out patient keys and their files (Pipeline.opted_out), removed before cleaning."""
        partition = layer_partition(month, trust)
        # Version order comes from the register (timestamp, then registration), so that the file in use is
        # the latest submitted, whatever order the raw rows were loaded in.
        this_partition = files.loc[(files["reporting_month"] == month) & (files["trust_code"] == trust)]
        registered = set(zip(this_partition["file_name"], this_partition["sha256"]))
        if loaded is not None and registered and registered <= loaded.loaded_versions:
            raw = loaded.loaded
        else:
            with stage("read raw back"):
                raw = self.warehouse.read(raw_submissions, reporting_month=month, trust_code=trust)
        if raw.empty and (month, trust) in self.warehouse.purged_trust_months():
            return self._prepare_purged_clean(month, trust, this_partition, optouts)
        if raw.empty:
            raise ValueError(f"the raw layer holds no rows for {trust} {month}: materialise raw_submissions first")
        held = (self.status.held_trust_months(this_partition) if held is None else held).get((month, trust), "")
        if held.startswith(RAW):
            raise LayerHeld(f"{trust} {month}: not cleaned, because its {held}")
        versions = this_partition[["org_code", "file_name", "sha256", "submitted_at", "header_version"]]
        versions = versions.rename(columns={"sha256": "file_sha256"})
        in_raw = set(zip(raw["file_name"], raw["file_sha256"]))
        newest = versions.groupby("org_code").tail(1)  # files from one organisation are resubmissions
        purged = [name for name, sha in zip(newest["file_name"], newest["file_sha256"]) if (name, sha) not in in_raw]
        if purged and (month, trust) in self.warehouse.purged_trust_months():  # a site's file in use can't be re-read
            raise LayerHeld(f"{trust} {month}: not re-derived, because the raw rows of {', '.join(purged)} (in "
                            "use) were purged; its clean rows stand")
        versions = versions.loc[[key in in_raw for key in zip(versions["file_name"], versions["file_sha256"])]]
        versions = versions.reset_index(drop=True)
        latest = versions.groupby("org_code").tail(1)
        in_use = set(zip(latest["file_name"], latest["file_sha256"]))
        pseudonymiser = self.pseudonymiser
        version_rows, reconciliation, chosen = [], [], []
        for version in versions.itertuples(index=False):
            key = (version.file_name, version.file_sha256)
            rows = raw.loc[(raw["file_name"] == key[0]) & (raw["file_sha256"] == key[1])].sort_values("row_number")
            with stage("clean and pseudonymise"):
                cleaned = clean_submission(rows, trust_code=trust, submitted_at=version.submitted_at.to_pydatetime(),
                                           pseudonymiser=pseudonymiser, opted_out=optouts.keys,
                                           reporting_month=month, trust_of=self.trust_of_provider,
                                           sact_version=version.header_version, transition=self.settings.transition)
            counts = count_activity(cleaned.clean.assign(_all=1), ["_all"])
            measures = {m: int(counts[m].iloc[0]) if len(counts) else 0 for m in MEASURES}
            version_rows.append({
                "reporting_month": month, "trust_code": trust, "org_code": version.org_code,
                "file_sha256": version.file_sha256, "file_name": version.file_name, "submitted_at": version.submitted_at,
                "in_use": key in in_use, **measures,
                "raw_rows": cleaned.raw_rows, "clean_rows": cleaned.clean_rows,
                "quarantined_rows": cleaned.quarantined_rows, "duplicate_rows": cleaned.duplicate_rows,
                "data_quality_findings": cleaned.data_quality_findings, "opted_out_rows": cleaned.opted_out_rows,
                "pseudonymisation_key_id": pseudonymiser.key_id, "sact_version": cleaned.sact_version,
            })
            if key not in in_use:  # earlier versions are counted for the record but not published
                continue
            reconciliation.append({
                "raw_rows": cleaned.raw_rows, "clean_rows": cleaned.clean_rows,
                "quarantined_rows": cleaned.quarantined_rows, "duplicate_rows": cleaned.duplicate_rows,
                "opted_out_rows": cleaned.opted_out_rows,
                "accounted_rows": cleaned.clean_rows + cleaned.quarantined_rows + cleaned.duplicate_rows
                + cleaned.opted_out_rows,
                "quarantine_share": cleaned.quarantined_rows / max(cleaned.raw_rows, 1),
            })
            if key in in_use:
                chosen.append((version.file_sha256, version.file_name, cleaned))
        partition_columns = {"reporting_month": month, "trust_code": trust}
        clean = pd.concat([c.clean.assign(**partition_columns, file_sha256=sha) for sha, _, c in chosen],
                          ignore_index=True)
        quarantine = pd.concat([c.quarantine.assign(**partition_columns, file_sha256=sha) for sha, _, c in chosen],
                               ignore_index=True)
        data_quality = (pd.concat([c.data_quality for _, _, c in chosen]).groupby("item", as_index=False, sort=False)
                        [["missing", "invalid"]].sum().assign(**partition_columns))
        item_quality = pd.concat([c.item_quality.assign(**partition_columns, file_sha256=sha) for sha, _, c in chosen],
                                 ignore_index=True)
        findings = pd.concat([c.findings.assign(**partition_columns, file_sha256=sha, file_name=name)
                              for sha, name, c in chosen], ignore_index=True)
        used = pd.DataFrame([v for v in version_rows if v["in_use"]])
        totals = used[["raw_rows", "clean_rows", "quarantined_rows", "duplicate_rows", "opted_out_rows",
                       "data_quality_findings"]].sum()
        if len(used) == 1:  # the usual case: the trust-month's measures are its one file's, counted above
            measures = {m: int(used[m].iloc[0]) for m in MEASURES}
        else:  # a trust and its sites: a patient seen at two sites counts once
            counts = count_activity(clean.assign(_all=1), ["_all"]) if len(clean) else None
            measures = {m: int(counts[m].iloc[0]) if counts is not None else 0 for m in MEASURES}
        outcome = LayerOutcome(CLEAN, partition, rows=len(clean), metadata={
            "file_versions": len(versions), "files_in_use": len(used),
            **{k: int(v) for k, v in totals.items()}, **measures,
        })
        return self._prepared_clean(outcome, this_partition, clean, quarantine, data_quality,
                                    pd.DataFrame(version_rows), pd.DataFrame(reconciliation), optouts,
                                    item_quality, findings)

    def _prepare_purged_clean(self, month: str, trust: str, files: pd.DataFrame,
                              optouts: OptOuts) -> PreparedWrite:
        """A trust-month whose raw rows were purged can only lose rows: opt-outs registered since it was
        built are applied to its clean and quarantined rows as they stand, and its counts are taken again."""
        where = {"reporting_month": month, "trust_code": trust}
        clean = self.warehouse.read(clean_activity, **where)
        quarantine = self.warehouse.read(clean_quarantine, **where)
        versions = self.warehouse.read(clean_file_versions, **where)
        data_quality = self.warehouse.read(clean_data_quality, **where)
        item_quality = self.warehouse.read(clean_item_quality, **where)  # as assessed: raw rows are gone
        findings = self.warehouse.read(clean_findings, **where)
        built_with = set(versions["pseudonymisation_key_id"])
        if built_with != {self.pseudonymiser.key_id}:
            raise LayerHeld(f"{trust} {month}: its raw rows were purged and its clean rows were built with key id "
                             f"{', '.join(sorted(built_with))}, so opt-outs pseudonymised with the current key "
                             f"{self.pseudonymiser.key_id} cannot be matched to them")
        opted_clean, opted_quarantine = clean["patient_key"].isin(optouts.keys), quarantine["patient_key"].isin(optouts.keys)
        removed = Counter(clean.loc[opted_clean, "file_sha256"]) + Counter(quarantine.loc[opted_quarantine, "file_sha256"])
        removed_rows = pd.MultiIndex.from_frame(pd.concat([clean.loc[opted_clean, ["file_sha256", "row_number"]],
                                                           quarantine.loc[opted_quarantine, ["file_sha256", "row_number"]]]))
        findings = findings.loc[~pd.MultiIndex.from_frame(findings[["file_sha256", "row_number"]]).isin(removed_rows)]
        clean, quarantine = clean.loc[~opted_clean].reset_index(drop=True), quarantine.loc[~opted_quarantine]
        in_use = versions["in_use"].to_numpy()
        for index in versions.index[in_use]:
            sha = versions.at[index, "file_sha256"]
            rows = clean.loc[clean["file_sha256"] == sha]
            counts = count_activity(rows.assign(_all=1), ["_all"]) if len(rows) else None
            for measure in MEASURES:
                versions.at[index, measure] = int(counts[measure].iloc[0]) if counts is not None else 0
            versions.at[index, "clean_rows"] = len(rows)
            versions.at[index, "quarantined_rows"] = int((quarantine["file_sha256"] == sha).sum())
            versions.at[index, "opted_out_rows"] += removed[sha]
        used = versions.loc[in_use]
        reconciliation = used[["raw_rows", "clean_rows", "quarantined_rows", "duplicate_rows", "opted_out_rows"]].astype(
            "int64").assign(accounted_rows=lambda f: f[["clean_rows", "quarantined_rows", "duplicate_rows",
                                                        "opted_out_rows"]].sum(axis=1),
                            quarantine_share=lambda f: f["quarantined_rows"] / f["raw_rows"].clip(lower=1))
        outcome = LayerOutcome(CLEAN, layer_partition(month, trust), rows=len(clean), metadata={
            "raw_rows_purged": True, "opted_out_rows_removed_now": sum(removed.values()),
            **{m: int(used[m].sum()) for m in MEASURES}})
        return self._prepared_clean(outcome, files, clean, quarantine, data_quality, versions, reconciliation, optouts,
                                    item_quality, findings)

    def _prepared_clean(self, outcome: LayerOutcome, files: pd.DataFrame, clean: pd.DataFrame,
                        quarantine: pd.DataFrame, data_quality: pd.DataFrame, versions: pd.DataFrame,
                        reconciliation: pd.DataFrame, optouts: OptOuts, item_quality: pd.DataFrame,
                        findings: pd.DataFrame) -> PreparedWrite:
        """A clean trust-month ready for its gate (the clean and reconciliation suites) and its write: the
        clean tables and the layer state in one transaction, with the opt-out bookkeeping."""
        month, trust = split_layer_partition(outcome.partition)
        month_start = pd.Timestamp(month_partition(month))
        files_fingerprint = self.status.trust_month_fingerprints(files).get((month, trust), "")
        key_id = self.pseudonymiser.key_id

        def write() -> None:
            self.warehouse.replace_partition(
                {"reporting_month": month, "trust_code": trust},
                {clean_activity: clean, clean_quarantine: quarantine, clean_data_quality: data_quality,
                 clean_file_versions: versions, clean_item_quality: item_quality, clean_findings: findings},
                LayerState(CLEAN, month, trust, self.status.clean_fingerprint(files_fingerprint, key_id), len(clean)),
                **self.clean_write_hooks(month, trust, optouts.files))

        return PreparedWrite(outcome, month, trust, files, checks=[
            ("clean_activity", quality.clean_expectations(CODED_COLUMNS, month_start,
                                                          month_start + pd.offsets.MonthEnd(0)), clean),
            ("clean_reconciliation", quality.reconciliation_expectations(self.settings.max_quarantine_share),
             reconciliation),
        ], write=write)

    # --- many trust-months at once ------------------------------------------------------------------------
    BATCH_ROWS = 200_000  # registered rows in memory at once (over all workers): bounds memory, whatever the month
    PARALLEL_MIN_ROWS = 100_000  # below this, starting worker processes costs more than it saves

    def build_trust_months(self, month: str, trusts: list[str], layers=TRUST_MONTH_LAYERS,
                           files: pd.DataFrame | None = None) -> dict[str, dict]:
        """Raw, clean, then data quality for the trusts of one month: {layer: {trust: LayerOutcome or the
        exception}}."""
        results: dict[str, dict] = {layer: {} for layer in layers}
        for layer, trust, result in self.iter_trust_months(month, trusts, layers, files):
            results[layer][trust] = result
        return results

    def iter_trust_months(self, month: str, trusts: list[str], layers=TRUST_MONTH_LAYERS,
                          files: pd.DataFrame | None = None) -> Iterator[tuple[str, str, object]]:
        """Raw, clean and data quality for the trusts of one month, yielding (layer, trust, LayerOutcome or
        the exception)
        batch by batch, so that the caller reports each trust-month once it is written.

        Trusts are taken in batches of about BATCH_ROWS registered rows: each batch is built, validated
        with one GX run per suite when it passes as a whole (validate_parts), and each trust-month is then
        written in its own transaction. A failing trust-month keeps its last good rows; the others go on.
        A month of more than PARALLEL_MIN_ROWS rows is built by `settings.workers` processes, a batch
        each (so both cores work, and this process reports events meanwhile); see _build_in_workers.
        """
        files = self.status.accepted_files() if files is None else files
        sizes = files.loc[files["reporting_month"] == month].groupby("trust_code")["data_rows"].sum()
        total = int(sizes.reindex(trusts).fillna(0).sum())
        workers = self.settings.workers if total > self.PARALLEL_MIN_ROWS else 1
        if multiprocessing.current_process().daemon:  # a daemonic process may not start processes
            workers = 1
        limit = self.BATCH_ROWS // workers  # the batches being built hold about BATCH_ROWS rows together
        batches, batch, rows = [], [], 0
        for trust in trusts:
            if batch and rows + int(sizes.get(trust, 0)) > limit:
                batches.append(batch)
                batch, rows = [], 0
            batch.append(trust)
            rows += int(sizes.get(trust, 0))
        batches += [batch] if batch else []
        if workers > 1 and len(batches) > 1:
            yield from self._build_in_workers(month, batches, layers, files, workers)
            return
        for batch in batches:
            yield from self._build_batch(month, batch, layers, files)

    def _build_batch(self, month: str, batch: list[str], layers, files: pd.DataFrame
                     ) -> Iterator[tuple[str, str, object]]:
        """Raw, clean and data quality for one batch of a month's trusts, in this process."""
        loaded: dict[str, PreparedWrite] = {}
        if RAW in layers:
            prepared = [self._prepare_raw(month, trust, files) for trust in batch]
            for item, result in zip(prepared, self._finish(prepared)):
                yield RAW, item.trust, result
                if not isinstance(result, Exception):
                    loaded[item.trust] = item
            batch = [t for t in batch if t in loaded]
            del prepared
        if CLEAN in layers:
            prepared, held = [], self.status.held_trust_months(files)  # once a batch, after its raw gates
            optouts = self.opted_out()
            for trust in batch:
                try:
                    prepared.append(self._prepare_clean(month, trust, files, held, loaded.pop(trust, None), optouts))
                except LayerHeld as held_error:
                    yield CLEAN, trust, held_error
            results = self._finish(prepared)
            for item, result in zip(prepared, results):
                yield CLEAN, item.trust, result
            batch = [item.trust for item, result in zip(prepared, results) if isinstance(result, LayerOutcome)]
            del prepared
        if QUALITY in layers:
            clean_states = self.warehouse.layer_states(CLEAN)
            prepared = []
            for trust in batch:
                try:
                    with stage("data quality (read and assess)"):
                        prepared.append(self._prepare_quality(month, trust, files, clean_states))
                except ValueError as not_built:  # its clean layer was never built: say so, for this one only
                    yield QUALITY, trust, LayerHeld(str(not_built))
            for item, result in zip(prepared, self._finish(prepared)):
                yield QUALITY, item.trust, result

    def _build_in_workers(self, month: str, batches: list[list[str]], layers, files: pd.DataFrame,
                          workers: int) -> Iterator[tuple[str, str, object]]:
        """Batches in worker processes (a pool kept for this process), one a worker at a time; results
        as batches finish.

        A worker writes its trust-months itself (each in its own transaction, as in one process; on
        SQLite the workers take turns at the write lock), so only outcomes come back, never rows. No
        batch waits in a queue: when one fails, or the caller stops, the batches being built are waited
        for (and, on a failure, reported) and no more start. So no worker is still writing once this
        returns, and a retry of the step never races a stale batch over the same trust-months."""
        # The summary and publication after this need GX here too: import it (3 s) while the workers work.
        threading.Thread(target=quality.import_gx, name="import-gx", daemon=True).start()
        pool = _worker_pool(workers)
        waiting, running, error = list(reversed(batches)), set(), None
        try:
            while waiting or running:
                while waiting and len(running) < workers:
                    running.add(pool.submit(_build_batch_in_worker, self.settings, self.today, self.pseudonymiser,
                                            month, waiting.pop(), tuple(layers), files))
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    results, batch_error = _worker_results(future)
                    yield from results
                    error = error or batch_error
                if error is not None:
                    waiting.clear()  # the batches being built finish and are reported; then the error
            if error is not None:
                raise error
        except BrokenProcessPool:
            _POOLS.pop(workers, None)  # a worker died (killed, out of memory): a new pool next time
            raise
        finally:
            wait(running)  # abandoned by the caller: let the batches being built finish their transactions

    def _finish(self, prepared: list[PreparedWrite]) -> list[LayerOutcome | LayerGateFailed]:
        """Validate prepared trust-months of one layer and month together, then write each that passed."""
        todo = [item for item in prepared if item.write is not None]
        for number, (suite, _, _) in enumerate(todo[0].checks if todo else []):
            # Trust-months whose suites are alike validate together (a raw suite differs by SACT version).
            alike: dict[tuple, list[PreparedWrite]] = {}
            for item in todo:
                alike.setdefault(quality.suite_key(item.checks[number][1]), []).append(item)
            documented = []
            for group in alike.values():
                with stage("GX raw, clean and data quality"):
                    outcomes = quality.validate_parts(suite, group[0].checks[number][1],
                                                      [item.checks[number][2] for item in group])
                for item, outcome in zip(group, outcomes):
                    item.outcome.suites.append(outcome)
                    documented.append((item.outcome, item.trust, outcome))
            with stage("Data Docs"):
                self.document(suite, documented)
        results: list[LayerOutcome | LayerGateFailed] = []
        for item in prepared:
            if item.write is not None:
                try:
                    self._gate(item.outcome, item.month, item.trust, item.files)
                except LayerGateFailed as failure:
                    results.append(failure)
                    continue
                with stage("load raw, clean and data quality"):
                    item.write()
            results.append(item.outcome)
        return results

    # --- summary ------------------------------------------------------------------------------------------
    def summarise(self, month: str) -> LayerOutcome:
        with stage("summarise (with its GX)"):
            return self._summarise(month)

    def _summarise(self, month: str) -> LayerOutcome:
        files = self.status.accepted_files()
        held = self.status.held_in_month(month, files)
        if held:
            raise LayerHeld(f"{month} is not re-published while trust-months of it fail their gates (the "
                            f"previous publication stands; a corrected file releases it): " + "; ".join(held))
        holding = self.mark_optouts_pending(month)
        if holding:  # never counted: re-derived first (a write that crashed, or a trust-month held by a gate)
            raise LayerHeld(f"{month} is not summarised while clean rows of {', '.join(holding)} hold patients who "
                            "opted out of registration; those trust-months are marked to be re-derived without "
                            "them (the previous publication stands)")
        versions = self.warehouse.read(clean_file_versions, reporting_month=month)
        measures = trust_measures(versions, self._clean_rows_for_counting(month, sites_sharing_trusts(versions)))
        summary = summarise_month(month, files, measures, versions, self.organisations,
                                  self.settings.deadline_months)
        outcome = LayerOutcome(SUMMARY, month, rows=len(summary), metadata={
            "trusts": len(summary),
            **{status: int((summary["submission_status"] == status).sum()) for status in ("on_time", "late",
                                                                                           "missing")},
        })
        outcome.suites.append(quality.validate_frame(
            "trust_month_summary", quality.summary_expectations(MEASURES), summary))
        self.document("trust_month_summary", [(outcome, "", outcome.suites[-1])])
        outcome.gate()
        self.warehouse.replace_partition(
            {"reporting_month": month}, {trust_month_summary: summary},
            # The content, not the inputs: the next month re-publishes only when these figures change.
            LayerState(SUMMARY, month, "", fingerprint([summary.to_csv(index=False)]), len(summary)),
        )
        return outcome

    def _clean_rows_for_counting(self, month: str, trusts: list[str]) -> pd.DataFrame:
        """The counted columns of the given trusts' clean rows (only trusts whose sites send files)."""
        columns = ["trust_code", "patient_key", "regimen", "start_date_of_regimen", "cycle_number",
                   "start_date_of_cycle"]
        query = sa.select(*(clean_activity.c[c] for c in columns)).where(
            clean_activity.c.reporting_month == month, clean_activity.c.trust_code.in_(trusts))
        with self.warehouse.engine.connect() as connection:
            return pd.read_sql(query, connection)

    # --- published ----------------------------------------------------------------------------------------
    def pack_paths(self, month: str) -> dict[str, Path]:
        """The files of a month's publication pack, by kind: csv, notes, xlsx, html, manifest."""
        base = self.settings.output_dir / month / f"sact_submissions_{month}"
        return {"csv": base.with_suffix(".csv"), "notes": base.with_name(f"{base.name}_notes.txt"),
                "xlsx": base.with_suffix(".xlsx"), "html": base.with_suffix(".html"),
                "manifest": base.with_name(f"{base.name}_manifest.json")}

    def output_paths(self, month: str) -> tuple[Path, Path]:
        """The month's CSV and notes (the contract's two files; pack_paths has the rest)."""
        paths = self.pack_paths(month)
        return paths["csv"], paths["notes"]

    def publish(self, month: str) -> LayerOutcome:
        """Disclosure-controlled table with changes from the previous month's published values."""
        with stage("publish (with its GX)"):
            return self._publish(month)

    def _publish(self, month: str) -> LayerOutcome:
        summaries = self.warehouse.read_months(trust_month_summary, [month, previous_month(month)])
        current = summaries.loc[summaries["reporting_month"] == month]
        if current.empty:
            raise ValueError(f"no trust-month summary for {month}: materialise trust_month_summary first")
        previous = summaries.loc[summaries["reporting_month"] == previous_month(month)]
        table = publish_month(current, previous if len(previous) else None)
        english = self.organisations.english_codes()
        outcome = LayerOutcome(PUBLISHED, month, rows=len(table), metadata={"organisations": len(table) - 1})
        outcome.suites.append(quality.validate_frame(
            "published_submissions", quality.published_expectations(COUNT_COLUMNS, CHANGE_COLUMNS, english), table))
        # The published months before this one: the gate's previous month and the report's history.
        history = self.warehouse.read_months(published_submissions, months_up_to(month, REPORT_MONTHS)[:-1])
        published_before = history.loc[history["reporting_month"] == previous_month(month)]
        outcome.suites.append(quality.validate_frame(
            "published_disclosure", quality.disclosure_expectations(),
            suppressed_cell_ranges(table, published_before if len(published_before) else None)))
        for suite in outcome.suites:
            self.document(suite.suite, [(outcome, "", suite)])
        outcome.gate()

        files = self.status.accepted_files()
        versions = self.warehouse.read(clean_file_versions, reporting_month=month)
        used = versions.loc[versions["in_use"] & versions["trust_code"].isin(english)].sort_values("file_name")
        paths = self.pack_paths(month)
        csv_path, notes_path = paths["csv"], paths["notes"]
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        produced_at = datetime.now().replace(microsecond=0)
        built_from = list(zip(used["file_name"], used["file_sha256"]))
        notes = notes_text(month, produced_at, [f"{n} {s}" for n, s in built_from])
        pack = {csv_path: table.to_csv(index=False, lineterminator="\n").encode("utf-8"),
                notes_path: notes.encode("utf-8"),
                paths["xlsx"]: workbook_bytes(table, notes, produced_at),
                paths["html"]: report_html(month, table, notes, history, transition=self.settings.transition).encode("utf-8")}
        pack[paths["manifest"]] = manifest(
            month, produced_at, {path.name: data for path, data in pack.items()}, built_from).encode("utf-8")
        self.swap_in(pack, lambda hook: self.warehouse.replace_partition(
            {"reporting_month": month}, {published_submissions: table},
            LayerState(PUBLISHED, month, "", self.status.month_fingerprint(month, files=files), len(table)), after=hook,
        ))
        england = table.loc[table["org_code"] == "ENGLAND"].iloc[0]
        outcome.metadata.update({"csv_path": str(csv_path), "notes_path": str(notes_path),
                                 "pack_folder": str(csv_path.parent),
                                 "pack_files": "\n".join(str(path) for path in pack),
                                 # Numbers, so the Dagster UI plots them across months; a protected cell
                                 # ('*', '[c]') is not a number and is shown as text under another key.
                                 **{f"england_{m}": int(england[m]) for m in MEASURES if england[m].isdigit()},
                                 **{f"england_{m}_protected": england[m] for m in MEASURES
                                    if not england[m].isdigit()}})
        outcome.metadata["table"] = table
        return outcome


# --- worker processes ---------------------------------------------------------------------------------------
_POOLS: dict[int, ProcessPoolExecutor] = {}
_WORKER_PIPELINES: dict[tuple, Pipeline] = {}


class WorkerTraceback(Exception):
    """Where an error happened in a worker process: its traceback, as text (code lines and the message,
    as the same error shows in one process)."""


def _worker_pool(workers: int) -> ProcessPoolExecutor:
    """One pool per process, kept between months and runs (a worker pays pandas' and GX's imports once).

    Spawned, not forked: the parent may be a Dagster process with threads. Workers that were idle for a
    while hold no database connection (_build_batch_in_worker disposes it). A pool that broke while idle
    (a worker killed between months) is replaced."""
    if workers in _POOLS and getattr(_POOLS[workers], "_broken", False):
        _POOLS.pop(workers).shutdown(wait=False, cancel_futures=True)
    if workers not in _POOLS:
        _POOLS[workers] = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    return _POOLS[workers]


def _worker_results(future) -> tuple[list, BaseException | None]:
    """A finished batch's results and unexpected error (raised from its worker's traceback); its stage
    seconds, suite runs and peak memory are added to this process's."""
    results, stages, suite_runs, error, trace, (pid, peak_mb) = future.result()
    STAGE_SECONDS.update(stages)
    quality.RUNS["count"] += suite_runs
    WORKER_PEAK_MB[pid] = max(WORKER_PEAK_MB.get(pid, 0.0), peak_mb)
    if error is not None:
        error.__cause__ = WorkerTraceback(f"in worker process {pid}:\n{trace}")
    return results, error


def _build_batch_in_worker(settings: Settings, today: date, pseudonymiser, month: str, batch: list[str],
                           layers: tuple[str, ...], files: pd.DataFrame):
    """A batch of trust-months in a worker: (results, seconds per stage, suite runs, unexpected error,
    its traceback, (pid, peak resident MB)).

    The pseudonymiser comes from the parent (over the pool's pipe, never logged), so a worker can never
    pseudonymise with another key than the run's. An unexpected error is returned after the results
    before it, so the parent still reports the trust-months that were written; one that would not
    survive pickling is sent as a RuntimeError naming its type (an unpicklable result breaks the pool)."""
    key = (settings, today, pseudonymiser.key_id)
    if key not in _WORKER_PIPELINES:
        _WORKER_PIPELINES.clear()  # one run's settings and key at a time: keep no earlier key
        pipeline = _WORKER_PIPELINES[key] = Pipeline(settings, today=today)
        pipeline.__dict__["pseudonymiser"] = pseudonymiser  # the cached_property, given rather than loaded
    pipeline = _WORKER_PIPELINES[key]
    STAGE_SECONDS.clear()
    runs_before = quality.RUNS["count"]
    results, error, trace = [], None, ""
    try:
        for result in pipeline._build_batch(month, batch, layers, files):
            results.append(result)
    except Exception as unexpected:  # noqa: BLE001 - re-raised by the parent after the results before it
        error, trace = unexpected, traceback.format_exc()
        if isinstance(error, sa.exc.StatementError):
            error.params = None  # the rows it was writing (hidden from its message): not sent to the parent
        try:
            pickle.loads(pickle.dumps(error))
        except Exception:  # noqa: BLE001
            error = RuntimeError(f"{type(unexpected).__name__}: {unexpected}")
    finally:
        pipeline.warehouse.dispose()  # no idle connection between batches (a database may be dropped)
    return (results, dict(STAGE_SECONDS), quality.RUNS["count"] - runs_before, error, trace,
            (os.getpid(), _peak_resident_mb()))


def _peak_resident_mb() -> float:
    """This process's peak resident memory: VmHWM, which (unlike ru_maxrss) a spawned process does not
    inherit from its parent. 0 where /proc is not there."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return 0.0
    return next((int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmHWM:")), 0.0)
