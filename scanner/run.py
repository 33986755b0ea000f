"""A scan run as a service, outside click: an engine, the results store, ``--resume``, the
quarantine, one :class:`RunSummary` that counts everything, and the exit code it implies.

``scan`` and ``survey`` drive a :class:`ScanRun`; ``watch --once`` reports through a
:class:`RunSummary`; so one policy decides every scanning command's code
(:meth:`RunSummary.exit_code`): FOUND when anything was flagged or sent to review (it wins),
else INCOMPLETE when any upload could not be scanned or an action on a result (quarantine)
failed, else OK.

The one promise kept by :func:`scan_uploads` is that **every upload gets its verdict**: each
upload comes out exactly once (unless ``--resume`` skipped it as unchanged, which is counted),
either scanned or as a copy of the verdicts of identical content, and is recorded in the
results store. Identical content is scanned once per run (and not again in later runs with
the same scanner, library and model versions).
"""

from __future__ import annotations

import dataclasses
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from scanner._version import __version__
from scanner.batch import Upload, WalkStats
from scanner.context import ScanContext, with_previews
from scanner.engines.base import Engine, Result
from scanner.errors import MeshscanError
from scanner.exitcode import ExitCode
from scanner.util import is_url
from scanner.verdict import CLEAR, FLAG, REVIEW, UNSCANNABLE, Verdict


class RunError(MeshscanError):
    """The run cannot start (an engine that is not installed, a results store that cannot be
    opened): FATAL, before anything is scanned."""


@dataclass
class RunStats:
    unchanged: int = 0
    """Skipped by --resume: same path, size, mtime and versions as a recorded scan."""
    copied: int = 0
    """Not scanned: identical content (sha256) already had results."""
    rescanned: int = 0
    """Duplicates scanned after all, because their original changed while it was scanned."""


@dataclass
class RunSummary:
    """Everything a run counts, in one place: uploads, results by verdict, errors (results
    that are errors), failed actions, and what the walk and the results store spared."""

    files: int = 0
    """Uploads counted: scanned in this run, or (``--resume``) recorded and unchanged."""
    recorded: int = 0
    """Of :attr:`files`, those counted from their recorded results (``--resume`` skipped them
    as unchanged): the summary and the exit code speak for every file under the scanned
    roots, not only for those scanned this time."""
    counts: dict[str, int] = field(default_factory=lambda: {FLAG: 0, REVIEW: 0, CLEAR: 0, UNSCANNABLE: 0})
    errors: int = 0
    failed_actions: int = 0
    walk: WalkStats = field(default_factory=WalkStats)
    stats: RunStats = field(default_factory=RunStats)

    def add(self, verdicts: list[Verdict], recorded: bool = False) -> None:
        """One upload's results (``recorded``: read back from the results store, not scanned)."""
        self.files += 1
        self.recorded += recorded
        for v in verdicts:
            self.counts[v.verdict] += 1
            self.errors += v.is_error

    @property
    def results(self) -> int:
        return sum(self.counts.values())

    @property
    def found(self) -> bool:
        return bool(self.counts[FLAG] or self.counts[REVIEW])

    @property
    def incomplete(self) -> bool:
        return bool(self.errors or self.failed_actions)

    @property
    def exit_code(self) -> ExitCode:
        """The run's code: the one policy (:meth:`ExitCode.for_run`)."""
        return ExitCode.for_run(found=self.found, incomplete=self.incomplete)


@dataclass(frozen=True)
class RunSettings:
    """How a run is carried out (what the CLI parsed besides the scan context)."""

    engine: str = "local"
    """``local`` (isolated worker processes) or ``dask``."""
    jobs: int | None = None
    """Worker processes (None: all cores)."""
    scheduler: str | None = None
    """Dask scheduler address (None: a LocalCluster)."""
    library: str | None = None
    """The library folder the context was loaded from (Dask workers load it themselves)."""
    db: str | None = None
    """Results store (SQLite) to record every verdict in."""
    absolute_paths: bool = True
    """Record local paths absolute (``scan``), so review and report find them from anywhere."""
    resume: bool = False
    """With ``db``: skip files unchanged since their recorded scan."""
    quarantine: str | None = None
    """Folder that flagged and review uploads are moved or copied into."""
    move: bool = False
    """Quarantine by moving (else copying)."""
    previews: bool = False
    """With ``db``: the scan workers render a PNG preview of each flag and review upload,
    stored beside its results (``scan --db`` unless ``--no-previews``)."""


class RunReporter(Protocol):
    """What a run tells its front end as it goes (the CLI prints it)."""

    def quarantined(self, upload: Upload, target: str) -> None: ...

    def not_quarantined(self, upload: Upload, why: str) -> None: ...


