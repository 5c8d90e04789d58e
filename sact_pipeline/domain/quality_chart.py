"""The data-quality report's chart (sact_pipeline.domain.quality_report): the core score over 13 months as
inline SVG (no script): the median trust, the middle half of trusts as a band and the lowest-scoring
trusts as labelled lines, with every number in its text alternative. A month without data is a gap.
"""

from __future__ import annotations

from html import escape

import pandas as pd

LOWEST_SHOWN = 5  # the lowest-scoring trusts of the month drawn as their own lines in the chart
LINE_STYLES = (("#d5281b", ""), ("#330072", "6 3"), ("#007f3b", "2 3"), ("#7c2855", "8 3 2 3"), ("#425563", "4 4"))
MEDIAN_COLOUR = "#005eb8"


def is_missing(value) -> bool:
    return value is None or bool(pd.isna(value))


def score_figure(value) -> str:
    """A score as the report prints it: one decimal, empty when there is none."""
    return "" if is_missing(value) else f"{float(value):.1f}"


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
            if not is_missing(values.get(month)):
                if found and found[-1][-1] == number - 1:
                    found[-1].append(number)
                else:
                    found.append([number])
        return found

    def path(self, values: pd.Series) -> str:
        return " ".join("M" + " L".join(f"{self.x(n):.1f},{self.y(values[self.months[n]]):.1f}" for n in run)
                        for run in self.runs(values))


def chart(months: list[str], scores: pd.DataFrame, ranked: pd.DataFrame) -> str:
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
                     f'fill="{colour}"><title>{escape(tip)}, {months[n]}: {score_figure(values[months[n]])}</title></circle>'
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
            f"{m}: {score_figure(median[m])} (of {int(counts[m])} trusts)" if not is_missing(median[m]) else f"{m}: no data"
            for m in months) + ".",
        "Middle half of trusts (25th to 75th percentile): " + "; ".join(
            f"{m}: {score_figure(quartiles.loc[m, 0.25])} to {score_figure(quartiles.loc[m, 0.75])}"
            if not is_missing(median[m]) else f"{m}: no data" for m in months) + ".",
    ]
    description += [f"{name} ({code}): " + "; ".join(f"{m}: {score_figure(values.get(m)) or 'no data'}" for m in months) + "."
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
