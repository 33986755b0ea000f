"""The parent side of every engine, written once: send a task, wait with a deadline, decode
the reply, and when none comes say why in the upload's verdict.

A worker that *died* (a segfault in a C extension, the OOM killer, ``os.abort``) loses its
upload as ``worker-crashed``; one that is *late* (no reply within the per-upload time limit)
is killed and its upload is ``limit:time``. Either way the worker is replaced and only that
upload is lost: the verdict still names the library and model that would have judged it.
"""

from __future__ import annotations

import multiprocessing
import time
from collections import deque
from multiprocessing.connection import Connection
from typing import Any

from scanner.context import ScanContext
from scanner.engines.messages import decode_reply, encode_task
from scanner.engines.worker import pipe_worker
from scanner.errors import LIMIT_TIME, WORKER_CRASHED, UnreadableInput
from scanner.pipeline import unscannable_verdict
from scanner.verdict import Verdict

DIED = "died"
LATE = "late"
REASONS = {DIED: WORKER_CRASHED, LATE: LIMIT_TIME}
"""How a lost upload's fate becomes its verdict's reason code."""


def late_detail(timeout_s: float) -> str:
    return f"no result within {timeout_s:g} s"


def died_detail(exitcode: int | None) -> str:
    return f"the worker process died (exit code {exitcode})"


def lost(path: str, context: ScanContext, fate: str, detail: str) -> list[Verdict]:
    """The verdict of an upload whose worker died (``DIED``) or was late (``LATE``)."""
    return [unscannable_verdict(path, context, UnreadableInput(REASONS[fate], detail))]


class ForkedWorker:
    """One forked scan worker (:func:`~scanner.engines.worker.pipe_worker`), the parent's end
    of its pipe, and the tasks sent to it, in order (:attr:`queued`).

    A worker answers its tasks one at a time, in the order sent; tasks sent while it works
    wait in the pipe, so it starts the next file the moment it answers the last instead of
    waiting for the parent to be scheduled and send one (on a busy machine, most of a small
    file's wall time). The per-upload clock (:attr:`started`) runs for the first queued task
    only, from when it was sent to an idle worker or the previous answer came."""

    def __init__(self, mp: Any, context: ScanContext, memory_bytes: int | None, deaf_to_sigterm: bool = False,
                 workers: int | None = None) -> None:  # fmt: skip
        parent, child = mp.Pipe()
        self.process: multiprocessing.process.BaseProcess = mp.Process(
            target=pipe_worker, args=(child, parent, context, memory_bytes, deaf_to_sigterm, workers), daemon=True
        )
        self.process.start()
        child.close()
        self.conn: Connection = parent
        self.queued: deque[int] = deque()
        self.started = 0.0

    @property
    def task(self) -> int | None:
        """The task being worked on (the first queued), or None."""
        return self.queued[0] if self.queued else None

    @property
    def idle(self) -> bool:
        return not self.queued

    @property
    def handles(self) -> list[Any]:
        """What to ``multiprocessing.connection.wait`` on: a reply, or the worker's end."""
        return [self.conn, self.process.sentinel]

    def send(self, task: int, path: str) -> None:
        """Queue ``task``. A worker that died since the last look (a crash on the file it
        was given) has closed its end: the task stays queued, and :meth:`fate` says ``DIED`` at
        the next collect, which sends what was queued behind the lost upload to a replacement.
        (On a loaded machine the parent sent the next duplicate to a crashed worker and the
        BrokenPipeError ended the whole scan as an internal error.)"""
        if not self.queued:
            self.started = time.monotonic()
        self.queued.append(task)
        try:
            self.conn.send_bytes(encode_task(task, path))
        except OSError:  # BrokenPipeError, ConnectionResetError: its fate says what happened
            pass

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def reply(self) -> tuple[int, list[Verdict]] | None:
        """The next reply, if one is waiting (its task is done; the clock starts for the next
        queued one); None otherwise."""
        try:
            if not self.conn.poll():
                return None
            got = decode_reply(self.conn.recv_bytes())
        except (EOFError, OSError, ValueError):  # died mid-answer: its fate says so
            return None
        if got[0] in self.queued:
            self.queued.remove(got[0])
        self.started = time.monotonic()
        return got

    def fate(self, timeout_s: float) -> str | None:
        """``DIED``, ``LATE`` or None (still working, within its time)."""
        if not self.process.is_alive():
            return DIED
        return LATE if self.elapsed() >= timeout_s else None

    def stop(self) -> None:
        """Kill (if it still runs) and reap it, so its exit code is known."""
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        try:
            self.conn.close()
        except OSError:
            pass

    def detail(self, fate: str, timeout_s: float) -> str:
        return late_detail(timeout_s) if fate == LATE else died_detail(self.process.exitcode)
