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
            other_trust_provider_rows, feedback_file (path relative to the report's folder, or "")
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
from sact_pipeline.domain.report import CSS, REPORT_MONTHS, month_name, page_start
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

LOWEST_SHOWN = 5  # the lowest-scoring trusts of the month drawn as their own lines in the chart

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
LINE_STYLES = (("#d5281b", ""), ("#330072", "6 3"), ("#007f3b", "2 3"), ("#7c2855", "8 3 2 3"), ("#425563", "4 4"))
MEDIAN_COLOUR = "#005eb8"

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
                        transition: Transition = Transition()) -> str:
    """The internal data-quality report for `month` (see the module docstring for the input columns).
    data_docs: the relative href of the Great Expectations Data Docs index, or None for no link;
    transition: when v4 was accepted and required (the settings'), for the text on how the score is made."""
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
        _summary(month, ranked, data_docs),
        '<h2 id="trusts">Trusts by score</h2>', _trust_table(month, ranked),
        f'<h2 id="trend">Core score over the last {REPORT_MONTHS} months</h2>',
        f'<p class="core">{escape(TREND_TEXT)}</p>', _chart(months, scores, ranked),
        f'<h2 id="grid">Core scores by trust over the last {REPORT_MONTHS} months</h2>',
        _grid(months, scores, versions, ranked),
        '<h2 id="items">Data items</h2>', _item_table(month, items, ranked),
        '<h2 id="findings">Findings</h2>', _finding_table(month, findings),
        '<h2 id="score">How the score is made</h2>', f"<p>{escape(score_text(transition))}</p>",
        "</body>", "</html>",
    ]
    return "\n".join(parts) + "\n"


# ---- formatting -------------------------------------------------------------------------------------

def _missing(value) -> bool:
    return value is None or bool(pd.isna(value))


def _text(value) -> str:
    return "" if _missing(value) else escape(str(value))


def _count(value) -> str:
    return "&ndash;" if _missing(value) else f"{int(value):,}"


def _score(value) -> str:
    return "" if _missing(value) else f"{float(value):.1f}"


def _share(value) -> str:
    return "" if _missing(value) else f"{float(value) * 100:.1f}%"


def _versions(value) -> list[str]:
    """The versions a trust-month's items were of: 'v3,v4' (a trust whose sites sent both) as both."""
    return [] if _missing(value) else [v for v in str(value).split(",") if v]


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
        text += (f" Median trust score {_score(scored.median())}; lowest {_score(scored.min())}, "
                 f"highest {_score(scored.max())}"
                 + (f"; median core score {_score(core.median())}." if len(core) else "."))
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
               "Other-trust provider rows", "Feedback"]
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
                 _number_cell(_score(record["score"]), "no score"),
                 _number_cell(_score(record["core_score"]), "no score"),
                 f'<td class="number">{_count(record["rows"])}</td>',
                 f'<td class="number">{_count(record["quarantined_rows"])}</td>',
                 _number_cell(_share(record["quarantined_share"]), "no rows")]
        cells += [f'<td class="number">{_count(record[key])}</td>'
                  for key in ("duplicate_rows", "invalid_values", "out_of_month_rows", "other_trust_provider_rows")]
        cells.append(link)
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
            version = "" if _missing(version) else str(version)
            switch = (f' <span class="switch">to {_version_text(version)}</span>'
                      if version and before and version != before else "")
            before = version or before
            score = _score(values.get(month))
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
            scored = bool(record["scored"]) if not _missing(record["scored"]) else False
            core = scored and not _missing(record["core"]) and bool(record["core"])
            obligation = _text(record["obligation"])
            item_score = _score(record["item_score"] * 100) if not _missing(record["item_score"]) else ""
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


# ---- the chart --------------------------------------------------------------------------------------

class _Plot:
    """The chart's size and scale, shared by everything drawn on it (axes, band, lines, labels), so that they
    all line up: the x of a month, the y of a score from `floor` (bottom) to 100 (top), and the runs of
    months with data, where a line or band is broken."""
    width, height, left, right, top, bottom = 860, 340, 44, 96, 14, 40

    def __init__(self, months: list[str], floor: float):
        self.months, self.floor = months, floor
        self.plot_w, self.plot_h = self.width - self.left - self.right, self.height - self.top - self.bottom
        self.step = self.plot_w / len(months)

    def x(self, number: int) -> float:
        return self.left + self.step * (number + 0.5)

    def y(self, value: float) -> float:
        return self.top + self.plot_h * (100 - value) / (100 - self.floor)

    def runs(self, values: pd.Series) -> list[list[int]]:
        """Consecutive month numbers with data: a line or band is broken where a month has none."""
        found: list[list[int]] = []
        for number, month in enumerate(self.months):
            if not _missing(values.get(month)):
                if found and found[-1][-1] == number - 1:
                    found[-1].append(number)
                else:
                    found.append([number])
        return found

    def path(self, values: pd.Series) -> str:
        return " ".join("M" + " L".join(f"{self.x(n):.1f},{self.y(values[self.months[n]]):.1f}" for n in run)
                        for run in self.runs(values))


