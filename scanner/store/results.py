"""The results store (SQLite with WAL, or PostgreSQL): every verdict with the file's size, mtime and sha256.

This module is the one owner of the ``results`` table: its schema and every query on it live
here, and no other module writes SQL on it (``tests/unit/test_results_store.py`` greps the
sources to keep it so). Its users:

* ``scan --db`` / ``survey --db`` (:mod:`scanner.runner`) and ``serve`` record verdicts in
  batched transactions, and ask :meth:`ResultsStore.is_current` (``--resume``: skip files whose
  path, size and mtime are unchanged since they were scanned with the same scanner, library and
  model versions) and :meth:`ResultsStore.by_sha256` (identical content under several paths
  costs one scan: the copy is marked ``"copied_from"``);
* the watch journal (:mod:`scanner.watch.journal`) writes a scan's verdicts, its own journal
  rows and its log position in **one** transaction: it joins an explicit transaction
  (:meth:`ResultsStore.begin` ... :meth:`ResultsStore.commit`), during which the store's own
  batching never commits;
* ``review`` (:mod:`scanner.review.queue`) reads the reviewable rows, ``report``
  (:mod:`scanner.report.records`) every row with its file's size and mtime, ``export`` every
  verdict; they open an existing database (:meth:`ResultsStore.open_existing`) and never create
  or migrate one.

The ``previews`` table holds one PNG per upload sha256 (:mod:`scanner.preview`, rendered by
the scan worker for ``flag`` and ``review`` results and carried beside the verdict as
:attr:`Verdict.preview`): :meth:`ResultsStore.record` writes it with the rows, in the same
batch. The geometry itself is never stored.

The database is a SQLite file (the embedded default) or, given a ``postgresql://`` URL, a
PostgreSQL database that several scanners, daemons and service replicas on several machines
share (:mod:`scanner.store.backend` picks; :mod:`scanner.store.postgres` translates the few
dialect differences, so the queries below are the same text on both).

Batched writes mean Ctrl-C or ``kill -9`` loses at most the uncommitted batch and never leaves
the database inconsistent.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from scanner.store import backend
from scanner.store.backend import DB_ERRORS, DBError, display_name, is_postgres_url
from scanner.util import is_url, utc_now
from scanner.verdict import Verdict

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    path TEXT NOT NULL,
    member TEXT NOT NULL DEFAULT '',
    size INTEGER,
    mtime_ns INTEGER,
    sha256 TEXT,
    verdict TEXT NOT NULL,
    category TEXT,
    reason TEXT,
    scanner_version TEXT,
    library_version TEXT,
    model_version TEXT,
    scanned_at TEXT,
    record TEXT NOT NULL,
    PRIMARY KEY (path, member)
);
CREATE INDEX IF NOT EXISTS results_sha256 ON results (sha256);
CREATE INDEX IF NOT EXISTS results_verdict ON results (verdict);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS previews (sha256 TEXT PRIMARY KEY, png BLOB NOT NULL, created_at TEXT NOT NULL);
"""
SCHEMA_VERSION = "1"

_ITEM_COLUMNS = "path, member, sha256, verdict, category, scanned_at, record"


