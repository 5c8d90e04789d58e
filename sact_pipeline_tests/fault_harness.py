"""Real-process fault injection for `sact-pipeline refresh`, and what to compare after a fault.

`run_refresh` runs the real CLI in a child process (its own session and process group) through this
module's runner, which first wraps ONE function of the pipeline so that on its Nth matching call the whole
process group is SIGKILLed (or a shell command runs: a database restart), before the call or after it
returns. Nothing of ours is mocked: the runner only decides *when* the process dies.

    python -m sact_pipeline_tests.fault_harness --at SPEC [--hook 'shell command'] -- refresh --home ...

SPEC is `module:qualname[filter]@N:when`:
- `module:qualname`: the attribute to wrap, looked up in `module` (a class attribute for `Class.method`).
  Wrap a name where it is *called from*: `sact_pipeline.layers:read_submission`, not domain.landing's.
- `[filter]` (optional): only calls that touch a table or layer of that name count (a sqlalchemy Table
  among the arguments, a LayerState's layer), or a file whose name starts with it (a Path among the
  arguments), e.g. `Warehouse.replace[published]`, `_place_files[sact_submissions_2024]`.
- `@N`: the Nth counted call.
- `when`: `before` the call, `after` it returned, or `loaded`: the call returns a loader (Warehouse._ready)
  and the fault comes right after that loader ran, i.e. inside the write transaction, rows inserted and
  not committed.

The child runs with SACT_WORKERS=1 so every step runs in the one (wrapped) process, the test key, no
demo mode, and PYTHONPATH at this checkout.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from sact_pipeline_tests.support import REPOSITORY, TEST_KEY

MARKER = "FAULT HARNESS:"  # the runner's lines on stderr start with this

# Columns that record when the pipeline ran (wall clock): left out of snapshots. Times of the files
# themselves (submitted_at, first_submitted_at) are data and are kept.
WALL_CLOCK_COLUMNS = frozenset({"registered_at", "rejected_at", "last_seen_at", "updated_at", "failed_at",
                                "assessed_at", "purged_at", "committed_at"})
FILE_TIME_COLUMNS = frozenset({"submitted_at", "first_submitted_at"})

# --- the runner (in the child process) ---------------------------------------------------------------------


def _names(value, depth: int = 0) -> set[str]:
    """Table names and layer names found in a call's arguments (for a spec's [filter])."""
    import sqlalchemy as sa

    if depth > 6:
        return set()
    if isinstance(value, sa.Table):
        return {value.name}
    if isinstance(value, Path):
        return {value.name}
    if isinstance(value, dict):
        return set().union(*(_names(k, depth + 1) | _names(v, depth + 1) for k, v in value.items()))
    if isinstance(value, (list, tuple, set, frozenset)):
        return set().union(*(_names(v, depth + 1) for v in value))
    layer = getattr(value, "layer", None)
    return {layer} if isinstance(layer, str) else set()


_STDERR: list[int] = []  # the runner's own stderr: Dagster captures fd 2 into compute logs during a step


def _say(line: str) -> None:
    os.write(_STDERR[0] if _STDERR else 2, f"{MARKER} {line}\n".encode())


def _kill(spec: str) -> None:
    _say(f"SIGKILL at {spec}")
    os.killpg(os.getpgid(0), signal.SIGKILL)


def _shell(spec: str, command: str) -> None:
    _say(f"running hook at {spec}: {command}")
    done = subprocess.run(command, shell=True, capture_output=True, text=True)
    _say(f"hook exited {done.returncode}: {(done.stdout + done.stderr).strip()}")


SPEC = re.compile(r"^(?P<module>[\w.]+):(?P<qualname>[\w.]+)(?:\[(?P<filter>\w+)\])?@(?P<n>\d+):"
                  r"(?P<when>before|after|loaded)$")


def install(spec: str, hook: str | None = None) -> None:
    """Wrap the function SPEC names so that the fault (SIGKILL of the process group, or `hook`) happens once."""
    match = SPEC.match(spec)
    if match is None:
        raise SystemExit(f"bad fault spec {spec!r}: module:qualname[filter]@N:before|after|loaded")
    owner = importlib.import_module(match["module"])
    *path, name = match["qualname"].split(".")
    for part in path:
        owner = getattr(owner, part)
    original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
    if isinstance(original, (staticmethod, classmethod)):
        raise SystemExit(f"fault spec {spec!r}: static and class methods are not supported")
    wanted, when, only = int(match["n"]), match["when"], match["filter"]
    fault = (lambda: _shell(spec, hook)) if hook else (lambda: _kill(spec))
    calls = 0

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        nonlocal calls
        if only is not None and not any(only == name or name.startswith(only) for name in _names((args, kwargs))):
            return original(*args, **kwargs)
        calls += 1
        hit = calls == wanted
        if hit and when == "before":
            fault()
        result = original(*args, **kwargs)
        if hit and when == "after":
            fault()
        if hit and when == "loaded":
            if result is None:
                raise SystemExit(f"fault spec {spec!r}: the call returned no loader (no rows to load)")
            load = result

            def result(*load_args, **load_kwargs):
                value = load(*load_args, **load_kwargs)
                fault()
                return value
        return result

    setattr(owner, name, wrapper)


def _runner(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="fault_harness")
    parser.add_argument("--at", help="fault spec (none: run the command as it is)")
    parser.add_argument("--hook", help="shell command to run at the fault point instead of SIGKILL")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    _STDERR.append(os.dup(2))
    if args.at:
        install(args.at, args.hook)
    from sact_pipeline.cli import main

    return main(command)


# --- running refreshes (in the test process) ----------------------------------------------------------------


@dataclass
class Run:
    returncode: int
    out: str
    err: str

    @property
    def killed(self) -> bool:
        return self.returncode == -signal.SIGKILL

    @property
    def output(self) -> str:
        return f"--- stdout ---\n{self.out}\n--- stderr ---\n{self.err}"


def child_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith(("SACT_", "DAGSTER_")) or k == "SACT_TEST_DATABASE_URL"}
    environment.update({"PYTHONPATH": str(REPOSITORY), "SACT_WORKERS": "1",
                        "SACT_PSEUDONYMISATION_KEY": TEST_KEY, "PYTHONUNBUFFERED": "1"})
    environment.update(env or {})
    return environment


def start_refresh(home: Path, *, kill_at: str | None = None, hook: str | None = None,
                  warehouse_url: str | None = None, first_month: str = "2023-06",
                  env: dict[str, str] | None = None, command: str = "refresh") -> subprocess.Popen:
    """Start `sact-pipeline COMMAND --home HOME` in a new session (its own process group)."""
    argv = [sys.executable, "-m", "sact_pipeline_tests.fault_harness"]
    if kill_at:
        argv += ["--at", kill_at]
    if hook:
        argv += ["--hook", hook]
    argv += ["--", command, "--home", str(home), "--first-month", first_month]
    if warehouse_url:
        argv += ["--warehouse-url", warehouse_url]
    return subprocess.Popen(argv, cwd=str(home.parent), env=child_environment(env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish(process: subprocess.Popen, timeout: float = 300) -> Run:
    """Wait for a started refresh; past the timeout its process group is killed and the test fails."""
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the group this harness started (start_new_session)
        out, err = process.communicate()
        raise AssertionError(f"refresh did not finish within {timeout}s:\n{Run(process.returncode, out, err).output}")
    return Run(process.returncode, out, err)


def run_refresh(home: Path, *, kill_at: str | None = None, hook: str | None = None, warehouse_url: str | None = None,
                env: dict[str, str] | None = None, timeout: float = 300, first_month: str = "2023-06") -> Run:
    """Run a refresh to its end (or its fault) in a child process: its exit code (-9 when killed) and output."""
    return finish(start_refresh(home, kill_at=kill_at, hook=hook, warehouse_url=warehouse_url, env=env,
                                first_month=first_month), timeout)


# --- what a user relies on ----------------------------------------------------------------------------------

PRODUCED = re.compile(rb"Produced \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
# Publication files whose bytes hold the production time; the manifest lists their hashes.
TIMESTAMPED = (".xlsx", ".html", "_notes.txt")


def output_files(output_dir: Path) -> dict[str, bytes]:
    """Every file under the output folder, as bytes, by path relative to it."""
    return {p.relative_to(output_dir).as_posix(): p.read_bytes() for p in sorted(output_dir.rglob("*")) if p.is_file()}


def _masked(name: str, data: bytes):
    """A published file as compared between two runs: the production time masked (and the hashes of the
    files holding it, in the manifest); a workbook as its cell values."""
    if name.endswith(".xlsx"):
        import io

        import openpyxl

        book = openpyxl.load_workbook(io.BytesIO(data))
        return tuple((sheet.title, tuple(tuple(PRODUCED.sub(b"Produced <time>", v.encode()).decode()
                                               if isinstance(v, str) else v for v in row)
                                         for row in sheet.iter_rows(values_only=True))) for sheet in book)
    if name.endswith("_manifest.json"):
        manifest = json.loads(data)
        manifest["produced_at"] = "<time>"
        for entry in manifest.get("files", []):
            if entry["name"].endswith(TIMESTAMPED):
                entry["sha256"] = "<depends on the time>"
            if entry["name"].endswith(".xlsx"):  # the zip's compression of the time changes its size
                entry["size_bytes"] = "<depends on the time>"
        return json.dumps(manifest, sort_keys=True)
    return PRODUCED.sub(b"Produced <time>", data)


def _value(value):
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


def warehouse_tables(warehouse_url: str) -> dict[str, list[tuple]]:
    """Every warehouse table as sorted rows, without the wall-clock columns."""
    import sqlalchemy as sa

    from sact_pipeline.warehouse import engine_for
    from sact_pipeline.tables import metadata

    tables = {}
    engine = engine_for(warehouse_url)
    try:
        with engine.connect() as connection:
            for table in metadata.sorted_tables:
                columns = [c for c in table.columns if c.name not in WALL_CLOCK_COLUMNS]
                unknown = [c.name for c in columns if isinstance(c.type, sa.DateTime) and c.name not in FILE_TIME_COLUMNS]
                if unknown:  # a new time column: decide whether it is the file's time or the run's
                    raise AssertionError(f"fault_harness: classify {table.name}.{', '.join(unknown)} as a wall-clock "
                                         "or a file time column")
                rows = [tuple(_value(v) for v in row) for row in connection.execute(sa.select(*columns))]
                tables[table.name] = sorted(rows, key=repr)
    finally:
        engine.dispose()
    return tables


def snapshot(home: Path, warehouse_url: str | None = None, output_dir: Path | None = None) -> dict:
    """What a user relies on, comparable between two homes made from copies of one landing zone: every
    output file (production time masked), and every warehouse table (wall-clock columns left out).

    The GX Data Docs site is left out: it records every suite run, with its run time and id, so a run that
    was killed and re-run rightly shows more runs than an uninterrupted one."""
    output_dir = output_dir or home / "published"
    warehouse_url = warehouse_url or f"sqlite:///{home / 'warehouse.db'}"
    files = {name: _masked(name, data) for name, data in output_files(output_dir).items()
             if not name.startswith("data_docs/")}
    return {"files": files, "tables": warehouse_tables(warehouse_url)}


def snapshot_differences(actual: dict, expected: dict) -> list[str]:
    """What differs between two snapshots, by file and table name and row counts: never the values
    (raw tables hold patient identifiers, which must not reach a test report)."""
    problems = []
    for kind in ("files", "tables"):
        a, e = actual[kind], expected[kind]
        for name in sorted(set(a) | set(e)):
            if name not in a:
                problems.append(f"{kind[:-1]} {name}: missing")
            elif name not in e:
                problems.append(f"{kind[:-1]} {name}: unexpected")
            elif a[name] != e[name]:
                if kind == "tables":
                    extra = len([r for r in a[name] if r not in e[name]])
                    lost = len([r for r in e[name] if r not in a[name]])
                    problems.append(f"table {name}: {len(a[name])} rows against {len(e[name])} expected "
                                    f"({extra} not expected, {lost} missing)")
                else:
                    problems.append(f"file {name}: differs")
    return problems


def stray_staging_files(output_dir: Path, journal_dir: Path | None = None) -> list[str]:
    """Staging files left behind by an interrupted swap (`.NAME.TOKEN.tmp`) in the output folder, and unsettled swap journals in `journal_dir` (HOME/file_swaps)."""
    stray = sorted(p.relative_to(output_dir).as_posix() for p in output_dir.rglob(".*")
                   if p.name.endswith(".tmp"))
    if journal_dir is not None and journal_dir.exists():
        stray += sorted(f"journal {p.name}" for p in journal_dir.glob("*.swap.json*"))
    return stray


# --- the warehouse is consistent -----------------------------------------------------------------------------

# Per trust-month layer: its tables (the first is the one its row_count counts; None: see below).
TRUST_MONTH_TABLES = {
    "raw": ["raw_submissions"],
    "clean": ["clean_activity", "clean_quarantine", "clean_data_quality", "clean_item_quality", "clean_findings",
              "clean_file_versions"],
    "quality": ["quality_items", "quality_trust_months", "quality_findings"],
}
MONTH_TABLES = {"summary": "trust_month_summary", "published": "published_submissions"}
# Columns that identify a row: no two rows may share them.
KEYS = {
    "raw_submissions": ("reporting_month", "trust_code", "file_name", "file_sha256", "row_number"),
    "clean_activity": ("reporting_month", "trust_code", "file_sha256", "row_number"),
    "clean_quarantine": ("reporting_month", "trust_code", "file_sha256", "row_number"),
    "clean_data_quality": ("reporting_month", "trust_code", "item"),
    "clean_item_quality": ("reporting_month", "trust_code", "file_sha256", "item"),
    "clean_file_versions": ("reporting_month", "trust_code", "file_name", "file_sha256"),
    "quality_items": ("reporting_month", "trust_code", "item"),
    "quality_trust_months": ("reporting_month", "trust_code"),
    "quality_findings": ("reporting_month", "trust_code", "kind", "item", "finding"),
    "trust_month_summary": ("reporting_month", "org_code"),
    "published_submissions": ("reporting_month", "org_code"),
}


def consistency_problems(warehouse_url: str) -> list[str]:
    """What makes the warehouse inconsistent (empty: consistent). Each layer's rows and its layer state are
    written in one transaction, so at any moment, whatever was killed:
    - every layer state's row_count matches its partition's rows (raw: the rows of the file versions its
      last write loaded, every loaded version whole, and its fingerprint names exactly the versions held;
      clean: clean_activity; quality: quality_items, with one quality_trust_months row; summary and
      published: the month's rows);
    - no partition holds rows without a layer state; the clean file versions in use are the ones whose
      rows are in clean_activity;
    - no row is there twice (by its identifying columns)."""
    import itertools

    import sqlalchemy as sa

    from sact_pipeline.gating import fingerprint as versions_fingerprint
    from sact_pipeline.warehouse import engine_for
    from sact_pipeline.tables import metadata

    tables = {t.name: t for t in metadata.sorted_tables}
    problems: list[str] = []
    engine = engine_for(warehouse_url)
    try:
        with engine.connect() as connection:
            def rows(query):
                return connection.execute(query).all()

            states = {(layer, m, t): (fingerprint, count) for layer, m, t, fingerprint, count in rows(sa.select(
                *(tables["layer_state"].c[c] for c in ("layer", "reporting_month", "trust_code", "fingerprint",
                                                      "row_count"))))}

            def counts(name: str, by=("reporting_month", "trust_code")) -> dict:
                table = tables[name]
                return {tuple(key): n for *key, n in rows(sa.select(*(table.c[c] for c in by), sa.func.count())
                                                          .group_by(*(table.c[c] for c in by)))}

            for name, key in KEYS.items():  # no duplicates
                table = tables[name]
                duplicated = rows(sa.select(*(table.c[c] for c in key)).group_by(*(table.c[c] for c in key))
                                  .having(sa.func.count() > 1))
                if duplicated:
                    problems.append(f"{name}: {len(duplicated)} rows held more than once by {', '.join(key)}")

            # raw: each loaded version whole; fingerprint = the versions held; row_count = the last write's.
            raw = tables["raw_submissions"]
            files = tables["submission_files"]
            registered = {(name, sha): n for name, sha, n in rows(sa.select(files.c.file_name, files.c.sha256,
                                                                            files.c.data_rows))}
            versions: dict[tuple[str, str], dict[str, int]] = {}
            for month, trust, name, sha, n in rows(sa.select(raw.c.reporting_month, raw.c.trust_code, raw.c.file_name,
                                                             raw.c.file_sha256, sa.func.count()).group_by(
                    raw.c.reporting_month, raw.c.trust_code, raw.c.file_name, raw.c.file_sha256)):
                versions.setdefault((month, trust), {})[sha] = n
                if registered.get((name, sha)) != n:
                    problems.append(f"raw_submissions {month} {trust}: a file version holds {n} rows, registered "
                                    f"with {registered.get((name, sha))}")
            for (month, trust), held in versions.items():
                state = states.get(("raw", month, trust))
                if state is None:
                    problems.append(f"raw_submissions {month} {trust}: rows without a raw layer state")
                    continue
                fingerprint, count = state
                if fingerprint != versions_fingerprint(set(held)):
                    problems.append(f"raw {month} {trust}: layer state fingerprint does not name the versions held")
                sums = {sum(c) for r in range(1, len(held) + 1) for c in itertools.combinations(held.values(), r)}
                if count not in sums:
                    problems.append(f"raw {month} {trust}: layer state row_count {count} is not the rows of any "
                                    f"load of its versions {sorted(held.values())}")
            for layer, m, t in states:
                if layer == "raw" and (m, t) not in versions:
                    problems.append(f"raw {m} {t}: a layer state without rows")

            # clean and quality: row_count = rows of the first table; every table's partitions have a state.
            for layer, names in TRUST_MONTH_TABLES.items():
                if layer == "raw":
                    continue
                for name in names:
                    for (month, trust) in counts(name):
                        if (layer, month, trust) not in states:
                            problems.append(f"{name} {month} {trust}: rows without a {layer} layer state")
                counted = counts(names[0])
                for (kind, month, trust), (_, count) in states.items():
                    if kind == layer and counted.get((month, trust), 0) != count:
                        problems.append(f"{layer} {month} {trust}: layer state row_count {count}, {names[0]} holds "
                                        f"{counted.get((month, trust), 0)}")
            assessed = counts("quality_trust_months")
            for (kind, month, trust) in states:
                if kind == "quality" and assessed.get((month, trust)) != 1:
                    problems.append(f"quality {month} {trust}: {assessed.get((month, trust), 0)} quality_trust_months "
                                    "rows, not 1")
                if kind == "clean" and not counts("clean_file_versions").get((month, trust)):
                    problems.append(f"clean {month} {trust}: a layer state without clean_file_versions")
            activity, versions_table = tables["clean_activity"], tables["clean_file_versions"]
            in_rows = {(m, t, s) for m, t, s in rows(sa.select(activity.c.reporting_month, activity.c.trust_code,
                                                                activity.c.file_sha256).distinct())}
            in_use = {(m, t, s) for m, t, s in rows(sa.select(versions_table.c.reporting_month,
                                                               versions_table.c.trust_code,
                                                               versions_table.c.file_sha256)
                                                     .where(versions_table.c.in_use))}
            if in_rows - in_use:
                problems.append(f"clean_activity: rows of {len(in_rows - in_use)} file versions not in use in "
                                "clean_file_versions")

            # summary and published: per month.
            for layer, name in MONTH_TABLES.items():
                counted = counts(name, by=("reporting_month",))
                for (month,) in counted:
                    if (layer, month, "") not in states:
                        problems.append(f"{name} {month}: rows without a {layer} layer state")
                for (kind, month, trust), (_, count) in states.items():
                    if kind == layer and counted.get((month,), 0) != count:
                        problems.append(f"{layer} {month}: layer state row_count {count}, {name} holds "
                                        f"{counted.get((month,), 0)}")
    finally:
        engine.dispose()
    return problems


if __name__ == "__main__":
    sys.exit(_runner(sys.argv[1:]))
