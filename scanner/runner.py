"""Running a batch of uploads through a scan engine with the results database: the part of
``scan`` (and ``survey``) between listing the uploads and printing the verdicts.

The one promise kept here is that **every upload gets its verdict**: each path given to
:func:`scan_uploads` comes out exactly once (unless ``--resume`` skipped it as unchanged, which
is counted), either scanned or as a copy of the verdicts of identical content, and is recorded
in the database. Identical content is scanned once per run (and not again in later runs with
the same scanner, library and model versions).
"""

from __future__ import annotations

import dataclasses
import os
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from scanner.batch import Upload
from scanner.engines.base import Engine
from scanner.verdict import Verdict

Result = tuple[Upload, list[Verdict]]


@dataclass
class RunStats:
    unchanged: int = 0
    """Skipped by --resume: same path, size, mtime and versions as a recorded scan."""
    copied: int = 0
    """Not scanned: identical content (sha256) already had results."""
    rescanned: int = 0
    """Duplicates scanned after all, because their original changed while it was scanned."""


def _copies(upload: Upload, originals: list[Verdict], source: str) -> list[Verdict]:
    return [dataclasses.replace(v, path=upload.path, copied_from=source) for v in originals]


def _stat(upload: Upload) -> tuple[int | None, int | None]:
    if "://" in upload.path:  # remote: no cheap stat or hash, so not deduplicated
        return None, None
    try:
        st = os.stat(upload.path)
    except OSError:
        return None, None
    return st.st_size, st.st_mtime_ns


def _take(sent: deque[tuple[Upload, str | None]], upload: Upload) -> str | None:
    """The sha256 hashed for this result's upload (the first one sent: engines keep input order)."""
    for i, (given, sha) in enumerate(sent):
        if given.path == upload.path:
            del sent[i]
            return sha
    return None


def scan_uploads(  # noqa: C901 - one state machine, kept in one place on purpose
    uploads: Iterable[Upload],
    pool: Engine,
    context: Any,
    db: Any = None,
    resume: bool = False,
    stats: RunStats | None = None,
) -> Iterator[Result]:
    """Drive an engine over uploads, with the results DB when one is given.

    Yields ``(upload, verdicts)`` once per upload: scanned files in input order; a file whose
    content (sha256) was scanned earlier in this run or, with the same versions, in an earlier
    run gets copies of those verdicts (``copied_from`` names the original), yielded just after
    the original's result (or, for earlier runs, before the next scanned result). With
    ``resume``, unchanged files are skipped and only counted in ``stats``.

    Why it is built this way: the engine reads the uploads lazily, a few ahead of its results,
    so a duplicate may be met while its original is still being scanned (it is parked until
    the original's result comes) or after (the database, or this run's table of failed
    results, answers). If the original could not be read at all (worker crashed, time or
    memory limit), its duplicates get copies of that ``unscannable`` verdict: identical bytes
    would meet the same fate, and an uploader must not be able to multiply a 300-second hang
    by uploading it many times. If the original's bytes changed while it was scanned (its
    verdict's sha256 is not the one hashed here), its duplicates are scanned themselves.
    """
    from scanner._version import __version__
    from scanner.inspect import file_sha256

    stats = stats if stats is not None else RunStats()
    if db is None:
        yield from pool.scan(uploads)
        return
    versions = (__version__, context.library_version, context.model_version)
    facts: dict[str, tuple[int | None, int | None]] = {}
    sent: deque[tuple[Upload, str | None]] = deque()  # given to the engine, in order, with their sha256
    in_flight: set[str] = set()  # sha256 of content being scanned
    parked: dict[str, list[Upload]] = {}  # sha256 -> duplicates waiting for its result
    unreadable: dict[str, tuple[str, list[Verdict]]] = {}  # sha256 -> (path, verdicts) without a sha256 to look up
    ready: deque[Result] = deque()  # copies of earlier results, to yield
    rescan: list[Upload] = []

    def feed() -> Iterator[Upload]:
        for upload in uploads:
            size, mtime = _stat(upload)
            if resume and size is not None and db.is_current(upload.path, size, mtime, *versions):
                stats.unchanged += 1
                continue
            facts[upload.path] = (size, mtime)
            sha = file_sha256(upload.path) if size is not None else None
            if sha is not None:
                if sha in in_flight:
                    parked[sha].append(upload)
                    continue
                if sha in unreadable:
                    source, verdicts = unreadable[sha]
                    ready.append((upload, _copies(upload, verdicts, source)))
                    continue
                earlier = db.by_sha256(sha, *versions)
                if earlier:
                    ready.append((upload, _copies(upload, earlier, earlier[0].path)))
                    continue
                in_flight.add(sha)
                parked[sha] = []
            sent.append((upload, sha))
            yield upload

    def record(upload: Upload, verdicts: list[Verdict]) -> None:
        db.record(upload.path, *facts.get(upload.path, (None, None)), verdicts)

    def flush_ready() -> Iterator[Result]:
        while ready:
            item = ready.popleft()
            stats.copied += 1
            record(*item)
            yield item

    def release(sha: str, original: Upload, verdicts: list[Verdict]) -> Iterator[Result]:
        """The original's result is in: give its parked duplicates their verdicts."""
        in_flight.discard(sha)
        dups = parked.pop(sha, [])
        shas = {v.sha256 for v in verdicts}
        if shas - {sha, None}:  # the file changed between hashing and scanning
            rescan.extend(dups)
            return
        if not verdicts or shas == {None}:  # never read: the database cannot give it back by sha256
            unreadable[sha] = (original.path, verdicts)
        for dup in dups:
            copy = (dup, _copies(dup, verdicts, original.path))
            stats.copied += 1
            record(*copy)
            yield copy

    for upload, verdicts in pool.scan(feed()):
        yield from flush_ready()
        sha = _take(sent, upload)
        record(upload, verdicts)
        yield upload, verdicts
        if sha is not None:
            yield from release(sha, upload, verdicts)
    yield from flush_ready()
    for dups in parked.values():  # an engine that lost a result: its duplicates still get one
        rescan.extend(dups)
    parked.clear()
    if rescan:
        stats.rescanned += len(rescan)
        for upload, verdicts in pool.scan(iter(rescan)):
            record(upload, verdicts)
            yield upload, verdicts
    db.commit()
