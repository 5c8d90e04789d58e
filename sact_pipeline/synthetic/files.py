"""Files: when each trust-month is submitted and as what (on time, late, resubmitted, resent as v4), and
writing it as a trust's system would (its encoding and line ends), named as SACT submissions are."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sact_pipeline.domain.spec import SACT, V3, V4
from sact_pipeline.synthetic.defects import FileDefects
from sact_pipeline.synthetic.months import add_months
from sact_pipeline.synthetic.rows import Rows
from sact_pipeline.synthetic.versions import Plan, Roles
from sact_pipeline.synthetic.world import World


@dataclass(frozen=True)
class GeneratedFile:
    """A file written to the landing zone, with what the tests need to know of it."""

    path: Path
    org_code: str
    reporting_month: str  # 'YYYY-MM'
    submitted_at: datetime
    rows: int  # data rows, duplicates included
    kind: str  # 'on_time', 'late' or 'resubmission'
    encoding: str = "utf-8"  # 'utf-8', 'utf-8-sig' (BOM) or 'cp1252'
    line_ending: str = "\n"
    patients: int = 0  # distinct patients with rows in the file
    defects: FileDefects = field(default_factory=FileDefects)
    sact_version: str = V3  # 'v3' or 'v4': the header row and items the file is written in


def write_files(rng, landing: Path, w: World, rows: Rows, english: list[str], month_starts: list[date],
                now: datetime, roles: Roles, plan: Plan) -> list[GeneratedFile]:
    """Every file of the run (none for the trust-month that does not submit), sorted by reporting month,
    organisation and submission time."""
    n_english = len(english)
    months = len(month_starts)
    schedule = _Schedule.draw(rng, len(w.codes), months, now, roles, plan, n_english)
    # Rows written (not covered by an earlier multi-cycle dispensing); each duplicated row followed by its copy.
    final = np.sort(np.concatenate([np.flatnonzero(rows.keep), np.flatnonzero(rows.keep & (rows.category == 3))]),
                    kind="stable")
    key = rows.trust[final] * months + rows.month[final]
    headers = {v: ",".join(item.header(v) for item in SACT.version(v).items) for v in (V3, V4)}
    written: list[GeneratedFile] = []
    for t, code in enumerate(w.codes):
        encoding, eol = _encoding(t, n_english)
        for m, start in enumerate(month_starts):
            if roles.missing is not None and (t, m) == roles.missing:
                continue
            lo, hi = np.searchsorted(key, [t * months + m, t * months + m + 1])
            for selected, stamp, kind, version in schedule.submissions(rng, rows, t, m, start, final[lo:hi]):
                written.append(_write_one(landing, code, start, stamp, kind, selected, rows, headers[version],
                                          encoding, eol, version))
    written.sort(key=lambda f: (f.reporting_month, f.org_code, f.submitted_at))
    return written


def _encoding(t: int, n_english: int) -> tuple[str, str]:
    """English trust #0 writes UTF-8 with a BOM and CRLF, #1 cp1252 with CRLF, every other trust (RQF too)
    UTF-8 with LF: the encodings and line ends trusts' systems really send."""
    encodings = {0: ("utf-8-sig", "\r\n"), 1 % n_english: ("cp1252", "\r\n")} if n_english > 1 else \
        {0: ("utf-8-sig", "\r\n")}
    return encodings.get(t, ("utf-8", "\n")) if t < n_english else ("utf-8", "\n")


