"""The month's HTML report: one self-contained file (inline CSS and SVG, no script, no request) that
opens offline, prints, and reads with a screen reader.

It shows published values only: the month's published table, the ENGLAND cells of up to 13 published
months (charts), each trust's submission status in those months (the timeliness grid) and the SACT
version of each trust's published figures (the v4 adoption chart and grid). A protected cell ('*', '[c]')
is shown as it is published, and a chart leaves a gap where ENGLAND was withheld or a month was never
published.
"""

from __future__ import annotations

import re
from html import escape

import pandas as pd

from sact_pipeline.domain.counting import MEASURES, months_up_to
from sact_pipeline.domain.publication import ENGLAND
from sact_pipeline.domain.spec import V3, V4, Transition

REPORT_MONTHS = 13  # the month and the 12 before it, in the grid and the charts
STATUS_TEXT = {"on_time": "On time", "late": "Late", "missing": "Missing", "not_yet_due": "Not yet due"}
DATA_STATUS_TEXT = {"ok": "OK", "held": "Held: last good version",
                    "unusable": "Unusable: no version passed"}
MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
               "October", "November", "December")  # not strftime: the words must not follow the locale
MEASURE_TITLES = {"patients": "Patients", "regimens": "Regimens", "cycles": "Cycles",
                  "drug_administrations": "Drug administrations"}
CSS = """
body { font-family: Arial, Helvetica, sans-serif; color: #212b32; margin: 2rem; max-width: 1200px; }
h1 { font-size: 1.8rem; } h2 { font-size: 1.35rem; margin-top: 2rem; border-bottom: 2px solid #005eb8; }
table { border-collapse: collapse; font-size: 0.9rem; margin: 0.5rem 0 1rem; }
caption { text-align: left; font-weight: bold; padding: 0.3rem 0; }
th, td { border: 1px solid #aeb7bd; padding: 0.25rem 0.45rem; }
thead th { background: #e8edee; position: sticky; top: 0; }
tbody th { text-align: left; font-weight: normal; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
tr.england th, tr.england td { font-weight: bold; border-top: 2px solid #212b32; }
.status { display: inline-block; padding: 0 0.35rem; border-radius: 3px; white-space: nowrap; }
.on_time { background: #d5eadb; color: #00401e; } .late { background: #fff2c4; color: #5c4300; }
.missing { background: #f6d3d0; color: #6b140e; } .none { color: #768692; }
.not_yet_due { background: #ffffff; color: #4c6272; border: 1px dashed #768692; }
.provisional { border-left: 6px solid #ffb81c; background: #fff9e6; padding: 0.6rem 0.9rem; }
.version-tag { display: inline-block; padding: 0 0.35rem; border-radius: 3px; font-weight: bold; }
.v4 { background: #d6e5f5; color: #002f5c; } .v3 { background: #e8edee; color: #212b32; }
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
.charts { display: flex; flex-wrap: wrap; gap: 1rem; } figure.adoption figcaption { max-width: 560px; }
figure { margin: 0; } figcaption { font-size: 0.85rem; color: #4c6272; }
.notes p { margin: 0.2rem 0; white-space: pre-wrap; }
@media print { body { margin: 0; } thead th { position: static; } h2 { break-after: avoid; }
               table, figure { break-inside: avoid; } }
"""


def page_start(title: str, css: str) -> list[str]:
    """The lines of a self-contained page up to its h1: doctype, language, viewport, title, inline CSS."""
    return ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{escape(title)}</title>", f"<style>{css}</style>", "</head>", "<body>",
            f"<h1>{escape(title)}</h1>"]


def month_name(month: str) -> str:
    """'2026-07' as 'July 2026': dates in sentences read as words."""
    year, number = month.split("-")
    return f"{MONTH_NAMES[int(number) - 1]} {year}"


