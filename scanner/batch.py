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


@dataclass
class RunStats:
    unchanged: int = 0
    """Skipped by --resume: same path, size, mtime and versions as a recorded scan."""
    copied: int = 0
    """Not scanned: identical content (sha256) already had results."""


def scan_uploads(uploads, pool, context, db=None, resume: bool = False, stats: RunStats | None = None):  # noqa: ANN001, ANN201
    """Drive a worker pool over uploads, with the results DB when one is given.

    Yields ``(upload, verdicts)``: scanned files in input order; files whose content was
    already scanned (same sha256, same versions) get copies of those verdicts, yielded just
    after the result they copy (or, for results from an earlier run, before the next scanned
    result). With ``resume``, unchanged files are skipped and only counted.
    """
    import dataclasses

    from scanner import __version__
    from scanner.inspect import file_sha256

    stats = stats if stats is not None else RunStats()
    if db is None:
        yield from pool.scan(uploads)
        return
    versions = (__version__, context.library_version, context.model_version)
    facts: dict[str, tuple[int | None, int | None]] = {}
    waiting: dict[str, list[Upload]] = {}
    ready: list[tuple[Upload, list]] = []
    scanning: set[str] = set()

    def copies(upload: Upload, originals: list, source: str) -> list:
        out = []
        for v in originals:
            c = dataclasses.replace(v, path=upload.path, copied_from=source)
            out.append(c)
        return out

    def feed():  # noqa: ANN202
        for upload in uploads:
            try:
                if "://" in upload.path:
                    raise OSError("remote: no cheap stat or hash; not deduplicated")
                st = os.stat(upload.path)
                size, mtime = st.st_size, st.st_mtime_ns
            except OSError:
                size = mtime = None
            if resume and size is not None and db.is_current(upload.path, size, mtime, *versions):
                stats.unchanged += 1
                continue
            facts[upload.path] = (size, mtime)
            sha = file_sha256(upload.path) if size is not None else None
            if sha and sha in scanning:
                waiting.setdefault(sha, []).append(upload)
                continue
            if sha:
                earlier = db.by_sha256(sha, *versions)
                if earlier:
                    ready.append((upload, copies(upload, earlier, earlier[0].path)))
                    continue
                scanning.add(sha)
            yield upload

    for upload, verdicts in pool.scan(feed()):
        while ready:
            item = ready.pop(0)
            stats.copied += 1
            db.record(item[0].path, *facts[item[0].path], item[1])
            yield item
        db.record(upload.path, *facts.get(upload.path, (None, None)), verdicts)
        yield upload, verdicts
        sha = verdicts[0].sha256 if verdicts else None
        for dup in waiting.pop(sha, []) if sha else []:
            stats.copied += 1
            dup_verdicts = copies(dup, verdicts, upload.path)
            db.record(dup.path, *facts[dup.path], dup_verdicts)
            yield dup, dup_verdicts
    for item in ready:
        stats.copied += 1
        db.record(item[0].path, *facts[item[0].path], item[1])
        yield item
    db.commit()
