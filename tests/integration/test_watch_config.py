"""``meshscan watch --config FILE``: the daemon configured by a ``[watch]`` table alone behaves
as the same options given as flags, and a flag given on the command line overrides the file
(the precedence of every setting: flag, else file, else default)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.test_watch_daemon import DEMO, MESHSCAN, PROXIES, build_exact_library, verdict_lines


@pytest.fixture(scope="module")
def watch_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_exact_library(tmp_path_factory.mktemp("watchlib") / "lib")


def _uploads(root: Path) -> Path:
    """A flagged proxy in a subfolder, a benign shape and a file excluded by name, all old
    enough to be complete (so ``--once`` scans them)."""
    up = root / "up"
    (up / "a").mkdir(parents=True)
    shutil.copy(PROXIES[2], up / "a" / "p.stl")
    shutil.copy(DEMO / "benign-handle-s1-000.stl", up / "h.stl")
    shutil.copy(DEMO / "benign-handle-s1-000.stl", up / "skip-me.stl")
    old = time.time() - 60
    for p in up.rglob("*"):
        os.utime(p, (old, old))
    return up


def _toml(table: dict[str, object]) -> str:
    return "[watch]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in table.items())


def _outcome(root: Path, log: Path, proc: subprocess.CompletedProcess) -> tuple:
    """What a run did, independent of where it ran: exit code, verdicts by relative path,
    and the quarantine's files."""
    verdicts = sorted((Path(r["path"]).relative_to(root / "up").as_posix(), r["verdict"]) for r in verdict_lines(log))
    quarantined = sorted(p.relative_to(root / "q").as_posix() for p in (root / "q").rglob("*") if p.is_file())
    return proc.returncode, verdicts, quarantined


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*MESHSCAN, "watch", *args], capture_output=True, text=True, timeout=180, cwd=cwd)


def test_a_watch_table_alone_runs_the_daemon_as_the_same_flags_do(tmp_path: Path, watch_library: Path) -> None:
    by_flags, by_file = tmp_path / "flags", tmp_path / "file"
    for root in (by_flags, by_file):
        _uploads(root)
    flags = run(str(by_flags / "up"), "--once", "--quarantine", str(by_flags / "q"), "--state", "s.sqlite",
                "--log", "v.jsonl", "--exclude", "skip-*", "--library", str(watch_library), "--no-model",
                "--jobs", "1", "--settle", "0.5", "--act-on", "flagged", cwd=by_flags)  # fmt: skip
    cfg = by_file / "meshscan.toml"
    cfg.write_text(_toml({"dirs": [str(by_file / "up")], "quarantine": str(by_file / "q"), "state": "s.sqlite",
                          "log": "v.jsonl", "exclude": ["skip-*"], "library": str(watch_library), "no_model": True,
                          "jobs": 1, "settle": 0.5, "act_on": "flagged"}))  # fmt: skip
    from_file = run("--once", "--config", str(cfg), cwd=by_file)
    assert flags.returncode == 1, flags.stderr  # the proxy is flagged
    expected = (1, [("a/p.stl", "flag"), ("h.stl", "clear")], ["a/p.stl", "a/p.stl.meshscan.json"])
    assert _outcome(by_flags, by_flags / "v.jsonl", flags) == expected
    assert _outcome(by_file, by_file / "v.jsonl", from_file) == expected, from_file.stderr
    assert (by_file / "s.sqlite").exists() and not (by_file / "meshscan-watch.sqlite").exists()
    # the stopped line counts the file the [watch] exclude kept out, as --exclude's
    assert '"skipped": 1' in from_file.stderr and '"skipped": 1' in flags.stderr


def test_a_flag_overrides_the_file_and_the_file_the_default(tmp_path: Path, watch_library: Path) -> None:
    up = _uploads(tmp_path)
    cfg = tmp_path / "meshscan.toml"
    cfg.write_text(_toml({"dirs": [str(tmp_path / "elsewhere")], "log": "from-file.jsonl", "state": "s.sqlite",
                          "exclude": ["skip-*", "h.stl"], "library": str(watch_library), "no_model": True,
                          "jobs": 1}))  # fmt: skip
    proc = run(str(up), "--once", "--config", str(cfg), "--log", "from-flag.jsonl", "--exclude", "skip-*",
               cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert not (tmp_path / "from-file.jsonl").exists()  # --log replaced the file's log
    # DIR replaced the file's dirs, --exclude replaced its list (h.stl scanned), state came from the file
    names = sorted(Path(r["path"]).name for r in verdict_lines(tmp_path / "from-flag.jsonl"))
    assert names == ["h.stl", "p.stl"]
    assert (tmp_path / "s.sqlite").exists()
    # without --quarantine in either, the default action is report: nothing moved
    assert (up / "a" / "p.stl").exists()


def test_bad_watch_tables_stop_before_anything_runs(tmp_path: Path) -> None:
    (tmp_path / "up").mkdir()
    cfg = tmp_path / "c.toml"
    cfg.write_text("[watch]\nlog = 'v.jsonl'\n")
    proc = run("--once", "--config", str(cfg), cwd=tmp_path)
    assert proc.returncode == 3
    assert "Missing argument 'DIRS...' (or dirs in the [watch] table of --config)" in proc.stderr
    proc = run("--once", cwd=tmp_path)
    assert proc.returncode == 3 and "Missing argument 'DIRS...'" in proc.stderr
    cfg.write_text("[watch]\ndirs = ['up']\nsetle = 5\n")
    proc = run("--once", "--config", str(cfg), cwd=tmp_path)
    assert proc.returncode == 3 and "[bad-config] unknown setting watch.setle" in proc.stderr, proc.stderr
    cfg.write_text("[watch]\ndirs = ['up']\nsettle = -1\n")
    proc = run("--once", "--config", str(cfg), cwd=tmp_path)
    assert proc.returncode == 3 and "watch.settle must be a number >= 0, got -1" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "v.jsonl").exists() and not (tmp_path / "meshscan-watch.sqlite").exists()
