"""Helpers the test modules, conftest.py and the harnesses share: the test key and settings, PostgreSQL
administration, and running the CLI and reading what it published.

A helper module, not a test module: import from here, never from a test module or conftest.py.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import make_url

REPOSITORY = Path(__file__).resolve().parent.parent
TEST_KEY = "test-pseudonymisation-key-0123456789abcdef-not-for-real-data"

# The settings `sact-pipeline refresh` exports to the environment for Dagster (and the test's own).
SETTING_VARIABLES = ("SACT_HOME", "SACT_LANDING_DIR", "SACT_OUTPUT_DIR", "SACT_WAREHOUSE_URL", "DAGSTER_HOME",
                     "SACT_FIRST_MONTH", "SACT_DEADLINE_MONTHS", "SACT_MAX_QUARANTINE_SHARE", "SACT_ODS_FILE",
                     "SACT_DATA_SET_FILE", "SACT_V4_FIRST_MONTH", "SACT_V4_ONLY_FROM")


# ---------------------------------------------------------------------------------------------- PostgreSQL


def admin_engine(url: str) -> sa.Engine:
    """An autocommit engine on the server of `url`, for CREATE / DROP / ALTER DATABASE."""
    parsed = make_url(url).set(drivername="postgresql+psycopg2")
    return sa.create_engine(parsed, isolation_level="AUTOCOMMIT")


def create_database(server_url: str, *, prefix: str = "sact_test_", template: str | None = None) -> str:
    """A new database on the server (a copy of `template`, if named): its name."""
    name = f"{prefix}{uuid.uuid4().hex[:12]}"
    admin = admin_engine(server_url)
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
    finally:
        admin.dispose()
    return name


def drop_database(server_url: str, *names: str) -> None:
    """Drop the databases (if they exist), whoever is still connected to them."""
    admin = admin_engine(server_url)
    try:
        with admin.connect() as connection:
            for name in names:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def dagster_postgres_variables(url: str) -> dict[str, str]:
    """The DAGSTER_PG_* variables the repository's dagster.yaml reads, for the database of `url`."""
    parsed = make_url(url)
    return {"DAGSTER_PG_USERNAME": parsed.username, "DAGSTER_PG_PASSWORD": parsed.password or "",
            "DAGSTER_PG_HOST": parsed.host, "DAGSTER_PG_PORT": str(parsed.port or 5432),
            "DAGSTER_PG_DB": parsed.database}


# --------------------------------------------------------------------------------------------------- the CLI


def run(capsys, *argv) -> tuple[int, str, str]:
    """`sact-pipeline *argv` in this process: its exit code, stdout and stderr."""
    from sact_pipeline.cli import main

    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def generated_landing(home: Path, generate: list[str]) -> Path:
    """`sact-pipeline generate` (the arguments `generate`) under `home`: its landing zone."""
    from sact_pipeline.cli import main

    assert main([*generate, "--home", str(home)]) == 0
    return home / "landing"


def published(home: Path, month: str) -> pd.DataFrame:
    """The month's published CSV under SACT_HOME `home`, every cell as text."""
    path = home / "published" / month / f"sact_submissions_{month}.csv"
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def published_text(path) -> str:
    """A published file as text to search: a workbook's every cell (the .xlsx itself is a zip); the Data
    Docs' fonts and images as bytes read as text."""
    if path.suffix != ".xlsx":
        return path.read_bytes().decode("utf-8", "replace")
    import openpyxl

    book = openpyxl.load_workbook(path)
    return "\n".join(str(value) for sheet in book for row in sheet.iter_rows(values_only=True)
                     for value in row if value is not None)
