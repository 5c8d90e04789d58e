"""The month's INTERNAL data-quality report for NDRS staff: one self-contained HTML file (inline CSS and
SVG, no script, no request) in the style of the published report (report.py), whose CSS it reuses.

It is not published, so it shows every count as it is: no disclosure control. Sections: the trusts
that submitted, lowest score first; the score over 13 months as a chart (median trust, the middle half
of trusts and the lowest-scoring trusts' lines) with its numbers in its text alternative; every trust's
score by month (the trend grid); each data item's completeness, validity and score; the findings by
kind; and how the score is made.

Inputs (column names are the contract):
  trusts:   org_code, org_name, score (0-100, NaN when no rows), rows, quarantined_rows,
            quarantined_share (0-1), duplicate_rows, invalid_values, out_of_month_rows,
            other_trust_provider_rows, feedback_file (path relative to the report's folder, or "")
  trend:    org_code, reporting_month ('YYYY-MM'), score
  items:    item, obligation ('M', 'R', 'O' or 'outcome'), rows, completeness (0-1),
            validity (0-1, NaN when no value), item_score (0-1, NaN when not scored), scored (bool)
  findings: item, finding, kind ('quarantined', 'invalid', 'out_of_month', 'other_trust'), rows
"""

from __future__ import annotations

from html import escape
from urllib.parse import quote

import pandas as pd

from sact_pipeline.domain.counting import months_up_to
from sact_pipeline.domain.data_quality import ITEM_WEIGHTS
from sact_pipeline.domain.report import CSS, REPORT_MONTHS, page_start

# Placeholder until the exact wording is agreed: replace the text, keep the name.
SCORE_TEXT = ("Rows assessed are the rows of the file versions in use, less exact duplicates and rows of patients "
              "who opted out: the clean rows and the quarantined rows. For each data item, completeness is the "
              "share of those rows holding a value, validity the share of the values in the right format or on "
              "the item's code list, and the item score the share of rows holding a valid value. The trust's "
              f"score is 100 times the mean item score over the {len(ITEM_WEIGHTS)} mandatory and required items, each weighted "
              "equally, as in the NHS Data Quality Maturity Index; optional and outcome items are shown but not "
              "scored. The README of sact-pipeline gives every rule.")

LOWEST_SHOWN = 5  # the lowest-scoring trusts of the month drawn as their own lines in the chart

TRUST_COLUMNS = ("org_code", "org_name", "score", "rows", "quarantined_rows", "quarantined_share",
                 "duplicate_rows", "invalid_values", "out_of_month_rows", "other_trust_provider_rows",
                 "feedback_file")
TREND_COLUMNS = ("org_code", "reporting_month", "score")
ITEM_COLUMNS = ("item", "obligation", "rows", "completeness", "validity", "item_score", "scored")
FINDING_COLUMNS = ("item", "finding", "kind", "rows")

