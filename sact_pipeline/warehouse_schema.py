"""The warehouse's schemas and tables on PostgreSQL: made when missing (and this user may), brought up to
date when the code has added columns, refused when they sit in the layout before schemas. SQLite needs
none of it (sact_pipeline.warehouse creates its tables). `sact-pipeline db init` (sact_pipeline.database)
does the same as an administrator, with roles and grants.
"""

from __future__ import annotations

import sqlalchemy as sa

from sact_pipeline.tables import SCHEMAS, metadata

# pg_advisory_xact_lock key: processes starting on a new warehouse at once create its schemas in turn.
SCHEMA_LOCK = 0x5AC7_0006


class WarehouseError(Exception):
    """The warehouse database is not in a state the pipeline can use; the message says what to run."""


class WarehouseSchemaMissing(WarehouseError):
    """A PostgreSQL warehouse lacks a schema and the connecting user may not create it (the loader before
    `sact-pipeline db init`)."""


class WarehouseLayoutOutdated(WarehouseError):
    """Warehouse tables still sit in schema public (the layout before schemas): starting afresh beside them
    would look like an empty warehouse and re-run everything, so the pipeline refuses until they are moved."""


RUN_DB_INIT = "run `sact-pipeline db init --admin-url postgresql://postgres@<host>:<port>/<database>` (a superuser)"


def prepare_postgres(connection: sa.Connection) -> None:
    """Make sure the schemas and tables exist: create what is missing when this user may (the loader owns
    its schemas after db init; a superuser may anyway), else say what to run."""
    connection.execute(sa.select(sa.func.pg_advisory_xact_lock(SCHEMA_LOCK)))
    names = [table.name for table in metadata.sorted_tables]
    in_public = connection.execute(sa.text(
        "select tablename from pg_tables where schemaname = 'public' and tablename = any(:names)"
    ), {"names": names}).scalars().all()
    if in_public:
        raise WarehouseLayoutOutdated(f"schema public holds warehouse tables of the layout before schemas "
                                      f"({', '.join(sorted(in_public))}): {RUN_DB_INIT} to move them, with their "
                                      "rows, into schemas raw, clean and published")
    present = set(connection.execute(sa.text("select nspname from pg_namespace where nspname = any(:names)"),
                                     {"names": list(SCHEMAS)}).scalars())
    missing = [schema for schema in SCHEMAS if schema not in present]
    if missing:
        if not connection.execute(sa.text("select has_database_privilege(current_database(), 'CREATE')")).scalar():
            raise WarehouseSchemaMissing(f"the warehouse database has no schema {', '.join(missing)} and this user "
                                         f"may not create it: {RUN_DB_INIT} once; it creates the schemas, owned "
                                         "by the loader role sact_loader")
        for schema in missing:
            connection.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
    metadata.create_all(connection)
    add_new_columns(connection)


def add_new_columns(connection: sa.Connection) -> None:
    """Columns added to a table since a warehouse was made, added to it (create_all adds only tables).
    Such a column is nullable (rows already there hold NULL: the items of SACT v4 in raw, say) or carries
    a server default, which fills the rows already there."""
    inspector = sa.inspect(connection)
    for table in metadata.sorted_tables:
        schema = table.schema if connection.dialect.name == "postgresql" else None
        present = {column["name"] for column in inspector.get_columns(table.name, schema=schema)}
        for column in table.columns:
            if column.name in present or (column.server_default is None and not column.nullable):
                continue
            kind = column.type.compile(dialect=connection.dialect)
            name = f"{schema}.{table.name}" if schema else table.name
            if column.server_default is None:
                connection.exec_driver_sql(f'ALTER TABLE {name} ADD COLUMN "{column.name}" {kind}')
                continue
            default = column.server_default.arg
            default = default.compile(dialect=connection.dialect) if hasattr(default, "compile") else f"'{default}'"
            connection.exec_driver_sql(f'ALTER TABLE {name} ADD COLUMN "{column.name}" {kind} NOT NULL '
                                       f"DEFAULT {default}")
