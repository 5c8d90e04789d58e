"""The GX engine (GX Core 1.x): layer suites run whole on an in-process context, reported without row values.

The suites themselves (expectation builders, and which asset each belongs to) are sact_pipeline.suites;
the outcomes and the whitelists mapping GX results onto them are sact_pipeline.gx_outcomes.

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
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sact_pipeline.gx_outcomes import (
    AGGREGATE_TYPES,
    DTYPE_TYPES,
    TABLE_COLUMN_TYPES,
    ExpectationOutcome,
    SuiteOutcome,
    expectation_label,
    expectation_labels,
    expectation_outcome,
    unique_labels,
    validation_dict,
)

if TYPE_CHECKING:  # pragma: no cover - typing only; GX is imported lazily at run time
    from sact_pipeline.measurements import Measurements
    import great_expectations as gx
    import pandas as pd

__all__ = [
    "ExpectationOutcome",
    "SuiteOutcome",
    "validate_frame",
    "validate_parts",
    "validation_dict",
    "decomposes",
    "suite_key",
    "import_gx",
]

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
# The GX engine: one ephemeral context per process, one pandas asset, one whole-frame batch definition


@dataclass
class _Engine:
    context: Any
    batch_definition: Any
    suites: dict[str, Any]
    validations: dict[str, Any]


_ENGINE: _Engine | None = None
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
        elif kind in TABLE_COLUMN_TYPES or kind in DTYPE_TYPES:
            continue
        elif not kind.startswith(_ROW_WISE_PREFIXES) or kind in AGGREGATE_TYPES:
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


def validate_parts(suite_name: str, expectations: Sequence[Any], frames: Sequence[pd.DataFrame], *,
                   measurements: Measurements | None = None) -> list[SuiteOutcome]:
    """One outcome per frame, with one GX run for all of them when the suite decomposes and they pass
    together (the usual case: a month of trusts in one run); otherwise one run per frame, so a failure
    is always pinned to its own frame. Each GX run is counted in `measurements`."""
    import pandas as pd

    same_shape = all(len(f) and list(f.columns) == list(frames[0].columns) for f in frames)
    if len(frames) > 1 and same_shape and decomposes(expectations):
        together = validate_frame(suite_name, expectations, pd.concat(frames, ignore_index=True),
                                  measurements=measurements)
        if together.success:
            return [as_seen_by_part(together, len(f)) for f in frames]
    return [validate_frame(suite_name, expectations, f, measurements=measurements) for f in frames]


def suite_key(expectations: Sequence[Any]) -> tuple:
    """What a suite checks, comparable: frames whose suites have the same key may validate together."""
    return tuple((e.expectation_type, repr(sorted(e.configuration.kwargs.items()))) for e in expectations)


def validate_frame(
    suite_name: str, expectations: Sequence[gx.expectations.Expectation], frame: pd.DataFrame, *,
    measurements: Measurements | None = None,
) -> SuiteOutcome:
    """Run the whole suite on the frame in one ValidationDefinition run (counted in `measurements`); no row
    values in the result."""
    if not expectations:
        raise ValueError(f"suite {suite_name!r} has no expectations")
    labels = expectation_labels(expectations)
    batch = _vectorisable(frame, expectations)
    with _LOCK:
        engine = _engine()
        suite, validation = _suite_and_validation(engine, suite_name, expectations)
        if measurements is not None:
            measurements.suite_runs += 1
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
        labels = [expectation_label(r.expectation_config.type, r.expectation_config.kwargs) for r in ordered]
        labels = unique_labels(labels)
    columns = {str(c) for c in frame.columns}
    outcomes = tuple(expectation_outcome(label, r, columns) for label, r in zip(labels, ordered))
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
        elif e.expectation_type in DTYPE_TYPES:
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
