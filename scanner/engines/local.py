"""Isolated parallel scanning on one machine: the engine of ``scan``, ``survey`` and ``watch``.

Each file is scanned in a worker process (forked, so the signature library loaded by the
parent is shared, not reloaded per file) under a wall-clock timeout and an address-space cap
(``RLIMIT_AS``). A file that exceeds them is reported ``unscannable`` with ``limit:time`` or
``limit:memory``; a worker that dies (a segfault in a C extension, the OOM killer) loses only
its current file, reported as ``worker-crashed``, and is replaced.

Two ways to drive it: :meth:`LocalPool.scan` takes a finite list and yields results in the
order the uploads were given, whatever order they finish in, so output is deterministic; it
keeps :data:`QUEUED_PER_WORKER` uploads sent to each worker, so a worker starts its next file
the moment it answers (measured: the round trip is ~0.2 ms of CPU per file, but on a busy
machine each wake-up of the parent can cost milliseconds of wall time). The watch daemon
instead :meth:`~LocalPool.submit` s one file at a time as files become ready and
:meth:`~LocalPool.collect` s results as soon as each finishes, with a wait that also wakes on
its own events.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import wait

from scanner.batch import Upload
from scanner.context import ScanContext
from scanner.engines.parent import ForkedWorker, lost
from scanner.engines.worker import warm_up
from scanner.verdict import Verdict

QUEUED_PER_WORKER = 2
"""Uploads :meth:`LocalPool.scan` keeps sent to each worker: the one it scans and the next. A
file queued behind a slow one waits for it (its own time limit starts only when its turn
comes), so more would only lengthen the wait at the end of a run."""


@dataclass
class Done:
    upload: Upload
    verdicts: list[Verdict]
    seconds: float
    task: int = -1


class LocalPool:
    """``jobs`` forked workers under the per-upload time (``timeout_s``) and memory
    (``memory_bytes``) limits. ``deaf_to_sigterm``: workers ignore SIGTERM (the watch daemon
    stops them itself, after its running scans are recorded)."""

    def __init__(self, context: ScanContext, jobs: int, timeout_s: float, memory_bytes: int | None,
                 deaf_to_sigterm: bool = False) -> None:  # fmt: skip
        self.context, self.jobs = context, max(1, jobs)
        self.timeout_s, self.memory_bytes, self.deaf_to_sigterm = timeout_s, memory_bytes, deaf_to_sigterm
        self._mp = multiprocessing.get_context("fork")
        self.workers: list[ForkedWorker] = []
        self._given: dict[int, Upload] = {}
        self._next_task = 0

    def __enter__(self) -> LocalPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Warm up (imports, indexes) and fork the workers, once."""
        self._start(self.jobs)

    def _start(self, count: int) -> None:
        if not self.workers:
            warm_up(self.context)
            self.workers = [self._spawn() for _ in range(count)]

    def _spawn(self) -> ForkedWorker:
        return ForkedWorker(self._mp, self.context, self.memory_bytes, self.deaf_to_sigterm, self.jobs)

    def switch(self, context: ScanContext) -> None:
        """Scan with ``context`` from now on (a reloaded library): the workers hold the context
        they were forked with, so they are stopped and new ones forked. Only between files:
        the caller lets every running scan finish (and records it) first."""
        if self.busy:
            raise RuntimeError("switching the scan context while scans are running would lose them")
        started = bool(self.workers)
        self.close()
        self.context = context
        if started:
            self.start()

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers, self._given = [], {}

    @property
    def idle(self) -> int:
        return sum(1 for w in self.workers if w.idle)

    @property
    def busy(self) -> int:
        return len(self.workers) - self.idle

    def in_flight(self) -> set[str]:
        return {self._given[task].path for w in self.workers for task in w.queued}

    def submit(self, upload: Upload) -> int:
        """Give ``upload`` to an idle worker (there must be one); its task number."""
        return self._send(next(w for w in self.workers if w.idle), upload)

    def _send(self, worker: ForkedWorker, upload: Upload) -> int:
        task, self._next_task = self._next_task, self._next_task + 1
        self._given[task] = upload
        worker.send(task, upload.path)
        return task

    def _has_room(self) -> bool:
        """Another upload can be sent now: a worker may still be forked, or one has fewer than
        QUEUED_PER_WORKER queued."""
        return len(self.workers) < self.jobs or any(len(w.queued) < QUEUED_PER_WORKER for w in self.workers)

    def _with_room(self) -> ForkedWorker:
        """Where the next upload goes (when :meth:`_has_room`): an idle worker; else a newly
        forked one, while there are fewer than ``jobs``; else the one with the fewest queued.
        Workers are forked as uploads need them, so a one-file scan forks one (each more cost
        about 25 ms of CPU on its start-up, for nothing)."""
        if len(self.workers) < self.jobs and not self.idle:
            self.workers.append(self._spawn())
        return min(self.workers, key=lambda w: len(w.queued))

    def collect(self, timeout: float, also: list[int] | None = None) -> list[Done]:
        """Wait up to ``timeout`` for a result (or for a readable fd in ``also``); return what
        finished, including uploads lost to a worker that died or was late."""
        busy = [w for w in self.workers if not w.idle]
        if busy:
            deadline = min(w.started for w in busy) + self.timeout_s
            timeout = max(0.0, min(timeout, deadline - time.monotonic()))
        wait([h for w in busy for h in w.handles] + list(also or []), timeout=timeout)
        out = []
        for worker in busy:
            elapsed = worker.elapsed()
            while (reply := worker.reply()) is not None:  # several, when queued files were quick
                got, verdicts = reply
                out.append(Done(self._given.pop(got), verdicts, elapsed, got))
                elapsed = worker.elapsed()
            if worker.idle:
                continue
            fate = worker.fate(self.timeout_s)
            if fate is not None:
                out.append(self._lose(worker, fate, elapsed))
        return out

    def _lose(self, worker: ForkedWorker, fate: str, elapsed: float) -> Done:
        """The worker's current upload, lost to its fate; the worker is replaced, and the
        uploads queued behind that one are sent again to the replacement (same task numbers,
        so results still come out in input order)."""
        task, *behind = worker.queued
        worker.stop()
        replacement = self.workers[self.workers.index(worker)] = self._spawn()
        for queued in behind:
            replacement.send(queued, self._given[queued].path)
        upload = self._given.pop(task)
        return Done(upload, lost(upload.path, self.context, fate, worker.detail(fate, self.timeout_s)), elapsed, task)

    def scan(self, uploads: Iterable[Upload]) -> Iterator[tuple[Upload, list[Verdict]]]:
        """Scan uploads in parallel; yield (upload, verdicts) in input order. The workers are
        stopped when the scan ends (or is abandoned)."""
        self._start(1)  # the others are forked as uploads need them (_with_room)
        queue = iter(uploads)
        finished: dict[int, Done] = {}
        next_out, exhausted = self._next_task, False
        try:
            while True:
                while not exhausted and self._has_room():
                    upload = next(queue, None)
                    if upload is None:
                        exhausted = True
                    else:
                        self._send(self._with_room(), upload)
                if exhausted and not self.busy:
                    break
                finished.update((done.task, done) for done in self.collect(self.timeout_s))
                while next_out in finished:
                    done = finished.pop(next_out)
                    yield done.upload, done.verdicts
                    next_out += 1
        finally:
            self.close()
