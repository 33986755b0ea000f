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
