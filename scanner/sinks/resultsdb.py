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
import sqlite3
import time
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


class ResultsDB:
    def __init__(self, path: str | Path, batch_size: int = 16, batch_seconds: float = 1.0) -> None:
        self.path = Path(path)
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
        self.conn.execute("DELETE FROM results WHERE path = ?", (path,))
        for v in verdicts:
            rec = v.to_dict()
            self.conn.execute(
                "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (path, v.member or "", size, mtime_ns, v.sha256, v.verdict, v.category, v.reason,
                 v.scanner_version, v.library_version, v.model_version, v.scanned_at, json.dumps(rec)),
            )  # fmt: skip
        self._pending += 1
        if self._pending >= self.batch_size or time.monotonic() - self._last_commit > self.batch_seconds:
            self.commit()

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
