"""The month's INTERNAL data-quality report for NDRS staff: one self-contained HTML file (inline CSS and
SVG, no script, no request) in the style of the published report (report.py), whose CSS it reuses.

It is not published, so it shows every count as it is: no disclosure control. Sections: the trusts
that submitted, lowest score first, each with its SACT version; the core score over 13 months as a chart
(median trust, the middle half of trusts and the lowest-scoring trusts' lines) with its numbers in its
text alternative; every trust's core score by month (the trend grid, marking a change of version); each
data item's completeness, validity and score, by SACT version; the findings by kind; and how the score
is made.

Two scores, because v4 scores more items than v3: `score` is over every scored item of the trust-month's
own version (what the trust is asked to fix), `core_score` over the items both versions score (the trend,
so that a trust's line does not jump when it switches from v3 to v4).

Inputs (column names are the contract):
  trusts:   org_code, org_name, sact_version ('v3', 'v4', 'v3,v4' when a trust's sites sent both, or ''),
            score and core_score (0-100, NaN when no rows), rows, quarantined_rows,
            quarantined_share (0-1), duplicate_rows, invalid_values, out_of_month_rows,
            other_trust_provider_rows, feedback_file (path relative to the report's folder, or ""),
            and optionally data_status ('ok', or 'held': assessed on its last good version)
  trend:    org_code, reporting_month ('YYYY-MM'), core_score, sact_version
  items:    sact_version, item, obligation ('M', 'R', 'O' or 'outcome'), rows, completeness (0-1),
            validity (0-1, NaN when no value), item_score (0-1, NaN when no rows; given for an item not
            scored too), scored (bool),
            core (bool: in the core score)
  findings: item, finding, kind ('quarantined', 'invalid', 'out_of_month', 'other_trust', 'file'), rows
"""

from __future__ import annotations

from html import escape
from urllib.parse import quote

import pandas as pd

from sact_pipeline.domain.counting import months_up_to
from sact_pipeline.domain.data_quality import FILE, ITEM_WEIGHTS
from sact_pipeline.domain.quality_chart import chart, is_missing, score_figure
from sact_pipeline.domain.report import CSS, DATA_STATUS_TEXT, REPORT_MONTHS, month_name, not_used_section, page_start
from sact_pipeline.domain.spec import SACT, V3, V4, VERSIONS, Transition


def score_text(transition: Transition = Transition()) -> str:
    """How the score is made, in plain words for NDRS analysts; the numbers of items come from the data-set
    table and the dates from the transition, so the text cannot drift from what the pipeline does."""
    v3, v4 = len(SACT.version(V3).measures), len(SACT.version(V4).measures)
    weighting = ("every item counting the same" if not ITEM_WEIGHTS
                 else "items weighted as set in the pipeline's ITEM_WEIGHTS")
    return (
        "Rows assessed are the rows of the files in use, less exact duplicates and rows of patients who "
        "opted out: the clean rows plus the quarantined rows. For each data item, completeness is the share "
        "of those rows that hold a value, validity is the share of the values that are in the right format "
        "or on the item's code list, and the item score is the share of rows that hold a valid value. "
        "A trust-month's score is the average item score, out of 100, over the mandatory and required items "
        f"of the SACT version it sent: {v3} in v3, {v4} in v4 (where either of two items may be given, such "
        "as v4's infusion timestamp or oral dispensing date, the pair counts as one item), "
        f"{weighting}, as in the NHS Data Quality Maturity Index. Optional and outcome items are shown but "
        "not scored. Because the two versions score different items, the core score is the same average over "
        f"the {len(SACT.core_measures)} items both versions score: it is the score shown over time, so that "
        "a trust's line does not jump when it changes version. A trust whose sites sent both versions is "
        "scored over the items of both. "
        f"SACT v4 is accepted from {month_name(transition.v4_from)} and required from "
        f"{month_name(transition.v4_only_from)}: a v3 file for a month from then on is still counted and "
        "scored, and is listed under File findings. The README of sact-pipeline gives every rule.")


SCORE_TEXT = score_text()  # with the default transition dates (the report is given the settings' dates)
TREND_TEXT = ("The chart and the table below show the core score: the average over the items both SACT "
              "versions score, so that a trust's line does not jump when it switches from v3 to v4. The "
              "score in the table above is over all the scored items of the trust's own version, so it can "
              "differ from the core score of the same month.")


