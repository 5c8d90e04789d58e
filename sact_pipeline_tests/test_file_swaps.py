"""Files published with a warehouse write, and the refresh lock, through real crashes (SIGKILL) of real
processes, on SQLite and the real PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from sact_pipeline.gating import SWAP_LOCK, recover_swaps, swap_in
from sact_pipeline.warehouse import LayerState, Warehouse
from sact_pipeline.tables import file_swaps
from sact_pipeline_tests.support import REPOSITORY

MONTH = "2024-01"


@pytest.fixture
def published(tmp_path) -> dict[Path, bytes]:
    """The previous publication: two files on disk (a third, new file comes with the next one)."""
    folder = tmp_path / "published" / MONTH
    folder.mkdir(parents=True)
    files = {folder / "table.csv": b"org_code,patients\nRR8,10\n", folder / "notes.txt": b"old notes\n"}
    for path, data in files.items():
        path.write_bytes(data)
    return files


def new_files(published: dict[Path, bytes]) -> dict[Path, bytes]:
    folder = next(iter(published)).parent
    return {folder / "table.csv": b"org_code,patients\nRR8,15\n", folder / "notes.txt": b"new notes\n",
            folder / "report.html": b"<html>new</html>\n"}


def write(warehouse: Warehouse, fingerprint: str):
    """The warehouse write of a swap: a layer state, committed with the swap's token (hook)."""
    return lambda hook: warehouse.replace_partition({"reporting_month": MONTH, "trust_code": ""}, {},
                                                    LayerState("published", MONTH, "", fingerprint, 1), after=hook)


def state(warehouse: Warehouse) -> str | None:
    return warehouse.layer_states("published").get((MONTH, ""))


