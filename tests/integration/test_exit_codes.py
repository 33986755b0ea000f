"""Exit codes through the real command for the commands beside ``scan`` that share its table
(``scan`` itself: tests/integration/test_cli_scan.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

DEMO = REPO / "fixtures" / "demo"
MESHSCAN = [sys.executable, "-m", "scanner.cli"]
PROXY = DEMO / "proxy-barrel-s1-000.stl"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MESHSCAN, *args], capture_output=True, text=True, timeout=180)


def test_watch_once_found_wins_over_unreadable(tmp_path: Path) -> None:
    up = tmp_path / "up"
    up.mkdir()
    (up / "cut.stl").write_bytes(PROXY.read_bytes()[:300])
    args = ("--once", "--no-model", "--jobs", "1", "--settle", "0")
    only_broken = run("watch", str(up), "--state", str(tmp_path / "a.sqlite"), *args)
    assert only_broken.returncode == 2, only_broken.stderr
    shutil.copy(PROXY, up / "part.stl")
    mixed = run("watch", str(up), "--state", str(tmp_path / "b.sqlite"), *args)
    assert mixed.returncode == 1, mixed.stderr
    no_library = run("watch", str(up), "--state", str(tmp_path / "c.sqlite"), *args, "--library", str(tmp_path))
    assert no_library.returncode == 3 and "Traceback" not in no_library.stderr


def test_inspect_unreadable_is_2_bad_config_is_3(tmp_path: Path) -> None:
    (tmp_path / "cut.stl").write_bytes(PROXY.read_bytes()[:300])
    assert run("inspect", str(PROXY)).returncode == 0
    assert run("inspect", str(PROXY), str(tmp_path / "cut.stl")).returncode == 2
    (tmp_path / "bad.toml").write_text("[limits]\nmax_bogus = 1\n")
    assert run("inspect", str(PROXY), "--config", str(tmp_path / "bad.toml")).returncode == 3


def test_signatures_verify_and_remove(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    shutil.copytree(REPO / "signatures", lib)
    assert run("signatures", "verify", "--library", str(lib)).returncode == 0
    assert run("signatures", "remove", "no-such-id", "--library", str(lib)).returncode == 2
    (lib / "signatures.json").write_text("[]")
    broken = run("signatures", "verify", "--library", str(lib))
    assert broken.returncode == 3 and "FAILED" in broken.stderr
