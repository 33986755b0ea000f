"""`meshscan scan --move` and `meshscan watch --once --quarantine` as real processes, with
links planted in the quarantine: nothing is written outside it, the flagged upload lands inside
it with its sidecar next to it, and it leaves the upload folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.test_watch_daemon import PROXIES, build_exact_library

MESHSCAN = [sys.executable, "-m", "scanner.cli"]
FLAGGED = PROXIES[0]  # enrolled in the test library: an exact copy is flagged
BENIGN = REPO / "fixtures" / "demo" / "benign-pipe-s1-000.obj"


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_exact_library(tmp_path_factory.mktemp("qlinks") / "lib")


def plant(case: str, q: Path, outside: Path) -> None:
    """``dir-link``: the upload's folder name in the quarantine is a link out of it;
    ``dangling-file-link``: its file name is a link to a file that does not exist yet."""
    if case == "dir-link":
        (q / "user1").symlink_to(outside, target_is_directory=True)
    else:
        (q / "user1").mkdir()
        (q / "user1" / FLAGGED.name).symlink_to(outside / "written-through-the-link.stl")


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def check(case: str, tmp_path: Path, up: Path, q: Path, outside: Path) -> None:
    assert files_under(outside) == []  # nothing written outside the quarantine
    expected = q / "user1.1" / FLAGGED.name if case == "dir-link" else q / "user1" / (FLAGGED.name + ".1")
    assert expected.read_bytes() == FLAGGED.read_bytes()
    sidecar = json.loads(Path(str(expected) + ".meshscan.json").read_text())
    assert sidecar["verdicts"][0]["verdict"] == "flag" and sidecar["original_path"].endswith(f"user1/{FLAGGED.name}")
    assert not (up / "user1" / FLAGGED.name).exists()  # moved out of the upload folder
    assert (up / "user1" / "pipe.obj").exists()  # the clear file stays
    planted = q / "user1" if case == "dir-link" else q / "user1" / FLAGGED.name
    assert planted.is_symlink()  # left as it was
    written = {p.name for p in tmp_path.iterdir() if not p.name.startswith("state.sqlite")}  # the DB, its WAL
    assert written <= {"up", "q", "elsewhere", "v.jsonl"}, written


def uploads(tmp_path: Path) -> tuple[Path, Path, Path]:
    up, q, outside = tmp_path / "up", tmp_path / "q", tmp_path / "elsewhere"
    (up / "user1").mkdir(parents=True)
    q.mkdir()
    outside.mkdir()
    shutil.copy(FLAGGED, up / "user1" / FLAGGED.name)
    shutil.copy(BENIGN, up / "user1" / "pipe.obj")
    old = time.time() - 60  # settled: watch --once takes them at once
    for p in up.rglob("*"):
        os.utime(p, (old, old))
    return up, q, outside


@pytest.mark.parametrize("case", ["dir-link", "dangling-file-link"])
def test_scan_move_never_follows_a_planted_link(tmp_path: Path, library: Path, case: str) -> None:
    up, q, outside = uploads(tmp_path)
    plant(case, q, outside)
    proc = subprocess.run(
        [*MESHSCAN, "scan", str(up), "--move", str(q), "--library", str(library), "--no-model", "--format", "jsonl"],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # flagged, and quarantined without error
    assert "could not quarantine" not in proc.stderr and "Traceback" not in proc.stderr
    check(case, tmp_path, up, q, outside)


@pytest.mark.parametrize("case", ["dir-link", "dangling-file-link"])
def test_watch_quarantine_never_follows_a_planted_link(tmp_path: Path, library: Path, case: str) -> None:
    up, q, outside = uploads(tmp_path)
    plant(case, q, outside)
    args = [*MESHSCAN, "watch", str(up), "--once", "--quarantine", str(q), "--state", str(tmp_path / "state.sqlite"),
            "--log", str(tmp_path / "v.jsonl"), "--library", str(library), "--no-model", "--jobs", "1"]  # fmt: skip
    proc = subprocess.run(args, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 1, proc.stderr
    assert "action failed" not in proc.stderr and "Traceback" not in proc.stderr
    check(case, tmp_path, up, q, outside)
    again = subprocess.run(args, capture_output=True, text=True, timeout=240)  # nothing new, nothing moved twice
    assert again.returncode == 0, again.stderr
    check(case, tmp_path, up, q, outside)