TRUST_COLUMNS = ("org_code", "org_name", "sact_version", "score", "core_score", "rows", "quarantined_rows",
                 "quarantined_share", "duplicate_rows", "invalid_values", "out_of_month_rows",
                 "other_trust_provider_rows", "feedback_file")
TREND_COLUMNS = ("org_code", "reporting_month", "core_score", "sact_version")
ITEM_COLUMNS = ("sact_version", "item", "obligation", "rows", "completeness", "validity", "item_score",
                "scored", "core")
FINDING_COLUMNS = ("item", "finding", "kind", "rows")

OBLIGATION_TEXT = {"M": "Mandatory", "R": "Required", "O": "Optional", "outcome": "Outcome"}
KIND_TEXT = {"quarantined": "Quarantined rows", "invalid": "Invalid values",
             "out_of_month": "Rows outside the reporting month",
             "other_trust": "Rows with another trust as provider", FILE: "File findings"}
KIND_UNIT = {FILE: ("file", "files")}  # a file finding is one per file (on its header row), not per data row
COUNT_COLUMNS = ("rows", "quarantined_rows", "duplicate_rows", "invalid_values", "out_of_month_rows",
                 "other_trust_provider_rows")

# Distinct colour AND dash for each lowest-scoring trust's line; each line is also labelled with its code.

QUALITY_CSS = """
.internal { border-left: 6px solid #d5281b; background: #fbe9e7; padding: 0.5rem 0.8rem; font-weight: bold; }
td.none { color: #4c6272; }
figure.trend svg { max-width: 100%; height: auto; }
figure.trend figcaption { max-width: 900px; }
tbody.kind th[scope=rowgroup], tbody.version th[scope=rowgroup] { background: #f0f4f5; font-weight: bold;
                                                                    text-align: left; }
.switch { font-size: 0.8rem; font-weight: bold; color: #002f5c; white-space: nowrap; }
"""


def quality_report_html(month: str, trusts: pd.DataFrame, trend: pd.DataFrame, items: pd.DataFrame,
                        findings: pd.DataFrame, data_docs: str | None = None,
                        transition: Transition = Transition(), not_used: pd.DataFrame | None = None) -> str:
    """The internal data-quality report for `month` (see the module docstring for the input columns).
    data_docs: the relative href of the Great Expectations Data Docs index, or None for no link;
    transition: when v4 was accepted and required (the settings'), for the text on how the score is made;
    not_used: the trusts published held or unusable, with the failed check (as in the published report:
    a held trust is assessed on its last good version, an unusable one not at all)."""
    for name, frame, columns in (("trusts", trusts, TRUST_COLUMNS), ("trend", trend, TREND_COLUMNS),
                                 ("items", items, ITEM_COLUMNS), ("findings", findings, FINDING_COLUMNS)):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(f"{name} lacks column(s) {', '.join(missing)}")
    months = months_up_to(month, REPORT_MONTHS)
    ranked = _ranked(trusts)
    scores, versions = _score_grid(trend, months)
    title = f"SACT data quality: {month}"
    parts = [
        *page_start(title, CSS + QUALITY_CSS),
        '<p class="internal">Internal: for NDRS staff only, not for publication. Counts are shown unprotected '
        "(no disclosure control).</p>",
        _summary(month, ranked, data_docs), *not_used_section(not_used, internal=True),
        '<h2 id="trusts">Trusts by score</h2>', _trust_table(month, ranked),
        f'<h2 id="trend">Core score over the last {REPORT_MONTHS} months</h2>',
        f'<p class="core">{escape(TREND_TEXT)}</p>', chart(months, scores, ranked),
        f'<h2 id="grid">Core scores by trust over the last {REPORT_MONTHS} months</h2>',
        _grid(months, scores, versions, ranked),
        '<h2 id="items">Data items</h2>', _item_table(month, items, ranked),
        '<h2 id="findings">Findings</h2>', _finding_table(month, findings),
        '<h2 id="score">How the score is made</h2>', f"<p>{escape(score_text(transition))}</p>",
        "</body>", "</html>",
    ]
    return "\n".join(parts) + "\n"


# ---- formatting -------------------------------------------------------------------------------------

def _text(value) -> str:
    return "" if is_missing(value) else escape(str(value))


