"""The review queue: verdicts waiting for a person, read from the results store.

An item is one row of the ``results`` table (one file, or one archive member) with verdict
``review`` or ``flag``. Its id is the sha256 of ``[path, member, sha256]``: stable across
rescans of the same content, new as soon as the content changes (so a decision always refers
to the exact bytes a reviewer saw). Ids are shown shortened; any unambiguous prefix of at least
:data:`MIN_PREFIX` characters is accepted, as git does.

The rows are read through :class:`scanner.store.results.ResultsStore`, the table's owner; which
items are decided is the audit log's business (:mod:`scanner.review.audit`), handed in.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from scanner.review.errors import ReviewError
from scanner.store.results import ResultRow, ResultsStore
from scanner.verdict import FLAG, REVIEW

REVIEWABLE = (REVIEW, FLAG)
SHORT_ID = 12
"""Characters of an item id shown to people (48 bits: collisions need ~16 million items)."""
MIN_PREFIX = 4


def item_id(path: str, member: str | None, sha256: str | None) -> str:
    """Stable id of one reviewable thing: this path (and archive member) with these bytes."""
    key = json.dumps([path, member or "", sha256 or ""], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def label(path: str, member: str | None) -> str:
    """How a file or archive member is named to people."""
    return path + (f" :: {member}" if member else "")


@dataclass(frozen=True)
class ReviewItem:
    """One verdict as a reviewer sees it."""

    id: str
    path: str
    member: str | None
    sha256: str | None
    verdict: str
    category: str | None
    scanned_at: str
    record: dict[str, Any] = field(hash=False, compare=False)

    @classmethod
    def from_row(cls, row: ResultRow) -> ReviewItem:
        """The item of one results row; a record that is not JSON shows as an empty one."""
        try:
            rec = json.loads(row.record)
        except ValueError:
            rec = {}
        member = row.member or None
        return cls(
            item_id(row.path, member, row.sha256), row.path, member, row.sha256, row.verdict, row.category,
            row.scanned_at or "", rec,
        )  # fmt: skip

    @property
    def short_id(self) -> str:
        return self.id[:SHORT_ID]

    @property
    def scores(self) -> dict[str, float]:
        scores = self.record.get("scores") or {}
        return {k: float(v) for k, v in scores.items() if isinstance(v, int | float) and math.isfinite(v)}

    @property
    def top(self) -> tuple[str | None, float | None]:
        """The highest-scoring component category and its probability (None, None without
        scores). The classifier also scores ``benign``, which is not a component: ignored."""
        from scanner.library import CATEGORIES

        scores = {c: p for c, p in self.scores.items() if c in CATEGORIES}
        if not scores:
            return None, None
        cat = max(sorted(scores), key=lambda c: scores[c])
        return cat, scores[cat]

    @property
    def explanation(self) -> str:
        return str(self.record.get("explanation") or "")

    def to_dict(self) -> dict[str, Any]:
        top_category, top_score = self.top
        return {
            "id": self.short_id,
            "item_id": self.id,
            "top_category": top_category,
            "top_score": top_score,
            **self.record,
            "scores": self.scores,
            "path": self.path,
            "member": self.member,
        }


class ReviewQueue:
    """The reviewable items of one results store."""

    def __init__(self, results: ResultsStore) -> None:
        self.results = results

    def items(self, verdicts: Iterable[str] = REVIEWABLE) -> list[ReviewItem]:
        """Every item with one of these verdicts, decided or not."""
        return [ReviewItem.from_row(r) for r in self.results.rows(tuple(verdicts))]

    def pending(self, verdicts: Iterable[str], decided: set[str]) -> list[ReviewItem]:
        """Items whose id is not in ``decided`` (no decision for their current content):
        highest top score first (items without scores last), then the oldest scan first."""
        waiting = [i for i in self.items(verdicts) if i.id not in decided]

        def key(item: ReviewItem) -> tuple[float, str, str, str]:
            score = item.top[1]
            return (-score if score is not None else float("inf"), item.scanned_at, item.path, item.member or "")

        return sorted(waiting, key=key)

    def find(self, prefix: str) -> ReviewItem:
        """The one item whose id starts with ``prefix``: among review and flag verdicts (indexed,
        so fast on large databases), else among all rows, so that a refusal can say why."""
        prefix = prefix.strip().lower()
        if len(prefix) < MIN_PREFIX or any(c not in "0123456789abcdef" for c in prefix):
            raise ReviewError("bad-id", f"{prefix!r} is not an item id (at least {MIN_PREFIX} hex characters)")
        keys = []
        for verdicts in (REVIEWABLE, ()):
            keys = [
                key for key in self.results.keys(verdicts) if item_id(key[0], key[1] or None, key[2]).startswith(prefix)
            ]  # the ids of every row, but the records only of the matches
            if keys:
                break
        found = [
            ReviewItem.from_row(row) for row in (self.results.row(path, member) for path, member, _ in keys) if row
        ]
        if not found:
            raise ReviewError(
                "unknown-id",
                f"no item {prefix} in {self.results.path} (an id changes when the file's content changes and it is "
                "rescanned; list the queue with 'meshscan review')",
            )
        if len(found) > 1:
            names = "; ".join(f"{i.short_id} {label(i.path, i.member)}" for i in found[:5])
            raise ReviewError(
                "ambiguous-id", f"item id {prefix} is ambiguous ({len(found)} items: {names}): give more characters"
            )
        return found[0]
