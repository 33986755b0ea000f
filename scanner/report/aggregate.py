"""From verdict records to the figures of a prevalence report: counts, proportions with
95% Wilson intervals, and one table per breakdown.

Units. A *result* is one record: a mesh file, or one member of an archive. Prevalence is the
share of **scannable** results (``flag`` + ``review`` + ``clear``) with that verdict: an
unscannable result says nothing about what the file shows, so it is counted and broken down by
reason, but kept out of the denominator. Each result counts once, whether it was scanned or
its verdicts copied from identical content elsewhere (``copied_from``): the question is how
many uploads there are, not how many distinct designs; the number of distinct contents is
reported beside it.

Privacy. Paths, archive member names, folder names and sha256 digests identify uploads and,
on most platforms, uploaders (``uploads/<user>/...``), so by default nothing below a
breakdown by source *kind* (local files, ``s3``, ...) and file format is named: folders are
only counted (how many there are, how many hold a flagged result). ``include_paths`` adds
the per-folder table and the list of flagged and review items. Hashing folder names was
rejected: a stable hash is still a pseudonymous identifier that links one uploader across
reports.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from scanner._version import __version__
from scanner.features import DESCRIPTOR_VERSION
from scanner.report.records import NO_MTIME, ReportError, Row, Source
from scanner.report.stats import Proportion, proportion
from scanner.util import is_url
from scanner.verdict import CLEAR, FLAG, REVIEW, UNSCANNABLE, VERDICTS

SCANNABLE = (FLAG, REVIEW, CLEAR)
BENIGN = "benign"
SCORE_BINS = 20
ITEM_COLUMNS = (
    "path", "member", "sha256", "verdict", "category", "review_score", "best_match", "best_distance", "explanation",
)  # fmt: skip
"""The ``items`` table (``--include-paths``): the numbers are the records' fields; the
explanation is shown for people, never read."""


@dataclass
class Table:
    """A table of the report: written as ``NAME.csv`` and shown in the HTML."""

    name: str
    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    note: str = ""


@dataclass
class Analysis:
    summary: dict[str, Any]
    tables: dict[str, Table]
    score_values: dict[str, list[float]]
    """Top component score of each result with scores, by verdict (for the plot)."""
    distances: list[float]
    """Best match distance of each flagged near-duplicate result."""


def _number(value: Any) -> float | None:
    """A record's numeric field, or None when absent or not a finite number (a hand-edited or
    foreign record must not break the report)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def review_score(rec: dict[str, Any]) -> float | None:
    """1 - P(benign), the number compared with the review threshold: the record's
    ``review_score`` field, or for a record stored before that field existed, computed from its
    ``scores`` field. None when no classifier scored the file."""
    stored = _number(rec.get("review_score"))
    if stored is not None:
        return stored
    benign = _number((rec.get("scores") or {}).get(BENIGN))
    return None if benign is None else round(1.0 - benign, 4)


def top_component_score(scores: dict[str, float]) -> tuple[str, float] | None:
    """The highest-scoring component category (the classifier's ``benign`` is not one)."""
    items = [(c, float(s)) for c, s in scores.items() if c != BENIGN and isinstance(s, (int, float))]
    if not items:
        return None
    return max(items, key=lambda cs: (cs[1], cs[0]))


def _split_location(path: str) -> tuple[str, list[str]]:
    """``(source kind, path components)``: ``local`` for a file path, else the URL scheme;
    components exclude the scheme (a bucket is the first component)."""
    if is_url(path):
        scheme, rest = path.split("://", 1)
        return scheme, [p for p in rest.split("/") if p]
    return "local", [p for p in path.replace(os.sep, "/").split("/") if p and p != "."]


def _common_prefix(parts: Iterable[list[str]]) -> list[str]:
    prefix: list[str] | None = None
    for comps in parts:
        dirs = comps[:-1]
        if prefix is None:
            prefix = list(dirs)
            continue
        n = 0
        while n < min(len(prefix), len(dirs)) and prefix[n] == dirs[n]:
            n += 1
        del prefix[n:]
    return prefix or []


