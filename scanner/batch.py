"""Turning command-line PATHs into uploads to scan: files as given, folders walked
recursively in sorted order (so runs are reproducible), each file judged by its content."""

from __future__ import annotations

import fnmatch
import os
import stat
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from scanner.util import is_url


@dataclass(frozen=True)
class Upload:
    path: str
    root: str
    """The PATH argument it came from (quarantine keeps paths relative to it)."""


@dataclass
class WalkStats:
    """What a folder walk did not yield, counted (and reported through ``on_skip``)."""

    skipped: int = 0
    """Regular files recognised by content as not a model (text, images, AppleDouble, ...)."""
    excluded: int = 0
    """Files matching an ``--exclude`` glob: the user's choice, counted."""
    missing: list[str] | None = None
    on_skip: Callable[[str, str], None] | None = None
    """Called with (path, why) for every skipped or excluded file (``scan --list-skipped``)."""

    def _skip(self, path: str, why: str, excluded: bool = False) -> None:
        if excluded:
            self.excluded += 1
        else:
            self.skipped += 1
        if self.on_skip is not None:
            self.on_skip(path, why)


def excluded_by(rel: str, patterns: tuple[str, ...] | list[str]) -> str | None:
    """The first glob of ``patterns`` matching the path ``rel`` (relative to the walked
    folder, ``/``-separated), its name, or one of its folders (``.git`` excludes
    ``.git/objects/x``; ``build/*`` excludes ``build/a.stl``)."""
    if not patterns:
        return None
    parts = rel.split("/")
    candidates = [rel, parts[-1]]
    for i in range(1, len(parts)):
        candidates += ["/".join(parts[:i]), parts[i - 1]]
    for pattern in patterns:
        if any(fnmatch.fnmatchcase(c, pattern.rstrip("/")) for c in candidates):
            return pattern
    return None


def skip_reason(path: str) -> str | None:
    """Why a file found in a folder walk (or a watched folder) is not scanned: it is a regular
    file recognised by its content as not a model. None: scan it.

    Only the bytes decide, never the name (uploaders choose names): ``part.json`` holding an
    STL is scanned, ``notes.stl`` holding prose is skipped. Anything that is not a regular
    file (links, FIFOs) and anything that cannot be read is scanned, so that the scan reports
    it; sniffing never follows a link or opens a FIFO.
    """
    from scanner.errors import UnreadableInput
    from scanner.formats.blob import FileBlob
    from scanner.formats.sniff import describe, non_model_kind

    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        kind = non_model_kind(FileBlob(path, sys.maxsize))
    except (OSError, UnreadableInput):
        return None
    return None if kind is None else f"not a model ({describe(kind)})"


def walk_skip_reason(path: str, root: str, exclude: tuple[str, ...] | list[str]) -> tuple[str | None, bool]:
    """Why a file met in a folder walk (``scan DIR`` or ``watch``) is not scanned, and whether
    that is the user's ``--exclude``; (None, False) when it is scanned."""
    rel = os.path.relpath(path, root).replace(os.sep, "/")
    pattern = excluded_by(rel, exclude)
    if pattern is not None:
        return f"excluded (--exclude {pattern})", True
    return skip_reason(path), False


def iter_uploads(
    paths: tuple[str, ...] | list[str],
    stats: WalkStats | None = None,
    exclude: tuple[str, ...] | list[str] = (),
    together: bool = False,
) -> Iterator[Upload]:
    """The uploads under PATHs: files named as given (always scanned); folders and URL
    prefixes walked recursively in sorted order, every regular file - dot-files and files in
    dot-folders too - judged by its content (:func:`skip_reason`), ``exclude`` globs
    applied (:func:`excluded_by`). With ``together``, a local folder is one upload of all its
    files (:mod:`scanner.formats.folder`), not walked; a URL prefix cannot be one."""
    stats = stats if stats is not None else WalkStats()
    stats.missing = stats.missing or []
    for arg in paths:
        if together and is_url(arg):
            raise ValueError(f"--together reads local folders; {arg} is a URL")
        if together and os.path.isdir(arg):
            yield Upload(arg, os.path.dirname(os.path.normpath(arg)) or ".")
            continue
        if is_url(arg):
            yield from _iter_url(arg, stats, tuple(exclude))
            continue
        if os.path.isdir(arg):
            for dirpath, dirnames, filenames in os.walk(arg, followlinks=False):
                dirnames.sort()
                for name in sorted(filenames):
                    path = os.path.join(dirpath, name)
                    why, excluded = walk_skip_reason(path, arg, exclude)
                    if why is not None:
                        stats._skip(path, why, excluded=excluded)
                        continue
                    yield Upload(path, arg)
        elif os.path.exists(arg) or os.path.islink(arg):
            yield Upload(arg, os.path.dirname(arg) or ".")
        else:
            stats.missing.append(arg)
            yield Upload(arg, os.path.dirname(arg) or ".")


def _iter_url(arg: str, stats: WalkStats, exclude: tuple[str, ...]) -> Iterator[Upload]:
    from scanner.errors import UnreadableInput
    from scanner.formats.sniff import describe, non_model_kind
    from scanner.sources import list_url, remote_blob

    try:
        listed = list(list_url(arg))
    except (UnreadableInput, OSError):
        stats.missing.append(arg)
        yield Upload(arg, arg)  # scanning it reports why it cannot be read
        return
    if listed == [arg]:
        yield Upload(arg, arg)  # a single file, named: always scanned
        return
    prefix = arg.rstrip("/") + "/"
    for url in listed:
        rel = url[len(prefix) :] if url.startswith(prefix) else url.rsplit("/", 1)[-1]
        pattern = excluded_by(rel, exclude)
        if pattern is not None:
            stats._skip(url, f"excluded (--exclude {pattern})", excluded=True)
            continue
        try:
            kind = non_model_kind(remote_blob(url))
        except (UnreadableInput, OSError, ValueError):
            kind = None
        if kind is not None:
            stats._skip(url, f"not a model ({describe(kind)})")
            continue
        yield Upload(url, arg)
