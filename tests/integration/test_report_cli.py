"""``meshscan report`` on a results DB made by really scanning the fixtures: the figures in
summary.json and the CSVs agree with the DB, the HTML is self-contained, its images are real
PNGs, and nothing identifying leaks without --include-paths."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from scanner.report.stats import wilson_interval
from tests.conftest import REPO

DEMO = REPO / "fixtures" / "demo"
CLI = [sys.executable, "-m", "scanner.cli"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Uploads in two 'uploader' folders plus loose files, an archive and broken files, scanned
    with the shipped library into a results DB and a JSONL log. Signature matching only, so
    this test does not hang on the shipped demo model being in step with the descriptor; the
    records then carry no scores, which the report must say rather than plot (the score plot
    from records with scores: tests/unit/test_report_figures.py)."""
    base = tmp_path_factory.mktemp("report")
    up = base / "uploads-root"
    (up / "uploader-alice").mkdir(parents=True)
    (up / "uploader-bob").mkdir()
    models = sorted(p for p in DEMO.iterdir() if p.suffix in (".stl", ".obj", ".3mf"))
    for i, src in enumerate(models):
        dest = up / ("uploader-alice" if i % 2 else "uploader-bob") / f"secret-{src.name}"
        shutil.copy(src, dest)
    shutil.copy(DEMO / "proxy-barrel-s1-000.stl", up / "loose-copy.stl")  # same content: copied verdicts
    with zipfile.ZipFile(up / "uploader-bob" / "bundle.zip", "w") as zf:
        zf.write(DEMO / "proxy-frame_or_receiver-s1-001.stl", "inner/part.stl")
        zf.writestr("inner/texture.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    data = (DEMO / "benign-pipe-s1-002.stl").read_bytes()
    (up / "uploader-alice" / "cut.stl").write_bytes(data[: len(data) // 2])
    (up / "uploader-alice" / "blank.obj").write_bytes(b"# exported with nothing in it\n")
    db, log = base / "results.sqlite", base / "verdicts.jsonl"
    proc = subprocess.run(
        [*CLI, "scan", str(up), "--db", str(db), "--format", "jsonl", "--out", str(log), "--jobs", "2", "--no-model"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 1, proc.stderr  # flagged: 1 wins over the unreadable files
    assert db.is_file() and log.is_file(), proc.stderr
    out = base / "report"
    proc = subprocess.run([*CLI, "report", str(db), "--out", str(out)], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    return {"base": base, "uploads": up, "db": db, "log": log, "out": out}


def db_records(db: Path) -> list[tuple[dict, int | None]]:
    with sqlite3.connect(db) as conn:
        return [(json.loads(r), m) for r, m in conn.execute("SELECT record, mtime_ns FROM results")]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_summary_matches_the_database(scanned: dict[str, Path]) -> None:
    summary = json.loads((scanned["out"] / "summary.json").read_text())
    with sqlite3.connect(scanned["db"]) as conn:
        counts = dict(conn.execute("SELECT verdict, COUNT(*) FROM results GROUP BY verdict").fetchall())
        total = conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    assert summary["verdicts"] == {v: counts.get(v, 0) for v in ("flag", "review", "clear", "unscannable")}
    assert summary["results"] == total and summary["verdicts"]["flag"] >= 6 and summary["verdicts"]["unscannable"] >= 3
    n = total - counts.get("unscannable", 0)
    for verdict in ("flag", "review"):
        p = summary["prevalence"][verdict]
        k = counts.get(verdict, 0)
        assert p["k"] == k and p["n"] == n and p["method"] == "wilson"
        assert p["estimate"] == pytest.approx(k / n)
        assert p["ci95"] == pytest.approx(list(wilson_interval(k, n)))
    records = [r for r, _ in db_records(scanned["db"])]
    versions = summary["versions"]
    assert versions["scanner"] == dict(Counter(r["scanner_version"] for r in records))
    assert versions["library"] == dict(Counter(r["library_version"] for r in records))
    assert versions["model"] == dict(Counter(r["model_version"] or "(none)" for r in records))
    assert summary["source"]["copied_results"] == sum(1 for r in records if r.get("copied_from"))
    assert summary["time"]["scanned_at"][0] <= summary["time"]["scanned_at"][1]
    assert summary["folders"]["folders"] == 3  # alice, bob and the root's loose file


def test_csv_tables_match_the_database(scanned: dict[str, Path]) -> None:
    out, rows = scanned["out"], db_records(scanned["db"])
    records = [r for r, _ in rows]
    by_format = {r["format"]: r for r in read_csv(out / "by_format.csv")}
    expect = Counter((r.get("format") or "(unknown)", r["verdict"]) for r in records)
    for fmt, row in by_format.items():
        for verdict in ("flag", "review", "clear", "unscannable"):
            assert int(row[verdict]) == expect[(fmt, verdict)], (fmt, verdict)
    assert sum(int(r["results"]) for r in by_format.values()) == len(records)
    reasons = {r["reason"]: int(r["results"]) for r in read_csv(out / "unscannable_by_reason.csv")}
    assert reasons == dict(Counter(r["reason"] for r in records if r["verdict"] == "unscannable"))
    assert {"truncated", "empty", "not-a-model"} <= set(reasons)
    sigs = {r["signature_id"]: int(r["results"]) for r in read_csv(out / "top_signatures.csv")}
    expect_sigs = Counter(s for r in records for s in {m["signature_id"] for m in r["matches"]})
    assert sigs == dict(expect_sigs) and len(sigs) == 6
    over = read_csv(out / "over_time.csv")
    assert sum(int(r["results"]) for r in over) == len(records)
    assert sum(int(r["flag"]) for r in over) == sum(r["verdict"] == "flag" for r in records)
    cats = {r["category"]: int(r["total"]) for r in read_csv(out / "verdicts_by_category.csv")}
    assert cats == dict(Counter(r["category"] for r in records if r["verdict"] in ("flag", "review")))
    scores = read_csv(out / "score_distribution.csv")
    with_scores = sum(1 for r in records if any(c != "benign" for c in r["scores"]))
    assert sum(int(r[v]) for r in scores for v in ("flag", "review", "clear")) == with_scores


def test_html_is_self_contained_with_real_images(scanned: dict[str, Path]) -> None:
    html = (scanned["out"] / "report.html").read_text(encoding="utf-8")
    images = re.findall(r'<img src="([^"]+)"', html)
    assert len(images) >= 5
    for src in images:
        assert src.startswith("data:image/png;base64,")
        png = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert png.startswith(PNG_MAGIC) and len(png) > 5_000
        width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")  # IHDR
        assert width >= 300 and height >= 150
        from PIL import Image

        with Image.open(io.BytesIO(png)) as im:
            im.verify()  # checks every chunk's CRC
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)
    assert not re.search(r"(?:https?|ftp):|//[a-z0-9.-]+\.[a-z]{2,}/|\burl\(|@import|<script|<link", text, re.I)
    assert "Prevalence of <b>flag</b>" in text and "Methods" in text and "Wilson" in text
    assert "No record carries classifier scores" in text


def test_no_paths_or_hashes_without_include_paths(scanned: dict[str, Path]) -> None:
    records = [r for r, _ in db_records(scanned["db"])]
    secrets = {
        "uploader-alice",
        "uploader-bob",
        "secret-",
        "uploads-root",
        "bundle.zip",
        "inner/part.stl",
        str(scanned["base"]),
    } | {r["sha256"] for r in records if r.get("sha256")}
    secrets |= {r["geometry_hash"] for r in records if r.get("geometry_hash")}
    for path in scanned["out"].iterdir():
        text = path.read_text(encoding="utf-8")
        text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)
        leaked = [s for s in secrets if s in text]
        assert not leaked, (path.name, leaked[:3])

    out = scanned["base"] / "with-paths"
    proc = subprocess.run(
        [*CLI, "report", str(scanned["db"]), "--out", str(out), "--include-paths"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    folders = {r["folder"] for r in read_csv(out / "by_folder.csv")}
    assert folders == {"uploader-alice", "uploader-bob", "(root)"}
    items = read_csv(out / "items.csv")
    assert {r["path"] for r in items} == {r["path"] for r in records if r["verdict"] in ("flag", "review")}
    assert "uploader-alice" in (out / "report.html").read_text(encoding="utf-8")


def test_jsonl_log_gives_the_same_figures_and_refuses_mtime(scanned: dict[str, Path]) -> None:
    out = scanned["base"] / "from-log"
    proc = subprocess.run(
        [*CLI, "report", str(scanned["log"]), "--out", str(out)], capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr
    a = json.loads((scanned["out"] / "summary.json").read_text())
    b = json.loads((out / "summary.json").read_text())
    assert a["verdicts"] == b["verdicts"] and a["prevalence"] == b["prevalence"]
    assert b["source"]["kind"] == "jsonl" and b["time"]["mtime"] is None
    proc = subprocess.run(
        [*CLI, "report", str(scanned["log"]), "--out", str(out), "--time-field", "mtime"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 3 and "[no-mtime]" in proc.stderr and "Traceback" not in proc.stderr


def test_mtime_axis_and_extra_tables_in_the_db(scanned: dict[str, Path]) -> None:
    """A watch --state DB has the same results table plus its own tables; mtime bins work."""
    db = scanned["base"] / "state.sqlite"
    shutil.copy(scanned["db"], db)
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE journal (path TEXT, state TEXT)")
        conn.execute("INSERT INTO journal VALUES ('x', 'done')")
    out = scanned["base"] / "mtime"
    proc = subprocess.run(
        [*CLI, "report", str(db), "--out", str(out), "--time-field", "mtime", "--period", "day"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["time"]["field"] == "mtime" and summary["time"]["mtime"] is not None
    rows = db_records(db)
    assert summary["time"]["undated"] == sum(1 for _, m in rows if m is None)
    assert sum(int(r["results"]) for r in read_csv(out / "over_time.csv")) == len(rows)


def test_top_signatures_count_every_match_kind(tmp_path: Path) -> None:
    """A results DB holding an exact, a stretched and a local flag (a proxy fused to a plate):
    each lands in its own column of top_signatures, and the kind columns add up to results."""
    from tests.integration._local_copies import PROXY, local_copy
    from tests.integration.test_stretched_copies import stretched_file

    up = tmp_path / "uploads"
    up.mkdir()
    shutil.copy(PROXY, up / "exact.stl")
    local_copy(up / "fused.stl")
    shutil.move(stretched_file(tmp_path, PROXY.name, 1.2), up / "stretched.stl")
    db, out = tmp_path / "results.sqlite", tmp_path / "report"
    scan = subprocess.run([*CLI, "scan", str(up), "--db", str(db), "--no-model", "--jobs", "1"],
                          capture_output=True, text=True, timeout=240)  # fmt: skip
    assert scan.returncode == 1, scan.stderr
    kinds = sorted(r["matches"][0]["kind"] for r, _ in db_records(db))
    assert kinds == ["local", "sha256", "stretched"]
    proc = subprocess.run([*CLI, "report", str(db), "--out", str(out)], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    (row,) = read_csv(out / "top_signatures.csv")
    assert list(row) == ["signature_id", "category", "results", "exact", "near_duplicate", "stretched", "local",
                         "median_distance"]  # fmt: skip
    counts = {k: int(row[k]) for k in ("results", "exact", "near_duplicate", "stretched", "local")}
    assert counts == {"results": 3, "exact": 1, "near_duplicate": 0, "stretched": 1, "local": 1}
    html = (out / "report.html").read_text(encoding="utf-8")
    table = html[html.index('<section id="signatures">') :]
    table = table[: table.index("</section>")]
    headers = re.findall(r'<th scope="col">([^<]+)</th>', table)
    assert headers == ["signature id", "category", "results", "exact", "near duplicate", "stretched", "local",
                       "median distance"]  # fmt: skip
    assert "the kind columns add up to results" in table
