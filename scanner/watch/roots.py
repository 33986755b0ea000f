"""Is each watched folder still the one being watched? inotify watches an inode, not a path: a
watched folder deleted and recreated, renamed away and replaced, or hidden by a mount coming
or going leaves the daemon watching nothing, silently. :class:`RootMonitor` compares each
root's (device, inode) with the one the watch was armed on, so the daemon can raise the alarm
(an error line, ``meshscan_watch_root_up{root}`` = 0, no systemd watchdog ping) and re-arm
the watch as soon as the folder exists again."""

from __future__ import annotations

import os

DOWN, BACK = "down", "back"


def identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of the folder at ``path`` (None if there is none)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    import stat

    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


class RootMonitor:
    def __init__(self, roots: list[str]) -> None:
        self.armed: dict[str, tuple[int, int] | None] = {r: identity(r) for r in roots}

    def up(self, root: str) -> bool:
        return self.armed[root] is not None

    def all_up(self) -> bool:
        return all(v is not None for v in self.armed.values())

    def check(self) -> list[tuple[str, str]]:
        """``(root, DOWN)`` for a folder gone (or replaced: its watch is dead either way), then
        ``(root, BACK)`` when a folder exists there again and must be watched anew."""
        changes = []
        for root, armed in self.armed.items():
            now = identity(root)
            if now == armed:
                continue
            if armed is not None:
                changes.append((root, DOWN))
            if now is not None:
                changes.append((root, BACK))
            self.armed[root] = now
        return changes


CANARY_GRACE = 5.0
"""Seconds an event may lag behind the file system (the observer thread, a busy loop) before a
file the listing found unannounced counts as missed."""


class Canary:
    """Does each watch still deliver? The periodic listing (reconcile) cross-checks the event
    stream: a file it finds with no verdict and no pending event, last changed (ctime) after
    its folder's watch was armed, was never announced - unless its event is still on its way,
    so a suspect is cleared by any event about it within the grace period. Those left are
    :meth:`due` as missed: the watch is alive but deaf (a lost inotify watch, another machine
    writing to a network mount), and the daemon raises the alarm and re-arms it.

    Files that changed while no watch could see them are not suspects: before the watch was
    armed (start-up, re-arm) or before an inotify overflow (:meth:`events_lost`)."""

    def __init__(self, grace: float = CANARY_GRACE) -> None:
        self.grace = grace
        self.armed_at: dict[str, float] = {}
        self.lost_at = 0.0
        self.suspects: dict[str, tuple[str, float, float]] = {}
        """``{path: (root, ctime, decide_at)}``"""

    def armed(self, root: str, now: float, lag: float = 0.0) -> None:
        """``root``'s watch (re)armed at ``now``; ``lag``: how late its events may come (a
        polled folder's interval)."""
        self.armed_at[root] = now + lag
        for path in [p for p, (r, _, _) in self.suspects.items() if r == root]:
            del self.suspects[path]

    def events_lost(self, now: float) -> None:
        self.lost_at = now

    def _unexcused(self, root: str, ctime: float) -> bool:
        return root in self.armed_at and ctime > max(self.armed_at[root], self.lost_at) + self.grace

    def listed(self, root: str, path: str, ctime: float, listed_at: float, lag: float = 0.0) -> None:
        """The listing at ``listed_at`` queued ``path`` (no verdict, no pending event)."""
        if self._unexcused(root, ctime):
            self.suspects[path] = (root, ctime, listed_at + self.grace + lag)

    def heard(self, path: str) -> None:
        self.suspects.pop(path, None)

    def due(self, now: float) -> dict[str, list[str]]:
        """``{root: [paths]}`` of the suspects still unannounced after the grace period."""
        missed: dict[str, list[str]] = {}
        for path, (root, ctime, decide_at) in list(self.suspects.items()):
            if decide_at <= now:
                del self.suspects[path]
                if self._unexcused(root, ctime):  # an overflow reported meanwhile explains it
                    missed.setdefault(root, []).append(path)
        return missed
