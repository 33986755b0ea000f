"""Several watch daemons on one PostgreSQL state: which one scans a file, performs an action,
posts a webhook - exactly once, and what happens to its work when it dies.

Daemons sharing a state (on one machine, or on several watching the same shared folder) all
hear about the same files and all read the same action journal. Each piece of work is
*claimed* before it is done, by a row of ``watch_claims``: ``file:PATH`` before a scan,
``action:ID`` before a quarantine or a command. A claim names its owner (the daemon's id,
``host:pid:random``) and a lease: it expires :data:`LEASE` seconds after it was taken or last
renewed, on the database server's clock (so the machines' clocks do not matter). A living
daemon renews all its claims every third of the lease, from its main loop - the loop that does
the work, so a daemon whose loop hangs stops renewing and loses its claims too.

* Taking a claim is one statement: insert the row, or take over one whose lease has run out
  (``INSERT ... ON CONFLICT (key) DO UPDATE ... WHERE expires_at < now``); exactly one daemon
  wins. The loser remembers the file and asks again when the lease it saw runs out: when the
  owner is done by then it finds the claim gone and the file recorded, and when the owner died
  it takes the file over.
* Having won, a daemon checks the work is still to be done (the file has no current verdict,
  which another daemon may have recorded just before; the action is still pending), since a
  claim is released when the work is recorded.
* A scan's verdict is recorded in the transaction that deletes its claim, and only if the
  delete finds the claim still this daemon's: a daemon that lost its lease (stalled past it,
  while another took the file over) records nothing. An action's outcome is journalled in the
  transaction that deletes its claim.
* Webhook outbox rows are claimed without an owner (:class:`SharedOutbox`): a sender takes one
  due row by moving its ``next_at`` a lease ahead (``FOR UPDATE SKIP LOCKED``), posts it, then
  marks it delivered or backs it off. A sender killed in between leaves the row due again when
  the lease runs out - for any daemon's sender, which looks at the outbox at least every
  :data:`OUTBOX_POLL` seconds.

So a daemon killed with ``kill -9`` mid-scan or mid-action delays that work by at most one
lease, then another daemon (or the same one restarted) does it; nothing is done twice. What
is performed outside the database can still happen twice when a daemon dies *after* acting
and *before* journalling - as with one daemon: a quarantine completes idempotently by its
action id, a command sees the same ``MESHSCAN_ACTION_ID``, a webhook the same
``Idempotency-Key``.

SQLite states do not use any of this: one daemon per SQLite state, by a file lock.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scanner.sinks.webhook import Outbox, RetryPolicy

LEASE = 30.0
"""Seconds a claim lasts unless renewed (every third of it, by its daemon's loop): how long the
work of a daemon that died waits before another daemon takes it over. Longer than a command's
default timeout and a webhook's, so that even one renewal missed costs nothing."""

OUTBOX_POLL = 2.0
"""Longest wait of a shared state's webhook sender before it looks at the outbox again."""

FILE, ACTION = "file:", "action:"
"""Claim key prefixes: a file by its path, an action by its id."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS watch_claims (
    key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at REAL NOT NULL,
    taken_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS watch_claims_owner ON watch_claims (owner);
"""

_NOW = "EXTRACT(EPOCH FROM clock_timestamp())"
"""The database server's clock, in seconds: every lease is measured on it."""


def daemon_id() -> str:
    """This daemon's id in its claims: the machine, the process and a random part (a pid is
    reused, and a restarted daemon must not mistake the claims of its dead self for its own)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass(frozen=True)
class Taken:
    """The claim is ours now."""

    previous: str | None = None
    """The owner whose expired claim was taken over (None: the work was free)."""


@dataclass(frozen=True)
class Held:
    """Another daemon holds the claim."""

    owner: str
    remaining: float
    """Seconds until its lease runs out unless renewed."""


class Leases:
    """This daemon's claims, on the watch journal's connection (a release must commit or roll
    back with the verdict or action outcome it goes with)."""

    def __init__(self, conn: Any, lease: float = LEASE, owner: str | None = None) -> None:
        self.conn, self.lease = conn, lease
        self.owner = owner or daemon_id()
        conn.executescript(SCHEMA)
        self.next_renewal = 0.0
        """Monotonic time of the next :meth:`renew`."""

    def take(self, key: str) -> Taken | Held:
        """Claim ``key`` now (committed at once): free, expired, or already ours - or held."""
        for _ in range(3):  # a claim released between the two statements: ask again
            row = self.conn.execute(
                "INSERT INTO watch_claims (key, owner, expires_at, taken_at) "
                f"VALUES (?, ?, {_NOW} + ?, {_NOW}) ON CONFLICT (key) DO UPDATE SET owner = EXCLUDED.owner, "
                "expires_at = EXCLUDED.expires_at, taken_at = EXCLUDED.taken_at "
                f"WHERE watch_claims.expires_at < {_NOW} OR watch_claims.owner = EXCLUDED.owner "
                "RETURNING (SELECT w.owner FROM watch_claims w WHERE w.key = ?)",
                (key, self.owner, self.lease, key),
            ).fetchone()
            if row is not None:
                self.conn.commit()
                return Taken(row[0] if row[0] not in (None, self.owner) else None)
            held = self.conn.execute(
                f"SELECT owner, expires_at - {_NOW} FROM watch_claims WHERE key = ?", (key,)
            ).fetchone()
            self.conn.commit()
            if held is not None:
                return Held(held[0], max(0.0, float(held[1])))
        return Held("?", self.lease)

    def release(self, key: str) -> bool:
        """Give ``key`` up in the caller's transaction; False if it was not ours any more (its
        lease ran out and another daemon took it over): the caller must then record nothing."""
        gone = self.conn.execute("DELETE FROM watch_claims WHERE key = ? AND owner = ?", (key, self.owner))
        return gone.rowcount == 1

    def drop(self, key: str) -> None:
        """Give ``key`` up now (committed): work found done or not to be done after all."""
        self.release(key)
        self.conn.commit()

    def renew(self) -> int:
        """Extend every claim of this daemon by a lease (committed); how many it holds."""
        n = self.conn.execute(
            f"UPDATE watch_claims SET expires_at = {_NOW} + ? WHERE owner = ?", (self.lease, self.owner)
        ).rowcount
        self.conn.commit()
        self.next_renewal = time.monotonic() + self.lease / 3
        return int(n)

    def renew_due(self) -> None:
        """:meth:`renew` if a third of the lease has passed since the last renewal."""
        if time.monotonic() >= self.next_renewal:
            self.renew()

    def release_all(self) -> None:
        """At a clean stop: whatever is still claimed is free for the other daemons at once."""
        self.conn.execute("DELETE FROM watch_claims WHERE owner = ?", (self.owner,))
        self.conn.commit()


class SharedOutbox(Outbox):
    """The webhook outbox of a state several daemons share: each due row is claimed before it
    is posted (see the module doc), so every row is posted by one sender."""

    def __init__(
        self, path: str | Path, policy: RetryPolicy | None = None, max_pending: int = 10_000, lease: float = LEASE
    ) -> None:
        super().__init__(path, policy, max_pending)
        self.lease = lease

    def next_due(self) -> float | None:
        """When the sender looks again: at the next row's time, and at least every
        :data:`OUTBOX_POLL` seconds - another daemon's rows (one that died before posting
        what it committed, or while it held a row) are due without this sender being told."""
        nxt = super().next_due()
        return time.time() + OUTBOX_POLL if nxt is None else min(nxt, time.time() + OUTBOX_POLL)

    def _due_rows(self, now: float, failed_urls: set[str]) -> Iterator[tuple[str, str, str, int]]:
        """Claim due rows one at a time (by moving their ``next_at`` a lease ahead), none of an
        endpoint that failed in this round; the one handed out last is freed again if the round
        stops before posting it."""
        for _ in range(100):
            with self._lock:
                row = self.conn.execute(
                    "UPDATE webhook_outbox SET next_at = ? WHERE id = (SELECT id FROM webhook_outbox "
                    "WHERE state = 'pending' AND next_at <= ? AND NOT (url = ANY(?::text[])) "
                    "ORDER BY next_at, created_at LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id, url, body, attempts",
                    (time.time() + self.lease, now, sorted(failed_urls)),
                ).fetchone()
                self.conn.commit()
            if row is None:
                return
            try:
                yield row
            except GeneratorExit:  # the round stopped (the daemon is stopping): not posted
                with self._lock:
                    self.conn.execute("UPDATE webhook_outbox SET next_at = ? WHERE id = ?", (now, row[0]))
                    self.conn.commit()
                raise
