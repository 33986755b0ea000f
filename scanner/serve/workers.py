"""The server's scan workers: ``--workers`` long-lived forked processes, each running the
worker loop of ``meshscan scan --jobs N`` (:class:`scanner.engines.parent.ForkedWorker`)
under the same address-space cap, with the library and model shared copy-on-write from the
server.

Why not a fresh fork per upload (``Scanner(isolated=True)``)? Forking the loaded server and
warming the child cost about 75 ms per upload on top of a ~35 ms scan of a small mesh
(measured on 1-5k triangle uploads), which is most of the time a small upload takes. A worker
that runs past the time limit is killed, one that dies (a crashing parser, the OOM killer) is
reaped, and either is replaced; its upload is an ``unscannable`` record (``limit:time`` or
``worker-crashed``), as in ``scan``. Workers answer in JSON, never pickle.
"""

from __future__ import annotations

import itertools
import multiprocessing
import queue
import threading
from multiprocessing.connection import wait

from scanner.context import ScanContext
from scanner.engines.parent import DIED, ForkedWorker, lost
from scanner.engines.worker import warm_up
from scanner.verdict import Verdict


class ServeWorkers:
    """A fixed set of guarded scan workers, taken one per upload by the server's scan threads
    (there are as many threads as workers, so taking one never waits for long)."""

    def __init__(self, context: ScanContext, workers: int, timeout_s: float, memory_bytes: int | None) -> None:
        self.context, self.timeout_s, self.memory_bytes = context, timeout_s, memory_bytes
        self.workers = max(1, workers)
        self._mp = multiprocessing.get_context("fork")
        warm_up(context)  # imports and indexes built once, before forking: shared by every worker
        self._idle: queue.Queue[ForkedWorker] = queue.Queue()
        self._all: list[ForkedWorker] = []
        self._lock = threading.Lock()
        self._tasks = itertools.count()
        self.replaced = 0
        for _ in range(max(1, workers)):
            self._idle.put(self._spawn())

    def _spawn(self) -> ForkedWorker:
        worker = ForkedWorker(self._mp, self.context, self.memory_bytes, workers=self.workers)
        with self._lock:
            self._all.append(worker)
        return worker

    def _retire(self, worker: ForkedWorker) -> None:
        worker.stop()
        with self._lock:
            if worker in self._all:
                self._all.remove(worker)

    def scan(self, path: str) -> list[Verdict]:
        """The verdicts of the file at ``path``, from the next free worker."""
        worker = self._idle.get()
        try:
            task = next(self._tasks)
            try:
                worker.send(task, path)
                wait(worker.handles, timeout=self.timeout_s)
                reply = worker.reply()
                if reply is not None and reply[0] == task:
                    return reply[1]
            except OSError:
                pass  # a worker that died before it could take the task: reported below
            fate = worker.fate(self.timeout_s) or DIED  # a wrong answer is a broken worker
            self._retire(worker)  # killed if it still runs; reaped, so its exit code is known
            detail = worker.detail(fate, self.timeout_s)
            worker = self._spawn()
            self.replaced += 1
            return lost(path, self.context, fate, detail)
        finally:
            self._idle.put(worker)

    def close(self) -> None:
        """Stop every worker (at server shutdown)."""
        with self._lock:
            workers = list(self._all)
        for worker in workers:
            self._retire(worker)
