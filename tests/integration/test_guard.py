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


def test_children_run_one_blas_thread(guard) -> None:
    """Large files scale with --jobs only when each worker keeps to one core: the guarded
    child says how many BLAS/OpenMP threads it may use, and it is one."""
    pytest.importorskip("threadpoolctl", reason="threadpoolctl says how many BLAS threads a process runs")
    g = guard()
    assert g.scan(str(DEMO / "proxy-barrel-s1-000.stl"))[0].verdict == "flag"
    assert g.versions["blas_threads"] == 1


@pytest.fixture
def zygote():
    from scanner.engines.zygote import Zygote

    started = []

    def make(context: ScanContext) -> Zygote:
        started.append(Zygote(context))
        started[-1].start()
        return started[-1]

    yield make
    for z in started:
        z.close()
        assert not os.path.exists(z.path)  # its socket folder is gone with it


def test_a_zygote_child_scans_like_a_fresh_one_and_keeps_the_limits(guard, zygote, tmp_path: Path,
                                                                    monkeypatch) -> None:  # fmt: skip
    """A child forked from the loaded zygote: the same verdicts as scan_one, one BLAS thread,
    and a hanging or crashing file still loses only itself."""
    crash = tmp_path / "crash.stl"
    crash.write_bytes((DEMO / "benign-pipe-s1-002.stl").read_bytes())
    monkeypatch.setenv(FAULT_INJECTION_ENV, "crash:crash.stl")  # before the fork: the zygote's children see it
    context = ScanContext(library=SignatureLibrary.load(REPO / "signatures"))
    z = zygote(context)
    g = guard(timeout_s=0.3)
    g.zygote = z.path
    files = sorted(DEMO.glob("proxy-*"))[:4]
    g.timeout_s = 60
    for f in files:
        got, want = g.scan(str(f)), scan_one(str(f), context)
        assert [(v.verdict, v.category, v.sha256) for v in got] == [(v.verdict, v.category, v.sha256) for v in want]
    assert g.proc is None and g.versions["pid"] != os.getpid()  # forked by the zygote, not started fresh
    assert g.versions["blas_threads"] in (1, None) and g.versions["library_version"] == context.library_version
    pid = g.versions["pid"]
    v = g.scan(str(crash))[0]
    assert (v.verdict, v.reason) == ("unscannable", "worker-crashed")
    assert g.scan(str(files[0]))[0].verdict == "flag" and g.versions["pid"] != pid  # a new child
    g.timeout_s = 0.3
    slow = big_binary_stl(tmp_path / "slow.stl", 1_000_000)
    pid = g.versions["pid"]
    v = g.scan(str(slow))[0]
    assert (v.verdict, v.reason) == ("unscannable", "limit:time")
    with pytest.raises(ProcessLookupError):  # the late child was killed
        for _ in range(100):
            os.kill(pid, 0)
            __import__("time").sleep(0.05)
    g.timeout_s = 60
    assert g.scan(str(files[0]))[0].verdict == "flag"


def test_a_guard_whose_zygote_is_gone_starts_a_fresh_child(guard, zygote) -> None:
    context = ScanContext(library=SignatureLibrary.load(REPO / "signatures"))
    z = zygote(context)
    path = z.path
    z.close()
    g = guard()
    g.zygote = path
    assert g.scan(str(DEMO / "proxy-barrel-s1-000.stl"))[0].verdict == "flag"
    assert g.proc is not None  # a fresh python child


def _forked_blas_threads(conn) -> None:
    from scanner.engines.worker import blas_threads, one_blas_thread

    one_blas_thread()
    conn.send(blas_threads())


def test_a_forked_worker_drops_the_parents_blas_threads() -> None:
    """The local engine's workers are forked from a parent whose BLAS already started its
    threads (the environment cannot help there): the worker limits them to one itself."""
    threadpoolctl = pytest.importorskip("threadpoolctl", reason="threadpoolctl says how many BLAS threads run")
    import multiprocessing

    with threadpoolctl.threadpool_limits(limits=2):  # the parent as a machine with 2+ cores starts it
        mp = multiprocessing.get_context("fork")
        parent, child = mp.Pipe()
        proc = mp.Process(target=_forked_blas_threads, args=(child,))
        proc.start()
        assert parent.poll(60)
        assert parent.recv() == 1
        proc.join(10)


