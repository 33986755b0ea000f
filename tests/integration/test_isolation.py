"""Isolated workers: a slow, a greedy and a crashing upload each lose only themselves."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scanner.batch import Upload
from scanner.engines.local import LocalPool as IsolatedPool
from scanner.engines.worker import FAULT_INJECTION_ENV
from scanner.library import SignatureLibrary
from scanner.pipeline import ScanContext
from tests.conftest import REPO

DEMO = REPO / "fixtures" / "demo"


def big_binary_stl(path: Path, triangles: int) -> Path:
    rng = np.random.default_rng(0)
    rec = np.zeros(triangles, dtype=[("n", "<f4", 3), ("v", "<f4", 9), ("a", "<u2")])
    rec["v"] = rng.random((triangles, 9), dtype=np.float32)
    path.write_bytes(b"\0" * 80 + np.uint32(triangles).tobytes() + rec.tobytes())
    return path


def uploads(*paths: Path) -> list[Upload]:
    return [Upload(str(p), str(p.parent)) for p in paths]


@pytest.fixture(scope="module")
def context() -> ScanContext:
    return ScanContext(library=SignatureLibrary.load(REPO / "signatures"))


def test_parallel_results_come_in_input_order_and_equal_serial(context: ScanContext) -> None:
    files = sorted(DEMO.glob("*.stl"))[:8] + sorted(DEMO.glob("*.obj"))[:4]
    serial = [(u.path, [v.verdict for v in vs]) for u, vs in IsolatedPool(context, 1, 60, None).scan(uploads(*files))]
    parallel = [(u.path, [v.verdict for v in vs]) for u, vs in IsolatedPool(context, 2, 60, None).scan(uploads(*files))]
    assert parallel == serial and [p for p, _ in serial] == [str(f) for f in files]


def test_slow_upload_hits_time_limit_and_the_run_goes_on(context: ScanContext, tmp_path: Path) -> None:
    slow = big_binary_stl(tmp_path / "slow.stl", 1_000_000)  # takes seconds to describe
    ok = DEMO / "benign-pipe-s1-002.stl"
    out = list(IsolatedPool(context, 1, 0.5, None).scan(uploads(slow, ok)))
    assert out[0][1][0].verdict == "unscannable" and out[0][1][0].reason == "limit:time"
    assert out[1][1][0].verdict == "clear"


def test_uploads_queued_behind_a_crash_are_scanned_in_order(
    context: ScanContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``scan`` keeps a second upload sent to each worker; when the worker dies on one, the
    uploads queued behind it go to its replacement and get their own verdicts, in order."""
    names = ["a.stl", "crash.stl", "b.stl", "c.stl", "d.stl"]
    sources = ["benign-pipe-s1-002.stl", "benign-pipe-s1-002.stl", "proxy-barrel-s1-000.stl",
               "benign-pipe-s1-002.stl", "proxy-barrel-s1-000.stl"]  # fmt: skip
    for name, source in zip(names, sources, strict=True):
        shutil.copy(DEMO / source, tmp_path / name)
    monkeypatch.setenv(FAULT_INJECTION_ENV, "crash:crash.stl")
    out = list(IsolatedPool(context, 1, 60, None).scan(uploads(*(tmp_path / n for n in names))))
    assert [Path(u.path).name for u, _ in out] == names
    assert [vs[0].verdict for _, vs in out] == ["clear", "unscannable", "flag", "clear", "flag"]
    assert out[1][1][0].reason == "worker-crashed"


def _vm_size() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmSize")


def test_greedy_upload_hits_memory_cap(context: ScanContext, tmp_path: Path) -> None:
    greedy = big_binary_stl(tmp_path / "greedy.stl", 3_000_000)  # ~108 MB of corners, more to describe
    small = DEMO / "proxy-barrel-s1-000.stl"
    cap = _vm_size() + 200 * 1024 * 1024
    out = list(IsolatedPool(context, 1, 120, cap).scan(uploads(greedy, small)))
    assert out[0][1][0].reason == "limit:memory"
    assert out[1][1][0].verdict == "flag"


def test_crashing_worker_loses_only_its_file(tmp_path: Path) -> None:
    crash = tmp_path / "crash.stl"
    shutil.copy(DEMO / "benign-pipe-s1-002.stl", crash)
    shutil.copy(DEMO / "proxy-barrel-s1-000.stl", tmp_path / "z-after.stl")
    env = dict(os.environ, **{FAULT_INJECTION_ENV: "crash:crash.stl"})
    command = [sys.executable, "-m", "scanner.cli", "scan", str(tmp_path), "--format", "jsonl", "--jobs", "2"]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    recs = {Path(r["path"]).name: r for r in map(json.loads, proc.stdout.splitlines())}
    assert recs["crash.stl"]["verdict"] == "unscannable" and recs["crash.stl"]["reason"] == "worker-crashed"
    assert recs["z-after.stl"]["verdict"] == "flag"
    assert proc.returncode == 1 and "Traceback" not in proc.stderr  # something flagged: 1 wins over the crash
