"""The settle stage: decide *when* a file in a watched folder is complete enough to scan.

A pure, single-threaded handler in watchdog's style: the observer thread only queues events;
the daemon's loop calls :meth:`SettleHandler.dispatch` with each one and asks :meth:`due`
which paths are ready. Time and ``stat`` are injected, so unit tests drive it with synthetic
events and a fake clock, without files or threads.

When is a file complete?

* **close-after-write** (``FileClosedEvent``, inotify's ``IN_CLOSE_WRITE`` on Linux): the writer
  closed it. It is scanned after a quiet period (``close_delay``, ``--quiet``, 1 s) that any
  further open, write or close restarts: an upload appended in several open/write/close cycles
  gets one verdict, for its whole content.
* **renamed into place** (``FileMovedEvent``): uploads written under a temporary name and then
  renamed are complete under their final name, and are scanned only under it.
* otherwise (files found by a reconciliation pass, files moved in from outside the tree,
  platforms without close events) when **quiet**: its size and mtime unchanged for ``settle``
  seconds, or its mtime already older than that.
* a file **written but not yet closed**, where the OS reports closes, waits for its close; only
  if it stays quiet for ``open_timeout`` (a writer that hung holding it open) is it scanned
  anyway - and scanned again when it changes.

Temporary and partial names (``*.part``, ``.~*``, dot-files, ...) are ignored; a name that only
looks temporary (a model suffix followed by an unknown one, ``part.stl.uploading``) needs
``temp_quiet`` seconds of silence; a file under an
excluded folder (the quarantine, the state database) is never considered. A file deleted before
it is due is dropped quietly.
"""

from __future__ import annotations

import fnmatch
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from watchdog.events import (
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
    FileSystemEvent,
)

DEFAULT_IGNORE = (
    "*.part", "*.partial", "*.crdownload", "*.download", "*.tmp", "*.temp", "*.swp", "*~",
    ".~*", "~$*", ".*",
)  # fmt: skip
"""Names uploads are written under before they are complete: browsers and download tools
(``.part``, ``.crdownload``), editors and office suites (``.~lock``, ``~$``, ``.swp``), and
dot-files, which is where rsync, scp and most upload servers put the temporary copy they
rename into place."""

MODEL_SUFFIXES = frozenset(
    {"stl", "obj", "3mf", "ply", "off", "amf", "glb", "gltf", "gcode"}
    | {"zip", "gz", "tgz", "bz2", "xz", "zst", "tar", "7z"}
)
"""Suffixes of what uploads of models are called (for the temporary-name heuristic only: what
is scanned is decided by content)."""

Stat = tuple[int, int]
"""(size, mtime_ns) of a regular file."""


def regular_file_stat(path: str) -> Stat | None:
    """(size, mtime_ns) of a regular file, not following symlinks; None for anything else."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    import stat as stat_mod

    if not stat_mod.S_ISREG(st.st_mode):
        return None
    return st.st_size, st.st_mtime_ns


def looks_temporary(path: str) -> bool:
    """A name an uploader writes under before renaming it into place, by a content-independent
    heuristic: a model suffix followed by one that is not (``part.stl.uploading``,
    ``part.stl.1a2b3c``). Such a file is scanned only after ``temp_quiet`` seconds of silence, so
    an upload is not scanned (and quarantined) under a name its uploader is about to rename."""
    parts = os.path.basename(path).lower().split(".")[1:]
    return len(parts) >= 2 and parts[-1] not in MODEL_SUFFIXES and any(p in MODEL_SUFFIXES for p in parts[:-1])


def is_ignored(path: str, patterns: Iterable[str]) -> bool:
    """True when the file's name matches a temporary/partial-name pattern."""
    name = os.path.basename(path)
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


