"""Data-quality gates on GX Core 1.x: layer suites built in code, run whole, reported without row values.

Every layer of the pipeline (raw, clean, reconciliation, summary, published) is validated by one call to
validate_frame(), which runs the whole suite in ONE ValidationDefinition run on an in-process ephemeral
GX context and returns a SuiteOutcome: success, per-expectation counts and a short observed value.

Privacy: frames at the raw and clean layers hold identifiers or pseudonyms, so nothing GX could copy
from a row ever reaches an outcome. The run asks for BASIC results with no unexpected values
(partial_unexpected_count=0, exclude_unexpected_values=True), the outcome keeps only counts, dtype
names, table-level numbers and names taken from the suite itself (columns, code lists), and GX's own
copy of the results (its in-memory validation results store) is emptied after every run. The outcome
also carries GX's result as a JSON-able dict (SuiteOutcome.validation, for Data Docs: see data_docs.py),
filtered by the same whitelists: counts, dtype names, table-level numbers, suite kwargs; no error
messages or tracebacks (they may quote values) and no fingerprint of the frame.

GX is imported lazily (about 3 s): importing this module is cheap; the first validate_frame() or suite
builder call pays for it. This module does not import dagster: callers map SuiteOutcome.metadata() and
SuiteOutcome.message() onto AssetCheckResult themselves.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import numbers
import re
import threading
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sact_pipeline.domain.cleaning import EARLIEST_ADMINISTRATION as _EARLIEST
from sact_pipeline.domain.cleaning import MAX_AGE
from sact_pipeline.domain.publication import SACT_VERSIONS_PUBLISHED

if TYPE_CHECKING:  # pragma: no cover - typing only; GX is imported lazily at run time
    import great_expectations as gx
    import pandas as pd

__all__ = [
    "ExpectationOutcome",
    "SuiteOutcome",
    "validate_frame",
    "raw_expectations",
    "clean_expectations",
    "reconciliation_expectations",
    "summary_expectations",
    "published_expectations",
    "suite_key",
    "disclosure_expectations",
    "SHA256_REGEX",
    "PATIENT_KEY_REGEX",
    "PUBLISHED_COUNT_REGEX",
    "PUBLISHED_CHANGE_REGEX",
]

SHA256_REGEX = r"^[0-9a-f]{64}$"
PATIENT_KEY_REGEX = r"^[0-9a-f]{64}$"
# Published cells are text: empty (missing submission), 0, '*' (suppressed), '[c]' (withheld) or a
# multiple of 5 that is at least 10. Changes may be negative and may be +-5. Groups are non-capturing:
# GX runs Series.str.contains(), which warns (UserWarning, every run) on a capturing group.
PUBLISHED_COUNT_REGEX = r"^(?:|0|\*|\[c\]|[1-9][0-9]*[05])$"
PUBLISHED_CHANGE_REGEX = r"^(?:|\*|\[c\]|0|-?[1-9][0-9]*[05]|-?5)$"

RAW_METADATA_COLUMNS: tuple[str, ...] = (
    "reporting_month", "trust_code", "file_name", "file_sha256", "submitted_at", "row_number", "header_version",
)
CLEAN_DATE_COLUMNS: tuple[str, ...] = ("administration_date", "start_date_of_cycle", "start_date_of_regimen")
# patients <= regimens <= cycles <= drug_administrations (nested keys, see domain.counting).
NESTED_MEASURES: tuple[str, ...] = ("patients", "regimens", "cycles", "drug_administrations")
SUBMISSION_STATUSES: tuple[str, ...] = ("on_time", "late", "missing")
ENGLAND = "ENGLAND"
# The same bounds cleaning quarantines on, so a suite failure means a cleaning defect, not one odd row.
EARLIEST_ADMINISTRATION = _EARLIEST.to_pydatetime()
# GX compares numpy dtypes exactly: "datetime64" alone does not match datetime64[s] (the clean layer's unit).
DATETIME_DTYPES: tuple[str, ...] = ("datetime64[s]", "datetime64[ms]", "datetime64[us]", "datetime64[ns]")

# BASIC gives element_count and unexpected_count per column-map expectation; the two options below
# stop GX from collecting or returning any unexpected values (partial_unexpected_list etc.).
RESULT_FORMAT: dict[str, Any] = {
    "result_format": "BASIC",
    "partial_unexpected_count": 0,
    "exclude_unexpected_values": True,
    "include_unexpected_rows": False,
    "return_unexpected_index_query": False,
}

_DATASOURCE = "sact_pipeline_frames"
_ASSET = "frame"
_BATCH_DEFINITION = "whole_frame"


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
# The GX engine: one ephemeral context per process, one pandas asset, one whole-frame batch definition


@dataclass
class _Engine:
    context: Any
    batch_definition: Any
    suites: dict[str, Any]
    validations: dict[str, Any]


_ENGINE: _Engine | None = None
RUNS = {"count": 0}  # suite runs in this process: the benchmark reports it, a test checks batching with it
_LOCK = threading.RLock()  # GX objects below are shared and mutable: one suite run at a time per process


def import_gx():
    """Import GX (about 3 s, once) and keep its loggers quiet unless the application configured them."""
    gx_logger = logging.getLogger("great_expectations")
    quieten = gx_logger.level == logging.NOTSET
    if quieten:  # before the import: registering expectations logs at DEBUG
        gx_logger.setLevel(logging.ERROR)
    import great_expectations

    if quieten:  # this one sets itself to INFO ("Created temporary directory ... for ephemeral docs site")
        logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.ERROR)
    return great_expectations


def _engine() -> _Engine:
    global _ENGINE
    with _LOCK:
        if _ENGINE is None:
            gx_module = import_gx()
            from great_expectations.data_context.types.base import ProgressBarsConfig

            context = gx_module.get_context(mode="ephemeral")
            # GX 1.x draws a tqdm "Calculating Metrics" bar per run unless the context says otherwise.
            context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
            asset = context.data_sources.add_pandas(_DATASOURCE).add_dataframe_asset(_ASSET)
            batch_definition = asset.add_batch_definition_whole_dataframe(_BATCH_DEFINITION)
            _ENGINE = _Engine(context, batch_definition, suites={}, validations={})
        return _ENGINE


def _suite_and_validation(engine: _Engine, suite_name: str, expectations: Sequence[Any]) -> tuple[Any, Any]:
    """The suite named suite_name holding exactly these expectations, and its ValidationDefinition.

    Expectations are copied (an Expectation added to a suite is bound to it and gets an id), so the
    caller may pass the same objects to several suites or calls.
    """
    gx_module = import_gx()
    copies = [copy.copy(e) for e in expectations]  # Expectation.__copy__: deep copy with id=None
    suite = engine.suites.get(suite_name)
    if suite is None:
        try:  # a suite of that name added to the context some other way: replace it
            engine.context.suites.delete(suite_name)
        except Exception:  # noqa: BLE001 - GX raises several error types for "not found"
            pass
        suite = engine.context.suites.add(gx_module.ExpectationSuite(name=suite_name, expectations=copies))
        engine.suites[suite_name] = suite
    else:
        # Replace the expectations and save: without save() the ValidationDefinition refuses to run
        # ("ExpectationSuite ... has changed since it has last been saved").
        suite.expectations = copies
        suite.save()
    validation = engine.validations.get(suite_name)
    if validation is None:
        try:
            engine.context.validation_definitions.delete(suite_name)
        except Exception:  # noqa: BLE001
            pass
        validation = engine.context.validation_definitions.add(
            gx_module.ValidationDefinition(name=suite_name, data=engine.batch_definition, suite=suite)
        )
        engine.validations[suite_name] = validation
    return suite, validation


def _forget_results(context: Any) -> None:
    """ValidationDefinition.run() keeps every result in the context's (in-memory) results store."""
    store = context.validation_results_store
    for key in store.list_keys():
        store.remove_key(key)


_ROW_WISE_PREFIXES = ("expect_column_values_", "expect_column_pair_values_", "expect_multicolumn_values_",
                      "expect_compound_columns_to_be_unique", "expect_select_column_values_to_be_unique")


def decomposes(expectations: Sequence[Any]) -> bool:
    """Whether a pass on the concatenation of several non-empty frames (same columns) implies a pass on
    each: expectations every row must meet (mostly 1, or 0 which never fails), uniqueness, column sets and
    dtypes, and a minimum row count of at most 1. Not aggregates, nor a `mostly` between 0 and 1."""
    for expectation in expectations:
        kind = expectation.expectation_type
        kwargs = expectation.configuration.kwargs
        if kind == "expect_table_row_count_to_be_between":
            if kwargs.get("max_value") is not None or (kwargs.get("min_value") or 0) > 1:
                return False
        elif kind in _TABLE_COLUMN_TYPES or kind in _DTYPE_TYPES:
            continue
        elif not kind.startswith(_ROW_WISE_PREFIXES) or kind in _AGGREGATE_TYPES:
            return False
        elif kwargs.get("mostly") not in (None, 0, 0.0, 1, 1.0):
            return False
    return True


def as_seen_by_part(outcome: SuiteOutcome, rows: int) -> SuiteOutcome:
    """A suite that passed on a concatenation, reported for one of its frames: evaluated = its rows;
    unexpected 0 where the whole had none, unknown where a never-failing expectation (mostly 0) had some."""
    if not outcome.success:
        raise ValueError("only a passed suite can be shared out: validate the parts to see which failed")
    return SuiteOutcome(outcome.suite, True, rows, tuple(
        ExpectationOutcome(o.expectation, True, rows if o.evaluated is not None else None,
                           0 if o.unexpected == 0 else None, None)
        for o in outcome.outcomes), validation=outcome.validation)


