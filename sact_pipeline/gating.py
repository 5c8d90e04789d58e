"""Write-audit-publish, the parts every layer shares: a layer's outcome, its gate, prepared partitions
not yet validated or written, and files published together with a warehouse write (a journal and a token
committed with the write make the pair crash-safe)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from sact_pipeline import quality

class LayerGateFailed(Exception):
    """A layer's rows failed its suite, so they were not published to the live table."""

    def __init__(self, layer: str, partition: str, outcome: "LayerOutcome"):
        super().__init__(f"{layer} layer for {partition} failed its Great Expectations suite and was not "
                         f"published: {outcome.failures()}")
        self.layer, self.partition, self.outcome = layer, partition, outcome

    def __reduce__(self):  # comes back from a worker process whole
        return type(self), (self.layer, self.partition, self.outcome)


class LayerHeld(Exception):
    """A trust-month (or a month, through one of its trust-months) whose current file versions failed a
    gate: the last good rows and publication stand until a new version of the file arrives."""


@dataclass
class LayerOutcome:
    layer: str
    partition: str
    rows: int
    suites: list[quality.SuiteOutcome] = field(default_factory=list)
    metadata: dict[str, object] = field(default_factory=dict)
    skipped: bool = False

    @property
    def success(self) -> bool:
        return all(s.success for s in self.suites)

    def failures(self) -> str:
        """The failed suites and expectations with their counts, on one line (no row values)."""
        return "; ".join(f"suite {s.suite}: {s.message()}".replace("\n", "; ") for s in self.suites
                         if not s.success)

    def gate(self) -> None:
        if not self.success:
            raise LayerGateFailed(self.layer, self.partition, self)


@dataclass
class PreparedWrite:
    """A trust-month's rows for one layer: built, not yet validated (checks) nor written (write)."""

    outcome: LayerOutcome
    month: str
    trust: str
    files: pd.DataFrame  # its registered versions: what a gate failure is recorded against
    checks: list[tuple[str, list, pd.DataFrame]] = field(default_factory=list)  # (suite, expectations, frame)
    write: Callable[[], None] | None = None  # None: nothing new to write (the outcome is skipped)
    # Raw only: the rows it loaded and their (file_name, sha256) versions, handed to clean in the same run
    # so that clean need not read back from the warehouse what raw has just written.
    loaded: pd.DataFrame | None = None
    loaded_versions: frozenset = frozenset()


def raise_failure(result: LayerOutcome | LayerGateFailed) -> LayerOutcome:
    if isinstance(result, LayerGateFailed):
        raise result
    return result


def fingerprint(parts) -> str:
    return hashlib.sha256("\n".join(sorted(map(str, parts))).encode("utf-8")).hexdigest()


SWAP_LOCK = "swap.lock"
JOURNAL_SUFFIX = ".swap.json"


class SwapLedger(Protocol):
    """Where a swap's token is committed with the warehouse write (Warehouse implements it)."""

    def record_swap(self, token: str) -> Callable[[Any], None]: ...
    def committed_swaps(self, tokens: list[str]) -> set[str]: ...
    def forget_swaps(self, tokens: list[str]) -> None: ...


@contextmanager
def _swap_lock(journal_dir: Path):
    """One swap at a time per pipeline home, across processes; the kernel drops it with a killed process."""
    journal_dir.mkdir(parents=True, exist_ok=True)
    with open(journal_dir / SWAP_LOCK, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_journal(journal_dir: Path, token: str, entries: list[tuple[Path, Path]]) -> Path:
    """The journal names every (final, staged) pair before any staged file exists; written whole, then
    renamed, so a journal is either absent or complete."""
    journal = journal_dir / f"{token}{JOURNAL_SUFFIX}"
    partial = journal.with_name(journal.name + ".part")
    partial.write_text(json.dumps({"token": token, "files": [[str(f), str(s)] for f, s in entries]}),
                       encoding="utf-8")
    os.replace(partial, journal)
    return journal


def _place_files(entries: list[tuple[Path, Path]]) -> None:
    """After the commit: each staged file renamed over its final path (atomic per file)."""
    for final, staged in entries:
        if staged.exists():
            os.replace(staged, final)


def _settle(journal: Path, ledger: SwapLedger) -> str:
    """Finish a swap its process did not: forward if its token was committed, else back. Says which, and
    of which files."""
    record = json.loads(journal.read_text(encoding="utf-8"))
    entries = [(Path(final), Path(staged)) for final, staged in record["files"]]
    if record["token"] in ledger.committed_swaps([record["token"]]):
        _place_files(entries)
        outcome = "completed"
    else:
        for _, staged in entries:
            staged.unlink(missing_ok=True)
        outcome = "rolled back"
    journal.unlink()
    ledger.forget_swaps([record["token"]])
    return f"{outcome} an interrupted write of {', '.join(final.name for final, _ in entries)}"


def _recover(journal_dir: Path, ledger: SwapLedger) -> list[str]:
    for partial in journal_dir.glob(f"*{JOURNAL_SUFFIX}.part"):  # died writing it: nothing staged yet
        partial.unlink(missing_ok=True)
    return [_settle(journal, ledger) for journal in sorted(journal_dir.glob(f"*{JOURNAL_SUFFIX}"))]


def recover_swaps(journal_dir: Path, ledger: SwapLedger) -> list[str]:
    """Settle the swaps of processes that died mid-way (killed, server lost); one line per swap settled."""
    if not journal_dir.exists():
        return []
    with _swap_lock(journal_dir):
        return _recover(journal_dir, ledger)


def swap_in(files: dict[Path, bytes], commit: Callable[[Callable[[Any], None]], None], *, journal_dir: Path,
            ledger: SwapLedger) -> None:
    """Publish files together with a warehouse write, so that they never disagree, even if the process is
    killed at any point. Each file is staged beside its final path and a journal names them; `commit(hook)`
    makes the warehouse write and must run `hook(connection)` in its transaction (it records the swap's
    token); then the staged files are renamed into place. Killed before the commit: the previous files
    were never touched and the next swap (or `recover_swaps`) removes the staged ones; killed after it:
    the next one finishes the renames, because the token says the write was committed."""
    token = uuid.uuid4().hex
    entries = [(final, final.with_name(f".{final.name}.{token}.tmp")) for final in files]
    with _swap_lock(journal_dir):
        _recover(journal_dir, ledger)
        journal = _write_journal(journal_dir, token, entries)
        try:
            for (final, staged), data in zip(entries, files.values()):
                final.parent.mkdir(parents=True, exist_ok=True)
                staged.write_bytes(data)
            commit(ledger.record_swap(token))
        except BaseException:
            try:  # the write may or may not have committed (a connection lost at COMMIT): the token says
                _settle(journal, ledger)
            except Exception:  # noqa: BLE001 - the database is unreachable: the next swap settles it
                pass
            raise
        _place_files(entries)
        journal.unlink()
        try:
            ledger.forget_swaps([token])
        except Exception:  # noqa: BLE001 - done and journal gone: a token left behind is never looked up
            pass
