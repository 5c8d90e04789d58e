"""Bulk loading of validated frames, and reading them back, the same on SQLite and PostgreSQL.

PostgreSQL loads with COPY from a CSV pyarrow writes; SQLite with one executemany of plain tuples. Both
were measured as most of a refresh when done row by row or through pandas (BENCHMARKS.md). The
warehouse (sact_pipeline.warehouse) decides when and in which transaction a frame is loaded.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa


def omitted_value(column: sa.Column):
    """The value a database gives `column` when an INSERT leaves it out."""
    default = column.server_default.arg if column.server_default is not None else None
    if default is None:
        return None
    if isinstance(default, (sa.sql.elements.True_, sa.sql.elements.False_)):
        return isinstance(default, sa.sql.elements.True_)
    return int(default) if isinstance(column.type, sa.Integer) else default


def sqlite_insert(table: sa.Table, frame: pd.DataFrame):
    """executemany of plain tuples built column by column (Python scalars, None for missing, dates as the
    text SQLAlchemy's SQLite types store and parse back): no per-row or per-cell pandas work, which took
    most of a refresh on SQLite."""
    columns = [_sqlite_values(frame[column.name], column.type) for column in table.columns]
    names = ", ".join(f'"{c.name}"' for c in table.columns)
    marks = ", ".join("?" for _ in table.columns)
    rows = list(zip(*columns))
    # Unqualified: SQLite has no schemas (the engine's schema_translate_map drops them from Core statements).
    return lambda connection: connection.exec_driver_sql(
        f'INSERT INTO "{table.name}" ({names}) VALUES ({marks})', rows)


def _sqlite_values(values: pd.Series, kind: sa.types.TypeEngine) -> np.ndarray:
    """One column as an object array of what sqlite3 binds: str, int, float, None."""
    if isinstance(kind, (sa.DateTime, sa.Date)):
        stamps = pd.to_datetime(values).to_numpy()
        if isinstance(kind, sa.DateTime):  # SQLAlchemy's format: 2025-06-01 12:00:00.000000
            text = np.char.replace(np.datetime_as_string(stamps.astype("datetime64[us]"), unit="us"), "T", " ")
        else:  # 2025-06-01
            text = np.datetime_as_string(stamps.astype("datetime64[D]"))
        return np.where(np.isnat(stamps), None, text.astype(object))
    return values.to_numpy(dtype=object, na_value=None)


def copy_into(table: sa.Table, frame: pd.DataFrame):
    """PostgreSQL COPY FROM STDIN in CSV: orders of magnitude faster than INSERTs (platform notes).

    The CSV is written by pyarrow (several times faster than DataFrame.to_csv, which took most of a
    PostgreSQL load): strings are always quoted and missing values are bare empty fields, which is exactly
    COPY's CSV rule for '' versus NULL."""
    buffer = io.BytesIO()
    pacsv.write_csv(pa.Table.from_pandas(frame, preserve_index=False), buffer,
                    pacsv.WriteOptions(include_header=False))
    columns = ", ".join(f'"{c.name}"' for c in table.columns)
    statement = f'COPY "{table.schema}"."{table.name}" ({columns}) FROM STDIN WITH (FORMAT csv)'

    def load(connection: sa.Connection) -> None:
        buffer.seek(0)
        dbapi = connection.dialect.loaded_dbapi
        cursor = connection.connection.dbapi_connection.cursor()
        try:
            cursor.copy_expert(statement, buffer)
        except dbapi.Error as error:
            # Raise what SQLAlchemy raises for INSERTs (IntegrityError, ...), with PostgreSQL's primary
            # message only: its DETAIL and CONTEXT quote the failing row, which can hold patient identifiers.
            primary = getattr(getattr(error, "diag", None), "message_primary", None) or type(error).__name__
            raise sa.exc.DBAPIError.instance(statement, None, type(error)(primary), dbapi.Error) from None
        finally:
            cursor.close()

    return load


def typed_frame(table: sa.Table, frame: pd.DataFrame) -> pd.DataFrame:
    """Give frames read back the same dtypes on SQLite and PostgreSQL."""
    for column in table.columns:
        name = column.name
        if name not in frame:
            continue
        if isinstance(column.type, sa.DateTime):
            frame[name] = pd.to_datetime(frame[name]).astype("datetime64[us]")
        elif isinstance(column.type, sa.Date):
            frame[name] = pd.to_datetime(frame[name]).astype("datetime64[s]")
        elif isinstance(column.type, sa.BigInteger):
            frame[name] = pd.to_numeric(frame[name]).astype("Int64")
        elif isinstance(column.type, sa.Boolean):
            frame[name] = frame[name].astype(bool)
        elif isinstance(column.type, sa.Float):
            frame[name] = pd.to_numeric(frame[name]).astype("Float64")
        else:
            frame[name] = frame[name].astype("str")
    return frame
