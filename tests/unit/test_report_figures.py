"""Report figures from hand-made records: breakdowns, thresholds, privacy, time fields,
bad input with reason codes."""

from __future__ import annotations

import csv
import json
import re
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from scanner.cli import cli
from scanner.report.aggregate import analyse, period_key, top_level_folders
from scanner.report.records import NO_MTIME, NOT_FOUND, NOT_RESULTS, ReportError, Row, Source, read_source
from scanner.report.render import make_report

SHA = "ab" * 32


def rec(path: str, verdict: str, **kw: object) -> dict:
    d = {
        "path": path,
        "member": None,
        "verdict": verdict,
        "category": None,
        "reason": None,
        "sha256": SHA,
        "matches": [],
        "scores": {},
        "explanation": "",
        "scanner_version": "0.1.0",
        "library_version": "lib1",
        "model_version": None,
        "scanned_at": "2026-01-05T10:00:00+00:00",
        "format": "stl-binary",
    }
    d.update(kw)
    return d


def decided(review_score: float) -> dict[str, float]:
    """The fields the pipeline records beside the scores: what decided the verdict."""
    return {"review_score": review_score, "review_threshold": 0.62, "distance_threshold": 0.08}


def sample_rows() -> list[Row]:
    review_words = (
        "review as barrel: no signature ..., but the classifier gives 0.91 for barrel (review threshold 0.62)"
    )
    clear_words = (
        "no signature within its threshold (at most 0.08) of the file or any of its bodies; the classifier's "
        "highest component score, 0.10 for barrel, is below the review threshold 0.62"
    )
    match = {
        "signature_id": "ms-1",
        "category": "barrel",
        "distance": 0.03,
        "threshold": 0.05,
        "body": None,
        "kind": "near-duplicate",
        "signature_body": None,
    }
    return [
        Row(
            rec(
                "/srv/up/alice/a.stl",
                "flag",
                category="barrel",
                matches=[match],
                scores={"barrel": 0.4, "benign": 0.6},
                **decided(0.4),
                scanned_at="2026-01-05T10:00:00+00:00",
            ),
            10,
            1_767_600_000 * 10**9,
        ),
        Row(
            rec(
                "/srv/up/alice/b.obj",
                "review",
                category="barrel",
                format="obj",
                explanation=review_words,
                scores={"barrel": 0.91, "benign": 0.09},
                **decided(0.91),
                scanned_at="2026-01-06T10:00:00+00:00",
            ),
            10,
            None,
        ),
        Row(
            rec(
                "/srv/up/bob/c.stl",
                "clear",
                explanation=clear_words,
                scores={"barrel": 0.1, "benign": 0.9},
                **decided(0.1),
                scanned_at="2026-01-06T11:00:00+00:00",
            ),
            10,
            1_767_700_000 * 10**9,
        ),
        Row(
            rec(
                "/srv/up/bob/d.zip",
                "unscannable",
                member="tex.png",
                reason="unsupported-format",
                format=None,
                scanned_at=None,
            ),
            10,
            1_767_700_000 * 10**9,
        ),
        Row(
            rec(
                "/srv/up/e.stl", "clear", explanation=clear_words, scores={"barrel": 0.2, "benign": 0.8}, **decided(0.2)
            ),
            10,
            None,
        ),
    ]


def test_figures_from_records() -> None:
    a = analyse(Source("results-db", sample_rows(), True), period="day")
    s = a.summary
    assert s["verdicts"] == {"flag": 1, "review": 1, "clear": 2, "unscannable": 1}
    assert s["scannable"] == 4 and s["prevalence"]["flag"]["estimate"] == 0.25
    assert s["prevalence"]["flag"]["method"] == "wilson"
    assert s["thresholds"]["review"] == {"values": [0.62], "source": "records"}
    assert s["thresholds"]["distance"]["values"] == [0.08]
    assert s["thresholds"]["distance"]["per_signature_range"] == [0.05, 0.05]
    assert s["time"]["undated"] == 1
    assert s["folders"] == {
        "folders": 3,
        "folders_with_flag": 1,
        "folders_with_review": 1,
        "flag_share_in_top_folder": 1.0,
    }
    over = {r[0]: r for r in a.tables["over_time"].rows}
    assert over["2026-01-05"][1:5] == [2, 2, 1, 0] and over["2026-01-06"][1:5] == [2, 2, 0, 1]
    assert over["undated"][1] == 1
    formats = {r[0]: r for r in a.tables["by_format"].rows}
    assert formats["stl-binary"][1:6] == [3, 1, 0, 2, 0] and formats["(unknown)"][5] == 1
    assert a.tables["unscannable_by_reason"].rows == [["unsupported-format", 1, 1.0]]  # one unit: fractions
    assert a.tables["top_signatures"].rows == [["ms-1", "barrel", 1, 0, 1, 0, 0, 0.03]]
    assert a.tables["verdicts_by_category"].rows == [["barrel", 1, 1, 2]]
    assert sorted(a.score_values) == ["clear", "flag", "review"] and a.distances == [0.03]
    bins = a.tables["score_distribution"].rows
    assert sum(sum(r[2:]) for r in bins) == 4 and bins[18][2:] == [0, 1, 0]  # 0.91 in [0.90, 0.95)
    assert "by_folder" not in a.tables and "items" not in a.tables


