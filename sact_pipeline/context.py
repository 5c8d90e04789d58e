"""What every layer works with: settings, warehouse, organisations, pseudonymisation key, Data Docs, the
pipeline's state questions, and the write-audit-publish step they share.

One PipelineContext per pipeline: one per Dagster run, one per command-line command (its in-process
runs share it: a refresh makes dozens, and each would otherwise connect afresh); each concern (raw, clean, data quality, publication, data protection) is an
object of its own that holds the context (sact_pipeline.layers composes them).
"""

from __future__ import annotations

from collections import Counter
from datetime import date
from functools import cached_property
from pathlib import Path

import pandas as pd

from sact_pipeline import quality
from sact_pipeline.data_docs import DataDocs
from sact_pipeline.domain.organisations import OrganisationRegister
from sact_pipeline.gating import LayerGateFailed, LayerOutcome, PreparedWrite, recover_swaps, swap_in
from sact_pipeline.keys import load_pseudonymiser
from sact_pipeline.measurements import Measurements
from sact_pipeline.settings import Settings
from sact_pipeline.state import PipelineStatus
from sact_pipeline.warehouse import Warehouse


class PipelineContext:
    """Settings and the outside systems, opened when first used. `pseudonymiser`: given by a worker
    process's parent (never loaded there: a worker can never pseudonymise with another key)."""

    def __init__(self, settings: Settings, *, today: date | None = None, pseudonymiser=None):
        self.settings = settings
        self.today = today or date.today()
        self._pseudonymiser = pseudonymiser
        self.measurements = Measurements()  # seconds per stage and suite runs, for the benchmark

    @cached_property
    def warehouse(self) -> Warehouse:
        return Warehouse(self.settings.warehouse_url)

    @cached_property
    def organisations(self) -> OrganisationRegister:
        return OrganisationRegister.from_ods_etr(self.settings.ods_file)

    @cached_property
    def pseudonymiser(self):
        return self._pseudonymiser or load_pseudonymiser(self.settings.home)

    @cached_property
    def status(self) -> PipelineStatus:
        """What each layer was built from, what is behind and what is held (sact_pipeline.state)."""
        return PipelineStatus(self.settings, self.warehouse, self.organisations, lambda: self.pseudonymiser.key_id,
                              today=self.today)

    @cached_property
    def data_docs(self) -> DataDocs:
        """GX Data Docs of every suite run: the site under $SACT_OUTPUT_DIR/data_docs, its store in SACT_HOME."""
        return DataDocs(self.settings.output_dir / "data_docs", self.settings.home / "data_docs_store")

    def dispose(self) -> None:
        """Close the warehouse's pooled connections, if it was opened (a cached_property lives in __dict__)."""
        if "warehouse" in self.__dict__:
            self.warehouse.dispose()

    def trust_of_provider(self, code: str) -> str | None:
        """The trust a provider code belongs to (a trust's own code, or a site's), None if ODS does not know it."""
        organisation = self.organisations.resolve_trust(code)
        return organisation.code if organisation is not None else None

    # --- publishing what passed -----------------------------------------------------------------------------
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

    def build_data_docs(self) -> Path:
        """Render the Data Docs of the suite runs recorded since the last build (after each step)."""
        with self.measurements.stage("Data Docs"):
            return self.data_docs.build()

    def swap_in(self, files: dict[Path, bytes], write) -> None:
        """Publish files with the warehouse write `write(hook)` (which runs hook in its transaction), so a
        crash at any point leaves both old or both new (gating.swap_in)."""
        swap_in(files, write, journal_dir=self.settings.home / "file_swaps", ledger=self.warehouse)

    def recover_interrupted_writes(self) -> list[str]:
        """Finish or roll back the file swaps of processes that died mid-way; one line for each."""
        return recover_swaps(self.settings.home / "file_swaps", self.warehouse)

    def gate(self, outcome: LayerOutcome, month: str, trust: str, files: pd.DataFrame) -> None:
        """outcome.gate(), recording a failure against the trust-month's current file versions."""
        if outcome.success:
            return
        inputs = self.status.trust_month_fingerprints(files).get((month, trust), "")
        self.warehouse.record_gate_failure(outcome.layer, month, trust, inputs, outcome.failures())
        outcome.gate()

    def audit_and_write(self, prepared: list[PreparedWrite]) -> list[LayerOutcome | LayerGateFailed]:
        """Write-audit-publish for prepared trust-months of one layer and month: validate them together,
        then write each that passed (a failure keeps that trust-month's last good rows)."""
        todo = [item for item in prepared if item.write is not None]
        for number, (suite, _, _) in enumerate(todo[0].checks if todo else []):
            # Trust-months whose suites are alike validate together (a raw suite differs by SACT version).
            alike: dict[tuple, list[PreparedWrite]] = {}
            for item in todo:
                alike.setdefault(quality.suite_key(item.checks[number][1]), []).append(item)
            documented = []
            for group in alike.values():
                with self.measurements.stage("GX raw, clean and data quality"):
                    outcomes = quality.validate_parts(suite, group[0].checks[number][1],
                                                      [item.checks[number][2] for item in group],
                                                      measurements=self.measurements)
                for item, outcome in zip(group, outcomes):
                    item.outcome.suites.append(outcome)
                    documented.append((item.outcome, item.trust, outcome))
            with self.measurements.stage("Data Docs"):
                self.document(suite, documented)
        results: list[LayerOutcome | LayerGateFailed] = []
        for item in prepared:
            if item.write is not None:
                try:
                    self.gate(item.outcome, item.month, item.trust, item.files)
                except LayerGateFailed as failure:
                    results.append(failure)
                    continue
                with self.measurements.stage("load raw, clean and data quality"):
                    item.write()
            results.append(item.outcome)
        return results


class UsesContext:
    """A concern of the pipeline: reads the context's settings and systems as its own attributes."""

    def __init__(self, context: PipelineContext):
        self.context = context

    settings = property(lambda self: self.context.settings)
    today = property(lambda self: self.context.today)
    warehouse = property(lambda self: self.context.warehouse)
    organisations = property(lambda self: self.context.organisations)
    pseudonymiser = property(lambda self: self.context.pseudonymiser)
    status = property(lambda self: self.context.status)
    data_docs = property(lambda self: self.context.data_docs)
    measurements = property(lambda self: self.context.measurements)