OBLIGATION_TEXT = {"M": "Mandatory", "R": "Required", "O": "Optional", "outcome": "Outcome"}
KIND_TEXT = {"quarantined": "Quarantined rows", "invalid": "Invalid values",
             "out_of_month": "Rows outside the reporting month", "other_trust": "Rows with another trust as provider"}
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
tbody.kind th[scope=rowgroup] { background: #f0f4f5; font-weight: bold; text-align: left; }
"""


def quality_report_html(month: str, trusts: pd.DataFrame, trend: pd.DataFrame, items: pd.DataFrame,
                        findings: pd.DataFrame, data_docs: str | None = None) -> str:
    """The internal data-quality report for `month` (see the module docstring for the input columns).
    data_docs: the relative href of the Great Expectations Data Docs index, or None for no link."""
    for name, frame, columns in (("trusts", trusts, TRUST_COLUMNS), ("trend", trend, TREND_COLUMNS),
                                 ("items", items, ITEM_COLUMNS), ("findings", findings, FINDING_COLUMNS)):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(f"{name} lacks column(s) {', '.join(missing)}")
    months = months_up_to(month, REPORT_MONTHS)
    ranked = _ranked(trusts)
    scores = _score_grid(trend, months)
    title = f"SACT data quality: {month}"
    parts = [
        *page_start(title, CSS + QUALITY_CSS),
        '<p class="internal">Internal: for NDRS staff only, not for publication. Counts are shown unprotected '
        "(no disclosure control).</p>",
        _summary(month, ranked, data_docs),
        '<h2 id="trusts">Trusts by score</h2>', _trust_table(month, ranked),
        f'<h2 id="trend">Score over the last {REPORT_MONTHS} months</h2>', _chart(months, scores, ranked),
        f'<h2 id="grid">Scores by trust over the last {REPORT_MONTHS} months</h2>',
        _grid(months, scores, ranked),
        '<h2 id="items">Data items</h2>', _item_table(month, items),
        '<h2 id="findings">Findings</h2>', _finding_table(month, findings),
        '<h2 id="score">How the score is made</h2>', f"<p>{escape(SCORE_TEXT)}</p>",
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
    for column in ("score", "quarantined_share", *COUNT_COLUMNS):
        ranked[column] = pd.to_numeric(ranked[column], errors="coerce")
    ranked["org_code"] = ranked["org_code"].astype("str")
    ranked["org_name"] = ranked["org_name"].where(ranked["org_name"].notna(), ranked["org_code"]).astype("str")
    ranked["feedback_file"] = ranked["feedback_file"].fillna("").astype("str")
    return ranked.sort_values(["score", "org_code"], na_position="first", kind="stable").reset_index(drop=True)


def _score_grid(trend: pd.DataFrame, months: list[str]) -> pd.DataFrame:
    """org_code x month scores of the shown months (NaN: no data); a month with no row is no data, not 0."""
    frame = trend.loc[trend["reporting_month"].astype("str").isin(months), list(TREND_COLUMNS)].copy()
    frame["org_code"] = frame["org_code"].astype("str")
    frame["reporting_month"] = frame["reporting_month"].astype("str")
    frame["score"] = pd.to_numeric(frame["score"], errors="coerce")
    frame = frame.drop_duplicates(["org_code", "reporting_month"], keep="last")
    grid = frame.pivot(index="org_code", columns="reporting_month", values="score")
    return grid.reindex(columns=months).astype("float64")


def _summary(month: str, ranked: pd.DataFrame, data_docs: str | None) -> str:
    rows = int(ranked["rows"].fillna(0).sum())
    quarantined = int(ranked["quarantined_rows"].fillna(0).sum())
    scored = ranked["score"].dropna()
    text = (f"{len(ranked):,} trusts submitted for {escape(month)}: {rows:,} rows assessed, {quarantined:,} "
            f"quarantined ({_share(quarantined / rows) if rows else '0.0%'}).")
    if len(scored):
        text += (f" Median trust score {_score(scored.median())}; lowest {_score(scored.min())}, "
                 f"highest {_score(scored.max())}.")
    if len(scored) < len(ranked):
        text += f" {len(ranked) - len(scored):,} trust(s) had no rows to score."
    if data_docs:
        text += f' The full validation results are in the <a href="{_href(data_docs)}">Data Docs</a>.'
    return f"<p>{text}</p>"


# ---- the tables -------------------------------------------------------------------------------------

def _trust_table(month: str, ranked: pd.DataFrame) -> str:
    columns = ["Trust", "Code", "Score", "Rows assessed", "Quarantined rows", "Quarantined share", "Duplicate rows",
               "Invalid values", "Out-of-month rows", "Other-trust provider rows", "Feedback"]
    head = "".join(f'<th scope="col">{escape(label)}</th>' for label in columns)
    rows = []
    for record in ranked.to_dict("records"):
        name = _text(record["org_name"])
        feedback = record["feedback_file"]
        link = (f'<td><a href="{_href(feedback)}">Feedback CSV<span class="visually-hidden"> for {name}</span></a></td>'
                if feedback else _none("none"))
        cells = [f'<th scope="row">{name}</th>', f"<td>{_text(record['org_code'])}</td>",
                 _number_cell(_score(record["score"]), "no score"), f'<td class="number">{_count(record["rows"])}</td>',
                 f'<td class="number">{_count(record["quarantined_rows"])}</td>',
                 _number_cell(_share(record["quarantined_share"]), "no rows")]
        cells += [f'<td class="number">{_count(record[key])}</td>'
                  for key in ("duplicate_rows", "invalid_values", "out_of_month_rows", "other_trust_provider_rows")]
        cells.append(link)
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (f'<table class="trusts"><caption>Trusts that submitted for {escape(month)}, lowest score first '
            f"(rows assessed = clean + quarantined)</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _grid_order(scores: pd.DataFrame, ranked: pd.DataFrame) -> list[tuple[str, str]]:
    """(code, label) per grid row: the month's trusts in the trust table's order, then trusts seen only in
    earlier months, by code."""
    order = [(code, f"{escape(name)} ({escape(code)})") for code, name in zip(ranked["org_code"], ranked["org_name"])]
    seen = set(ranked["org_code"])
    order += [(code, f"{escape(code)} (no submission this month)") for code in sorted(scores.index) if code not in seen]
    return order


def _grid(months: list[str], scores: pd.DataFrame, ranked: pd.DataFrame) -> str:
    head = "".join(f'<th scope="col">{escape(m)}</th>' for m in months)
    table = scores.to_dict("index")
    rows = []
    for code, label in _grid_order(scores, ranked):
        values = table.get(code, {})
        cells = "".join(_number_cell(_score(values.get(m)), "no data") for m in months)
        rows.append(f'<tr><th scope="row">{label}</th>{cells}</tr>')
    return (f'<table class="grid"><caption>Data-quality score by trust and reporting month, trusts in the order '
            f"of the table above (no data: no submission, or no rows to score)</caption><thead><tr>"
            f'<th scope="col">Trust</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>')


def _item_table(month: str, items: pd.DataFrame) -> str:
    columns = ["Data item", "Obligation", "In score", "Rows", "Completeness", "Validity", "Item score"]
    head = "".join(f'<th scope="col">{escape(label)}</th>' for label in columns)
    rows = []
    for record in items.loc[:, list(ITEM_COLUMNS)].to_dict("records"):
        scored = bool(record["scored"]) if not _missing(record["scored"]) else False
        obligation = _text(record["obligation"])
        item_score = _score(record["item_score"] * 100) if not _missing(record["item_score"]) else ""
        cells = [f'<th scope="row">{_text(record["item"])}</th>',
                 f"<td>{escape(OBLIGATION_TEXT.get(str(record['obligation']), '')) or obligation}</td>",
                 f"<td>{'Yes' if scored else 'No'}</td>", f'<td class="number">{_count(record["rows"])}</td>',
                 _number_cell(_share(record["completeness"]), "no rows"),
                 _number_cell(_share(record["validity"]), "no values"),
                 _number_cell(item_score, "no data" if scored else "not scored")]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (f"<table class=\"items\"><caption>Data items pooled over all trusts, {escape(month)}: completeness "
            f"(share of rows holding a value), validity (share of values that are valid) and item score (0 to 100; "
            f"In score: Yes for the mandatory and required items the score is made of)</caption>"
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


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
        rows = [f'<tr><th scope="rowgroup" colspan="3">{title} ({_count(part["rows"].sum())} in all)</th></tr>']
        rows += [f"<tr><td>{_text(r['item'])}</td><td>{_text(r['finding'])}</td>"
                 f'<td class="number">{_count(r["rows"])}</td></tr>' for r in part.to_dict("records")]
        groups.append(f'<tbody class="kind">{"".join(rows)}</tbody>')
    if not groups:
        groups.append('<tbody><tr><td colspan="3">No findings.</td></tr></tbody>')
    return (f'<table class="findings"><caption>Findings pooled over all trusts, {escape(month)}, by kind, most rows '
            f"first</caption><thead><tr>{head}</tr></thead>{''.join(groups)}</table>")


# ---- the chart --------------------------------------------------------------------------------------

def _chart(months: list[str], scores: pd.DataFrame, ranked: pd.DataFrame) -> str:
    """Median trust score per month, the middle half of trusts (25th to 75th percentile) as a band and the
    lowest-scoring trusts of the month as labelled lines: readable with ~150 trusts. A month without data is
    a gap, never 0. Every number drawn is also in the <desc>."""
    width, height, left, right, top, bottom = 860, 340, 44, 96, 14, 40
    quartiles = scores.quantile([0.25, 0.5, 0.75]).T.reindex(months)  # month x (0.25, 0.5, 0.75), NaN-skipping
    counts = scores.notna().sum()
    median = quartiles[0.5]
    lowest = ranked.loc[ranked["score"].notna()].head(LOWEST_SHOWN)
    lines = [(code, name, scores.loc[code] if code in scores.index else pd.Series(index=months, dtype="float64"))
             for code, name in zip(lowest["org_code"], lowest["org_name"])]
    drawn = pd.concat([quartiles[0.25], median, *(values for _, _, values in lines)]).dropna()
    floor = min(90.0, float(drawn.min()) // 10 * 10) if len(drawn) else 0.0
    floor = max(floor, 0.0)
    tick = 10 if 100 - floor >= 30 else 5
    plot_w, plot_h = width - left - right, height - top - bottom
    step = plot_w / len(months)

    def x(number: int) -> float:
        return left + step * (number + 0.5)

    def y(value: float) -> float:
        return top + plot_h * (100 - value) / (100 - floor)

    def runs(values: pd.Series) -> list[list[int]]:
        """Consecutive month numbers with data: a line or band is broken where a month has none."""
        found: list[list[int]] = []
        for number, month in enumerate(months):
            if not _missing(values.get(month)):
                if found and found[-1][-1] == number - 1:
                    found[-1].append(number)
                else:
                    found.append([number])
        return found

    def path(values: pd.Series) -> str:
        return " ".join("M" + " L".join(f"{x(n):.1f},{y(values[months[n]]):.1f}" for n in run) for run in runs(values))

    svg = []
    for value in range(int(floor), 101, tick):  # horizontal grid lines with their values
        svg.append(f'<line x1="{left}" y1="{y(value):.1f}" x2="{width - right}" y2="{y(value):.1f}" stroke="#d8dde0"/>'
                   f'<text x="{left - 6}" y="{y(value) + 3:.1f}" font-size="11" text-anchor="end">{value}</text>')
    for number, month in enumerate(months):
        if number % 2 == 0 or number == len(months) - 1:
            svg.append(f'<text x="{x(number):.1f}" y="{height - bottom + 16}" font-size="11" '
                       f'text-anchor="middle">{escape(month)}</text>')
    svg.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" stroke="#425563"/>')
    for run in runs(median):  # the middle half of trusts
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

    labels: list[tuple[float, str, str]] = []  # (y wanted, text, colour) at the right of the plot

    def line(key: str, label: str, values: pd.Series, colour: str, dash: str, stroke: float, tip: str) -> str:
        points = "".join(f'<circle class="point" cx="{x(n):.1f}" cy="{y(values[months[n]]):.1f}" r="3" '
                         f'fill="{colour}"><title>{escape(tip)}, {months[n]}: {_score(values[months[n]])}</title></circle>'
                         for run in runs(values) for n in run)
        last = [n for run in runs(values) for n in run]
        if last:
            labels.append((y(values[months[last[-1]]]), label, colour))
        dashes = f' stroke-dasharray="{dash}"' if dash else ""
        drawn_path = path(values)
        return (f'<g class="line" data-line="{escape(key, quote=True)}">'
                + (f'<path d="{drawn_path}" fill="none" stroke="{colour}" stroke-width="{stroke}"{dashes}/>'
                   if drawn_path else "")
                + f"{points}</g>")

    for number, (code, name, values) in enumerate(lines):
        colour, dash = LINE_STYLES[number % len(LINE_STYLES)]
        svg.append(line(code, code, values, colour, dash, 1.6, f"{name} ({code})"))
    svg.append(line("median", "Median", median, MEDIAN_COLOUR, "", 3, "Median trust"))
    svg.extend(_labels(labels, left + plot_w + 8, top, top + plot_h))
    if not len(drawn):
        svg.append(f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h / 2:.1f}" font-size="12" '
                   f'text-anchor="middle">No scores in these months</text>')

    title = (f"Data-quality score, {months[0]} to {months[-1]}: median trust, middle half of trusts and the "
             f"{len(lines)} lowest-scoring trust(s) of {months[-1]}")
    description = [
        "Median trust score: " + "; ".join(
            f"{m}: {_score(median[m])} (of {int(counts[m])} trusts)" if not _missing(median[m]) else f"{m}: no data"
            for m in months) + ".",
        "Middle half of trusts (25th to 75th percentile): " + "; ".join(
            f"{m}: {_score(quartiles.loc[m, 0.25])} to {_score(quartiles.loc[m, 0.75])}"
            if not _missing(median[m]) else f"{m}: no data" for m in months) + ".",
    ]
    description += [f"{name} ({code}): " + "; ".join(f"{m}: {_score(values.get(m)) or 'no data'}" for m in months) + "."
                    for code, name, values in lines]
    caption = (f"Thick blue line: the median trust's score; shaded band: the middle half of trusts; thinner labelled "
               f"lines: the {len(lines)} trust(s) with the lowest score in {escape(months[-1])}, each with its own dash "
               f"pattern and its code at its end. Gaps are months without data. Every trust's scores are in the "
               f"table below.")
    return (f'<figure class="trend"><svg role="img" aria-labelledby="trend-title trend-desc" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
            f'<title id="trend-title">{escape(title)}</title><desc id="trend-desc">{escape(" ".join(description))}'
            f'</desc>{"".join(svg)}</svg><figcaption>{caption}</figcaption></figure>')


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
