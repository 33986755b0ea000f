"""Researchers' outputs agree (issue 13, item 7): ``meshscan report`` on a survey's database
keeps the population, the finite-population correction and the projected totals with the
very intervals ``meshscan survey`` printed; projected totals and prevalence share one
denominator; summary.json and the CSVs use one unit (fractions of 1); breakdown CSVs carry
review intervals; count axes have integer ticks and flag/review error bars never overlap."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from scanner.report.aggregate import BREAKDOWN_COLUMNS, OVER_TIME_COLUMNS, SURVEY_COLUMNS, Table, analyse
from scanner.report.plots import Figure, all_figures, time_plot
from scanner.report.records import read_source
from tests.conftest import REPO

DEMO = REPO / "fixtures" / "demo"
CLI = [sys.executable, "-m", "scanner.cli"]


@pytest.fixture(scope="module")
def surveyed(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, Path]:
    """A survey of 15 of the demo files (flagged, review and clear), recorded with --db, and
    the report made from that database."""
    tmp = tmp_path_factory.mktemp("survey")
    corpus = tmp / "corpus"
    corpus.mkdir()
    for p in sorted(DEMO.iterdir()):
        if p.suffix in (".stl", ".obj", ".3mf"):
            shutil.copy(p, corpus / p.name)
    db = tmp / "survey.sqlite"
    proc = subprocess.run([*CLI, "survey", str(corpus), "--sample", "15", "--seed", "4", "--jobs", "2", "--json",
                           "--db", str(db)], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = tmp / "report"
    made = subprocess.run([*CLI, "report", str(db), "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    return json.loads(proc.stdout), db, out


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_report_keeps_the_survey_intervals(surveyed: tuple[dict, Path, Path]) -> None:
    doc, _, out = surveyed
    assert doc["outcomes"]["flag"] and doc["outcomes"]["review"]  # the sample holds both
    kept = json.loads((out / "summary.json").read_text())["survey"]
    assert kept["population"] == doc["population"] > kept["sample_size"] == doc["sample_size"] == 15
    assert kept["seed"] == 4 and kept["outcomes"] == doc["outcomes"]
    fpc = kept["finite_population_correction"]
    assert fpc == doc["finite_population_correction"] and 0 < fpc["factor"] < 1
    for outcome in ("flag", "review"):
        mine, theirs = kept["prevalence"][outcome], doc["prevalence"][outcome]
        assert mine["method"] == theirs["method"] == "wilson-fpc"
        assert mine["ci95"] == pytest.approx(theirs["ci95"], abs=1e-12)
        assert mine["estimate"] == pytest.approx(theirs["estimate"], abs=1e-12)
    for outcome in ("flag", "review", "clear", "unscannable"):
        mine, theirs = kept["projected_totals"][outcome], doc["projected_totals"][outcome]
        assert mine["estimate"] == pytest.approx(theirs["estimate"], abs=1e-9)
        assert mine["ci95"] == pytest.approx(theirs["ci95"], abs=1e-9)


def test_projected_totals_and_prevalence_share_one_denominator(surveyed: tuple[dict, Path, Path]) -> None:
    doc, _, _ = surveyed
    scannable = doc["finite_population_correction"]["population"]
    n_scannable = doc["sample_size"] - doc["outcomes"]["unscannable"]
    assert scannable == round(doc["population"] * n_scannable / doc["sample_size"])
    for outcome in ("flag", "review"):
        p, t = doc["prevalence"][outcome], doc["projected_totals"][outcome]
        assert t["population"] == scannable and p["n"] == n_scannable
        assert t["estimate"] / scannable == pytest.approx(p["estimate"])
        k = p["k"]  # the interval is the prevalence's, narrowed only to what the sample proves
        assert t["ci95"][0] == pytest.approx(max(scannable * p["ci95"][0], k))
        assert t["ci95"][1] == pytest.approx(min(scannable * p["ci95"][1], scannable - (n_scannable - k)))


def test_csvs_use_the_summary_unit(surveyed: tuple[dict, Path, Path]) -> None:
    doc, _, out = surveyed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["units"]["proportions"].startswith("fractions of 1")
    rows = {r["outcome"]: r for r in read_csv(out / "survey_estimates.csv")}
    assert list(rows["flag"]) == list(SURVEY_COLUMNS)
    for outcome in ("flag", "review"):
        p, t = doc["prevalence"][outcome], doc["projected_totals"][outcome]
        r = rows[outcome]
        assert float(r["share"]) == pytest.approx(p["estimate"], abs=1e-6)  # a fraction, as in summary.json
        assert float(r["share_ci95_lo"]) == pytest.approx(p["ci95"][0], abs=1e-6)
        assert float(r["share_ci95_hi"]) == pytest.approx(p["ci95"][1], abs=1e-6)
        assert float(r["projected"]) == pytest.approx(t["estimate"], abs=0.01)
        assert int(r["sampled"]) == doc["outcomes"][outcome]
    for name in ("by_format", "by_source"):
        table = read_csv(out / f"{name}.csv")
        assert list(table[0])[1:] == list(BREAKDOWN_COLUMNS)
        for r in table:
            n = int(r["flag"]) + int(r["review"]) + int(r["clear"])
            for verdict in ("flag", "review"):  # review intervals too; fractions of 1 like summary.json
                lo, est, hi = (float(r[f"{verdict}_{c}"]) for c in ("ci95_lo", "share", "ci95_hi"))
                assert 0 <= lo <= est <= hi <= 1 and est == pytest.approx(int(r[verdict]) / n, abs=1e-6)
    results = summary["prevalence"]["flag"]
    over = read_csv(out / "over_time.csv")
    assert list(over[0]) == list(OVER_TIME_COLUMNS)
    if len(over) == 1:  # all in one day: the period's prevalence is the summary's, in the same unit
        assert float(over[0]["flag_share"]) == pytest.approx(results["estimate"], abs=1e-6)
    html = (out / "report.html").read_text()
    assert "Survey of a larger corpus" in html and f"{doc['population']:,} files" in html


def _integer_ticks(axis) -> bool:  # noqa: ANN001 - a matplotlib Axis
    lo, hi = sorted(axis.get_view_interval())
    ticks = [t for t in axis.get_majorticklocs() if lo <= t <= hi]
    return bool(ticks) and all(float(t).is_integer() for t in ticks)


def test_count_axes_have_integer_ticks(surveyed: tuple[dict, Path, Path]) -> None:
    _, db, _ = surveyed
    figures = all_figures(analyse(read_source(db)))
    counted = {"verdicts": "x", "by_format": "x", "by_source": "x", "signatures": "x"}
    for name, which in counted.items():
        fig = figures[name]
        assert isinstance(fig, Figure), name
        ax = fig.axes[0]
        ax.figure.canvas.draw()
        assert _integer_ticks(ax.xaxis if which == "x" else ax.yaxis), (name, ax.xaxis.get_majorticklocs())


def over_time(periods: int) -> Table:
    """A synthetic over_time table: few results per day, so intervals are wide and overlap
    if drawn at the same place."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    table = Table("over_time", "t", list(OVER_TIME_COLUMNS))
    for i in range(periods):
        day = (start + timedelta(days=i)).strftime("%Y-%m-%d")
        table.rows.append([day, 3, 3, 1, 1, 1 / 3, 0.06, 0.79, 1 / 3, 0.06, 0.79])
    return table


