"""GX Data Docs for the pipeline's suite runs: a static site, built by GX's own site builder, that opens offline.

Why: a failed gate is reported in Dagster as counts; Data Docs let a reader browse every recent run of
every suite (what was expected, what failed, how many rows) without access to the warehouse. The site is
built from SuiteOutcome.validation (quality.validation_dict: counts and suite settings, never a row value),
so it can be shared as widely as the check results themselves.

Two directories: store_dir holds GX filesystem stores (validation results under validations/, suites under
expectations/) that accumulate across runs and processes; site_dir holds the HTML. record() adds a result
to the store; build() renders the results recorded since the last build, the suite pages and the index,
then makes the pages work without a network: GX's templates load bootstrap, jquery, bootstrap-table and
font-awesome from CDNs and a logo from S3, and its index lists nothing unless bootstrap-table runs, so
the vendored copies in data/data_docs_static/ are copied to site_dir/static/vendor/ and every such URL
is rewritten to a relative path. Vega (three scripts, 0.8 MB) is not vendored: only profiling and
distribution expectations draw charts, and the pipeline's suites have none (profiling is switched off),
so its script tags are removed.

Both methods hold an fcntl lock on store_dir/.lock: two refreshes may record and build at once. The
store is bounded: build() keeps the newest keep_per_suite results of each suite (and their pages).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sact_pipeline.quality import SuiteOutcome, import_gx

__all__ = ["DataDocs", "VENDOR_DIR"]

log = logging.getLogger(__name__)

VENDOR_DIR = Path(__file__).parent / "data" / "data_docs_static"
SITE_NAME = "sact_pipeline"
_LOCK_FILE = ".lock"
_PENDING_FILE = "pending.jsonl"  # one key tuple per line: results recorded, pages not yet built

# Every remote file GX 1.24's templates load, and its vendored copy under static/vendor/ (README.md there).
_VENDORED: dict[str, str] = {
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css":
        "bootstrap@4.3.1/dist/css/bootstrap.min.css",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js":
        "bootstrap@4.3.1/dist/js/bootstrap.min.js",
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery@3.7.1/dist/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js":
        "popper.js@1.12.9/dist/umd/popper.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css":
        "bootstrap-table@1.19.1/dist/bootstrap-table.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js":
        "bootstrap-table@1.19.1/dist/bootstrap-table.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js":
        "bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css":
        "bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css":
        "bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css":
        "bootstrap-datepicker@1.9.0/dist/css/bootstrap-datepicker.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js":
        "bootstrap-datepicker@1.9.0/dist/js/bootstrap-datepicker.min.js",
    # The unminified file on the CDN; the same release's minified file here (883 kB -> 153 kB).
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css":
        "forevolve-bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css":
        "fontawesome-free@6.6.0/css/all.min.css",
}
_URLS = re.compile("|".join(re.escape(url) for url in sorted(_VENDORED, key=len, reverse=True)))
# The navbar logo (light and dark) from GX's S3 bucket, with a cache-busting query: GX's own copy instead.
_LOGO = re.compile(r"https://great-expectations-web-assets\.s3\.us-east-2\.amazonaws\.com/[\w.-]+(?:\?[^\"')\s]*)?")
_LOCAL_LOGO = "static/images/logo-long.png"
_VEGA = re.compile(r'[ \t]*<script src="https://cdn\.jsdelivr\.net/npm/vega(?:-lite|-embed)?@\d+"></script>\n?')
# Subresource integrity needs a CORS fetch, which file:// pages cannot make; the files are the same ones.
_SRI = re.compile(r'\s+(?:integrity|crossorigin)="[^"]*"')
# GX's relative links to its static/ folder are computed from dots in the suite name and are one level
# short for the favicon of a validation page; recomputed from where the page really is.
_STATIC = re.compile(r"""(?<=["'(])(?:\./|(?:\.\./)+)static/""")
_REMOTE_LOAD = re.compile(r"""(?:<(?:script|img|link)\b[^>]*\b(?:src|href)=|url\()\s*["']?https?://""", re.I)


class DataDocs:
    """A Data Docs site in site_dir for the validation results kept in store_dir."""

    def __init__(self, site_dir: Path, store_dir: Path, keep_per_suite: int = 200):
        if keep_per_suite < 1:
            raise ValueError("keep_per_suite must be at least 1")
        self.site_dir = Path(site_dir).resolve()
        self.store_dir = Path(store_dir).resolve()
        self.keep_per_suite = keep_per_suite
        self._context: Any = None

    def __getstate__(self) -> dict[str, Any]:
        """Picklable (e.g. sent to a worker process): the GX context is made again where it is used."""
        return {**self.__dict__, "_context": None}

    # ---------------------------------------------------------------------------------------------- API

    def record(self, outcome: SuiteOutcome, run_name: str) -> Path | None:
        """Keep outcome.validation in the store under run_name (e.g. "clean_activity 2024-01 RR8");
        return where its page will be once built, or None if the outcome carries no validation.

        Why the digest: one batch result is shared by every trust-month in the batch (as_seen_by_part);
        it is stored once, under the first run name it was recorded with, and every caller gets its page.
        """
        validation = outcome.validation
        if validation is None:
            return None
        gx_types = _identifiers()
        digest = _digest(validation)
        suite = str(validation.get("suite_name") or outcome.suite)
        suite_id = gx_types.ExpectationSuiteIdentifier(name=suite)
        with self._locked():
            existing = next(self._validations_dir().joinpath(*suite_id.to_tuple()).glob(f"*/*/{digest}.json"), None)
            if existing is not None:
                return self._page(existing.relative_to(self._validations_dir()).with_suffix(".html"))
            run_id = gx_types.RunIdentifier(run_name=_safe(run_name), run_time=_run_time(validation))
            key = gx_types.ValidationResultIdentifier(suite_id, run_id, digest)
            stored = {**validation, "meta": {**(validation.get("meta") or {}), "run_id": run_id.to_json_dict()}}
            context = self._gx()
            store = context.validation_results_store
            store.set(key, store.deserialize(stored))
            context.expectations_store.set(suite_id, _suite(suite, validation))
            with open(self.store_dir / _PENDING_FILE, "a", encoding="utf-8") as pending:
                pending.write(json.dumps(list(key.to_tuple())) + "\n")
        return self._page(Path(*key.to_tuple()).with_suffix(".html"))

    def build(self) -> Path:
        """Render the results recorded since the last build, every suite page and the index into
        site_dir, prune each suite to its newest keep_per_suite results, make the pages work offline;
        return site_dir/index.html."""
        index = self.site_dir / "index.html"
        with self._locked():
            if index.exists() and not (self.store_dir / _PENDING_FILE).exists():
                return index  # nothing recorded since the last build (nothing to prune either): no GX import, ~5 s
            gx_types = _identifiers()
            context = self._gx()
            store = context.validation_results_store
            keys = set(store.list_keys())
            pruned = self._prune(keys)
            keys -= pruned
            pending = [k for k in self._pending(gx_types) if k in keys]
            if pending or pruned or not index.exists():
                suites = list(context.expectations_store.list_keys())
                context.build_data_docs(site_names=[SITE_NAME], resource_identifiers=[*pending, *suites])
                self._install_vendor()
                pages = [self._page(Path(*k.to_tuple()).with_suffix(".html")) for k in pending]
                pages += [self.site_dir / "expectations" / Path(*s.to_tuple()).with_suffix(".html") for s in suites]
                for page in [*pages, index]:
                    self._offline(page)
                for key in pruned:
                    _remove_empty_parents(self.site_dir / "validations" / Path(*key.to_tuple()), self.site_dir)
            (self.store_dir / _PENDING_FILE).unlink(missing_ok=True)
        return index

    # ---------------------------------------------------------------------------------------------- GX

    def _gx(self) -> Any:
        """An ephemeral context whose suites and validation results live in filesystem stores under
        store_dir (checkpoints etc. in memory), with one Data Docs site in site_dir."""
        if self._context is None:
            import_gx()
            from great_expectations.data_context import EphemeralDataContext
            from great_expectations.data_context.types.base import DataContextConfig, InMemoryStoreBackendDefaults

            def filesystem(folder: str, class_name: str) -> dict[str, Any]:
                return {"class_name": class_name, "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend", "base_directory": str(self.store_dir / folder)}}

            defaults = InMemoryStoreBackendDefaults()
            stores = {**defaults.stores,
                      defaults.expectations_store_name: filesystem("expectations", "ExpectationsStore"),
                      defaults.validation_results_store_name: filesystem("validations", "ValidationResultsStore")}
            config = DataContextConfig(
                stores=stores,
                expectations_store_name=defaults.expectations_store_name,
                validation_results_store_name=defaults.validation_results_store_name,
                checkpoint_store_name=defaults.checkpoint_store_name,
                data_docs_sites={}, analytics_enabled=False, fluent_datasources={},
            )
            context = EphemeralDataContext(project_config=config)
            context.add_data_docs_site(SITE_NAME, {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(self.site_dir)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                "site_section_builders": {"profiling": "None"},  # profiling pages draw vega charts; none here
            })
            self._context = context
        return self._context

    def _prune(self, keys: set[Any]) -> set[Any]:
        """Remove all but the newest keep_per_suite results of each suite from the store (GX's index
        builder then deletes their pages, as it does for any page whose result has gone)."""
        by_suite: dict[str, list[Any]] = {}
        for key in keys:
            by_suite.setdefault(key.expectation_suite_identifier.name, []).append(key)
        removed: set[Any] = set()
        store = self._gx().validation_results_store
        for suite_keys in by_suite.values():
            suite_keys.sort(key=lambda k: (k.run_id.run_time, k.run_id.run_name or "", k.batch_identifier),
                            reverse=True)
            for key in suite_keys[self.keep_per_suite:]:
                store.remove_key(key)
                _remove_empty_parents(self._validations_dir() / Path(*key.to_tuple()), self._validations_dir())
                removed.add(key)
        return removed

    def _pending(self, gx_types: Any) -> list[Any]:
        path = self.store_dir / _PENDING_FILE
        if not path.exists():
            return []
        keys = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                keys.append(gx_types.ValidationResultIdentifier.from_tuple(tuple(json.loads(line))))
        return list(dict.fromkeys(keys))

    # ---------------------------------------------------------------------------------------------- offline

    def _install_vendor(self) -> None:
        """Copy the vendored files into site_dir/static/vendor/, skipping those already there."""
        target = self.site_dir / "static" / "vendor"
        for source in VENDOR_DIR.rglob("*"):
            if source.is_file():
                destination = target / source.relative_to(VENDOR_DIR)
                if not destination.exists() or destination.stat().st_size != source.stat().st_size:
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(source, destination)

    def _offline(self, page: Path) -> None:
        """Point the page's CDN and S3 URLs at the local copies, relative to where the page is."""
        if not page.exists():
            log.warning("Data Docs page %s was not built (GX logs rendering errors)", page)
            return
        html = page.read_text(encoding="utf-8")
        up = os.path.relpath(self.site_dir, page.parent).replace(os.sep, "/")
        up = "" if up == "." else up + "/"
        rewritten = _VEGA.sub("", html)
        rewritten = _URLS.sub(lambda m: f"{up}static/vendor/{_VENDORED[m.group(0)]}", rewritten)
        rewritten = _LOGO.sub(up + _LOCAL_LOGO, rewritten)
        rewritten = _SRI.sub("", rewritten)
        rewritten = _STATIC.sub(up + "static/", rewritten)
        if "vegaEmbed(" in rewritten:  # a chart: it will not draw offline (vega is not vendored)
            log.warning("Data Docs page %s draws a vega chart, which needs vega (not vendored)", page)
        remote = _REMOTE_LOAD.search(rewritten)
        if remote:
            log.warning("Data Docs page %s still loads from the network: %s", page, rewritten[remote.start():][:120])
        if rewritten != html:
            page.write_text(rewritten, encoding="utf-8")

    # ---------------------------------------------------------------------------------------------- paths

    def _validations_dir(self) -> Path:
        return self.store_dir / "validations"

    def _page(self, relative: Path) -> Path:
        return self.site_dir / "validations" / relative

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        with open(self.store_dir / _LOCK_FILE, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _identifiers() -> Any:
    """GX's key types (GX imported on first use, as in quality)."""
    import_gx()
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    return SimpleNamespace(ExpectationSuiteIdentifier=ExpectationSuiteIdentifier,
                           ValidationResultIdentifier=ValidationResultIdentifier, RunIdentifier=RunIdentifier)


def _digest(validation: dict) -> str:
    """A short content hash: the same result recorded twice is stored once."""
    canonical = json.dumps(validation, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


def _run_time(validation: dict) -> dt.datetime:
    """When GX ran the validation (its run_id), so the index orders results by when they were checked."""
    meta = validation.get("meta") or {}
    text = (meta.get("run_id") or {}).get("run_time") or meta.get("validation_time")
    try:
        return dt.datetime.fromisoformat(str(text))
    except ValueError:
        return dt.datetime.now(dt.timezone.utc)


def _safe(run_name: str) -> str:
    """GX's filesystem stores refuse path separators in a key, and the index embeds run names in a script
    and in HTML: letters, digits and a little punctuation only."""
    return re.sub(r"[^\w .,()+-]", "-", run_name).strip()[:120] or "run"


def _suite(name: str, validation: dict) -> dict[str, Any]:
    """The suite as it was run (from the result's expectation configurations), for its Data Docs page."""
    expectations = []
    for item in validation.get("results") or ():
        config = item.get("expectation_config") or {}
        kwargs = {k: v for k, v in (config.get("kwargs") or {}).items() if k != "batch_id"}
        expectations.append({"type": config.get("type"), "kwargs": kwargs, "meta": config.get("meta") or {},
                             "id": config.get("id")})
    return {"name": name, "expectations": expectations, "meta": {}, "notes": None}


def _remove_empty_parents(path: Path, root: Path) -> None:
    """Remove the now empty folders (run time, run name) a removed file leaves, up to root."""
    folder = path.parent
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent
