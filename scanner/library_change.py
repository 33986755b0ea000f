"""Has the library at a path changed, and can it be loaded now? The one answer ``watch`` and
``serve --reload-library`` both use to pick up a new library without a restart.

Why a stamp of (resolved folder, manifest mtime, size, inode): ``signatures update`` swaps the
library symlink to a new folder with one rename, and ``signatures add`` rewrites
``manifest.json`` last - either way the stamp differs, even when the new folder's manifest has
the very same mtime as the old one's (the folder is part of the stamp).

Why two kinds of failure: a library that does not verify is *bad* - refused once, looked at
again only when it changes. A load that fails because the folder went away or was swapped while
it was read (an update pruning an old folder), or because of an ``OSError``, is *transient*
(:class:`LibraryUnavailable`): it is retried on the next look, at most once per
:data:`RETRY_EVERY` seconds, and logged the first time and then every :data:`LOG_EVERY`-th, so
a lasting problem does not flood the log.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from scanner.library import LibraryError, SignatureLibrary

Stamp = tuple[str, int, int, int]
"""(folder the path resolves to, manifest mtime_ns, size, inode)."""

RETRY_EVERY = 1.0
"""Seconds between two tries of a library whose load failed for a transient reason."""
LOG_EVERY = 60
"""A transient failure is logged the first time, then every LOG_EVERY-th retry."""


class LibraryUnavailable(LibraryError):
    """The library could not be read just now (an ``OSError``, or its folder was swapped or
    removed during the load): try again later; not a verdict on the library."""


def library_stamp(path: str | os.PathLike[str]) -> Stamp | None:
    """The stamp of the library ``path`` leads to now; None when it is gone (for a moment, or
    for good: nothing to load, the running library stays)."""
    try:
        folder = Path(path).resolve(strict=True)
        st = (folder / "manifest.json").stat()
    except OSError:
        return None
    return (str(folder), st.st_mtime_ns, st.st_size, st.st_ino)


def load_library(path: str | os.PathLike[str], stamp: Stamp | None = None) -> SignatureLibrary:
    """Load the folder ``path`` resolved to when ``stamp`` was taken (now, without one), so a
    swap during the load cannot mix two versions. :class:`LibraryUnavailable` when the failure
    is transient, :class:`LibraryError` when the library itself is bad."""
    stamp = stamp or library_stamp(path)
    folder = Path(stamp[0]) if stamp else Path(path).resolve()
    try:
        return SignatureLibrary.load(folder)
    except OSError as exc:
        raise LibraryUnavailable(f"library {folder} could not be read: {exc}") from None
    except LibraryError as exc:
        if stamp is not None and library_stamp(path) != stamp:
            raise LibraryUnavailable(f"library {path} changed while it was loaded: {exc}") from None
        raise


class ChangeDetector:
    """Which library stamp is new since the last one settled; retries transient failures."""

    def __init__(self, path: str | os.PathLike[str], log: logging.Logger,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.path = Path(path)
        self.log = log
        self.clock = clock
        self.failures = 0
        """Transient failures in a row (0 after a load that settled)."""
        self._seen: Stamp | None = None
        self._retry_at = 0.0

    def pending(self) -> Stamp | None:
        """The library's stamp when it changed since the last one settled and is due for a
        look (a transient failure waits :data:`RETRY_EVERY`); None otherwise."""
        stamp = library_stamp(self.path)
        if stamp is None or stamp == self._seen:
            return None
        if self.failures and self.clock() < self._retry_at:
            return None
        return stamp

    def seen(self, stamp: Stamp | None) -> None:
        """``stamp`` is settled: loaded, the version running, or a bad library refused."""
        if self.failures:
            self.log.info("library %s loaded after %d transient failure(s)", self.path, self.failures)
        self._seen, self.failures = stamp, 0

    def failed(self, error: str) -> None:
        """A transient failure: the change stays unsettled, and the next look (after
        :data:`RETRY_EVERY` seconds) loads whatever the path leads to then. Logged the first
        time and every :data:`LOG_EVERY`-th."""
        self.failures += 1
        self._retry_at = self.clock() + RETRY_EVERY
        if self.failures == 1 or self.failures % LOG_EVERY == 0:
            self.log.warning("library %s could not be loaded (transient, failure %d; retrying every %g s): %s",
                             self.path, self.failures, RETRY_EVERY, error)  # fmt: skip
