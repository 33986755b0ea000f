"""Scanning on a Dask cluster: the same ``scan_one`` as the local engine, on many machines.

``meshscan scan ... --engine dask [--scheduler tcp://HOST:8786]`` connects to a running
scheduler (or starts a ``LocalCluster`` of worker processes when none is given), keeps a
bounded number of tasks in flight (back-pressure: the listing is consumed only as results
come back; small files go several to a task), and streams verdicts back in input order into
the same sinks and results DB as the local engine. Each worker loads the signature library and the component model once
(cached per worker process, keyed by library path, settings and model:
:meth:`~scanner.context.ContextSpec.load`), not once per file.
Paths may be fsspec URLs, which is how workers on other machines reach the same files
(``s3://...``, ``gs://...``).

Limits: a Dask task cannot be interrupted, so each worker thread scans through a guarded
child process (:mod:`scanner.engines.guarded`) that enforces the same per-file time and memory
limits as the local engine and loses only the file at hand when it crashes. On a
``LocalCluster`` those children are forked from a :class:`~scanner.engines.zygote.Zygote` of
this process (already loaded), not started fresh: measured, a fresh child's start-up (imports,
library, model refit: ~2.7 s of CPU) was most of the gap between ``--engine dask`` and
``--jobs 2``; the steady state was already even (tasks busy back to back on both workers).

The engine's own ``LocalCluster`` runs its workers as threads of this process
(``processes=False``), not as worker processes: the guarded children already give each file
its own process, limits and crash containment, so a worker process around them was a second
process layer that only cost - measured on 600 small files, 2 workers: 1.5 s to spawn two
Pythons importing ``distributed`` (0.6 s more to close them), and about 1.1 s of CPU in each
for those imports, the scan pipeline's imports (the task module's) and its share of Dask's
runtime, a quarter more CPU than ``--jobs 2`` in all; in-process the cluster starts in 0.04 s
and the run's CPU equals ``--jobs 2``'s. Those in-process workers' children are stopped when
the engine exits (:func:`stop_guards`, :func:`close_guards`: at once, also when the run is
interrupted mid-task). On a cluster the engine did not start (``--scheduler``) each worker
process starts a zygote of its own on its first task of a run
(:class:`~scanner.engines.zygote.SpawnedZygote`, :func:`worker_zygote`): one fresh start per
worker process and run, not one per worker thread and again after every crashed child. A task
that still kills its Dask worker three times is reported ``worker-crashed``.
"""

from __future__ import annotations

import atexit
import collections
import itertools
import json
import os
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from scanner.batch import Upload
from scanner.context import ContextSpec, ScanContext
from scanner.engines.guarded import GuardedScanner
from scanner.engines.messages import from_wire, to_wire
from scanner.engines.parent import DIED, lost
from scanner.engines.zygote import SpawnedZygote, Zygote
from scanner.pipeline import scan_one
from scanner.util import is_url
from scanner.verdict import Verdict

_GUARDS = threading.local()
KEPT_GUARDS = 4
"""Children a worker thread keeps, one per run it serves (scans of several clients with other
settings may share a cluster): more would hold memory for runs that have ended."""
PROCESS_LOCAL_URLS = ("memory://",)
"""Filesystems that live in the worker's own memory: scanned in the task's thread, unguarded."""


def scan_task(paths: list[str], library: str | None, settings_json: str, model: str | None = None,
              zygote: str | None = None) -> str:  # fmt: skip
    """The Dask task: verdicts of a batch of uploads, as JSON text (one list per upload).

    Each scan runs in this worker thread's guarded child process (loaded once, or forked
    from the ``zygote`` socket when the engine started one on this machine), so the
    per-file time and memory limits hold here as they do in the local engine."""
    spec = ContextSpec(library, settings_json, model)
    if zygote is None:  # a cluster the engine did not start: this worker process's own zygote
        zygote = worker_zygote(spec)
    out: list[list[dict[str, Any]]] = []
    for local, run in itertools.groupby(paths, key=lambda p: p.startswith(PROCESS_LOCAL_URLS)):
        if local:  # a child process cannot see this worker's memory
            from scanner import parallel

            parallel.configure(False)  # the worker's other threads run tasks: no helper thread
            out.extend(to_wire(scan_one(path, spec.load())) for path in run)
        else:  # the child's records as it sent them: decoded once, by the engine
            out.extend(_guard(spec, zygote).scan_wire(list(run)))
    return json.dumps(out)


_SPAWNED: dict[ContextSpec, SpawnedZygote | None] = {}
"""This worker process's own zygotes, by run (None: it could not start one for that run)."""
_SPAWNED_LOCK = threading.Lock()