def published_version(value) -> str:
    """A published sact_version cell as 'v3', 'v4' or '': rows published before the column existed hold
    NULL (read back as 'None' or NaN), which is no version, not a third one."""
    return value if isinstance(value, str) and value in (V3, V4) else ""


def report_html(month: str, table: pd.DataFrame, notes: str, history: pd.DataFrame,
                transition: Transition = Transition(), *, not_used: pd.DataFrame | None = None,
                deadline: str = "") -> str:
    """The report for `month`. table: its published table (text cells); notes: its notes text; history:
    published tables of earlier months (reporting_month, org_code, submission_status, the measures and,
    once published, sact_version), of which the 12 before `month` are shown with it; transition: when v4
    was accepted and required (the settings'), for the adoption section's text and chart; not_used: the
    held and unusable trusts (org_code, org_name, data_status, data_status_reason: the failed check, never
    row values); deadline: the month's last on-time day, shown while the month is provisional."""
    months = months_up_to(month, REPORT_MONTHS)  # consecutive: a month never published shows, not skipped
    shown = pd.concat([history.loc[history["reporting_month"].isin(months[:-1])], table], ignore_index=True)
    england = shown.loc[shown["org_code"] == ENGLAND].set_index("reporting_month")
    title = f"SACT data submissions: {month}"
    parts = [
        *page_start(title, CSS),
        "<p>Systemic Anti-Cancer Therapy data submitted by NHS trusts in England to the National Disease "
        "Registration Service: when each trust last sent data, and what it holds. Small numbers are "
        "protected: see the notes below.</p>",
        *_provisional_banner(month, table, deadline),
        '<h2 id="table">Submissions by trust</h2>', _table(month, table),
        *not_used_section(not_used),
        '<h2 id="timeliness">Timeliness over the last 13 months</h2>', _grid(months, shown, table),
        '<h2 id="england">England over the last 13 months</h2>', '<div class="charts">',
        *(_chart(measure, months, england) for measure in MEASURES), "</div>",
        '<h2 id="sact-version">SACT v4 adoption</h2>', _adoption_text(transition),
        _adoption_chart(months, shown, transition), _version_grid(months, shown, table),
        '<h2 id="notes">Notes</h2>', '<div class="notes">',
        *(f"<p>{escape(line)}</p>" for line in notes.splitlines() if line.strip()), "</div>",
        "</body>", "</html>",
    ]
    return "\n".join(parts) + "\n"


def _provisional_banner(month: str, table: pd.DataFrame, deadline: str) -> list[str]:
    """While trusts may still send the month on time, say so first: its figures will change."""
    if "month_status" not in table or not (table["month_status"] == "provisional").any():
        return []
    until = f" until {escape(deadline)}" if deadline else " until the deadline"
    return [f'<p class="provisional" role="note"><strong>Provisional.</strong> Trusts may send {month_name(month)} '
            f"on time{until}, so these figures will change as they do. A trust shown as Not yet due is not late. "
            "England changes are shown once the month is final.</p>"]


_CHECK_NAME = re.compile(r"suite \w+|expect_\w+")


def failed_check_names(reason: str) -> str:
    """A gate failure as the public may read it: the layer, suites and expectations that failed, never the
    counts beside them (a count of a trust's rows is not disclosure-controlled) nor anything else said."""
    layer = reason.split(":", 1)[0] if " layer:" in reason else ""
    names = ", ".join(dict.fromkeys(match.group(0) for match in _CHECK_NAME.finditer(reason)))
    return ": ".join(part for part in (layer, names) if part) or "failed validation"


