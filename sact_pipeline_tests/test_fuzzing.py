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
from sact_pipeline.domain.cleaning import clean_submission
from sact_pipeline.domain.landing import SubmissionRejected, decode, parse_csv_text
from sact_pipeline.domain.pseudonymise import Pseudonymiser
from sact_pipeline.domain.spec import ITEM_COLUMNS, MANDATORY_COLUMNS, MANDATORY_DATES, REQUIRED_DATES, V3_ITEMS

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NAME = "SACT_RR8_202401_20240210093000.csv"
PSEUDONYMISER = Pseudonymiser(b"a fuzzing key that is long enough to be a key")
HEADERS = [item.header for item in V3_ITEMS]


def read(data: bytes) -> pd.DataFrame | None:
    """decode + parse as the landing zone does: the frame, or None when the file is rejected."""
    try:
        text, _ = decode(NAME, data)
        frame, _, _ = parse_csv_text(NAME, text)
    except SubmissionRejected as rejected:
        assert rejected.reason and rejected.file_name == NAME  # a reason, naming the file
        return None
    return frame


def accounted(frame: pd.DataFrame) -> None:
    """Cleaning never raises on a parsed frame, and every row lands in exactly one place."""
    cleaned = clean_submission(frame, trust_code="RR8", submitted_at=datetime(2024, 2, 10, 9, 30),
                               pseudonymiser=PSEUDONYMISER, reporting_month="2024-01",
                               trust_of=lambda code: "RR8" if code.upper().startswith("RR8") else None)
    assert cleaned.raw_rows == len(frame)
    assert cleaned.clean_rows + cleaned.quarantined_rows + cleaned.duplicate_rows == len(frame)
    assessed = cleaned.clean_rows + cleaned.quarantined_rows
    assert (cleaned.item_quality["rows"] == assessed).all()
    assert (cleaned.item_quality["valid"] <= cleaned.item_quality["present"]).all()
    assert set(cleaned.findings["row_number"]) <= set(frame["row_number"])


@FUZZ
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_are_rejected_with_a_reason_or_parsed_and_accounted_for(data):
    frame = read(data)
    if frame is not None:
        assert list(frame.columns) == ["row_number", *ITEM_COLUMNS]
        assert frame["row_number"].tolist() == list(range(1, len(frame) + 1))
        accounted(frame)


@FUZZ
@given(st.binary(max_size=600))
def test_arbitrary_bytes_after_a_valid_header_are_rejected_or_accounted_for(tail):
    frame = read((",".join(HEADERS) + "\r\n").encode() + tail)
    if frame is not None:
        accounted(frame)


FIELD = st.one_of(
    st.text(max_size=12),  # anything: quotes, delimiters, line breaks, NUL, surrogates left out by hypothesis
    st.sampled_from(["", " ", "2024-01-15", "15/01/2024", "45306", "9434765919", "943 476 5919", "01", "1",
                     "X", "C50.9", "8500/3", "1,500", "RR8", "RR801", "RBV", "Y", "N", '"', "x" * 300]),
)


@st.composite
def csv_files(draw):
    """A CSV of some shape: a subset of the v3 headers (mandatory ones usually there) in any order and case,
    extra columns, any delimiter, rows of arbitrary fields (quoted as csv does), LF or CRLF, any encoding
    a trust system writes."""
    chosen = draw(st.lists(st.sampled_from(HEADERS), unique=True, min_size=1))
    if draw(st.booleans()):
        chosen = list(dict.fromkeys([*(h for h in HEADERS if ITEM_COLUMNS[HEADERS.index(h)] in MANDATORY_COLUMNS),
                                     *chosen]))
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
    frame = read(data)
    if frame is None:
        return
    # Every data row written is a row of the frame (a row of only empty fields in a one-column file is a
    # blank line to a CSV reader, and skipped).
    written = [row for row in rows if not (len(header) == 1 and row == [""])]
    assert len(frame) == len(written)
    accounted(frame)


@FUZZ
@given(st.lists(st.text(max_size=14), max_size=30))
def test_the_validators_take_any_text(values):
    numbers = pd.Series(values, dtype="str")
    valid = nhs_number.is_valid(nhs_number.normalise(numbers))
    assert valid.dtype == bool and len(valid) == len(values)
    items = pd.DataFrame({c: [v.strip() for v in values] for c in ITEM_COLUMNS}, dtype="str")
    dates = {c: pd.to_datetime(items[c], format="%Y-%m-%d", errors="coerce") for c in MANDATORY_DATES + REQUIRED_DATES}
    checks = dq.check_items(items, dates=dates, nhs_valid=valid.to_numpy())
    assert not (checks.valid & ~checks.present).to_numpy().any()
    findings = dq.invalid_findings(checks, pd.Series(np.arange(1, len(values) + 1)))
    assert len(findings) == int((checks.present & ~checks.valid).to_numpy().sum())