def validate_parts(suite_name: str, expectations: Sequence[Any], frames: Sequence[pd.DataFrame]) -> list[SuiteOutcome]:
    """One outcome per frame, with one GX run for all of them when the suite decomposes and they pass
    together (the usual case: a month of trusts in one run); otherwise one run per frame, so a failure
    is always pinned to its own frame."""
    import pandas as pd

    same_shape = all(len(f) and list(f.columns) == list(frames[0].columns) for f in frames)
    if len(frames) > 1 and same_shape and decomposes(expectations):
        together = validate_frame(suite_name, expectations, pd.concat(frames, ignore_index=True))
        if together.success:
            return [as_seen_by_part(together, len(f)) for f in frames]
    return [validate_frame(suite_name, expectations, f) for f in frames]


def suite_key(expectations: Sequence[Any]) -> tuple:
    """What a suite checks, comparable: frames whose suites have the same key may validate together."""
    return tuple((e.expectation_type, repr(sorted(e.configuration.kwargs.items()))) for e in expectations)


def validate_frame(
    suite_name: str, expectations: Sequence[gx.expectations.Expectation], frame: pd.DataFrame
) -> SuiteOutcome:
    """Run the whole suite on the frame in one ValidationDefinition run; no row values in the result."""
    if not expectations:
        raise ValueError(f"suite {suite_name!r} has no expectations")
    labels = _labels(expectations)
    batch = _vectorisable(frame, expectations)
    with _LOCK:
        engine = _engine()
        suite, validation = _suite_and_validation(engine, suite_name, expectations)
        RUNS["count"] += 1
        try:
            result = validation.run(batch_parameters={"dataframe": batch}, result_format=RESULT_FORMAT)
        finally:
            _forget_results(engine.context)
        ids = [e.id for e in suite.expectations]

    by_id = {r.expectation_config.id: r for r in result.results}
    if len(by_id) == len(ids) and all(i in by_id for i in ids):
        ordered = [by_id[i] for i in ids]
    else:  # pragma: no cover - GX did not echo ids back; keep its order
        ordered = list(result.results)
        labels = [_label(r.expectation_config.type, r.expectation_config.kwargs) for r in ordered]
        labels = _unique(labels)
    columns = {str(c) for c in frame.columns}
    outcomes = tuple(_outcome(label, r, columns) for label, r in zip(labels, ordered))
    return SuiteOutcome(
        suite=suite_name,
        success=bool(result.success) and all(o.success for o in outcomes),
        rows=len(frame),
        outcomes=outcomes,
        validation=validation_dict(result, columns),
    )


def _vectorisable(frame: pd.DataFrame, expectations: Sequence[Any]) -> pd.DataFrame:
    """The frame with the columns of between-expectations in dtypes GX compares vectorised.

    GX 1.24's pandas column_values.between runs a Python function per value (Series.map) unless the
    column is numpy int64/float64 or datetime64[ns]: datetime64[s]/[us] (the clean layer's dates,
    pandas 3's default unit) and nullable Int64 (ages, counts) took ~1 s per column per 500,000 rows.
    Dates within the datetime64[ns] range become [ns] (still datetime: type checks are unaffected);
    other numeric columns become float64 (NA -> NaN, still null) unless a type expectation inspects
    them. Only a shallow copy of the frame is made; the caller's frame is left alone.
    """
    import pandas as pd

    between: set[str] = set()
    typed: set[str] = set()
    for e in expectations:
        column = getattr(e, "column", None)
        if column is None:
            continue
        if e.expectation_type == "expect_column_values_to_be_between":
            between.add(column)
        elif e.expectation_type in _DTYPE_TYPES:
            typed.add(column)
    changed: dict[str, pd.Series] = {}
    for column in between:
        if column not in frame.columns:
            continue
        series = frame[column]
        dtype = series.dtype
        if dtype.kind == "M" and not isinstance(dtype, pd.DatetimeTZDtype) and dtype != "datetime64[ns]":
            low, high = series.min(), series.max()
            if pd.isna(low) or (low >= pd.Timestamp.min and high <= pd.Timestamp.max):
                changed[column] = series.astype("datetime64[ns]")
        elif (
            column not in typed
            and pd.api.types.is_numeric_dtype(dtype)
            and not pd.api.types.is_bool_dtype(dtype)
            and dtype not in ("int64", "float64")
        ):
            changed[column] = series.astype("float64")
    if not changed:
        return frame
    batch = frame.copy(deep=False)
    for column, series in changed.items():
        batch[column] = series
    return batch


