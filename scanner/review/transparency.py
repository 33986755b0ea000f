"""The figures of a transparency report (``meshscan report DB --transparency``): per period,
what was scanned, flagged and sent to review, what people decided, what was appealed and
overturned, and how long it took - aggregated, with no path, hash or name in it.

Why here and not in :mod:`scanner.report`: the decisions, appeals and outcomes are entries of
the review audit log, which this package owns (its entries' meaning, its appeal rules); the
report package only presents the dictionary built here (:mod:`scanner.report.transparency`).

Each count is binned by the time of its own event, UTC: a result by its scan time
(``scanned_at``: the results table keeps the latest scan of each file or archive member, so a
rescanned file counts in the period of its latest scan), a decision, an appeal or an appeal
outcome by the time it was recorded (``at``). So a period's decisions may concern results
scanned in an earlier period. Times are medians over the events of the period, in hours: from
the scan of the result a decision decided (its recorded ``scanned_at``) to the decision, and
from an appeal to its outcome. Rates carry 95% Wilson intervals
(:func:`scanner.report.stats.proportion`):

* ``flagged`` and ``sent_to_review``: of the results scanned in the period (a ``flag``
  verdict: a signature match; ``review``: the classifier's request for a person);
* ``confirmed``: of the decisions of the period;
* ``appealed``: of the decisions of the period, those appealed since (a cohort share: the
  ``appealed`` count is of the appeals filed in the period, whichever decision they contest);
* ``overturned``: of the appeal outcomes of the period.
"""

from __future__ import annotations

import json
import os
import statistics
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from scanner.report.aggregate import period_key
from scanner.report.stats import proportion
from scanner.review.appeals import APPEAL, APPEAL_OUTCOME, DECISION_KINDS, OVERTURNED, UPHELD
from scanner.review.store import ReviewStore
from scanner.verdict import FLAG, REVIEW

PERIODS = ("week", "month", "quarter")
UNDATED = "undated"
COUNTS = (
    "scanned", "flagged", "sent_to_review", "decided", "confirmed", "dismissed", "appealed", "appeal_outcomes",
    "upheld", "overturned",
)  # fmt: skip
RATES = {
    "flagged": ("flagged", "scanned"),
    "sent_to_review": ("sent_to_review", "scanned"),
    "confirmed": ("confirmed", "decided"),
    "appealed": ("decisions_appealed", "decided"),
    "overturned": ("overturned", "appeal_outcomes"),
}
"""Rate name -> (numerator, denominator) among a period's figures."""


def _time(text: Any) -> datetime | None:
    try:
        t = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _hours(start: Any, end: Any) -> float | None:
    a, b = _time(start), _time(end)
    return None if a is None or b is None else (b - a).total_seconds() / 3600


class _Bins:
    """Counts and waiting times per period."""

    def __init__(self, period: str) -> None:
        self.period = period
        self.counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys((*COUNTS, "decisions_appealed"), 0))
        self.waits: dict[str, dict[str, list[float]]] = defaultdict(lambda: {"decision": [], "outcome": []})

    def key(self, when: Any) -> str:
        t = _time(when)
        return period_key(t, self.period) if t is not None else UNDATED

    def count(self, when: Any, *names: str) -> str:
        key = self.key(when)
        for name in names:
            self.counts[key][name] += 1
        return key


def transparency(db: str | os.PathLike[str], period: str = "month") -> dict[str, Any]:
    """The transparency figures of the results database ``db`` (opened read-only), per
    ``period`` (``week``, ``month``, ``quarter``) and in total. Raises
    :class:`scanner.review.ReviewError` when ``db`` is not a results database."""
    if period not in PERIODS:
        raise ValueError(f"period must be one of {PERIODS}, got {period!r}")
    bins = _Bins(period)
    with ReviewStore(db, readonly=True) as store:
        for text, _size, _mtime in store.results.records_with_stat():
            try:
                rec = json.loads(text)
            except (TypeError, ValueError):
                rec = {}
            verdict = rec.get("verdict")
            flags = ("flagged",) if verdict == FLAG else ("sent_to_review",) if verdict == REVIEW else ()
            bins.count(rec.get("scanned_at"), "scanned", *flags)
        _count_log(bins, store.decisions())
    rows = [_figures(key, bins.counts[key], bins.waits[key]) for key in sorted(bins.counts, key=_order)]
    total_counts = {name: sum(c[name] for c in bins.counts.values()) for name in (*COUNTS, "decisions_appealed")}
    total_waits = {w: [x for v in bins.waits.values() for x in v[w]] for w in ("decision", "outcome")}
    return {
        "period": period,
        "periods": rows,
        "total": _figures("total", total_counts, total_waits),
        "unit": "results (a file, or one archive member) for scans; log entries for decisions, appeals, outcomes",
        "binning": "each count by the UTC time of its own event (scan, decision, appeal, outcome)",
    }


def _count_log(bins: _Bins, entries: list[dict[str, Any]]) -> None:
    """Decisions, appeals and outcomes of the audit log into their periods."""
    appealed = {e.get("appeals") for e in entries if e.get("decision") == APPEAL}
    appeal_at = {e.get("appeal_id"): e.get("at") for e in entries if e.get("decision") == APPEAL}
    for e in entries:
        kind, at = e.get("decision"), e.get("at")
        if kind in DECISION_KINDS:
            names = ["decided", "confirmed" if kind == "confirm" else "dismissed"]
            if e.get("decision_id") in appealed:
                names.append("decisions_appealed")
            key = bins.count(at, *names)
            wait = _hours(e.get("scanned_at"), at)
            if wait is not None:
                bins.waits[key]["decision"].append(wait)
        elif kind == APPEAL:
            bins.count(at, "appealed")
        elif kind == APPEAL_OUTCOME and e.get("outcome") in (UPHELD, OVERTURNED):
            key = bins.count(at, "appeal_outcomes", str(e.get("outcome")))
            wait = _hours(appeal_at.get(e.get("appeal_id")), at)
            if wait is not None:
                bins.waits[key]["outcome"].append(wait)


def _order(key: str) -> tuple[bool, str]:
    return key == UNDATED, key


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def _figures(key: str, counts: dict[str, int], waits: dict[str, list[float]]) -> dict[str, Any]:
    return {
        "period": key,
        **{name: counts[name] for name in COUNTS},
        "median_hours_scan_to_decision": _median(waits["decision"]),
        "median_hours_appeal_to_outcome": _median(waits["outcome"]),
        "rates": {name: proportion(counts[k], counts[n]).to_dict() for name, (k, n) in RATES.items()},
    }
