"""Isolated parallel scanning on one machine.

Each file is scanned in a worker process (forked, so the signature library loaded by the
parent is shared, not reloaded per file) under a wall-clock timeout and an address-space cap
(``RLIMIT_AS``). A file that exceeds them is reported ``unscannable`` with ``limit:time`` or
``limit:memory``; a worker that dies (a segfault in a C extension, the OOM killer) loses only
its current file, reported as ``worker-crashed``, and is replaced. Results are yielded in the
order the uploads were given, whatever order they finish in, so output is deterministic.

Workers talk to the parent in JSON, not pickle: a worker is where untrusted bytes are parsed,
so nothing it sends back may be able to execute code in the parent.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait

from scanner.batch import Upload
from scanner.errors import CORRUPT, LIMIT_MEMORY, LIMIT_TIME, WORKER_CRASHED, UnreadableInput
from scanner.pipeline import ScanContext, scan_one, unscannable_verdict
from scanner.verdict import Verdict

FAULT_INJECTION_ENV = "MESHSCAN_FAULT_INJECT"
"""Testing hook: ``crash:NAME`` makes a worker abort on a file whose base name is NAME, and
``hang:NAME`` makes it never finish, so the crash and time-limit paths can be tested without a
real crashing or hanging input."""


@dataclass
class WorkerSlot:
    process: multiprocessing.process.BaseProcess
    conn: Connection
    task: int | None = None
    started: float = 0.0


def worker_loop(conn: Connection, parent_end: Connection, context: ScanContext, memory_bytes: int | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    parent_end.close()  # the fork copied it; holding it would keep our own pipe open forever
    parent_pid = os.getppid()
    one_blas_thread()
    if memory_bytes:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    fault = os.environ.get(FAULT_INJECTION_ENV, "")
    while True:
        try:
            if not conn.poll(1.0):
                if os.getppid() != parent_pid:  # the parent was killed (kill -9): do not linger
                    return
                continue
            message = conn.recv_bytes()
        except (EOFError, OSError):
            return
        task, path = json.loads(message)
        verdicts = scan_contained(path, context, fault)
        conn.send_bytes(json.dumps([task, [v.to_dict() for v in verdicts]]).encode())


def scan_contained(path: str, context: ScanContext, fault: str = "") -> list[Verdict]:
    """``scan_one`` inside a worker: running out of memory or a bug becomes this file's
    verdict, never the worker's end. ``fault`` is the FAULT_INJECTION_ENV testing hook."""
    if fault == f"crash:{os.path.basename(path)}":
        os.abort()
    if fault == f"hang:{os.path.basename(path)}":
        time.sleep(3600)  # a file that never finishes: only the time limit ends it
    try:
        return scan_one(path, context)
    except MemoryError:
        return [unscannable_verdict(path, context, UnreadableInput(LIMIT_MEMORY, "memory cap reached"))]
    except Exception as exc:  # noqa: BLE001 - a bug must not take the run down; it is reported
        return [unscannable_verdict(path, context, UnreadableInput(CORRUPT, f"internal error: {exc!r}"))]


SINGLE_THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
"""For child processes started fresh: one BLAS thread each, set before numpy loads."""


def one_blas_thread() -> None:
    """One BLAS/OpenMP thread in this worker. The pool already uses every core, one file per
    worker; on the small matrices of one file a threaded BLAS only adds contention (measured
    2-4x slower shape features and descriptors with the default thread count)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # comes with scikit-learn; without it, the default threads
        return
    threadpool_limits(limits=1)


def warm_up(context: ScanContext) -> None:
    """Import what a scan needs and build the index before forking, so every worker shares
    them (copy-on-write) instead of paying for them inside its first file's time limit."""
    import scipy.sparse.csgraph  # noqa: F401 - bodies
    import scipy.special  # noqa: F401 - descriptor

    import scanner.features  # noqa: F401

    if context.library is not None:
        context.matcher  # noqa: B018 - builds the indexes


class IsolatedPool:
    def __init__(self, context: ScanContext, jobs: int, timeout_s: float, memory_bytes: int | None) -> None:
        self.context, self.jobs = context, max(1, jobs)
        self.timeout_s, self.memory_bytes = timeout_s, memory_bytes
        self._mp = multiprocessing.get_context("fork")
        self.slots: list[WorkerSlot] = []

    def _spawn(self) -> WorkerSlot:
        parent, child = self._mp.Pipe()
        proc = self._mp.Process(target=worker_loop, args=(child, parent, self.context, self.memory_bytes), daemon=True)
        proc.start()
        child.close()
        return WorkerSlot(proc, parent)

    def _replace(self, slot: WorkerSlot) -> None:
        if slot.process.is_alive():
            slot.process.kill()
        slot.process.join(5)
        slot.conn.close()
        self.slots[self.slots.index(slot)] = self._spawn()

    def close(self) -> None:
        for slot in self.slots:
            try:
                slot.conn.close()
            except OSError:
                pass
            slot.process.kill()
            slot.process.join(5)
        self.slots = []

    def scan(self, uploads: Iterable[Upload]) -> Iterator[tuple[Upload, list[Verdict]]]:
        """Scan uploads in parallel; yield (upload, verdicts) in input order."""
        warm_up(self.context)
        self.slots = [self._spawn() for _ in range(self.jobs)]
        queue = iter(enumerate(uploads))
        given: dict[int, Upload] = {}
        finished: dict[int, list[Verdict]] = {}
        next_out, exhausted = 0, False
        try:
            while True:
                for slot in self.slots:
                    if slot.task is None and not exhausted:
                        item = next(queue, None)
                        if item is None:
                            exhausted = True
                            break
                        task, upload = item
                        given[task] = upload
                        slot.task, slot.started = task, time.monotonic()
                        slot.conn.send_bytes(json.dumps([task, upload.path]).encode())
                busy = [s for s in self.slots if s.task is not None]
                if not busy and exhausted:
                    break
                deadline = min(s.started for s in busy) + self.timeout_s
                ready = wait([s.conn for s in busy] + [s.process.sentinel for s in busy],
                             timeout=max(0.0, deadline - time.monotonic()))  # fmt: skip
                for slot in busy:
                    task = slot.task
                    if slot.conn in ready or slot.conn.poll():
                        try:
                            got, records = json.loads(slot.conn.recv_bytes())
                            finished[got] = [Verdict.from_dict(r) for r in records]
                            slot.task = None
                            continue
                        except (EOFError, OSError):
                            pass
                    if not slot.process.is_alive():
                        finished[task] = self._failed(given[task], WORKER_CRASHED, slot)
                    elif time.monotonic() - slot.started > self.timeout_s:
                        finished[task] = self._failed(given[task], LIMIT_TIME, slot)
                while next_out in finished:
                    yield given.pop(next_out), finished.pop(next_out)
                    next_out += 1
        finally:
            self.close()

    def _failed(self, upload: Upload, reason: str, slot: WorkerSlot) -> list[Verdict]:
        detail = (
            f"no result within {self.timeout_s:g} s" if reason == LIMIT_TIME
            else f"the worker process died (exit code {slot.process.exitcode})"
        )  # fmt: skip
        self._replace(slot)
        return [unscannable_verdict(upload.path, self.context, UnreadableInput(reason, detail))]