@dataclass
class SettleConfig:
    settle: float = 2.0
    """Seconds a file without a close event must be quiet (size and mtime unchanged)."""
    close_delay: float = 1.0
    """The quiet period (``--quiet``): seconds after a close-after-write or a rename before the
    file is due, restarted by any further open, write or close of it - so an upload appended in
    several open/write/close cycles (resumable uploaders, FTP resume) is scanned once, whole."""
    temp_quiet: float = 30.0
    """Seconds of silence a file under a name that :func:`looks_temporary` needs before it is due."""
    open_timeout: float = 300.0
    """Seconds a written-but-not-closed file must be quiet before it is scanned anyway."""
    ignore: tuple[str, ...] = DEFAULT_IGNORE
    exclude: tuple[str, ...] = ()
    """Absolute folder or file paths never considered (quarantine, state DB, log)."""
    close_events: bool = True
    """Whether the OS reports close-after-write (inotify); without it, quietness decides."""


@dataclass
class Pending:
    path: str
    first_seen: float
    """Clock time the file was first seen in this round (for latency metrics)."""
    last_event: float
    stat: Stat | None = None
    stat_at: float = 0.0
    closed_at: float | None = None
    """Set by a close-after-write or rename with no write since."""
    close_stat: Stat | None = None
    """The file's stat when its close (or rename) was taken in: if it differs when the file
    falls due, it was written again meanwhile and waits for that write's close."""
    writing: bool = False
    """A write was seen and no close yet (only meaningful with close events)."""
    next_check: float = 0.0
    """Clock time at which a file without a close is looked at (stat) again."""


@dataclass(frozen=True)
class Ready:
    path: str
    first_seen: float
    how: str
    """``closed``, ``quiet`` or ``open-timeout``: why it was judged complete."""
    since: float = 0.0
    """Clock time it became complete as far as is known (its close or rename, else when first
    seen): the start of the latency the daemon reports."""
    stat: Stat | None = None
    """Its (size, mtime_ns) when judged complete: a file that differs when it is about to be
    scanned has been written again and must settle again."""


