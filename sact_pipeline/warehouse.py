"""The warehouse: SQLite by default, PostgreSQL the same way, through SQLAlchemy Core.

Each layer's live table is replaced per partition in ONE transaction (delete the partition, bulk-load
the already-validated frame, record the layer state), so a failed run leaves the last good rows in
place. PostgreSQL loads use COPY; the driver is psycopg2, which dagster-postgres already needs, so the
project carries a single PostgreSQL driver (a bare postgresql:// URL is pinned to it).

The tables are sact_pipeline.tables; SQLite has no schemas, so this module's engine maps the three to
none and every Core statement is the same on both (hand-written SQL must name the schema on PostgreSQL).
"""

from __future__ import annotations

import fcntl
import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url

from sact_pipeline.bulk_load import copy_into, omitted_value, sqlite_insert, typed_frame
from sact_pipeline.tables import (
    clean_activity,
    clean_file_versions,
    clean_quarantine,
    file_swaps,
    gate_failures,
    layer_state,
    metadata,
    optout_files,
    optout_patients,
    optout_pending,
    raw_purges,
    raw_submissions,
    rejected_files,
    submission_files,
    SCHEMAS,
)
from sact_pipeline.warehouse_schema import (  # noqa: F401 - the errors callers catch
    WarehouseError,
    WarehouseLayoutOutdated,
    WarehouseSchemaMissing,
    add_new_columns,
    prepare_postgres,
)


@dataclass(frozen=True)
class LayerState:
    layer: str
    reporting_month: str
    trust_code: str
    fingerprint: str
    row_count: int


def is_transient_database_error(error: BaseException) -> bool:
    """Worth retrying: the connection dropped, the server restarted or refused connections for a while, a
    deadlock, a lock or pool timeout. Not bad data or a broken constraint: those fail the same way again."""
    if isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DisconnectionError,
                              sa.exc.TimeoutError))


