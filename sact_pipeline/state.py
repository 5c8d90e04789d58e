"""The pipeline's state questions, answered from the warehouse: what each layer was built from
(fingerprints), what is behind its inputs (affected) and what failed a gate on its current files (held).

`PipelineStatus.read()` gathers the answers the planner (sact_pipeline.planning) decides from; the layers
ask the same questions when they build (a trust-month built from its current files is skipped).
"""

from __future__ import annotations

from datetime import date
from functools import cached_property

import pandas as pd

from sact_pipeline.domain.counting import month_status, months_up_to, previous_month
from sact_pipeline.domain.organisations import OrganisationRegister
from sact_pipeline.domain.spec import SACT
from sact_pipeline.gating import fingerprint
from sact_pipeline.planning import PipelineState
from sact_pipeline.settings import Settings
from sact_pipeline.warehouse import Warehouse
from sact_pipeline.tables import submission_files

RAW, CLEAN, QUALITY, SUMMARY, PUBLISHED, QUALITY_REPORT = (
    "raw", "clean", "quality", "summary", "published", "quality_report")


class PipelineStatus:
    """Fingerprints, affected and held trust-months, and months behind; `key_id` is the current
    pseudonymisation key's id (a callable: the key is loaded only when a question needs it)."""

    def __init__(self, settings: Settings, warehouse: Warehouse, organisations: OrganisationRegister, key_id,
                 today: date | None = None):
        self.settings, self.warehouse, self.organisations, self._key_id = settings, warehouse, organisations, key_id
        self.today = today or date.today()  # the day a month is judged provisional or final

    @property
    def key_id(self) -> str:
        return self._key_id()

    # --- files --------------------------------------------------------------------------------------------
    def accepted_files(self) -> pd.DataFrame:
        """Accepted file versions (file name + SHA-256), oldest first; the last of a trust-month is in use.

        Copies of one file in two folders count once. The same content sent again under a later
        timestamp is a new version (a trust re-sending an earlier file makes it current again).
        """
        files = self.warehouse.read(submission_files)
        files = files.sort_values(["submitted_at", "registered_at", "relative_path"])
        return files.drop_duplicates(["trust_code", "reporting_month", "file_name", "sha256"],
                                     keep="first").reset_index(drop=True)

    def trust_month_fingerprints(self, files: pd.DataFrame | None = None) -> dict[tuple[str, str], str]:
        """The registered file versions of each trust-month, as one hash (pass `files` if already read)."""
        files = self.accepted_files() if files is None else files
        return {
            (month, trust): fingerprint(f"{name}|{sha}|{at}" for name, sha, at in
                                        zip(group["file_name"], group["sha256"], group["submitted_at"]))
            for (month, trust), group in files.groupby(["reporting_month", "trust_code"])
        }

    def months_with_data(self, files: pd.DataFrame | None = None) -> list[str]:
        """Every month from the first with an accepted file to the last (a month with none is published too)."""
        files = self.accepted_files() if files is None else files
        if files.empty:
            return []
        first, last = files["reporting_month"].min(), files["reporting_month"].max()
        span = (int(last[:4]) - int(first[:4])) * 12 + int(last[5:]) - int(first[5:]) + 1
        return months_up_to(last, span)

    # --- trust-months -------------------------------------------------------------------------------------
    def clean_fingerprint(self, files_fingerprint: str, key_id: str) -> str:
        """What a clean trust-month is made from: its file versions, the pseudonymisation key, and the rules
        it was cleaned by (the data-set table and the v4 transition months): a change to any re-derives it."""
        transition = self.settings.transition
        return fingerprint([files_fingerprint, key_id,
                            f"data set|{SACT.digest}|{transition.v4_from}|{transition.v4_only_from}"])

    def affected_trust_months(self, files: pd.DataFrame | None = None) -> list[tuple[str, str]]:
        """Trust-months whose clean layer is not what their accepted file versions, the current key and the
        registered opt-outs make: a new version, a rekey, or a patient who opted out since it was built.

        A trust-month whose raw rows were purged cannot be re-derived with another key: it keeps the key
        it was built with (recorded with it) and counts as current under that key."""
        current = self.trust_month_fingerprints(files)
        done = self.warehouse.layer_states(CLEAN)
        pending = self.warehouse.pending_optouts()
        keys = self.warehouse.clean_key_ids()
        purged = self.warehouse.purged_trust_months()
        key_id = self.key_id
        behind = self.quality_behind(current)  # clean current, its data quality not: the run re-derives both
        return sorted(tm for tm, files_fingerprint in current.items()
                      if tm in pending or tm in behind or done.get(tm) != self.clean_fingerprint(
                          files_fingerprint, keys.get(tm, key_id) if tm in purged else key_id))

    def _failed_on_current_files(self, current: dict[tuple[str, str], str]) -> pd.DataFrame:
        """Gate failures recorded against the trust-months' current file versions."""
        failures = self.warehouse.gate_failures()
        now = [current.get((m, t)) == f for m, t, f in
               failures[["reporting_month", "trust_code", "inputs_fingerprint"]].itertuples(index=False)]
        return failures.loc[pd.Series(now, index=failures.index, dtype=bool)]

    def held_trust_months(self, files: pd.DataFrame | None = None) -> dict[tuple[str, str], str]:
        """Trust-months whose current file versions failed a gate, with the failure: retrying them cannot
        help, so the sensor leaves them (and their month's publication) alone until a new version arrives.
        A failed data-quality assessment holds nothing back: the layer is internal, not upstream of the
        publication (its check fails, and the last good assessment stands)."""
        failed = self._failed_on_current_files(self.trust_month_fingerprints(files))
        return {(m, t): f"{layer} layer: {message}" for m, t, layer, message in
                failed[["reporting_month", "trust_code", "layer", "message"]].itertuples(index=False)
                if layer != QUALITY}

    def quality_behind(self, current: dict[tuple[str, str], str] | None = None) -> set[tuple[str, str]]:
        """Trust-months whose data quality was not assessed from their current clean rows (clean rebuilt
        since, or built before data quality was measured), unless its assessment failed (its gate, or
        nothing to measure) on its current files: like any gate failure, that waits for a new version."""
        clean, assessed = self.warehouse.layer_states(CLEAN), self.warehouse.layer_states(QUALITY)
        current = self.trust_month_fingerprints() if current is None else current
        failed = self._failed_on_current_files(current)
        failed = set(zip(failed.loc[failed["layer"] == QUALITY, "reporting_month"],
                         failed.loc[failed["layer"] == QUALITY, "trust_code"]))
        return {key for key, state in clean.items() if assessed.get(key) != state and key not in failed}

    # --- months -------------------------------------------------------------------------------------------
    def month_fingerprint(self, month: str, clean_states: dict | None = None, files: pd.DataFrame | None = None,
                          opted_out: dict | None = None, summaries: dict | None = None,
                          held: dict | None = None, pending: dict | None = None) -> str:
        """What a month's summary and publication depend on: the clean partitions of it and the month
        before, the trusts listed (anything submitted up to the month), which of them are held by a failed
        gate, the timeliness setting and whether the month's deadline has passed (so the first refresh or
        sensor tick after it publishes the month final, with no new file).
        (The optional arguments are the warehouse's answers, when already read for many months.)"""
        clean_states = self.warehouse.layer_states(CLEAN) if clean_states is None else clean_states
        files = self.accepted_files() if files is None else files
        before = previous_month(month)
        opted_out = self.warehouse.opted_out_rows([month, before]) if opted_out is None else opted_out
        summaries = self.warehouse.layer_states(SUMMARY) if summaries is None else summaries
        parts = [f"{m}|{t}|{f}" for (m, t), f in clean_states.items() if m in (month, before)]
        parts += [f"trust|{t}" for t in files.loc[files["reporting_month"] <= month, "trust_code"].unique()]
        parts += [f"versions|{m}|{t}|{s}|{a}" for m, t, s, a in
                  files.loc[files["reporting_month"] == month, ["reporting_month", "trust_code", "sha256",
                                                               "submitted_at"]].itertuples(index=False)]
        # Opt-outs applied change the counts without changing the files or the key: re-publish then too.
        parts += [f"opted-out|{m}|{t}|{n}" for (m, t), n in opted_out.items() if m in (month, before)]
        held = self.held_trust_months(files) if held is None else held
        parts += [f"held|{t}|{reason}" for (m, t), reason in sorted(held.items()) if m == month]
        # An opt-out waiting for a held trust-month (which cannot be re-derived) makes it unusable: re-publish.
        pending = self.warehouse.pending_optouts() if pending is None else pending
        parts += [f"opt-out pending|{t}" for (m, t) in sorted(pending) if m == month]
        parts.append(f"deadline|{self.settings.deadline_months}|"
                     f"{month_status(month, self.today, self.settings.deadline_months)}")
        parts.append(f"organisations|{self.organisations_fingerprint}")
        # The published changes read the stored summary of the month before: when it is rebuilt, re-publish.
        parts.append(f"previous-summary|{summaries.get((before, ''), '')}")
        return fingerprint(parts)

    @cached_property
    def organisations_fingerprint(self) -> str:
        """Names and countries shown or used for publication: a new ODS extract re-publishes."""
        return fingerprint(f"{o.code}|{o.name}|{o.country}" for o in self.organisations)

    def quality_report_fingerprint(self, month: str, assessed: dict | None = None, summaries: dict | None = None) -> str:
        """What the month's report is built from: its trust-months' assessments, the month's summary (the
        trusts' data statuses, shown as published) and the organisations' names. The trend's earlier months
        are shown as they were when the report was built: a correction to an earlier month does not re-run
        every later month (it shows in each later month's next report)."""
        assessed = self.warehouse.layer_states(QUALITY) if assessed is None else assessed
        summaries = self.warehouse.layer_states(SUMMARY) if summaries is None else summaries
        return fingerprint([f"organisations|{self.organisations_fingerprint}",
                            f"summary|{summaries.get((month, ''), '')}"]
                           + [f"{m}|{t}|{f}" for (m, t), f in assessed.items() if m == month])

    # --- everything the planner reads ---------------------------------------------------------------------
    def read(self) -> PipelineState:
        """The state the planner decides from, in one read of each warehouse table it needs."""
        files = self.accepted_files()
        registered = self.trust_month_fingerprints(files)
        months = self.months_with_data(files)
        clean, assessed = self.warehouse.layer_states(CLEAN), self.warehouse.layer_states(QUALITY)
        opted_out = self.warehouse.opted_out_rows(sorted({*months, *map(previous_month, months)}))
        summaries = self.warehouse.layer_states(SUMMARY)
        pending = self.warehouse.pending_optouts()
        key_id = self.key_id
        # A trust-month build's inputs: its files, the key, the opt-outs still to apply to it (an opt-out
        # re-derives a trust-month whose files are unchanged) and its data-quality state.
        inputs = {tm: f"{f}{key_id}{sorted(pending.get(tm, ()))}{assessed.get(tm, '')}" for tm, f in registered.items()}
        held = self.held_trust_months(files)
        return PipelineState(
            registered=registered, affected=frozenset(self.affected_trust_months(files)),
            held=held, trust_month_inputs=inputs, months=tuple(months),
            month_inputs={m: self.month_fingerprint(m, clean, files, opted_out, summaries, held, pending)
                          for m in months},
            published=_by_month(self.warehouse.layer_states(PUBLISHED)),
            report_inputs={m: self.quality_report_fingerprint(m, assessed, summaries) for m in months},
            reported=_by_month(self.warehouse.layer_states(QUALITY_REPORT)),
        )


def _by_month(states: dict[tuple[str, str], str]) -> dict[str, str]:
    return {month: state for (month, trust), state in states.items() if trust == ""}
