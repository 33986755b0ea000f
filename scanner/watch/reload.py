"""The watch daemon's library reload: notice that the library folder changed, load and verify
the new one, and hand it over; the daemon switches its workers to it between files.

Why polling a stamp: ``signatures update`` replaces the library symlink with one rename, and
``signatures add`` rewrites ``manifest.json`` last - either way the manifest the path leads to
is another file (inode, size or mtime) in a folder, which one ``stat`` a second notices
(:mod:`scanner.library_change`, shared with ``serve --reload-library``). The new folder is
loaded through the path it resolved to when the change was seen, so a second swap during the
load cannot mix two versions; a library that does not verify, cannot be read or holds no
signatures is refused, and the running one stays; one that could not be read just now (an
update pruned the folder during the load) is tried again on a later housekeeping tick.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from scanner.library import LibraryError, SignatureLibrary
from scanner.library_change import ChangeDetector, LibraryUnavailable, Stamp, load_library

__all__ = ["LibraryWatch", "Refusal", "Stamp"]

log = logging.getLogger("meshscan.watch")


@dataclass
class Refusal:
    """A changed library that could not be used (the running one stays)."""

    error: str
    library_version: str | None
    """The version on disk when it was refused, if its manifest could be read."""


class LibraryWatch:
    """Tells the daemon when the library at ``path`` (a folder, or the symlink ``signatures
    update`` manages) holds another version than ``version``, and loads it. The change
    detection is :class:`scanner.library_change.ChangeDetector`, shared with ``serve``."""

    def __init__(self, path: str | os.PathLike[str], version: str | None) -> None:
        self.path = Path(path)
        self.version = version
        self.changes = ChangeDetector(self.path, log)

    def check(self) -> SignatureLibrary | Refusal | None:
        """The new library when the one on disk changed to another version; a
        :class:`Refusal` when it changed but cannot be used (said once); None when nothing
        changed, or when it could not be read just now (tried again on a later call)."""
        stamp = self.changes.pending()
        if stamp is None:
            return None
        on_disk = _manifest_version(Path(stamp[0]))
        if on_disk == self.version:
            self.changes.seen(stamp)
            return None  # rewritten with the same content (or the start-up check)
        try:
            lib = load_library(self.path, stamp)
        except LibraryUnavailable as exc:
            self.changes.failed(str(exc))
            return None
        except LibraryError as exc:
            self.changes.seen(stamp)
            return Refusal(str(exc), on_disk)
        self.changes.seen(stamp)
        if len(lib) == 0:
            return Refusal(f"library {self.path} holds no signatures: not switching to it", on_disk)
        return lib

    def accepted(self, version: str | None) -> None:
        """The daemon now scans with ``version``."""
        self.version = version


def _manifest_version(folder: Path) -> str | None:
    try:
        return json.loads((folder / "manifest.json").read_text("utf-8")).get("library_version")
    except (OSError, ValueError, AttributeError):
        return None