def top_level_folders(paths: list[str]) -> dict[str, str]:
    """Path -> its top-level folder below the deepest folder all paths of the same source
    kind share (the scanned root); files directly in the root map to ``(root)``."""
    by_kind: dict[str, list[tuple[str, list[str]]]] = defaultdict(list)
    for p in paths:
        kind, comps = _split_location(p)
        by_kind[kind].append((p, comps))
    out = {}
    for kind, items in by_kind.items():
        root = _common_prefix(c for _, c in items)
        for p, comps in items:
            rest = comps[len(root) :]
            folder = rest[0] if len(rest) > 1 else "(root)"
            out[p] = folder if kind == "local" else f"{kind}://{'/'.join(root + [folder])}"
    return out


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        t = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _row_time(row: Row, time_field: str) -> datetime | None:
    if time_field == "mtime":
        return None if row.mtime_ns is None else datetime.fromtimestamp(row.mtime_ns / 1e9, UTC)
    return _parse_time(row.record.get("scanned_at"))


def choose_period(first: datetime, last: datetime) -> str:
    """Day bins up to two months, ISO weeks up to two years, months beyond."""
    span = last - first
    if span <= timedelta(days=62):
        return "day"
    if span <= timedelta(days=731):
        return "week"
    return "month"


def period_key(t: datetime, period: str) -> str:
    if period == "day":
        return t.strftime("%Y-%m-%d")
    if period == "week":
        year, week, _ = t.isocalendar()
        return f"{year}-W{week:02d}"
    if period == "quarter":
        return f"{t.year}-Q{(t.month - 1) // 3 + 1}"
    return t.strftime("%Y-%m")


UNITS = {
    "proportions": "fractions of 1 (0.05 = 5%), in summary.json and in every CSV",
    "counts": "results (a file, or one member of an archive); the survey section counts files",
}
"""One unit everywhere a number is written (the HTML shows proportions as percentages)."""

SHARE_SUFFIXES = ("_share", "_ci95_lo", "_ci95_hi")
"""CSV columns holding a proportion (a fraction of 1)."""