def not_used_section(not_used: pd.DataFrame | None, *, internal: bool = False) -> list[str]:
    """Trusts whose newest file failed validation, and the check it failed: by name only in the published
    report; `internal` (the data-quality report, for NDRS staff): the whole recorded failure."""
    if not_used is None or not_used.empty:
        return []
    rows = "".join(f'<tr><th scope="row">{escape(str(r.org_name))}</th><td>{escape(str(r.org_code))}</td>'
                   f"<td>{escape(DATA_STATUS_TEXT.get(r.data_status, r.data_status))}</td>"
                   f"<td>{escape(str(r.data_status_reason) if internal else failed_check_names(str(r.data_status_reason)))}"
                   "</td></tr>"
                   for r in not_used.sort_values("org_code").itertuples(index=False))
    return ['<h2 id="not-used">Files that failed validation</h2>',
            "<p>These trusts' newest files failed validation. A held trust's figures are those of its last "
            "version that passed; an unusable trust has none this month and counts 0 in the England figures. "
            "A corrected file replaces them at the next update.</p>",
            '<table><caption>Trusts whose newest file was not used</caption><thead><tr><th scope="col">'
            'Organisation</th><th scope="col">Code</th><th scope="col">Data status</th><th scope="col">'
            f"Failed check</th></tr></thead><tbody>{rows}</tbody></table>"]


def _status(code: str) -> str:
    """Colour and text together: the status is never told by colour alone."""
    if code not in STATUS_TEXT:
        return '<span class="none" title="not submitting yet">&ndash;<span class="visually-hidden"> not submitting yet</span></span>'
    return f'<span class="status {code}">{STATUS_TEXT[code]}</span>'


