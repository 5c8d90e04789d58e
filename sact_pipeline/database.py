"""Role-separated storage on PostgreSQL: who may read which schema of the warehouse (issue 6).

`sact-pipeline db init` is run by an administrator once per warehouse database, and again after an
upgrade (it is idempotent: a second run finds everything in place and changes nothing). It makes three
login roles (cluster-wide, shared by every warehouse database on the server):

- `sact_loader` owns the schemas raw, clean and published and every table in them: the pipeline connects
  as this role (SACT_WAREHOUSE_URL=postgresql://sact_loader@host:5432/db) and can do nothing outside them;
- `sact_analyst` reads clean and published, never raw (identifiable rows, the opt-out register);
- `sact_reader` reads published only (small numbers protected).

Passwords, if the server asks for them, come from SACT_DB_LOADER_PASSWORD, SACT_DB_ANALYST_PASSWORD and
SACT_DB_READER_PASSWORD; they are sent hashed (SCRAM, by libpq) so they never reach the server's logs, and
never appear in the lines this module returns. The administrator (`--admin-url`) must be a superuser (or
a CREATEROLE role that is a member of sact_loader); the default is the warehouse URL with user `postgres`
and no password (libpq then reads PGPASSWORD or ~/.pgpass). Its database part is ignored: db init always
works on the warehouse's database, and creates it if it is missing. A warehouse of the layout before
schemas (tables in schema public) has its tables moved, with their rows, into their schemas.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from sact_pipeline.warehouse import WarehouseError, engine_for
from sact_pipeline.warehouse_schema import add_new_columns
from sact_pipeline.tables import CLEAN_SCHEMA, PUBLISHED_SCHEMA, RAW_SCHEMA, SCHEMAS, metadata

LOADER, ANALYST, READER = "sact_loader", "sact_analyst", "sact_reader"
ROLES = (LOADER, ANALYST, READER)
PASSWORD_VARIABLES = {LOADER: "SACT_DB_LOADER_PASSWORD", ANALYST: "SACT_DB_ANALYST_PASSWORD",
                      READER: "SACT_DB_READER_PASSWORD"}
# Who reads each schema besides its owner, the loader. Nobody else is granted anything: not PUBLIC.
READERS = {RAW_SCHEMA: (), CLEAN_SCHEMA: (ANALYST,), PUBLISHED_SCHEMA: (ANALYST, READER)}
DEFAULT_ADMIN_USER = "postgres"
INSUFFICIENT_PRIVILEGE = "42501"  # SQLSTATE


class DatabaseInitError(WarehouseError):
    """db init cannot run or failed; the message says why, with URLs' passwords hidden."""


def default_admin_url(warehouse_url: str | URL) -> URL:
    """The warehouse URL with user `postgres` and no password (libpq reads PGPASSWORD or ~/.pgpass)."""
    return make_url(warehouse_url).set(username=DEFAULT_ADMIN_USER, password=None)


def hidden(url: str | URL) -> str:
    return make_url(url).render_as_string(hide_password=True)