def worker_zygote(spec: ContextSpec) -> str | None:
    """The socket of this process's own zygote for ``spec``, started on the first task of a
    run (:class:`~scanner.engines.zygote.SpawnedZygote`); the most recent ``KEPT_GUARDS`` runs
    keep theirs. None when none could start: the guards start fresh children then."""
    with _SPAWNED_LOCK:
        if spec not in _SPAWNED:
            while len(_SPAWNED) >= KEPT_GUARDS:
                old = _SPAWNED.pop(next(iter(_SPAWNED)))
                if old is not None:
                    old.close()
            zygote = SpawnedZygote(spec, spec.settings.limits.max_memory_bytes)
            _SPAWNED[spec] = zygote if zygote.start() else None
            if _SPAWNED[spec] is not None:
                atexit.register(zygote.close)
        found = _SPAWNED[spec]
    return None if found is None else found.path


def _guard(spec: ContextSpec, zygote: str | None = None) -> GuardedScanner:
    guards = getattr(_GUARDS, "by_spec", None)
    if guards is None:
        guards = _GUARDS.by_spec = {}
    guard = guards.pop((spec, zygote), None)
    if guard is None:
        while len(guards) >= KEPT_GUARDS:  # the least recently used run's child goes
            guards.pop(next(iter(guards))).close()
        limits = spec.settings.limits
        guard = GuardedScanner(spec, limits.max_seconds, limits.max_memory_bytes, zygote)
        if zygote is not None:
            with _BY_ZYGOTE_LOCK:
                _BY_ZYGOTE.setdefault(zygote, []).append(guard)
                if zygote in _STOPPED_ZYGOTES:  # a task that began after the run was stopped
                    guard.stop()
    guards[(spec, zygote)] = guard  # (re)inserted last: most recently used
    return guard


_BY_ZYGOTE: dict[str, list[GuardedScanner]] = {}
"""The guards of this process whose children come from a zygote, by its socket: the engine
closes them when its run ends (:func:`close_guards`). With the in-process workers of the
engine's own ``LocalCluster`` they live in the engine's process, which goes on after the run
(a test, a Python caller), so nobody else would."""
_BY_ZYGOTE_LOCK = threading.Lock()
_STOPPED_ZYGOTES: set[str] = set()
"""Zygotes whose run was stopped (:func:`stop_guards`) and not yet closed: a guard made for one
now is stopped at birth, so a task that starts after Ctrl-C forks no child."""


def stop_guards(zygote: str) -> None:
    """Kill the children of every guard of this process forked from ``zygote``, and let none
    start again: tasks still running (an interrupted run) end now instead of scanning on."""
    with _BY_ZYGOTE_LOCK:
        _STOPPED_ZYGOTES.add(zygote)
        guards = list(_BY_ZYGOTE.get(zygote, []))
    for guard in guards:
        guard.stop()


def close_guards(zygote: str) -> None:
    """Close every guard of this process forked from ``zygote`` (their tasks have ended)."""
    with _BY_ZYGOTE_LOCK:
        guards = _BY_ZYGOTE.pop(zygote, [])
        _STOPPED_ZYGOTES.discard(zygote)
    for guard in guards:
        guard.close()


BATCH_FILES = 48
BATCH_BYTES = 16 * 1024 * 1024
"""A task carries up to BATCH_FILES uploads or BATCH_BYTES of them (a file whose size is not
known cheaply - a remote URL - fills a task alone): a task per small file would spend more
time in the scheduler than in the scan, while big files still spread one per task. Measured
on 2,000 small files, 2 in-process workers (``bench/throughput.py``'s set, three interleaved
rounds): each task costs the engine's process about 4 ms of CPU in Dask's event loop, which
shares the cores with the scan; 48 files a task took 7.10-7.38 s where 16 took 7.52-7.62 s
(``--jobs 2``: 6.74-6.98 s)."""
TAIL_FILES = 4
"""The smallest batch of the run's tail (:func:`batches`)."""


