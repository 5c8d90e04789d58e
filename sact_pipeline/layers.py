"""The pipeline's layers, composed: each step builds the rows a layer is about to publish, validates them
with the layer's GX suites, and only when every suite passes swaps them into the live tables in one
transaction (write-audit-publish per partition). A failing suite raises LayerGateFailed and the live
tables keep their last good rows. Dagster assets are thin wrappers around these objects, so the same
work runs (and is tested) without Dagster.

Where each concern lives:
    context.py        settings, warehouse, organisations, key, Data Docs, write-audit-publish
    state.py          what each layer was built from; what is behind (affected) and held
    discovery.py      the landing zone: new file versions registered or rejected
    raw_layer.py      raw    clean_layer.py  clean     assessment.py  data quality
    trust_months.py   raw, clean and data quality of a month's trusts together (batches, workers)
    publishing.py     the month's summary and publication
    protection.py     opt-outs, the pseudonymisation key, raw retention
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from sact_pipeline.assessment import DataQualityLayer
from sact_pipeline.clean_layer import CleanLayer
from sact_pipeline.context import PipelineContext, UsesContext
from sact_pipeline.discovery import Discovery, LandingZone
from sact_pipeline.gating import (  # noqa: F401 - the outcomes a caller of the layers handles
    LayerGateFailed,
    LayerHeld,
    LayerOutcome,
)
from sact_pipeline.protection import DataProtection
from sact_pipeline.publishing import MonthPublication
from sact_pipeline.raw_layer import RawLayer
from sact_pipeline.settings import Settings
from sact_pipeline.state import CLEAN, PUBLISHED, QUALITY, RAW, SUMMARY  # noqa: F401 - layer names
from sact_pipeline.trust_months import TRUST_MONTH_LAYERS, TrustMonthBuilder

class Pipeline(UsesContext):
    """The layers of one settings, and the operations runs and the command line call. One per run under
    Dagster (sact_pipeline.resources), one per command on the command line, shared by its runs."""

    def __init__(self, settings: Settings, *, today: date | None = None, pseudonymiser=None):
        super().__init__(PipelineContext(settings, today=today, pseudonymiser=pseudonymiser))
        context = self.context
        self.protection = DataProtection(context)
        self.landing = LandingZone(context, self.protection)
        self.raw = RawLayer(context)
        self.cleaning = CleanLayer(context, self.protection)
        self.assessment = DataQualityLayer(context)
        self.trust_months = TrustMonthBuilder(context, self.raw, self.cleaning, self.assessment, self.protection)
        self.publication = MonthPublication(context, self.protection)

    def dispose(self) -> None:
        """Stop its worker processes and close its connections: the run or command is over."""
        self.trust_months.close()
        self.context.dispose()

    # --- what runs call (the objects above hold the rest) -------------------------------------------------
    def check_key(self) -> None:
        self.protection.check_key()

    def discover(self, *, check_key: bool = True) -> Discovery:
        return self.landing.discover(check_key=check_key)

    def load_raw(self, month: str, trust: str) -> LayerOutcome:
        return self.raw.load(month, trust)

    def clean(self, month: str, trust: str) -> LayerOutcome:
        return self.cleaning.clean(month, trust)

    def assess_quality(self, month: str, trust: str) -> LayerOutcome:
        return self.assessment.assess_quality(month, trust)

    def build_trust_months(self, month: str, trusts: list[str], layers=TRUST_MONTH_LAYERS, files=None) -> dict:
        return self.trust_months.build_trust_months(month, trusts, layers, files)

    def iter_trust_months(self, month: str, trusts: list[str], layers=TRUST_MONTH_LAYERS, files=None):
        return self.trust_months.iter_trust_months(month, trusts, layers, files)

    def summarise(self, month: str) -> LayerOutcome:
        return self.publication.summarise(month)

    def publish(self, month: str) -> LayerOutcome:
        return self.publication.publish(month)

    def report_quality(self, month: str) -> LayerOutcome:
        return self.assessment.report_quality(month)

    def build_data_docs(self) -> Path:
        return self.context.build_data_docs()

    def recover_interrupted_writes(self) -> list[str]:
        return self.context.recover_interrupted_writes()

    # --- where the outputs are ------------------------------------------------------------------------------
    def output_paths(self, month: str) -> tuple[Path, Path]:
        return self.publication.output_paths(month)

    def pack_paths(self, month: str) -> dict[str, Path]:
        return self.publication.pack_paths(month)

    def feedback_path(self, month: str, trust: str) -> Path:
        return self.assessment.feedback_path(month, trust)

    def quality_report_paths(self, month: str) -> dict[str, Path]:
        return self.assessment.quality_report_paths(month)
