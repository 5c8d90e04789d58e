"""The landing zone: finding submission files, naming rules, decoding and reading them as raw text.

A file either becomes a `SubmissionFile` (every row read as text, nothing interpreted yet) or is
rejected with a `SubmissionRejected` whose message names the file, and the row and item where there is
one. Messages never quote row contents: they may hold patient identifiers.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from sact_pipeline.domain.organisations import OrganisationRegister
from sact_pipeline.domain.spec import SACT, VERSIONS, DataSet, Transition, normalise_header

FILE_NAME = re.compile(r"^SACT_([A-Za-z0-9]{3,5})_(\d{6})_(\d{14})\.csv$", re.IGNORECASE)
INCOMPLETE_SUFFIXES = (".part", ".tmp", ".partial", ".crdownload")
UTF8_BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
DELIMITERS = (",", ";", "\t")  # the one that splits the header into the most recognised names is used
# Files that are not text at all, recognised by their first bytes. Never decompressed: an archive in a
# landing zone may be a zip bomb, and the trust can send the CSV itself.
NOT_CSV = (
    (b"\x1f\x8b", "gzip-compressed: unzip it and send the .csv"),
    (b"PK\x03\x04", "a ZIP archive or Excel workbook (.xlsx): send the sheet saved as CSV"),
    (b"\xd0\xcf\x11\xe0", "an Excel 97-2003 workbook (.xls): send the sheet saved as CSV"),
)


class SubmissionRejected(Exception):
    """A file that cannot be used; it stays in the landing zone and is recorded with this reason."""

    def __init__(self, file_name: str, reason: str):
        super().__init__(f"{file_name}: {reason}")
        self.file_name = file_name
        self.reason = reason

    def __reduce__(self):  # picklable (two arguments), so it crosses process boundaries intact
        return type(self), (self.file_name, self.reason)


@dataclass(frozen=True)
class SubmissionName:
    org_code: str
    reporting_month: str  # YYYY-MM
    submitted_at: datetime


@dataclass(frozen=True)
class SubmissionFile:
    """One version of one trust's submission for one month, as found in the landing zone."""

    path: Path
    relative_path: str
    file_name: str
    org_code: str  # as named in the file name (a trust or site code)
    trust_code: str  # the trust it resolves to
    reporting_month: str
    submitted_at: datetime
    sha256: str
    size_bytes: int
    encoding: str = ""
    header_version: str = ""
    data_rows: int = 0
    ignored_columns: tuple[str, ...] = field(default=())


def is_candidate(path: Path) -> bool:
    """Files the landing-zone scan considers: not hidden, not still being written."""
    return path.is_file() and not path.name.startswith(".") and not path.name.lower().endswith(INCOMPLETE_SUFFIXES)