def _count(value) -> str:
    return "&ndash;" if is_missing(value) else f"{int(value):,}"


def _share(value) -> str:
    return "" if is_missing(value) else f"{float(value) * 100:.1f}%"


def _versions(value) -> list[str]:
    """The versions a trust-month's items were of: 'v3,v4' (a trust whose sites sent both) as both."""
    return [] if is_missing(value) else [v for v in str(value).split(",") if v]


def _version_text(value) -> str:
    """'v3', 'v4', 'v3 and v4' or '' (no version: nothing assessed)."""
    return escape(" and ".join(_versions(value)))


def _href(path: str) -> str:
    """A relative path as an attribute value: percent-encoded (so ':' cannot start a scheme) and escaped."""
    return escape(quote(str(path), safe="/"), quote=True)


def _none(text: str) -> str:
    return f'<td class="none">{escape(text)}</td>'


def _number_cell(formatted: str, absent: str) -> str:
    return f'<td class="number">{formatted}</td>' if formatted else _none(absent)


# ---- the data ---------------------------------------------------------------------------------------

def _ranked(trusts: pd.DataFrame) -> pd.DataFrame:
    """The trusts, lowest score first; a trust with no score (no rows assessed) first of all, then by code."""
    ranked = trusts.loc[:, list(TRUST_COLUMNS)].copy()
    for column in ("score", "core_score", "quarantined_share", *COUNT_COLUMNS):
        ranked[column] = pd.to_numeric(ranked[column], errors="coerce").astype("float64")
    ranked["org_code"] = ranked["org_code"].astype("str")
    ranked["sact_version"] = ranked["sact_version"].where(ranked["sact_version"].notna(), "").astype("str")
    ranked["org_name"] = ranked["org_name"].where(ranked["org_name"].notna(), ranked["org_code"]).astype("str")
    ranked["feedback_file"] = ranked["feedback_file"].fillna("").astype("str")
    return ranked.sort_values(["score", "org_code"], na_position="first", kind="stable").reset_index(drop=True)


