"""The server's scan workers: ``--workers`` long-lived forked processes, each running the
worker loop of ``meshscan scan --jobs N`` (``scanner.workers.worker_loop``) under the same
address-space cap, with the library and model shared copy-on-write from the server.

Why not a fresh fork per upload (``Scanner(isolated=True)``)? Forking the loaded server and
warming the child cost about 75 ms per upload on top of a ~35 ms scan of a small mesh
(measured on 1-5k triangle uploads), which is most of the time a small upload takes. A worker
that runs past the time limit is killed, one that dies (a crashing parser, the OOM killer) is
reaped, and either is replaced; its upload is an ``unscannable`` record (``limit:time`` or
``worker-crashed``), as in ``scan``. Workers answer in JSON, never pickle.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import queue
import threading
from multiprocessing.connection import wait

from scanner.errors import LIMIT_TIME, WORKER_CRASHED, UnreadableInput
from scanner.pipeline import ScanContext, unscannable_verdict
from scanner.verdict import Verdict
from scanner.workers import WorkerSlot, warm_up, worker_loop


class ServeWorkers:
    """A fixed set of guarded scan workers, taken one per upload by the server's scan threads
    (there are as many threads as workers, so taking one never waits for long)."""

    def __init__(self, context: ScanContext, workers: int, timeout_s: float, memory_bytes: int | None) -> None:
        self.context, self.timeout_s, self.memory_bytes = context, timeout_s, memory_bytes
        self._mp = multiprocessing.get_context("fork")
        warm_up(context)  # imports and indexes built once, before forking: shared by every worker
        self._idle: queue.Queue[WorkerSlot] = queue.Queue()
        self._all: list[WorkerSlot] = []
        self._lock = threading.Lock()
        self._tasks = itertools.count()
        self.replaced = 0
        for _ in range(max(1, workers)):
            self._idle.put(self._spawn())

    def _spawn(self) -> WorkerSlot:
        parent, child = self._mp.Pipe()
        proc = self._mp.Process(target=worker_loop, args=(child, parent, self.context, self.memory_bytes), daemon=True)
        proc.start()
        child.close()
        slot = WorkerSlot(proc, parent)
        with self._lock:
            self._all.append(slot)
        return slot

    def _retire(self, slot: WorkerSlot) -> None:
        if slot.process.is_alive():
            slot.process.kill()
        slot.process.join(5)
        slot.conn.close()
        with self._lock:
            if slot in self._all:
                self._all.remove(slot)

    def scan(self, path: str) -> list[Verdict]:
        """The verdicts of the file at ``path``, from the next free worker."""
        slot = self._idle.get()
        try:
            task = next(self._tasks)
            timed_out = False
            try:
                slot.conn.send_bytes(json.dumps([task, path]).encode())
                ready = wait([slot.conn, slot.process.sentinel], timeout=self.timeout_s)
                timed_out = not ready
                if slot.conn in ready or slot.conn.poll():
                    got, records = json.loads(slot.conn.recv_bytes())
                    if got == task:
                        return [Verdict.from_dict(r) for r in records]
            except (EOFError, OSError, ValueError):
                pass  # a worker that died mid-answer: reported below
            self._retire(slot)  # killed if it still runs; reaped, so its exit code is known
            if timed_out:
                reason, detail = LIMIT_TIME, f"no result within {self.timeout_s:g} s"
            else:
                reason, detail = WORKER_CRASHED, f"the worker process died (exit code {slot.process.exitcode})"
            slot = self._spawn()
            self.replaced += 1
            return [unscannable_verdict(path, self.context, UnreadableInput(reason, detail))]
        finally:
            self._idle.put(slot)

    def close(self) -> None:
        """Stop every worker (at server shutdown)."""
        with self._lock:
            slots = list(self._all)
        for slot in slots:
            self._retire(slot)