@dataclass
class SettleHandler:
    config: SettleConfig = field(default_factory=SettleConfig)
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    stat: Callable[[str], Stat | None] = regular_file_stat
    pending: dict[str, Pending] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.pending)

    # ------------------------------------------------------------------ intake
    def wanted(self, path: str) -> bool:
        return not is_ignored(path, self.config.ignore) and not self.excluded(path)

    def excluded(self, path: str) -> bool:
        return any(path == ex or path.startswith(ex.rstrip(os.sep) + os.sep) for ex in self.config.exclude)

    def dispatch(self, event: FileSystemEvent) -> None:
        """Take one watchdog event (called from the daemon's loop, never the observer thread)."""
        src = os.fsdecode(event.src_path)
        if isinstance(event, DirDeletedEvent | DirMovedEvent):
            self._drop_under(src)
            return
        if event.is_directory:
            return  # new folders: watchdog emits events for what is inside them
        now = self.clock()
        if isinstance(event, FileMovedEvent):
            dest = os.fsdecode(event.dest_path)
            before = self.pending.pop(src, None)
            if dest and self.wanted(dest):
                p = self._touch(dest, now)
                if before is not None and before.writing:
                    p.writing, p.closed_at = True, None  # renamed while still open: wait for its close
                else:
                    p.closed_at, p.writing, p.close_stat = now, False, self.stat(dest)
            return
        if isinstance(event, FileDeletedEvent):
            self.pending.pop(src, None)
            return
        if not self.wanted(src):
            return
        if isinstance(event, FileOpenedEvent):  # opened again within its quiet period: start it over
            p = self.pending.get(src)
            if p is not None and p.closed_at is not None:
                p.closed_at = p.last_event = now
            return
        if isinstance(event, FileClosedEvent):
            p = self._touch(src, now)
            p.closed_at, p.writing, p.close_stat = now, False, self.stat(src)
        elif isinstance(event, FileModifiedEvent):
            p = self._touch(src, now)
            p.closed_at = None
            p.writing = self.config.close_events
        elif isinstance(event, FileCreatedEvent):
            p = self._touch(src, now)
            p.closed_at = None
        # opened / closed-without-write / attribute events say nothing about content

    def seen(self, path: str, stat: Stat | None = None) -> None:
        """A file found by a reconciliation pass (no event known): it becomes due when quiet."""
        if path in self.pending:
            return
        p = self._touch(path, self.clock())
        if stat is not None:
            p.stat, p.stat_at = stat, p.last_event

    def waits_for_writer(self, p: Pending) -> bool:
        """Still open for writing (its writer decides when it is complete, not the daemon)."""
        return p.writing and p.closed_at is None

    def discard(self, path: str) -> None:
        self.pending.pop(path, None)

    def _touch(self, path: str, now: float) -> Pending:
        p = self.pending.get(path)
        if p is None:
            p = self.pending[path] = Pending(path, first_seen=now, last_event=now)
        p.last_event = now
        return p

    def _drop_under(self, folder: str) -> None:
        prefix = folder.rstrip(os.sep) + os.sep
        for path in [p for p in self.pending if p.startswith(prefix)]:
            del self.pending[path]

    # ------------------------------------------------------------------ decisions
    def due(self) -> list[Ready]:
        """Paths complete enough to scan now (removed from the pending set), oldest first."""
        now, cfg = self.clock(), self.config
        out: list[Ready] = []
        for path, p in list(self.pending.items()):
            if p.closed_at is not None:
                if now - p.closed_at >= self._quiet(path):
                    st = self.stat(path)
                    if st is None:
                        del self.pending[path]
                    elif st != p.close_stat:  # written again since its close: wait for that write's close
                        p.closed_at, p.writing, p.stat, p.stat_at = None, cfg.close_events, st, now
                        p.last_event = p.next_check = now
                    else:
                        out.append(Ready(path, p.first_seen, "closed", p.closed_at, st))
                continue
            if now < p.next_check:
                continue
            how = self._check(p, now)
            if how is not None:
                out.append(Ready(path, p.first_seen, how, p.first_seen, p.stat))
        out.sort(key=lambda r: r.first_seen)
        for r in out:
            del self.pending[r.path]
        return out

    def _quiet(self, path: str) -> float:
        """Seconds after its close (or rename) before ``path`` is due."""
        cfg = self.config
        return max(cfg.close_delay, cfg.temp_quiet) if looks_temporary(path) else cfg.close_delay

    def _check(self, p: Pending, now: float) -> str | None:
        """Stat a file without a close: why it is complete, or None (and when to look again)."""
        cfg = self.config
        settle = max(cfg.settle, cfg.temp_quiet) if looks_temporary(p.path) else cfg.settle
        st = self.stat(p.path)
        if st is None:  # deleted, or no longer a regular file, before it was due: dropped quietly
            del self.pending[p.path]
            return None
        if st != p.stat:  # a change seen now; a first look only tells what the events told
            p.stat, p.stat_at = st, (now if p.stat is not None else p.last_event)
        quiet_since = max(p.last_event, p.stat_at)
        if p.writing:
            if now - quiet_since >= cfg.open_timeout:
                return "open-timeout"
            p.next_check = quiet_since + min(cfg.open_timeout, settle)
            return None
        mtime_age = self.wall() - st[1] / 1e9
        if mtime_age >= settle or now - quiet_since >= settle:
            return "quiet"
        p.next_check = now + max(0.01, min(quiet_since + settle - now, settle - mtime_age))
        return None

    def next_check(self) -> float | None:
        """Seconds until :meth:`due` may have something new (None: nothing pending)."""
        if not self.pending:
            return None
        now = self.clock()
        soonest = min(
            p.closed_at + self._quiet(p.path) if p.closed_at is not None else p.next_check
            for p in self.pending.values()
        )
        return max(0.0, soonest - now)
