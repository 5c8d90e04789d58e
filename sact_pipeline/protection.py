"""Data protection state of the pipeline: registration opt-outs, the pseudonymisation key, raw retention.

Kept apart so the layers read as layers: what opt-outs are registered and which trust-months still
hold an opted-out patient, which key each clean trust-month was built with (and refusing to mix two), and purging identifiable raw
rows past their retention. The reading and pseudonymising itself is in the domain core (domain.optouts,
domain.cleaning); this module decides, and the warehouse's named queries keep the state.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import pandas as pd
import sqlalchemy as sa

from sact_pipeline.context import UsesContext
from sact_pipeline.domain.counting import months_up_to, previous_month
from sact_pipeline.domain.landing import find_candidate_files, sha256_of, sha256_of_file
from sact_pipeline.domain.optouts import OptOutFileRejected, read_optout_file
from sact_pipeline.domain.pseudonymise import PseudonymisationKeyError
from sact_pipeline.settings import SettingsError
from sact_pipeline.tables import (
    optout_files,
    optout_patients,
    raw_purges,
    raw_submissions,
    rejected_files,
    submission_files,
)
from sact_pipeline.warehouse import OPTOUT_APPLIED, OPTOUT_REJECTED


class PseudonymisationKeyChanged(PseudonymisationKeyError):
    """The clean layer was built with another key than the one configured now: refreshing would mix
    pseudonyms of two keys, so nothing runs until the key is restored or `sact-pipeline rekey` is run."""


APPLIED, REJECTED = OPTOUT_APPLIED, OPTOUT_REJECTED  # optout_files.status


class OptOuts(NamedTuple):
    """What a clean build applies: opted-out patient keys (current key) and the opt-out files they come from."""

    keys: frozenset[str]
    files: frozenset[str]


NO_OPTOUTS = OptOuts(frozenset(), frozenset())


@dataclass(frozen=True)
class RawPurge:
    """What a retention purge removed (or would remove): raw rows before `cutoff` and their files."""

    cutoff: str
    rows: int
    trust_months: int
    files: int
    skipped: list[str]  # 'YYYY-MM TRUST' of older trust-months not purged: their clean layer is not current


class DataProtection(UsesContext):
    """Opt-outs, key checks and raw retention (see the module docstring)."""

    # --- registration opt-outs ------------------------------------------------------------------------------
    # A new opt-out and a clean write of a trust-month holding its patient may run at once. Each checks the
    # other inside its own transaction (registration: which clean rows hold the new patients; clean write:
    # which opt-outs it did not apply hold the rows it writes), under a lock that lets clean writes run
    # together but not beside a registration: one always sees the other's rows, and marks the trust-month
    # pending. (SQLite has one writer at a time, which is the same lock.)
    def register_optouts(self) -> list[tuple[str, str, int]]:
        """Register each new opt-out file (by content): its patients as pseudonyms under the current key,
        and, in the same transaction, every trust-month whose clean rows hold one of them as pending
        (affected until re-derived). Returns (file name, note or 'rejected: reason', trust-months) per file."""
        registered = set(self.warehouse.read(optout_files)["sha256"])
        results = []
        for path in find_candidate_files(self.settings.optout_dir):
            data = path.read_bytes()
            digest = sha256_of(data)
            if digest in registered:
                continue
            registered.add(digest)
            record = {"sha256": digest, "file_name": path.name, "size_bytes": len(data),
                      "registered_at": datetime.now()}
            try:
                listed = read_optout_file(path.name, data)
            except OptOutFileRejected as rejection:
                record.update(status=REJECTED, entries=0, invalid_entries=0, reason=rejection.reason)
                self.warehouse.replace([(optout_files, {"sha256": digest}, pd.DataFrame([record]))])
                results.append((path.name, f"rejected: {rejection.reason}", 0))
                continue
            record.update(status=APPLIED, entries=len(listed.nhs_numbers), invalid_entries=len(listed.invalid_rows),
                          reason=listed.note)
            marked = []
            self.warehouse.replace(
                [(optout_files, {"sha256": digest}, pd.DataFrame([record])),
                 (optout_patients, {"file_sha256": digest, "pseudonymisation_key_id": self.pseudonymiser.key_id},
                  self._optout_keys(listed, digest))],
                before=lambda connection: self.warehouse.optouts.lock(connection, exclusive=True),
                after=lambda connection: marked.append(self.warehouse.optouts.mark_pending(connection, self.warehouse.optouts.matches(
                    connection, self.pseudonymiser.key_id, file_sha256=digest))))
            results.append((path.name, listed.note, marked[0]))
        return results

    def _optout_keys(self, listed, digest: str) -> pd.DataFrame:
        """optout_patients rows of one opt-out file under the current key."""
        return pd.DataFrame({"patient_key": listed.pseudonyms(self.pseudonymiser),
                             "pseudonymisation_key_id": self.pseudonymiser.key_id, "file_sha256": digest})

    def rekey_optouts(self) -> int:
        """Derive every opt-out's patient keys under the current key too, from the opt-out files: they are
        the only place the NHS numbers are kept, so a rekey is refused while one of them is missing (its
        patients would silently stop being opted out). Keys under earlier keys are kept until no clean
        trust-month is built with them (forget_unused_optout_keys): a rekey stopped half way, or a key
        restored, still finds every opt-out. One transaction; returns the files re-derived."""
        registered = self.warehouse.read(optout_files)
        usable = registered.loc[registered["status"] == APPLIED]
        present = {sha256_of(path.read_bytes()): path for path in find_candidate_files(self.settings.optout_dir)}
        missing = usable.loc[~usable["sha256"].isin(list(present))]
        if len(missing):
            raise PseudonymisationKeyError(
                f"cannot rekey: {len(missing)} registered opt-out files are not in {self.settings.optout_dir} "
                f"({', '.join(sorted(missing['file_name']))}); restore them first, or their patients would not be "
                "opted out under the new key")
        operations = [(optout_patients, {"file_sha256": digest, "pseudonymisation_key_id": self.pseudonymiser.key_id},
                       self._optout_keys(read_optout_file(present[digest].name, present[digest].read_bytes()), digest))
                      for digest in usable["sha256"]]
        if operations:
            self.warehouse.replace(operations, before=lambda connection: self.warehouse.optouts.lock(connection, exclusive=True))
        return len(operations)

    def forget_unused_optout_keys(self) -> int:
        """Drop opt-out keys made with a key no clean trust-month is built with any more (after a rekey)."""
        in_use = set(self.warehouse.clean_key_ids().values()) | {self.pseudonymiser.key_id}
        return self.warehouse.optouts.forget_keys(in_use)

    def rejected_optouts(self) -> list[tuple[str, str]]:
        """Opt-out files lying in SACT_OPTOUT_DIR that could not be read: (file name, reason). They are
        applied to nothing until a readable copy arrives, so every refresh reports them."""
        registered = self.warehouse.read(optout_files)
        rejected = registered.loc[registered["status"] == REJECTED]
        rejected = dict(zip(rejected["sha256"], rejected["reason"]))
        return [(path.name, rejected[digest]) for path in find_candidate_files(self.settings.optout_dir)
                if (digest := sha256_of(path.read_bytes())) in rejected]

    def opted_out(self) -> "OptOuts":
        """Patient keys (current key) of every registered opt-out and the files they come from, read in that
        order from one connection, so a file registered meanwhile is never counted as applied without its
        patients (it is applied by the next build, which the registration marks pending)."""
        files, keys = self.warehouse.optouts.applied(self.pseudonymiser.key_id)
        return OptOuts(keys, files)

    def mark_optouts_pending(self, month: str) -> list[str]:
        """Mark (and return) the trust codes of a month whose clean rows still hold an opted-out patient."""
        return self.warehouse.optouts.mark_month_pending(self.pseudonymiser.key_id, month)

    def clean_write_hooks(self, month: str, trust: str, applied: frozenset[str]) -> dict:
        """`before`/`after` for the transaction that writes a clean trust-month: the opt-outs it applied are
        done for it; one registered while it was being built (not applied) is marked pending if the rows
        just written hold its patient."""

        def after(connection: sa.Connection) -> None:
            self.warehouse.optouts.clear_pending(connection, month, trust, applied)
            self.warehouse.optouts.mark_pending(connection, self.warehouse.optouts.matches(
                connection, self.pseudonymiser.key_id, month=month, trust=trust, not_files=applied))

        return {"before": lambda connection: self.warehouse.optouts.lock(connection, exclusive=False),
                "after": after}

    def check_key(self) -> None:
        """Refuse (PseudonymisationKeyChanged) when the configured key is not the one the clean layer and the
        opt-out list were made with: a changed key is either a mistake (restore it) or a rekey (run `rekey`).

        Trust-months that cannot be re-derived now do not count: purged ones (no raw rows) and held ones
        (their current files fail a gate; rebuilt under the current key when a corrected file arrives)."""
        frozen = self.warehouse.purged_trust_months() | set(self.status.held_trust_months())
        others = Counter(k for tm, k in self.warehouse.clean_key_ids().items()
                         if k != self.pseudonymiser.key_id and tm not in frozen)
        problems = [f"{count} clean trust-months were built with key id {key}" for key, count in sorted(others.items())]
        unkeyed = self.warehouse.optouts.files_without_keys(self.pseudonymiser.key_id)
        if unkeyed:  # they would silently stop applying
            problems.append(f"{unkeyed} registered opt-out files have no patient keys under it")
        if problems:
            raise PseudonymisationKeyChanged(
                f"the configured pseudonymisation key (key id {self.pseudonymiser.key_id}) is not the key the "
                f"warehouse was built with ({'; '.join(problems)}): if the key was changed on purpose, run "
                "`sact-pipeline rekey` to re-derive the opt-out list and the clean layer; otherwise restore the key")

    # --- retention of identifiable raw data -----------------------------------------------------------------
    def retention_cutoff(self, keep_months: int) -> str:
        """The first reporting month whose raw rows are kept: `keep_months` months back from the last
        month that has ended."""
        if keep_months < self.settings.deadline_months + 1:  # a month still open to on-time files keeps its rows
            raise SettingsError(f"the raw retention must be at least {self.settings.deadline_months + 1} months "
                                "(SACT_DEADLINE_MONTHS + 1), from SACT_RAW_RETENTION_MONTHS or --keep-months")
        return months_up_to(previous_month(self.today.strftime("%Y-%m")), keep_months)[0]

    def purge_raw(self, keep_months: int, *, dry_run: bool = False, log=lambda line: None) -> "RawPurge":
        """Delete identifiable raw rows of reporting months before the retention cutoff, and the landing-zone
        files they came from; rejected files rejected before the cutoff go too. The file registers (names,
        hashes, row counts) and the clean, summary and published layers stay, so history stays auditable.

        Only trust-months whose clean layer is current (built from their files, under the current key, with
        every opt-out applied, not held by a gate) are purged: the others still need their raw rows, and are
        named in `skipped` until a later purge finds them current.

        The rows of each trust-month go in one transaction with its raw_purges record; files are deleted
        after it (a crash in between leaves files that the next purge deletes: it can be run again)."""
        cutoff = self.retention_cutoff(keep_months)
        old = self.warehouse.raw_rows_before(cutoff)
        registered = self.warehouse.read(submission_files)
        built_with = self.warehouse.clean_key_ids()
        files = self.status.accepted_files()  # (registered lists every copy: all of them are deleted below)
        not_current = set(self.status.affected_trust_months(files)) | set(self.status.held_trust_months(files)) | {
            (m, t) for m, t, _ in old if built_with.get((m, t)) != self.pseudonymiser.key_id}
        to_purge = [(m, t, n) for m, t, n in old if (m, t) not in not_current]
        skipped = sorted(f"{m} {t}" for m, t, _ in old if (m, t) in not_current)
        old_files = registered.loc[(registered["reporting_month"] < cutoff) & ~pd.Series(
            [(m, t) in not_current for m, t in zip(registered["reporting_month"], registered["trust_code"])],
            index=registered.index, dtype=bool), ["relative_path", "sha256", "reporting_month", "trust_code"]]
        rejected = self.warehouse.read(rejected_files)
        old_rejected = rejected.loc[rejected["rejected_at"] < pd.Timestamp(f"{cutoff}-01"), ["relative_path", "sha256"]]
        landing = self.settings.landing_dir
        deletable = [(landing / path, sha, month, trust) for path, sha, month, trust in old_files.itertuples(index=False)]
        deletable += [(landing / path, sha, "", "") for path, sha in old_rejected.itertuples(index=False)]
        # Only the registered content: a newer file at the same path is another version, kept.
        deletable = [item for item in deletable if item[0].is_file() and sha256_of_file(item[0]) == item[1]]
        purge = RawPurge(cutoff, rows=sum(n for _, _, n in to_purge), trust_months=len(to_purge), files=len(deletable),
                         skipped=skipped)
        if dry_run:
            return purge
        earlier = {(m, t): n for m, t, n in self.warehouse.read(raw_purges)[["reporting_month", "trust_code",
                                                                            "raw_rows"]].itertuples(index=False)}
        files_by_trust_month = Counter((month, trust) for _, _, month, trust in deletable)
        for number, (month, trust, rows) in enumerate(to_purge, 1):
            self.warehouse.replace([
                (raw_submissions, {"reporting_month": month, "trust_code": trust}, None),
                (raw_purges, {"reporting_month": month, "trust_code": trust}, pd.DataFrame([{
                    "reporting_month": month, "trust_code": trust, "raw_rows": earlier.get((month, trust), 0) + rows,
                    "files_deleted": files_by_trust_month[(month, trust)], "purged_at": datetime.now()}])),
            ])
            log(f"[{number}/{len(to_purge)}] {month} {trust}: {rows} raw rows purged")
        for path, _, _, _ in deletable:
            path.unlink(missing_ok=True)
        return purge
