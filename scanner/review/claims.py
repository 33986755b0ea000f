"""Claims on review items: "I am looking at this one", so that two reviewers do not decide it at once.

Table ``review_claims`` in the results database, beside the audit log, created by the first
claim. One row per claimed item: who claimed it, when, and when the claim lapses. A claim
held by someone else blocks deciding the item (the web queue checks :meth:`ClaimBook.holder`
before :meth:`scanner.review.store.ReviewStore.decide`) until it expires or its holder
releases it; an expired claim is ignored and may be taken over by anyone.

Claims and releases are operational, not decisions: they change nothing about a file, a
library or a verdict, so they are **not** written to the audit log (which records only what
was decided, by whom and why). Their rows are replaced and deleted freely; a decision deletes
its item's claim.

Times are UTC ISO 8601 to the second (:func:`scanner.util.utc_now`), so they compare as strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from scanner.review.errors import ReviewError
from scanner.store.results import ResultsStore

CLAIMS_SCHEMA = """
CREATE TABLE IF NOT EXISTS review_claims (
    item_id TEXT PRIMARY KEY,
    "by" TEXT NOT NULL,
    claimed_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
"""

DEFAULT_CLAIM_MINUTES = 30.0
"""How long a claim holds unless renewed or released (``--claim-minutes``)."""


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Claim:
    """Who holds an item, since when and until when (UTC ISO 8601)."""

    item_id: str
    by: str
    claimed_at: str
    expires_at: str


class ClaimBook:
    """The ``review_claims`` table of one results database."""

    def __init__(self, results: ResultsStore, minutes: float = DEFAULT_CLAIM_MINUTES) -> None:
        self.results = results
        self.conn = results.conn
        self.minutes = minutes

    def _exists(self) -> bool:
        return self.results.has_table("review_claims")

    def active(self, now: datetime | None = None) -> dict[str, Claim]:
        """Every claim that has not expired, by item id."""
        if not self._exists():
            return {}
        rows = self.conn.execute(
            'SELECT item_id, "by", claimed_at, expires_at FROM review_claims WHERE expires_at > ?',
            (_iso(now or datetime.now(UTC)),),
        )
        return {r[0]: Claim(*r) for r in rows}

    def holder(self, item_id: str, now: datetime | None = None) -> Claim | None:
        """The claim on ``item_id`` if one is in force (an expired one is None)."""
        if not self._exists():
            return None
        row = self.conn.execute(
            'SELECT item_id, "by", claimed_at, expires_at FROM review_claims WHERE item_id = ? AND expires_at > ?',
            (item_id, _iso(now or datetime.now(UTC))),
        ).fetchone()
        return Claim(*row) if row else None

    def claim(self, item_id: str, by: str, now: datetime | None = None) -> Claim:
        """Claim ``item_id`` for ``by`` (or renew their own claim) for :attr:`minutes`. Raises
        :class:`ReviewError` ``claimed`` if someone else holds a claim in force."""
        now = now or datetime.now(UTC)
        self.conn.executescript(CLAIMS_SCHEMA)
        with self.results.transaction(immediate=True):  # check and take under the write lock
            held = self.holder(item_id, now)
            if held is not None and held.by != by:
                raise ReviewError("claimed", blocked(held))
            claim = Claim(item_id, by, _iso(now), _iso(now + timedelta(minutes=self.minutes)))
            self.conn.execute(
                "INSERT OR REPLACE INTO review_claims VALUES (?, ?, ?, ?)",
                (claim.item_id, claim.by, claim.claimed_at, claim.expires_at),
            )
        return claim

    def release(self, item_id: str, by: str, now: datetime | None = None) -> bool:
        """Drop ``by``'s claim on ``item_id`` (True if there was one). Someone else's claim in
        force is refused (``claimed``); an expired one is dropped whoever asks."""
        if not self._exists():
            return False
        with self.results.transaction(immediate=True):
            held = self.holder(item_id, now)
            if held is not None and held.by != by:
                raise ReviewError("claimed", blocked(held))
            cursor = self.conn.execute("DELETE FROM review_claims WHERE item_id = ?", (item_id,))
        return cursor.rowcount > 0

    def clear(self, item_id: str) -> None:
        """Forget any claim on ``item_id`` (after it is decided: nothing is left to hold)."""
        if self._exists():
            with self.results.transaction(immediate=True):
                self.conn.execute("DELETE FROM review_claims WHERE item_id = ?", (item_id,))


def blocked(held: Claim) -> str:
    """Why someone other than the holder cannot decide or claim an item."""
    return (
        f"item {held.item_id[:12]} is claimed by {held.by} until {held.expires_at} "
        "(it can be decided by them, or by anyone once they release it or the claim expires)"
    )