def on_disk(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def tokens(warehouse: Warehouse) -> list[str]:
    with warehouse.engine.connect() as connection:
        return connection.execute(sa.select(file_swaps.c.token)).scalars().all()


def test_files_and_their_write_land_together(warehouse, published, tmp_path):
    journals = tmp_path / "file_swaps"
    swap_in(new_files(published), write(warehouse, "new"), journal_dir=journals, ledger=warehouse)
    folder = next(iter(published)).parent
    assert on_disk(folder) == {p.name: d for p, d in new_files(published).items()}  # and nothing staged is left
    assert state(warehouse) == "new"
    assert [p.name for p in journals.iterdir()] == [SWAP_LOCK] and tokens(warehouse) == []


def test_a_write_that_fails_leaves_the_previous_files_as_they_were(warehouse, published, tmp_path):
    def failing(hook):
        def fail_after_the_rows(connection):
            hook(connection)
            raise RuntimeError("the database refused the write")
        warehouse.replace_partition({"reporting_month": MONTH, "trust_code": ""}, {},
                                    LayerState("published", MONTH, "", "new", 1), after=fail_after_the_rows)

    with pytest.raises(RuntimeError, match="refused"):
        swap_in(new_files(published), failing, journal_dir=tmp_path / "file_swaps", ledger=warehouse)
    assert on_disk(next(iter(published)).parent) == {p.name: d for p, d in published.items()}
    assert state(warehouse) is None and tokens(warehouse) == []
    assert [p.name for p in (tmp_path / "file_swaps").iterdir()] == [SWAP_LOCK]


def _killed_swap(warehouse_url: str, published: dict[Path, bytes], journals: Path, kill: str) -> None:
    """swap_in in a child process SIGKILLed before its commit ('before') or after it, before the staged
    files are renamed into place ('after'): what a crash, an OOM kill or a power-off of the container does."""
    files = {str(p): d.decode() for p, d in new_files(published).items()}
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from sact_pipeline import gating
        from sact_pipeline.warehouse import LayerState, Warehouse

        def die(*_):
            os.kill(os.getpid(), signal.SIGKILL)

        warehouse = Warehouse({warehouse_url!r})
        files = {{Path(p): d.encode() for p, d in {files!r}.items()}}
        if {kill!r} == "after":
            gating._place_files = die

        def write(hook):
            if {kill!r} == "before":
                die()
            warehouse.replace_partition({{"reporting_month": {MONTH!r}, "trust_code": ""}}, {{}},
                                        LayerState("published", {MONTH!r}, "", "new", 1), after=hook)

        gating.swap_in(files, write, journal_dir=Path({str(journals)!r}), ledger=warehouse)
    """)
    child = subprocess.run([sys.executable, "-c", script], cwd=REPOSITORY, capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(REPOSITORY)}, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr


def test_a_swap_killed_before_its_commit_leaves_the_previous_files_and_is_rolled_back(warehouse, published,
                                                                                     tmp_path, warehouse_url):
    journals = tmp_path / "file_swaps"
    _killed_swap(warehouse_url, published, journals, "before")
    folder = next(iter(published)).parent
    staged = [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]
    assert len(staged) == 3, "the child staged its files before it died"
    # Right after the crash the published files are the previous ones: nothing was renamed yet.
    assert {n: d for n, d in on_disk(folder).items() if not n.endswith(".tmp")} == {
        p.name: d for p, d in published.items()}
    assert state(warehouse) is None

    assert [line.split(" an ")[0] for line in recover_swaps(journals, warehouse)] == ["rolled back"]
    assert on_disk(folder) == {p.name: d for p, d in published.items()}
    assert recover_swaps(journals, warehouse) == []  # settled once


def test_a_swap_killed_after_its_commit_is_completed(warehouse, published, tmp_path, warehouse_url):
    journals = tmp_path / "file_swaps"
    _killed_swap(warehouse_url, published, journals, "after")
    assert state(warehouse) == "new" and len(tokens(warehouse)) == 1  # the write committed, with its token

    assert [line.split(" an ")[0] for line in recover_swaps(journals, warehouse)] == ["completed"]
    assert on_disk(next(iter(published)).parent) == {p.name: d for p, d in new_files(published).items()}
    assert tokens(warehouse) == []


def test_the_next_swap_settles_one_that_was_killed(warehouse, published, tmp_path, warehouse_url):
    journals = tmp_path / "file_swaps"
    _killed_swap(warehouse_url, published, journals, "before")
    other = tmp_path / "published" / "2024-02" / "table.csv"
    swap_in({other: b"x\n"}, lambda hook: warehouse.replace_partition(
        {"reporting_month": "2024-02", "trust_code": ""}, {}, LayerState("published", "2024-02", "", "f", 1),
        after=hook), journal_dir=journals, ledger=warehouse)
    assert on_disk(next(iter(published)).parent) == {p.name: d for p, d in published.items()}
    assert other.read_bytes() == b"x\n"


def _hold_refresh_lock(warehouse_url: str, then: str) -> subprocess.Popen:
    """A child that takes the refresh lock, says so, then sleeps until killed ('die': SIGKILLs itself)."""
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        from sact_pipeline.warehouse import Warehouse
        with Warehouse({warehouse_url!r}).refresh_lock():
            print("holding", flush=True)
            if {then!r} == "die":
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(600)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], cwd=REPOSITORY, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPOSITORY)})
    assert child.stdout.readline().strip() == "holding"
    return child


def test_a_second_refresh_waits_for_the_first_and_a_killed_one_releases_the_lock(warehouse, warehouse_url):
    holder = _hold_refresh_lock(warehouse_url, then="sleep")
    waited = []
    try:
        def release_soon():
            waited.append(time.monotonic())
            holder.kill()  # the holder dies (SIGKILL) while we wait: the lock is freed by the OS or the server

        with warehouse.refresh_lock(waiting=release_soon):
            got_it = time.monotonic()
    finally:
        holder.kill()
        holder.wait()
    assert len(waited) == 1 and got_it >= waited[0], "the second refresh waited for the first"

    dead = _hold_refresh_lock(warehouse_url, then="die")
    dead.wait()
    with warehouse.refresh_lock(waiting=lambda: pytest.fail("a killed refresh left the warehouse locked")):
        pass
    with warehouse.refresh_lock(waiting=lambda: pytest.fail("the lock was not released after the block")):
        pass
