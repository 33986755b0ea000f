"""The transparency report (issue 20, item 4): ``meshscan report DB --transparency``.

The database holds verdicts of real scans of synthetic proxies (fixtures/demo, scanned through
the Python API against a library that enrols two of them), recorded with chosen scan times, and
one ``review`` verdict recorded the way the classifier records one; decisions, appeals and
outcomes are made through ``meshscan review`` at chosen times. So every count and median below
is known exactly.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from scanner.api import Scanner
from scanner.cli import cli
from scanner.enrol import enrol
from scanner.library import SignatureLibrary
from scanner.report.stats import proportion
from scanner.store.results import ResultsStore
from tests.conftest import REPO

DEMO = REPO / "fixtures" / "demo"
FLAG_A = "proxy-barrel-s1-000.stl"
FLAG_B = "proxy-frame_or_receiver-s1-001.stl"
REVIEWED = "proxy-slide_or_cylinder-s1-002.stl"
BENIGN = ("benign-bracket-s1-001.stl", "benign-cup-s1-000.stl", "benign-pipe-s1-002.stl")
SCANNED_AT = {
    FLAG_A: "2026-01-10T00:00:00+00:00",
    FLAG_B: "2026-01-20T00:00:00+00:00",
    REVIEWED: "2026-01-25T00:00:00+00:00",
    BENIGN[0]: "2026-01-05T00:00:00+00:00",
    BENIGN[1]: "2026-02-03T00:00:00+00:00",
    BENIGN[2]: "2026-02-10T00:00:00+00:00",
}
REVIEWER, SECOND, APPELLANT = "reviewer-qx", "second-qx", "appellant-qx"


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, results_target: str) -> str:
    """The results database (SQLite, then PostgreSQL) after the scans, decisions and appeals."""
    uploads = tmp_path / "incoming-qx"
    uploads.mkdir()
    for name in SCANNED_AT:
        shutil.copy(DEMO / name, uploads / name)
    lib = SignatureLibrary.create(tmp_path / "lib")
    for name, category in ((FLAG_A, "barrel"), (FLAG_B, "frame_or_receiver")):
        assert enrol(lib, DEMO / name, category, "test setup")[0].status == "added"
    lib.save()
    scanner_ = Scanner(library=tmp_path / "lib", model=None)
    store = ResultsStore(results_target, absolute_paths=True)
    for name, when in SCANNED_AT.items():
        (verdict,) = scanner_.scan(uploads / name)
        assert verdict.verdict == ("flag" if name in (FLAG_A, FLAG_B) else "clear")
        verdict = dataclasses.replace(verdict, scanned_at=when)
        if name == REVIEWED:  # as the classifier records a review verdict
            verdict = dataclasses.replace(verdict, verdict="review", category="slide_or_cylinder",
                                          scores={"slide_or_cylinder": 0.8, "benign": 0.2})  # fmt: skip
        st = os.stat(uploads / name)
        store.record(str(uploads / name), st.st_size, st.st_mtime_ns, [verdict])
    store.commit()
    store.close()
    monkeypatch.chdir(tmp_path)
    ids = {}
    listed = CliRunner().invoke(cli, ["review", results_target, "--verdict", "flag", "--verdict", "review",
                                      "--format", "jsonl"])  # fmt: skip
    for line in listed.stdout.splitlines():
        item = json.loads(line)
        ids[Path(item["path"]).name] = item["id"]
    steps = [
        ("2026-01-10T06:00:00+00:00", ["--decide", ids[FLAG_A], "confirm", "--by", REVIEWER, "--reason", "r"]),
        ("2026-01-21T00:00:00+00:00", ["--decide", ids[FLAG_B], "dismiss", "--by", REVIEWER, "--reason", "r"]),
        ("2026-02-01T00:00:00+00:00", ["--decide", ids[REVIEWED], "confirm", "--by", SECOND, "--reason", "r"]),
        ("2026-02-02T00:00:00+00:00", ["--appeal", ids[FLAG_A], "--by", APPELLANT, "--reason", "r"]),
        ("2026-02-05T00:00:00+00:00", ["--appeal", ids[FLAG_B], "--by", APPELLANT, "--reason", "r"]),
        ("2026-02-02T12:00:00+00:00", ["--decide-appeal", ids[FLAG_A], "--outcome", "overturned", "--by", SECOND,
                                       "--reason", "r"]),
        ("2026-03-05T00:00:00+00:00", ["--decide-appeal", ids[FLAG_B], "--outcome", "upheld", "--by", SECOND,
                                       "--reason", "r"]),
    ]  # fmt: skip
    for at, args in steps:
        monkeypatch.setattr("scanner.review.audit.utc_now", lambda at=at: at)
        result = CliRunner().invoke(cli, ["review", results_target, *args])
        assert result.exit_code == 0, result.output
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    return results_target


def _report(db: str, *args: str) -> tuple[str, dict, Path]:
    out = Path.cwd() / "report"  # the test's tmp_path
    result = CliRunner().invoke(cli, ["report", str(db), "--out", str(out), "--transparency", *args])
    assert result.exit_code == 0, result.output
    return result.stdout, json.loads((out / "summary.json").read_text()), out


def _counts(figures: dict) -> dict:
    keys = ("scanned", "flagged", "sent_to_review", "decided", "confirmed", "dismissed", "appealed",
            "appeal_outcomes", "upheld", "overturned", "median_hours_scan_to_decision",
            "median_hours_appeal_to_outcome")  # fmt: skip
    return {k: figures[k] for k in keys}


def test_monthly_figures_are_exact(db: str) -> None:
    text, summary, out = _report(db)
    doc = summary["transparency"]
    assert doc["period"] == "month"
    months = {p["period"]: p for p in doc["periods"]}
    assert list(months) == ["2026-01", "2026-02", "2026-03"]
    assert _counts(months["2026-01"]) == {
        "scanned": 4, "flagged": 2, "sent_to_review": 1, "decided": 2, "confirmed": 1, "dismissed": 1,
        "appealed": 0, "appeal_outcomes": 0, "upheld": 0, "overturned": 0,
        "median_hours_scan_to_decision": 15.0, "median_hours_appeal_to_outcome": None,
    }  # fmt: skip
    assert _counts(months["2026-02"]) == {
        "scanned": 2, "flagged": 0, "sent_to_review": 0, "decided": 1, "confirmed": 1, "dismissed": 0,
        "appealed": 2, "appeal_outcomes": 1, "upheld": 0, "overturned": 1,
        "median_hours_scan_to_decision": 168.0, "median_hours_appeal_to_outcome": 12.0,
    }  # fmt: skip
    assert _counts(months["2026-03"]) == {
        "scanned": 0, "flagged": 0, "sent_to_review": 0, "decided": 0, "confirmed": 0, "dismissed": 0,
        "appealed": 0, "appeal_outcomes": 1, "upheld": 1, "overturned": 0,
        "median_hours_scan_to_decision": None, "median_hours_appeal_to_outcome": 672.0,
    }  # fmt: skip
    total = doc["total"]
    assert _counts(total) == {
        "scanned": 6, "flagged": 2, "sent_to_review": 1, "decided": 3, "confirmed": 2, "dismissed": 1,
        "appealed": 2, "appeal_outcomes": 2, "upheld": 1, "overturned": 1,
        "median_hours_scan_to_decision": 24.0, "median_hours_appeal_to_outcome": 342.0,
    }  # fmt: skip
    # every rate with its Wilson interval
    assert total["rates"]["overturned"] == proportion(1, 2).to_dict()
    assert total["rates"]["flagged"] == proportion(2, 6).to_dict()
    assert months["2026-01"]["rates"]["appealed"] == proportion(2, 2).to_dict()  # both January decisions
    assert months["2026-03"]["rates"]["confirmed"]["estimate"] is None  # no decision: no rate
    rows = list(csv.DictReader((out / "transparency.csv").open()))
    assert [r["period"] for r in rows] == ["2026-01", "2026-02", "2026-03", "total"]
    lo, hi = proportion(1, 2).ci95
    assert float(rows[-1]["overturned_ci95_lo"]) == pytest.approx(lo, abs=1e-6)
    assert float(rows[-1]["overturned_ci95_hi"]) == pytest.approx(hi, abs=1e-6)
    assert rows[2]["confirmed_share"] == ""
    html = (out / "report.html").read_text()
    assert 'id="transparency"' in html and "Transparency: scans, decisions and appeals" in html
    assert "overturned 50.0% [" in text and "2026-02" in text
    total_line = next(line for line in text.splitlines() if line.startswith("total"))
    assert total_line.split() == ["total", "6", "2", "1", "3", "2", "1", "2", "1", "1", "24", "342"]


def test_no_path_hash_or_name_in_the_output(db: str) -> None:
    text, _, out = _report(db)
    with ResultsStore.open_readonly(db) as store:
        hashes = [sha for _, _, sha in store.keys() if sha]
    secrets = [str(Path.cwd()), "incoming-qx", *SCANNED_AT, REVIEWER, SECOND, APPELLANT, *hashes]
    for path in [*out.iterdir()]:
        content = path.read_text(encoding="utf-8")
        for secret in secrets:
            assert secret not in content, (path.name, secret)
    for secret in secrets:
        assert secret not in text


def test_weekly_and_quarterly_bins(db: str) -> None:
    _, summary, _ = _report(db, "--period", "week")
    weeks = {p["period"]: p for p in summary["transparency"]["periods"]}
    assert weeks["2026-W02"]["scanned"] == 2 and weeks["2026-W02"]["confirmed"] == 1  # Jan 5-11 is ISO week 2
    assert weeks["2026-W05"]["confirmed"] == 1  # Sunday Feb 1
    assert weeks["2026-W06"]["appealed"] == 2 and weeks["2026-W06"]["overturned"] == 1  # Feb 2-8
    result = subprocess.run(
        [sys.executable, "-m", "scanner.cli", "report", str(db), "--out", str(Path.cwd() / "q"), "--transparency",
         "--period", "quarter"],
        capture_output=True, text=True, timeout=300, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Transparency report per quarter (UTC; h = median hours)"
    assert lines[2].split() == ["2026-Q1", "6", "2", "1", "3", "2", "1", "2", "1", "1", "24", "342"]
    assert lines[3].split() == ["total", "6", "2", "1", "3", "2", "1", "2", "1", "1", "24", "342"]


def test_a_jsonl_log_has_no_audit_log(tmp_path: Path) -> None:
    log = tmp_path / "verdicts.jsonl"
    log.write_text(json.dumps({"path": "x.stl", "verdict": "clear"}) + "\n")
    result = CliRunner().invoke(cli, ["report", str(log), "--out", str(tmp_path / "r"), "--transparency"])
    assert result.exit_code == 3 and "[transparency-needs-db]" in result.output