class NotAResultsDB(Exception):
    """A file that is not a results database (``reason``: ``no-database`` or
    ``not-a-results-database``), for the commands that only open an existing one. ``error``
    is the SQLite error behind it, if there was one."""

    def __init__(self, reason: str, message: str, error: sqlite3.Error | DBError | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.error = error


class NoResultsTable(NotAResultsDB):
    """A readable SQLite database without a ``results`` table (someone else's database): the
    report names it apart from a damaged one."""


@dataclass(frozen=True)
class ResultRow:
    """One row as a reviewer's queue needs it; ``record`` is the stored JSON text, parsed by
    the reader (who decides what an unreadable record means)."""

    path: str
    member: str
    sha256: str | None
    verdict: str
    category: str | None
    scanned_at: str | None
    record: str


def local_abspath(path: str) -> str:
    """``path`` made absolute if it is a local path; URLs (``s3://...``) unchanged."""
    return path if is_url(path) else os.path.abspath(path)


_CURRENT = (
    "FROM results WHERE path = ? AND size = ? AND mtime_ns = ? AND scanner_version = ? "
    "AND library_version IS ? AND model_version IS ?"
)
"""The rows of a file recorded with this size, mtime and scanner, library and model versions."""


class ResultsStore:
    """The ``results`` table of one database (a SQLite file, or a PostgreSQL URL:
    :mod:`scanner.store.backend`), and every query on it."""

    def __init__(
        self, path: str | Path, batch_size: int = 16, batch_seconds: float = 1.0, absolute_paths: bool = False
    ) -> None:
        """Open (creating it and its schema if needed) a database to record into.

        ``batch_size`` / ``batch_seconds``: :meth:`record` commits after this many files or
        this long, unless an explicit transaction is open. ``absolute_paths``: record (and look
        up) local paths as absolute paths, so that the database means the same files whatever
        the working directory of whoever reads it (``scan --db`` then ``review`` from
        elsewhere). URLs are kept as they are."""
        self.path: Path | str = display_name(path) if is_postgres_url(path) else Path(path)
        self.absolute_paths = absolute_paths
        self.conn = backend.connect(path)
        self.dialect = backend.dialect_of(self.conn)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(SCHEMA)
        self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
        self.conn.commit()
        self.batch_size, self.batch_seconds = batch_size, batch_seconds
        self._pending = 0
        self._last_commit = time.monotonic()
        self._held = False

    @classmethod
    def open_existing(cls, path: str | Path, readonly: bool = True, timeout: float = 30.0) -> ResultsStore:
        """An existing results database, never created and never migrated: for ``report``,
        ``export`` and ``review``. The connection is in autocommit mode, so a writer (a review
        decision) says where its transaction starts (:meth:`transaction`). ``readonly`` opens
        it ``mode=ro``: a reader can never change what it reads, and may be all its account
        is allowed to do. Raises :class:`NotAResultsDB` with a reason code otherwise."""
        store = cls.__new__(cls)
        store.absolute_paths = False
        store.batch_size, store.batch_seconds, store._pending = 1, 0.0, 0
        store._last_commit, store._held = time.monotonic(), False
        if is_postgres_url(path):
            store.path, store.dialect = display_name(path), "postgresql"
            try:
                store.conn = backend.connect(path, readonly=readonly, autocommit=True, timeout=timeout)
                found = store.has_table("results")
            except DBError as exc:
                raise NotAResultsDB("no-database", f"{store.path}: {exc}", exc) from None
        else:
            store.path, store.dialect = Path(path), "sqlite"
            if not store.path.is_file():
                raise NotAResultsDB("no-database", f"{path}: no such results database")
            try:
                store.conn = backend.connect(path, readonly=readonly, autocommit=True, timeout=timeout)
                found = store.has_table("results")
            except sqlite3.DatabaseError as exc:
                raise NotAResultsDB("not-a-results-database", f"{path}: not a SQLite database ({exc})", exc) from None
        if not found:
            store.conn.close()
            raise NoResultsTable(
                "not-a-results-database",
                f"{path} has no results table: write one with 'meshscan scan --db' or 'meshscan watch --state'",
            )
        return store

    @classmethod
    def open_readonly(cls, path: str | Path) -> ResultsStore:
        """:meth:`open_existing`, read-only (``meshscan export``)."""
        return cls.open_existing(path, readonly=True)

    def has_table(self, name: str) -> bool:
        """Does the database hold table ``name``? (Readers of a database they did not create.)"""
        return backend.has_table(self.conn, name)

    # ------------------------------------------------------------------ transactions
    def begin(self, immediate: bool = False) -> None:
        """Open an explicit transaction, or join the one that is open: until :meth:`commit`
        (or :meth:`rollback`), :meth:`record` never commits, so rows written through this
        store and through :attr:`conn` by the caller (the watch journal's own tables) commit
        or vanish together. ``immediate`` takes the write lock now (``BEGIN IMMEDIATE``), so
        what the caller reads inside is still true when it commits."""
        if not self.conn.in_transaction:
            self.conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        self._held = True

    def commit(self) -> None:
        """Commit what is written (a batch, or the explicit transaction)."""
        self.conn.commit()
        self._held = False
        self._pending = 0
        self._last_commit = time.monotonic()

    def rollback(self) -> None:
        """Drop what is written since the last commit (SQLite may have rolled back already)."""
        self._held = False
        self._pending = 0
        try:
            self.conn.rollback()
        except DB_ERRORS:
            pass

    @contextmanager
    def transaction(self, immediate: bool = False) -> Iterator[ResultsStore]:
        """``with store.transaction():`` - :meth:`begin`, then commit on success or roll back
        on any exception (a failed commit too) and re-raise. Inside a transaction already
        open, it joins it and leaves the commit to whoever opened it."""
        if self._held:
            yield self
            return
        self.begin(immediate)
        try:
            yield self
            self.commit()
        except BaseException:
            self.rollback()
            raise

    # ------------------------------------------------------------------ writing
    def record(self, path: str, size: int | None, mtime_ns: int | None, verdicts: list[Verdict]) -> None:
        """Replace the rows of ``path`` with these verdicts (committed in batches, or with the
        explicit transaction when one is open)."""
        path = self._key(path)
        self.conn.execute("DELETE FROM results WHERE path = ?", (path,))
        for v in verdicts:
            rec = v.to_dict()
            if self.absolute_paths:
                rec["path"] = path
                if rec.get("copied_from"):
                    rec["copied_from"] = local_abspath(rec["copied_from"])
            self.conn.execute(
                "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (path, v.member or "", size, mtime_ns, v.sha256, v.verdict, v.category, v.reason,
                 v.scanner_version, v.library_version, v.model_version, v.scanned_at, json.dumps(rec)),
            )  # fmt: skip
            if v.preview and v.sha256:
                self._put_preview(v.sha256, v.preview)
        self._written()

    def put_preview(self, sha256: str, png: bytes) -> None:
        """Store (or replace) the preview PNG of the upload with this sha256, committed with
        the current batch (or the explicit transaction when one is open)."""
        self._put_preview(sha256, png)
        self._written()

    def _put_preview(self, sha256: str, png: bytes) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO previews (sha256, png, created_at) VALUES (?, ?, ?)",
            (sha256, sqlite3.Binary(png), utc_now()),
        )

    def _written(self) -> None:
        """One write more in the batch: commit when the batch is full or old (never inside an
        explicit transaction)."""
        self._pending += 1
        if self._held:
            return
        if self._pending >= self.batch_size or time.monotonic() - self._last_commit > self.batch_seconds:
            self.commit()

    def _key(self, path: str) -> str:
        return local_abspath(path) if self.absolute_paths else path

    # ------------------------------------------------------------------ scanning: resume and duplicates
    def is_current(
        self,
        path: str,
        size: int,
        mtime_ns: int,
        scanner_version: str,
        library_version: str | None,
        model_version: str | None = None,
    ) -> bool:
        """Recorded with this size, mtime and the same scanner, library and model versions?"""
        row = self.conn.execute(
            "SELECT 1 " + _CURRENT + " LIMIT 1",
            (self._key(path), size, mtime_ns, scanner_version, library_version, model_version),
        ).fetchone()
        return row is not None

    def recorded_verdicts(
        self,
        path: str,
        size: int,
        mtime_ns: int,
        scanner_version: str,
        library_version: str | None,
        model_version: str | None = None,
    ) -> list[Verdict] | None:
        """The verdicts recorded for ``path`` if it is current (:meth:`is_current`), else None:
        what ``scan --resume`` counts for a file it does not scan again, so that its summary
        and exit code speak for every file under the scanned roots."""
        rows = self.conn.execute(
            "SELECT record " + _CURRENT + " ORDER BY member",
            (self._key(path), size, mtime_ns, scanner_version, library_version, model_version),
        ).fetchall()
        return [Verdict.from_dict(json.loads(r)) for (r,) in rows] or None

    def by_sha256(
        self, sha256: str, scanner_version: str, library_version: str | None, model_version: str | None = None
    ) -> list[Verdict]:
        """The verdicts of one earlier path with these bytes and versions (empty if none)."""
        rows = self.conn.execute(
            "SELECT path, record FROM results WHERE sha256 = ? AND scanner_version = ? AND library_version IS ? "
            "AND model_version IS ? ORDER BY path, member",
            (sha256, scanner_version, library_version, model_version),
        ).fetchall()
        if not rows:
            return []
        first = rows[0][0]
        return [Verdict.from_dict(json.loads(r)) for p, r in rows if p == first]

    def current_files(
        self, scanner_version: str, library_version: str | None, model_version: str | None = None
    ) -> dict[str, tuple[int, int | None]]:
        """(size, mtime_ns) of every path with verdicts from these versions and a known size:
        what the watch daemon need not scan again at start (it drops the paths its journal
        knows were quarantined or deleted)."""
        rows = self.conn.execute(
            "SELECT path, MAX(size), MAX(mtime_ns) FROM results WHERE scanner_version = ? AND library_version IS ? "
            "AND model_version IS ? AND size IS NOT NULL GROUP BY path",  # one size and mtime per path
            (scanner_version, library_version, model_version),
        ).fetchall()
        return {p: (s, m) for p, s, m in rows}

    def current_file(
        self, path: str, scanner_version: str, library_version: str | None, model_version: str | None = None
    ) -> tuple[int, int] | None:
        """:meth:`current_files` for one path, read now (a watch daemon sharing a state asks it
        after claiming a file: another daemon may have recorded it just before)."""
        row = self.conn.execute(
            "SELECT MAX(size), MAX(mtime_ns) FROM results WHERE path = ? AND scanner_version = ? "
            "AND library_version IS ? AND model_version IS ? AND size IS NOT NULL",
            (path, scanner_version, library_version, model_version),
        ).fetchone()
        return None if row is None or row[0] is None else (row[0], row[1])

    # ------------------------------------------------------------------ reading: export, report, review
    def verdicts(self, verdicts: tuple[str, ...] | list[str] = ()) -> Iterator[Verdict]:
        """Every recorded verdict (or those whose verdict is in ``verdicts``), ordered by path
        and archive member, read lazily: the records ``scan`` wrote, for ``meshscan export``."""
        where = f"WHERE verdict IN ({', '.join('?' * len(verdicts))})" if verdicts else ""
        cursor = self.conn.execute(f"SELECT record FROM results {where} ORDER BY path, member", tuple(verdicts))  # noqa: S608 - placeholders only
        for (record,) in cursor:
            yield Verdict.from_dict(json.loads(record))

    def records_with_stat(self) -> Iterator[tuple[str, int | None, int | None]]:
        """Every row's stored JSON record with its file's size and mtime, ordered by path and
        member, read lazily and unparsed: the report checks each record itself."""
        yield from self.conn.execute("SELECT record, size, mtime_ns FROM results ORDER BY path, member")

    def rows(self, verdicts: tuple[str, ...] | list[str]) -> list[ResultRow]:
        """The rows whose verdict is one of ``verdicts`` (indexed): the review queue."""
        marks = ",".join("?" * len(verdicts))
        found = self.conn.execute(
            f"SELECT {_ITEM_COLUMNS} FROM results WHERE verdict IN ({marks})",  # noqa: S608 - placeholders only
            tuple(verdicts),
        )
        return [ResultRow(*r) for r in found]

    def keys(self, verdicts: tuple[str, ...] | list[str] = ()) -> Iterator[tuple[str, str, str | None]]:
        """(path, member, sha256) of every row, or of those whose verdict is in ``verdicts``:
        enough to compute review item ids without reading any record."""
        where = f"WHERE verdict IN ({','.join('?' * len(verdicts))})" if verdicts else ""
        yield from self.conn.execute(f"SELECT path, member, sha256 FROM results {where}", tuple(verdicts))  # noqa: S608 - placeholders only

    def row(self, path: str, member: str) -> ResultRow | None:
        """The row of one path and archive member (``""`` for a whole file)."""
        found = self.conn.execute(
            f"SELECT {_ITEM_COLUMNS} FROM results WHERE path = ? AND member = ?",  # noqa: S608 - constant columns
            (path, member),
        ).fetchone()
        return ResultRow(*found) if found else None

    def size_of(self, path: str, member: str) -> int | None:
        """The recorded size in bytes of one path's file (None if unknown): shown to reviewers."""
        found = self.conn.execute("SELECT size FROM results WHERE path = ? AND member = ?", (path, member)).fetchone()
        return None if found is None or found[0] is None else int(found[0])

    def count(self, verdict: str | None = None) -> int:
        """How many rows (files and archive members), or how many with this verdict."""
        if verdict is None:
            return self.conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        return self.conn.execute("SELECT COUNT(*) FROM results WHERE verdict = ?", (verdict,)).fetchone()[0]

    def preview(self, sha256: str) -> bytes | None:
        """The stored preview PNG of the file with this sha256, or None (no such row, or a
        database written before previews existed): the web review queue shows it beside the
        verdict, so a reviewer need not open the file in another program."""
        if not self.has_table("previews"):
            return None
        row = self.conn.execute("SELECT png FROM previews WHERE sha256 = ?", (sha256,)).fetchone()
        return None if row is None else bytes(row[0])

    # ------------------------------------------------------------------ metadata: what a survey was
    def set_meta(self, key: str, value: str) -> None:
        """Store a text value under ``key`` in the ``meta`` table (``survey --db``: the
        population, seed and sample, so ``report`` can keep them), committed now."""
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
        self.commit()

    def get_meta(self, key: str) -> str | None:
        """The value stored under ``key``, or None (also for a database without ``meta``)."""
        if not self.has_table("meta"):
            return None
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def close(self) -> None:
        """Commit what is pending and close."""
        self.commit()
        self.conn.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_results(target: str | Path, readonly: bool = False) -> ResultsStore:
    """The one factory by target: a SQLite path or a ``postgresql://`` URL. ``readonly``: an
    existing database, read-only (:meth:`ResultsStore.open_existing`); otherwise one to record
    into, created with its schema if needed."""
    return ResultsStore.open_existing(target, readonly=True) if readonly else ResultsStore(target)