def test_scores_are_plotted_with_the_threshold(tmp_path: Path) -> None:
    log = tmp_path / "v.jsonl"
    log.write_text("".join(json.dumps(r.record) + "\n" for r in sample_rows()))
    w = make_report(log, tmp_path / "out")
    html = w.html.read_text()
    assert 'alt="Histogram of the highest component probability' in html
    assert "No record carries classifier scores" not in html
    assert "0.62 (from the records)" in html  # the review threshold, stated in the methods
    assert json.loads(w.summary.read_text())["scores"]["results_with_scores"] == 4


def test_settings_override_thresholds_and_include_paths() -> None:
    a = analyse(
        Source("jsonl", sample_rows(), False), review_threshold=0.5, distance_threshold=0.07, include_paths=True
    )
    assert a.summary["thresholds"]["review"] == {"values": [0.5], "source": "settings"}
    folders = {r[0]: r[1] for r in a.tables["by_folder"].rows}
    assert folders == {"alice": 2, "bob": 2, "(root)": 1}
    assert [r[0] for r in a.tables["items"].rows] == ["/srv/up/alice/a.stl", "/srv/up/alice/b.obj"]


def test_mtime_axis() -> None:
    with pytest.raises(ReportError) as err:
        analyse(Source("jsonl", sample_rows(), False), time_field="mtime")
    assert err.value.reason == NO_MTIME
    a = analyse(Source("results-db", sample_rows(), True), time_field="mtime", period="day")
    assert a.summary["time"]["undated"] == 2  # two rows without mtime
    assert {r[0] for r in a.tables["over_time"].rows} == {"2026-01-05", "2026-01-06", "undated"}


def test_folders_and_periods() -> None:
    got = top_level_folders(
        ["/a/b/u1/x.stl", "/a/b/u2/y/z.stl", "/a/b/w.stl", "s3://bk/up/u9/q.stl", "s3://bk/up/r.stl"]
    )
    assert got == {
        "/a/b/u1/x.stl": "u1",
        "/a/b/u2/y/z.stl": "u2",
        "/a/b/w.stl": "(root)",
        "s3://bk/up/u9/q.stl": "s3://bk/up/u9",
        "s3://bk/up/r.stl": "s3://bk/up/(root)",
    }
    from datetime import datetime

    t = datetime(2026, 1, 1)
    assert (period_key(t, "day"), period_key(t, "week"), period_key(t, "month")) == (
        "2026-01-01",
        "2026-W01",
        "2026-01",
    )


def test_no_scores_is_said_not_plotted(tmp_path: Path) -> None:
    log = tmp_path / "v.jsonl"
    rows = [rec(f"/x/{i}.stl", "clear") for i in range(5)] + [rec("/x/9.stl", "flag", category="barrel")]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    w = make_report(log, tmp_path / "out")
    html = w.html.read_text()
    assert "No record carries classifier scores" in html
    assert "Classifier scores" not in html  # no empty plot
    # verdicts, prevalence, by source, by format; the flag has no match evidence, and one day is no trend
    assert html.count("<img ") == 4
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)  # base64 can spell anything
    assert "/x/" not in text and SHA not in text
    summary = json.loads(w.summary.read_text())
    assert summary["verdicts"]["clear"] == 5 and summary["scores"]["results_with_scores"] == 0
    with (tmp_path / "out" / "score_distribution.csv").open() as fh:
        assert list(csv.reader(fh)) == [["bin_lo", "bin_hi", "flag", "review", "clear"]]