@pytest.mark.parametrize("periods", [3, 20, 60])
def test_flag_and_review_error_bars_never_overlap(periods: int) -> None:
    fig = time_plot(over_time(periods), "day", "scanned")
    assert fig is not None
    counts, prevalence = fig.axes[0], fig.axes[1]
    fig.canvas.draw()
    assert _integer_ticks(counts.yaxis), counts.yaxis.get_majorticklocs()
    flag, review = prevalence.containers  # ErrorbarContainer: (data line, caplines, bar line collections)
    px_per_point = fig.dpi / 72

    def extents(container) -> list[tuple[float, float]]:  # noqa: ANN001
        """Left and right display x of each period's widest element: cap or marker."""
        line, caps, _ = container
        half = max([c.get_markersize() for c in caps] + [line.get_markersize()]) / 2 * px_per_point
        xs = prevalence.transData.transform(line.get_xydata())[:, 0]
        return [(x - half, x + half) for x in xs]

    for (_, flag_right), (review_left, _) in zip(extents(flag), extents(review), strict=True):
        assert flag_right < review_left


def test_look_at_the_figure(tmp_path: Path) -> None:
    """Writes the over-time figure for a person to look at (``--basetemp`` keeps it)."""
    fig = time_plot(over_time(30), "day", "scanned")
    assert fig is not None
    fig.savefig(tmp_path / "over_time.png", dpi=110)
    assert (tmp_path / "over_time.png").stat().st_size > 10_000
