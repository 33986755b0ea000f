"""Checksums of a library's files without hashing a gigabyte at every open.

The manifest records every file's sha256 (``files``). Hashing them all at each open made a
1M-signature library cost seconds to open, so an open hashes:

- every file below :data:`HASH_ALWAYS_BELOW` bytes, always (the whole demo library, every
  allowlist of ordinary size: milliseconds);
- a larger file only when it has no *verification stamp* that still holds. A stamp is written
  after the file was hashed in full and found equal to the manifest's checksum; it records the
  checksum and the file's (size, mtime, ctime, inode, device). Any write to the file changes its
  ctime - which, unlike mtime, no unprivileged program can set back - and a replaced file has a
  new inode, so a file changed in place or swapped after it was verified no longer matches its
  stamp and is hashed again (and refused if it differs from the manifest). A stamp is only
  written for a file whose ctime is at least :data:`RACY_SECONDS` older than the start of the
  hash ("racily clean" files, as git calls them: a write within the same timestamp tick could
  otherwise go unseen), so the first open after a save hashes everything, later opens nothing
  big.

Stamps live in ``verified.json`` inside the library folder, or - where the folder is read-only
- in the user's cache folder (``$XDG_CACHE_HOME/meshscan/verified/``). They are a cache, not a
trust anchor: a stamp says "this exact file was hashed and matched"; forging one needs write
access to the folder, which could equally rewrite the manifest itself (the checksums detect
corruption and partial tampering, not an owner of the folder; signed bundles are the answer
to that, see :mod:`scanner.exchange`). ``meshscan signatures verify`` ignores stamps and hashes
every file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from scanner.util import sha256_path

STAMP_FILE = "verified.json"
HASH_ALWAYS_BELOW = 1 << 20
"""Files smaller than this (bytes) are hashed at every open: cheaper than trusting a stamp."""
RACY_SECONDS = 2.0
"""A file changed less than this long before it was hashed gets no stamp (hashed next time)."""
log = logging.getLogger(__name__)


def _stat_key(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def _cache_stamp_path(root: Path) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:32]
    return base / "meshscan" / "verified" / f"{key}.json"


def read_stamps(root: Path) -> dict[str, Any]:
    """The stamps recorded for ``root`` (empty when none or unreadable: everything is hashed)."""
    for path in (root / STAMP_FILE, _cache_stamp_path(root)):
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("files"), dict):
            return data["files"]
    return {}


class Checker:
    """Checks files of one library against the manifest's checksums, trusting stamps unless
    ``full``; remembers which files it hashed, so the caller stamps them once the library
    has loaded."""

    def __init__(self, root: Path, full: bool = False) -> None:
        self.root = root
        self.stamps = {} if full else read_stamps(root)
        self.fresh: dict[str, list[Any]] = {}
        """name -> stamp of the files hashed (and found equal) now and old enough to stamp."""
        self.hashed: set[str] = set()

    def matches(self, name: str, expected: str) -> bool:
        """Whether the file equals ``expected`` (sha256); raises OSError when unreadable."""
        path = self.root / name
        before = _stat_key(path)
        stamp = self.stamps.get(name)
        if before[0] >= HASH_ALWAYS_BELOW and stamp == [*before, expected]:
            return True
        started = time.time_ns()
        ok = sha256_path(path) == expected
        self.hashed.add(name)
        if ok and before[0] >= HASH_ALWAYS_BELOW and _stat_key(path) == before:
            if before[2] < started - int(RACY_SECONDS * 1e9):
                self.fresh[name] = [*before, expected]
        return ok

    def problems(self, files: dict[str, str], names: list[str] | tuple[str, ...]) -> list[str]:
        """Every file of ``names`` without a checksum, missing, or not equal to its checksum."""
        out = []
        for name in names:
            path = self.root / name
            if name not in files:
                out.append(f"{name} has no checksum in the manifest")
            elif not path.is_file():
                out.append(f"{name} is missing")
            elif not self.matches(name, files[name]):
                out.append(f"{name} does not match its checksum (modified or corrupted)")
        return out

    def record(self) -> None:
        """Write the stamps of the files verified now (kept with the still-valid old ones); a
        folder that cannot be written falls back to the user's cache, and failing that the
        files are simply hashed again next time."""
        if not self.fresh:
            return
        stamps = {**read_stamps(self.root), **self.fresh}
        data = json.dumps({"format": "meshscan-verified", "files": stamps}, indent=1).encode()
        for path in (self.root / STAMP_FILE, _cache_stamp_path(self.root)):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{path.name}.{os.getpid()}")
                tmp.write_bytes(data)
                os.replace(tmp, path)
                return
            except OSError as exc:
                log.debug("cannot write verification stamps to %s: %s", path, exc)
