"""The Dask engine on a real LocalCluster (2 worker processes) gives the local engine's verdicts,
for a folder and for an fsspec memory:// filesystem."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scanner.batch import iter_uploads
from scanner.engines.local import LocalPool as IsolatedPool
from scanner.library import SignatureLibrary
from scanner.pipeline import ScanContext
from tests.conftest import REPO

distributed = pytest.importorskip("distributed", reason="Dask is an optional extra: pip install 'meshscan[dask]'")
fsspec = pytest.importorskip("fsspec")

DEMO = REPO / "fixtures" / "demo"
LIBRARY = REPO / "signatures"
NAMES = sorted(p.name for p in DEMO.iterdir() if p.suffix in (".stl", ".obj", ".3mf"))[::3]


def summary(verdicts_by_upload) -> list[tuple[str, str, str | None, str | None]]:
    return [(Path(u.path).name, v.verdict, v.category, v.geometry_hash) for u, vs in verdicts_by_upload for v in vs]


@pytest.fixture(scope="module")
def local_result() -> list:
    context = ScanContext(library=SignatureLibrary.load(LIBRARY))
    uploads = [u for u in iter_uploads([str(DEMO)]) if Path(u.path).name in NAMES]
    return summary(IsolatedPool(context, 2, 120, None).scan(uploads))


@pytest.fixture
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c


def _populate_memory_fs(names: list[str], root: str) -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    for name in names:
        fs.pipe(f"/mem-uploads/{name}", (Path(root) / name).read_bytes())


def test_dask_engine_on_a_folder_and_on_memory_fs_matches_local(cluster, local_result) -> None:
    from scanner.engines.dask_engine import DaskEngine

    context = ScanContext(library=SignatureLibrary.load(LIBRARY))
    engine = DaskEngine(context, str(LIBRARY), cluster.scheduler_address, jobs=2)
    with engine:
        assert len(engine.client.scheduler_info()["workers"]) == 2
        folder = [u for u in iter_uploads([str(DEMO)]) if Path(u.path).name in NAMES]
        assert summary(engine.scan(folder)) == local_result
        # the memory filesystem lives in each process: fill the client's and every worker's
        _populate_memory_fs(NAMES, str(DEMO))
        engine.client.run(_populate_memory_fs, NAMES, str(DEMO))
        remote = list(iter_uploads(["memory://mem-uploads"]))
        assert [Path(u.path).name for u in remote] == NAMES
        assert summary(engine.scan(remote)) == local_result


def test_dask_engine_on_its_own_local_cluster_matches_local(local_result) -> None:
    """No scheduler given: the engine starts a LocalCluster whose workers fork their guarded
    children from the engine's loaded zygote; the verdicts are the local engine's."""
    from scanner.engines.dask_engine import DaskEngine

    context = ScanContext(library=SignatureLibrary.load(LIBRARY))
    folder = [u for u in iter_uploads([str(DEMO)]) if Path(u.path).name in NAMES]
    with DaskEngine(context, str(LIBRARY), None, jobs=2) as engine:
        assert engine._zygote is not None and Path(engine._zygote.path).exists()
        assert len(engine.client.scheduler_info()["workers"]) == 2
        assert summary(engine.scan(folder)) == local_result
        socket_path = engine._zygote.path
    assert not Path(socket_path).exists()


def test_cli_engine_dask_starts_a_local_cluster(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "scanner.cli", "scan", str(DEMO), "--engine", "dask", "--jobs", "2", "--format", "jsonl",
         "--db", str(tmp_path / "r.sqlite")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-2000:]
    recs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert sum(r["verdict"] == "flag" for r in recs) == 6 and len(recs) == len(list(DEMO.glob("*.*"))) - 1
    assert [r["path"] for r in recs] == sorted(r["path"] for r in recs)  # input order


def test_dask_engine_enforces_the_per_file_time_limit(cluster, tmp_path: Path) -> None:
    """A Dask task cannot be interrupted; the worker's guarded child can."""
    from scanner.batch import Upload
    from scanner.config import Limits, Settings
    from scanner.engines.dask_engine import DaskEngine
    from tests.integration.test_isolation import big_binary_stl

    slow = big_binary_stl(tmp_path / "slow.stl", 1_000_000)
    ok = DEMO / "proxy-barrel-s1-000.stl"
    context = ScanContext(settings=Settings(limits=Limits(max_seconds=0.5)), library=SignatureLibrary.load(LIBRARY))
    with DaskEngine(context, str(LIBRARY), cluster.scheduler_address, jobs=2) as engine:
        out = list(engine.scan([Upload(str(slow), str(tmp_path)), Upload(str(ok), str(DEMO))]))
    assert [(v.verdict, v.reason) for _, vs in out for v in vs] == [("unscannable", "limit:time"), ("flag", None)]