class ScanRun:
    """One run: ``with ScanRun(context, settings) as run: for upload, verdicts in run.scan(uploads)``.
    Entering opens the results store and starts the engine (a fatal :class:`RunError` before
    anything is scanned); every result is counted in :attr:`summary`, recorded, and (needing
    attention, with a quarantine folder) quarantined after the caller has taken it."""

    def __init__(self, context: ScanContext, settings: RunSettings, reporter: RunReporter | None = None,
                 walk: WalkStats | None = None) -> None:  # fmt: skip
        self.context, self.settings, self.reporter = context, settings, reporter
        self.summary = RunSummary(walk=walk if walk is not None else WalkStats())
        self.engine: Any = None
        self.db: Any = None

    def __enter__(self) -> ScanRun:
        self.context = with_previews(self.context, bool(self.settings.db and self.settings.previews))
        self.engine = make_engine(self.context, self.settings)
        self.db = open_results(self.settings) if self.settings.db else None
        try:
            self.engine.__enter__()
        except BaseException:
            self._close_db()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.engine.__exit__(*exc)
        finally:
            self._close_db()

    def _close_db(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None

    def scan(self, uploads: Iterable[Upload]) -> Iterator[Result]:
        s = self.settings

        def unchanged(_: Upload, recorded: list[Verdict]) -> None:
            self.summary.add(recorded, recorded=True)  # already quarantined when it was scanned

        results = scan_uploads(uploads, self.engine, self.context, self.db, s.resume, self.summary.stats, unchanged)
        for upload, verdicts in results:
            self.summary.add(verdicts)
            yield upload, verdicts
            if s.quarantine and any(v.needs_attention for v in verdicts):
                self.summary.failed_actions += not self._quarantine(upload, verdicts)

    def _quarantine(self, upload: Upload, verdicts: list[Verdict]) -> bool:
        """Quarantine one upload; False (and the reporter told why) when it could not be done."""
        from scanner.sinks.quarantine import QuarantineError, quarantine

        assert self.settings.quarantine is not None
        if is_url(upload.path):
            return self._refused(upload, "quarantine works on local files")
        try:
            target = quarantine(upload.path, upload.root, self.settings.quarantine, verdicts, move=self.settings.move)
        except (QuarantineError, OSError) as exc:
            return self._refused(upload, str(exc))
        if self.reporter is not None:
            self.reporter.quarantined(upload, str(target))
        return True

    def _refused(self, upload: Upload, why: str) -> bool:
        if self.reporter is not None:
            self.reporter.not_quarantined(upload, why)
        return False


def make_engine(context: ScanContext, settings: RunSettings) -> Engine:
    """The engine the settings ask for (not yet entered)."""
    jobs = settings.jobs or os.cpu_count() or 1
    if settings.engine == "dask":
        try:
            from scanner.engines.dask_engine import DaskEngine
        except ImportError:
            raise RunError("--engine dask needs Dask: pip install 'meshscan[dask]'") from None
        return DaskEngine(context, settings.library, settings.scheduler, jobs)
    from scanner.engines.local import LocalPool

    limits = context.settings.limits
    return LocalPool(context, jobs, limits.max_seconds, limits.max_memory_bytes)


def open_results(settings: RunSettings) -> Any:
    """The results store, or a fatal error before anything is scanned."""
    from scanner.store.backend import DB_ERRORS, display_name
    from scanner.store.results import ResultsStore

    try:
        return ResultsStore(settings.db, absolute_paths=settings.absolute_paths)
    except (*DB_ERRORS, OSError) as exc:
        raise RunError(f"[io-error] cannot use {display_name(settings.db)} as a results database: {exc}") from None


def _copies(upload: Upload, originals: list[Verdict], source: str) -> list[Verdict]:
    return [dataclasses.replace(v, path=upload.path, copied_from=source) for v in originals]


def _stat(upload: Upload) -> tuple[int | None, int | None]:
    if is_url(upload.path):  # remote: no cheap stat or hash, so not deduplicated
        return None, None
    try:
        st = os.stat(upload.path)
    except OSError:
        return None, None
    return st.st_size, st.st_mtime_ns


Unchanged = Callable[[Upload, list[Verdict]], None]
"""Told of each upload ``--resume`` skips, with its recorded verdicts."""


class _Deduplicated:
    """The state of :func:`scan_uploads` with a results store: what was sent to the engine
    (in order, with its sha256), what is being scanned, the duplicates parked until their
    original's result comes, and results to copy."""

    def __init__(self, engine: Engine, context: Any, db: Any, resume: bool, stats: RunStats,
                 unchanged: Unchanged | None = None) -> None:  # fmt: skip
        self.engine, self.db, self.resume, self.stats = engine, db, resume, stats
        self.unchanged = unchanged
        self.versions = (__version__, context.library_version, context.model_version)
        self.facts: dict[str, tuple[int | None, int | None]] = {}
        self.sent: deque[tuple[Upload, str | None]] = deque()  # given to the engine, in order, with their sha256
        self.in_flight: set[str] = set()  # sha256 of content being scanned
        self.parked: dict[str, list[Upload]] = {}  # sha256 -> duplicates waiting for its result
        self.unreadable: dict[str, tuple[str, list[Verdict]]] = {}  # sha256 -> (path, verdicts) never read
        self.ready: deque[Result] = deque()  # copies of earlier results, to yield
        self.rescan: list[Upload] = []

    def feed(self, uploads: Iterable[Upload]) -> Iterator[Upload]:
        """The uploads the engine must scan; the others are skipped, parked or copied."""
        from scanner.inspect import file_sha256

        for upload in uploads:
            size, mtime = _stat(upload)
            if self.resume and size is not None:
                recorded = self.db.recorded_verdicts(upload.path, size, mtime, *self.versions)
                if recorded is not None:
                    self.stats.unchanged += 1
                    if self.unchanged is not None:
                        self.unchanged(upload, recorded)
                    continue
            self.facts[upload.path] = (size, mtime)
            sha = file_sha256(upload.path) if size is not None else None
            if sha is not None and not self._first_of(sha, upload):
                continue
            self.sent.append((upload, sha))
            yield upload

    def _first_of(self, sha: str, upload: Upload) -> bool:
        """True when ``upload`` is the first of its content to scan; else it is parked or copied."""
        if sha in self.in_flight:
            self.parked[sha].append(upload)
            return False
        if sha in self.unreadable:
            source, verdicts = self.unreadable[sha]
            self.ready.append((upload, _copies(upload, verdicts, source)))
            return False
        earlier = self.db.by_sha256(sha, *self.versions)
        if earlier:
            self.ready.append((upload, _copies(upload, earlier, earlier[0].path)))
            return False
        self.in_flight.add(sha)
        self.parked[sha] = []
        return True

    def record(self, upload: Upload, verdicts: list[Verdict]) -> None:
        self.db.record(upload.path, *self.facts.get(upload.path, (None, None)), verdicts)

    def flush_ready(self) -> Iterator[Result]:
        while self.ready:
            item = self.ready.popleft()
            self.stats.copied += 1
            self.record(*item)
            yield item

    def take(self, upload: Upload) -> str | None:
        """The sha256 hashed for this result's upload (the first one sent: engines keep input order)."""
        for i, (given, sha) in enumerate(self.sent):
            if given.path == upload.path:
                del self.sent[i]
                return sha
        return None

    def release(self, sha: str, original: Upload, verdicts: list[Verdict]) -> Iterator[Result]:
        """The original's result is in: give its parked duplicates their verdicts."""
        self.in_flight.discard(sha)
        dups = self.parked.pop(sha, [])
        shas = {v.sha256 for v in verdicts}
        if shas - {sha, None}:  # the file changed between hashing and scanning
            self.rescan.extend(dups)
            return
        if not verdicts or shas == {None}:  # never read: the store cannot give it back by sha256
            self.unreadable[sha] = (original.path, verdicts)
        for dup in dups:
            copy = (dup, _copies(dup, verdicts, original.path))
            self.stats.copied += 1
            self.record(*copy)
            yield copy

    def run(self, uploads: Iterable[Upload]) -> Iterator[Result]:
        for upload, verdicts in self.engine.scan(self.feed(uploads)):
            yield from self.flush_ready()
            sha = self.take(upload)
            self.record(upload, verdicts)
            yield upload, verdicts
            if sha is not None:
                yield from self.release(sha, upload, verdicts)
        yield from self.flush_ready()
        for dups in self.parked.values():  # an engine that lost a result: its duplicates still get one
            self.rescan.extend(dups)
        self.parked.clear()
        if self.rescan:
            self.stats.rescanned += len(self.rescan)
            for upload, verdicts in self.engine.scan(iter(self.rescan)):
                self.record(upload, verdicts)
                yield upload, verdicts
        self.db.commit()


def scan_uploads(uploads: Iterable[Upload], pool: Engine, context: Any, db: Any = None, resume: bool = False,
                 stats: RunStats | None = None, unchanged: Unchanged | None = None) -> Iterator[Result]:  # fmt: skip
    """Drive an engine over uploads, with the results store when one is given.

    Yields ``(upload, verdicts)`` once per upload: scanned files in input order; a file whose
    content (sha256) was scanned earlier in this run or, with the same versions, in an earlier
    run gets copies of those verdicts (``copied_from`` names the original), yielded just after
    the original's result (or, for earlier runs, before the next scanned result). With
    ``resume``, unchanged files are skipped, counted in ``stats`` and given with their
    recorded verdicts to ``unchanged`` (not yielded: nothing new is written for them).

    Why it is built this way: the engine reads the uploads lazily, a few ahead of its results,
    so a duplicate may be met while its original is still being scanned (it is parked until
    the original's result comes) or after (the store, or this run's table of failed
    results, answers). If the original could not be read at all (worker crashed, time or
    memory limit), its duplicates get copies of that ``unscannable`` verdict: identical bytes
    would meet the same fate, and an uploader must not be able to multiply a 300-second hang
    by uploading it many times. If the original's bytes changed while it was scanned (its
    verdict's sha256 is not the one hashed here), its duplicates are scanned themselves.
    """
    if db is None:
        yield from pool.scan(uploads)
        return
    state = _Deduplicated(pool, context, db, resume, stats if stats is not None else RunStats(), unchanged)
    yield from state.run(uploads)
