"""Turning command-line PATHs into uploads to scan: files as given, folders walked
recursively in sorted order (so runs are reproducible)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

# In folder walks, files with these names are project files, not uploads (the fixtures
# folder holds its generator, for instance). They are counted, never silently dropped, and
# a file named explicitly on the command line is always scanned.
NON_MODEL_SUFFIXES = frozenset(
    {".py", ".pyc", ".md", ".txt", ".csv", ".json", ".toml", ".yaml", ".yml", ".cfg", ".ini"}
)


@dataclass(frozen=True)
class Upload:
    path: str
    root: str
    """The PATH argument it came from (quarantine keeps paths relative to it)."""


@dataclass
class WalkStats:
    skipped_by_name: int = 0
    missing: list[str] | None = None


def iter_uploads(paths: tuple[str, ...] | list[str], stats: WalkStats | None = None) -> Iterator[Upload]:
    stats = stats if stats is not None else WalkStats()
    stats.missing = stats.missing or []
    for arg in paths:
        if "://" in arg:
            from scanner.errors import UnreadableInput
            from scanner.sources import list_url

            try:
                for url in list_url(arg, NON_MODEL_SUFFIXES):
                    yield Upload(url, arg)
            except (UnreadableInput, OSError):
                stats.missing.append(arg)
                yield Upload(arg, arg)  # scanning it reports why it cannot be read
            continue
        if os.path.isdir(arg):
            for dirpath, dirnames, filenames in os.walk(arg, followlinks=False):
                dirnames.sort()
                dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__pycache__"]
                for name in sorted(filenames):
                    if name.startswith(".") or os.path.splitext(name)[1].lower() in NON_MODEL_SUFFIXES:
                        stats.skipped_by_name += 1
                        continue
                    yield Upload(os.path.join(dirpath, name), arg)
        elif os.path.exists(arg) or os.path.islink(arg):
            yield Upload(arg, os.path.dirname(arg) or ".")
        else:
            stats.missing.append(arg)
            yield Upload(arg, os.path.dirname(arg) or ".")
