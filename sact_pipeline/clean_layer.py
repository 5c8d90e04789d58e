"""The clean layer: typed, validated, pseudonymised activity of each trust-month's file in use (per
submitting organisation), its quarantine with reasons, findings per item and counts per file version.

The rules themselves are the domain core's (domain.cleaning); this module reads the raw rows, applies
the opt-outs registered, and writes what passed the clean and reconciliation suites.
"""

from __future__ import annotations

from collections import Counter

import pandas as pd

from sact_pipeline import suites
from sact_pipeline.context import PipelineContext, UsesContext
from sact_pipeline.domain.cleaning import CODED_COLUMNS, clean_submission
from sact_pipeline.domain.counting import MEASURES, count_activity
from sact_pipeline.gating import LayerHeld, LayerOutcome, PreparedWrite, raise_failure
from sact_pipeline.partitions import layer_partition, month_partition, split_layer_partition
from sact_pipeline.protection import NO_OPTOUTS, DataProtection, OptOuts
from sact_pipeline.state import CLEAN, RAW
from sact_pipeline.warehouse import LayerState
from sact_pipeline.tables import (
    clean_activity,
    clean_data_quality,
    clean_file_versions,
    clean_findings,
    clean_item_quality,
    clean_quarantine,
    raw_submissions,
)


class CleanLayer(UsesContext):
    """Cleans a trust-month from its raw rows; opt-outs come from data protection."""

    def __init__(self, context: PipelineContext, protection: DataProtection):
        super().__init__(context)
        self.protection = protection

    def clean(self, month: str, trust: str) -> LayerOutcome:
        """Clean every raw version of a trust-month; the latest version from each submitting organisation
        (the trust, or each of its sites) becomes the trust's clean data."""
        return raise_failure(self.context.audit_and_write([self.prepare(month, trust, self.status.accepted_files(),
                                                                optouts=self.protection.opted_out())])[0])

    def prepare(self, month: str, trust: str, files: pd.DataFrame,
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
            with self.measurements.stage("read raw back"):
                raw = self.warehouse.read(raw_submissions, reporting_month=month, trust_code=trust)
        if raw.empty and (month, trust) in self.warehouse.purged_trust_months():
            return self._prepare_purged(month, trust, this_partition, optouts)
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
        version_rows, reconciliation, chosen = self._clean_versions(month, trust, raw, versions, in_use, optouts)
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
        return self._prepared(outcome, this_partition, clean, quarantine, data_quality,
                                    pd.DataFrame(version_rows), pd.DataFrame(reconciliation), optouts,
                                    item_quality, findings)

    def _clean_versions(self, month: str, trust: str, raw: pd.DataFrame, versions: pd.DataFrame,
                        in_use: set[tuple[str, str]], optouts: OptOuts) -> tuple[list, list, list]:
        """Clean each raw version: (a row of counts per version, the reconciliation of those in use, and
        (sha256, file name, cleaned) of those in use). Earlier versions are counted for the record only."""
        pseudonymiser = self.pseudonymiser
        version_rows, reconciliation, chosen = [], [], []
        for version in versions.itertuples(index=False):
            key = (version.file_name, version.file_sha256)
            rows = raw.loc[(raw["file_name"] == key[0]) & (raw["file_sha256"] == key[1])].sort_values("row_number")
            with self.measurements.stage("clean and pseudonymise"):
                cleaned = clean_submission(rows, trust_code=trust, submitted_at=version.submitted_at.to_pydatetime(),
                                           pseudonymiser=pseudonymiser, opted_out=optouts.keys,
                                           reporting_month=month, trust_of=self.context.trust_of_provider,
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
        return version_rows, reconciliation, chosen

    def _prepare_purged(self, month: str, trust: str, files: pd.DataFrame,
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
        return self._prepared(outcome, files, clean, quarantine, data_quality, versions, reconciliation, optouts,
                                    item_quality, findings)

    def _prepared(self, outcome: LayerOutcome, files: pd.DataFrame, clean: pd.DataFrame,
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
                **self.protection.clean_write_hooks(month, trust, optouts.files))

        return PreparedWrite(outcome, month, trust, files, checks=[
            (suites.CLEAN_ACTIVITY.name, suites.clean_expectations(CODED_COLUMNS, month_start,
                                                                   month_start + pd.offsets.MonthEnd(0)), clean),
            (suites.CLEAN_RECONCILIATION.name, suites.reconciliation_expectations(self.settings.max_quarantine_share),
             reconciliation),
        ], write=write)
