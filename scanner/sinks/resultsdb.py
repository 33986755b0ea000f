"""The results database (SQLite, WAL): every verdict with the file's size, mtime and sha256.

It makes a long batch run resumable - ``--resume`` skips files whose path, size and mtime are
unchanged since they were scanned with the same scanner, library and model versions - and it makes
identical content under several paths cost one scan: a file whose sha256 already has results
with the same versions gets a copy of them, marked ``"copied_from"`` in the record. Writes are
batched in transactions, so Ctrl-C or ``kill -9`` loses at most the uncommitted batch and
never leaves the database inconsistent. ``meshscan report`` and ``meshscan review`` read it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

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
"""
SCHEMA_VERSION = "1"


class NotAResultsDB(Exception):
    """A file that is not a results database (``reason``: ``no-database`` or
    ``not-a-results-database``), for the commands that only read one."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def local_abspath(path: str) -> str:
    """``path`` made absolute if it is a local path; URLs (``s3://...``) unchanged."""
    return path if "://" in path else os.path.abspath(path)


class ResultsDB:
    def __init__(
        self, path: str | Path, batch_size: int = 16, batch_seconds: float = 1.0, absolute_paths: bool = False
    ) -> None:
        """``absolute_paths``: record (and look up) local paths as absolute paths, so that the
        database means the same files whatever the working directory of whoever reads it
        (``scan --db`` then ``review`` from elsewhere). URLs are kept as they are."""
        self.path = Path(path)
        self.absolute_paths = absolute_paths
        self.conn = sqlite3.connect(self.path)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(SCHEMA)
        self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
        self.conn.commit()
        self.batch_size, self.batch_seconds = batch_size, batch_seconds
        self._pending = 0
        self._last_commit = time.monotonic()

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
        path = self._key(path)
        row = self.conn.execute(
            "SELECT 1 FROM results WHERE path = ? AND size = ? AND mtime_ns = ? AND scanner_version = ? "
            "AND library_version IS ? AND model_version IS ? LIMIT 1",
            (path, size, mtime_ns, scanner_version, library_version, model_version),
        ).fetchone()
        return row is not None

    def by_sha256(
        self, sha256: str, scanner_version: str, library_version: str | None, model_version: str | None = None
    ) -> list[Verdict]:
        rows = self.conn.execute(
            "SELECT path, record FROM results WHERE sha256 = ? AND scanner_version = ? AND library_version IS ? "
            "AND model_version IS ? ORDER BY path, member",
            (sha256, scanner_version, library_version, model_version),
        ).fetchall()
        if not rows:
            return []
        first = rows[0][0]
        return [Verdict.from_dict(json.loads(r)) for p, r in rows if p == first]

    def record(self, path: str, size: int | None, mtime_ns: int | None, verdicts: list[Verdict]) -> None:
        """Replace the rows of ``path`` with these verdicts (committed in batches)."""
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
        self._pending += 1
        if self._pending >= self.batch_size or time.monotonic() - self._last_commit > self.batch_seconds:
            self.commit()

    def _key(self, path: str) -> str:
        return local_abspath(path) if self.absolute_paths else path

    @classmethod
    def open_readonly(cls, path: str | Path) -> ResultsDB:
        """An existing results database, opened read-only (never created, never migrated):
        for commands that only read, such as ``meshscan export``. Raises
        :class:`NotAResultsDB` with a reason code otherwise."""
        db = cls.__new__(cls)
        db.path, db.absolute_paths = Path(path), False
        db.batch_size, db.batch_seconds, db._pending, db._last_commit = 1, 0.0, 0, time.monotonic()
        if not db.path.is_file():
            raise NotAResultsDB("no-database", f"{path}: no such results database")
        try:
            db.conn = sqlite3.connect(f"{db.path.resolve().as_uri()}?mode=ro", uri=True)
            found = db.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'results'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise NotAResultsDB("not-a-results-database", f"{path}: not a SQLite database ({exc})") from None
        if found is None:
            db.conn.close()
            raise NotAResultsDB("not-a-results-database", f"{path} has no results table (write one with 'scan --db')")
        return db

    def verdicts(self, verdicts: tuple[str, ...] | list[str] = ()) -> Iterator[Verdict]:
        """Every recorded verdict (or those whose verdict is in ``verdicts``), ordered by path
        and archive member, read lazily: the records ``scan`` wrote, for ``meshscan export``."""
        where = f"WHERE verdict IN ({', '.join('?' * len(verdicts))})" if verdicts else ""
        cursor = self.conn.execute(f"SELECT record FROM results {where} ORDER BY path, member", tuple(verdicts))  # noqa: S608 - placeholders only
        for (record,) in cursor:
            yield Verdict.from_dict(json.loads(record))

    def commit(self) -> None:
        self.conn.commit()
        self._pending = 0
        self._last_commit = time.monotonic()

    def close(self) -> None:
        self.commit()
        self.conn.close()

    def count(self, verdict: str | None = None) -> int:
        if verdict is None:
            return self.conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        return self.conn.execute("SELECT COUNT(*) FROM results WHERE verdict = ?", (verdict,)).fetchone()[0]