def _chart(months: list[str], scores: pd.DataFrame, ranked: pd.DataFrame) -> str:
    """Median trust core score per month, the middle half of trusts (25th to 75th percentile) as a band and
    the trusts of the lowest core score this month as labelled lines (the lines are core scores, so the
    lowest are chosen by it): readable with ~150 trusts. A month without data is a gap, never 0. Every
    number drawn is also in the <desc>."""
    quartiles = scores.quantile([0.25, 0.5, 0.75]).T.reindex(months)  # month x (0.25, 0.5, 0.75), NaN-skipping
    median = quartiles[0.5]
    lines = _lowest_lines(months, scores, ranked)
    drawn = pd.concat([quartiles[0.25], median, *(values for _, _, values in lines)]).dropna()
    plot = _Plot(months, _floor(drawn))
    svg = [*_axes(plot), *_band(plot, quartiles, median)]
    labels: list[tuple[float, str, str]] = []  # (y wanted, text, colour) at the right of the plot
    styled = [(code, code, values, *LINE_STYLES[number % len(LINE_STYLES)], 1.6, f"{name} ({code})")
              for number, (code, name, values) in enumerate(lines)]
    for key, label, values, colour, dash, stroke, tip in [
            *styled, ("median", "Median", median, MEDIAN_COLOUR, "", 3, "Median trust")]:
        drawn_line, placed = _line(plot, key, label, values, colour, dash, stroke, tip)
        svg.append(drawn_line)
        labels.extend(placed)
    svg.extend(_labels(labels, plot.left + plot.plot_w + 8, plot.top, plot.top + plot.plot_h))
    if not len(drawn):
        svg.append(f'<text x="{plot.left + plot.plot_w / 2:.1f}" y="{plot.top + plot.plot_h / 2:.1f}" '
                   f'font-size="12" text-anchor="middle">No scores in these months</text>')

    title = (f"Core data-quality score, {months[0]} to {months[-1]}: median trust, middle half of trusts and "
             f"the {len(lines)} lowest-scoring trust(s) of {months[-1]}")
    description = _chart_description(months, quartiles, scores.notna().sum(), lines)
    caption = (f"Core score (over the items both SACT versions score). Thick blue line: the median trust; "
               f"shaded band: the middle half of trusts; thinner labelled lines: the {len(lines)} trust(s) "
               f"with the lowest core score in {escape(months[-1])}, each with its own dash pattern and its "
               f"code at its end. Gaps are months without data. Every trust's core scores are in the table "
               f"below.")
    width, height = plot.width, plot.height
    return (f'<figure class="trend"><svg role="img" aria-labelledby="trend-title trend-desc" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
            f'<title id="trend-title">{escape(title)}</title><desc id="trend-desc">{escape(description)}'
            f'</desc>{"".join(svg)}</svg><figcaption>{caption}</figcaption></figure>')


def _lowest_lines(months: list[str], scores: pd.DataFrame, ranked: pd.DataFrame) -> list[tuple[str, str, pd.Series]]:
    """(code, name, core score by month) of the LOWEST_SHOWN trusts of the lowest core score in the last month,
    lowest first: the trusts drawn as their own lines. Chosen by the core score, not the score, because the
    lines are core scores; a trust with no core score this month is not drawn."""
    now = ranked.assign(core=ranked["org_code"].map(scores[months[-1]]) if len(scores) else float("nan"))
    lowest = now.loc[now["core"].notna()].sort_values(["core", "org_code"], kind="stable").head(LOWEST_SHOWN)
    return [(code, name, scores.loc[code] if code in scores.index else pd.Series(index=months, dtype="float64"))
            for code, name in zip(lowest["org_code"], lowest["org_name"])]


def _floor(drawn: pd.Series) -> float:
    """The score at the bottom of the chart: the ten at or below the lowest value drawn (at most 90, at least
    0; 0 when nothing is drawn), so that the lines spread over the chart's height instead of being squeezed
    into the top of a 0 to 100 scale."""
    floor = min(90.0, float(drawn.min()) // 10 * 10) if len(drawn) else 0.0
    return max(floor, 0.0)


def _axes(plot: _Plot) -> list[str]:
    """Horizontal grid lines with their scores (every 10, or every 5 on a short scale), every other month's
    label and the last month's, and the base line: the scale the band and lines are read against."""
    left, right, width, top, plot_h = plot.left, plot.right, plot.width, plot.top, plot.plot_h
    tick = 10 if 100 - plot.floor >= 30 else 5
    svg = []
    for value in range(int(plot.floor), 101, tick):  # horizontal grid lines with their values
        y = plot.y(value)
        svg.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#d8dde0"/>'
                   f'<text x="{left - 6}" y="{y + 3:.1f}" font-size="11" text-anchor="end">{value}</text>')
    for number, month in enumerate(plot.months):
        if number % 2 == 0 or number == len(plot.months) - 1:
            svg.append(f'<text x="{plot.x(number):.1f}" y="{plot.height - plot.bottom + 16}" font-size="11" '
                       f'text-anchor="middle">{escape(month)}</text>')
    svg.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" stroke="#425563"/>')
    return svg