def test_the_cpu_of_a_zygotes_children_is_counted_in_this_process(guard, zygote) -> None:
    """The zygote reaps its children and, asked to stop, exits by itself: what they used is in
    this process's RUSAGE_CHILDREN, as a local worker's is (bench/throughput.py reads it)."""
    import resource

    import psutil

    def children_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    before = children_cpu()
    z = zygote(ScanContext(library=SignatureLibrary.load(REPO / "signatures")))
    g = guard()
    g.zygote = z.path
    for f in sorted(DEMO.glob("proxy-*"))[:6]:
        assert g.scan(str(f))[0].verdict in ("flag", "review", "clear")
    child_times = psutil.Process(int(g.versions["pid"])).cpu_times()
    used = child_times.user + child_times.system
    assert used > 0
    process = z._process
    g.close()
    z.close()
    assert process is not None and process.exitcode == 0  # it stopped itself, not killed
    assert children_cpu() - before >= used


FAULTS = [("crash", "worker-crashed", 60.0), ("hang", "limit:time", 2.0)]


@pytest.mark.parametrize(("fault", "reason", "timeout_s"), FAULTS)
def test_files_sent_behind_a_lost_one_are_scanned_by_the_next_child(
    guard, zygote, tmp_path: Path, monkeypatch, fault: str, reason: str, timeout_s: float
) -> None:
    """scan_wire sends the next path before the child answers the current one: when the
    current file crashes the child or runs out of time, only it is lost, and the file already
    sent behind it is scanned by the next child, in order."""
    from scanner.engines.messages import from_wire

    bad = tmp_path / "bad.stl"
    bad.write_bytes((DEMO / "benign-pipe-s1-002.stl").read_bytes())
    monkeypatch.setenv(FAULT_INJECTION_ENV, f"{fault}:bad.stl")  # before the zygote forks
    context = ScanContext(library=SignatureLibrary.load(REPO / "signatures"))
    z = zygote(context)
    files = [*sorted(DEMO.glob("proxy-*"))[:2], bad, *sorted(DEMO.glob("benign-*"))[:2]]
    g = guard(timeout_s=timeout_s)
    g.zygote = z.path
    got = [from_wire(records) for records in g.scan_wire([str(f) for f in files])]
    assert len(got) == len(files) and all(len(vs) == 1 for vs in got)
    for f, (v,) in zip(files, got, strict=True):
        if f == bad:
            assert (v.verdict, v.reason) == ("unscannable", reason) and v.path == str(bad)
        else:
            (want,) = scan_one(str(f), context)
            assert (v.path, v.verdict, v.category, v.sha256) == (want.path, want.verdict, want.category, want.sha256)


def _slow_hello_zygote(folder: Path, hello_after_s: float, children: list) -> str:
    """A stand-in zygote that forks a child which takes ``hello_after_s`` to say hello (a
    loaded machine): the child is a sleeping process that never scans."""
    import socket
    import subprocess
    import sys
    import threading
    import time

    path = str(folder / "z.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        children.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"]))
        time.sleep(hello_after_s)
        conn.sendall(json.dumps({"ready": True, "pid": children[-1].pid}).encode() + b"\n")
        conn.recv(1 << 16)  # the task it is sent; it never answers
        time.sleep(60)

    threading.Thread(target=serve, daemon=True).start()
    return path


def test_a_stop_while_a_child_says_hello_kills_it_and_scans_nothing(guard, tmp_path: Path) -> None:
    """Ctrl-C of a Dask run lands while a guard's child is forked and has not yet said hello
    (its pid still unknown): the guard must kill that child as soon as it is named and lose
    the file at once - not send it the file and wait out the time limit (the run's exit waits)."""
    import threading
    import time

    from scanner.engines.messages import from_wire

    children: list = []
    g = guard(timeout_s=30)
    g.zygote = _slow_hello_zygote(tmp_path, 1.0, children)
    threading.Timer(0.3, g.stop).start()
    started = time.monotonic()
    (got,) = [from_wire(records) for records in g.scan_wire([str(DEMO / "proxy-barrel-s1-000.stl")])]
    took = time.monotonic() - started
    assert took < 10, took
    assert [v.verdict for v in got] == ["unscannable"]
    assert children[0].wait(10) == -9  # the child named after the stop was killed
