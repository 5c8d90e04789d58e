"""Write-audit-publish, the parts every layer shares: a layer's outcome, its gate, prepared partitions
not yet validated or written, and files swapped in atomically beside a warehouse write."""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

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
class _Prepared:
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


def _raise_failure(result: LayerOutcome | LayerGateFailed) -> LayerOutcome:
    if isinstance(result, LayerGateFailed):
        raise result
    return result


STAGE_SECONDS: Counter = Counter()  # seconds per stage in this process and its workers: the benchmark reports them


@contextmanager
def stage(name: str):
    """Add the time spent in the block to STAGE_SECONDS[name] (a clock read: nothing to switch off)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        STAGE_SECONDS[name] += time.perf_counter() - started


def _fingerprint(parts) -> str:
    return hashlib.sha256("\n".join(sorted(map(str, parts))).encode("utf-8")).hexdigest()


def _stage(final: Path, data: bytes) -> tuple[Path, Path]:
    """Write beside the final file so the later rename is atomic on the same file system."""
    handle, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    with os.fdopen(handle, "wb") as stream:
        stream.write(data)
    return Path(name), final




def swap_in(files: dict[Path, bytes], commit: Callable[[], None]) -> None:
    """Put files in place (each written beside its final path, then renamed), then commit the warehouse
    write; if that fails, the previous files come back, so the outputs and the recorded state never
    disagree. A crash between the two leaves new files with the old state: the next run writes both."""
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True)
    staged, backups = [], []
    try:
        for path, data in files.items():
            staged.append(_stage(path, data))
        for temporary, final in staged:
            backup = final.with_name(f".{final.name}.previous")
            if final.exists():
                os.replace(final, backup)
                backups.append((backup, final))
            os.replace(temporary, final)
        commit()
    except BaseException:
        for temporary, final in staged:
            temporary.unlink(missing_ok=True)
            if not any(final == f for _, f in backups):
                final.unlink(missing_ok=True)
        for backup, final in backups:
            os.replace(backup, final)
        raise
    for backup, _ in backups:
        backup.unlink(missing_ok=True)