def find_candidate_files(landing_dir: Path) -> list[Path]:
    return sorted(p for p in Path(landing_dir).rglob("*") if is_candidate(p))


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_of_file(path: Path) -> str | None:
    """SHA-256 of a file read in 1 MiB blocks (a sensor must not hold a large file in memory); None if it
    has gone since it was listed."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except FileNotFoundError:
        return None
    return digest.hexdigest()


def parse_file_name(file_name: str, *, first_month: str, today: date) -> SubmissionName:
    """SACT_<ORG>_<YYYYMM>_<YYYYMMDDHHMMSS>.csv, with a reporting month the pipeline partitions."""
    match = FILE_NAME.match(file_name)
    if not match:
        raise SubmissionRejected(file_name, "file name does not follow SACT_<ORG>_<YYYYMM>_<YYYYMMDDHHMMSS>.csv")
    org, month, stamp = match.groups()
    try:
        reporting = datetime.strptime(month, "%Y%m").date()
        submitted_at = datetime.strptime(stamp, "%Y%m%d%H%M%S")
    except ValueError:
        raise SubmissionRejected(file_name, "file name holds an impossible reporting month or timestamp") from None
    reporting_month = reporting.strftime("%Y-%m")
    if reporting_month < first_month:
        raise SubmissionRejected(file_name, f"reporting month {reporting_month} is before the first month "
                                            f"the pipeline covers ({first_month}, SACT_FIRST_MONTH)")
    if reporting_month >= today.strftime("%Y-%m"):
        raise SubmissionRejected(file_name, f"reporting month {reporting_month} has not ended yet")
    if submitted_at.date() > today:
        raise SubmissionRejected(file_name, f"submission timestamp {submitted_at:%Y-%m-%d %H:%M:%S} is in the future")
    return SubmissionName(org.upper(), reporting_month, submitted_at)


def decode(file_name: str, data: bytes) -> tuple[str, str]:
    """Text and encoding: UTF-8 (a BOM is dropped), else Windows-1252 as Excel writes it; UTF-16 only with
    its byte order mark (Excel's "Unicode text"). Compressed files and workbooks are named, not opened."""
    for magic, what in NOT_CSV:
        if data.startswith(magic):
            raise SubmissionRejected(file_name, f"not a CSV file: {what}")
    if data.startswith(UTF16_BOMS):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError as error:
            raise SubmissionRejected(
                file_name, f"unreadable encoding: a UTF-16 byte order mark, then invalid UTF-16 (byte offset {error.start})"
            ) from None
        if "\x00" in text:
            raise SubmissionRejected(file_name, "unreadable encoding: the file holds NUL characters")
        return text, "utf-16"
    encoding = "utf-8"
    if data.startswith(UTF8_BOM):
        data, encoding = data[len(UTF8_BOM):], "utf-8-sig"
    nul = data.find(b"\x00")
    if nul >= 0:
        raise SubmissionRejected(file_name, f"unreadable encoding: the file holds NUL bytes (first at byte offset "
                                            f"{nul}; binary, or UTF-16 without a byte order mark?)")
    try:
        return data.decode("utf-8"), encoding
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError as error:
        raise SubmissionRejected(
            file_name, f"unreadable encoding: neither UTF-8 nor Windows-1252 (byte offset {error.start})"
        ) from None


def read_submission(
    path: Path,
    landing_dir: Path,
    organisations: OrganisationRegister,
    *,
    first_month: str,
    today: date,
    data: bytes | None = None,
    transition: Transition = Transition(),
) -> tuple[SubmissionFile, pd.DataFrame]:
    """Read one landing-zone file into a frame of its SACT version's items as text plus row_number.

    Raises SubmissionRejected for anything that makes the file unusable: bad name, unknown organisation,
    unreadable encoding, missing mandatory columns, a v4 file for a month before v4 (`transition`), rows
    with the wrong number of fields, no data rows.
    """
    path = Path(path)
    name = parse_file_name(path.name, first_month=first_month, today=today)
    trust = organisations.resolve_trust(name.org_code)
    if trust is None:
        raise SubmissionRejected(path.name, f"unknown organisation {name.org_code}: not a trust or site code in the ODS register")
    data = path.read_bytes() if data is None else data
    text, encoding = decode(path.name, data)
    frame, header_version, ignored = parse_csv_text(path.name, text)
    refused = transition.rejection(header_version, name.reporting_month)
    if refused:
        raise SubmissionRejected(path.name, refused)
    submission = SubmissionFile(
        path=path,
        relative_path=path.relative_to(landing_dir).as_posix() if path.is_relative_to(landing_dir) else path.name,
        file_name=path.name,
        org_code=name.org_code,
        trust_code=trust.code,
        reporting_month=name.reporting_month,
        submitted_at=name.submitted_at,
        sha256=sha256_of(data),
        size_bytes=len(data),
        encoding=encoding,
        header_version=header_version,
        data_rows=len(frame),
        ignored_columns=ignored,
    )
    return submission, frame


def parse_csv_text(file_name: str, text: str, data_set: DataSet = SACT) -> tuple[pd.DataFrame, str, tuple[str, ...]]:
    """Parse CSV text (any line ends, quoted fields) with pyarrow; every field stays text. The header says
    which SACT version the file is (DataSet.match_header); the frame holds that version's items (an item
    the header lacks reads as empty), plus row_number. Returns the frame, the version and the header
    names read as nothing (recorded as extra columns)."""
    header_end = _end_of_first_record(text)
    header_line = text[:header_end]
    if not header_line.strip():
        raise SubmissionRejected(file_name, "empty file: no header row")
    try:
        delimiter, header, match = max(
            ((d, h, data_set.match_header(h)) for d in DELIMITERS
             for h in [next(csv.reader([header_line.rstrip("\r\n")], delimiter=d))]),
            key=lambda candidate: len(candidate[2].columns),
        )  # max keeps the first of equals: a comma
    except csv.Error as error:  # its messages name the syntax, never the data
        raise SubmissionRejected(file_name, f"the header row cannot be read as CSV ({error})") from None
    if match.missing_mandatory:
        where = (f"the header is closest to SACT {match.version}" if match.columns else
                 f"header not recognised as SACT {' or '.join(VERSIONS)}; closest: {match.version}")
        raise SubmissionRejected(file_name, "missing mandatory columns: " + ", ".join(match.missing_mandatory)
                                 + f" ({where})")
    version = data_set.version(match.version)
    seen: dict[str, str] = {}
    for name in header:
        item = version.header_map.get(normalise_header(name))
        if item is not None and item.name in seen:
            raise SubmissionRejected(file_name, f"column {name.strip()} appears twice in the header: which one holds "
                                                f"the data is ambiguous")
        if item is not None:
            seen[item.name] = name
    body_text = text[header_end:]
    if body_text.count('"') % 2:  # an odd count is a stray quote, or a quoted field never closed
        _check_quotes(file_name, body_text, delimiter)
    body = body_text.encode("utf-8")
    names = [f"c{i}" for i in range(len(header))]
    bad_rows: list[tuple[int | None, int, int]] = []

    def invalid_row(row) -> str:
        bad_rows.append((row.number, row.expected_columns, row.actual_columns))
        return "skip"

    if body.strip():
        try:
            table = pacsv.read_csv(
                io.BytesIO(body),
                read_options=pacsv.ReadOptions(column_names=names, use_threads=False, block_size=1 << 24),
                parse_options=pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=invalid_row,
                                                 newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(
                    column_types={n: pa.string() for n in names},
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
        except pa.ArrowInvalid as error:  # the parser's words, cut before any row text it quotes
            message = str(error).splitlines()[0].removeprefix("CSV parse error: ").split(": ")[0]
            raise SubmissionRejected(file_name, f"cannot be parsed as CSV: {message}") from None
    else:
        table = pa.table({n: pa.array([], pa.string()) for n in names})
    if bad_rows:
        number, expected, actual = bad_rows[0]
        where = f"row {number}" if number is not None else "a row"
        raise SubmissionRejected(
            file_name,
            f"{where} has {actual} fields where the header has {expected}"
            + (f" ({len(bad_rows)} such rows)" if len(bad_rows) > 1 else ""),
        )
    if table.num_rows == 0:
        raise SubmissionRejected(file_name, "no data rows after the header")
    raw = table.to_pandas()
    frame = pd.DataFrame(
        {column: raw[f"c{position}"] for position, column in match.columns.items()}, index=raw.index
    )
    for column in version.columns:  # required/optional items a trust system left out: empty, found by DQ checks
        if column not in frame:
            frame[column] = ""
    frame = frame[list(version.columns)]
    frame.insert(0, "row_number", pd.RangeIndex(1, len(frame) + 1).to_numpy())
    return frame, match.version, match.unknown


def _check_quotes(file_name: str, body: str, delimiter: str) -> None:
    """Reject a quoted field that is never closed (pyarrow would read the rest of the file into it),
    naming the line its record starts on (1 = the header). A quote inside an unquoted field is text."""
    reader = csv.reader(io.StringIO(body, newline=""), delimiter=delimiter, strict=True)
    start = 1
    try:
        for _ in reader:
            start = reader.line_num + 1
    except csv.Error as error:  # its messages name the syntax, never the data
        raise SubmissionRejected(file_name, f"unbalanced double quotes in the record starting on line {start + 1} "
                                            f"({error})") from None


def _end_of_first_record(text: str) -> int:
    """Offset just past the header record (header names are never quoted across lines in practice): its
    line ends at LF, CRLF or a lone CR (old Mac line ends, which the body's parser reads too)."""
    ends = [at for at in (text.find("\n"), text.find("\r")) if at >= 0]
    if not ends:
        return len(text)
    end = min(ends)
    return end + 2 if text.startswith("\r\n", end) else end + 1


def stat_candidates(landing_dir: Path) -> dict[str, tuple[int, int]]:
    """(size, modification time in ns) of every candidate file, by path relative to the landing zone.

    Cheap enough for a sensor tick: no file is opened. A file whose size or time still changes between two
    looks is still being written.
    """
    landing_dir = Path(landing_dir)
    if not landing_dir.is_dir():
        return {}
    stats = {}
    for path in find_candidate_files(landing_dir):
        info = path.stat()
        stats[path.relative_to(landing_dir).as_posix()] = (info.st_size, info.st_mtime_ns)
    return stats
