"""Write a report: ``report.html`` (one self-contained file: CSS inlined, figures embedded as
PNG data URIs, no external URL, so it opens offline and can be attached to a paper),
``summary.json`` (the headline figures, for scripts) and one CSV per table."""

from __future__ import annotations

import base64
import csv
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from scanner.report.aggregate import SHARE_SUFFIXES, Analysis, analyse
from scanner.report.records import read_source
from scanner.util import utc_now

SUMMARY_NAME = "summary.json"
HTML_NAME = "report.html"


@dataclass
class Written:
    html: Path
    summary: Path
    csvs: list[Path]
    analysis: Analysis


def make_report(
    source_path: str | Path,
    out_dir: str | Path,
    *,
    time_field: str = "scanned",
    period: str = "auto",
    include_paths: bool = False,
    review_threshold: float | None = None,
    distance_threshold: float | None = None,
    title: str = "meshscan prevalence report",
    transparency: dict[str, Any] | None = None,
) -> Written:
    """Read ``source_path`` (results DB or JSONL log), analyse it and write the report files.

    ``transparency``: the figures of :func:`scanner.review.transparency.transparency` (the
    caller computes them: the audit log belongs to the review package), added as
    ``summary.json`` ``transparency``, ``transparency.csv`` and a section of the HTML."""
    source = read_source(source_path)
    analysis = analyse(
        source,
        time_field=time_field,
        period=period,
        include_paths=include_paths,
        review_threshold=review_threshold,
        distance_threshold=distance_threshold,
    )
    if transparency is not None:
        from scanner.report.transparency import transparency_table

        analysis.summary["transparency"] = transparency
        analysis.tables["transparency"] = transparency_table(transparency)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    generated = utc_now()
    analysis.summary["generated_at"] = generated
    analysis.summary["tables"] = {name: f"{name}.csv" for name in analysis.tables}
    csvs = []
    for table in analysis.tables.values():
        path = out / f"{table.name}.csv"
        with path.open("w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(table.columns)
            w.writerows([[csv_cell(v) for v in row] for row in table.rows])
        csvs.append(path)
    summary_path = out / SUMMARY_NAME
    summary_path.write_text(json.dumps(analysis.summary, indent=1, sort_keys=True) + "\n", encoding="utf-8")

    from scanner.report.plots import all_plots

    images = {name: _data_uri(png) for name, png in all_plots(analysis).items() if png is not None}
    html = render_html(analysis, images, title=title)
    html_path = out / HTML_NAME
    html_path.write_text(html, encoding="utf-8")
    return Written(html_path, summary_path, csvs, analysis)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A cell safe to open in a spreadsheet: upload names are untrusted, and a file named
    ``=HYPERLINK(...).stl`` would be a formula in Excel or LibreOffice (OWASP "CSV injection"),
    so a text cell starting like a formula gets a leading apostrophe. Numbers pass unchanged."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _fmt_pct(p: dict[str, Any]) -> str:
    if p["estimate"] is None:
        return "n/a (no scannable results)"
    return f"{100 * p['estimate']:.2f}% (95% CI {100 * p['ci95'][0]:.2f}–{100 * p['ci95'][1]:.2f}%)"


def column_label(name: str) -> str:
    """A CSV column name as an HTML table header; proportion columns (fractions of 1 in the
    CSV) are shown in percent: ``flag_ci95_lo`` -> ``flag 95% CI low (%)``."""
    share = is_share(name)
    label = name.replace("_ci95_lo", " 95% CI low").replace("_ci95_hi", " 95% CI high").replace("_", " ")
    return label + " (%)" if share else label


def is_share(column: str) -> bool:
    """Does this CSV column hold a proportion (a fraction of 1)?"""
    return column.endswith(SHARE_SUFFIXES)


def _cell(value: Any, column: str) -> str:
    """A table cell for people: proportions in percent, counts with thousands separators."""
    if is_share(column):
        return f"{100 * value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:g}"


def render_html(analysis: Analysis, images: dict[str, str], title: str) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("scanner.report", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = _fmt_pct
    env.filters["colname"] = column_label
    env.filters["cell"] = _cell
    env.filters["est"] = lambda p: "n/a" if p["estimate"] is None else f"{100 * p['estimate']:.2f}%"
    env.filters["ci"] = lambda p: (
        "no scannable results"
        if p["estimate"] is None
        else (f"95% CI {100 * p['ci95'][0]:.2f}–{100 * p['ci95'][1]:.2f}% (Wilson)")
    )
    env.filters["when"] = lambda iso: str(iso)[:19].replace("T", " ")
    env.filters["num"] = lambda v: "" if v is None else (f"{v:,}" if isinstance(v, int) else f"{v:g}")
    css = resources.files("scanner.report").joinpath("templates/report.css").read_text(encoding="utf-8")
    return env.get_template("report.html").render(
        title=title, s=analysis.summary, tables=analysis.tables, images=images, css=css
    )
