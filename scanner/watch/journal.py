"""The watch daemon's state database: verdicts, a per-file journal, actions, and the log.

One SQLite file (WAL, ``synchronous=FULL``) holds:

* ``results`` - the verdicts, through :class:`scanner.store.results.ResultsStore` (the table's
  one owner), so ``meshscan report`` / ``review`` read a watch state DB exactly as a scan DB;
* ``watch_files`` - one row per file seen: path, size, mtime, sha256 and state
  (``scanned``, ``quarantined``, ``deleted``, ...);
* ``watch_actions`` - every action intended (quarantine, command), journalled *before* it is
  done and marked done after; ``webhook_outbox`` (:mod:`scanner.sinks.webhook`) for webhooks;
* ``watch_meta`` - where the JSONL log's acknowledged content ends (inode, length).

Why this makes a crash harmless: a scanned file's verdict rows, its journal row, its action
intents and the new end of the JSONL log are written in **one transaction** (the results
store's explicit transaction, which the journal joins: the store's own batching never commits
inside it); the log lines are appended (and fsynced) just before it commits. Killed before the
commit, nothing of the scan exists: at restart the log is cut back to its recorded end
(removing the lines, whole or partial, of the lost scans) and the reconciliation pass scans the
file again. Killed after it,
the verdict and its log lines exist exactly once and the intents are replayed, each action
being idempotent on replay (see :mod:`scanner.watch.actions`).

A PostgreSQL state holds the same tables and may be shared by several daemons, which claim
each file and action before working on it (:mod:`scanner.watch.leases`, whose
``watch_claims`` table it adds); each daemon keeps its own log's end (``log_position:HOST:PATH``).

A commit that carries action intents is synchronous (``synchronous=FULL``), so an action is
never taken on an intent a power loss could undo; a verdict-only commit is not (WAL
``NORMAL``, safe against any process crash): a power loss can then lose the last verdicts,
which the next start scans again, and the log is cut back with them.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from scanner.sinks.webhook import OUTBOX_SCHEMA, enqueue
from scanner.store.results import ResultsStore
from scanner.verdict import Verdict

SCHEMA = """
CREATE TABLE IF NOT EXISTS watch_files (
    path TEXT PRIMARY KEY,
    root TEXT NOT NULL,
    size INTEGER,
    mtime_ns INTEGER,
    sha256 TEXT,
    state TEXT NOT NULL,
    verdict TEXT,
    seen_at REAL,
    recorded_at REAL,
    detail TEXT
);
CREATE TABLE IF NOT EXISTS watch_actions (
    id TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    root TEXT NOT NULL,
    sha256 TEXT,
    kind TEXT NOT NULL,
    spec TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL DEFAULT 0,
    result TEXT,
    error TEXT,
    created_at REAL NOT NULL,
    done_at REAL
);
CREATE INDEX IF NOT EXISTS watch_actions_state ON watch_actions (state, next_at);
CREATE TABLE IF NOT EXISTS watch_meta (key TEXT PRIMARY KEY, value TEXT);
"""

# watch_files.state
SCANNED, QUARANTINED, DELETED, CHANGED = "scanned", "quarantined", "deleted", "changed"
# watch_actions.state
PENDING, DONE, FAILED, SKIPPED = "pending", "done", "failed", "skipped"


@dataclass(frozen=True)
class Intent:
    """An action to take on one scanned file, journalled with its verdict."""

    kind: str
    """``quarantine``, ``command`` or ``webhook``."""
    spec: str
    """Quarantine folder, command line, or URL."""


@dataclass
class ActionRow:
    id: str
    path: str
    root: str
    sha256: str | None
    kind: str
    spec: str
    payload: str
    attempts: int


def action_id() -> str:
    """A new action's id, made when its verdict is recorded and stored with it in the same
    transaction: every retry and every replay after a crash uses this same id (webhook
    receivers get it as ``Idempotency-Key``, commands as ``MESHSCAN_ACTION_ID``). It is not
    derived from the file: the same bytes uploaded again to the same path, even with the same
    mtime, are a new upload and get new actions."""
    return uuid.uuid4().hex


def payload(path: str, verdicts: list[Verdict], ident: str) -> dict:
    """The document a command reads on stdin and a webhook receives: the file's verdicts."""
    order = ("flag", "review", "unscannable", "clear")
    worst = min((v.verdict for v in verdicts), key=order.index, default="unscannable")
    return {"id": ident, "path": path, "verdict": worst, "verdicts": [v.to_dict() for v in verdicts]}


