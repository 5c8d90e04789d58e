"""Golden files: a fixed landing zone gives the same published files, byte for byte, as the code did before.

What it guards
--------------
The published files are a contract with their readers. This test runs the current code's
`sact-pipeline refresh` (in process, SQLite warehouse, a fresh SACT_HOME under tmp_path) on the landing zone
in `golden/landing/` and the opt-out file in `golden/optouts/`, and asserts:

- every file under `golden/published/` is byte-identical to the file the refresh wrote at the same path under
  its output folder: per month, the published table `<YYYY-MM>/sact_submissions_<YYYY-MM>.csv` and its
  notes `..._notes.txt`, and the other CSVs the refresh writes, each trust's feedback file
  `<YYYY-MM>/feedback/<TRUST>_<YYYY-MM>.csv` and the internal data-quality tables
  `data_quality/<YYYY-MM>/data_quality_<YYYY-MM>.csv` and `data_quality_trend_<YYYY-MM>.csv`;
- the set of files the refresh wrote under its output folder is the one listed in
  `golden/published_files.txt`.

The golden files were written by the code as it stood at commit df441b5, the last commit before the
refresh/planning restructuring, so the restructuring (and any later refactoring) must not change what
is published. They were regenerated once on purpose since, when the published contract grew (issue 19:
the `month_status` and `data_status` columns of the tables and the data-quality table, and the notes'
month status line and status definitions); every cell that was there before is unchanged.

What is not compared, and why
-----------------------------
- The notes' second line, `Produced <YYYY-MM-DDTHH:MM:SS> by sact-pipeline.`: the time the file was made
  (`produced_at`, `datetime.now()` in the publish step). It is masked on both sides (the golden notes hold
  the placeholder `PRODUCED_PLACEHOLDER` in its place); every other line of the notes, including the file
  names and SHA-256s the month was built from, is compared. Two runs of the old code on this landing zone
  differed in that line only, across every CSV and notes file.
- The workbook (`.xlsx`), the HTML report and the manifest (`_manifest.json`) of each month, and the
  data-quality HTML: only their presence is checked (`published_files.txt`). The workbook is a zip whose
  entries and document properties carry the production time; the manifest holds `produced_at` and the
  SHA-256 of the notes, workbook and HTML; the HTML report repeats the `Produced` line (run to run it
  differed in that line only; it is left out to keep the fixture small).
- `data_docs/` (the GX Data Docs site): its file names and pages carry GX run ids and run times.
Nothing published holds the date the test runs on: `submitted_at` is the timestamp in each file name, and
the reporting months (2026-06 to 2026-08) have ended, so no file is rejected as "not ended yet"/"in the
future" whatever today is. `month_status` and `missing`/`not_yet_due` do depend on the day of the run: the
golden months are stable because the last of their deadlines (2026-09-30) has passed.

The landing zone (`golden/landing/`, 22 files, 371 rows) and its settings
-----------------------------------------------------------------------
Made once with the old code's generator (deterministic for these arguments), then left as it is:

    mkdir /tmp/golden-old && git archive df441b5 | tar -x -C /tmp/golden-old   # the code before the restructuring
    PYTHONPATH=/tmp/golden-old .venv/bin/python -m sact_pipeline.cli generate --home /tmp/gold-gen \\
        --trusts 6 --months 3 --end-month 2026-08 --patients 5 --seed 2026 --first-month 2026-01 \\
        --missing-mandatory 0.05
    cp -r /tmp/gold-gen/landing sact_pipeline_tests/golden/landing
    printf 'NHS_Number\\n488 618 9318\\n' > sact_pipeline_tests/golden/optouts/optouts_2026-09.csv

It holds six English trusts and the Welsh trust RQF (processed, never published), over 2026-06 to 2026-08:
SACT v3 and v4 files (UTF-8, UTF-8 with BOM and CRLF, Windows-1252); a late file (R0A 2026-07, sent
2026-09-05); two resubmissions of 2026-06 (RRV v3 then v3, RGR v3 then v4); a trust missing a month
(G6V2S 2026-08); rows quarantined for a missing or invalid mandatory item (16 rows: Drug_Name, Regimen,
dates, no patient identifier, no diagnosis), exact duplicates, invalid NHS numbers and other data-quality
findings; v3 files from 2026-07 (`v3 after full v4 conformance`); cells suppressed as `*` (1-7) and
ENGLAND cells withheld as `[c]`; and one patient of RGR, present in all three months, who opted out
(`golden/optouts/`). `golden/.gitattributes` keeps git from converting the files' line endings: the
notes list each file's SHA-256, which the test also checks against the fixture before it runs.

Settings (`FIXED_ENVIRONMENT`): every SACT_* and DAGSTER_* variable of the caller is removed (so the
packaged ODS extract and data-set table are used, no demo mode, no key file), then SACT_FIRST_MONTH=2026-01,
SACT_DEADLINE_MONTHS=1, SACT_MAX_QUARANTINE_SHARE=0.5, SACT_V4_FIRST_MONTH=2026-04, SACT_V4_ONLY_FROM=2026-07,
SACT_WORKERS=1 and SACT_PSEUDONYMISATION_KEY = the test suite's TEST_KEY (written out here, not imported:
the published files do not depend on the key); home, landing, opt-out and output folders are given as
flags; the warehouse is the default SQLite file under the home.

Regenerating the golden files (only when the published contract changes on purpose)
----------------------------------------------------------------------------------
`python sact_pipeline_tests/test_published_golden.py --regenerate` runs the refresh with the same
settings, with whichever `sact_pipeline` is imported, and rewrites `golden/published/` and
`golden/published_files.txt` (it prints the package path it used). The golden files in the repository
were made with the old code:

    PYTHONPATH=/tmp/golden-old .venv/bin/python sact_pipeline_tests/test_published_golden.py --regenerate

Review the diff of `golden/published/` before committing it: every line that changes is a change to
what readers receive.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import io
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

GOLDEN = Path(__file__).resolve().parent / "golden"
GOLDEN_LANDING = GOLDEN / "landing"
GOLDEN_OPTOUTS = GOLDEN / "optouts"
GOLDEN_PUBLISHED = GOLDEN / "published"
GOLDEN_FILE_LIST = GOLDEN / "published_files.txt"
MONTHS = ("2026-06", "2026-07", "2026-08")

TEST_KEY = "test-pseudonymisation-key-0123456789abcdef-not-for-real-data"  # the test suite's TEST_KEY
FIXED_ENVIRONMENT = {
    "SACT_PSEUDONYMISATION_KEY": TEST_KEY,
    "SACT_FIRST_MONTH": "2026-01",
    "SACT_DEADLINE_MONTHS": "1",
    "SACT_MAX_QUARANTINE_SHARE": "0.5",
    "SACT_V4_FIRST_MONTH": "2026-04",
    "SACT_V4_ONLY_FROM": "2026-07",
    "SACT_WORKERS": "1",
}
KEPT_VARIABLES = ("SACT_TEST_",)  # the test suite's own (PostgreSQL URL), read by no setting

NOT_LISTED = ("data_docs/",)  # GX Data Docs: file names with run ids and times
COMPARED = re.compile(r"(\.csv|_notes\.txt)$")
PRODUCED = re.compile(rb"^Produced \d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2} by sact-pipeline\.$", re.MULTILINE)
PRODUCED_PLACEHOLDER = b"Produced <production time: not compared> by sact-pipeline."
BUILT_FROM = re.compile(r"^- (SACT_\S+\.csv) ([0-9a-f]{64})$", re.MULTILINE)
MAX_DIFF_LINES = 60


@contextlib.contextmanager
def fixed_environment():
    """Only the fixed settings from the environment; everything (also what refresh exports) undone after."""
    saved = dict(os.environ)
    try:
        for name in list(os.environ):
            if name.startswith(("SACT_", "DAGSTER_")) and not name.startswith(KEPT_VARIABLES):
                del os.environ[name]
        os.environ.update(FIXED_ENVIRONMENT)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run_refresh(workdir: Path) -> tuple[int, str, Path]:
    """`sact-pipeline refresh` in this process on a copy of the golden landing zone and opt-outs under
    `workdir`: (exit code, everything it printed, its output folder)."""
    from sact_pipeline.cli import main

    home = workdir / "sact"
    shutil.copytree(GOLDEN_LANDING, home / "landing")
    shutil.copytree(GOLDEN_OPTOUTS, home / "optouts")
    output = home / "published"
    printed = io.StringIO()
    with fixed_environment(), contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        code = main(["refresh", "--home", str(home), "--landing-dir", str(home / "landing"),
                     "--optout-dir", str(home / "optouts"), "--output-dir", str(output)])
    return code, printed.getvalue(), output


def masked(relative: str, data: bytes) -> bytes:
    """The bytes compared: a notes file with its production time replaced by the placeholder."""
    if relative.endswith("_notes.txt"):
        return PRODUCED.sub(PRODUCED_PLACEHOLDER, data, count=1)
    return data


def listed_files(output: Path) -> list[str]:
    """Every file under an output folder, relative, sorted; the GX Data Docs site left out."""
    names = (path.relative_to(output).as_posix() for path in output.rglob("*") if path.is_file())
    return sorted(name for name in names if not name.startswith(NOT_LISTED))


def landing_zone_problems() -> list[str]:
    """The fixture itself: each file version the golden notes were built from is in golden/landing with
    that SHA-256 (a checkout that converted line endings would change them, and every notes file)."""
    present = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in GOLDEN_LANDING.rglob("*.csv")}
    problems = []
    for notes in sorted(GOLDEN_PUBLISHED.glob("*/*_notes.txt")):
        for name, digest in BUILT_FROM.findall(notes.read_text(encoding="utf-8")):
            if present.get(name) != digest:
                problems.append(f"{GOLDEN_LANDING.name}/{name}: SHA-256 {present.get(name, 'missing')}, the golden "
                                f"notes {notes.name} say {digest} (was the fixture changed, or its line endings "
                                "converted by git? see golden/.gitattributes)")
    return problems


def differences(output: Path) -> list[str]:
    """Every way the refresh's output differs from the golden files, each with a short unified diff."""
    problems = []
    expected = GOLDEN_FILE_LIST.read_text(encoding="utf-8").split()
    produced = listed_files(output)
    if produced != expected:
        problems.append("\n".join(["the set of published files differs (golden/published_files.txt):",
                                    *(f"  missing: {name}" for name in sorted(set(expected) - set(produced))),
                                    *(f"  unexpected: {name}" for name in sorted(set(produced) - set(expected)))]))
    for golden in sorted(GOLDEN_PUBLISHED.rglob("*")):
        if not golden.is_file():
            continue
        relative = golden.relative_to(GOLDEN_PUBLISHED).as_posix()
        actual_path = output / relative
        if not actual_path.is_file():
            problems.append(f"{relative}: not written")
            continue
        want, got = golden.read_bytes(), masked(relative, actual_path.read_bytes())
        if want != got:
            diff = list(difflib.unified_diff(want.decode("utf-8", "replace").splitlines(),
                                             got.decode("utf-8", "replace").splitlines(),
                                             f"golden/published/{relative}", f"refresh output/{relative}",
                                             lineterm="", n=1))
            if len(diff) > MAX_DIFF_LINES:
                diff = diff[:MAX_DIFF_LINES] + [f"... ({len(diff) - MAX_DIFF_LINES} more diff lines)"]
            if not diff:  # same lines: line endings, a final newline or encoding
                diff = [f"same text lines, different bytes ({len(want)} against {len(got)} bytes)"]
            problems.append(f"{relative} differs:\n" + "\n".join(diff))
    return problems


