"""``scan --resume`` speaks for every file under the scanned roots (issue 13, item 5): files
skipped as unchanged are counted from their recorded results, so the summary line counts them
and a flag recorded by an earlier run still makes the exit code 1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

DEMO = REPO / "fixtures" / "demo"
SCAN = [sys.executable, "-m", "scanner.cli", "scan", "--no-model", "--jobs", "1", "--format", "jsonl"]
FLAGGED = "proxy-barrel-s1-000.stl"  # enrolled in the shipped library
CLEAR = ("benign-cup-s1-000.stl", "benign-pipe-s1-002.stl")


def scan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SCAN, *args], capture_output=True, text=True, timeout=300)


def test_resume_summary_and_exit_code_cover_recorded_results(tmp_path: Path) -> None:
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    for name in (FLAGGED, CLEAR[0]):
        shutil.copy(DEMO / name, uploads / name)
    db = str(tmp_path / "results.sqlite")
    first = scan(str(uploads), "--db", db)
    assert first.returncode == 1, first.stderr
    assert "2 file(s), 2 result(s): 1 flagged, 0 review, 1 clear" in first.stderr

    shutil.copy(DEMO / CLEAR[1], uploads / CLEAR[1])  # a new, clear file
    again = scan(str(uploads), "--db", db, "--resume")
    (new,) = [json.loads(line) for line in again.stdout.splitlines()]  # only the new file is scanned
    assert new["path"] == str(uploads / CLEAR[1]) and new["verdict"] == "clear"
    assert "3 file(s), 3 result(s): 1 flagged, 0 review, 2 clear, 0 unscannable" in again.stderr
    assert "2 unchanged file(s) skipped (--resume), counted from their recorded results" in again.stderr
    assert again.returncode == 1, again.stderr  # the flag recorded by the first run

    # another spelling of the same root (relative, from elsewhere): the same files, the same answer
    relative = subprocess.run([*SCAN, "uploads", "--db", db, "--resume"], capture_output=True, text=True,
                              timeout=300, cwd=tmp_path)  # fmt: skip
    assert relative.returncode == 1 and relative.stdout == ""
    assert "3 file(s), 3 result(s): 1 flagged, 0 review, 2 clear" in relative.stderr


def test_resume_counts_only_files_still_under_the_root(tmp_path: Path) -> None:
    """A flagged file deleted since its scan no longer speaks: the walk decides which recorded
    results count, so removing a file clears the exit code."""
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    for name in (FLAGGED, *CLEAR):
        shutil.copy(DEMO / name, uploads / name)
    db = str(tmp_path / "results.sqlite")
    assert scan(str(uploads), "--db", db).returncode == 1
    os.remove(uploads / FLAGGED)
    again = scan(str(uploads), "--db", db, "--resume")
    assert again.returncode == 0, again.stderr
    assert "2 file(s), 2 result(s): 0 flagged, 0 review, 2 clear" in again.stderr and again.stdout == ""
