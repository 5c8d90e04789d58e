"""Scaling out: the same definitions on the multiprocess executor (run here), and the Kubernetes
configuration in deploy/kubernetes validated against dagster-k8s's own schemas (no cluster here)."""

from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path

import yaml
from dagster import DagsterEventType, execute_job, instance_for_test, reconstructable, validate_run_config
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config

from sact_pipeline.definitions import DISCOVERY_JOB, MONTH_JOB, REFRESH_JOB, TRUST_MONTH_JOB, build_definitions
from sact_pipeline.layers import Pipeline
from sact_pipeline.run_config import run_config_for
from sact_pipeline.run_tags import MONTH_TAG, trust_month_run
from sact_pipeline.settings import Settings
from sact_pipeline_tests.builders import patients, write_submission
from sact_pipeline_tests.support import REPOSITORY, dagster_postgres_variables

MULTIPROCESS = {"execution": {"config": {"multiprocess": {"max_concurrent": 2}}}}


# Module-level job factories: the multiprocess executor re-imports the job in each step's process.
def discovery_job():
    return build_definitions().resolve_job_def(DISCOVERY_JOB)


def trust_month_job():
    return build_definitions().resolve_job_def(TRUST_MONTH_JOB)


def month_job():
    return build_definitions().resolve_job_def(MONTH_JOB)


def test_the_same_definitions_run_on_the_multiprocess_executor(tmp_path, monkeypatch):
    monkeypatch.setenv("SACT_HOME", str(tmp_path / "sact"))  # step processes read the settings from here
    monkeypatch.setenv("SACT_FIRST_MONTH", "2024-01")
    monkeypatch.chdir(REPOSITORY)  # so that step processes can import this test module
    settings = Settings.from_env()
    for trust, count in (("RR8", 20), ("RBV", 30)):
        write_submission(settings.landing_dir / f"SACT_{trust}_202401_20240210093000.csv", patients(trust, count))
    (tmp_path / "dagster").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        results = [execute_job(reconstructable(discovery_job), instance, run_config=MULTIPROCESS)]
        tags, options = trust_month_run(instance, "2024-01", ["RR8", "RBV"], affected_only=True)
        results.append(execute_job(reconstructable(trust_month_job), instance, tags=tags,
                                   run_config={**MULTIPROCESS, **run_config_for(TRUST_MONTH_JOB, **options)}))
        results.append(execute_job(reconstructable(month_job), instance, run_config=MULTIPROCESS,
                                   tags={"dagster/partition": "2024-01-01", MONTH_TAG: "2024-01"}))
        for result in results:
            assert result.success, result.dagster_run.run_id
            starts = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_START]
            assert starts and all(e.pid != os.getpid() for e in starts)  # each step in its own process
    table = (Pipeline(settings).output_paths("2024-01")[0]).read_text()
    assert "RR8" in table and "RBV" in table and "ENGLAND" in table


def _validate_configurable(section: dict) -> None:
    """A {module, class, config} block of dagster.yaml against the class's own config schema."""
    cls = getattr(importlib.import_module(section["module"]), section["class"])
    result = process_config(cls.config_type(), section.get("config") or {})
    assert result.success, [error.message for error in result.errors]


def _load_instance_config(path: Path, folder: Path, monkeypatch) -> dict:
    for name, value in {"DAGSTER_PG_USERNAME": "sact", "DAGSTER_PG_PASSWORD": "secret", "DAGSTER_PG_HOST": "db",
                        "DAGSTER_PG_DB": "dagster", "DAGSTER_PG_PORT": "5432"}.items():
        monkeypatch.setenv(name, value)
    folder.mkdir()
    shutil.copyfile(path, folder / "dagster.yaml")
    config, _ = dagster_instance_config(str(folder))  # validates the whole file against Dagster's schema
    from dagster_postgres import DagsterPostgresStorage

    storage = process_config(DagsterPostgresStorage.config_type(), config["storage"]["postgres"])
    assert storage.success, [error.message for error in storage.errors]
    return config


def test_the_repository_instance_config_loads_on_postgresql_with_its_queue(tmp_path, monkeypatch, postgres_url):
    """The dagster.yaml that `make up` uses, loaded for real: PostgreSQL storage and the run queue."""
    from dagster import DagsterInstance
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_postgres import PostgresRunStorage

    config = _load_instance_config(REPOSITORY / "dagster.yaml", tmp_path / "local", monkeypatch)
    assert config["run_retries"] == {"enabled": True, "max_retries": 2, "retry_on_asset_or_op_failure": False}
    assert config["telemetry"]["enabled"] is False
    for name, value in dagster_postgres_variables(postgres_url).items():
        monkeypatch.setenv(name, value)
    with DagsterInstance.from_config(str(tmp_path / "local")) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        coordinator = instance.run_coordinator
        assert isinstance(coordinator, QueuedRunCoordinator)
        limits = {limit["key"]: limit["limit"] for limit in coordinator.get_run_queue_config().tag_concurrency_limits}
        assert limits == {"dagster/partition": 1, "sact/month": 1}
        assert coordinator.get_run_queue_config().max_concurrent_runs == 4


def test_the_kubernetes_instance_config_is_valid(tmp_path, monkeypatch):
    config = _load_instance_config(REPOSITORY / "deploy" / "kubernetes" / "dagster.yaml", tmp_path / "k8s",
                                   monkeypatch)
    assert config["run_launcher"]["class"] == "K8sRunLauncher"
    _validate_configurable(config["run_launcher"])
    assert config["run_queue"]["tag_concurrency_limits"]
    launcher = config["run_launcher"]["config"]
    assert "sact-pseudonymisation-key" in launcher["env_secrets"]  # the key only ever comes from a Secret
    assert not [v for v in launcher.get("env_vars", []) if "PSEUDONYMISATION" in str(v)]


def test_the_kubernetes_executor_run_config_is_valid_for_every_job(settings):
    from dagster_k8s import k8s_job_executor

    run_config = yaml.safe_load((REPOSITORY / "deploy" / "kubernetes" / "run_config.yaml").read_text())
    defs = build_definitions(settings, executor=k8s_job_executor)
    for name in (DISCOVERY_JOB, TRUST_MONTH_JOB, MONTH_JOB, REFRESH_JOB):
        job = defs.resolve_job_def(name)
        assert job.executor_def.name == "k8s"
        validate_run_config(job, run_config)  # raises DagsterInvalidConfigError on any mistake
