"""Many trust-months at once: raw, clean and data quality for a month's trusts, in batches bounded by
rows (memory), one GX run per suite per batch, a large month in worker processes.

Each trust-month is still written in its own transaction once its suites pass: one failing trust-month
keeps its last good rows and the others go on (write-audit-publish per trust-month).
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import threading
import traceback
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from datetime import date
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from sact_pipeline import quality
from sact_pipeline.assessment import DataQualityLayer
from sact_pipeline.clean_layer import CleanLayer
from sact_pipeline.context import PipelineContext, UsesContext
from sact_pipeline.gating import LayerHeld, LayerOutcome, PreparedWrite
from sact_pipeline.measurements import Measurements
from sact_pipeline.protection import DataProtection
from sact_pipeline.raw_layer import RawLayer
from sact_pipeline.settings import Settings
from sact_pipeline.state import CLEAN, QUALITY, RAW

TRUST_MONTH_LAYERS = (RAW, CLEAN, QUALITY)  # built in this order, a batch of a month's trusts at a time


class TrustMonthBuilder(UsesContext):
    """Builds the trust-month layers of a month's trusts together."""

    BATCH_ROWS = 200_000  # registered rows in memory at once (over all workers): bounds memory, whatever the month
    PARALLEL_MIN_ROWS = 100_000  # below this, starting worker processes costs more than it saves

    def __init__(self, context: PipelineContext, raw: RawLayer, cleaning: CleanLayer,
                 assessment: DataQualityLayer, protection: DataProtection):
        super().__init__(context)
        self.raw, self.cleaning, self.assessment, self.protection = raw, cleaning, assessment, protection
        self._pool: ProcessPoolExecutor | None = None  # worker processes, started by the first large month

    def close(self) -> None:
        """Stop the worker processes (idle between months): the pipeline is done with."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _worker_pool(self, workers: int) -> ProcessPoolExecutor:
        """The pipeline's pool, kept between months and runs (a worker pays pandas' and GX's imports once).

        Spawned, not forked: the parent may be a Dagster process with threads. Workers that were idle for a
        while hold no database connection (_build_batch_in_worker disposes it). A pool that broke while idle
        (a worker killed between months) is replaced."""
        if self._pool is not None and getattr(self._pool, "_broken", False):
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    @classmethod
    def of(cls, context: PipelineContext) -> "TrustMonthBuilder":
        """A builder with layers of its own (a worker process's)."""
        protection = DataProtection(context)
        return cls(context, RawLayer(context), CleanLayer(context, protection), DataQualityLayer(context), protection)

    def build_trust_months(self, month: str, trusts: list[str], layers=TRUST_MONTH_LAYERS,
                           files: pd.DataFrame | None = None) -> dict[str, dict]:
        """Raw, clean, then data quality for the trusts of one month: {layer: {trust: LayerOutcome or the
        exception}}."""
        results: dict[str, dict] = {layer: {} for layer in layers}
        for layer, trust, result in self.iter_trust_months(month, trusts, layers, files):
            results[layer][trust] = result
        return results

    def iter_trust_months(self, month: str, trusts: list[str], layers=TRUST_MONTH_LAYERS,
                          files: pd.DataFrame | None = None) -> Iterator[tuple[str, str, object]]:
        """Raw, clean and data quality for the trusts of one month, yielding (layer, trust, LayerOutcome or
        the exception)
        batch by batch, so that the caller reports each trust-month once it is written.

        Trusts are taken in batches of about BATCH_ROWS registered rows: each batch is built, validated
        with one GX run per suite when it passes as a whole (validate_parts), and each trust-month is then
        written in its own transaction. A failing trust-month keeps its last good rows; the others go on.
        A month of more than PARALLEL_MIN_ROWS rows is built by `settings.workers` processes, a batch
        each (so both cores work, and this process reports events meanwhile); see _build_in_workers.
        """
        files = self.status.accepted_files() if files is None else files
        sizes = files.loc[files["reporting_month"] == month].groupby("trust_code")["data_rows"].sum()
        total = int(sizes.reindex(trusts).fillna(0).sum())
        workers = self.settings.workers if total > self.PARALLEL_MIN_ROWS else 1
        if multiprocessing.current_process().daemon:  # a daemonic process may not start processes
            workers = 1
        limit = self.BATCH_ROWS // workers  # the batches being built hold about BATCH_ROWS rows together
        batches, batch, rows = [], [], 0
        for trust in trusts:
            if batch and rows + int(sizes.get(trust, 0)) > limit:
                batches.append(batch)
                batch, rows = [], 0
            batch.append(trust)
            rows += int(sizes.get(trust, 0))
        batches += [batch] if batch else []
        if workers > 1 and len(batches) > 1:
            yield from self._build_in_workers(month, batches, layers, files, workers)
            return
        for batch in batches:
            yield from self.build_batch(month, batch, layers, files)

    def build_batch(self, month: str, batch: list[str], layers, files: pd.DataFrame
                     ) -> Iterator[tuple[str, str, object]]:
        """Raw, clean and data quality for one batch of a month's trusts, in this process."""
        loaded: dict[str, PreparedWrite] = {}
        if RAW in layers:
            prepared = [self.raw.prepare(month, trust, files) for trust in batch]
            for item, result in zip(prepared, self.context.audit_and_write(prepared)):
                yield RAW, item.trust, result
                if not isinstance(result, Exception):
                    loaded[item.trust] = item
            batch = [t for t in batch if t in loaded]
            del prepared
        if CLEAN in layers:
            prepared, held = [], self.status.held_trust_months(files)  # once a batch, after its raw gates
            optouts = self.protection.opted_out()
            for trust in batch:
                try:
                    prepared.append(self.cleaning.prepare(month, trust, files, held, loaded.pop(trust, None), optouts))
                except LayerHeld as held_error:
                    yield CLEAN, trust, held_error
            results = self.context.audit_and_write(prepared)
            for item, result in zip(prepared, results):
                yield CLEAN, item.trust, result
            batch = [item.trust for item, result in zip(prepared, results) if isinstance(result, LayerOutcome)]
            del prepared
        if QUALITY in layers:
            clean_states = self.warehouse.layer_states(CLEAN)
            prepared = []
            for trust in batch:
                try:
                    with self.measurements.stage("data quality (read and assess)"):
                        prepared.append(self.assessment.prepare(month, trust, files, clean_states))
                except ValueError as not_built:  # its clean layer was never built: say so, for this one only
                    yield QUALITY, trust, LayerHeld(str(not_built))
            for item, result in zip(prepared, self.context.audit_and_write(prepared)):
                yield QUALITY, item.trust, result

    def _build_in_workers(self, month: str, batches: list[list[str]], layers, files: pd.DataFrame,
                          workers: int) -> Iterator[tuple[str, str, object]]:
        """Batches in worker processes (the pipeline's pool), one a worker at a time; results
        as batches finish.

        A worker writes its trust-months itself (each in its own transaction, as in one process; on
        SQLite the workers take turns at the write lock), so only outcomes come back, never rows. No
        batch waits in a queue: when one fails, or the caller stops, the batches being built are waited
        for (and, on a failure, reported) and no more start. So no worker is still writing once this
        returns, and a retry of the step never races a stale batch over the same trust-months."""
        # The summary and publication after this need GX here too: import it (3 s) while the workers work.
        threading.Thread(target=quality.import_gx, name="import-gx", daemon=True).start()
        pool = self._worker_pool(workers)
        waiting, running, error = list(reversed(batches)), set(), None
        try:
            while waiting or running:
                while waiting and len(running) < workers:
                    running.add(pool.submit(_build_batch_in_worker, self.settings, self.today, self.pseudonymiser,
                                            month, waiting.pop(), tuple(layers), files))
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    results, batch_error = _worker_results(future, self.measurements)
                    yield from results
                    error = error or batch_error
                if error is not None:
                    waiting.clear()  # the batches being built finish and are reported; then the error
            if error is not None:
                raise error
        except BrokenProcessPool:
            self._pool = None  # a worker died (killed, out of memory): a new pool next time
            raise
        finally:
            wait(running)  # abandoned by the caller: let the batches being built finish their transactions


# --- worker processes ---------------------------------------------------------------------------------------
_WORKER_BUILDERS: dict[tuple, "TrustMonthBuilder"] = {}


class WorkerTraceback(Exception):
    """Where an error happened in a worker process: its traceback, as text (code lines and the message,
    as the same error shows in one process)."""


def _worker_results(future, measurements: Measurements) -> tuple[list, BaseException | None]:
    """A finished batch's results and unexpected error (raised from its worker's traceback); its stage
    seconds, suite runs and peak memory are added to this process's measurements."""
    results, measured, error, trace, pid = future.result()
    measurements.add(measured)
    if error is not None:
        error.__cause__ = WorkerTraceback(f"in worker process {pid}:\n{trace}")
    return results, error


def _build_batch_in_worker(settings: Settings, today: date, pseudonymiser, month: str, batch: list[str],
                           layers: tuple[str, ...], files: pd.DataFrame):
    """A batch of trust-months in a worker: (results, its measurements (with this worker's peak resident
    memory), unexpected error, its traceback, pid).

    The pseudonymiser comes from the parent (over the pool's pipe, never logged), so a worker can never
    pseudonymise with another key than the run's. An unexpected error is returned after the results
    before it, so the parent still reports the trust-months that were written; one that would not
    survive pickling is sent as a RuntimeError naming its type (an unpicklable result breaks the pool)."""
    key = (settings, today, pseudonymiser.key_id)
    if key not in _WORKER_BUILDERS:
        _WORKER_BUILDERS.clear()  # one run's settings and key at a time: keep no earlier key
        _WORKER_BUILDERS[key] = TrustMonthBuilder.of(PipelineContext(settings, today=today, pseudonymiser=pseudonymiser))
    builder = _WORKER_BUILDERS[key]
    builder.measurements.clear()  # this batch's figures only: the parent adds them up
    results, error, trace = [], None, ""
    try:
        for result in builder.build_batch(month, batch, layers, files):
            results.append(result)
    except Exception as unexpected:  # noqa: BLE001 - re-raised by the parent after the results before it
        error, trace = unexpected, traceback.format_exc()
        if isinstance(error, sa.exc.StatementError):
            error.params = None  # the rows it was writing (hidden from its message): not sent to the parent
        try:
            pickle.loads(pickle.dumps(error))
        except Exception:  # noqa: BLE001
            error = RuntimeError(f"{type(unexpected).__name__}: {unexpected}")
    finally:
        builder.warehouse.dispose()  # no idle connection between batches (a database may be dropped)
    builder.measurements.worker_peak_mb[os.getpid()] = _peak_resident_mb()
    return results, builder.measurements, error, trace, os.getpid()


def _peak_resident_mb() -> float:
    """This process's peak resident memory: VmHWM, which (unlike ru_maxrss) a spawned process does not
    inherit from its parent. 0 where /proc is not there."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return 0.0
    return next((int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmHWM:")), 0.0)
