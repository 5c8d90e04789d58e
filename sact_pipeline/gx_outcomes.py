"""Suite outcomes, and the whitelists that map a GX validation result onto them without row values.

A SuiteOutcome keeps only counts, dtype names, table-level numbers and names taken from the suite itself
(columns, code lists); validation_dict() keeps GX's result as a JSON-able dict for Data Docs, filtered by
the same whitelists: no error messages or tracebacks (they may quote values), no fingerprint of the frame.
The GX engine that produces the results is sact_pipeline.quality; this module imports neither GX nor pandas.
"""

from __future__ import annotations

import datetime as dt
import numbers
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ExpectationOutcome",
    "SuiteOutcome",
    "validation_dict",
    "expectation_outcome",
    "expectation_labels",
    "expectation_label",
    "unique_labels",
    "TABLE_COLUMN_TYPES",
    "DTYPE_TYPES",
    "AGGREGATE_TYPES",
]

# --------------------------------------------------------------------------------------------------
# Outcomes


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation's result: counts and a short observed value, never row values."""

    expectation: str  # readable, e.g. "expect_column_values_to_not_be_null(patient_key)"
    success: bool
    evaluated: int | None  # element_count (rows evaluated) where GX reports it
    unexpected: int | None  # unexpected_count where GX reports it
    observed: str | None  # short table/aggregate observation (row count, dtype, missing columns, error)

    def describe(self) -> str:
        if self.unexpected is not None:
            text = f"{self.unexpected} unexpected of {self.evaluated if self.evaluated is not None else '?'}"
            if self.observed:
                text += f" ({self.observed})"
            return text
        if self.observed is not None:
            return self.observed if self.observed.startswith("error") else f"observed {self.observed}"
        return "passed" if self.success else "failed"


@dataclass(frozen=True)
class SuiteOutcome:
    """The result of one suite run on one frame."""

    suite: str
    success: bool
    rows: int
    outcomes: tuple[ExpectationOutcome, ...]
    # GX's validation result as a JSON-able dict without row values (validation_dict), so Data Docs can be
    # built from it in another process; not compared (one batch result is shared by several parts).
    validation: dict | None = field(default=None, compare=False, repr=False)

    @property
    def failed(self) -> tuple[ExpectationOutcome, ...]:
        return tuple(o for o in self.outcomes if not o.success)

    def message(self) -> str:
        """One line per failing expectation (name: unexpected of evaluated), or one line saying all passed."""
        failed = self.failed
        if not failed:
            return f"{self.suite}: all {len(self.outcomes)} expectations passed on {self.rows} rows"
        return "\n".join(f"{o.expectation}: {o.describe()}" for o in failed)

    def metadata(self) -> dict[str, int | float | str]:
        """Flat summary for reporting (e.g. AssetCheckResult metadata); counts and names only."""
        meta: dict[str, int | float | str] = {
            "suite": self.suite,
            "rows": self.rows,
            "evaluated_expectations": len(self.outcomes),
            "failed_expectations": len(self.failed),
        }
        if self.failed:
            meta["failed"] = "; ".join(o.expectation for o in self.failed)
        for o in self.outcomes:
            if o.unexpected is not None:
                meta[f"{o.expectation} unexpected"] = o.unexpected
            elif o.observed is not None:
                meta[f"{o.expectation} observed"] = o.observed
        return meta



# --------------------------------------------------------------------------------------------------
# Mapping GX results to outcomes (whitelists only: nothing from a row is copied)