def create_database(url: str | URL) -> bool:
    """CREATE DATABASE when it does not exist (connecting to the server's `postgres` database); True if
    it was created."""
    url = make_url(url)
    admin = sa.create_engine(url.set(drivername="postgresql+psycopg2", database="postgres"),
                             isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            if connection.execute(sa.text("select 1 from pg_database where datname = :name"),
                                  {"name": url.database}).first():
                return False
            quoted = connection.dialect.identifier_preparer.quote(url.database)
            connection.exec_driver_sql(f"CREATE DATABASE {quoted}")
            return True
    finally:
        admin.dispose()


def init_database(warehouse_url: str, admin_url: str | None = None,
                  env: Mapping[str, str] | None = None) -> list[str]:
    """Make the roles, schemas, tables and grants of the warehouse database in one transaction; returns
    what was done or found, one line each (no passwords)."""
    env = os.environ if env is None else env
    try:
        warehouse = make_url(warehouse_url)
        admin = make_url(admin_url) if admin_url else default_admin_url(warehouse)
    except sa.exc.ArgumentError:
        raise DatabaseInitError("the warehouse or admin URL is not a database URL "
                                "(postgresql://user@host:port/database)") from None
    if warehouse.get_backend_name() != "postgresql" or not warehouse.database:
        raise DatabaseInitError(
            f"db init is for a PostgreSQL warehouse (postgresql://user@host:port/database), not {hidden(warehouse)}: "
            "SQLite has no roles or schemas, its file's permissions are its access control")
    admin = admin.set(database=warehouse.database)
    lines = []
    try:
        if create_database(admin):
            lines.append(f"database {warehouse.database}: created")
        engine = engine_for(admin.render_as_string(hide_password=False))
        try:
            lines += _in_one_transaction(engine, env, warehouse.database)
        finally:
            engine.dispose()
    except sa.exc.DBAPIError as error:
        # PostgreSQL's primary message only: never the statement (it may carry a password hash).
        primary = getattr(getattr(error.orig, "diag", None), "message_primary", None)
        reason = primary or str(error.orig).strip().splitlines()[0]
        if getattr(error.orig, "pgcode", None) == INSUFFICIENT_PRIVILEGE:
            reason += (f". The admin URL must name a superuser (or a role with CREATEROLE that is a member of "
                       f"{LOADER})")
        raise DatabaseInitError(f"db init as {hidden(admin)} failed: {reason}") from None
    loader = warehouse.set(username=LOADER) if warehouse.username == LOADER else warehouse.set(
        username=LOADER, password=None)
    lines.append(f"the pipeline connects as the loader: SACT_WAREHOUSE_URL={hidden(loader)}")
    if warehouse.username != LOADER:
        lines.append(f"note: the warehouse URL given connects as {warehouse.username or 'the default user'}, "
                     f"not {LOADER}: point SACT_WAREHOUSE_URL at the loader so the pipeline runs with its rights only")
    return lines


def _in_one_transaction(engine: sa.Engine, env: Mapping[str, str], database: str, attempts: int = 5) -> list[str]:
    """Roles, schemas, tables and grants in one transaction. Roles and role memberships belong to the
    server, not the database: two db inits of different warehouses on one server at once (two
    deployments starting together) can touch the same role row, and PostgreSQL then fails one of them
    with "tuple concurrently updated". That is a race, not a fault: the transaction is run again."""
    def everything() -> list[str]:
        with engine.begin() as connection:
            return _roles(connection, env) + _schemas(connection, database) + _tables(connection) + _grants(connection)

    for attempt in range(1, attempts):
        try:
            return everything()
        except sa.exc.InternalError as error:
            if "tuple concurrently updated" not in str(error.orig):
                raise
            time.sleep(0.2 * attempt)
    return everything()  # the last attempt: its error, if any, is the caller's


def _roles(connection: sa.Connection, env: Mapping[str, str]) -> list[str]:
    """The three login roles, created when missing (CREATE ROLE has no IF NOT EXISTS, and another db init
    on the same server may create one at the same moment), and their passwords when given."""
    from psycopg2.extensions import encrypt_password

    lines = []
    existing = dict(connection.execute(sa.text("select rolname, rolcanlogin from pg_roles where rolname = any(:roles)"),
                                       {"roles": list(ROLES)}).all())
    for role in ROLES:
        if role in existing:
            if not existing[role]:  # only when needed: roles are the server's, shared by every warehouse on it
                connection.exec_driver_sql(f"ALTER ROLE {role} LOGIN")
            lines.append(f"role {role}: already there")
        else:
            connection.exec_driver_sql(f"DO $$ BEGIN CREATE ROLE {role} LOGIN; "
                                       "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$")
            lines.append(f"role {role}: created")
        password = env.get(PASSWORD_VARIABLES[role])
        if password:
            verifier = encrypt_password(password, role, connection.connection.dbapi_connection)
            connection.exec_driver_sql(f"ALTER ROLE {role} PASSWORD %(verifier)s", {"verifier": verifier})
            lines.append(f"role {role}: password set from {PASSWORD_VARIABLES[role]}")
    return lines


def _schemas(connection: sa.Connection, database: str) -> list[str]:
    """CONNECT for the three roles; the schemas, owned by the loader."""
    quoted = connection.dialect.identifier_preparer.quote(database)
    connection.exec_driver_sql(f"GRANT CONNECT ON DATABASE {quoted} TO {', '.join(ROLES)}")
    owners = dict(connection.execute(sa.text(
        "select nspname, pg_get_userbyid(nspowner) from pg_namespace where nspname = any(:schemas)"),
        {"schemas": list(SCHEMAS)}).all())
    lines = []
    for schema in SCHEMAS:
        if schema not in owners:
            connection.exec_driver_sql(f"CREATE SCHEMA {schema} AUTHORIZATION {LOADER}")
            lines.append(f"schema {schema}: created, owned by {LOADER}")
        elif owners[schema] != LOADER:
            connection.exec_driver_sql(f"ALTER SCHEMA {schema} OWNER TO {LOADER}")
            lines.append(f"schema {schema}: given to {LOADER}")
        else:
            lines.append(f"schema {schema}: already there")
    return lines


def _tables(connection: sa.Connection) -> list[str]:
    """Move tables of the layout before schemas out of public; give every table of the three schemas to
    the loader; create the missing ones as the loader."""
    placed = set(connection.execute(sa.text(
        "select schemaname, tablename from pg_tables where schemaname = any(:schemas)"),
        {"schemas": list(SCHEMAS)}).all())
    in_public = set(connection.execute(sa.text(
        "select tablename from pg_tables where schemaname = 'public' and tablename = any(:names)"),
        {"names": [table.name for table in metadata.sorted_tables]}).scalars())
    lines, moved = [], []
    for table in metadata.sorted_tables:
        if table.name not in in_public:
            continue
        if (table.schema, table.name) in placed:
            raise DatabaseInitError(
                f"table {table.name} is both in schema public and in schema {table.schema}: db init never merges "
                "rows; keep one (drop or rename the other) and run it again")
        connection.exec_driver_sql(f'ALTER TABLE public."{table.name}" SET SCHEMA {table.schema}')
        placed.add((table.schema, table.name))
        moved.append(table.name)
    if moved:
        lines.append(f"moved from schema public with their rows: {', '.join(moved)}")
    others = connection.execute(sa.text(
        "select schemaname, tablename from pg_tables where schemaname = any(:schemas) and tableowner <> :loader "
        "order by 1, 2"), {"schemas": list(SCHEMAS), "loader": LOADER}).all()
    for schema, name in others:
        connection.exec_driver_sql(f'ALTER TABLE {schema}."{name}" OWNER TO {LOADER}')
    if others:
        lines.append(f"tables given to {LOADER}: {', '.join(f'{s}.{n}' for s, n in others)}")
    missing = [table for table in metadata.sorted_tables if (table.schema, table.name) not in placed]
    connection.exec_driver_sql(f"SET LOCAL ROLE {LOADER}")
    metadata.create_all(connection, tables=missing)
    add_new_columns(connection)  # columns added since the tables were made (the loader owns them)
    connection.exec_driver_sql("RESET ROLE")
    lines.append(f"tables: {len(missing)} created, {len(metadata.sorted_tables) - len(missing)} already there")
    return lines


def _grants(connection: sa.Connection) -> list[str]:
    """Exactly the intended access: everything else is revoked first, in the same transaction, so a grant
    made by hand (or a stale one) does not survive, and tables the loader creates later follow the same
    rule through its default privileges."""
    nobody_else = f"PUBLIC, {ANALYST}, {READER}"
    lines = []
    for schema in SCHEMAS:
        connection.exec_driver_sql(f"REVOKE ALL ON SCHEMA {schema} FROM {nobody_else}")
        connection.exec_driver_sql(f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {nobody_else}")
        connection.exec_driver_sql(f"ALTER DEFAULT PRIVILEGES FOR ROLE {LOADER} IN SCHEMA {schema} "
                                   f"REVOKE ALL ON TABLES FROM {nobody_else}")
        readers = ", ".join(READERS[schema])
        if readers:
            connection.exec_driver_sql(f"GRANT USAGE ON SCHEMA {schema} TO {readers}")
            connection.exec_driver_sql(f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {readers}")
            connection.exec_driver_sql(f"ALTER DEFAULT PRIVILEGES FOR ROLE {LOADER} IN SCHEMA {schema} "
                                       f"GRANT SELECT ON TABLES TO {readers}")
        lines.append(f"schema {schema}: read by {readers or 'nobody'} besides {LOADER}")
    return lines


def add_db_parser(commands: argparse._SubParsersAction) -> None:
    """`sact-pipeline db init` on the CLI's subcommands."""
    db = commands.add_parser("db", help="set up the PostgreSQL warehouse database: roles, schemas, grants")
    actions = db.add_subparsers(dest="db_command", required=True)
    init = actions.add_parser(
        "init", help="create the roles sact_loader, sact_analyst, sact_reader, the schemas and their grants",
        description="Idempotent: run once per warehouse database and again after an upgrade. Role passwords "
                    "come from SACT_DB_LOADER_PASSWORD, SACT_DB_ANALYST_PASSWORD, SACT_DB_READER_PASSWORD.")
    init.add_argument("--warehouse-url", help="the PostgreSQL warehouse (default: SACT_WAREHOUSE_URL); its "
                                              "user should be sact_loader, as the pipeline will connect")
    init.add_argument("--admin-url", help="a superuser on the same server (default: the warehouse URL with user "
                                          "postgres and no password; PGPASSWORD or ~/.pgpass are read)")
    init.set_defaults(handler=_init_command)


def _init_command(args: argparse.Namespace) -> int:
    url = args.warehouse_url or os.environ.get("SACT_WAREHOUSE_URL")
    if not url:
        print("error: give --warehouse-url or set SACT_WAREHOUSE_URL to the PostgreSQL warehouse", file=sys.stderr)
        return 2
    try:
        lines = init_database(url, args.admin_url)
    except DatabaseInitError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for line in lines:
        print(line)
    return 0
