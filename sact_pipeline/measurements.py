"""Where a refresh spends its time, counted as it runs: seconds per stage, GX suite runs, and the peak
memory of worker processes. The benchmark and a few tests read them; nothing in the pipeline decides on
them.

One Measurements per pipeline context (sact_pipeline.context), not a module global: a worker process
measures into its own context's and sends a batch's figures back with the batch, which the parent adds
to its own.
"""

from __future__ import annotations

import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Measurements:
    stage_seconds: Counter = field(default_factory=Counter)
    suite_runs: int = 0
    worker_peak_mb: dict[int, float] = field(default_factory=dict)  # by worker pid

    @contextmanager
    def stage(self, name: str):
        """Add the time spent in the block to stage_seconds[name] (a clock read: nothing to switch off)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stage_seconds[name] += time.perf_counter() - started

    def add(self, other: Measurements) -> None:
        """Add another's figures (a worker's batch) to these."""
        self.stage_seconds.update(other.stage_seconds)
        self.suite_runs += other.suite_runs
        for pid, peak in other.worker_peak_mb.items():
            self.worker_peak_mb[pid] = max(self.worker_peak_mb.get(pid, 0.0), peak)

    def clear(self) -> None:
        self.stage_seconds.clear()
        self.suite_runs = 0
        self.worker_peak_mb.clear()
