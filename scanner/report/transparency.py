"""The transparency section of a report: the figures of
:func:`scanner.review.transparency.transparency` (computed where the audit log lives) as a
table (``transparency.csv`` and the HTML section) and as plain text for the terminal.

Aggregate only, always: the figures hold counts, rates and medians, never a path, hash or
reviewer's name, with or without ``--include-paths``.
"""

from __future__ import annotations

from typing import Any

from scanner.report.aggregate import Table

COUNT_COLUMNS = (
    "scanned", "flagged", "sent_to_review", "decided", "confirmed", "dismissed", "appealed", "upheld", "overturned",
)  # fmt: skip
RATE_COLUMNS = ("flagged", "sent_to_review", "confirmed", "appealed", "overturned")
WAIT_COLUMNS = ("median_hours_scan_to_decision", "median_hours_appeal_to_outcome")


def columns() -> list[str]:
    """``period``, the counts, the two medians, then each rate with its 95% interval."""
    rates = [f"{r}{suffix}" for r in RATE_COLUMNS for suffix in ("_share", "_ci95_lo", "_ci95_hi")]
    return ["period", *COUNT_COLUMNS, *WAIT_COLUMNS, *rates]


def _rate_cells(rate: dict[str, Any]) -> list[float | None]:
    if not rate["n"]:
        return [None, None, None]  # no denominator: no rate (an interval of 0-1 reads like a finding)
    return [round(rate["estimate"], 6), round(rate["ci95"][0], 6), round(rate["ci95"][1], 6)]


def _row(figures: dict[str, Any]) -> list[Any]:
    rates = [cell for r in RATE_COLUMNS for cell in _rate_cells(figures["rates"][r])]
    return [figures["period"], *(figures[c] for c in COUNT_COLUMNS), *(figures[w] for w in WAIT_COLUMNS), *rates]


def transparency_table(doc: dict[str, Any]) -> Table:
    """``transparency``: one row per period, then the total."""
    table = Table(
        "transparency",
        f"Transparency: scans, decisions and appeals per {doc['period']} (UTC; rates with 95% Wilson intervals)",
        columns(),
        note="Each count is binned by the time of its own event: a result by its scan, a decision, appeal or "
        "outcome by when it was recorded. Rates: flagged and sent to review of the results scanned, confirmed "
        "of the decisions, appealed of the decisions (those appealed since), overturned of the appeal outcomes.",
    )
    table.rows = [_row(f) for f in doc["periods"]] + [_row(doc["total"])]
    return table


def _pct(rate: dict[str, Any]) -> str:
    if not rate["n"]:
        return "-"
    return f"{100 * rate['estimate']:.1f}% [{100 * rate['ci95'][0]:.1f}-{100 * rate['ci95'][1]:.1f}]"


def _hours(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def transparency_text(doc: dict[str, Any]) -> str:
    """The figures as a plain-text table (one line per period and the total), then the rates."""
    head = ("period", "scanned", "flagged", "to review", "decided", "confirmed", "dismissed", "appealed", "upheld",
            "overturned", "h to decision", "h to outcome")  # fmt: skip
    rows = [
        [f["period"], *(str(f[c]) for c in COUNT_COLUMNS), *(_hours(f[w]) for w in WAIT_COLUMNS)]
        for f in [*doc["periods"], doc["total"]]
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    lines = [f"Transparency report per {doc['period']} (UTC; h = median hours)"]
    for r in [list(head), *rows]:
        lines.append(
            "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        )
    total = doc["total"]["rates"]
    lines.append(
        "rates (total, 95% Wilson): "
        + "; ".join(f"{name.replace('_', ' ')} {_pct(total[name])}" for name in RATE_COLUMNS)
    )
    return "\n".join(lines) + "\n"
