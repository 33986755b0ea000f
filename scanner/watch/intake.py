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
        self.deaf = False
        """Test hook (:meth:`scanner.watch.daemon.Watcher.request_deafen`): drop every event, as
        a watch the kernel lost would deliver none; cleared when a folder is watched anew."""

    def dispatch(self, event: FileSystemEvent) -> None:
        if self.deaf:
            return
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


NETWORK_FS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs", "afs")
"""File systems where inotify does not see other machines' writes (and ``fuse.*``)."""
AUTO_POLL = 5.0
"""Seconds between two listings of a folder on a network file system when ``--poll`` is not given."""


def fs_type(path: str, mounts: str = "/proc/mounts") -> str | None:
    """The type of the file system holding ``path`` (its longest mount point), None if unknown."""
    try:
        with open(mounts, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    real, best, found = os.path.realpath(path), -1, None
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) > best:
            best, found = len(point), parts[2]
    return found


def is_network_fs(fstype: str | None) -> bool:
    return fstype is not None and (fstype in NETWORK_FS or fstype.startswith("fuse"))


def poll_plan(roots: list[str], poll: float | None) -> dict[str, float]:
    """``{root: seconds}`` of the roots to poll: every root with ``poll`` > 0; with ``poll``
    None, those on a network or FUSE file system (every :data:`AUTO_POLL` s); with 0, none."""
    if poll:
        return dict.fromkeys(roots, poll)
    if poll is None:
        return {r: AUTO_POLL for r in roots if is_network_fs(fs_type(r))}
    return {}


class PolledHandler(QueueingHandler):
    """For a polled folder: a change seen by comparing listings says nothing about whether a
    writer still has the file open (no close events), so a modification is passed on as a
    creation - the file is scanned once its size and mtime stay unchanged for ``--settle``."""

    def dispatch(self, event: FileSystemEvent) -> None:
        if isinstance(event, FileModifiedEvent) and not event.is_directory:
            event = FileCreatedEvent(event.src_path)
        super().dispatch(event)


class Observers:
    """One recursive watch per root: inotify (the platform's native observer), or a
    :class:`~watchdog.observers.polling.PollingObserver` for the roots in ``poll`` (network
    mounts: inotify sees only this machine's writes). Both feed the same queue, so the journal
    and the exactly-once rules do not know which one announced a file."""

    def __init__(self, events: queue.SimpleQueue[FileSystemEvent], waker: Waker, poll: dict[str, float]) -> None:
        from watchdog.observers.polling import PollingObserver

        self.poll = poll
        self.native = Observer()
        self.polling = {s: PollingObserver(timeout=s) for s in sorted(set(poll.values()))}
        self.handler = QueueingHandler(events, waker)
        self.polled_handler = PolledHandler(events, waker)
        self.watches: dict[str, object] = {}

    def _observer(self, root: str):  # noqa: ANN202 - watchdog BaseObserver
        return self.polling[self.poll[root]] if root in self.poll else self.native

    def _schedule(self, root: str) -> None:
        handler = self.polled_handler if root in self.poll else self.handler
        self.watches[root] = self._observer(root).schedule(handler, root, recursive=True, event_filter=EVENT_FILTER)

    def start(self, roots: list[str]) -> None:
        for root in roots:
            self._schedule(root)
        for observer in (self.native, *self.polling.values()):
            observer.start()

    def rearm(self, root: str) -> None:
        """Watch ``root`` anew (its folder was deleted and recreated, or replaced, or its watch
        went deaf): the old watch is bound to an inode that is gone. Raises OSError if the
        folder vanished again meanwhile."""
        self.drop(root)
        self.handler.deaf = self.polled_handler.deaf = False
        self._schedule(root)

    def drop(self, root: str) -> None:
        """Stop watching ``root`` (without a word: :meth:`rearm`, and the tests' lost watch)."""
        old = self.watches.pop(root, None)
        if old is not None:
            try:
                self._observer(root).unschedule(old)
            except KeyError:
                pass  # its emitter already stopped and was removed

    def alive(self, root: str) -> bool:
        """Whether ``root``'s watch still has a running emitter (a polling emitter stops for
        good when its folder is missing at one poll; inotify's when its folder is deleted)."""
        watch = self.watches.get(root)
        if watch is None:
            return False
        emitter = self._observer(root)._emitter_for_watch.get(watch)  # noqa: SLF001 - no public accessor
        return emitter is not None and emitter.is_alive()

    def stop(self, timeout: float) -> None:
        observers = (self.native, *self.polling.values())
        for observer in observers:
            observer.stop()
        for observer in observers:
            if observer.is_alive():
                observer.join(timeout)