def batches(uploads: Iterable[Upload], workers: int = 1) -> Iterator[list[Upload]]:
    """The uploads in order, cut into tasks (``BATCH_FILES``, ``BATCH_BYTES``), with a tapered
    tail: the listing is read ``2 x workers`` full batches ahead, and once it has ended each
    batch takes a ``2 x workers``-th of what is left (guided self-scheduling, at least
    ``TAIL_FILES``), so the last tasks are short and no worker idles behind another's big
    batch at the end of a run."""
    spread = 2 * max(1, workers)
    window = spread * BATCH_FILES
    ahead: collections.deque[tuple[Upload, int]] = collections.deque()
    source = iter(uploads)
    ended = False
    while True:
        while not ended and len(ahead) < window:
            upload = next(source, None)
            if upload is None:
                ended = True
            else:
                ahead.append((upload, _task_bytes(upload)))
        if not ahead:
            return
        files = BATCH_FILES if not ended else max(TAIL_FILES, -(-len(ahead) // spread))  # <= BATCH_FILES
        batch: list[Upload] = []
        size = 0
        while ahead and len(batch) < files:
            upload, nbytes = ahead[0]
            if batch and size + nbytes > BATCH_BYTES:
                break
            ahead.popleft()
            batch.append(upload)
            size += nbytes
        yield batch


def _task_bytes(upload: Upload) -> int:
    """What an upload weighs in a task: its size on disk; a URL (not stat'ed) a whole task."""
    if is_url(upload.path):
        return BATCH_BYTES
    try:
        return os.stat(upload.path).st_size
    except OSError:
        return 0


LOCAL_CLUSTER_CONFIG = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "10s",
}
"""Dask settings of the engine's own in-process cluster, which shares this process's cores
with the scan. Dask's statistical profiler samples every worker thread's stack every 10 ms,
its event-loop watchdog ticks every 20 ms and its system monitor (for the dashboard) polls
every 0.5 s: nobody reads them here (no dashboard), and measured they were most of an idle
cluster's CPU - 0.06 s per second, 0.004 with these and no memory monitor (``memory_limit=0``:
memory is capped in each guarded child, and the workers hold only short result strings)."""


class DaskEngine:
    def __init__(self, context: ScanContext, library: str | None, scheduler: str | None, jobs: int,
                 in_flight_per_worker: int = 4) -> None:  # fmt: skip
        self.context, self.library, self.scheduler = context, library, scheduler
        self.jobs, self.in_flight_per_worker = jobs, in_flight_per_worker
        self.spec = ContextSpec.of(context, library)
        self.settings_json, self.model = self.spec.settings_json, self.spec.model
        self.client: Any = None
        self._cluster: Any = None
        self._zygote: Zygote | None = None

    def __enter__(self) -> DaskEngine:
        if not self.scheduler:  # workers on this machine: fork their children from this loaded process
            self._zygote = Zygote(self.context)  # before Dask starts a thread here
            self._zygote.start()
        import dask
        from distributed import Client, LocalCluster

        if self.scheduler:
            self.client = Client(self.scheduler)
        else:
            with dask.config.set(LOCAL_CLUSTER_CONFIG):
                self._cluster = LocalCluster(n_workers=self.jobs, threads_per_worker=1, processes=False,
                                             memory_limit=0, dashboard_address=None)  # fmt: skip
            self.client = Client(self._cluster)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._zygote is not None:  # first: closing the in-process cluster waits for its running tasks
            stop_guards(self._zygote.path)
        if self.client is not None:
            self.client.close()
        if self._cluster is not None:
            self._cluster.close()
        if self._zygote is not None:
            close_guards(self._zygote.path)
            self._zygote.close()

    def scan(self, uploads: Iterable[Upload]) -> Iterator[tuple[Upload, list[Verdict]]]:
        from distributed import as_completed

        workers = max(1, len(self.client.scheduler_info().get("workers", {})) or self.jobs)
        queue = enumerate(batches(uploads, workers))
        pending: dict[Any, tuple[int, list[Upload]]] = {}
        done: dict[int, list[tuple[Upload, list[Verdict]]]] = {}
        next_out = 0
        results = as_completed()
        for index, batch in itertools.islice(queue, workers * self.in_flight_per_worker):
            results.add(self._submit(index, batch, pending))
        for future in results:
            index, batch = pending.pop(future)
            done[index] = self._results(future, batch)
            for index2, batch2 in itertools.islice(queue, 1):
                results.add(self._submit(index2, batch2, pending))
            while next_out in done:
                yield from done.pop(next_out)
                next_out += 1

    def _results(self, future: Any, batch: list[Upload]) -> list[tuple[Upload, list[Verdict]]]:
        try:
            records = json.loads(future.result())
            return [(u, from_wire(rs)) for u, rs in zip(batch, records, strict=True)]
        except Exception as exc:  # noqa: BLE001 - KilledWorker and friends: report, go on
            detail = f"{type(exc).__name__}: {exc}"
            return [(u, lost(u.path, self.context, DIED, detail)) for u in batch]

    def _submit(self, index: int, batch: list[Upload], pending: dict) -> Any:
        paths = [u.path for u in batch]
        zygote = self._zygote.path if self._zygote is not None else None
        future = self.client.submit(scan_task, paths, self.library, self.settings_json, self.model, zygote,
                                    pure=False, key=f"meshscan-scan-{index}-{id(self)}")  # fmt: skip
        pending[future] = (index, batch)
        return future