class Journal:
    def __init__(self, path: str | Path) -> None:
        # The journal commits itself, once per batch of scans: record_scan joins the store's
        # explicit transaction, inside which the store never commits on its own.
        self.results = ResultsStore(path)
        self.conn: sqlite3.Connection = self.results.conn
        self.conn.execute("PRAGMA busy_timeout=10000")
        self.conn.executescript(SCHEMA + OUTBOX_SCHEMA)
        self.conn.commit()
        self.log_path: str | None = None
        self.log_key = "log_position"
        self._durable: bool | None = None
        self.durable(True)

    def close(self) -> None:
        self.results.close()

    def durable(self, on: bool) -> None:
        """Make the next commit synchronous (FULL) or not (NORMAL); call outside a transaction."""
        if on != self._durable:
            self.commit()
            self.conn.execute(f"PRAGMA synchronous={'FULL' if on else 'NORMAL'}")
            self._durable = on

    def commit(self) -> None:
        """Commit the open transaction: every scan recorded since the last commit, with its
        journal rows, intents and log position."""
        self.results.commit()

    # ------------------------------------------------------------------ files
    def recorded(
        self, scanner_version: str, library_version: str | None, model_version: str | None = None
    ) -> dict[str, tuple[int, int]]:
        """(size, mtime_ns) of every path with verdicts from these scanner, library and model
        versions and still in its folder: a file that was quarantined or deleted is a new upload when it
        reappears, even with the same size and mtime (``rsync -t``, ``cp -p``)."""
        current = self.results.current_files(scanner_version, library_version, model_version)
        gone = self.conn.execute(
            "SELECT path FROM watch_files WHERE state IN (?, ?)", (QUARANTINED, DELETED)
        ).fetchall()
        for (path,) in gone:
            current.pop(path, None)
        return current

    def recorded_one(
        self, path: str, scanner_version: str, library_version: str | None, model_version: str | None = None
    ) -> tuple[int, int] | None:
        """:meth:`recorded` for one path, read now: a daemon sharing the state asks it after
        claiming a file, since another daemon may have recorded it just before."""
        state = self.file_state(path)
        if state in (QUARANTINED, DELETED):
            return None
        return self.results.current_file(path, scanner_version, library_version, model_version)

    def record_scan(
        self,
        path: str,
        root: str,
        stat: tuple[int, int],
        verdicts: list[Verdict],
        intents: list[Intent],
        seen_at: float | None = None,
    ) -> list[str]:
        """Verdicts + journal row + log lines + action intents, in the current transaction
        (committed by :meth:`commit`). Returns the ids of the actions journalled."""
        size, mtime_ns = stat
        sha = next((v.sha256 for v in verdicts if v.sha256), None)
        order = ("flag", "review", "unscannable", "clear")
        worst = min((v.verdict for v in verdicts), key=order.index, default=None)
        now = time.time()
        self.results.begin()  # join the batch's transaction (or open it)
        self.results.record(path, size, mtime_ns, verdicts)
        self.conn.execute(
            "INSERT OR REPLACE INTO watch_files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
            (path, root, size, mtime_ns, sha, SCANNED, worst, seen_at, now),
        )
        ids = []
        for intent in intents:
            ident = action_id()
            body = json.dumps(payload(path, verdicts, ident))
            if intent.kind == "webhook":
                enqueue(self.conn, ident, intent.spec, body, now)
            else:
                self.conn.execute(
                    "INSERT OR IGNORE INTO watch_actions (id, path, root, sha256, kind, spec, payload, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (ident, path, root, sha, intent.kind, intent.spec, body, now),
                )
            ids.append(ident)
        return ids

    def set_file_state(self, path: str, state: str, detail: str | None = None) -> None:
        self.conn.execute("UPDATE watch_files SET state = ?, detail = ? WHERE path = ?", (state, detail, path))

    def file_state(self, path: str) -> str | None:
        row = self.conn.execute("SELECT state FROM watch_files WHERE path = ?", (path,)).fetchone()
        return row[0] if row else None

    # ------------------------------------------------------------------ actions
    def due_actions(self, now: float, kinds: tuple[str, ...] | None = None) -> list[ActionRow]:
        rows = self.conn.execute(
            "SELECT id, path, root, sha256, kind, spec, payload, attempts FROM watch_actions "
            "WHERE state = 'pending' AND next_at <= ? ORDER BY created_at, id",
            (now,),
        ).fetchall()
        out = [ActionRow(*r) for r in rows]
        return [a for a in out if kinds is None or a.kind in kinds]

    def pending_action(self, ident: str, now: float) -> ActionRow | None:
        """The action if it is still pending and due (read now: a daemon sharing the state asks
        it after claiming the action, which another daemon may have just done)."""
        row = self.conn.execute(
            "SELECT id, path, root, sha256, kind, spec, payload, attempts FROM watch_actions "
            "WHERE id = ? AND state = 'pending' AND next_at <= ?",
            (ident, now),
        ).fetchone()
        return ActionRow(*row) if row else None

    def next_action_at(self) -> float | None:
        row = self.conn.execute("SELECT MIN(next_at) FROM watch_actions WHERE state = 'pending'").fetchone()
        return row[0]

    def pending_action_count(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM watch_actions WHERE state = 'pending'").fetchone()[0]

    def revive_actions(self) -> int:
        """At start-up: every pending action is due now (whatever its backoff said), and one
        an earlier release gave up on (``failed``) is pending again. Returns how many."""
        n = self.conn.execute(
            "UPDATE watch_actions SET state = ?, next_at = 0 WHERE state IN (?, ?)", (PENDING, PENDING, FAILED)
        ).rowcount
        self.commit()
        return n

    def pending_by_kind(self) -> dict[str, tuple[int, float | None]]:
        """``{kind: (pending count, oldest created_at)}`` of actions not yet done."""
        rows = self.conn.execute(
            "SELECT kind, COUNT(*), MIN(created_at) FROM watch_actions WHERE state = ? GROUP BY kind", (PENDING,)
        ).fetchall()
        return {kind: (n, oldest) for kind, n, oldest in rows}

    def listed_actions(self) -> list[dict]:
        """Every action not done yet (pending, or ``failed`` by an earlier release), oldest
        first, with what ``meshscan watch --actions`` shows: its last error and when it is due."""
        cols = ("id", "kind", "path", "spec", "state", "attempts", "next_at", "error", "created_at")
        rows = self.conn.execute(
            f"SELECT {', '.join(cols)} FROM watch_actions WHERE state IN (?, ?) ORDER BY created_at, id",
            (PENDING, FAILED),
        ).fetchall()
        return [dict(zip(cols, r, strict=True)) for r in rows]

    def retry_now(self, ids: list[str]) -> int:
        """Make these actions (not done yet) due now, and pending again if an earlier release
        gave up on them; committed. Returns how many."""
        n = 0
        for ident in ids:
            n += self.conn.execute(
                "UPDATE watch_actions SET state = ?, next_at = 0 WHERE id = ? AND state IN (?, ?)",
                (PENDING, ident, PENDING, FAILED),
            ).rowcount
        self.commit()
        return n

    def action_row(self, ident: str) -> ActionRow | None:
        row = self.conn.execute(
            "SELECT id, path, root, sha256, kind, spec, payload, attempts FROM watch_actions WHERE id = ?", (ident,)
        ).fetchone()
        return ActionRow(*row) if row else None

    def finish_action(self, ident: str, state: str, result: str | None = None, error: str | None = None) -> None:
        self.conn.execute(
            "UPDATE watch_actions SET state = ?, result = ?, error = ?, attempts = attempts + 1, done_at = ? "
            "WHERE id = ?",
            (state, result, error, time.time(), ident),
        )

    def retry_action(self, ident: str, error: str, next_at: float) -> None:
        self.conn.execute(
            "UPDATE watch_actions SET attempts = attempts + 1, error = ?, next_at = ? WHERE id = ?",
            (error, next_at, ident),
        )

    # ------------------------------------------------------------------ log
    def _meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM watch_meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO watch_meta VALUES (?, ?)", (key, value))

    def open_log(self, log_path: str, key: str = "log_position") -> None:
        """Start appending verdict lines to ``log_path``: cut off whatever a crash left after the
        last acknowledged line; a log we have no position for (new, or rotated by someone
        else) is appended to as it is. ``key``: where its position is kept (daemons sharing a
        state each keep their own log's)."""
        self.log_path, self.log_key = log_path, key
        known = json.loads(self._meta(key) or "null")
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            st = os.fstat(fd)
            if known and known["inode"] == st.st_ino and known["offset"] <= st.st_size:
                if st.st_size > known["offset"]:
                    os.ftruncate(fd, known["offset"])  # lines of scans whose commit never happened
                    os.fsync(fd)
            else:
                self._set_meta(key, json.dumps({"inode": st.st_ino, "offset": st.st_size}))
                self.commit()
        finally:
            os.close(fd)

    def append_log(self, lines: list[str]) -> None:
        """Append lines (fsynced) and record the log's new end in the current transaction: the
        lines count only if that transaction commits (see the module doc)."""
        if not lines or self.log_path is None:
            return
        known = json.loads(self._meta(self.log_key) or "null")
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            st = os.fstat(fd)
            offset = st.st_size
            if known and known["inode"] == st.st_ino and known["offset"] <= st.st_size:
                offset = known["offset"]
            data = "".join(line + "\n" for line in lines).encode()
            view, at = memoryview(data), offset
            while view:
                n = os.pwrite(fd, view, at)
                view, at = view[n:], at + n
            os.ftruncate(fd, at)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._set_meta(self.log_key, json.dumps({"inode": st.st_ino, "offset": offset + len(data)}))