TABLE_COLUMN_TYPES = {"expect_table_columns_to_match_set", "expect_table_columns_to_match_ordered_list"}
DTYPE_TYPES = {"expect_column_values_to_be_of_type", "expect_column_values_to_be_in_type_list"}
# Aggregates that are not themselves a row's value (min, max, quantiles, modes and distinct sets are).
AGGREGATE_TYPES = {
    "expect_column_mean_to_be_between",
    "expect_column_stdev_to_be_between",
    "expect_column_sum_to_be_between",
    "expect_column_proportion_of_unique_values_to_be_between",
    "expect_column_proportion_of_non_null_values_to_be_between",
    "expect_column_unique_value_count_to_be_between",
}
_MISSING_COLUMN = re.compile(r'The column "([^"]{1,200})" in BatchData does not exist')
_METRIC_NAME = re.compile(r"metric_name='([a-z0-9_.]{1,100})'")


def expectation_outcome(label: str, result: Any, frame_columns: Collection[str]) -> ExpectationOutcome:
    config = result.expectation_config
    payload = result.result or {}
    error = _error(result.exception_info)
    if error is not None:
        absent = [c for c in _columns_of(config.kwargs) if c not in frame_columns]
        if absent:  # some GX expectations fail on a missing column with an IndexError instead
            error = _short(f"error: column {', '.join(absent)} does not exist")
    return ExpectationOutcome(
        expectation=label,
        success=bool(result.success),
        evaluated=_int(payload.get("element_count")),
        unexpected=_int(payload.get("unexpected_count")),
        observed=error if error is not None else _observed(config.type, config.kwargs, payload),
    )


# Per-expectation result keys that are counts or shares, whatever the expectation.
_COUNT_KEYS = ("element_count", "unexpected_count", "unexpected_percent", "missing_count", "missing_percent",
               "unexpected_percent_total", "unexpected_percent_nonmissing")


def validation_dict(result: Any, frame_columns: Collection[str] = ()) -> dict[str, Any]:
    """GX's validation result as a JSON-able dict (to_json_dict), keeping from each expectation's result
    only counts and the observed values _observed() allows (row counts, column names, dtypes, aggregates),
    and replacing error details by _error()'s summary: GX's messages and tracebacks may quote values.
    The frame's fingerprint (a hash of its rows) is dropped from the batch markers."""
    data = result.to_json_dict()
    for item in data.get("results") or ():
        config = item.get("expectation_config") or {}
        kind, kwargs = str(config.get("type")), config.get("kwargs") or {}
        payload = item.get("result") or {}
        kept: dict[str, Any] = {k: payload[k] for k in _COUNT_KEYS
                                if k in payload and (payload[k] is None or isinstance(payload[k], (int, float)))}
        observed = payload.get("observed_value")
        if observed is not None and _observed(kind, kwargs, payload) is not None:
            if kind in TABLE_COLUMN_TYPES:
                kept["observed_value"] = [str(c) for c in observed] if isinstance(observed, list) else None
                mismatched = (payload.get("details") or {}).get("mismatched") or {}
                kept["details"] = {"mismatched": {k: sorted(map(str, v)) for k, v in mismatched.items()
                                                  if k in ("missing", "unexpected") and isinstance(v, list)}}
            elif isinstance(observed, (bool, int, float, str)):
                kept["observed_value"] = _short(observed) if isinstance(observed, str) else observed
        item["result"] = kept
        error = _error(item.get("exception_info"))
        if error is not None:
            absent = [c for c in _columns_of(kwargs) if frame_columns and c not in frame_columns]
            if absent:
                error = _short(f"error: column {', '.join(absent)} does not exist")
        item["exception_info"] = {"raised_exception": error is not None, "exception_message": error,
                                  "exception_traceback": None}
        item["meta"] = {}
    markers = (data.get("meta") or {}).get("batch_markers")
    if isinstance(markers, dict):
        markers.pop("pandas_data_fingerprint", None)
    return data