# --------------------------------------------------------------------------------------------------
# Mapping GX results to outcomes (whitelists only: nothing from a row is copied)

_TABLE_COLUMN_TYPES = {"expect_table_columns_to_match_set", "expect_table_columns_to_match_ordered_list"}
_DTYPE_TYPES = {"expect_column_values_to_be_of_type", "expect_column_values_to_be_in_type_list"}
# Aggregates that are not themselves a row's value (min, max, quantiles, modes and distinct sets are).
_AGGREGATE_TYPES = {
    "expect_column_mean_to_be_between",
    "expect_column_stdev_to_be_between",
    "expect_column_sum_to_be_between",
    "expect_column_proportion_of_unique_values_to_be_between",
    "expect_column_proportion_of_non_null_values_to_be_between",
    "expect_column_unique_value_count_to_be_between",
}
_MISSING_COLUMN = re.compile(r'The column "([^"]{1,200})" in BatchData does not exist')
_METRIC_NAME = re.compile(r"metric_name='([a-z0-9_.]{1,100})'")


def _outcome(label: str, result: Any, frame_columns: Collection[str]) -> ExpectationOutcome:
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
            if kind in _TABLE_COLUMN_TYPES:
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
    if kind in _TABLE_COLUMN_TYPES:
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
    if kind in _DTYPE_TYPES:
        return _short(value) if isinstance(value, str) else None
    if kind in _AGGREGATE_TYPES:
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


def _labels(expectations: Sequence[Any]) -> list[str]:
    labels = []
    for e in expectations:
        config = e.configuration
        labels.append(_label(config.type, config.kwargs))
    return _unique(labels)


def _unique(labels: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label}#{seen[label]}")
    return out


def _label(kind: str, kwargs: Mapping[str, Any]) -> str:
    args: list[str] = []
    if "column" in kwargs:
        args.append(str(kwargs["column"]))
    if "column_A" in kwargs:
        args += [str(kwargs["column_A"]), str(kwargs["column_B"])]
    if "column_list" in kwargs:
        args += [str(c) for c in kwargs["column_list"]]
    if kind in _TABLE_COLUMN_TYPES and "column_set" in kwargs:
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


# --------------------------------------------------------------------------------------------------
# Layer suites


def raw_expectations(
    item_columns: Sequence[str], header_versions: Collection[str] = ("v3",)
) -> list[gx.expectations.Expectation]:
    """The raw layer frame: the items as text plus month, trust, file_name, file_sha256, submitted_at,
    row_number and header_version."""
    ge = import_gx().expectations
    columns = list(dict.fromkeys([*item_columns, *RAW_METADATA_COLUMNS]))
    return [
        ge.ExpectTableColumnsToMatchSet(column_set=columns, exact_match=False),
        ge.ExpectTableRowCountToBeBetween(min_value=1),
        ge.ExpectColumnValuesToMatchRegex(column="file_sha256", regex=SHA256_REGEX),
        ge.ExpectColumnValuesToNotBeNull(column="row_number"),
        ge.ExpectColumnValuesToBeBetween(column="row_number", min_value=1),
        # A version is a file name and its content: the same bytes under two names are two versions.
        ge.ExpectCompoundColumnsToBeUnique(column_list=["row_number", "file_name", "file_sha256"]),
        ge.ExpectColumnValuesToBeInSet(column="header_version", value_set=sorted(header_versions)),
    ]


