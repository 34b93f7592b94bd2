"""The report as one HTML page with its plots (PNG) and CSV files beside it."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from pathlib import Path

from aifi_app import __version__
from aifi_app.evaluation.stats import median as median_of
from aifi_app.report import plots, tables
from aifi_app.report.figures import Figures

STYLE = """
body { font-family: 'DejaVu Sans', Arial, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 22px; margin-bottom: 4px; }
h2 { font-size: 17px; border-bottom: 1px solid #ccc; margin-top: 28px; }
p.meta { color: #555; margin-top: 0; }
table { border-collapse: collapse; font-size: 12px; margin: 8px 0; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #eee; }
td.t { text-align: left; }
.plots { display: flex; flex-wrap: wrap; gap: 8px; }
.plots img { width: 48%; min-width: 360px; border: 1px solid #ddd; }
.key { display: flex; gap: 16px; flex-wrap: wrap; }
.key div { border: 1px solid #ccc; padding: 6px 12px; border-radius: 4px; }
.key b { font-size: 18px; display: block; }
.note { font-size: 12px; color: #555; }
"""

NOTES = (
    "Times are in UTC; a job belongs to the day its study's first image arrived. "
    "Turnaround runs from the last image received to the last result stored in the PACS; "
    "stage figures count delivered jobs only (median, 90th percentile by nearest rank). "
    "Accuracy rests on people's verdicts in the queue (each job's newest verdict): "
    "agreement = agree / (agree + false positive + missed); PPV = agreed positive results / "
    "(agreed + false-positive positive results). * Sensitivity = TP / (TP + reported "
    "misses): misses nobody reported are unknown, so it is an upper bound and less certain "
    "than PPV. Intervals are Wilson score 95 % intervals; n is the count each rests on. "
    "Service availability counts from start to stop events; a run that ended without a stop "
    "(a crash) counts until its last recorded activity. A remote node counts as down from a "
    "failed contact (delivery, submission or C-ECHO test) until the next successful one. "
    "This report holds no patient "
    "identifiers: only job ids, algorithm ids, node names, device values, cleaned "
    "descriptions, counts and times."
)


def _cell(value: tables.Cell) -> str:
    if value is None:
        return "<td></td>"
    if isinstance(value, str):
        return f'<td class="t">{html.escape(value)}</td>'
    if isinstance(value, float):
        return f"<td>{value:g}</td>"
    return f"<td>{value}</td>"


def _table(table: tables.Table, max_rows: int | None = None) -> str:
    rows = table.rows if max_rows is None else table.rows[:max_rows]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    more = ""
    if max_rows is not None and len(table.rows) > max_rows:
        more = f'<p class="note">{len(table.rows) - max_rows} more rows in {table.name}.csv</p>'
    link = f'<a href="{table.name}.csv">{table.name}.csv</a>'
    return (
        f"<h2>{html.escape(table.title)}</h2><p class='note'>{link}</p>"
        f"<table><tr>{head}</tr>{body}</table>{more}"
    )


def _key_figures(f: Figures) -> str:
    delivered = [j for j in f.jobs if j.delivered_at is not None]
    median = median_of([v for values in f.turnarounds.values() for v in values])
    judged = sum(1 for j in f.jobs if j.verdict is not None)
    service = f.service.fraction
    items = [
        ("jobs", str(len(f.jobs))),
        ("delivered", str(len(delivered))),
        ("rejected", str(sum(1 for j in f.jobs if j.state == "rejected"))),
        ("failed", str(sum(1 for j in f.jobs if j.state == "failed"))),
        ("median turnaround, all", "-" if median is None else f"{median:.1f} s"),
        ("service availability", "-" if service is None else f"{100 * service:.2f} %"),
        ("jobs judged", f"{judged}"),
    ]
    return (
        '<div class="key">'
        + "".join(f"<div><b>{html.escape(v)}</b>{html.escape(k)}</div>" for k, v in items)
        + "</div>"
    )


def write_report(f: Figures, out: Path) -> Path:
    """Write ``report.html``, one PNG per plot and one CSV per table into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for name, draw in plots.PLOTS.items():
        plots.save_png(draw, f, out / f"{name}.png")
    all_tables = tables.build(f)
    for table in all_tables:
        tables.write_csv(table, out)
    generated = datetime.fromtimestamp(f.generated_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    images = "".join(f'<img src="{name}.png" alt="{html.escape(name)}">' for name in plots.PLOTS)
    sections = "".join(
        _table(t, max_rows=50 if t.name in ("job_stages", "verdicts") else None) for t in all_tables
    )
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>AIFI evaluation {html.escape(f.period.label())}</title>"
        f"<style>{STYLE}</style></head><body>"
        f"<h1>AIFI Appliance evaluation: {html.escape(f.period.label())}</h1>"
        f"<p class='meta'>Generated {generated} by aifi-app {__version__}</p>"
        f"{_key_figures(f)}<div class='plots'>{images}</div>"
        f"<p class='note'>{html.escape(NOTES)}</p>{sections}</body></html>"
    )
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