def test_small_files_share_a_task_and_big_or_remote_ones_do_not(tmp_path: Path) -> None:
    from scanner.batch import Upload
    from scanner.engines.dask_engine import BATCH_BYTES, batches

    small = []
    for i in range(3):
        (tmp_path / f"s{i:02d}.stl").write_bytes(b"x" * 1000)
        small.append(Upload(str(tmp_path / f"s{i:02d}.stl"), str(tmp_path)))
    big = tmp_path / "big.stl"
    big.write_bytes(b"x" * (BATCH_BYTES // 2 + 1))
    uploads = [*small, Upload(str(big), str(tmp_path)), Upload(str(big), str(tmp_path)),
               Upload("s3://bucket/a.stl", "s3://bucket"), Upload("s3://bucket/b.stl", "s3://bucket")]  # fmt: skip
    sizes = [len(b) for b in batches(uploads)]
    assert sizes == [4, 1, 1, 1]  # 3 small + 1 big; the second big alone; remote alone
    assert [u for b in batches(uploads) for u in b] == uploads  # nothing lost, order kept


@pytest.mark.parametrize("workers", [1, 2, 8])
def test_full_batches_then_a_tapered_tail(tmp_path: Path, workers: int) -> None:
    """A long listing goes in full tasks, and its last ones shrink (guided self-scheduling), so
    no worker idles behind another's full task at the end; nothing is lost or reordered."""
    from scanner.batch import Upload
    from scanner.engines.dask_engine import BATCH_FILES, TAIL_FILES, batches

    (tmp_path / "s.stl").write_bytes(b"x" * 1000)
    total = 6 * workers * BATCH_FILES + 5
    uploads = [Upload(str(tmp_path / "s.stl"), f"root{i}") for i in range(total)]
    out = list(batches(iter(uploads), workers))
    sizes = [len(b) for b in out]
    assert [u.root for b in out for u in b] == [u.root for u in uploads]
    assert sizes[: 3 * workers] == [BATCH_FILES] * (3 * workers)
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[-1] <= TAIL_FILES
    assert sum(s < BATCH_FILES for s in sizes) >= 3


def test_a_worker_thread_keeps_a_child_per_recent_run() -> None:
    """Runs with other settings may share a cluster: a worker thread keeps one guarded child
    per run, the most recent KEPT_GUARDS of them (children start on first use only)."""
    import dataclasses

    from scanner.config import Settings
    from scanner.context import ContextSpec, settings_json
    from scanner.engines import dask_engine

    specs = [ContextSpec(str(LIBRARY), settings_json(dataclasses.replace(Settings(), previews=bool(i % 2))), str(i))
             for i in range(dask_engine.KEPT_GUARDS + 1)]  # fmt: skip
    first = [dask_engine._guard(s) for s in specs[: dask_engine.KEPT_GUARDS]]
    assert dask_engine._guard(specs[0]) is first[0]  # reused, and now the most recent
    dask_engine._guard(specs[-1])  # one too many: the least recently used (specs[1]) goes
    kept = dask_engine._GUARDS.by_spec
    assert len(kept) == dask_engine.KEPT_GUARDS and (specs[1], None) not in kept and (specs[0], None) in kept
    assert all(g.proc is None for g in kept.values())  # nothing was started by keeping them


def test_its_own_cluster_contains_crashes_and_memory_hogs_and_leaves_no_child(tmp_path: Path, monkeypatch) -> None:
    """The engine's own LocalCluster runs its workers in this process, each scanning through a
    guarded child forked from the zygote: a file that crashes its child or exhausts the memory
    cap is that file's ``unscannable`` verdict, the files after it in the same task are still
    scanned, and when the engine exits no child of it is left running."""
    import psutil

    from scanner.batch import Upload
    from scanner.config import Limits, Settings
    from scanner.engines.dask_engine import DaskEngine
    from scanner.engines.worker import FAULT_INJECTION_ENV
    from tests.integration.test_isolation import big_binary_stl

    crash = tmp_path / "crash.stl"
    crash.write_bytes((DEMO / "benign-pipe-s1-002.stl").read_bytes())
    greedy = big_binary_stl(tmp_path / "greedy.stl", 3_000_000)
    monkeypatch.setenv(FAULT_INJECTION_ENV, "crash:crash.stl")  # before the zygote forks: its children see it
    me = psutil.Process()
    cap = me.memory_info().vms + 300 * 1024 * 1024  # the zygote's children start at this process's size
    settings = Settings(limits=Limits(max_memory_bytes=cap, max_seconds=120))
    context = ScanContext(settings=settings, library=SignatureLibrary.load(LIBRARY))
    ok = [DEMO / "proxy-barrel-s1-000.stl", DEMO / "benign-pipe-s1-002.stl"]
    paths = [crash, ok[0], greedy, ok[1]]
    before = {p.pid for p in me.children(recursive=True)}
    with DaskEngine(context, str(LIBRARY), None, jobs=2) as engine:
        out = list(engine.scan([Upload(str(p), str(p.parent)) for p in paths]))
        started = [p for p in me.children(recursive=True) if p.pid not in before]
    assert [Path(u.path).name for u, _ in out] == [p.name for p in paths]  # input order
    want = [("unscannable", "worker-crashed"), ("flag", None), ("unscannable", "limit:memory"), ("clear", None)]
    assert [(v.verdict, v.reason) for _, vs in out for v in vs] == want
    assert started  # the zygote and its children ...
    gone, alive = psutil.wait_procs(started, timeout=10)
    assert not alive  # ... all stopped with the engine


def test_cli_engine_dask_gives_the_golden_verdicts_byte_for_byte() -> None:
    """Every field of every record (scan time and versions aside) is the committed golden
    output of ``--jobs 1``: the in-process workers pass the children's records on unchanged."""
    from tests.integration.test_golden_verdicts import STRIPPED, assert_same, golden

    command = ["scan", "fixtures", "--engine", "dask", "--jobs", "2", "--format", "jsonl"]
    proc = subprocess.run([sys.executable, "-m", "scanner.cli", *command], capture_output=True, text=True, cwd=REPO,
                          timeout=600)  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    lines = []
    for line in proc.stdout.splitlines():
        record = json.loads(line)
        for key in STRIPPED:
            record.pop(key)
        lines.append(json.dumps(record, sort_keys=True))
    assert_same(lines, golden("fixtures.jsonl"), "meshscan scan fixtures/ --engine dask --jobs 2")


def _sigint_default() -> None:
    """In the child before exec: SIGINT back to its default action. A shell starts a background
    job (``pytest ... &`` in a script) with SIGINT ignored, the command inherits that, Python
    then installs no KeyboardInterrupt handler, and Ctrl-C does nothing - which is what
    "interrupted run did not stop" in such full-suite runs was (its stack: the main thread still
    waiting for results, never interrupted)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_an_interrupted_run_stops_at_once_not_after_its_running_files(tmp_path: Path) -> None:
    """Ctrl-C while a worker's child scans a file that never ends: the in-process cluster would
    wait for its running task on close, so the engine kills its children first and starts no
    other - the command ends in seconds, not after the 300 s time limit, and leaves no child."""
    import contextlib
    import os
    import signal
    import time

    import psutil

    from scanner.engines.worker import FAULT_INJECTION_ENV

    for name in NAMES[:4]:
        (tmp_path / name).write_bytes((DEMO / name).read_bytes())
    env = dict(os.environ, PYTHONFAULTHANDLER="1", **{FAULT_INJECTION_ENV: f"hang:{NAMES[0]}"})
    command = [sys.executable, "-m", "scanner.cli", "scan", str(tmp_path), "--engine", "dask", "--jobs", "2"]
    err = tmp_path / "stderr.txt"
    with open(err, "wb") as sink:  # Ctrl-C as a terminal sends it, even when these tests run as a background job
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=sink, preexec_fn=_sigint_default)
    me = psutil.Process(proc.pid)
    try:
        deadline = time.monotonic() + 120
        while len(me.children(recursive=True)) < 2 and time.monotonic() < deadline:  # the zygote and a child
            time.sleep(0.1)
        family = me.children(recursive=True)
        if len(family) < 2:  # say why: the command's own account and its processes' stacks
            with contextlib.suppress(psutil.Error):
                for p in [me, *family]:
                    p.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            raise AssertionError(
                f"the scan never forked its children (exit {proc.returncode}, processes {family}): "
                + err.read_text(errors="replace")[-12000:]
            )
        time.sleep(1.0)  # the hanging file is being scanned
        interrupted = time.monotonic()
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:  # where it hangs: every thread's stack (faulthandler)
            proc.send_signal(signal.SIGABRT)
            proc.wait(10)
            raise AssertionError(err.read_text(errors="replace")[-12000:]) from None
        took = time.monotonic() - interrupted
    finally:
        proc.kill()
    assert code != 0 and took < 20, (code, took, err.read_text(errors="replace")[-4000:])
    gone, alive = psutil.wait_procs(family, timeout=10)
    assert not alive


def test_a_task_that_begins_after_the_run_was_stopped_starts_no_child(tmp_path: Path) -> None:
    """Ctrl-C stops the guards that exist; a task a worker thread begins a moment later makes a
    new guard, which must be born stopped (or it forks a child and scans on while the
    interrupted run waits for it)."""
    import dataclasses

    from scanner.config import Settings
    from scanner.context import ContextSpec
    from scanner.engines.dask_engine import _guard, close_guards, stop_guards
    from scanner.engines.messages import from_wire

    spec = ContextSpec(str(LIBRARY), json.dumps(dataclasses.asdict(Settings()), sort_keys=True))
    zygote = str(tmp_path / "zygote.sock")  # nothing listens: a live guard would start a fresh child
    stop_guards(zygote)
    try:
        g = _guard(spec, zygote)
        (got,) = [from_wire(r) for r in g.scan_wire([str(DEMO / NAMES[0])])]
        assert [v.verdict for v in got] == ["unscannable"] and g.proc is None
    finally:
        close_guards(zygote)


def _scan_processes() -> dict:
    """On a worker: its pid and its descendants (zygotes, their forked children, fresh ones)."""
    import os

    import psutil

    out = []
    for p in psutil.Process(os.getpid()).children(recursive=True):
        try:
            out.append({"pid": p.pid, "ppid": p.ppid(), "cmd": " ".join(p.cmdline())})
        except psutil.Error:
            continue
    return {"pid": os.getpid(), "procs": out}


def _set_env(name: str, value: str) -> None:
    import os

    os.environ[name] = value


def test_workers_of_a_remote_cluster_fork_their_children_from_a_zygote_of_their_own(cluster, tmp_path) -> None:
    """A cluster the engine did not start: each worker process starts one zygote (a fresh
    interpreter) on its first task, and every guarded child - also the one that replaces a child
    a crashing file took down - is forked from it; no fresh scan process is started per thread
    or per crash. The verdicts are the local engine's."""
    from scanner.batch import Upload
    from scanner.engines.dask_engine import DaskEngine
    from scanner.engines.worker import FAULT_INJECTION_ENV

    crash = tmp_path / "crash.stl"
    crash.write_bytes((DEMO / "benign-pipe-s1-002.stl").read_bytes())
    context = ScanContext(library=SignatureLibrary.load(LIBRARY))
    with DaskEngine(context, str(LIBRARY), cluster.scheduler_address, jobs=2) as engine:
        engine.client.run(_set_env, FAULT_INJECTION_ENV, "crash:crash.stl")  # the zygotes inherit it
        ok = [DEMO / "proxy-barrel-s1-000.stl", DEMO / "benign-pipe-s1-002.stl"]
        out = list(engine.scan([Upload(str(p), str(p.parent)) for p in [ok[0], crash, ok[1], *ok]]))
        seen = engine.client.run(_scan_processes)
    verdicts = [(v.verdict, v.reason) for _, vs in out for v in vs]
    assert verdicts == [("flag", None), ("unscannable", "worker-crashed"), ("clear", None), ("flag", None),
                        ("clear", None)]  # fmt: skip
    used = [w for w in seen.values() if w["procs"]]
    assert used, seen
    for worker in used:
        procs = worker["procs"]
        assert not [p for p in procs if "scanner.engines.worker" in p["cmd"]], procs  # no fresh child
        (zygote,) = [p for p in procs if p["ppid"] == worker["pid"]]  # one process started by the worker ...
        assert "scanner.engines.zygote" in zygote["cmd"], procs
        children = [p for p in procs if p is not zygote]
        assert children and all(p["ppid"] == zygote["pid"] for p in children), procs  # ... forking the rest
