"""sact-pipeline: monitoring England's monthly SACT data submissions on Dagster."""

__version__ = "0.1.0"
