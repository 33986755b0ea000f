"""Every upload gets its verdict (issue 12, item 5): with the results database, identical
content is scanned once per run, and every path still gets its record, its row, its count and
its quarantine, whatever the order, the number of workers, or the fate of the original."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scanner.batch import Upload
from scanner.config import load_settings
from scanner.engines.local import LocalPool as IsolatedPool
from scanner.engines.worker import FAULT_INJECTION_ENV
from scanner.library import SignatureLibrary, shipped_library_path
from scanner.pipeline import ScanContext
from scanner.run import RunStats, scan_uploads
from scanner.store.results import ResultsStore
from tests.conftest import REPO

DEMO = REPO / "fixtures" / "demo"
CLI = [sys.executable, "-m", "scanner.cli", "scan"]
ENROLLED = DEMO / "proxy-barrel-s1-000.stl"  # in the shipped library: flagged
CONTENTS = [
    ENROLLED.read_bytes(),
    (DEMO / "benign-cup-s1-000.stl").read_bytes(),
    (DEMO / "benign-bracket-s1-001.stl").read_bytes(),
    b"solid nothing\nfacet normal 0 0 1\nouter loop\nvertex 0 0\n",  # corrupt: unscannable, with a sha256
]


def db_rows(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT path, verdict FROM results ORDER BY path").fetchall()


@pytest.fixture(scope="module")
def context() -> ScanContext:
    library = SignatureLibrary.load(shipped_library_path())
    return ScanContext(settings=load_settings(None, {}), library=library, model=None)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    picks=st.lists(st.integers(0, len(CONTENTS) - 1), min_size=1, max_size=8),
    order=st.randoms(use_true_random=False),
    jobs=st.sampled_from([1, 2]),
    crash_at=st.none() | st.integers(0, 7),
)
def test_every_path_gets_one_record_and_one_row(
    context: ScanContext, picks: list[int], order, jobs: int, crash_at: int | None
) -> None:
    """Any multiset of contents, any order, any --jobs, with or without a worker crashing on
    one of the files: one record per input path, one row per path, every path counted, the
    same verdict for the same bytes, and each distinct content scanned once."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = []
        for i, pick in enumerate(picks):
            name = "crash.stl" if i == crash_at else f"{i:02d}.stl"
            (root / name).write_bytes(CONTENTS[pick])
            paths.append(root / name)
        content_of = {str(p): pick for p, pick in zip(paths, picks, strict=True)}
        order.shuffle(paths)
        uploads = [Upload(str(p), tmp) for p in paths]
        db = ResultsStore(root / "r.sqlite")
        stats = RunStats()
        old = os.environ.get(FAULT_INJECTION_ENV)
        os.environ[FAULT_INJECTION_ENV] = "crash:crash.stl"  # read by the workers when they start
        try:
            pool = IsolatedPool(context, jobs, timeout_s=60, memory_bytes=None)
            out = list(scan_uploads(iter(uploads), pool, context, db, stats=stats))
        finally:
            db.close()
            if old is None:
                del os.environ[FAULT_INJECTION_ENV]
            else:
                os.environ[FAULT_INJECTION_ENV] = old
        given_paths = [u.path for u in uploads]
        assert Counter(u.path for u, _ in out) == Counter(given_paths)  # each exactly once
        assert all(len(verdicts) == 1 and verdicts[0].path == u.path for u, verdicts in out)
        rows = db_rows(root / "r.sqlite")
        assert sorted(p for p, _ in rows) == sorted(given_paths)  # one row per path, nothing else
        by_content: dict[int, set[tuple[str, str | None]]] = {}
        for u, (v,) in out:
            by_content.setdefault(content_of[u.path], set()).add((v.verdict, v.reason))
        assert all(len(outcomes) == 1 for outcomes in by_content.values()), by_content
        scanned = [u.path for u, (v,) in out if v.copied_from is None]
        assert len(scanned) == len(set(picks))  # each distinct content scanned once
        assert stats.copied == len(picks) - len(set(picks)) and stats.rescanned == 0
        if 0 in by_content and (crash_at is None or crash_at >= len(picks) or picks[crash_at] != 0):
            assert by_content[0] == {("flag", None)}


def _scan(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})  # fmt: skip


def _ten_uploads(tmp_path: Path) -> Path:
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    for i in range(8):
        (uploads / f"copy{i}.stl").write_bytes(CONTENTS[0])
    (uploads / "cup.stl").write_bytes(CONTENTS[1])
    (uploads / "bracket.stl").write_bytes(CONTENTS[2])
    return uploads


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_identical_copies_are_recorded_counted_and_quarantined(tmp_path: Path, jobs: str) -> None:
    """The issue's example: 8 identical copies and 2 other files gave 3 records of 10."""
    uploads = _ten_uploads(tmp_path)
    db, quarantine = tmp_path / "r.sqlite", tmp_path / "q"
    proc = _scan([str(uploads), "--db", str(db), "--jobs", jobs, "--format", "jsonl", "--copy", str(quarantine),
                  "--no-model"])  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # flagged
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert sorted(r["path"] for r in records) == sorted(str(p) for p in uploads.iterdir())
    assert sum(r["verdict"] == "flag" for r in records) == 8
    assert sum(r["copied_from"] is not None for r in records) == 7
    assert len(db_rows(db)) == 10
    assert "meshscan: 10 file(s), 10 result(s): 8 flagged" in proc.stderr
    assert "7 duplicate(s) by content not rescanned" in proc.stderr
    quarantined = sorted(p.name for p in quarantine.rglob("*.stl"))
    assert quarantined == [f"copy{i}.stl" for i in range(8)]
    assert len(list(quarantine.rglob("*.meshscan.json"))) == 8


def test_duplicates_of_a_crashed_original_get_its_verdict(tmp_path: Path) -> None:
    """The original's worker dies: its duplicates are neither lost nor scanned 7 more times."""
    uploads = _ten_uploads(tmp_path)
    db = tmp_path / "r.sqlite"
    proc = _scan([str(uploads), "--db", str(db), "--jobs", "1", "--format", "jsonl", "--no-model"],
                 env={FAULT_INJECTION_ENV: "crash:copy0.stl"})  # fmt: skip
    assert proc.returncode == 2, proc.stderr  # nothing flagged, 8 uploads unscannable
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(records) == 10 and len(db_rows(db)) == 10
    copies = [r for r in records if r["path"].startswith(str(uploads / "copy"))]
    assert all(r["verdict"] == "unscannable" and r["reason"] == "worker-crashed" for r in copies)
    assert sorted(r["copied_from"] or "" for r in copies) == [""] + [str(uploads / "copy0.stl")] * 7
