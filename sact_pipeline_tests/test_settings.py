"""Settings: flags over variables over defaults, zero is a value, bad values are named."""

import os
from pathlib import Path

import pytest

from sact_pipeline.settings import Settings, SettingsError


def test_defaults_hang_off_sact_home(tmp_path):
    settings = Settings.from_env(env={"SACT_HOME": str(tmp_path)})
    assert settings.landing_dir == tmp_path / "landing"
    assert settings.output_dir == tmp_path / "published"
    assert settings.dagster_home == tmp_path / "dagster"
    assert settings.warehouse_url == f"sqlite:///{tmp_path / 'warehouse.db'}"
    assert settings.workers == min(2, len(os.sched_getaffinity(0)))  # a large month uses up to two cores
    assert Settings.from_env(env={"SACT_HOME": str(tmp_path), "SACT_WORKERS": "1"}).workers == 1


def test_flags_override_variables_and_zero_is_kept(tmp_path):
    env = {"SACT_HOME": str(tmp_path), "SACT_OUTPUT_DIR": str(tmp_path / "env-out"), "SACT_DEADLINE_MONTHS": "2"}
    settings = Settings.from_env(env=env, output_dir=str(tmp_path / "flag-out"), deadline_months=0)
    assert settings.output_dir == tmp_path / "flag-out"
    assert settings.deadline_months == 0
    assert Settings.from_env(env={**env, "SACT_DEADLINE_MONTHS": "0"}).deadline_months == 0
    assert Settings.from_env(env=env).output_dir == Path(tmp_path / "env-out")


@pytest.mark.parametrize("env, message", [
    ({"SACT_FIRST_MONTH": "Jan 2024"}, "SACT_FIRST_MONTH must be a month"),
    ({"SACT_DEADLINE_MONTHS": "-1"}, "SACT_DEADLINE_MONTHS must be >= 0"),
    ({"SACT_MAX_QUARANTINE_SHARE": "lots"}, "invalid setting"),
    ({"SACT_WORKERS": "0"}, "SACT_WORKERS must be 1 or more"),
])
def test_bad_values_are_named(env, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env=env)