def clean_expectations(
    code_lists: Mapping[str, Sequence[str]],
    month_start: dt.date | str,
    month_end: dt.date | str,
    *,
    in_month_mostly: float | None = 0.0,
    today: dt.date | None = None,
) -> list[gx.expectations.Expectation]:
    """The clean activity frame.

    month_start/month_end (inclusive) feed one monitoring expectation: administration_date within the
    reporting month, with mostly=in_month_mostly. The default 0.0 never fails; it reports how many clean
    rows fall outside the month (None leaves it out; raise it to gate on that share).
    """
    ge = import_gx().expectations
    upper = dt.datetime.combine(today or dt.date.today(), dt.time.max)
    expectations = [
        ge.ExpectColumnValuesToNotBeNull(column="patient_key"),
        ge.ExpectColumnValuesToMatchRegex(column="patient_key", regex=PATIENT_KEY_REGEX),
    ]
    for column, codes in code_lists.items():  # nulls are allowed: GX leaves them out of the count
        expectations.append(ge.ExpectColumnValuesToBeInSet(column=column, value_set=list(codes), mostly=1.0))
    for column in CLEAN_DATE_COLUMNS:
        expectations.append(ge.ExpectColumnValuesToNotBeNull(column=column))
        expectations.append(
            ge.ExpectColumnValuesToBeInTypeList(column=column, type_list=list(DATETIME_DTYPES))
        )
    expectations.append(
        ge.ExpectColumnValuesToBeBetween(
            column="administration_date", min_value=EARLIEST_ADMINISTRATION, max_value=upper
        )
    )
    if in_month_mostly is not None:
        expectations.append(
            ge.ExpectColumnValuesToBeBetween(
                column="administration_date",
                min_value=_as_datetime(month_start, end=False),
                max_value=_as_datetime(month_end, end=True),
                mostly=in_month_mostly,
            )
        )
    expectations += [
        ge.ExpectColumnValuesToBeBetween(column="age_at_regimen_start", min_value=0, max_value=MAX_AGE),
        ge.ExpectColumnValuesToNotBeNull(column="drug_name"),
        ge.ExpectColumnValuesToNotBeNull(column="regimen"),
    ]
    return expectations


def raw_reconciliation_expectations() -> list[gx.expectations.Expectation]:
    """One row per newly loaded file version: rows loaded equal the rows counted when it was registered."""
    ge = import_gx().expectations
    return [
        ge.ExpectColumnPairValuesToBeEqual(column_A="registered_rows", column_B="loaded_rows"),
        ge.ExpectColumnValuesToBeBetween(column="loaded_rows", min_value=1),
    ]


def reconciliation_expectations(max_quarantine_share: float) -> list[gx.expectations.Expectation]:
    """The reconciliation frame, one row per file version: raw_rows, clean_rows, quarantined_rows, duplicate_rows,
    opted_out_rows, accounted_rows (their sum) and quarantine_share."""
    ge = import_gx().expectations
    return [
        ge.ExpectColumnPairValuesToBeEqual(column_A="raw_rows", column_B="accounted_rows"),
        ge.ExpectColumnValuesToNotBeNull(column="quarantine_share"),
        ge.ExpectColumnValuesToBeBetween(column="quarantine_share", min_value=0, max_value=max_quarantine_share),
    ]


def summary_expectations(
    count_columns: Sequence[str],
    *,
    month_column: str = "reporting_month",
    nested: Sequence[str] = NESTED_MEASURES,
) -> list[gx.expectations.Expectation]:
    """The trust-month summary (domain.summary.summarise_month: its month column is reporting_month).

    Counts are >= 0 where present (null = missing submission); patients <= regimens <= cycles <=
    drug_administrations on rows where both are present; one row per (month, org_code).
    """
    ge = import_gx().expectations
    expectations = [ge.ExpectColumnValuesToBeBetween(column=c, min_value=0) for c in count_columns]
    for smaller, larger in zip(nested, nested[1:]):
        expectations.append(
            ge.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A=larger, column_B=smaller, or_equal=True, ignore_row_if="either_value_is_missing"
            )
        )
    expectations += [
        ge.ExpectCompoundColumnsToBeUnique(column_list=[month_column, "org_code"]),
        ge.ExpectColumnValuesToNotBeNull(column="submission_status"),
        ge.ExpectColumnValuesToBeInSet(column="submission_status", value_set=list(SUBMISSION_STATUSES)),
    ]
    return expectations