def _columns_of(kwargs: Mapping[str, Any]) -> list[str]:
    columns = [kwargs.get("column"), kwargs.get("column_A"), kwargs.get("column_B"), *(kwargs.get("column_list") or ())]
    return [str(c) for c in columns if c is not None]


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _number(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    if isinstance(value, numbers.Integral):
        return str(int(value))
    return f"{float(value):.6g}"


def _observed(kind: str, kwargs: Mapping[str, Any], payload: Mapping[str, Any]) -> str | None:
    value = payload.get("observed_value")
    if kind in TABLE_COLUMN_TYPES:
        mismatched = (payload.get("details") or {}).get("mismatched") or {}
        parts = []
        if mismatched.get("missing"):
            parts.append("missing columns: " + ", ".join(sorted(map(str, mismatched["missing"]))))
        if kwargs.get("exact_match", True) and mismatched.get("unexpected"):
            parts.append("unexpected columns: " + ", ".join(sorted(map(str, mismatched["unexpected"]))))
        if parts:
            return _short("; ".join(parts))
        return f"{len(value)} columns" if isinstance(value, list) else None
    if kind.startswith("expect_table_"):
        return _number(value)
    if kind in DTYPE_TYPES:
        return _short(value) if isinstance(value, str) else None
    if kind in AGGREGATE_TYPES:
        return _number(value)
    if kind == "expect_column_distinct_values_to_contain_set":
        # GX 1.24 reports how many of OUR expected values are absent (missing_count), with
        # observed_value None; name them only when all are absent. Never the observed (row) values.
        expected = sorted({str(v) for v in kwargs.get("value_set") or ()})
        missing = _int(payload.get("missing_count"))
        if not missing:
            return None
        if missing == len(expected):
            return _short("missing: " + ", ".join(expected))
        return f"{missing} of {len(expected)} expected values missing"
    return None


def _error(info: Any) -> str | None:
    """A safe summary of a metric error; GX's own messages and tracebacks may quote values, so are dropped."""
    if not info:
        return None
    if "raised_exception" in info:
        errors = [info] if info.get("raised_exception") else []
        keys = [""] * len(errors)
    else:
        items = [(str(k), v) for k, v in info.items() if isinstance(v, Mapping) and v.get("raised_exception")]
        keys = [k for k, _ in items]
        errors = [v for _, v in items]
    if not errors:
        return None
    for error in errors:
        found = _MISSING_COLUMN.search(str(error.get("exception_message") or ""))
        if found:
            return _short(f"error: column {found.group(1)} does not exist")
    for error in errors:
        if "must either be None or of the same type" in str(error.get("exception_message") or ""):
            return "error: column values and bounds are of different types"
    for key in keys:
        found = _METRIC_NAME.search(key)
        if found:
            return f"error computing {found.group(1)}"
    return "error"


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------------------------------
# Readable, unique expectation names


def expectation_labels(expectations: Sequence[Any]) -> list[str]:
    labels = []
    for e in expectations:
        config = e.configuration
        labels.append(expectation_label(config.type, config.kwargs))
    return unique_labels(labels)


def unique_labels(labels: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label}#{seen[label]}")
    return out


def expectation_label(kind: str, kwargs: Mapping[str, Any]) -> str:
    args: list[str] = []
    if "column" in kwargs:
        args.append(str(kwargs["column"]))
    if "column_A" in kwargs:
        args += [str(kwargs["column_A"]), str(kwargs["column_B"])]
    if "column_list" in kwargs:
        args += [str(c) for c in kwargs["column_list"]]
    if kind in TABLE_COLUMN_TYPES and "column_set" in kwargs:
        args.append(f"{len(kwargs['column_set'])} columns")
    if "min_value" in kwargs or "max_value" in kwargs:
        args.append(f"{_bound(kwargs.get('min_value'))}..{_bound(kwargs.get('max_value'))}")
    if "value" in kwargs and isinstance(kwargs["value"], (int, float, str)):
        args.append(str(kwargs["value"]))
    mostly = kwargs.get("mostly")
    if mostly is not None and mostly != 1:
        args.append(f"mostly={mostly:g}")
    return f"{kind}({', '.join(args)})"


def _bound(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        if value.time() in (dt.time.min, dt.time.max):
            return value.date().isoformat()
        return value.isoformat(timespec="seconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)

