"""Results DB: resume after kill -9 scans every file exactly once; duplicates scanned once."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from scanner.store.backend import connect, is_postgres_url
from tests.conftest import REPO

DEMO = REPO / "fixtures" / "demo"
CLI = [sys.executable, "-m", "scanner.cli", "scan"]


def rows(db: Path | str) -> list[tuple[str, str]]:
    """Recorded (path, verdict) rows; none while the scan has not yet created its table."""
    if is_postgres_url(db):
        conn = connect(db, autocommit=True)
        try:
            if not conn.has_table("results"):
                return []
            return conn.execute("SELECT path, verdict FROM results ORDER BY path").fetchall()
        finally:
            conn.close()
    if not Path(db).exists():
        return []
    with sqlite3.connect(db) as conn:
        try:
            return conn.execute("SELECT path, verdict FROM results ORDER BY path").fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise


def test_kill_9_then_resume_records_every_file_once(tmp_path: Path, results_target: str) -> None:
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    sources = sorted(p for p in DEMO.iterdir() if p.suffix in (".stl", ".obj", ".3mf"))
    for i, src in enumerate(sources):
        shutil.copy(src, uploads / f"{i:03d}-{src.name}")
    db = results_target  # a SQLite file, then a PostgreSQL database
    first = subprocess.Popen([*CLI, str(uploads), "--db", str(db), "--jobs", "1", "--format", "jsonl"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and first.poll() is None:
            if rows(db):
                break
            time.sleep(0.05)
    finally:
        first.kill()  # SIGKILL: no cleanup (and never left running if the poll fails)
        first.wait()
    _assert_workers_exit(uploads)
    done_before = {p for p, _ in rows(db)}
    assert 0 < len(done_before) < len(sources), "the first run should have been stopped part-way"

    second = subprocess.run([*CLI, str(uploads), "--db", str(db), "--resume", "--format", "jsonl"],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    records = [json.loads(line) for line in second.stdout.splitlines()]
    rescanned = {r["path"] for r in records}
    # the exit code speaks for every file under the root, recorded before the kill or scanned now
    assert second.returncode == 1, second.stderr
    assert f"{len(sources)} file(s)" in second.stderr
    assert not rescanned & done_before  # nothing recorded was scanned again
    final = rows(db)
    assert sorted(p for p, _ in final) == sorted(str(p) for p in uploads.iterdir())  # each exactly once
    assert sum(v == "flag" for _, v in final) == 6


def _assert_workers_exit(uploads: Path) -> None:
    """Workers of a killed scan notice their parent is gone and exit within seconds."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        if str(uploads) not in ps:
            return
        time.sleep(0.2)
    raise AssertionError("worker processes outlived their killed parent")


def test_identical_content_is_scanned_once(tmp_path: Path, results_target: str) -> None:
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    for name in ("a.stl", "b.stl", "c.stl"):
        shutil.copy(DEMO / "proxy-barrel-s1-000.stl", uploads / name)
    db = results_target
    proc = subprocess.run([*CLI, str(uploads), "--db", str(db), "--format", "jsonl"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    recs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["copied_from"] for r in recs] == [None, str(uploads / "a.stl"), str(uploads / "a.stl")]
    assert all(r["verdict"] == "flag" for r in recs)
    assert "2 duplicate(s) by content not rescanned" in proc.stderr
    assert len(rows(db)) == 3


def test_resume_rescans_after_a_model_change(tmp_path: Path) -> None:
    """A verdict is only as current as the library and model behind it."""
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    for src in sorted(DEMO.glob("proxy-*"))[:4]:
        shutil.copy(src, uploads / src.name)
    db = tmp_path / "results.sqlite"

    def scan(*extra: str) -> list[dict]:
        proc = subprocess.run([*CLI, str(uploads), "--db", str(db), "--format", "jsonl", *extra],
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert proc.returncode in (0, 1), proc.stderr
        return [json.loads(line) for line in proc.stdout.splitlines()]

    assert len(scan("--no-model")) == 4
    assert scan("--no-model", "--resume") == []  # same versions: nothing to do
    with_model = scan("--resume")  # the shipped model is new to these rows
    assert len(with_model) == 4 and all(r["model_version"] for r in with_model)
    assert scan("--resume") == []
