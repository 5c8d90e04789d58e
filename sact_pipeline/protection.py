"""Data protection state of the pipeline: registration opt-outs, the pseudonymisation key, raw retention.

A mixin of layers.Pipeline (which gives it `settings`, `warehouse` and `pseudonymiser`), kept apart so the
layers read as layers: what opt-outs are registered and which trust-months still hold an opted-out patient,
which key each clean trust-month was built with (and refusing to mix two), and purging identifiable raw
rows past their retention. The reading and pseudonymising itself is in the domain core (domain.optouts,
domain.cleaning); this module keeps its state in the warehouse.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
import sqlalchemy as sa

from sact_pipeline.domain.counting import months_up_to, previous_month
from sact_pipeline.domain.landing import find_candidate_files, sha256_of, sha256_of_file
from sact_pipeline.domain.optouts import OptOutFileRejected, read_optout_file
from sact_pipeline.domain.pseudonymise import PseudonymisationKeyError
from sact_pipeline.settings import SettingsError
from sact_pipeline.warehouse import (
    clean_activity,
    clean_file_versions,
    clean_quarantine,
    optout_files,
    optout_patients,
    optout_pending,
    raw_purges,
    raw_submissions,
    rejected_files,
    submission_files,
)


class PseudonymisationKeyChanged(PseudonymisationKeyError):
    """The clean layer was built with another key than the one configured now: refreshing would mix
    pseudonyms of two keys, so nothing runs until the key is restored or `sact-pipeline rekey` is run."""


@dataclass(frozen=True)
class RawPurge:
    """What a retention purge removed (or would remove): raw rows before `cutoff` and their files."""

    cutoff: str
    rows: int
    trust_months: int
    files: int


class DataProtection:
    """Opt-outs, key checks and raw retention for layers.Pipeline (see the module docstring)."""

    # --- registration opt-outs ------------------------------------------------------------------------------
    def register_optouts(self) -> list[tuple[str, str, int]]:
        """Register each new opt-out file (by content): its patients as pseudonyms under the current key,
        and every trust-month whose clean rows hold one of them as pending (affected until re-derived).
        Returns (file name, note or 'rejected: reason', trust-months to re-derive) per new file."""
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
                record.update(entries=0, invalid_entries=0, reason=f"rejected: {rejection.reason}")
                self.warehouse.replace([(optout_files, {"sha256": digest}, pd.DataFrame([record]))])
                results.append((path.name, record["reason"], 0))
                continue
            record.update(entries=len(listed.nhs_numbers), invalid_entries=len(listed.invalid_rows), reason=listed.note)
            keys = pd.DataFrame({"patient_key": listed.pseudonyms(self.pseudonymiser),
                                 "pseudonymisation_key_id": self.pseudonymiser.key_id, "file_sha256": digest})
            self.warehouse.replace([(optout_files, {"sha256": digest}, pd.DataFrame([record])),
                                    (optout_patients, {"file_sha256": digest}, keys)])
            # After the commit above: a clean write that missed this file checks again after its own commit.
            pending = self._mark_pending(self._optout_matches(file_sha256=digest))
            results.append((path.name, listed.note, pending))
        return results

    def rekey_optouts(self) -> int:
        """Re-derive every opt-out's patient keys under the current key, from the opt-out files: they are the
        only place the NHS numbers are kept, so a rekey is refused while one of them is missing (its
        patients would silently stop being opted out). One transaction; returns the files re-derived."""
        registered = self.warehouse.read(optout_files)
        usable = registered.loc[~registered["reason"].str.startswith("rejected")]
        present = {sha256_of(path.read_bytes()): path for path in find_candidate_files(self.settings.optout_dir)}
        missing = usable.loc[~usable["sha256"].isin(list(present))]
        if len(missing):
            raise PseudonymisationKeyError(
                f"cannot rekey: {len(missing)} registered opt-out files are not in {self.settings.optout_dir} "
                f"({', '.join(sorted(missing['file_name']))}); restore them first, or their patients would not be "
                "opted out under the new key")
        operations = []
        for digest in usable["sha256"]:
            listed = read_optout_file(present[digest].name, present[digest].read_bytes())
            operations.append((optout_patients, {"file_sha256": digest}, pd.DataFrame({
                "patient_key": listed.pseudonyms(self.pseudonymiser),
                "pseudonymisation_key_id": self.pseudonymiser.key_id, "file_sha256": digest})))
        if operations:
            self.warehouse.replace(operations)
        return len(operations)

    def rejected_optouts(self) -> list[tuple[str, str]]:
        """Opt-out files lying in SACT_OPTOUT_DIR that could not be read: (file name, reason). They are
        applied to nothing until a readable copy arrives, so every refresh reports them."""
        rejected = self.warehouse.read(optout_files)
        rejected = dict(zip(rejected["sha256"], rejected["reason"]))
        return [(path.name, rejected[digest]) for path in find_candidate_files(self.settings.optout_dir)
                if (digest := sha256_of(path.read_bytes())) in rejected
                and rejected[digest].startswith("rejected")]

    def opted_out(self) -> tuple[frozenset[str], frozenset[str]]:
        """Patient keys (current key) of every registered opt-out, and the opt-out files they come from."""
        query = sa.select(optout_patients.c.patient_key, optout_patients.c.file_sha256).where(
            optout_patients.c.pseudonymisation_key_id == self.pseudonymiser.key_id)
        with self.warehouse.engine.connect() as connection:
            rows = connection.execute(query).all()
        files = sa.select(optout_files.c.sha256).where(~optout_files.c.reason.startswith("rejected"))
        with self.warehouse.engine.connect() as connection:
            applied = frozenset(connection.execute(files).scalars())
        return frozenset(key for key, _ in rows), applied

    def _optout_matches(self, *, month: str | None = None, trust: str | None = None,
                        file_sha256: str | None = None, not_files: frozenset[str] = frozenset()) -> pd.DataFrame:
        """(reporting_month, trust_code, file_sha256) of clean or quarantined rows whose patient key is an
        opted-out patient's under the current key: what still holds a patient who opted out."""
        found = []
        for table in (clean_activity, clean_quarantine):
            query = sa.select(table.c.reporting_month, table.c.trust_code, optout_patients.c.file_sha256).distinct(
            ).join(optout_patients, optout_patients.c.patient_key == table.c.patient_key).where(
                optout_patients.c.pseudonymisation_key_id == self.pseudonymiser.key_id)
            if month is not None:
                query = query.where(table.c.reporting_month == month)
            if trust is not None:
                query = query.where(table.c.trust_code == trust)
            if file_sha256 is not None:
                query = query.where(optout_patients.c.file_sha256 == file_sha256)
            with self.warehouse.engine.connect() as connection:
                found += [row for row in connection.execute(query).all() if row[2] not in not_files]
        return pd.DataFrame(sorted(set(found)), columns=["reporting_month", "trust_code", "file_sha256"])

    def _mark_pending(self, matches: pd.DataFrame) -> int:
        """Record trust-months to re-derive because of opt-out files; the number of trust-months."""
        if matches.empty:
            return 0
        with self.warehouse.engine.connect() as connection:
            known = {tuple(row) for row in connection.execute(sa.select(optout_pending))}
        new = matches.loc[[tuple(row) not in known for row in matches.itertuples(index=False)]]
        if len(new):
            with self.warehouse.engine.begin() as connection:
                connection.execute(sa.insert(optout_pending), new.to_dict("records"))
        return len(matches[["reporting_month", "trust_code"]].drop_duplicates())

    def optout_pending_trust_months(self) -> set[tuple[str, str]]:
        with self.warehouse.engine.connect() as connection:
            query = sa.select(optout_pending.c.reporting_month, optout_pending.c.trust_code).distinct()
            return {(month, trust) for month, trust in connection.execute(query)}

    def _after_clean_write(self, month: str, trust: str, applied: frozenset[str]) -> None:
        """The opt-outs this write applied are done for the trust-month; one registered while it was
        being built (not applied) is marked pending if the rows just written hold its patient."""
        with self.warehouse.engine.begin() as connection:
            pending = connection.execute(sa.select(optout_pending.c.file_sha256).where(
                optout_pending.c.reporting_month == month, optout_pending.c.trust_code == trust)).scalars().all()
            done = [sha for sha in pending if sha in applied]
            if done:
                connection.execute(sa.delete(optout_pending).where(
                    optout_pending.c.reporting_month == month, optout_pending.c.trust_code == trust,
                    optout_pending.c.file_sha256.in_(done)))
        self._mark_pending(self._optout_matches(month=month, trust=trust, not_files=applied))

    def clean_key_ids(self) -> dict[tuple[str, str], str]:
        """The pseudonymisation key id each clean trust-month was built with."""
        query = sa.select(clean_file_versions.c.reporting_month, clean_file_versions.c.trust_code,
                          clean_file_versions.c.pseudonymisation_key_id).distinct().where(clean_file_versions.c.in_use)
        with self.warehouse.engine.connect() as connection:
            return {(m, t): k for m, t, k in connection.execute(query)}

    def purged_trust_months(self) -> set[tuple[str, str]]:
        with self.warehouse.engine.connect() as connection:
            query = sa.select(raw_purges.c.reporting_month, raw_purges.c.trust_code)
            return {(month, trust) for month, trust in connection.execute(query)}

    def check_key(self) -> None:
        """Refuse (PseudonymisationKeyChanged) when clean trust-months that can be re-derived were built
        with another key: a changed key is either a mistake (restore it) or a rekey (run `rekey`)."""
        purged = self.purged_trust_months()
        others = Counter(k for tm, k in self.clean_key_ids().items()
                         if k != self.pseudonymiser.key_id and tm not in purged)
        if others:
            built = ", ".join(f"{count} with key id {key}" for key, count in sorted(others.items()))
            raise PseudonymisationKeyChanged(
                f"the configured pseudonymisation key (key id {self.pseudonymiser.key_id}) is not the key the clean "
                f"layer was built with ({built} trust-months): if the key was changed on purpose, run "
                f"`sact-pipeline rekey` to re-derive the clean layer from raw; otherwise restore the key")

    # --- retention of identifiable raw data -----------------------------------------------------------------
    def retention_cutoff(self, keep_months: int) -> str:
        """The first reporting month whose raw rows are kept: `keep_months` months back from the last
        month that has ended."""
        if keep_months < 1:
            raise SettingsError("the raw retention must be 1 month or more (SACT_RAW_RETENTION_MONTHS or "
                                "--keep-months)")
        return months_up_to(previous_month(self.today.strftime("%Y-%m")), keep_months)[0]

    def purge_raw(self, keep_months: int, *, dry_run: bool = False, log=lambda line: None) -> "RawPurge":
        """Delete identifiable raw rows of reporting months before the retention cutoff, and the landing-zone
        files they came from; rejected files rejected before the cutoff go too. The file registers (names,
        hashes, row counts) and the clean, summary and published layers stay, so history stays auditable.

        The rows of each trust-month go in one transaction with its raw_purges record; files are deleted
        after it (a crash in between leaves files that the next purge deletes: it can be run again)."""
        cutoff = self.retention_cutoff(keep_months)
        query = sa.select(raw_submissions.c.reporting_month, raw_submissions.c.trust_code,
                          sa.func.count()).where(raw_submissions.c.reporting_month < cutoff).group_by(
            raw_submissions.c.reporting_month, raw_submissions.c.trust_code)
        with self.warehouse.engine.connect() as connection:
            held = sorted((m, t, n) for m, t, n in connection.execute(query))
        registered = self.warehouse.read(submission_files)
        old_files = registered.loc[registered["reporting_month"] < cutoff, ["relative_path", "sha256", "reporting_month",
                                                                          "trust_code"]]
        rejected = self.warehouse.read(rejected_files)
        old_rejected = rejected.loc[rejected["rejected_at"] < pd.Timestamp(f"{cutoff}-01"), ["relative_path", "sha256"]]
        landing = self.settings.landing_dir
        deletable = [(landing / path, sha, month, trust) for path, sha, month, trust in old_files.itertuples(index=False)]
        deletable += [(landing / path, sha, "", "") for path, sha in old_rejected.itertuples(index=False)]
        # Only the registered content: a newer file at the same path is another version, kept.
        deletable = [item for item in deletable if item[0].is_file() and sha256_of_file(item[0]) == item[1]]
        purge = RawPurge(cutoff, rows=sum(n for _, _, n in held), trust_months=len(held), files=len(deletable))
        if dry_run:
            return purge
        earlier = {(m, t): n for m, t, n in self.warehouse.read(raw_purges)[["reporting_month", "trust_code",
                                                                            "raw_rows"]].itertuples(index=False)}
        files_by_trust_month = Counter((month, trust) for _, _, month, trust in deletable)
        for number, (month, trust, rows) in enumerate(held, 1):
            self.warehouse.replace([
                (raw_submissions, {"reporting_month": month, "trust_code": trust}, None),
                (raw_purges, {"reporting_month": month, "trust_code": trust}, pd.DataFrame([{
                    "reporting_month": month, "trust_code": trust, "raw_rows": earlier.get((month, trust), 0) + rows,
                    "files_deleted": files_by_trust_month[(month, trust)], "purged_at": datetime.now()}])),
            ])
            log(f"[{number}/{len(held)}] {month} {trust}: {rows} raw rows purged")
        for path, _, _, _ in deletable:
            path.unlink(missing_ok=True)
        return purge