def test_a_fixed_landing_zone_publishes_the_golden_files_byte_for_byte(tmp_path):
    fixture = landing_zone_problems()
    assert not fixture, "the golden landing zone is not the one the golden files were made from:\n" + "\n".join(fixture)
    code, printed, output = run_refresh(tmp_path)
    assert code == 0, f"refresh exited {code}:\n{printed}"
    for month in MONTHS:
        assert f"month {month}: published" in printed, printed
    problems = differences(output)
    assert not problems, (f"{len(problems)} differences from the golden files (made by the code at df441b5; see "
                          "this module's docstring):\n\n" + "\n\n".join(problems))


def regenerate() -> None:
    """Rewrite golden/published and golden/published_files.txt with whichever sact_pipeline is imported."""
    import sact_pipeline

    print(f"regenerating the golden files with {Path(sact_pipeline.__file__).parent}")
    with tempfile.TemporaryDirectory(prefix="sact-golden-") as workdir:
        code, printed, output = run_refresh(Path(workdir))
        print(printed)
        if code != 0:
            raise SystemExit(f"refresh exited {code}: golden files left as they were")
        files = listed_files(output)
        if GOLDEN_PUBLISHED.exists():
            shutil.rmtree(GOLDEN_PUBLISHED)
        for relative in files:
            if COMPARED.search(relative):
                target = GOLDEN_PUBLISHED / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                data = (output / relative).read_bytes()
                if relative.endswith("_notes.txt") and not PRODUCED.search(data):
                    raise SystemExit(f"{relative} has no 'Produced ... by sact-pipeline.' line to mask")
                target.write_bytes(masked(relative, data))
        GOLDEN_FILE_LIST.write_text("".join(f"{name}\n" for name in files), encoding="utf-8")
    print(f"wrote {sum(1 for p in GOLDEN_PUBLISHED.rglob('*') if p.is_file())} files under {GOLDEN_PUBLISHED} "
          f"and {GOLDEN_FILE_LIST} ({len(files)} files)")


if __name__ == "__main__":
    if sys.argv[1:] != ["--regenerate"]:
        raise SystemExit(f"usage: python {Path(__file__).name} --regenerate   (see the module docstring)")
    regenerate()