def published_expectations(
    count_columns: Sequence[str], change_columns: Sequence[str], english_codes: Collection[str]
) -> list[gx.expectations.Expectation]:
    """The published table, all cells text: rule R shapes for counts and changes, English trusts plus
    one ENGLAND row, one row per org_code."""
    ge = import_gx().expectations
    expectations = [ge.ExpectColumnValuesToMatchRegex(column=c, regex=PUBLISHED_COUNT_REGEX) for c in count_columns]
    expectations += [ge.ExpectColumnValuesToMatchRegex(column=c, regex=PUBLISHED_CHANGE_REGEX) for c in change_columns]
    expectations += [
        ge.ExpectColumnValuesToNotBeNull(column="org_code"),
        ge.ExpectColumnValuesToBeInSet(column="org_code", value_set=sorted({*english_codes, ENGLAND})),
        ge.ExpectColumnDistinctValuesToContainSet(column="org_code", value_set=[ENGLAND]),
        ge.ExpectColumnValuesToBeUnique(column="org_code"),
        # the SACT version of the file version used: empty for ENGLAND and where none is usable
        ge.ExpectColumnValuesToBeInSet(column="sact_version", value_set=list(SACT_VERSIONS_PUBLISHED)),
    ]
    return expectations


def disclosure_expectations() -> list[gx.expectations.Expectation]:
    """The attacker's view of the tables about to be released (publication.suppressed_cell_ranges): every
    '*' cell must still stand for at least two true counts within 1..7."""
    ge = import_gx().expectations
    return [
        ge.ExpectColumnPairValuesAToBeGreaterThanB(column_A="highest", column_B="lowest"),
        ge.ExpectColumnValuesToBeBetween(column="lowest", min_value=1, max_value=7),
        ge.ExpectColumnValuesToBeBetween(column="highest", min_value=1, max_value=7),
    ]


def _as_datetime(value: dt.date | str, *, end: bool) -> dt.datetime:
    """A month bound as a naive datetime; a bare date is the whole day (00:00 or 23:59:59.999999)."""
    if isinstance(value, str):
        parsed = dt.datetime.fromisoformat(value)
        bare_date = len(value.strip()) <= 10
    elif isinstance(value, dt.datetime):
        parsed, bare_date = value, False
    else:
        parsed, bare_date = dt.datetime.combine(value, dt.time.min), True
    if hasattr(parsed, "to_pydatetime"):  # pandas Timestamp
        parsed = parsed.to_pydatetime()
    if bare_date and end:
        parsed = dt.datetime.combine(parsed.date(), dt.time.max)
    return parsed


def data_quality_expectations(items: Collection[str]) -> list[gx.expectations.Expectation]:
    """A trust-month's item measures (domain.data_quality.item_scores, with the partition columns and the
    trust-month's assessed_rows): each v3 item once, counts that nest (valid <= present <= rows = the
    assessed rows), shares within 0-1. All hold on each trust-month's part of a concatenation
    (quality.decomposes), so a month's trusts validate in one run."""
    ge = import_gx().expectations
    return [
        ge.ExpectColumnValuesToBeInSet(column="item", value_set=sorted(items)),
        ge.ExpectCompoundColumnsToBeUnique(column_list=["reporting_month", "trust_code", "item"]),
        ge.ExpectColumnPairValuesToBeEqual(column_A="rows", column_B="assessed_rows"),
        ge.ExpectColumnPairValuesAToBeGreaterThanB(column_A="rows", column_B="present", or_equal=True),
        ge.ExpectColumnPairValuesAToBeGreaterThanB(column_A="present", column_B="valid", or_equal=True),
        ge.ExpectColumnValuesToBeBetween(column="valid", min_value=0),
        *(ge.ExpectColumnValuesToBeBetween(column=c, min_value=0, max_value=1)
          for c in ("completeness", "validity", "item_score")),
    ]


def data_quality_month_expectations() -> list[gx.expectations.Expectation]:
    """The month's data-quality table across organisations: one row per trust, score 0-100, shares 0-1,
    every clean and quarantined row assessed (more only where opt-outs removed rows after a raw purge)."""
    ge = import_gx().expectations
    return [
        ge.ExpectColumnValuesToBeUnique(column="org_code"),
        ge.ExpectColumnValuesToNotBeNull(column="org_code"),
        ge.ExpectColumnValuesToBeBetween(column="score", min_value=0, max_value=100),
        ge.ExpectColumnValuesToBeBetween(column="quarantined_share", min_value=0, max_value=1),
        ge.ExpectColumnPairValuesAToBeGreaterThanB(column_A="assessed_rows", column_B="accounted_rows", or_equal=True),
    ]