def _table(month: str, table: pd.DataFrame) -> str:
    columns = [("Organisation", "org_name"), ("Code", "org_code"), ("Status", "submission_status"),
               ("Submitted at", "submitted_at")]
    columns += [(f"{MEASURE_TITLES[m]}{suffix}", f"{m}{key}") for m in MEASURES
                for suffix, key in (("", ""), (" change", "_change"))]
    numbers = columns[4:]
    columns += [("SACT version", "sact_version"), ("Data status", "data_status")]
    head = "".join(f'<th scope="col">{escape(label)}</th>' for label, _ in columns)
    rows = []
    for record in table.to_dict("records"):
        england = record["org_code"] == ENGLAND
        cells = [f'<th scope="row">{escape(record["org_name"])}</th>', f"<td>{escape(record['org_code'])}</td>",
                 f"<td>{'' if england else _status(record['submission_status'])}</td>",
                 f"<td>{escape(record['submitted_at'].replace('T', ' '))}</td>"]
        cells += [f'<td class="number">{escape(record[key])}</td>' for _, key in numbers]
        cells.append(f"<td>{escape(published_version(record.get('sact_version')))}</td>")
        cells.append(f"<td>{escape(DATA_STATUS_TEXT.get(record.get('data_status') or '', ''))}</td>")
        row_class = ' class="england"' if england else ""
        rows.append(f"<tr{row_class}>{''.join(cells)}</tr>")
    return (f"<table><caption>Published counts and changes from the previous month, {escape(month)}"
            f"</caption><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _grid(months: list[str], shown: pd.DataFrame, table: pd.DataFrame) -> str:
    status = shown.set_index(["org_code", "reporting_month"])["submission_status"].to_dict()
    return _trust_month_grid(months, table, status, _status, "grid",
                             "Submission status by trust and reporting month (&ndash;: not yet submitting)")


def _trust_month_grid(months: list[str], table: pd.DataFrame, values: dict, cell, css_class: str,
                      caption: str) -> str:
    """A trust x month table of the month's trusts: `cell` renders each (org_code, month) value."""
    trusts = table.loc[table["org_code"] != ENGLAND, ["org_code", "org_name"]]
    head = "".join(f'<th scope="col">{escape(m)}</th>' for m in months)
    rows = [f'<tr><th scope="row">{escape(name)} ({escape(code)})</th>'
            + "".join(f"<td>{cell(values.get((code, m), ''))}</td>" for m in months) + "</tr>"
            for code, name in zip(trusts["org_code"], trusts["org_name"])]
    return (f'<table class="{css_class}"><caption>{caption}</caption><thead><tr><th scope="col">Trust</th>'
            f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _chart(measure: str, months: list[str], england: pd.DataFrame) -> str:
    """A bar chart of the published ENGLAND cells as inline SVG, its values also in its text alternative."""
    width, height, left, bottom, top = 360, 200, 56, 34, 14
    values = {m: str(england[measure].get(m, "")) if measure in england else "" for m in months}
    numbers = {m: int(v) for m, v in values.items() if v.isdigit()}
    peak = max(numbers.values(), default=0) or 1
    step = (width - left - 8) / len(months)
    bars, labels = [], []
    for number, month in enumerate(months):
        x = left + number * step
        if month in numbers:
            bar = (height - bottom - top) * numbers[month] / peak
            bars.append(f'<rect x="{x + step * 0.15:.1f}" y="{height - bottom - bar:.1f}" width="{step * 0.7:.1f}" '
                        f'height="{bar:.1f}" fill="#005eb8"/>')
        elif values[month]:  # withheld or suppressed: say so where the bar would be
            bars.append(f'<text x="{x + step / 2:.1f}" y="{height - bottom - 4}" font-size="9" '
                        f'text-anchor="middle">{escape(values[month])}</text>')
        if number % 2 == 0 or number == len(months) - 1:
            labels.append(f'<text x="{x + step / 2:.1f}" y="{height - bottom + 14}" font-size="9" '
                          f'text-anchor="middle">{escape(month)}</text>')
    title = f"England {MEASURE_TITLES[measure].lower()}, published, {months[0]} to {months[-1]}"
    description = "; ".join(f"{m}: {values[m] or 'not published'}" for m in months)
    key = f"chart-{measure}"
    return (f'<figure><svg role="img" aria-labelledby="{key}-title {key}-desc" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
            f'<title id="{key}-title">{escape(title)}</title><desc id="{key}-desc">{escape(description)}</desc>'
            f'<line x1="{left}" y1="{height - bottom}" x2="{width - 8}" y2="{height - bottom}" stroke="#425563"/>'
            + (f'<text x="{left - 6}" y="{top + 4}" font-size="9" text-anchor="end">{peak:,}</text>'
               f'<text x="{left - 6}" y="{height - bottom}" font-size="9" text-anchor="end">0</text>' if numbers else "")
            + f'{"".join(bars)}{"".join(labels)}</svg>'
            f"<figcaption>{escape(title)}</figcaption></figure>")


# ---- SACT v4 adoption ---------------------------------------------------------------------------------

def _adoption_text(transition: Transition) -> str:
    """What the view shows and why a trust may be on either version (the dates are the settings')."""
    accepted, required = month_name(transition.v4_from), month_name(transition.v4_only_from)
    return ("<p>Trusts are moving from version 3 of the SACT data set to version 4. A trust may send v4 for "
            f"activity from {escape(accepted)}, and must from {escape(required)}; it may switch in any month "
            "between, and its figures are counted the same way whichever version it sends. The chart counts "
            "the trusts whose published figures come from a v4 file in each month; the table below gives "
            "each trust's version by month (blank: no usable file that month, or a month published before "
            f"versions were). A trust still sending v3 from {escape(required)} is published as usual, and "
            "flagged in NDRS's data-quality report and in the feedback the trust receives.</p>")


def _trust_versions(shown: pd.DataFrame) -> pd.DataFrame:
    """The English trusts' rows of the shown months (ENGLAND left out) with their version as 'v3', 'v4'
    or '' (a table published before the column existed lacks it: every version blank)."""
    trusts = shown.loc[shown["org_code"] != ENGLAND, ["reporting_month", "org_code"]].copy()
    values = (shown.loc[trusts.index, "sact_version"] if "sact_version" in shown
              else pd.Series("", index=trusts.index))
    trusts["version"] = [published_version(v) for v in values]
    return trusts


def _adoption_chart(months: list[str], shown: pd.DataFrame, transition: Transition) -> str:
    """Trusts on v4 per month as inline SVG bars, each with its count written above it (so 0 shows as
    '0'); a month never published has neither bar nor count, a gap. Every number is in the <desc>."""
    width, height, left, bottom, top = 560, 220, 40, 34, 24
    trusts = _trust_versions(shown)
    published = set(shown["reporting_month"])
    v4 = {m: int((trusts.loc[trusts["reporting_month"] == m, "version"] == V4).sum()) for m in months
          if m in published}
    total = {m: int((trusts["reporting_month"] == m).sum()) for m in v4}
    peak = max(v4.values(), default=0) or 1
    step = (width - left - 8) / len(months)
    plot = height - bottom - top
    base = height - bottom
    svg = [f'<line x1="{left}" y1="{base}" x2="{width - 8}" y2="{base}" stroke="#425563"/>',
           f'<text x="{left - 6}" y="{base}" font-size="9" text-anchor="end">0</text>']
    if any(v4.values()):
        svg.append(f'<text x="{left - 6}" y="{top + 4}" font-size="9" text-anchor="end">{peak:,}</text>')
    for number, month in enumerate(months):
        x = left + number * step
        if month == transition.v4_from or month == transition.v4_only_from:  # where the rules change
            label = "v4 accepted" if month == transition.v4_from else "v4 required"
            svg.append(f'<line class="milestone" x1="{x:.1f}" y1="2" x2="{x:.1f}" y2="{base}" '
                       f'stroke="#768692" stroke-dasharray="3 3"/>'
                       f'<text x="{x + 3:.1f}" y="10" font-size="9">{label}</text>')
        if month in v4:
            bar = plot * v4[month] / peak
            svg.append(f'<rect class="bar" x="{x + step * 0.15:.1f}" y="{base - bar:.1f}" '
                       f'width="{step * 0.7:.1f}" height="{bar:.1f}" fill="#005eb8"/>'
                       f'<text class="count" x="{x + step / 2:.1f}" y="{base - bar - 3:.1f}" '
                       f'font-size="9" text-anchor="middle">{v4[month]:,}</text>')
        if number % 2 == 0 or number == len(months) - 1:
            svg.append(f'<text x="{x + step / 2:.1f}" y="{height - bottom + 14}" font-size="9" '
                       f'text-anchor="middle">{escape(month)}</text>')
    title = f"English trusts on SACT v4, published, {months[0]} to {months[-1]}"
    description = "; ".join(f"{m}: {v4[m]:,} of {total[m]:,} trusts" if m in v4 else f"{m}: not published"
                            for m in months)
    milestones = [f"v4 accepted from {transition.v4_from}", f"required from {transition.v4_only_from}"]
    return (f'<figure class="adoption"><svg role="img" aria-labelledby="adoption-title adoption-desc" '
            f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            'xmlns="http://www.w3.org/2000/svg">'
            f'<title id="adoption-title">{escape(title)}</title>'
            f'<desc id="adoption-desc">{escape(description)} ({escape(", ".join(milestones))}).</desc>'
            f'{"".join(svg)}</svg><figcaption>{escape(title)}: the number above each bar; no bar and no '
            f"number where a month was not published; dashed lines where v4 was accepted and where it was "
            f"required.</figcaption></figure>")


def _version(code: str) -> str:
    """The version in words, colour only as an aid; a blank said to a screen reader."""
    if code not in (V3, V4):
        return '<span class="none">&ndash;<span class="visually-hidden"> no version</span></span>'
    return f'<span class="version-tag {code}">{code}</span>'


def _version_grid(months: list[str], shown: pd.DataFrame, table: pd.DataFrame) -> str:
    """Each trust of the month's table by month (as the timeliness grid): the version of its figures."""
    versions = _trust_versions(shown).set_index(["org_code", "reporting_month"])["version"].to_dict()
    return _trust_month_grid(months, table, versions, _version, "versions",
                             "SACT version of the published figures by trust and reporting month (&ndash;: none)")
