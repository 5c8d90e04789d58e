"""Role-separated storage on the real PostgreSQL (issue 6): `db init` makes the loader, analyst and reader
roles; the pipeline runs as the loader; analysts never read raw, readers only read published."""

from __future__ import annotations

import argparse
import os
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg2.errors
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from sact_pipeline.cli import main
from sact_pipeline.database import ANALYST, LOADER, READER, DatabaseInitError, add_db_parser, init_database
from sact_pipeline.warehouse import Warehouse, WarehouseLayoutOutdated, WarehouseSchemaMissing, engine_for
from sact_pipeline.tables import SCHEMAS, layer_state, metadata, published_submissions
from sact_pipeline_tests.support import SETTING_VARIABLES, TEST_KEY, drop_database

TABLES = len(metadata.tables)  # every table of the warehouse layout


def as_role(url: str, role: str) -> str:
    """The same database, connecting as `role` (trust authentication on the test server)."""
    return make_url(url).set(username=role, password=None).render_as_string(hide_password=False)


def scalar(url: str, statement: str):
    engine = engine_for(url)
    try:
        with engine.begin() as connection:
            return connection.execute(sa.text(statement)).scalar()
    finally:
        engine.dispose()


def denied(url: str, statement: str) -> None:
    with pytest.raises(sa.exc.ProgrammingError, match="permission denied") as raised:
        scalar(url, statement)
    assert isinstance(raised.value.orig, psycopg2.errors.InsufficientPrivilege)


