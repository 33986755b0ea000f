"""One helper thread per process, for describing a large mesh on a core nobody else uses.

Why (issue 18, item 3: describe 1M triangles in <= 1 s on a 2-core machine): after the surface
and the weld, a mesh's descriptor, patch codes and classifier features are independent, and
almost all of their time is spent inside numpy calls that release the GIL (sorts, gathers,
element-wise arithmetic, BLAS through ``np.dot``). Two threads of one process then share the
work without copying a byte of the mesh: the helper takes the weld, edge sort and bodies
while the scan's own thread samples the whole surface, then both take patch-code blocks.
Every value is computed by the same function on the same input as serially - only which
thread runs it differs - so the results are the same bits (``tests/unit/test_parallel.py``).

When: only where a core would otherwise be idle. ``meshscan scan --jobs N`` with N workers on
N or more cores already uses every core, one file per worker, so its workers never use the
helper (:func:`configure`); a lone worker (``--jobs 1``, a one-worker ``serve``) and the
Python API in a process with a second core do, for meshes of at least
:data:`MIN_TRIANGLES` triangles (below it the hand-offs cost about what a second core saves).

Failure: nothing here changes what an error looks like. A helper that cannot be started
(``RuntimeError`` under an address-space cap) leaves the work to the calling thread; work
handed to the helper that the helper has not started yet is taken back by the caller (a
loaded machine that does not schedule the helper costs no more than computing serially); an
exception in the helper's share is raised in the caller, as the serial call would raise it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

MIN_TRIANGLES = 100_000
"""Surfaces with fewer triangles are described on the calling thread alone. Measured on blobs
(a quiet moment, best of three, serial -> two threads): 20k triangles 33 -> 28 ms, 50k 65 ->
44 ms, 100k 126 -> 77 ms, 200k 273 -> 200 ms, 500k 712 -> 472 ms; a small file's scan (1-5k
triangles, ~10 ms) is not worth a hand-off whose gain shrinks with the work."""

_enabled: bool | None = None
"""None: decided from this process's cores on first use (:func:`enabled`)."""


def spare_cores(workers: int = 1) -> bool:
    """Whether ``workers`` busy processes leave a core of this machine idle (the cores this
    process may run on: ``os.sched_getaffinity``, where the platform has it)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return workers < cores


def configure(enabled: bool | None) -> None:
    """Allow (True) or forbid (False) the helper thread in this process; None: decide from
    the cores (:func:`spare_cores`). A scan worker is told by its parent how many workers
    run beside it."""
    global _enabled
    _enabled = enabled


def enabled() -> bool:
    """Whether this process may describe a large mesh on two threads."""
    global _enabled
    if _enabled is None:
        _enabled = spare_cores(1)
    return _enabled


class _Task:
    """A call that either thread may run, whoever claims it first; the caller waits for it
    only when the helper claimed it."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.claimed = False
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None
        self._lock = threading.Lock()

    def claim(self) -> bool:
        with self._lock:
            if self.claimed:
                return False
            self.claimed = True
            return True

    def run(self) -> None:
        try:
            self.value = self.fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, raised there
            self.error = exc
        finally:
            self.done.set()

    def result(self) -> Any:
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.value


class _Helper:
    """The process's helper thread and its queue of tasks (a daemon: a scan worker that is
    killed or exits never waits for it)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.cond = threading.Condition()
        self.queue: list[_Task] = []
        self.thread = threading.Thread(target=self._loop, name="meshscan-helper", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            with self.cond:
                while not self.queue:
                    self.cond.wait()
                task = self.queue.pop(0)
            if task.claim():
                task.run()

    def put(self, task: _Task) -> None:
        with self.cond:
            self.queue.append(task)
            self.cond.notify()


_helper: _Helper | None = None
_helper_lock = threading.Lock()


def _the_helper() -> _Helper | None:
    """This process's helper thread, started on first use (a forked child starts its own:
    threads do not survive a fork); None when it cannot be started, or when the caller is the
    helper itself (its own work must not wait behind itself)."""
    global _helper
    with _helper_lock:
        if _helper is not None and _helper.pid == os.getpid():
            return None if threading.current_thread() is _helper.thread else _helper
        try:
            _helper = _Helper()
        except RuntimeError:  # can't start a new thread (address-space cap, thread limit)
            _helper = None
            return None
        return _helper


def both(first: Callable[[], T], second: Callable[[], R]) -> tuple[T, R]:
    """``(first(), second())``, ``second`` on the helper thread while this thread runs
    ``first``. ``second`` is taken back and run here if the helper has not started it by
    then; an exception of either is raised here once both have finished (``first``'s
    first)."""
    helper = _the_helper()
    if helper is None:
        return first(), second()
    task = _Task(second)
    helper.put(task)
    try:
        a = first()
    except BaseException:
        if task.claim():  # not started: never run
            task.done.set()
        task.done.wait()  # started: no work of this call goes on after it raised
        raise
    if task.claim():  # not started yet: run it here
        task.run()
    return a, task.result()


def shared_map(fn: Callable[[T], R], items: Sequence[T] | Iterable[T]) -> list[R]:
    """``[fn(x) for x in items]``, the items taken one at a time by this thread and the
    helper, whichever is free; results in the items' order. An item's exception is raised
    here once every item taken has finished (the first item's by position)."""
    items = list(items)
    helper = _the_helper() if len(items) > 1 else None
    if helper is None:
        return [fn(x) for x in items]
    results: list[Any] = [None] * len(items)
    errors: list[BaseException | None] = [None] * len(items)
    lock = threading.Lock()
    state = {"next": 0, "left": len(items)}
    finished = threading.Event()

    def take() -> int | None:
        with lock:
            i = state["next"]
            if i >= len(items) or any(e is not None for e in errors):
                return None
            state["next"] = i + 1
            return i

    def drain() -> None:
        while (i := take()) is not None:
            try:
                results[i] = fn(items[i])
            except BaseException as exc:  # noqa: BLE001 - raised by the caller
                errors[i] = exc
            with lock:
                state["left"] -= 1
                if state["left"] == 0:
                    finished.set()

    helper.put(_Task(drain))
    drain()
    with lock:  # items never taken (an error stopped the taking) are not waited for
        untaken = len(items) - state["next"]
        state["left"] -= untaken
        if state["left"] == 0:
            finished.set()
    finished.wait()
    for e in errors:
        if e is not None:
            raise e
    return results
