"""The watch daemon's library reload: notice that the library folder changed, load and verify
the new one, and hand it over; the daemon switches its workers to it between files.

Why polling a stamp: ``signatures update`` replaces the library symlink with one rename, and
``signatures add`` rewrites ``manifest.json`` last - either way the manifest the path leads to
is another file (inode, size or mtime), which one ``stat`` a second notices. The new folder is
loaded through the path it resolved to when the change was seen, so a second swap during the
load cannot mix two versions; a library that does not verify, cannot be read or holds no
signatures is refused, and the running one stays.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scanner.library import SignatureLibrary

Stamp = tuple[str, int, int, int]
"""(folder the path resolves to, manifest mtime_ns, size, inode)."""


@dataclass
class Refusal:
    """A changed library that could not be used (the running one stays)."""

    error: str
    library_version: str | None
    """The version on disk when it was refused, if its manifest could be read."""


class LibraryWatch:
    """Tells the daemon when the library at ``path`` (a folder, or the symlink ``signatures
    update`` manages) holds another version than ``version``, and loads it."""

    def __init__(self, path: str | os.PathLike[str], version: str | None) -> None:
        self.path = Path(path)
        self.version = version
        self._seen: Stamp | None = None

    def _stamp(self) -> Stamp | None:
        try:
            folder = self.path.resolve(strict=True)
            st = (folder / "manifest.json").stat()
        except OSError:
            return None  # gone for a moment (or for good): nothing to load, keep the running one
        return (str(folder), st.st_mtime_ns, st.st_size, st.st_ino)

    def check(self) -> SignatureLibrary | Refusal | None:
        """The new library when the one on disk changed to another version; a
        :class:`Refusal` when it changed but cannot be used; None when nothing changed."""
        from scanner.library import LibraryError, SignatureLibrary

        stamp = self._stamp()
        if stamp is None or stamp == self._seen:
            return None
        self._seen = stamp
        folder = Path(stamp[0])
        on_disk = _manifest_version(folder)
        if on_disk == self.version:
            return None  # rewritten with the same content (or the start-up check)
        try:
            lib = SignatureLibrary.load(folder)
        except LibraryError as exc:
            return Refusal(str(exc), on_disk)
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