def db(capsys, *argv: str) -> tuple[int, str, str]:
    """`sact-pipeline db ...` through the parser add_db_parser builds."""
    parser = argparse.ArgumentParser(prog="sact-pipeline")
    add_db_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["db", *argv])
    code = args.handler(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def access(url: str) -> list[tuple]:
    """Owners and privileges of the database, the schemas, their tables and the default privileges."""
    engine = engine_for(url)
    queries = [
        "select 'database', datname, null, array(select unnest(datacl)::text order by 1)::text "
        "from pg_database where datname = current_database()",
        "select 'schema', nspname, pg_get_userbyid(nspowner), array(select unnest(nspacl)::text order by 1)::text "
        "from pg_namespace where nspname in ('raw', 'clean', 'published', 'public')",
        "select 'table', n.nspname || '.' || c.relname, pg_get_userbyid(c.relowner), "
        "array(select unnest(c.relacl)::text order by 1)::text from pg_class c join pg_namespace n "
        "on n.oid = c.relnamespace where c.relkind = 'r' and n.nspname in ('raw', 'clean', 'published', 'public')",
        "select 'default', coalesce(n.nspname, ''), pg_get_userbyid(d.defaclrole), "
        "array(select unnest(d.defaclacl)::text order by 1)::text "
        "from pg_default_acl d left join pg_namespace n on n.oid = d.defaclnamespace",
    ]
    try:
        with engine.connect() as connection:
            return sorted(tuple(row) for query in queries for row in connection.execute(sa.text(query)))
    finally:
        engine.dispose()


def test_db_init_twice_changes_nothing_the_second_time(postgres_url, capsys):
    loader_url = as_role(postgres_url, LOADER)
    first = init_database(loader_url, admin_url=postgres_url)
    assert f"tables: {TABLES} created, 0 already there" in first
    granted = access(postgres_url)
    tables = [(name, owner) for kind, name, owner, _ in granted if kind == "table"]
    assert len(tables) == TABLES and {owner for _, owner in tables} == {LOADER}
    assert not [name for name, _ in tables if name.startswith("public.")]
    assert {(name, owner) for kind, name, owner, _ in granted if kind == "schema" and name != "public"} == {
        (schema, LOADER) for schema in SCHEMAS}

    code, out, err = db(capsys, "init", "--warehouse-url", loader_url, "--admin-url", postgres_url)
    assert code == 0, err
    assert f"tables: 0 created, {TABLES} already there" in out
    assert f"role {LOADER}: already there" in out and "schema raw: already there" in out
    assert f"SACT_WAREHOUSE_URL={make_url(loader_url).render_as_string()}" in out
    assert access(postgres_url) == granted


def test_two_db_inits_of_different_warehouses_on_one_server_at_once_both_succeed(postgres_server_url):
    """Two deployments starting together each run db init on their own database; the roles are the
    server's, shared by both. PostgreSQL failed one with "tuple concurrently updated" (issue 17's CI)."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    names = [f"sact_test_{uuid.uuid4().hex[:12]}" for _ in range(2 * 4)]
    urls = [make_url(postgres_server_url).set(database=name).render_as_string(hide_password=False) for name in names]
    try:
        with ThreadPoolExecutor(2) as pool:
            for pair in range(0, len(urls), 2):  # four rounds of two at the same moment
                start = Barrier(2)

                def init(url: str) -> list[str]:
                    start.wait()
                    return init_database(as_role(url, LOADER), admin_url=url)

                results = list(pool.map(init, urls[pair:pair + 2]))
                assert all(f"tables: {TABLES} created, 0 already there" in lines for lines in results)
    finally:
        drop_database(postgres_server_url, *names)


def test_role_passwords_are_set_hashed_and_never_shown(postgres_url, postgres_server_url):
    password = "reader-pass-" + uuid.uuid4().hex
    try:
        lines = init_database(as_role(postgres_url, LOADER), admin_url=postgres_url,
                              env={"SACT_DB_READER_PASSWORD": password})
        assert f"role {READER}: password set from SACT_DB_READER_PASSWORD" in lines
        assert password not in "\n".join(lines)
        stored = scalar(postgres_server_url, f"select rolpassword from pg_authid where rolname = '{READER}'")
        assert stored.startswith("SCRAM-SHA-256$") and password not in stored
    finally:
        scalar(postgres_server_url, f"ALTER ROLE {READER} PASSWORD NULL; select 1")


@dataclass
class Refreshed:
    url: str  # the warehouse database, as the superuser
    exit_code: int
    home: Path

    def count(self, role: str, table: str) -> int:
        return scalar(as_role(self.url, role), f"select count(*) from {table}")


@pytest.fixture(scope="module")
def refreshed(postgres_server_url, tmp_path_factory) -> Refreshed:
    """A warehouse made by `db init` and loaded by a real `sact-pipeline refresh` connected as the loader
    (shared by the tests that read it as each role); dropped afterwards."""
    url = make_url(postgres_server_url).set(database=f"sact_test_{uuid.uuid4().hex[:12]}").render_as_string(
        hide_password=False)
    home = tmp_path_factory.mktemp("roles") / "sact"
    saved = dict(os.environ)  # refresh exports its settings to the environment (for Dagster)
    try:
        for name in SETTING_VARIABLES:
            os.environ.pop(name, None)
        os.environ["SACT_PSEUDONYMISATION_KEY"] = TEST_KEY
        init_database(as_role(url, LOADER), admin_url=postgres_server_url)  # creates the database too
        assert main(["generate", "--home", str(home), "--trusts", "2", "--months", "2", "--end-month", "2024-03",
                     "--patients", "10"]) == 0
        code = main(["refresh", "--home", str(home), "--first-month", "2023-06",
                     "--warehouse-url", as_role(url, LOADER)])
        yield Refreshed(url, code, home)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        drop_database(postgres_server_url, make_url(url).database)


def test_the_loader_runs_the_whole_refresh(refreshed):
    assert refreshed.exit_code == 0
    published = list((refreshed.home / "published").rglob("sact_submissions_*.csv"))
    assert len(published) == 2
    assert refreshed.count(LOADER, "published.published_submissions") == sum(
        len(path.read_text().splitlines()) - 1 for path in published)
    assert refreshed.count(LOADER, "raw.raw_submissions") > 0
    # Nothing of the warehouse outside its schemas, and every table still the loader's.
    tables = [entry for entry in access(refreshed.url) if entry[0] == "table"]
    assert {owner for _, _, owner, _ in tables} == {LOADER} and len(tables) == TABLES


def test_an_analyst_reads_clean_and_published_but_never_raw(refreshed):
    analyst = as_role(refreshed.url, ANALYST)
    denied(analyst, "select count(*) from raw.raw_submissions")
    denied(analyst, "select count(*) from raw.optout_patients")
    assert refreshed.count(ANALYST, "clean.clean_activity") == refreshed.count(LOADER, "clean.clean_activity") > 0
    assert refreshed.count(ANALYST, "published.published_submissions") == refreshed.count(
        LOADER, "published.published_submissions") > 0
    assert refreshed.count(ANALYST, "clean.submission_files") == refreshed.count(LOADER, "clean.submission_files")
    denied(analyst, "insert into clean.clean_activity (reporting_month, trust_code, file_sha256) "
                    "values ('2024-01', 'RR8', 'x')")
    denied(analyst, "delete from clean.clean_activity")
    denied(analyst, "update clean.layer_state set fingerprint = ''")
    denied(analyst, "delete from published.published_submissions")
    denied(analyst, "create table clean.analyst_notes (note text)")


def test_a_reader_reads_published_only(refreshed):
    reader = as_role(refreshed.url, READER)
    denied(reader, "select count(*) from raw.raw_submissions")
    denied(reader, "select count(*) from clean.clean_activity")
    denied(reader, "select count(*) from clean.trust_month_summary")
    assert refreshed.count(READER, "published.published_submissions") == refreshed.count(
        LOADER, "published.published_submissions") > 0
    denied(reader, "delete from published.published_submissions")


def test_tables_the_loader_creates_later_follow_the_same_rule(postgres_url):
    loader_url = as_role(postgres_url, LOADER)
    init_database(loader_url, admin_url=postgres_url)
    scalar(loader_url, "create table clean.later_measure (n int); insert into clean.later_measure values (1); "
                       "create table published.later_table (n int); insert into published.later_table values (2); "
                       "create table raw.later_identifiers (n int); select 1")
    assert scalar(as_role(postgres_url, ANALYST), "select n from clean.later_measure") == 1
    assert scalar(as_role(postgres_url, READER), "select n from published.later_table") == 2
    denied(as_role(postgres_url, READER), "select n from clean.later_measure")
    denied(as_role(postgres_url, ANALYST), "select n from raw.later_identifiers")


def test_the_loader_before_db_init_is_told_what_to_run(postgres_url):
    init_database(as_role(postgres_url, LOADER), admin_url=postgres_url)  # the roles exist ...
    scalar(postgres_url, "drop schema raw, clean, published cascade; select 1")  # ... the schemas do not
    with pytest.raises(WarehouseSchemaMissing, match="no schema raw, clean, published") as raised:
        Warehouse(as_role(postgres_url, LOADER))
    assert "sact-pipeline db init --admin-url" in str(raised.value)
    # The loader owns its schemas after db init, so it creates a table added in a later version itself.
    init_database(as_role(postgres_url, LOADER), admin_url=postgres_url)
    scalar(postgres_url, "drop table clean.gate_failures; select 1")
    Warehouse(as_role(postgres_url, LOADER)).dispose()
    assert scalar(postgres_url, "select tableowner from pg_tables where tablename = 'gate_failures'") == LOADER


def test_a_warehouse_of_the_layout_before_schemas_is_moved_with_its_rows(postgres_url):
    """Tables in schema public (as every warehouse was before issue 6) are refused by the pipeline until
    db init moves them, rows and all, into their schemas and gives them to the loader."""
    old = sa.create_engine(make_url(postgres_url).set(drivername="postgresql+psycopg2"),
                           execution_options={"schema_translate_map": dict.fromkeys(SCHEMAS)})
    metadata.create_all(old)
    with old.begin() as connection:
        connection.execute(sa.insert(layer_state).values(
            layer="published", reporting_month="2024-01", trust_code="", fingerprint="f" * 64, row_count=3,
            updated_at=datetime(2024, 3, 1)))
        connection.execute(sa.insert(published_submissions), [
            {"reporting_month": "2024-01", "org_code": code} for code in ("RR8", "RBV", "ENGLAND")])
    old.dispose()
    with pytest.raises(WarehouseLayoutOutdated, match="schema public holds warehouse tables") as raised:
        Warehouse(postgres_url)
    assert "published_submissions" in str(raised.value) and "db init" in str(raised.value)

    lines = init_database(as_role(postgres_url, LOADER), admin_url=postgres_url)
    assert any(line.startswith("moved from schema public with their rows: ") and "raw_submissions" in line
               for line in lines)
    assert f"tables: 0 created, {TABLES} already there" in lines
    assert scalar(postgres_url, "select count(*) from pg_tables where schemaname = 'public'") == 0
    warehouse = Warehouse(as_role(postgres_url, LOADER))
    assert warehouse.read(layer_state)["row_count"].tolist() == [3]
    warehouse.dispose()
    assert scalar(as_role(postgres_url, READER), "select count(*) from published.published_submissions") == 3
    denied(as_role(postgres_url, ANALYST), "select count(*) from raw.raw_submissions")


def test_db_init_refuses_sqlite_and_hides_passwords_in_its_errors(tmp_path, capsys, monkeypatch):
    with pytest.raises(DatabaseInitError, match="PostgreSQL warehouse"):
        init_database(f"sqlite:///{tmp_path / 'warehouse.db'}")
    code, out, err = db(capsys, "init", "--warehouse-url", "postgresql://sact_loader@127.0.0.1:1/warehouse",
                        "--admin-url", "postgresql://postgres:admin-secret@127.0.0.1:1/postgres")
    assert code == 2 and out == ""
    assert err.startswith("error: db init as postgresql://postgres:***@127.0.0.1:1/warehouse failed: ")
    assert "admin-secret" not in err
    monkeypatch.delenv("SACT_WAREHOUSE_URL", raising=False)
    code, out, err = db(capsys, "init")
    assert code == 2 and err.startswith("error: give --warehouse-url or set SACT_WAREHOUSE_URL")


def test_db_init_by_a_user_who_may_not_changes_nothing_and_says_who_may(postgres_url):
    init_database(as_role(postgres_url, LOADER), admin_url=postgres_url)
    granted = access(postgres_url)
    with pytest.raises(DatabaseInitError, match="failed: permission denied.*must name a superuser"):
        init_database(as_role(postgres_url, LOADER), admin_url=as_role(postgres_url, READER))
    assert access(postgres_url) == granted
