"""The guarded scanner (one child process per Dask worker): per-file time and memory limits
and crash containment where tasks cannot be interrupted - with real child processes."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from scanner.config import Settings
from scanner.context import ContextSpec
from scanner.engines.guarded import GuardedScanner
from scanner.engines.worker import FAULT_INJECTION_ENV
from scanner.library import SignatureLibrary
from scanner.pipeline import ScanContext, scan_one
from tests.conftest import REPO
from tests.integration.test_isolation import big_binary_stl

DEMO = REPO / "fixtures" / "demo"
SPEC = ContextSpec(str(REPO / "signatures"), json.dumps(dataclasses.asdict(Settings()), sort_keys=True))


@pytest.fixture
def guard():
    scanners: list[GuardedScanner] = []

    def make(timeout_s: float = 60, memory_bytes: int | None = None) -> GuardedScanner:
        scanners.append(GuardedScanner(SPEC, timeout_s, memory_bytes))
        return scanners[-1]

    yield make
    for g in scanners:
        g.close()


def test_same_verdicts_as_scan_one_and_one_child_for_many_files(guard) -> None:
    context = ScanContext(library=SignatureLibrary.load(REPO / "signatures"))
    g = guard()
    files = sorted(DEMO.glob("proxy-*"))[:6]
    for f in files:
        got = g.scan(str(f))
        want = scan_one(str(f), context)
        assert [(v.verdict, v.category, v.sha256) for v in got] == [(v.verdict, v.category, v.sha256) for v in want]
    pid = g.proc.pid
    g.scan(str(files[0]))
    assert g.proc.pid == pid  # the library was loaded once, in one child
    assert g.versions["library_version"] == context.library_version


def test_a_hanging_file_gets_limit_time_and_the_next_file_is_scanned(guard, tmp_path: Path) -> None:
    slow = big_binary_stl(tmp_path / "slow.stl", 1_000_000)
    g = guard(timeout_s=0.3)
    v = g.scan(str(slow))[0]
    assert (v.verdict, v.reason) == ("unscannable", "limit:time")
    assert v.library_version is not None  # failures still say which library would have judged
    assert g.proc is None  # killed, restarted on demand
    ok = guard(timeout_s=60).scan(str(DEMO / "benign-pipe-s1-002.stl"))[0]
    assert ok.verdict == "clear"


def test_a_greedy_file_gets_limit_memory(guard, tmp_path: Path) -> None:
    greedy = big_binary_stl(tmp_path / "greedy.stl", 3_000_000)
    probe = guard()
    probe.scan(str(DEMO / "proxy-barrel-s1-000.stl"))
    baseline = probe.versions["vm_bytes"]  # the child's own size once loaded, not this test process's
    g = guard(timeout_s=120, memory_bytes=baseline + 300 * 1024 * 1024)
    v = g.scan(str(greedy))[0]
    assert (v.verdict, v.reason) == ("unscannable", "limit:memory")
    assert g.scan(str(DEMO / "proxy-barrel-s1-000.stl"))[0].verdict == "flag"


def test_a_crashing_child_loses_only_its_file(guard, tmp_path: Path, monkeypatch) -> None:
    crash = tmp_path / "crash.stl"
    crash.write_bytes((DEMO / "benign-pipe-s1-002.stl").read_bytes())
    monkeypatch.setenv(FAULT_INJECTION_ENV, "crash:crash.stl")
    g = guard()
    v = g.scan(str(crash))[0]
    assert (v.verdict, v.reason) == ("unscannable", "worker-crashed")
    assert g.scan(str(DEMO / "proxy-barrel-s1-000.stl"))[0].verdict == "flag"
    assert os.environ[FAULT_INJECTION_ENV] == "crash:crash.stl"
