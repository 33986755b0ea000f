"""Webhook delivery through an on-disk outbox, so a failing endpoint loses nothing.

A verdict to deliver is first written as a row of ``webhook_outbox`` (in the caller's SQLite
database and transaction - for ``meshscan watch``, the same transaction that records the
verdict), keyed by a stable id. A sender thread then POSTs due rows as JSON with the id in an
``Idempotency-Key`` header, and retries failures (connection errors, timeouts, any non-2xx
answer) with exponential backoff and jitter, capped. A row is marked delivered only after a 2xx
answer, so delivery is at-least-once: a crash between the answer and the mark re-sends the same
id, which a receiver deduplicates.

The outbox is bounded (``max_pending``): the daemon stops taking new scans while it is full,
rather than dropping anything; files wait in the watched folder and are scanned when the
endpoint recovers.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from scanner._version import __version__
from scanner.store.backend import DB_ERRORS, connect, is_postgres_url

log = logging.getLogger("meshscan.watch")

OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_outbox (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    last_error TEXT,
    created_at REAL NOT NULL,
    delivered_at REAL
);
CREATE INDEX IF NOT EXISTS webhook_outbox_due ON webhook_outbox (state, next_at);
"""


class WebhookError(ValueError):
    pass


def check_url(url: str) -> str:
    """Accept only http(s) URLs with a host (no file:, ftp:, ... through urllib)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookError(f"webhook URL must be http:// or https:// with a host, got {url!r}")
    return url


def enqueue(conn: sqlite3.Connection, ident: str, url: str, body: str, now: float) -> None:
    """Add one delivery in the caller's transaction; a second enqueue of the same id is ignored."""
    conn.execute(
        "INSERT OR IGNORE INTO webhook_outbox (id, url, body, next_at, created_at) VALUES (?, ?, ?, ?, ?)",
        (ident, url, body, now, now),
    )


def post(url: str, body: str, ident: str, timeout: float) -> str | None:
    """POST once; None on a 2xx answer, else why it failed."""
    request = urllib.request.Request(
        check_url(url),
        data=body.encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Idempotency-Key": ident,
            "User-Agent": f"meshscan/{__version__}",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - scheme checked above
            response.read(1 << 16)
            return None if 200 <= response.status < 300 else f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"


@dataclass
class RetryPolicy:
    first: float = 1.0
    """Seconds before the first retry; doubled after each failure."""
    cap: float = 300.0
    """Longest wait between two attempts."""
    timeout: float = 10.0
    """Seconds to wait for the endpoint's answer."""

    def delay(self, attempts: int) -> float:
        base = min(self.cap, self.first * 2 ** min(attempts, 30))
        return base * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not security


class Outbox:
    """The outbox as the sender sees it: its own connection to the database file."""

    def __init__(self, path: str | Path, policy: RetryPolicy | None = None, max_pending: int = 10_000) -> None:
        if is_postgres_url(path):  # a PostgreSQL state database
            self.conn = connect(path)
        else:
            self.conn = sqlite3.connect(path, timeout=30, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.executescript(OUTBOX_SCHEMA)
        self.conn.commit()
        self.policy = policy or RetryPolicy()
        self.max_pending = max_pending
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def pending(self) -> int:
        with self._lock:
            return self.conn.execute("SELECT COUNT(*) FROM webhook_outbox WHERE state = 'pending'").fetchone()[0]

    def full(self) -> bool:
        return self.pending() >= self.max_pending

    def next_due(self) -> float | None:
        with self._lock:
            return self.conn.execute("SELECT MIN(next_at) FROM webhook_outbox WHERE state = 'pending'").fetchone()[0]

    def _due_rows(self, now: float, failed_urls: set[str]) -> Iterator[tuple[str, str, str, int]]:
        """The rows to try in one round (``failed_urls``, filled as the round goes, is for a
        subclass that claims rows as it goes: :class:`scanner.watch.leases.SharedOutbox`)."""
        with self._lock:
            rows = self.conn.execute(
                "SELECT id, url, body, attempts FROM webhook_outbox WHERE state = 'pending' AND next_at <= ? "
                "ORDER BY next_at, created_at LIMIT 100",
                (now,),
            ).fetchall()
        yield from rows

    def deliver_due(self, now: float | None = None, stop: threading.Event | None = None) -> int:
        """Try every due row once; returns how many were delivered."""
        now = time.time() if now is None else now
        delivered = 0
        failed_urls: set[str] = set()
        for ident, url, body, attempts in self._due_rows(now, failed_urls):
            if stop is not None and stop.is_set():
                break
            if url in failed_urls:  # one failure per endpoint per round: do not hammer it
                continue
            error = post(url, body, ident, self.policy.timeout)
            with self._lock:
                if error is None:
                    self.conn.execute(
                        "UPDATE webhook_outbox SET state = 'delivered', attempts = attempts + 1, delivered_at = ?, "
                        "last_error = NULL WHERE id = ?",
                        (time.time(), ident),
                    )
                    delivered += 1
                else:
                    failed_urls.add(url)
                    wait = self.policy.delay(attempts)
                    self.conn.execute(
                        "UPDATE webhook_outbox SET attempts = attempts + 1, last_error = ?, next_at = ? WHERE id = ?",
                        (error, time.time() + wait, ident),
                    )
                    log.warning(
                        "webhook failed",
                        extra={"fields": {"id": ident, "url": url, "error": error, "attempt": attempts + 1,
                                          "retry_in_s": round(wait, 1)}},
                    )  # fmt: skip
                self.conn.commit()
        return delivered


class OutboxSender(threading.Thread):
    """Background delivery: wakes when told there is something new, or when a retry is due."""

    def __init__(self, outbox: Outbox) -> None:
        super().__init__(name="meshscan-webhook", daemon=True)
        self.outbox = outbox
        self.stop_event = threading.Event()
        self.new_work = threading.Event()

    def notify(self) -> None:
        self.new_work.set()

    def stop(self) -> None:
        self.stop_event.set()
        self.new_work.set()

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.new_work.clear()
            try:
                self.outbox.deliver_due(stop=self.stop_event)
                nxt = self.outbox.next_due()
            except DB_ERRORS as exc:  # a locked database: try again shortly
                log.warning("webhook outbox unavailable", extra={"fields": {"error": str(exc)}})
                nxt = time.time() + 1.0
            wait = 60.0 if nxt is None else max(0.05, min(60.0, nxt - time.time()))
            self.new_work.wait(wait)