def engine_for(url: str) -> sa.Engine:
    """SQLAlchemy engine; a bare postgresql:// URL uses psycopg2, SQLite maps the schemas to none (see
    module docstring)."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg2")
    if parsed.get_backend_name() == "sqlite":
        if parsed.database:
            from pathlib import Path

            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, connect_args={"timeout": 60}, hide_parameters=True,
                                  execution_options={"schema_translate_map": dict.fromkeys(SCHEMAS)})
        sa.event.listen(engine, "connect", _sqlite_write_ahead_log)
        return engine
    # hide_parameters: a failed INSERT must not print raw rows (patient identifiers) into error messages.
    return sa.create_engine(parsed, pool_pre_ping=True, hide_parameters=True)


_REGISTER_LOCK = 0x5AC7_0007  # landing-zone scans record their files in turn (read, then insert what is new)
_REFRESH_LOCK = 0x5AC7_0008  # pg_advisory_lock: one refresh at a time per warehouse
OPTOUT_LOCK = 0x5AC7_0F7  # opt-out registration (alone) versus clean writes (shared)
OPTOUT_APPLIED, OPTOUT_REJECTED = "applied", "rejected"  # optout_files.status
OPTOUT_MATCH_CHUNK = 5_000  # opted-out keys per IN list (SQLite allows 32,766 parameters)


def _lock_key(*parts: str) -> int:
    """A signed 64-bit advisory lock key for a partition of a table."""
    digest = hashlib.blake2b("\x1f".join(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _sqlite_write_ahead_log(dbapi_connection, _record) -> None:
    """WAL with synchronous=NORMAL: readers (sensor, UI) never block the writer, and a commit is not an
    fsync. A crash of the process cannot lose or half-apply a committed transaction; only a power cut can
    lose the last ones, which the next refresh rebuilds from the landing zone."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class Warehouse:
    def __init__(self, url: str):
        self.url = url
        self.engine = engine_for(url)
        self.optouts = OptOutQueries(self.engine)
        self.is_postgres = self.engine.dialect.name == "postgresql"
        if self.is_postgres:
            with self.engine.begin() as connection:
                prepare_postgres(connection)
        else:
            with self.engine.begin() as connection:
                metadata.create_all(connection)
                add_new_columns(connection)

    def dispose(self) -> None:
        self.engine.dispose()

    # --- reading ---------------------------------------------------------------------------------------
    def read(self, table: sa.Table, **where) -> pd.DataFrame:
        query = sa.select(table)
        for column, value in where.items():
            query = query.where(table.c[column] == value)
        with self.engine.connect() as connection:
            frame = pd.read_sql(query, connection)
        return typed_frame(table, frame)

    def read_months(self, table: sa.Table, months: list[str]) -> pd.DataFrame:
        query = sa.select(table).where(table.c.reporting_month.in_(months))
        with self.engine.connect() as connection:
            return typed_frame(table, pd.read_sql(query, connection))

    def layer_states(self, layer: str) -> dict[tuple[str, str], str]:
        query = sa.select(layer_state.c.reporting_month, layer_state.c.trust_code, layer_state.c.fingerprint).where(
            layer_state.c.layer == layer
        )
        with self.engine.connect() as connection:
            return {(m, t): f for m, t, f in connection.execute(query)}

    def gate_failures(self) -> pd.DataFrame:
        with self.engine.connect() as connection:
            return pd.read_sql(sa.select(gate_failures), connection)

    def record_gate_failure(self, layer: str, month: str, trust: str, inputs_fingerprint: str, message: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(sa.delete(gate_failures).where(
                gate_failures.c.reporting_month == month, gate_failures.c.trust_code == trust,
                gate_failures.c.layer == layer))
            connection.execute(sa.insert(gate_failures).values(
                reporting_month=month, trust_code=trust, layer=layer, inputs_fingerprint=inputs_fingerprint,
                message=message, failed_at=datetime.now()))

    # --- what the layers were built from (sact_pipeline.state asks) ----------------------------------------
    def pending_optouts(self) -> dict[tuple[str, str], frozenset[str]]:
        """Trust-months to re-derive because of opt-outs, with the opt-out files (SHA-256) not yet applied."""
        pending: dict[tuple[str, str], set[str]] = {}
        with self.engine.connect() as connection:
            for month, trust, sha in connection.execute(sa.select(optout_pending)):
                pending.setdefault((month, trust), set()).add(sha)
        return {key: frozenset(files) for key, files in pending.items()}

    def clean_key_ids(self) -> dict[tuple[str, str], str]:
        """The pseudonymisation key id each clean trust-month was built with."""
        query = sa.select(clean_file_versions.c.reporting_month, clean_file_versions.c.trust_code,
                          clean_file_versions.c.pseudonymisation_key_id).distinct().where(clean_file_versions.c.in_use)
        with self.engine.connect() as connection:
            return {(m, t): k for m, t, k in connection.execute(query)}

    def purged_trust_months(self) -> set[tuple[str, str]]:
        """Trust-months whose identifiable raw rows were purged (retention): they cannot be re-derived."""
        with self.engine.connect() as connection:
            query = sa.select(raw_purges.c.reporting_month, raw_purges.c.trust_code)
            return {(month, trust) for month, trust in connection.execute(query)}

    def opted_out_rows(self, months: list[str]) -> dict[tuple[str, str], int]:
        """Rows removed for opt-outs from the clean trust-months of these months (those with any)."""
        query = sa.select(clean_file_versions.c.reporting_month, clean_file_versions.c.trust_code,
                          clean_file_versions.c.opted_out_rows).where(
            clean_file_versions.c.in_use, clean_file_versions.c.reporting_month.in_(months),
            clean_file_versions.c.opted_out_rows > 0)
        with self.engine.connect() as connection:
            return {(m, t): n for m, t, n in connection.execute(query)}

    def raw_versions(self, month: str, trust: str) -> set[tuple[str, str]]:
        """(file name, SHA-256) of the file versions of a trust-month already in the raw layer."""
        query = sa.select(raw_submissions.c.file_name, raw_submissions.c.file_sha256).distinct().where(
            raw_submissions.c.reporting_month == month, raw_submissions.c.trust_code == trust)
        with self.engine.connect() as connection:
            return {(name, sha) for name, sha in connection.execute(query)}

    def clean_rows_for_counting(self, month: str, trusts: list[str]) -> pd.DataFrame:
        """The counted columns of the given trusts' clean rows (only trusts whose sites send files)."""
        columns = ["trust_code", "patient_key", "regimen", "start_date_of_regimen", "cycle_number",
                   "start_date_of_cycle"]
        query = sa.select(*(clean_activity.c[c] for c in columns)).where(
            clean_activity.c.reporting_month == month, clean_activity.c.trust_code.in_(trusts))
        with self.engine.connect() as connection:
            return pd.read_sql(query, connection)

    def raw_rows_before(self, cutoff: str) -> list[tuple[str, str, int]]:
        """(month, trust, raw rows) of every trust-month before the month `cutoff`, sorted."""
        query = sa.select(raw_submissions.c.reporting_month, raw_submissions.c.trust_code,
                          sa.func.count()).where(raw_submissions.c.reporting_month < cutoff).group_by(
            raw_submissions.c.reporting_month, raw_submissions.c.trust_code)
        with self.engine.connect() as connection:
            return sorted((m, t, n) for m, t, n in connection.execute(query))

    # --- the file register --------------------------------------------------------------------------------
    def register_files(self, files: pd.DataFrame, rejections: pd.DataFrame,
                       accepted_again: list[tuple[str, str]] = ()) -> None:
        """Record one landing-zone scan in one transaction: new accepted versions, rejections (new ones
        inserted, known ones marked as seen again), and earlier rejections that now pass."""
        with self.engine.begin() as connection:
            if self.is_postgres:  # two scans at once would both insert the same new version
                connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_REGISTER_LOCK)))
            if len(files):
                existing = pd.read_sql(sa.select(submission_files.c.sha256, submission_files.c.relative_path),
                                       connection)
                keys = set(zip(existing["sha256"], existing["relative_path"]))
                new = files.loc[[(s, p) not in keys for s, p in zip(files["sha256"], files["relative_path"])]]
                self._append(connection, submission_files, new)
            for path, digest in accepted_again:
                connection.execute(sa.delete(rejected_files).where(
                    rejected_files.c.relative_path == path, rejected_files.c.sha256 == digest))
            if len(rejections):
                existing = pd.read_sql(sa.select(rejected_files.c.sha256, rejected_files.c.relative_path), connection)
                keys = set(zip(existing["sha256"], existing["relative_path"]))
                known = [(s, p) in keys for s, p in zip(rejections["sha256"], rejections["relative_path"])]
                rejections = rejections.assign(last_seen_at=rejections["rejected_at"])
                self._append(connection, rejected_files, rejections.loc[[not k for k in known]])
                for record in rejections.loc[known].itertuples():
                    connection.execute(sa.update(rejected_files).where(
                        rejected_files.c.sha256 == record.sha256,
                        rejected_files.c.relative_path == record.relative_path,
                    ).values(last_seen_at=record.last_seen_at.to_pydatetime()))

    # --- replacing a partition -------------------------------------------------------------------------------
    def replace_partition(
        self,
        where: dict[str, str],
        frames: dict[sa.Table, pd.DataFrame],
        state: LayerState | None = None,
        **hooks,
    ) -> None:
        """Swap in the new rows of a partition for every given table, and its layer state, atomically."""
        self.replace([(table, where, frame) for table, frame in frames.items()], state, **hooks)

    def replace(
        self,
        operations: list[tuple[sa.Table, dict[str, str], pd.DataFrame]],
        state: LayerState | None = None,
        *,
        before: Callable[[sa.Connection], None] | None = None,
        after: Callable[[sa.Connection], None] | None = None,
    ) -> None:
        """Delete-then-insert each (table, where, rows) and record the layer state, all in one transaction;
        `before` and `after` run in it first and last (a lock; bookkeeping that must commit with the rows).

        The rows are made ready for the database (SQLite parameters, the COPY text) before the
        transaction begins: on SQLite the write lock is then held only while the database works, which
        is what other writers (a second worker, the sensor) wait for."""
        loads = [(table, where, self._ready(table, frame)) for table, where, frame in operations]
        with self.engine.begin() as connection:
            if self.is_postgres:  # two writers of a partition in turn, or both deletes miss the other's rows
                keys = {_lock_key(table.name, *map(str, sorted(where.items()))) for table, where, _ in loads}
                if state is not None:
                    keys.add(_lock_key(layer_state.name, state.layer, state.reporting_month, state.trust_code))
                for key in sorted(keys):  # always in the same order: no deadlock between two writers
                    connection.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))
            if before is not None:
                before(connection)
            for table, where, load in loads:
                condition = sa.and_(*(table.c[column] == value for column, value in where.items()))
                connection.execute(sa.delete(table).where(condition))
                if load is not None:
                    load(connection)
            if state is not None:
                connection.execute(sa.delete(layer_state).where(sa.and_(
                    layer_state.c.layer == state.layer,
                    layer_state.c.reporting_month == state.reporting_month,
                    layer_state.c.trust_code == state.trust_code,
                )))
                connection.execute(sa.insert(layer_state).values(
                    layer=state.layer, reporting_month=state.reporting_month, trust_code=state.trust_code,
                    fingerprint=state.fingerprint, row_count=state.row_count, updated_at=datetime.now(),
                ))
                connection.execute(sa.delete(gate_failures).where(
                    gate_failures.c.reporting_month == state.reporting_month,
                    gate_failures.c.trust_code == state.trust_code, gate_failures.c.layer == state.layer))
            if after is not None:
                after(connection)

    # --- files published with a write (gating.swap_in) -------------------------------------------------------
    def record_swap(self, token: str) -> Callable[[sa.Connection], None]:
        """The hook that commits a file swap's token with the write it belongs to."""
        return lambda connection: connection.execute(sa.insert(file_swaps).values(
            token=token, committed_at=datetime.now()))

    def committed_swaps(self, tokens: list[str]) -> set[str]:
        with self.engine.connect() as connection:
            return set(connection.execute(sa.select(file_swaps.c.token).where(file_swaps.c.token.in_(tokens)))
                       .scalars())

    def forget_swaps(self, tokens: list[str]) -> None:
        with self.engine.begin() as connection:
            connection.execute(sa.delete(file_swaps).where(file_swaps.c.token.in_(tokens)))

    # --- one refresh at a time -------------------------------------------------------------------------------
    @contextmanager
    def refresh_lock(self, waiting: Callable[[], None] = lambda: None) -> Iterator[None]:
        """Hold the warehouse's refresh lock for the block; `waiting()` is called first if another process
        holds it (then this one waits its turn). PostgreSQL: a session advisory lock; SQLite: an flock on
        a file beside the database. Either is released by the operating system or the server if the
        holder dies, so a killed refresh never leaves the warehouse locked."""
        if self.is_postgres:
            connection = self.engine.connect()
            try:
                if not connection.execute(sa.select(sa.func.pg_try_advisory_lock(_REFRESH_LOCK))).scalar():
                    waiting()
                    connection.execute(sa.select(sa.func.pg_advisory_lock(_REFRESH_LOCK)))
                connection.commit()  # the lock is the session's: no transaction left open while we work
                yield
            finally:
                connection.invalidate()  # closing the session releases the lock (even if the server restarted)
                connection.close()
            return
        database = make_url(self.url).database
        if not database or database == ":memory:":
            yield
            return
        with open(Path(f"{database}.refresh-lock"), "a+b") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                waiting()
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _append(self, connection: sa.Connection, table: sa.Table, frame: pd.DataFrame) -> None:
        load = self._ready(table, frame)
        if load is not None:
            load(connection)

    def _ready(self, table: sa.Table, frame: pd.DataFrame | None):
        """A function that loads `frame` into `table` on a connection (None when there are no rows)."""
        if frame is None or frame.empty:
            return None
        # A column the frame lacks takes what an INSERT that omits it would: its server default, else NULL
        # (an item of the other SACT version, say); a required column without a default must be there.
        missing = {c.name: omitted_value(c) for c in table.columns
                   if c.name not in frame and (c.nullable or c.server_default is not None)}
        frame = frame.assign(**missing) if missing else frame
        frame = frame[[c.name for c in table.columns]]
        return copy_into(table, frame) if self.is_postgres else sqlite_insert(table, frame)