def _band(plot: _Plot, quartiles: pd.DataFrame, median: pd.Series) -> list[str]:
    """The middle half of trusts (25th to 75th percentile) as a shaded band over each run of months with data;
    a lone month is a short bar, because a polygon over a single month would have no width."""
    months, x, y = plot.months, plot.x, plot.y
    svg = []
    for run in plot.runs(median):
        upper = [f"{x(n):.1f},{y(quartiles.loc[months[n], 0.75]):.1f}" for n in run]
        lower = [f"{x(n):.1f},{y(quartiles.loc[months[n], 0.25]):.1f}" for n in reversed(run)]
        if len(run) == 1:  # a lone month: a short bar, not a zero-width polygon
            n = run[0]
            svg.append(f'<rect class="band" x="{x(n) - 4:.1f}" y="{y(quartiles.loc[months[n], 0.75]):.1f}" width="8" '
                       f'height="{y(quartiles.loc[months[n], 0.25]) - y(quartiles.loc[months[n], 0.75]):.1f}" '
                       f'fill="{MEDIAN_COLOUR}" fill-opacity="0.15"/>')
        else:
            svg.append(f'<polygon class="band" points="{" ".join(upper + lower)}" fill="{MEDIAN_COLOUR}" '
                       f'fill-opacity="0.15"/>')
    return svg


def _line(plot: _Plot, key: str, label: str, values: pd.Series, colour: str, dash: str, stroke: float,
          tip: str) -> tuple[str, list[tuple[float, str, str]]]:
    """One line (a trust's or the median's): its path, broken at months without data, and a point per month
    with the score in its tooltip; and its label wanted at its last value ([] for a line with no data), to
    be placed with the others' so that no two overlap."""
    months, x, y = plot.months, plot.x, plot.y
    points = "".join(f'<circle class="point" cx="{x(n):.1f}" cy="{y(values[months[n]]):.1f}" r="3" '
                     f'fill="{colour}"><title>{escape(tip)}, {months[n]}: {_score(values[months[n]])}</title></circle>'
                     for run in plot.runs(values) for n in run)
    last = [n for run in plot.runs(values) for n in run]
    labels = [(y(values[months[last[-1]]]), label, colour)] if last else []
    dashes = f' stroke-dasharray="{dash}"' if dash else ""
    drawn_path = plot.path(values)
    return (f'<g class="line" data-line="{escape(key, quote=True)}">'
            + (f'<path d="{drawn_path}" fill="none" stroke="{colour}" stroke-width="{stroke}"{dashes}/>'
               if drawn_path else "")
            + f"{points}</g>"), labels


def _chart_description(months: list[str], quartiles: pd.DataFrame, counts: pd.Series,
                       lines: list[tuple[str, str, pd.Series]]) -> str:
    """The chart's <desc>: every number it draws (median with its number of trusts, the middle half, each
    lowest trust's line) month by month in words, so that a screen reader gets all the chart shows."""
    median = quartiles[0.5]
    description = [
        "Median trust core score: " + "; ".join(
            f"{m}: {_score(median[m])} (of {int(counts[m])} trusts)" if not _missing(median[m]) else f"{m}: no data"
            for m in months) + ".",
        "Middle half of trusts (25th to 75th percentile): " + "; ".join(
            f"{m}: {_score(quartiles.loc[m, 0.25])} to {_score(quartiles.loc[m, 0.75])}"
            if not _missing(median[m]) else f"{m}: no data" for m in months) + ".",
    ]
    description += [f"{name} ({code}): " + "; ".join(f"{m}: {_score(values.get(m)) or 'no data'}" for m in months) + "."
                    for code, name, values in lines]
    return " ".join(description)


def _labels(wanted: list[tuple[float, str, str]], x: float, low: float, high: float, gap: float = 12) -> list[str]:
    """Line labels at the lines' last values, pushed apart so that none overlaps another."""
    placed = sorted(wanted)
    ys = [max(low + 4, w[0]) for w in placed]
    for n in range(1, len(ys)):
        ys[n] = max(ys[n], ys[n - 1] + gap)
    for n in range(len(ys) - 1, -1, -1):
        ys[n] = min(ys[n], high - 2 if n == len(ys) - 1 else ys[n + 1] - gap)
    return [f'<text x="{x:.1f}" y="{position + 3:.1f}" font-size="11" fill="{colour}">{escape(text)}</text>'
            for position, (_, text, colour) in zip(ys, placed)]
