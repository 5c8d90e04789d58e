"""The month layers: the trust-month summary (counts, timeliness, resubmission changes) and the
publication (disclosure control, changes from published values, ENGLAND row, acknowledgement), each
behind its GX suites, the publication pack swapped in with the warehouse write (crash-safe)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sact_pipeline import quality, suites
from sact_pipeline.context import PipelineContext, UsesContext
from sact_pipeline.domain.counting import MEASURES, SUBMISSION_STATUSES, months_up_to, previous_month
from sact_pipeline.domain.pack import manifest, workbook_bytes
from sact_pipeline.domain.publication import (
    CHANGE_COLUMNS,
    COUNT_COLUMNS,
    deadline_text,
    notes_text,
    publish_month,
    suppressed_cell_ranges,
)
from sact_pipeline.domain.report import REPORT_MONTHS, report_html
from sact_pipeline.domain.summary import HELD, UNUSABLE, sites_sharing_trusts, summarise_month, trust_measures
from sact_pipeline.gating import LayerHeld, LayerOutcome, fingerprint
from sact_pipeline.protection import DataProtection
from sact_pipeline.state import PUBLISHED, SUMMARY
from sact_pipeline.warehouse import LayerState
from sact_pipeline.tables import clean_file_versions, published_submissions, trust_month_summary


class MonthPublication(UsesContext):
    """Summarises and publishes a month from the clean layer of its trusts."""

    def __init__(self, context: PipelineContext, protection: DataProtection):
        super().__init__(context)
        self.protection = protection

    def summarise(self, month: str) -> LayerOutcome:
        with self.measurements.stage("summarise (with its GX)"):
            return self._summarise(month)

    def _summarise(self, month: str) -> LayerOutcome:
        files = self.status.accepted_files()
        held = {trust: reason for (m, trust), reason in self.status.held_trust_months(files).items() if m == month}
        holding = self.protection.mark_optouts_pending(month)
        waiting = sorted(set(holding) - set(held))
        if waiting:  # never counted: re-derived first (a write that crashed); the planner re-derives them
            raise LayerHeld(f"{month} is not summarised while clean rows of {', '.join(waiting)} hold patients who "
                            "opted out of registration; those trust-months are marked to be re-derived without "
                            "them (the previous publication stands)")
        # A held trust-month cannot be re-derived without them until a corrected file arrives: unusable now.
        optouts_held = {trust: f"{held[trust]}; and its last good rows hold patients who opted out of "
                               "registration, so they are not counted" for trust in holding}
        versions = self.warehouse.read(clean_file_versions, reporting_month=month)
        versions = versions.loc[~versions["trust_code"].isin(optouts_held)]
        measures = trust_measures(versions, self.warehouse.clean_rows_for_counting(month, sites_sharing_trusts(versions)))
        summary = summarise_month(month, files, measures, versions, self.organisations,
                                  self.settings.deadline_months, as_of=self.today, held={**held, **optouts_held})
        outcome = LayerOutcome(SUMMARY, month, rows=len(summary), metadata={
            "trusts": len(summary), "month_status": str(summary["month_status"].iloc[0]) if len(summary) else "",
            **{status: int((summary["submission_status"] == status).sum()) for status in SUBMISSION_STATUSES},
            **{status: int((summary["data_status"] == status).sum()) for status in (HELD, UNUSABLE)},
        })
        outcome.suites.append(quality.validate_frame(
            suites.TRUST_MONTH_SUMMARY.name, suites.summary_expectations(MEASURES), summary,
            measurements=self.measurements))
        self.context.document(suites.TRUST_MONTH_SUMMARY.name, [(outcome, "", outcome.suites[-1])])
        outcome.gate()
        self.warehouse.replace_partition(
            {"reporting_month": month}, {trust_month_summary: summary},
            # The content, not the inputs: the next month re-publishes only when these figures change.
            LayerState(SUMMARY, month, "", fingerprint([summary.to_csv(index=False)]), len(summary)),
        )
        return outcome

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
        with self.measurements.stage("publish (with its GX)"):
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
            suites.PUBLISHED_SUBMISSIONS.name, suites.published_expectations(COUNT_COLUMNS, CHANGE_COLUMNS, english),
            table, measurements=self.measurements))
        # The published months before this one: the gate's previous month and the report's history.
        history = self.warehouse.read_months(published_submissions, months_up_to(month, REPORT_MONTHS)[:-1])
        published_before = history.loc[history["reporting_month"] == previous_month(month)]
        outcome.suites.append(quality.validate_frame(
            suites.PUBLISHED_DISCLOSURE.name, suites.disclosure_expectations(),
            suppressed_cell_ranges(table, published_before if len(published_before) else None),
            measurements=self.measurements))
        for suite in outcome.suites:
            self.context.document(suite.suite, [(outcome, "", suite)])
        outcome.gate()

        files = self.status.accepted_files()
        versions = self.warehouse.read(clean_file_versions, reporting_month=month)
        used = versions.loc[versions["in_use"] & versions["trust_code"].isin(english)].sort_values("file_name")
        paths = self.pack_paths(month)
        csv_path, notes_path = paths["csv"], paths["notes"]
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        produced_at = datetime.now().replace(microsecond=0)
        built_from = list(zip(used["file_name"], used["file_sha256"]))
        status = str(table["month_status"].iloc[-1])
        notes = notes_text(month, produced_at, [f"{n} {s}" for n, s in built_from], month_status=status,
                           deadline_months=self.settings.deadline_months)
        not_used = current.loc[current["is_english"] & current["data_status"].isin([HELD, UNUSABLE]),
                               ["org_code", "org_name", "data_status", "data_status_reason"]]
        pack = {csv_path: table.to_csv(index=False, lineterminator="\n").encode("utf-8"),
                notes_path: notes.encode("utf-8"),
                paths["xlsx"]: workbook_bytes(table, notes, produced_at),
                paths["html"]: report_html(month, table, notes, history, transition=self.settings.transition,
                                             not_used=not_used, deadline=deadline_text(month, self.settings.deadline_months)
                                             ).encode("utf-8")}
        pack[paths["manifest"]] = manifest(
            month, produced_at, {path.name: data for path, data in pack.items()}, built_from).encode("utf-8")
        self.context.swap_in(pack, lambda hook: self.warehouse.replace_partition(
            {"reporting_month": month}, {published_submissions: table},
            LayerState(PUBLISHED, month, "", self.status.month_fingerprint(month, files=files), len(table)), after=hook,
        ))
        england = table.loc[table["org_code"] == "ENGLAND"].iloc[0]
        outcome.metadata.update({"month_status": status,
                                 **{f"{kind}_trusts": ", ".join(not_used.loc[not_used["data_status"] == kind, "org_code"])
                                    for kind in (HELD, UNUSABLE) if (not_used["data_status"] == kind).any()},
                                 "csv_path": str(csv_path), "notes_path": str(notes_path),
                                 "pack_folder": str(csv_path.parent),
                                 "pack_files": "\n".join(str(path) for path in pack),
                                 # Numbers, so the Dagster UI plots them across months; a protected cell
                                 # ('*', '[c]') is not a number and is shown as text under another key.
                                 **{f"england_{m}": int(england[m]) for m in MEASURES if england[m].isdigit()},
                                 **{f"england_{m}_protected": england[m] for m in MEASURES
                                    if not england[m].isdigit()}})
        outcome.metadata["table"] = table
        return outcome
