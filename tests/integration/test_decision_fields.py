"""The numbers that decided a verdict are record fields (issue 13, item 4): a real `scan --db`
with the shipped library and model writes ``review_score`` / ``review_threshold`` /
``distance_threshold`` consistent with ``scores`` and the verdict; `export --format csv` has
them as flat columns beside the best match; `meshscan report` reads them, states the same
thresholds the explanations state, and gives the same report when every explanation is junk."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from scanner.sinks.output import CSV_COLUMNS
from scanner.verdict import Verdict
from tests.conftest import REPO

DEMO = REPO / "fixtures" / "demo"
UPLOADS = (
    "proxy-barrel-s1-000.stl",  # flag (shipped library)
    "proxy-frame_or_receiver-s1-001.stl",  # review (shipped model)
    "benign-cup-s1-000.stl",  # clear
    "benign-pipe-s1-002.stl",
    "benign-handle-s1-000.stl",
)
# how the explanation words stated the thresholds: what the report parsed before these fields
REVIEW_WORDS = re.compile(r"review threshold (\d+(?:\.\d+)?)")
DISTANCE_WORDS = re.compile(r"within its threshold \(at most (\d+(?:\.\d+)?)\)")


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scanner.cli", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd or REPO)  # fmt: skip


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    base = tmp_path_factory.mktemp("decision-fields")
    up = base / "uploads"
    up.mkdir()
    for name in UPLOADS:
        shutil.copy(DEMO / name, up / name)
    (up / "broken.stl").write_bytes(b"solid x\nfacet normal 0 0 1\nouter loop\nvertex 0 0\n")
    db = base / "r.sqlite"
    proc = run("scan", str(up), "--format", "jsonl", "--jobs", "1", "--db", str(db))
    assert proc.returncode == 1, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert {r["verdict"] for r in records} == {"flag", "review", "clear", "unscannable"}
    return db, records


def test_records_carry_the_numbers_that_decided(scanned: tuple[Path, list[dict]]) -> None:
    _, records = scanned
    thresholds = set()
    for r in records:
        if r["verdict"] == "unscannable":
            assert r["review_score"] is None and r["review_threshold"] is None and r["distance_threshold"] is None
            continue
        assert r["scores"], r["path"]  # the shipped model scored every scannable file
        assert r["review_score"] == round(1 - r["scores"]["benign"], 4)
        assert 0.0 <= r["review_threshold"] <= 1.0 and r["distance_threshold"] > 0
        thresholds.add((r["review_threshold"], r["distance_threshold"]))
        if r["verdict"] == "review":
            assert r["review_score"] >= r["review_threshold"] and not r["matches"]
        elif r["verdict"] == "clear":
            assert r["review_score"] < r["review_threshold"] and not r["matches"]
        else:
            assert r["matches"] and all(m["threshold"] <= r["distance_threshold"] for m in r["matches"])
            assert r["matches"][0]["distance"] <= r["matches"][0]["threshold"]
        if r["verdict"] in ("review", "clear"):  # the words say what the fields hold
            assert float(REVIEW_WORDS.search(r["explanation"]).group(1)) == round(r["review_threshold"], 2)
            assert float(DISTANCE_WORDS.search(r["explanation"]).group(1)) == r["distance_threshold"]
    assert len(thresholds) == 1  # one scan, one setting


def test_old_records_without_the_fields_still_load(scanned: tuple[Path, list[dict]]) -> None:
    _, records = scanned
    for r in records:
        old = {k: v for k, v in r.items() if k not in ("review_score", "review_threshold", "distance_threshold")}
        v = Verdict.from_dict(old)
        assert v.review_score is None and v.review_threshold is None and v.distance_threshold is None
        assert Verdict.from_dict(r).to_dict() == r


def test_export_csv_has_flat_decision_columns(scanned: tuple[Path, list[dict]], tmp_path: Path) -> None:
    db, records = scanned
    proc = run("export", str(db), "--format", "csv", "--out", str(tmp_path / "all.csv"))
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO((tmp_path / "all.csv").read_text(encoding="utf-8"))))
    assert list(rows[0]) == list(CSV_COLUMNS) and len(rows) == len(records)
    by_file = {Path(r["path"]).name: r for r in records}
    for row in rows:
        rec = by_file[Path(row["path"]).name]
        for col in ("review_score", "review_threshold", "distance_threshold"):
            assert row[col] == ("" if rec[col] is None else str(rec[col])), col
        best = rec["matches"][0] if rec["matches"] else None
        assert row["best_match"] == (best["signature_id"] if best else "")
        assert row["best_distance"] == (str(best["distance"]) if best else "")
        assert row["best_threshold"] == (str(best["threshold"]) if best else "")
        assert row["best_kind"] == (best["kind"] if best else "")
        assert json.loads(row["scores"] or "{}") == rec["scores"]  # the JSON cells stay beside them
    assert any(r["best_kind"] for r in rows) and any(r["verdict"] == "review" and r["review_score"] for r in rows)


def report_files(out: Path) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(out.iterdir()) if p.suffix in (".csv", ".json")}


def test_report_reads_fields_never_the_explanation(scanned: tuple[Path, list[dict]], tmp_path: Path) -> None:
    db, records = scanned
    proc = run("report", str(db), "--out", str(tmp_path / "a"), "--include-paths")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    # the same thresholds the explanations state, i.e. what the report showed before the fields
    said_review = {float(m.group(1)) for r in records if (m := REVIEW_WORDS.search(r["explanation"]))}
    said_distance = {float(m.group(1)) for r in records if (m := DISTANCE_WORDS.search(r["explanation"]))}
    review = summary["thresholds"]["review"]
    assert review["source"] == "records" and {round(t, 2) for t in review["values"]} == said_review
    assert summary["thresholds"]["distance"]["values"] == sorted(said_distance)
    assert summary["thresholds"]["distance"]["source"] == "records"
    items = list(csv.DictReader(io.StringIO((tmp_path / "a" / "items.csv").read_text(encoding="utf-8"))))
    expect = {Path(r["path"]).name: r for r in records if r["verdict"] in ("flag", "review")}
    assert {Path(i["path"]).name for i in items} == set(expect)
    for item in items:
        rec = expect[Path(item["path"]).name]
        assert float(item["review_score"]) == rec["review_score"]
        assert item["best_match"] == (rec["matches"][0]["signature_id"] if rec["matches"] else "")

    junk = tmp_path / "junk.sqlite"
    shutil.copy(db, junk)
    with sqlite3.connect(junk) as conn:
        conn.execute(
            "UPDATE results SET record = json_set(record, '$.explanation', "
            "'review threshold 0.01; no signature within its threshold (at most 9.9) 0.99')"
        )
    proc = run("report", str(junk), "--out", str(tmp_path / "b"), "--include-paths")
    assert proc.returncode == 0, proc.stderr
    a, b = report_files(tmp_path / "a"), report_files(tmp_path / "b")
    assert a.keys() == b.keys() and "items.csv" in a
    for name in a:
        if name == "items.csv":  # its explanation column is shown to people, not read
            strip = [row[:-1] for row in csv.reader(io.StringIO(a[name]))]
            assert strip == [row[:-1] for row in csv.reader(io.StringIO(b[name]))]
            assert next(csv.reader(io.StringIO(a[name])))[-1] == "explanation"
        elif name == "summary.json":
            sa, sb = json.loads(a[name]), json.loads(b[name])
            sa.pop("generated_at"), sb.pop("generated_at")  # the one figure that is a time
            assert sa == sb
        else:
            assert a[name] == b[name], name
