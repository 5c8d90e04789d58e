"""Settings: environment variables with defaults under SACT_HOME; the CLI overrides them with flags.

The pseudonymisation key is deliberately not a field here: it is read when needed (keys.py) so that it
never travels in run config, resource config or metadata.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from sact_pipeline.domain.spec import Transition


class SettingsError(ValueError):
    """A setting has a value the pipeline cannot work with."""


def parse_month(value: str, name: str) -> str:
    """YYYY-MM (a longer ISO date is cut to its month); the error names the setting."""
    try:
        parsed = date.fromisoformat(f"{value.strip()[:7]}-01")
    except ValueError as error:
        raise SettingsError(f"{name} must be a month as YYYY-MM, got {value!r}") from error
    return parsed.strftime("%Y-%m")


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a container's cpuset), not the machine's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class Settings:
    home: Path
    landing_dir: Path
    output_dir: Path
    warehouse_url: str
    dagster_home: Path
    first_month: str = "2023-01"  # first reporting month the pipeline partitions
    deadline_months: int = 1  # on time = first version received before the end of this many months after
    max_quarantine_share: float = 0.5  # a clean partition quarantining more than this fails its suite
    ods_file: Path | None = None  # a newer ODS etr extract; the packaged copy when unset
    workers: int = 1  # processes building a large month's trust-months (SACT_WORKERS; default: up to 2 cores)
    optout_dir: Path | None = None  # registration opt-out files (SACT_OPTOUT_DIR; default SACT_HOME/optouts)
    raw_retention_months: int = 0  # reporting months of identifiable raw rows kept by `purge-raw`; 0: not set
    v4_first_month: str = Transition.v4_from  # no SACT v4 file for a reporting month before it
    v4_only_month: str = Transition.v4_only_from  # full v4 conformance: a v3 file from then is a finding

    @property
    def transition(self) -> Transition:
        return Transition(self.v4_first_month, self.v4_only_month)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides) -> "Settings":
        env = dict(os.environ if env is None else env)

        def pick(name: str, key: str, default=None):
            """A flag given (even 0) wins over the variable, which wins over the default."""
            value = overrides.pop(name, None)
            if value is None or value == "":
                value = env.get(key)
            return default if value is None or value == "" else value

        home = Path(pick("home", "SACT_HOME", ".sact")).expanduser().resolve()

        def path(name: str, key: str, default: Path) -> Path:
            value = pick(name, key)
            return Path(value).expanduser().resolve() if value else default

        landing = path("landing_dir", "SACT_LANDING_DIR", home / "landing")
        output = path("output_dir", "SACT_OUTPUT_DIR", home / "published")
        dagster_home = path("dagster_home", "DAGSTER_HOME", home / "dagster")
        warehouse_url = pick("warehouse_url", "SACT_WAREHOUSE_URL", f"sqlite:///{home / 'warehouse.db'}")
        ods = pick("ods_file", "SACT_ODS_FILE")
        optouts = path("optout_dir", "SACT_OPTOUT_DIR", home / "optouts")
        try:
            settings = cls(
                home=home,
                landing_dir=landing,
                output_dir=output,
                warehouse_url=warehouse_url,
                dagster_home=dagster_home,
                first_month=parse_month(str(pick("first_month", "SACT_FIRST_MONTH", "2023-01")), "SACT_FIRST_MONTH"),
                deadline_months=int(pick("deadline_months", "SACT_DEADLINE_MONTHS", 1)),
                max_quarantine_share=float(pick("max_quarantine_share", "SACT_MAX_QUARANTINE_SHARE", 0.5)),
                ods_file=Path(ods).expanduser().resolve() if ods else None,
                workers=int(pick("workers", "SACT_WORKERS", min(2, available_cores()))),
                optout_dir=optouts,
                raw_retention_months=int(pick("raw_retention_months", "SACT_RAW_RETENTION_MONTHS", 0)),
                v4_first_month=parse_month(str(pick("v4_first_month", "SACT_V4_FIRST_MONTH", Transition.v4_from)),
                                           "SACT_V4_FIRST_MONTH"),
                v4_only_month=parse_month(str(pick("v4_only_month", "SACT_V4_ONLY_FROM", Transition.v4_only_from)),
                                          "SACT_V4_ONLY_FROM"),
            )
        except ValueError as error:
            if isinstance(error, SettingsError):
                raise
            raise SettingsError(f"invalid setting: {error}") from error
        if overrides:
            raise SettingsError(f"unknown settings: {', '.join(sorted(overrides))}")
        if settings.deadline_months < 0 or not 0 < settings.max_quarantine_share <= 1:
            raise SettingsError("SACT_DEADLINE_MONTHS must be >= 0 and SACT_MAX_QUARANTINE_SHARE in (0, 1]")
        folders = (settings.landing_dir, settings.optout_dir)
        if settings.optout_dir.is_relative_to(settings.landing_dir) or settings.landing_dir.is_relative_to(
                settings.optout_dir):  # opt-out files would be read as submissions, and purged with them
            raise SettingsError(f"SACT_OPTOUT_DIR ({folders[1]}) and SACT_LANDING_DIR ({folders[0]}) must not be "
                                "inside one another")
        if settings.raw_retention_months < 0:
            raise SettingsError(f"SACT_RAW_RETENTION_MONTHS must be 0 (not set) or more, got {settings.raw_retention_months}")
        if settings.v4_only_month < settings.v4_first_month:
            raise SettingsError(f"SACT_V4_ONLY_FROM ({settings.v4_only_month}) must not be before SACT_V4_FIRST_MONTH "
                                f"({settings.v4_first_month})")
        if settings.workers < 1:
            raise SettingsError(f"SACT_WORKERS must be 1 or more, got {settings.workers}")
        return settings


@dataclass(frozen=True)
class AutomationSettings:
    """When the landing-zone sensor ticks and the monthly schedule fires (read where the definitions
    load), and where failed-run alerts go (read when an alert is raised: a webhook URL is a secret, kept
    out of every config)."""

    sensor_interval: int = 30  # SACT_SENSOR_INTERVAL, seconds
    file_quiet_seconds: int = 10  # SACT_FILE_QUIET_SECONDS: a file unchanged this long is complete
    schedule_cron: str = "0 6 1 * *"  # SACT_SCHEDULE_CRON
    schedule_timezone: str = "Europe/London"  # SACT_SCHEDULE_TIMEZONE
    alert_webhook_url: str | None = None  # SACT_ALERT_WEBHOOK_URL

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "AutomationSettings":
        env = os.environ if env is None else env
        try:
            return cls(sensor_interval=int(env.get("SACT_SENSOR_INTERVAL") or cls.sensor_interval),
                       file_quiet_seconds=int(env.get("SACT_FILE_QUIET_SECONDS") or cls.file_quiet_seconds),
                       schedule_cron=env.get("SACT_SCHEDULE_CRON") or cls.schedule_cron,
                       schedule_timezone=env.get("SACT_SCHEDULE_TIMEZONE") or cls.schedule_timezone,
                       alert_webhook_url=env.get("SACT_ALERT_WEBHOOK_URL") or None)
        except ValueError as error:
            raise SettingsError(f"SACT_SENSOR_INTERVAL and SACT_FILE_QUIET_SECONDS must be whole numbers of "
                                f"seconds: {error}") from error