class OptOutQueries:
    """The opt-out register's SQL (sact_pipeline.protection decides when): a registration and a clean
    write of a trust-month holding its patient may run at once; clean writes share OPTOUT_LOCK, a
    registration holds it alone (PostgreSQL; SQLite has one writer at a time)."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine

    @staticmethod
    def lock(connection: sa.Connection, *, exclusive: bool) -> None:
        """Take the opt-out lock for the rest of the transaction (PostgreSQL)."""
        if connection.dialect.name == "postgresql":
            function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
            connection.execute(sa.text(f"SELECT {function}(:key)"), {"key": OPTOUT_LOCK})

    def applied(self, key_id: str) -> tuple[frozenset[str], frozenset[str]]:
        """(files, patient keys under key_id) of every applied opt-out, read in that order on one connection,
        so a file registered meanwhile is never counted as applied without its patients."""
        with self.engine.connect() as connection:
            files = frozenset(connection.execute(sa.select(optout_files.c.sha256).where(
                optout_files.c.status == OPTOUT_APPLIED)).scalars())
            keys = frozenset(connection.execute(sa.select(optout_patients.c.patient_key).where(
                optout_patients.c.pseudonymisation_key_id == key_id,
                optout_patients.c.file_sha256.in_(sorted(files)))).scalars()) if files else frozenset()
        return files, keys

    def files_without_keys(self, key_id: str) -> int:
        """Applied opt-out files (with entries) that have no patient keys under key_id."""
        keyed = sa.select(optout_patients.c.file_sha256).where(optout_patients.c.pseudonymisation_key_id == key_id)
        with self.engine.connect() as connection:
            return connection.execute(sa.select(sa.func.count()).select_from(optout_files).where(
                optout_files.c.status == OPTOUT_APPLIED, optout_files.c.entries > 0,
                optout_files.c.sha256.not_in(keyed))).scalar()

    def forget_keys(self, keep_key_ids: set[str]) -> int:
        """Delete opt-out patient keys made with any other key id; the number deleted."""
        with self.engine.begin() as connection:
            return connection.execute(sa.delete(optout_patients).where(
                optout_patients.c.pseudonymisation_key_id.not_in(sorted(keep_key_ids)))).rowcount

    @staticmethod
    def matches(connection: sa.Connection, key_id: str, *, month: str | None = None,
                       trust: str | None = None, file_sha256: str | None = None,
                       not_files: frozenset[str] = frozenset()) -> pd.DataFrame:
        """(reporting_month, trust_code, file_sha256) of clean or quarantined rows whose patient key is an
        opted-out patient's under key_id: what still holds a patient who opted out.

        The opted-out keys are read first (none, the usual case: no scan at all) and looked up in chunks
        with IN: a join let PostgreSQL scan a month's rows once per opted-out patient (20 s a month)."""
        query = sa.select(optout_patients.c.patient_key, optout_patients.c.file_sha256).where(
            optout_patients.c.pseudonymisation_key_id == key_id)
        if file_sha256 is not None:
            query = query.where(optout_patients.c.file_sha256 == file_sha256)
        files_of: dict[str, set[str]] = {}
        for key, sha in connection.execute(query):
            if sha not in not_files:
                files_of.setdefault(key, set()).add(sha)
        keys, found = sorted(files_of), set()
        for table in (clean_activity, clean_quarantine):
            for start in range(0, len(keys), OPTOUT_MATCH_CHUNK):
                lookup = sa.select(table.c.reporting_month, table.c.trust_code, table.c.patient_key).distinct().where(
                    table.c.patient_key.in_(keys[start:start + OPTOUT_MATCH_CHUNK]))
                if month is not None:
                    lookup = lookup.where(table.c.reporting_month == month)
                if trust is not None:
                    lookup = lookup.where(table.c.trust_code == trust)
                found |= {(m, t, sha) for m, t, key in connection.execute(lookup) for sha in files_of[key]}
        return pd.DataFrame(sorted(found), columns=["reporting_month", "trust_code", "file_sha256"])

    @staticmethod
    def mark_pending(connection: sa.Connection, matches: pd.DataFrame) -> int:
        """Record trust-months to re-derive because of opt-out files (a row already there is kept: two
        writers may mark the same one); the number of trust-months."""
        if matches.empty:
            return 0
        dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
        connection.execute(dialect.insert(optout_pending).on_conflict_do_nothing(), matches.to_dict("records"))
        return len(matches[["reporting_month", "trust_code"]].drop_duplicates())

    @staticmethod
    def clear_pending(connection: sa.Connection, month: str, trust: str, applied: frozenset[str]) -> None:
        """The opt-out files a clean write of the trust-month applied are done for it."""
        connection.execute(sa.delete(optout_pending).where(
            optout_pending.c.reporting_month == month, optout_pending.c.trust_code == trust,
            optout_pending.c.file_sha256.in_(sorted(applied))))

    def mark_month_pending(self, key_id: str, month: str) -> list[str]:
        """Mark (and return) the trust codes of a month whose clean rows still hold an opted-out patient."""
        with self.engine.begin() as connection:
            matches = self.matches(connection, key_id, month=month)
            self.mark_pending(connection, matches)
        return sorted(set(matches["trust_code"]))
