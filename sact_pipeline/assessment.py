"""The data-quality layer, built from the clean layer and gated like every layer (internal: never published).

Per trust-month: how complete and valid each SACT item is, the overall score, what was quarantined and
why, and the feedback file a trust fixes its extract from ($SACT_OUTPUT_DIR/<YYYY-MM>/feedback/
<TRUST>_<YYYY-MM>.csv: file name, row number, item, finding; no value of any row). Per month: the table
across submitting organisations, the score trend over 13 months and the internal HTML report, under
$SACT_OUTPUT_DIR/data_quality/<YYYY-MM>/. The measures themselves are domain.data_quality.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pandas as pd

from sact_pipeline import quality, suites
from sact_pipeline.domain.counting import months_up_to
from sact_pipeline.domain.data_quality import (
    assess_trust_month,
    assessed_rows,
    feedback_rows,
    findings_by_reason,
    pooled_items,
)
from sact_pipeline.domain.quality_report import quality_report_html
from sact_pipeline.domain.report import REPORT_MONTHS
from sact_pipeline.domain.spec import SACT
from sact_pipeline.partitions import layer_partition
from sact_pipeline.context import UsesContext
from sact_pipeline.gating import LayerHeld, LayerOutcome, PreparedWrite, raise_failure
from sact_pipeline.state import CLEAN, QUALITY, QUALITY_REPORT  # noqa: F401 - QUALITY: for readers
from sact_pipeline.warehouse import LayerState
from sact_pipeline.tables import (
    clean_file_versions,
    clean_findings,
    clean_item_quality,
    quality_findings,
    quality_items,
    quality_trust_months,
    trust_month_summary,
)

# What a trust-month's item measures may be named: every item of every version, and the groups scored as one.
ITEM_HEADERS = tuple(sorted({i.header(v.name) for v in SACT.versions.values() for i in v.items}
                            | {m.label for v in SACT.versions.values() for m in v.group_measures}))


class DataQualityLayer(UsesContext):
    """The data-quality layer per trust-month and per month."""

    def feedback_path(self, month: str, trust: str) -> Path:
        return self.settings.output_dir / month / "feedback" / f"{trust}_{month}.csv"

    def quality_report_paths(self, month: str) -> dict[str, Path]:
        """The month's internal data-quality report: html, table (one row per trust) and trend (13 months)."""
        folder = self.settings.output_dir / "data_quality" / month
        return {"html": folder / f"data_quality_{month}.html", "table": folder / f"data_quality_{month}.csv",
                "trend": folder / f"data_quality_trend_{month}.csv"}

    # --- per trust-month ----------------------------------------------------------------------------------
    def assess_quality(self, month: str, trust: str) -> LayerOutcome:
        """Assess one trust-month from its clean layer: items, score, findings by reason, feedback file."""
        return raise_failure(self.context.audit_and_write([self.prepare(month, trust, self.status.accepted_files())])[0])

    def prepare(self, month: str, trust: str, files: pd.DataFrame, clean_states: dict | None = None
                         ) -> PreparedWrite:
        where = {"reporting_month": month, "trust_code": trust}
        clean_states = self.warehouse.layer_states(CLEAN) if clean_states is None else clean_states
        state = clean_states.get((month, trust))
        if state is None:
            raise ValueError(f"the clean layer holds nothing for {trust} {month}: materialise clean_activity first")
        item_quality = self.warehouse.read(clean_item_quality, **where)
        this_partition = files.loc[(files["reporting_month"] == month) & (files["trust_code"] == trust)]
        if item_quality.empty and (month, trust) in self.warehouse.purged_trust_months():
            message = (f"{trust} {month}: its raw rows were purged before data quality was measured, so it "
                       "cannot be assessed (until a new file version arrives)")
            self.warehouse.record_gate_failure(QUALITY, month, trust, self.status.trust_month_fingerprints(
                this_partition).get((month, trust), ""), message)
            raise LayerHeld(message)
        if item_quality.empty:
            raise ValueError(f"the clean layer of {trust} {month} was built before data quality was measured: "
                             "materialise clean_activity for it again")
        findings = self.warehouse.read(clean_findings, **where)
        versions = self.warehouse.read(clean_file_versions, **where)
        assessment = assess_trust_month(item_quality, findings, versions.loc[versions["in_use"]])
        items = assessment.items.assign(**where)
        path = self.feedback_path(month, trust)
        record = {**where, **assessment.record, "feedback_file": str(path.relative_to(self.settings.output_dir)),
                  "assessed_at": datetime.now().replace(microsecond=0)}
        by_reason = assessment.by_reason.assign(**where)
        outcome = LayerOutcome(QUALITY, layer_partition(month, trust), rows=len(items), metadata={
            # Numbers (the score only where rows were assessed), so the Dagster UI plots them across partitions.
            **({"score": round(record["score"], 2)} if record["score"] is not None else {}),
            **({"core_score": round(record["core_score"], 2)} if record["core_score"] is not None else {}),
            "sact_version": record["sact_version"],
            **{key: record[key] for key in ("assessed_rows", "quarantined_rows", "duplicate_rows", "invalid_values",
                                            "out_of_month_rows", "other_trust_provider_rows", "feedback_rows")},
            "quarantined_share": round(record["quarantined_share"], 4),
            "feedback_path": str(path),
        })
        if len(by_reason):
            outcome.metadata["table"] = by_reason[["kind", "item", "finding", "rows"]]
        feedback = feedback_rows(findings).to_csv(index=False, lineterminator="\n").encode("utf-8")

        def write() -> None:
            self.context.swap_in({path: feedback}, lambda hook: self.warehouse.replace_partition(
                where, {quality_items: items, quality_trust_months: pd.DataFrame([record]),
                        quality_findings: by_reason},
                LayerState(QUALITY, month, trust, state, len(items)), after=hook))

        return PreparedWrite(outcome, month, trust, this_partition, checks=[
            (suites.TRUST_MONTH_DATA_QUALITY.name, suites.data_quality_expectations(ITEM_HEADERS),
             items.assign(assessed_rows=items["sact_version"].map(assessed_rows(items)))),
        ], write=write)

    # --- per month ----------------------------------------------------------------------------------------
    def report_quality(self, month: str) -> LayerOutcome:
        """The month's data-quality table across organisations, its 13-month trend and the HTML report."""
        months = months_up_to(month, REPORT_MONTHS)
        assessed = self.warehouse.read_months(quality_trust_months, months)
        current = assessed.loc[assessed["reporting_month"] == month].sort_values("trust_code")
        report_inputs = self.status.quality_report_fingerprint(month)
        if current.empty:  # nothing assessed (no file, or raw purged before data quality was measured)
            self.warehouse.replace_partition({"reporting_month": month, "trust_code": ""}, {},
                                             LayerState(QUALITY_REPORT, month, "", report_inputs, 0))
            return LayerOutcome(QUALITY_REPORT, month, rows=0, skipped=True,
                                metadata={"note": "no trust-month of the month has a data-quality assessment"})
        paths = self.quality_report_paths(month)
        names = {o.code: o.name for o in self.organisations}
        table = pd.DataFrame({
            "reporting_month": month, "org_code": current["trust_code"].to_numpy(),
            "org_name": current["trust_code"].map(names).fillna("").to_numpy(),
            # score: over the items of the trust-month's own SACT version; core_score: over the items both
            # versions score (the trend's, comparable across a switch)
            "sact_version": current["sact_version"].to_numpy(), "score": current["score"].round(2).to_numpy(),
            "core_score": current["core_score"].round(2).to_numpy(),
            "rows": current["assessed_rows"].to_numpy(),
            **{c: current[c].to_numpy() for c in ("assessed_rows", "clean_rows", "quarantined_rows",
                                                 "quarantined_share", "duplicate_rows", "invalid_values",
                                                 "out_of_month_rows", "other_trust_provider_rows", "feedback_rows")},
            "feedback_file": [os.path.relpath(self.settings.output_dir / f, paths["html"].parent).replace(os.sep, "/")
                              for f in current["feedback_file"]],
        })
        # As published: a held trust is assessed on its last good version; an unusable one is listed apart.
        summary = self.warehouse.read(trust_month_summary, reporting_month=month)
        statuses = dict(zip(summary["org_code"], summary["data_status"])) if len(summary) else {}
        table["data_status"] = [s if isinstance(s := statuses.get(code), str) and s else "ok" for code in table["org_code"]]
        not_used = summary.loc[summary["data_status"].isin(["held", "unusable"]),
                               ["org_code", "org_name", "data_status", "data_status_reason"]] if len(summary) else None
        outcome = LayerOutcome(QUALITY_REPORT, month, rows=len(table))
        outcome.suites.append(quality.validate_frame(
            suites.DATA_QUALITY_MONTH.name, suites.data_quality_month_expectations(),
            table.assign(accounted_rows=table["clean_rows"] + table["quarantined_rows"]),
            measurements=self.measurements))
        self.context.document(suites.DATA_QUALITY_MONTH.name, [(outcome, "", outcome.suites[-1])])
        outcome.gate()

        trend = assessed.rename(columns={"trust_code": "org_code"})[
            ["org_code", "reporting_month", "core_score", "sact_version"]]
        items = pooled_items(self.warehouse.read(quality_items, reporting_month=month))
        findings = self.warehouse.read(quality_findings, reporting_month=month)
        findings = (findings.groupby(["kind", "item", "finding"], as_index=False)["rows"].sum()
                    if len(findings) else findings_by_reason(findings))
        # The trend file holds the core score, as the report's trend does (a switch of version is no jump).
        wide = (trend.astype({"core_score": "float64"})
                .pivot_table(index="org_code", columns="reporting_month", values="core_score", aggfunc="last")
                .reindex(columns=months).round(2))
        wide.insert(0, "org_name", wide.index.map(names).fillna(""))
        data_docs = os.path.relpath(self.data_docs.site_dir / "index.html", paths["html"].parent).replace(os.sep, "/")
        files = {
            paths["html"]: quality_report_html(month, table, trend, items, findings, data_docs,
                                               self.settings.transition, not_used).encode("utf-8"),
            paths["table"]: table.drop(columns="rows").round({"quarantined_share": 4})
                                 .to_csv(index=False, lineterminator="\n").encode("utf-8"),
            paths["trend"]: wide.reset_index().to_csv(index=False, lineterminator="\n").encode("utf-8"),
        }
        self.context.swap_in(files, lambda hook: self.warehouse.replace_partition(
            {"reporting_month": month, "trust_code": ""}, {},
            LayerState(QUALITY_REPORT, month, "", report_inputs, len(table)), after=hook))
        scores = table["score"].dropna()
        outcome.metadata.update({
            "trusts": len(table), "report_path": str(paths["html"]), "table_path": str(paths["table"]),
            **({"median_score": round(float(scores.median()), 2), "lowest_score": round(float(scores.min()), 2)}
               if len(scores) else {}),
            "quarantined_rows": int(table["quarantined_rows"].sum()),
        })
        outcome.metadata["table"] = table[["org_code", "score", "assessed_rows", "quarantined_rows", "invalid_values"]]
        return outcome
