"""Property-based tests of the parser and the validators (issue 8): over arbitrary bytes and arbitrary CSV
shapes, reading a file either rejects it with a reason or parses it, never raises anything else, and every
row that arrives is accounted for (clean, quarantined or duplicate) by cleaning.

CI runs FUZZ_EXAMPLES (default 300) examples per property; a longer run by hand:
    FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest sact_pipeline_tests/test_fuzzing.py
"""

from __future__ import annotations

import csv
import io
import os
from datetime import datetime

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sact_pipeline.domain import data_quality as dq
from sact_pipeline.domain import nhs_number
from sact_pipeline.domain.cleaning import _parse_dates, _parse_timestamps, clean_submission
from sact_pipeline.domain.landing import SubmissionRejected, decode, parse_csv_text
from sact_pipeline.domain.pseudonymise import Pseudonymiser
from sact_pipeline.domain.spec import SACT, VERSIONS

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NAME = "SACT_RR8_202401_20240210093000.csv"
PSEUDONYMISER = Pseudonymiser(b"a fuzzing key that is long enough to be a key")
HEADERS = {v: [item.header(v) for item in SACT.version(v).items] for v in VERSIONS}
MANDATORY_HEADERS = {v: [m.header(v) for members in SACT.version(v).required_headers for m in members]
                     for v in VERSIONS}


def read(data: bytes) -> tuple[pd.DataFrame, str] | None:
    """decode + parse as the landing zone does: the frame and its version, or None when the file is rejected."""
    try:
        text, _ = decode(NAME, data)
        frame, version, _ = parse_csv_text(NAME, text)
    except SubmissionRejected as rejected:
        assert rejected.reason and rejected.file_name == NAME  # a reason, naming the file
        return None
    return frame, version


def accounted(frame: pd.DataFrame, version: str) -> None:
    """Cleaning never raises on a parsed frame, and every row lands in exactly one place."""
    cleaned = clean_submission(frame, trust_code="RR8", submitted_at=datetime(2026, 8, 10, 9, 30),
                               pseudonymiser=PSEUDONYMISER, reporting_month="2026-07", sact_version=version,
                               trust_of=lambda code: "RR8" if code.upper().startswith("RR8") else None)
    assert cleaned.raw_rows == len(frame)
    assert cleaned.clean_rows + cleaned.quarantined_rows + cleaned.duplicate_rows == len(frame)
    assessed = cleaned.clean_rows + cleaned.quarantined_rows
    assert (cleaned.item_quality["rows"] == assessed).all()
    assert (cleaned.item_quality["valid"] <= cleaned.item_quality["present"]).all()
    # a finding names a data row, or row 0 (the header) for one about the whole file: v3 in 2026-07
    assert set(cleaned.findings["row_number"]) <= set(frame["row_number"]) | {0}


@FUZZ
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_are_rejected_with_a_reason_or_parsed_and_accounted_for(data):
    parsed = read(data)
    if parsed is not None:
        frame, version = parsed
        assert list(frame.columns) == ["row_number", *SACT.version(version).columns]
        assert frame["row_number"].tolist() == list(range(1, len(frame) + 1))
        accounted(frame, version)


@FUZZ
@given(st.sampled_from(VERSIONS), st.binary(max_size=600))
def test_arbitrary_bytes_after_a_valid_header_are_rejected_or_accounted_for(version, tail):
    parsed = read((",".join(HEADERS[version]) + "\r\n").encode() + tail)
    if parsed is not None:
        assert parsed[1] == version
        accounted(*parsed)


FIELD = st.one_of(
    st.text(max_size=12),  # anything: quotes, delimiters, line breaks, NUL, surrogates left out by hypothesis
    st.sampled_from(["", " ", "2024-01-15", "15/01/2024", "45306", "9434765919", "943 476 5919", "01", "1",
                     "X", "C50.9", "8500/3", "1,500", "RR8", "RR801", "RBV", "Y", "N", '"', "x" * 300]),
)


@st.composite
def csv_files(draw):
    """A CSV of some shape: a subset of the v3 or v4 headers, or of both (mandatory ones usually there) in
    any order and case, extra columns, any delimiter, rows of arbitrary fields (quoted as csv does), LF or
    CRLF, any encoding a trust system writes."""
    version = draw(st.sampled_from(VERSIONS))
    pool = HEADERS[version] if draw(st.integers(0, 3)) else list(dict.fromkeys(HEADERS["v3"] + HEADERS["v4"]))
    chosen = draw(st.lists(st.sampled_from(pool), unique=True, min_size=1))
    if draw(st.booleans()):
        chosen = list(dict.fromkeys([*MANDATORY_HEADERS[version], *chosen]))
    chosen = draw(st.permutations(chosen))
    header = [draw(st.sampled_from([h, h.upper(), h.lower(), f" {h} "])) for h in chosen]
    header += draw(st.lists(st.sampled_from(["Local_Notes", "Ward", "Extra"]), unique=True, max_size=2))
    rows = draw(st.lists(st.lists(FIELD, min_size=len(header), max_size=len(header)), max_size=8))
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    stream = io.StringIO()
    csv.writer(stream, delimiter=delimiter, lineterminator=draw(st.sampled_from(["\n", "\r\n"]))).writerows(
        [header, *rows])
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "utf-16"]))
    return stream.getvalue().encode(encoding, errors="replace"), header, rows


@FUZZ
@given(csv_files())
def test_any_csv_shape_is_rejected_with_a_reason_or_parsed_row_for_row(case):
    data, header, rows = case
    parsed = read(data)
    if parsed is None:
        return
    frame, version = parsed
    # Every data row written is a row of the frame (a row of only empty fields in a one-column file is a
    # blank line to a CSV reader, and skipped).
    written = [row for row in rows if not (len(header) == 1 and row == [""])]
    assert len(frame) == len(written)
    accounted(frame, version)


@FUZZ
@given(st.sampled_from(VERSIONS), st.lists(st.one_of(st.text(max_size=26), st.sampled_from(
    ["2026-05-14T10:15:00+01:00", "2026-05-14T25:15:00+01:00", "2026-05-14T10:15:00", "2026-02-30T10:15Z"])),
    max_size=30))
def test_the_validators_take_any_text(name, values):
    version = SACT.version(name)
    numbers = pd.Series(values, dtype="str")
    valid = nhs_number.is_valid(nhs_number.normalise(numbers))
    assert valid.dtype == bool and len(valid) == len(values)
    items = pd.DataFrame({c: [v.strip() for v in values] for c in version.columns}, dtype="str")
    dates = {i.name: (_parse_timestamps if i.check == "timestamp" else _parse_dates)(items[i.name])
             for i in version.items if i.check in ("date", "timestamp")}
    checks = dq.check_items(items, version, dates=dates, nhs_valid=valid.to_numpy())
    assert not (checks.valid & ~checks.present).to_numpy().any()
    findings = dq.invalid_findings(checks, version, pd.Series(np.arange(1, len(values) + 1)))
    headers = [i.header(name) for i in version.items]  # items only: a group measure repeats its members
    assert len(findings) == int((checks.present[headers] & ~checks.valid[headers]).to_numpy().sum())