def test_bad_sources_have_reason_codes(tmp_path: Path) -> None:
    with pytest.raises(ReportError) as err:
        read_source(tmp_path / "nope.sqlite")
    assert err.value.reason == NOT_FOUND
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(ReportError) as err:
        read_source(other)
    assert err.value.reason == NOT_RESULTS
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"verdict": "clear", "path": "a"}\nnot json\n')
    runner = CliRunner()
    for source, reason in ((bad, "corrupt-source"), (other, "not-results"), (tmp_path / "none", "not-found")):
        result = runner.invoke(cli, ["report", str(source), "--out", str(tmp_path / "o")])
        assert result.exit_code == 3 and f"[{reason}]" in result.output, result.output
        assert "Traceback" not in result.output
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    result = runner.invoke(cli, ["report", str(empty), "--out", str(tmp_path / "o")])
    assert result.exit_code == 3 and "[empty-source]" in result.output


def test_jsonl_later_record_replaces_earlier(tmp_path: Path) -> None:
    log = tmp_path / "v.jsonl"
    log.write_text(json.dumps(rec("/x/a.stl", "clear")) + "\n" + json.dumps(rec("/x/a.stl", "flag")) + "\n")
    src = read_source(log)
    assert [r.verdict for r in src.rows] == ["flag"] and src.kind == "jsonl" and not src.has_mtime


def test_csv_cells_cannot_be_spreadsheet_formulas(tmp_path: Path) -> None:
    log = tmp_path / "v.jsonl"
    evil = "/up/=SUM(1+1)/-a.stl"
    records = [rec(evil, "flag", category="barrel", member="=cmd|' /C calc'!A0"), rec("/up/ok/b.stl", "clear")]
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    make_report(log, tmp_path / "out", include_paths=True)
    with (tmp_path / "out" / "items.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["path"] == evil  # starts with '/': untouched
    assert rows[0]["member"] == "'=cmd|' /C calc'!A0"
    with (tmp_path / "out" / "by_folder.csv").open() as fh:
        folders = sorted(r["folder"] for r in csv.DictReader(fh))
    assert folders == ["'=SUM(1+1)", "ok"]


def test_numbers_come_from_fields_never_from_the_explanation() -> None:
    """Junk explanations (stating other thresholds) change no figure: only the items table's
    explanation column, which is shown to people and never read."""
    rows = sample_rows()
    junk = [
        Row({**r.record, "explanation": "review threshold 0.99; no signature within its threshold (at most 9.5)"},
            r.size, r.mtime_ns)
        for r in rows
    ]  # fmt: skip
    a = analyse(Source("results-db", rows, True), period="day", include_paths=True)
    b = analyse(Source("results-db", junk, True), period="day", include_paths=True)
    assert b.summary["thresholds"]["review"] == {"values": [0.62], "source": "records"}
    assert b.summary["thresholds"]["distance"]["values"] == [0.08]
    a.summary["versions"].pop("software"), b.summary["versions"].pop("software")
    assert a.summary == b.summary
    assert a.score_values == b.score_values and a.distances == b.distances
    drop = list(a.tables["items"].columns).index("explanation")
    for name, table in a.tables.items():
        other = b.tables[name].rows
        if name == "items":
            assert [r[:drop] for r in table.rows] == [r[:drop] for r in other]
        else:
            assert table.rows == other, name
    items = {r[0]: dict(zip(a.tables["items"].columns, r, strict=True)) for r in a.tables["items"].rows}
    assert items["/srv/up/alice/a.stl"]["review_score"] == 0.4
    assert (
        items["/srv/up/alice/a.stl"]["best_match"] == "ms-1" and items["/srv/up/alice/a.stl"]["best_distance"] == 0.03
    )
    assert items["/srv/up/alice/b.obj"]["review_score"] == 0.91 and items["/srv/up/alice/b.obj"]["best_match"] == ""


def test_records_stored_before_the_fields() -> None:
    """Old records: review_score is computed from the ``scores`` field (1 - P(benign)); the
    thresholds they never recorded as fields are "unknown", not read out of their words."""
    old = [
        Row({k: v for k, v in r.record.items() if k not in ("review_score", "review_threshold", "distance_threshold")},
            r.size, r.mtime_ns)
        for r in sample_rows()
    ]  # fmt: skip
    a = analyse(Source("results-db", old, True), period="day", include_paths=True)
    assert a.summary["thresholds"]["review"] == {"values": [], "source": "unknown"}
    assert a.summary["thresholds"]["distance"]["values"] == []
    assert a.summary["thresholds"]["distance"]["source"] == "unknown"
    scores = [r[list(a.tables["items"].columns).index("review_score")] for r in a.tables["items"].rows]
    assert scores == [0.4, 0.91]