def _score_grid(trend: pd.DataFrame, months: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """org_code x month core scores of the shown months (NaN: no data; a month with no row is no data, not
    0), and the same grid of each trust-month's SACT version ('' where none)."""
    frame = trend.loc[trend["reporting_month"].astype("str").isin(months), list(TREND_COLUMNS)].copy()
    frame["org_code"] = frame["org_code"].astype("str")
    frame["reporting_month"] = frame["reporting_month"].astype("str")
    frame["core_score"] = pd.to_numeric(frame["core_score"], errors="coerce").astype("float64")
    frame["sact_version"] = frame["sact_version"].where(frame["sact_version"].notna(), "").astype("str")
    frame = frame.drop_duplicates(["org_code", "reporting_month"], keep="last")
    grid = frame.pivot(index="org_code", columns="reporting_month", values="core_score")
    versions = frame.pivot(index="org_code", columns="reporting_month", values="sact_version")
    return grid.reindex(columns=months).astype("float64"), versions.reindex(index=grid.index, columns=months)


def _summary(month: str, ranked: pd.DataFrame, data_docs: str | None) -> str:
    rows = int(ranked["rows"].fillna(0).sum())
    quarantined = int(ranked["quarantined_rows"].fillna(0).sum())
    scored = ranked["score"].dropna()
    text = (f"{len(ranked):,} trusts submitted for {escape(month)}: {rows:,} rows assessed, {quarantined:,} "
            f"quarantined ({_share(quarantined / rows) if rows else '0.0%'}).")
    if len(scored):
        core = ranked["core_score"].dropna()
        text += (f" Median trust score {score_figure(scored.median())}; lowest {score_figure(scored.min())}, "
                 f"highest {score_figure(scored.max())}"
                 + (f"; median core score {score_figure(core.median())}." if len(core) else "."))
    versions = ranked["sact_version"].map(lambda v: " and ".join(_versions(v)))
    if (versions != "").any():
        text += " SACT version: " + ", ".join(
            f"{int((versions == v).sum()):,} on {escape(v)}" for v in sorted(set(versions) - {""})) + "."
    if len(scored) < len(ranked):
        text += f" {len(ranked) - len(scored):,} trust(s) had no rows to score."
    if data_docs:
        text += f' The full validation results are in the <a href="{_href(data_docs)}">Data Docs</a>.'
    return f"<p>{text}</p>"


# ---- the tables -------------------------------------------------------------------------------------

def _trust_table(month: str, ranked: pd.DataFrame) -> str:
    columns = ["Trust", "Code", "SACT version", "Score", "Core score", "Rows assessed", "Quarantined rows",
               "Quarantined share", "Duplicate rows", "Invalid values", "Out-of-month rows",
               "Other-trust provider rows", "Data status", "Feedback"]
    head = "".join(f'<th scope="col">{escape(label)}</th>' for label in columns)
    rows = []
    for record in ranked.to_dict("records"):
        name = _text(record["org_name"])
        feedback = record["feedback_file"]
        link = (f'<td><a href="{_href(feedback)}">Feedback CSV<span class="visually-hidden"> for {name}</span></a></td>'
                if feedback else _none("none"))
        version = _version_text(record["sact_version"])
        cells = [f'<th scope="row">{name}</th>', f"<td>{_text(record['org_code'])}</td>",
                 f"<td>{version}</td>" if version else _none("none"),
                 _number_cell(score_figure(record["score"]), "no score"),
                 _number_cell(score_figure(record["core_score"]), "no score"),
                 f'<td class="number">{_count(record["rows"])}</td>',
                 f'<td class="number">{_count(record["quarantined_rows"])}</td>',
                 _number_cell(_share(record["quarantined_share"]), "no rows")]
        cells += [f'<td class="number">{_count(record[key])}</td>'
                  for key in ("duplicate_rows", "invalid_values", "out_of_month_rows", "other_trust_provider_rows")]
        cells += [f"<td>{escape(DATA_STATUS_TEXT.get(record.get('data_status') or 'ok', ''))}</td>", link]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (f'<table class="trusts"><caption>Trusts that submitted for {escape(month)}, lowest score first '
            f"(score: over the items of the trust's SACT version; core score: over the items both versions "
            f"score; rows assessed = clean + quarantined)</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _grid_order(scores: pd.DataFrame, ranked: pd.DataFrame) -> list[tuple[str, str]]:
    """(code, label) per grid row: the month's trusts in the trust table's order, then trusts seen only in
    earlier months, by code."""
    order = [(code, f"{escape(name)} ({escape(code)})") for code, name in zip(ranked["org_code"], ranked["org_name"])]
    seen = set(ranked["org_code"])
    order += [(code, f"{escape(code)} (no submission this month)") for code in sorted(scores.index) if code not in seen]
    return order


def _grid(months: list[str], scores: pd.DataFrame, versions: pd.DataFrame, ranked: pd.DataFrame) -> str:
    """Core score per trust and month; the month a trust's version differs from its previous assessed
    month's says so ('to v4'), since the trust-month's own score changes meaning there."""
    head = "".join(f'<th scope="col">{escape(m)}</th>' for m in months)
    table, kinds = scores.to_dict("index"), versions.to_dict("index")
    rows = []
    for code, label in _grid_order(scores, ranked):
        values, cells, before = table.get(code, {}), [], ""
        for month in months:
            version = kinds.get(code, {}).get(month)
            version = "" if is_missing(version) else str(version)
            switch = (f' <span class="switch">to {_version_text(version)}</span>'
                      if version and before and version != before else "")
            before = version or before
            score = score_figure(values.get(month))
            cells.append(f'<td class="number">{score}{switch}</td>' if score
                         else f'<td class="none">no data{switch}</td>')
        rows.append(f'<tr><th scope="row">{label}</th>{"".join(cells)}</tr>')
    return (f'<table class="grid"><caption>Core data-quality score by trust and reporting month, trusts in '
            f"the order of the table above (no data: no submission, or no rows to score; to v4: the first "
            f"month on another SACT version than the trust's month before)</caption><thead><tr>"
            f'<th scope="col">Trust</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>')


def _item_table(month: str, items: pd.DataFrame, ranked: pd.DataFrame) -> str:
    """One row group per SACT version (v3 then v4): the versions name and score different items, so a month
    with trusts on both never pools or mixes them."""
    columns = ["Data item", "Obligation", "In score", "In core score", "Rows", "Completeness", "Validity",
               "Item score"]
    head = "".join(f'<th scope="col">{escape(label)}</th>' for label in columns)
    frame = items.loc[:, list(ITEM_COLUMNS)].copy()
    frame["sact_version"] = frame["sact_version"].where(frame["sact_version"].notna(), "").astype("str")
    present = list(dict.fromkeys(frame["sact_version"]))
    trusts = [v for value in ranked["sact_version"] for v in _versions(value)]
    groups = []
    for version in [v for v in VERSIONS if v in present] + sorted(set(present) - set(VERSIONS)):
        part = frame.loc[frame["sact_version"] == version]
        scored_items = int(part["scored"].fillna(False).astype(bool).sum())
        name = f"SACT {escape(version)}" if version else "SACT version unknown"
        rows = [f'<tr><th scope="rowgroup" colspan="{len(columns)}">{name}: {scored_items:,} scored items, '
                f"pooled over {trusts.count(version):,} trust(s)</th></tr>"]
        for record in part.to_dict("records"):
            scored = bool(record["scored"]) if not is_missing(record["scored"]) else False
            core = scored and not is_missing(record["core"]) and bool(record["core"])
            obligation = _text(record["obligation"])
            item_score = score_figure(record["item_score"] * 100) if not is_missing(record["item_score"]) else ""
            cells = [f'<th scope="row">{_text(record["item"])}</th>',
                     f"<td>{escape(OBLIGATION_TEXT.get(str(record['obligation']), '')) or obligation}</td>",
                     f"<td>{'Yes' if scored else 'No'}</td>", f"<td>{'Yes' if core else 'No'}</td>",
                     f'<td class="number">{_count(record["rows"])}</td>',
                     _number_cell(_share(record["completeness"]), "no rows"),
                     _number_cell(_share(record["validity"]), "no values"),
                     _number_cell(item_score, "no data" if scored else "not scored")]
            rows.append(f"<tr>{''.join(cells)}</tr>")
        key = escape(version, quote=True)
        groups.append(f'<tbody class="version" data-version="{key}">{"".join(rows)}</tbody>')
    if not groups:
        groups.append(f'<tbody><tr><td colspan="{len(columns)}">No data items assessed.</td></tr></tbody>')
    return (f'<table class="items"><caption>Data items by SACT version, each pooled over the trusts that '
            f"sent it, {escape(month)}: completeness (share of rows holding a value), validity (share of "
            f"values that are valid) and item score (0 to 100; In score: Yes for the mandatory and required "
            f"items the score is made of; In core score: Yes for those both versions score)</caption>"
            f"<thead><tr>{head}</tr></thead>{''.join(groups)}</table>")


def _finding_table(month: str, findings: pd.DataFrame) -> str:
    """One row group per kind (known kinds in a fixed order, then any other), rows most first."""
    frame = findings.loc[:, list(FINDING_COLUMNS)].copy()
    frame["rows"] = pd.to_numeric(frame["rows"], errors="coerce")
    frame["kind"] = frame["kind"].astype("str")
    kinds = [k for k in KIND_TEXT if k in set(frame["kind"])] + sorted(set(frame["kind"]) - set(KIND_TEXT))
    head = "".join(f'<th scope="col">{label}</th>' for label in ("Data item", "Finding", "Rows"))
    groups = []
    for kind in kinds:
        part = frame.loc[frame["kind"] == kind].sort_values(["rows", "item", "finding"], ascending=[False, True, True],
                                                            kind="stable")
        title = escape(KIND_TEXT.get(kind, kind))
        count = part["rows"].sum()
        total = (f"{_count(count)} {KIND_UNIT[kind][int(bool(count != 1))]}" if kind in KIND_UNIT
                 else f"{_count(count)} in all")
        rows = [f'<tr><th scope="rowgroup" colspan="3">{title} ({total})</th></tr>']
        rows += [f"<tr><td>{_text(r['item'])}</td><td>{_text(r['finding'])}</td>"
                 f'<td class="number">{_count(r["rows"])}</td></tr>' for r in part.to_dict("records")]
        groups.append(f'<tbody class="kind">{"".join(rows)}</tbody>')
    if not groups:
        groups.append('<tbody><tr><td colspan="3">No findings.</td></tr></tbody>')
    return (f'<table class="findings"><caption>Findings pooled over all trusts, {escape(month)}, by kind, most rows '
            f"first</caption><thead><tr>{head}</tr></thead>{''.join(groups)}</table>")
