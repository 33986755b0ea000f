"""Event intake: one watchdog observer per watched folder (recursive) feeding a queue.

The observer threads do nothing but queue events and wake the daemon's loop through a pipe;
every decision is taken by the single-threaded loop (:mod:`scanner.watch.settle`), so no state
is shared between threads. Only the event types that say something about a file's content are
asked for, plus opens (an open during a file's quiet period restarts it; the daemon's own reads
open files that are not waiting, and are ignored) - not close-without-write.

When the kernel's inotify queue overflows, events are lost. watchdog 7.1 and later read the
kernel's ``IN_Q_OVERFLOW`` event, log it at WARNING on ``watchdog.observers.inotify_c`` ("Inotify
queue overflowed; filesystem events were lost") and rebuild the recursive watches; that log
record is the only way the overflow reaches an event handler. :class:`OverflowAlarm` turns it
into a request for an immediate reconciliation pass, which finds whatever the lost events would
have announced. Earlier watchdog releases dropped ``IN_Q_OVERFLOW`` without a word (watchdog
issue #654), so the alarm could never fire: hence ``watchdog>=7.1`` in pyproject.toml, and
tests/integration/test_watch_overflow.py, which overflows a real daemon's queue.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
from collections.abc import Callable

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

EVENT_FILTER = [
    FileCreatedEvent, FileModifiedEvent, FileClosedEvent, FileOpenedEvent, FileMovedEvent, FileDeletedEvent,
    DirCreatedEvent, DirMovedEvent, DirDeletedEvent,
]  # fmt: skip


def has_close_events() -> bool:
    """Whether the platform's observer reports close-after-write (inotify, on Linux)."""
    return sys.platform.startswith("linux")


class Waker:
    """A self-pipe: any thread can wake the loop blocked in ``multiprocessing.connection.wait``."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)

    def wake(self) -> None:
        try:
            os.write(self.write_fd, b"\0")
        except (BlockingIOError, OSError):
            pass  # the pipe is full: the loop is awake anyway

    def clear(self) -> None:
        try:
            while os.read(self.read_fd, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass


class QueueingHandler(FileSystemEventHandler):
    """Runs in the observer thread: queue the event and wake the loop, nothing else."""

    def __init__(self, events: queue.SimpleQueue[FileSystemEvent], waker: Waker) -> None:
        self.events, self.waker = events, waker

    def dispatch(self, event: FileSystemEvent) -> None:
        self.events.put(event)
        self.waker.wake()


class OverflowAlarm(logging.Handler):
    """Calls ``on_overflow`` when watchdog reports that inotify dropped events (both of its
    overflow warnings contain the word; asking twice for a reconciliation is asking once).

    ``emit`` runs in the observer thread, so ``on_overflow`` must only set a flag and wake
    the loop."""

    LOGGERS = ("watchdog.observers.inotify", "watchdog.observers.inotify_c")

    def __init__(self, on_overflow: Callable[[], None]) -> None:
        super().__init__(logging.WARNING)
        self.on_overflow = on_overflow

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.on_overflow()

    def install(self) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).addHandler(self)

    def remove(self) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).removeHandler(self)


def start_observer(roots: list[str], handler: FileSystemEventHandler):  # noqa: ANN201 - watchdog BaseObserver
    """One recursive watch per root, on the platform's native observer (inotify on Linux);
    ``observer.meshscan_watches`` maps each root to its watch (for :func:`rearm`)."""
    observer = Observer()
    observer.meshscan_watches = {}
    for root in roots:
        observer.meshscan_watches[root] = observer.schedule(handler, root, recursive=True, event_filter=EVENT_FILTER)
    observer.start()
    return observer


def rearm(observer, handler: FileSystemEventHandler, root: str) -> None:  # noqa: ANN001 - watchdog BaseObserver
    """Watch ``root`` anew (its folder was deleted and recreated, or replaced): the old watch
    is bound to an inode that is gone. Raises OSError if the folder vanished again meanwhile."""
    old = observer.meshscan_watches.pop(root, None)
    if old is not None:
        try:
            observer.unschedule(old)
        except KeyError:
            pass  # its emitter already stopped and was removed
    observer.meshscan_watches[root] = observer.schedule(handler, root, recursive=True, event_filter=EVENT_FILTER)