@dataclass(frozen=True)
class _Schedule:
    """When each trust-month is submitted, and the files it is submitted as (with the roles and plan)."""

    days: np.ndarray  # (trusts, months): day of the submission month, 0-24
    seconds: np.ndarray  # (trusts, months): time of day
    resubmission_delay: timedelta  # of the resubmitting trust's complete file, after its first one
    now: datetime
    roles: Roles
    plan: Plan
    n_english: int

    @classmethod
    def draw(cls, rng, n_trusts: int, months: int, now: datetime, roles: Roles, plan: Plan,
             n_english: int) -> "_Schedule":
        """Submission times, drawn for every trust-month whatever its role (determinism)."""
        days = rng.integers(0, 25, size=(n_trusts, months))
        seconds = rng.integers(0, 86400, size=(n_trusts, months))
        resubmission_delay = timedelta(days=int(rng.integers(2, 13)), seconds=int(rng.integers(0, 86400)))
        return cls(days, seconds, resubmission_delay, now, roles, plan, n_english)

    def submissions(self, rng, rows: Rows, t: int, m: int, start: date,
                    indices: np.ndarray) -> list[tuple[np.ndarray, datetime, str, str]]:
        """The files of trust `t`'s month `m` (written rows `indices`), as (rows, submitted at, kind,
        version): its first file, then the complete file of a resubmission or the records resent as v4."""
        version = V4 if self.plan.v4[t, m] else V3
        late = self.roles.late
        is_late = late is not None and (t, m) == late
        submitted = datetime.combine(add_months(start, 2 if is_late else 1), datetime.min.time()) + \
            timedelta(days=int(self.days[t, m]), seconds=int(self.seconds[t, m]))
        submitted = min(submitted, self.now - timedelta(hours=1))  # never in the future
        is_late = is_late and (submitted.year * 12 + submitted.month) - (start.year * 12 + start.month) >= 2
        versions = [(indices, submitted, "late" if is_late else "on_time", version)]
        if (t, m) == self.roles.resubmission and t < self.n_english:
            patients = np.unique(rows.patient[indices])
            dropped = rng.choice(patients, size=max(1, round(0.1 * len(patients))), replace=False) \
                if len(patients) else patients
            first = indices[~np.isin(rows.patient[indices], dropped)]
            second_time = self._after(submitted, self.resubmission_delay)
            versions = [(first, submitted, "on_time", version), (indices, second_time, "resubmission", version)]
        if self.plan.v4_resubmission[t, m]:  # the same records again, as v4, a few days later
            versions.append((indices, self._after(submitted, self.plan.resubmission_delay[t]), "resubmission", V4))
        return versions

    def _after(self, submitted: datetime, delay: timedelta) -> datetime:
        """A later file's time: `delay` after the first, but not in the future, and always after the first."""
        again = min(submitted + delay, self.now - timedelta(minutes=30))
        if again <= submitted:
            again = submitted + timedelta(seconds=1)
        return again


def _joined(lines: pa.Array, eol: str) -> bytes:
    """The lines, each followed by `eol`, as one bytes object (from Arrow's buffers: no Python string per
    line)."""
    if len(lines) == 0:
        return b""
    with_eol = pc.binary_join_element_wise(lines, pa.scalar(""), eol)  # line + eol + ''
    array = with_eol.combine_chunks() if isinstance(with_eol, pa.ChunkedArray) else with_eol
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int32, count=len(array) + 1, offset=array.offset * 4)
    return array.buffers()[2].to_pybytes()[offsets[0]:offsets[-1]]



def _write_one(landing: Path, code: str, month: date, stamp: datetime, kind: str, selected: np.ndarray,
               rows: Rows, header: str, encoding: str, eol: str, version: str) -> GeneratedFile:
    """Write one file, ``landing/<YYYYMM>/SACT_<ORG>_<YYYYMM>_<YYYYMMDDHHMMSS>.csv``, and count its defects."""
    lines = rows.lines[version].take(pa.array(rows.position[version][selected]))
    text = (header + eol).encode("utf-8") + _joined(lines, eol)
    if encoding == "cp1252":
        data = text.decode("utf-8").encode("cp1252")
    elif encoding == "utf-8-sig":
        data = b"\xef\xbb\xbf" + text
    else:
        data = text
    folder = landing / f"{month:%Y%m}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"SACT_{code}_{month:%Y%m}_{stamp:%Y%m%d%H%M%S}.csv"
    path.write_bytes(data)
    gaps = rows.v4_gap[selected] if version == V4 else np.full(len(selected), -1)
    defects = FileDefects.count(rows.category[selected], rows.mandatory_kind[selected], rows.required_item[selected],
                                rows.required_bad_code[selected], gaps, len(selected) - len(np.unique(selected)))
    return GeneratedFile(
        path=path, org_code=code, reporting_month=f"{month:%Y-%m}", submitted_at=stamp, rows=len(selected),
        kind=kind, encoding=encoding, line_ending=eol, patients=len(np.unique(rows.patient[selected])),
        defects=defects, sact_version=version,
    )
