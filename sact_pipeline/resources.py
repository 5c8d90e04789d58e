"""The Dagster resource that gives assets, sensors and schedules the pipeline for the configured settings.

Under the daemon and the UI, the resource makes the pipeline on first use and closes it when the run (or
the sensor tick) ends: one per run, no process-wide cache. The command line hands its own pipeline in
(GivenPipeline), so that every run of a refresh shares its connections, ODS register and key.
"""

import os

from dagster import ConfigurableResource, EnvVar, InitResourceContext, ResourceDefinition
from pydantic import PrivateAttr

from sact_pipeline.layers import Pipeline
from sact_pipeline.settings import Settings


class SactPipelineResource(ConfigurableResource):
    """Where the pipeline reads and writes. The pseudonymisation key is not here: it is read from the
    environment at run time so it never appears in resource or run config."""

    home: str
    landing_dir: str
    output_dir: str
    warehouse_url: str
    first_month: str
    deadline_months: int
    max_quarantine_share: float
    ods_file: str = ""
    workers: int = 0  # as the definitions were loaded with (SACT_WORKERS); 0: the default where the run runs
    optout_dir: str = ""  # registration opt-out files (SACT_OPTOUT_DIR); '' : SACT_HOME/optouts
    v4_first_month: str = ""  # SACT_V4_FIRST_MONTH; '': the default (the clean fingerprint holds both months,
    v4_only_month: str = ""  # SACT_V4_ONLY_FROM     so the CLI and Dagster must agree on them)
    _pipeline: Pipeline | None = PrivateAttr(default=None)

    def pipeline(self) -> Pipeline:
        """The pipeline of these settings, made on first use (a run's steps, or a sensor tick, share it)."""
        if self._pipeline is None:
            self._pipeline = Pipeline(self.settings())
        return self._pipeline

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._pipeline is not None:
            self._pipeline.dispose()

    def settings(self) -> Settings:
        return Settings.from_env(env={}, home=self.home, landing_dir=self.landing_dir,
                                     output_dir=self.output_dir, warehouse_url=self.warehouse_url,
                                     first_month=self.first_month, deadline_months=self.deadline_months,
                                     max_quarantine_share=self.max_quarantine_share,
                                     ods_file=self.ods_file or None, workers=self.workers or None,
                                     optout_dir=self.optout_dir or None,
                                     v4_first_month=self.v4_first_month or None,
                                     v4_only_month=self.v4_only_month or None)

    @classmethod
    def from_settings(cls, settings: Settings) -> "SactPipelineResource":
        # A warehouse URL from the environment may carry a password: show the variable's name, not its value.
        from_env = os.environ.get("SACT_WAREHOUSE_URL") == settings.warehouse_url
        return cls(home=str(settings.home), landing_dir=str(settings.landing_dir),
                   output_dir=str(settings.output_dir),
                   warehouse_url=EnvVar("SACT_WAREHOUSE_URL") if from_env else settings.warehouse_url,
                   first_month=settings.first_month, deadline_months=settings.deadline_months,
                   max_quarantine_share=settings.max_quarantine_share,
                   ods_file=str(settings.ods_file or ""), workers=settings.workers,
                   optout_dir=str(settings.optout_dir or ""), v4_first_month=settings.v4_first_month,
                   v4_only_month=settings.v4_only_month)


class GivenPipeline:
    """The resource of an in-process caller that made its pipeline itself (the command line): every run
    gets that one. Same interface as SactPipelineResource."""

    def __init__(self, pipeline: Pipeline):
        self._pipeline = pipeline

    def pipeline(self) -> Pipeline:
        return self._pipeline

    def as_resource(self) -> ResourceDefinition:
        return ResourceDefinition.hardcoded_resource(self, "the command line's pipeline")
