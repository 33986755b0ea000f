"""A task sent to a scan worker that has just died (its end of the pipe closed) stays queued for
the parent to read the worker's fate; the send itself must not end the scan. On a loaded machine
the parent sent a duplicate to a worker that had crashed on the original, and the
BrokenPipeError became an internal error of the whole scan (tests/integration/test_runner.py::
test_duplicates_of_a_crashed_original_get_its_verdict, in CI)."""

from __future__ import annotations

import multiprocessing
from collections import deque

from scanner.engines.parent import DIED, ForkedWorker


def test_a_task_sent_to_a_dead_worker_stays_queued_and_its_fate_is_died() -> None:
    mp = multiprocessing.get_context("fork")
    parent, child = mp.Pipe()
    process = mp.Process(target=child.close)  # a worker that exits at once, as a crashed one does
    process.start()
    child.close()
    process.join(10)
    worker = ForkedWorker.__new__(ForkedWorker)  # its state without forking a scan worker
    worker.process, worker.conn, worker.queued, worker.started = process, parent, deque(), 0.0
    worker.send(1, "/uploads/copy1.stl")
    worker.send(2, "/uploads/copy2.stl")
    assert list(worker.queued) == [1, 2]
    assert worker.reply() is None
    assert worker.fate(300.0) == DIED