def _share(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


def _share_ci(p: Proportion) -> list[float | None]:
    """Estimate and interval as fractions of 1; all None without scannable results (an
    interval of 0-1 says nothing and reads like a finding)."""
    if p.n == 0:
        return [None, None, None]
    return [_share(p.estimate), _share(p.ci95[0]), _share(p.ci95[1])]


BREAKDOWN_COLUMNS = (
    "results", "flag", "review", "clear", "unscannable",
    "flag_share", "flag_ci95_lo", "flag_ci95_hi", "review_share", "review_ci95_lo", "review_ci95_hi",
)  # fmt: skip
"""Columns of every breakdown table after its label column."""

OVER_TIME_COLUMNS = (
    "period", "results", "scannable", "flag", "review", "flag_share", "flag_ci95_lo", "flag_ci95_hi",
    "review_share", "review_ci95_lo", "review_ci95_hi",
)  # fmt: skip

SURVEY_COLUMNS = (
    "outcome", "sampled", "denominator", "share", "share_ci95_lo", "share_ci95_hi",
    "population", "projected", "projected_ci95_lo", "projected_ci95_hi",
)  # fmt: skip
"""``survey_estimates``: the survey's own figures, per file (the unit of ``meshscan survey``)."""


def analyse(
    source: Source,
    *,
    time_field: str = "scanned",
    period: str = "auto",
    include_paths: bool = False,
    review_threshold: float | None = None,
    distance_threshold: float | None = None,
    top: int = 20,
) -> Analysis:
    """Every figure of the report from the rows of ``source``.

    ``review_threshold`` / ``distance_threshold``: from settings; when None they are read from
    the records' own ``review_threshold`` / ``distance_threshold`` fields (the thresholds that
    decided them). Numbers come from fields only, never from ``explanation`` prose.

    A driver: each table and each part of the summary is one function below, fed only the
    rows or records it reads.
    """
    _check_time_field(source, time_field)
    rows = source.rows
    records = [r.record for r in rows]
    verdicts = verdict_counts(rows)
    paths = [str(rec.get("path", "")) for rec in records]
    folder_of = top_level_folders(paths)
    folders = [folder_of[p] for p in paths]
    times = [_row_time(r, time_field) for r in rows]
    if period == "auto":
        dated = [t for t in times if t is not None]
        period = choose_period(min(dated), max(dated)) if dated else "day"
    score_values = _score_values(records)

    tables = [
        category_table(records),
        format_table(rows),
        source_table(rows, paths),
        over_time_table(rows, times, period, time_field),
        signature_table(records, top),
        unscannable_table(records, verdicts[UNSCANNABLE]),
        score_table(score_values),
    ]
    if include_paths:
        tables += [folder_table(rows, folders), items_table(records)]
    survey = survey_summary(source, include_paths)
    if survey is not None:
        tables.append(survey_table(survey))

    summary = {
        "verdicts": verdicts,
        "other_verdicts": sum(1 for r in rows if r.verdict not in VERDICTS),
        "results": len(rows),
        "scannable": sum(verdicts[v] for v in SCANNABLE),
        "prevalence": _prevalence(verdicts),
        "versions": _versions(records),
        "thresholds": _thresholds(records, review_threshold, distance_threshold),
        "source": _source_summary(source.kind, records, paths),
        "folders": _folder_summary(rows, folders, verdicts[FLAG]),
        "time": _time_summary(source, times, time_field, period),
        "scores": {"results_with_scores": sum(len(v) for v in score_values.values())},
        "include_paths": include_paths,
        "units": UNITS,
    }
    if survey is not None:
        summary["survey"] = survey
    return Analysis(summary, {t.name: t for t in tables}, dict(score_values), flagged_distances(records))


def survey_summary(source: Source, include_paths: bool) -> dict[str, Any] | None:
    """A survey's database (``survey --db``): the survey's own estimates recomputed from its
    recorded design and the verdicts recorded for its sample - the population, the
    finite-population correction, prevalence and projected totals, the very intervals
    ``meshscan survey`` printed. None for any other source."""
    if source.survey is None:
        return None
    from scanner.report.survey import from_meta

    by_path: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in source.rows:
        by_path[str(row.record.get("path", ""))].append(row.record)
    doc = from_meta(source.survey, by_path).to_dict(include_paths=include_paths)
    doc["roots"] = len(source.survey.get("roots") or [])
    return doc


def survey_table(survey: dict[str, Any]) -> Table:
    """``survey_estimates``: per outcome, the sampled files, the prevalence among scannable
    sampled files and the projected total on the same denominator."""
    table = Table("survey_estimates", "Survey: prevalence and projected totals (files; 95% Wilson with FPC)",
                  list(SURVEY_COLUMNS))  # fmt: skip
    for outcome in (FLAG, REVIEW, CLEAR, UNSCANNABLE):
        t = survey["projected_totals"][outcome]
        q = t["proportion"]  # for flag and review: the prevalence itself
        share = [_share(q["estimate"]), _share(q["ci95"][0]), _share(q["ci95"][1])] if q["n"] else [None] * 3
        projected = [None if x is None else round(x, 2) for x in (t["estimate"], *t["ci95"])]
        table.rows.append([outcome, survey["outcomes"][outcome], q["n"], *share, t["population"], *projected])
    return table


def _check_time_field(source: Source, time_field: str) -> None:
    if time_field not in ("scanned", "mtime"):
        raise ValueError(f"time_field must be 'scanned' or 'mtime', got {time_field!r}")
    if time_field == "mtime" and not source.has_mtime:
        raise ReportError(
            NO_MTIME,
            "a JSONL verdict log records no file mtime: use --time-field scanned, "
            "or report on the results DB ('scan --db', 'watch --state')",
        )


def verdict_counts(rows: list[Row]) -> dict[str, int]:
    """Results per known verdict (every verdict present, zero when absent)."""
    counts = Counter(r.verdict for r in rows)
    return {v: counts.get(v, 0) for v in VERDICTS}


def _prevalence(verdicts: dict[str, int]) -> dict[str, dict[str, Any]]:
    scannable = sum(verdicts[v] for v in SCANNABLE)
    prevalence = {
        FLAG: proportion(verdicts[FLAG], scannable).to_dict(),
        REVIEW: proportion(verdicts[REVIEW], scannable).to_dict(),
        "flag_or_review": proportion(verdicts[FLAG] + verdicts[REVIEW], scannable).to_dict(),
    }
    for p in prevalence.values():
        p["denominator"] = "scannable results (flag + review + clear)"
    return prevalence


def _thresholds(
    records: list[dict[str, Any]], review_threshold: float | None, distance_threshold: float | None
) -> dict[str, Any]:
    """Settings first, else the fields that record what decided each verdict (never the
    explanation's words: records stored before these fields existed say "unknown")."""
    review_thresholds = Counter(t for rec in records if (t := _number(rec.get("review_threshold"))) is not None)
    distance_thresholds = Counter(t for rec in records if (t := _number(rec.get("distance_threshold"))) is not None)
    sig_thresholds = [float(m["threshold"]) for rec in records for m in rec.get("matches") or [] if "threshold" in m]
    return {
        "review": {
            "values": [review_threshold] if review_threshold is not None else sorted(review_thresholds),
            "source": "settings" if review_threshold is not None else ("records" if review_thresholds else "unknown"),
        },
        "distance": {
            "values": [distance_threshold] if distance_threshold is not None else sorted(distance_thresholds),
            "source": "settings"
            if distance_threshold is not None
            else ("records" if distance_thresholds else "unknown"),
            "per_signature_range": [min(sig_thresholds), max(sig_thresholds)] if sig_thresholds else None,
        },
    }


def _source_summary(kind: str, records: list[dict[str, Any]], paths: list[str]) -> dict[str, Any]:
    return {
        "kind": kind,
        "files": len(set(paths)),
        "distinct_contents": len({rec.get("sha256") for rec in records if rec.get("sha256")}),
        "copied_results": sum(1 for rec in records if rec.get("copied_from")),
        "archive_members": sum(1 for rec in records if rec.get("member")),
    }


def _span(ts: list[datetime]) -> list[str] | None:
    return [min(ts).replace(microsecond=0).isoformat(), max(ts).replace(microsecond=0).isoformat()] if ts else None


def _time_summary(source: Source, times: list[datetime | None], time_field: str, period: str) -> dict[str, Any]:
    scan_times = [t for t in (_parse_time(r.record.get("scanned_at")) for r in source.rows) if t is not None]
    mtimes = [datetime.fromtimestamp(r.mtime_ns / 1e9, UTC) for r in source.rows if r.mtime_ns is not None]
    return {
        "field": time_field,
        "period": period,
        "scanned_at": _span(scan_times),
        "mtime": _span(mtimes) if source.has_mtime else None,
        "undated": sum(1 for t in times if t is None),
    }


def _folder_summary(rows: list[Row], folders: list[str], flagged: int) -> dict[str, Any]:
    """Folders only counted (privacy: see the module docstring). ``flagged``: all flagged results."""
    folder_counts: dict[str, Counter[str]] = defaultdict(Counter)
    for f, row in zip(folders, rows, strict=True):
        folder_counts[f][row.verdict] += 1
    flagged_per_folder = sorted((c[FLAG] for c in folder_counts.values() if c[FLAG]), reverse=True)
    return {
        "folders": len(folder_counts),
        "folders_with_flag": len(flagged_per_folder),
        "folders_with_review": sum(1 for c in folder_counts.values() if c[REVIEW]),
        "flag_share_in_top_folder": round(flagged_per_folder[0] / flagged, 4) if flagged_per_folder else None,
    }


def over_time_table(rows: list[Row], times: list[datetime | None], period: str, time_field: str) -> Table:
    """``over_time``: results and prevalence per period; rows without a time are ``undated``."""
    per_period: dict[str, Counter[str]] = defaultdict(Counter)
    for row, t in zip(rows, times, strict=True):
        per_period[period_key(t, period) if t else "undated"][row.verdict] += 1
    table = Table(
        "over_time",
        f"Results over time (by {'scan time' if time_field == 'scanned' else 'file modification time'}, "
        f"per {period}, UTC)",
        list(OVER_TIME_COLUMNS),
    )
    for key in sorted(per_period, key=lambda k: (k == "undated", k)):
        c = per_period[key]
        n = sum(c[v] for v in SCANNABLE)
        pf, pr = proportion(c[FLAG], n), proportion(c[REVIEW], n)
        table.rows.append([key, sum(c.values()), n, c[FLAG], c[REVIEW], *_share_ci(pf), *_share_ci(pr)])
    return table


def category_table(records: list[dict[str, Any]]) -> Table:
    """``verdicts_by_category``: flagged and review results per category, largest first."""
    by_category: dict[str, Counter[str]] = defaultdict(Counter)
    for rec in records:
        if rec.get("verdict") in (FLAG, REVIEW):
            by_category[str(rec.get("category") or "(none)")][str(rec["verdict"])] += 1
    table = Table(
        "verdicts_by_category", "Flagged and review results by category", ["category", "flag", "review", "total"]
    )
    for cat in sorted(by_category, key=lambda c: (-sum(by_category[c].values()), c)):
        c = by_category[cat]
        table.rows.append([cat, c[FLAG], c[REVIEW], c[FLAG] + c[REVIEW]])
    return table


def breakdown_table(name: str, title: str, label: str, rows: list[Row], keys: list[str], note: str = "") -> Table:
    """Verdict counts and prevalence per key (``keys[i]`` is the key of ``rows[i]``), largest first."""
    groups: dict[str, Counter[str]] = defaultdict(Counter)
    for key, row in zip(keys, rows, strict=True):
        groups[key][row.verdict] += 1
    table = Table(name, title, [label, *BREAKDOWN_COLUMNS], note=note)
    for key in sorted(groups, key=lambda k: (-sum(groups[k].values()), k)):
        c = groups[key]
        n = sum(c[v] for v in SCANNABLE)
        pf, pr = proportion(c[FLAG], n), proportion(c[REVIEW], n)
        table.rows.append(
            [key, sum(c.values()), c[FLAG], c[REVIEW], c[CLEAR], c[UNSCANNABLE], *_share_ci(pf), *_share_ci(pr)]
        )
    return table


def format_table(rows: list[Row]) -> Table:
    """``by_format``: by the format sniffed from the bytes (never the file name)."""
    keys = [str(r.record.get("format") or "(unknown)") for r in rows]
    return breakdown_table("by_format", "By file format (detected from the bytes)", "format", rows, keys)


def source_table(rows: list[Row], paths: list[str]) -> Table:
    """``by_source``: by where the result came from (local or URL scheme) and whether it was a
    file or an archive member."""
    kinds = [_split_location(p)[0] for p in paths]
    containers = ["archive member" if r.record.get("member") else "file" for r in rows]
    return breakdown_table(
        "by_source",
        "By source kind and container",
        "source",
        rows,
        [f"{k} / {c}" for k, c in zip(kinds, containers, strict=True)],
        note="local: files on this machine's file system; otherwise the URL scheme (s3, gs, ...).",
    )


def folder_table(rows: list[Row], folders: list[str]) -> Table:
    """``by_folder`` (``include_paths`` only): by top-level folder below the scanned root."""
    return breakdown_table("by_folder", "By top-level folder (below the scanned root)", "folder", rows, folders)


KIND_COLUMNS = {
    "sha256": "exact",
    "geometry": "exact",
    "near-duplicate": "near_duplicate",
    "stretched": "stretched",
    "local": "local",
}
"""The ``top_signatures`` column that counts each match kind (the verdict contract's ``kind``)."""
SIGNATURE_KIND_NOTE = (
    "Each result counts a signature once, under the kind of its first match with it: exact (the file's bytes or "
    "its exact triangles), near duplicate (a shape descriptor row), stretched (a copy stretched along some axis) "
    "or local (enough of the signature's distinctive triangle patches: a cut, fused, split or decoyed copy); "
    "the kind columns add up to results. Median distance is over all of them: 0 for an exact match, the share "
    "of the signature not found for a local one."
)


def signature_table(records: list[dict[str, Any]], top: int) -> Table:
    """``top_signatures``: the ``top`` signatures matched by most results (each result counts
    a signature once, however many of its bodies matched, under the kind of its first match:
    one column per kind, so they add up to ``results``)."""
    sig_hits: dict[str, list[float]] = defaultdict(list)
    sig_category: dict[str, str] = {}
    sig_kinds: dict[str, Counter[str]] = defaultdict(Counter)
    for rec in records:
        seen = set()
        for m in rec.get("matches") or []:
            sid = str(m.get("signature_id"))
            sig_category.setdefault(sid, str(m.get("category")))
            if sid in seen:
                continue
            seen.add(sid)
            sig_hits[sid].append(float(m.get("distance") or 0.0))
            kind = str(m.get("kind", "near-duplicate"))
            sig_kinds[sid][KIND_COLUMNS.get(kind, "other")] += 1
    kinds = list(dict.fromkeys(KIND_COLUMNS.values()))
    if any(k["other"] for k in sig_kinds.values()):  # a kind this meshscan does not know (a newer log)
        kinds.append("other")
    table = Table(
        "top_signatures",
        f"Top matched signatures (at most {top})",
        ["signature_id", "category", "results", *kinds, "median_distance"],
        note=SIGNATURE_KIND_NOTE,
    )
    for sid in sorted(sig_hits, key=lambda s: (-len(sig_hits[s]), s))[:top]:
        k = sig_kinds[sid]
        row = [sid, sig_category[sid], len(sig_hits[sid]), *(k[c] for c in kinds)]
        table.rows.append([*row, round(statistics.median(sig_hits[sid]), 5)])
    return table


def flagged_distances(records: list[dict[str, Any]]) -> list[float]:
    """Best match distance of each flagged result whose best match is a near duplicate."""
    distances = []
    for rec in records:
        matches = rec.get("matches") or []
        if rec.get("verdict") == FLAG and matches and matches[0].get("kind", "near-duplicate") == "near-duplicate":
            distances.append(float(matches[0].get("distance") or 0.0))
    return distances


def unscannable_table(records: list[dict[str, Any]], unscannable: int) -> Table:
    """``unscannable_by_reason``: reason codes, most frequent first; ``unscannable``: all
    unscannable results (the share's denominator)."""
    reasons = Counter(str(rec.get("reason") or "(none)") for rec in records if rec.get("verdict") == UNSCANNABLE)
    table = Table(
        "unscannable_by_reason", "Unscannable results by reason code", ["reason", "results", "unscannable_share"]
    )
    for reason, n in sorted(reasons.items(), key=lambda rn: (-rn[1], rn[0])):
        table.rows.append([reason, n, _share(n / unscannable)])
    return table


def _score_values(records: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Top component score of each result with scores, by verdict."""
    score_values: dict[str, list[float]] = defaultdict(list)
    for rec in records:
        best = top_component_score(rec.get("scores") or {})
        if best is not None:
            score_values[str(rec.get("verdict"))].append(best[1])
    return score_values


def score_table(score_values: dict[str, list[float]]) -> Table:
    """``score_distribution``: a histogram of ``SCORE_BINS`` bins over [0, 1] per scannable
    verdict (empty when no result has scores)."""
    table = Table(
        "score_distribution",
        "Highest component score per result (classifier), by verdict",
        ["bin_lo", "bin_hi", *SCANNABLE],
    )
    if not any(score_values.values()):
        return table
    for i in range(SCORE_BINS):
        lo, hi = i / SCORE_BINS, (i + 1) / SCORE_BINS
        last = i == SCORE_BINS - 1
        table.rows.append(
            [lo, hi]
            + [sum(1 for s in score_values.get(v, []) if lo <= s < hi or (last and s == 1.0)) for v in SCANNABLE]
        )
    return table


def items_table(records: list[dict[str, Any]]) -> Table:
    """``items`` (``include_paths`` only): every flagged and review result, named."""
    table = Table("items", "Flagged and review items", list(ITEM_COLUMNS))
    for rec in records:
        if rec.get("verdict") in (FLAG, REVIEW):
            best = (rec.get("matches") or [{}])[0] or {}
            table.rows.append(
                [
                    rec.get("path"),
                    rec.get("member") or "",
                    rec.get("sha256") or "",
                    rec.get("verdict"),
                    rec.get("category") or "",
                    _blank(review_score(rec)),
                    best.get("signature_id") or "",
                    _blank(_number(best.get("distance"))),
                    rec.get("explanation") or "",
                ]
            )
    return table


def _blank(value: float | None) -> float | str:
    return "" if value is None else value


def _versions(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Versions that produced the records (with how many results each) and the versions of
    this installation that made the report."""

    def tally(key: str) -> dict[str, int]:
        c = Counter(str(rec.get(key)) if rec.get(key) is not None else "(none)" for rec in records)
        return dict(sorted(c.items()))

    software = {"python": platform.python_version()}
    for name in ("numpy", "scipy", "scikit-learn", "trimesh", "matplotlib", "jinja2"):
        software[name] = _dist_version(name)
    return {
        "scanner": tally("scanner_version"),
        "library": tally("library_version"),
        "model": tally("model_version"),
        "descriptor": DESCRIPTOR_VERSION,
        "report_scanner": __version__,
        "software": software,
    }


def _dist_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None
