"""A streaming front to the isolated worker processes of ``meshscan scan``.

:class:`scanner.workers.IsolatedPool` drives a finite list of uploads and yields results in
input order; a daemon needs the same workers - forked, under the same time and memory limits,
talking JSON, a crash losing only its file - but fed one file at a time as files become ready,
with results taken as soon as each finishes, and a wait that also wakes on new events. So this
subclass keeps the workers and their failure handling and replaces only the driving loop.
"""

from __future__ import annotations

import json
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import wait

from scanner.batch import Upload
from scanner.errors import LIMIT_TIME, WORKER_CRASHED
from scanner.pipeline import ScanContext
from scanner.verdict import Verdict
from scanner.workers import IsolatedPool, WorkerSlot, warm_up, worker_loop


def _watch_worker(conn, parent_end, context: ScanContext, memory_bytes: int | None) -> None:  # noqa: ANN001
    """The scan worker of ``scan``, deaf to SIGTERM: a service manager signals the whole
    process group on stop, and the daemon wants its running scans to finish and be recorded
    (it stops the workers itself). A worker whose daemon was killed exits quietly."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        worker_loop(conn, parent_end, context, memory_bytes)
    except (BrokenPipeError, EOFError, OSError):
        pass


@dataclass
class Done:
    upload: Upload
    verdicts: list[Verdict]
    seconds: float


class StreamingPool(IsolatedPool):
    def __init__(self, context: ScanContext, jobs: int, timeout_s: float, memory_bytes: int | None) -> None:
        super().__init__(context, jobs, timeout_s, memory_bytes)
        self._given: dict[int, Upload] = {}
        self._next_task = 0

    def _spawn(self) -> WorkerSlot:
        parent, child = self._mp.Pipe()
        proc = self._mp.Process(target=_watch_worker, args=(child, parent, self.context, self.memory_bytes),
                                daemon=True)  # fmt: skip
        proc.start()
        child.close()
        return WorkerSlot(proc, parent)

    def start(self) -> None:
        warm_up(self.context)
        self.slots = [self._spawn() for _ in range(self.jobs)]

    @property
    def idle(self) -> int:
        return sum(1 for s in self.slots if s.task is None)

    @property
    def busy(self) -> int:
        return len(self.slots) - self.idle

    def in_flight(self) -> set[str]:
        return {self._given[s.task].path for s in self.slots if s.task is not None}

    def submit(self, upload: Upload) -> None:
        slot = next(s for s in self.slots if s.task is None)
        task, self._next_task = self._next_task, self._next_task + 1
        self._given[task] = upload
        slot.task, slot.started = task, time.monotonic()
        slot.conn.send_bytes(json.dumps([task, upload.path]).encode())

    def collect(self, timeout: float, also: list[int] | None = None) -> list[Done]:
        """Wait up to ``timeout`` for a result (or for a readable fd in ``also``); return what finished."""
        busy = [s for s in self.slots if s.task is not None]
        if busy:
            deadline = min(s.started for s in busy) + self.timeout_s
            timeout = max(0.0, min(timeout, deadline - time.monotonic()))
        wait([s.conn for s in busy] + [s.process.sentinel for s in busy] + list(also or []), timeout=timeout)
        out = []
        for slot in busy:
            task = slot.task
            upload = self._given[task]
            elapsed = time.monotonic() - slot.started
            if slot.conn.poll():
                try:
                    got, records = json.loads(slot.conn.recv_bytes())
                    slot.task = None
                    del self._given[got]
                    out.append(Done(upload, [Verdict.from_dict(r) for r in records], elapsed))
                    continue
                except (EOFError, OSError):
                    pass
            if not slot.process.is_alive():
                del self._given[task]
                out.append(Done(upload, self._failed(upload, WORKER_CRASHED, slot), elapsed))
            elif elapsed > self.timeout_s:
                del self._given[task]
                out.append(Done(upload, self._failed(upload, LIMIT_TIME, slot), elapsed))
        return out
