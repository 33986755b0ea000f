"""One results database under review: its queue, its audit log, and deciding.

:class:`ReviewStore` opens an existing results database through its owner
(:class:`scanner.store.results.ResultsStore`), and puts together the queue
(:mod:`scanner.review.queue`), the audit log (:mod:`scanner.review.audit`) and the library
actions (:mod:`scanner.review.library_actions`): :meth:`ReviewStore.decide` validates a
decision, prepares its action outside the lock, then has the audit log apply it and record the
decision in one transaction.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scanner.review.audit import AuditCheck, AuditLog, already_decided, append_to_mirror, canonical
from scanner.review.errors import ReviewError
from scanner.review.library_actions import AllowAction, EnrolAction, LibraryAction
from scanner.review.queue import REVIEWABLE, ReviewItem, ReviewQueue
from scanner.store.results import NotAResultsDB, ResultsStore
from scanner.util import is_url
from scanner.verdict import REVIEW

CONFIRM, DISMISS = "confirm", "dismiss"
DECISIONS = (CONFIRM, DISMISS)


@dataclass
class Outcome:
    """A recorded decision, and whether its mirror line could be written."""

    row: dict[str, Any]
    mirror_error: str | None = None


@dataclass(frozen=True)
class _Request:
    """A decision as asked for, checked before anything is looked up."""

    decision: str
    by: str
    reason: str
    enrol_library: str | os.PathLike[str] | None
    category: str | None
    allowlist_library: str | os.PathLike[str] | None

    def check(self) -> None:
        if self.decision not in DECISIONS:
            raise ReviewError("bad-decision", f"decision must be one of: {', '.join(DECISIONS)}")
        if not self.by or not self.reason:
            raise ReviewError("missing-reviewer", "a decision needs who made it (--by) and why (--reason)")
        if self.enrol_library is not None and self.decision != CONFIRM:
            raise ReviewError("bad-action", "only a confirmation can enrol a file into a library")
        if self.allowlist_library is not None and self.decision != DISMISS:
            raise ReviewError("bad-action", "only a dismissal can add a file to an allowlist")
        if self.category is not None and self.enrol_library is None:
            raise ReviewError("bad-action", "--category goes with --enrol")


class ReviewStore:
    """The review queue and the audit log of one results database."""

    def __init__(self, db_path: str | os.PathLike[str], readonly: bool = False) -> None:
        """``readonly``: for listing and auditing, which must never write (and may be all a
        reviewer's account is allowed to do). Never creates a database."""
        try:
            self.results = ResultsStore.open_existing(db_path, readonly=readonly)
        except NotAResultsDB as exc:
            raise ReviewError(exc.reason, str(exc)) from None
        self.path = Path(db_path)
        self.conn = self.results.conn
        self.items_queue = ReviewQueue(self.results)
        self.log = AuditLog(self.results)

    def close(self) -> None:
        self.results.close()

    def __enter__(self) -> ReviewStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the queue
    def items(self, verdicts: Iterable[str] = REVIEWABLE) -> list[ReviewItem]:
        return self.items_queue.items(verdicts)

    def decided_items(self) -> set[str]:
        return self.log.decided_items()

    def queue(self, verdicts: Iterable[str] = (REVIEW,)) -> list[ReviewItem]:
        """Items without a decision for their current content: highest top score first (items
        without scores last), then the oldest scan first."""
        return self.items_queue.pending(verdicts, self.log.decided_items())

    def find(self, prefix: str) -> ReviewItem:
        return self.items_queue.find(prefix)

    # ------------------------------------------------------------------ the audit log
    def decisions(self) -> list[dict[str, Any]]:
        return self.log.decisions()

    def decision_for(self, item: str) -> dict[str, Any] | None:
        return self.log.decision_for(item)

    def verify(self, mirror: str | os.PathLike[str] | None = None) -> AuditCheck:
        return self.log.verify(mirror)

    # ------------------------------------------------------------------ deciding
    def decide(
        self,
        prefix: str,
        decision: str,
        by: str,
        reason: str,
        *,
        enrol_library: str | os.PathLike[str] | None = None,
        category: str | None = None,
        allowlist_library: str | os.PathLike[str] | None = None,
        file: str | os.PathLike[str] | None = None,
        mirror: str | os.PathLike[str] | None = None,
    ) -> Outcome:
        """Record one decision (and carry out its action first). Raises :class:`ReviewError`
        with nothing recorded and no library changed when it cannot be done."""
        request = _Request(decision, (by or "").strip(), (reason or "").strip(), enrol_library, category,
                           allowlist_library)  # fmt: skip
        request.check()
        item = self.find(prefix)
        if item.verdict not in REVIEWABLE:
            raise ReviewError(
                "not-reviewable", f"item {item.short_id} is '{item.verdict}': only review and flag verdicts are decided"
            )
        earlier = self.decision_for(item.id)
        if earlier is not None:
            raise ReviewError("already-decided", already_decided(item.id, earlier))
        file_check = _check_file(item, file, needed=enrol_library is not None)
        category = _enrol_category(request, item) if enrol_library is not None else None
        decision_id = "rd-" + uuid.uuid4().hex[:12]
        draft = _draft(item, request, decision_id, file_check)
        action = _prepare_action(request, item, category, file_check["path"], decision_id)
        outcome = Outcome(self.log.append(draft, action))
        if mirror is not None:
            try:
                append_to_mirror(mirror, outcome.row)
            except OSError as exc:
                outcome.mirror_error = f"could not append to audit log mirror {mirror}: {exc}"
        return outcome


def _enrol_category(request: _Request, item: ReviewItem) -> str:
    """The category to enrol under: as given, else the verdict's, else the top score's."""
    from scanner.library import CATEGORIES

    category = request.category or item.category or item.top[0]
    if category not in CATEGORIES:
        raise ReviewError(
            "bad-category", f"category {category!r} is not one of: {', '.join(CATEGORIES)}; give --category"
        )
    return category


def _prepare_action(
    request: _Request, item: ReviewItem, category: str | None, path: str, decision_id: str
) -> LibraryAction | None:
    """The library action of a decision, prepared (file described, library checked)."""
    if request.enrol_library is not None:
        return EnrolAction.prepare(
            Path(request.enrol_library), path, item, category, decision_id, request.by, request.reason
        )
    if request.allowlist_library is not None:
        return AllowAction.prepare(Path(request.allowlist_library), item, decision_id, request.by, request.reason)
    return None


def _check_file(item: ReviewItem, file: str | os.PathLike[str] | None, needed: bool) -> dict[str, Any]:
    """Make sure the bytes on disk are the bytes that were judged (when they are on disk)."""
    from scanner.inspect import file_sha256

    path = os.fspath(file) if file is not None else item.path
    if is_url(path):
        if needed:
            raise ReviewError("file-missing", f"{path} is not a local file: give --file with a local copy")
        return {"path": path, "state": "remote, not checked"}
    if not os.path.isfile(path):
        if needed or file is not None:
            raise ReviewError(
                "file-missing", f"{path} no longer exists (if it was quarantined, give --file with its new place)"
            )
        return {"path": path, "state": "missing"}
    sha = file_sha256(path)
    if sha is None:
        raise ReviewError("file-missing", f"{path} cannot be read")
    if sha != item.sha256:
        raise ReviewError(
            "content-changed",
            f"{path} has changed since its verdict (sha256 {str(sha)[:12]}, judged {str(item.sha256)[:12]}): "
            "rescan it and decide on the new verdict",
        )
    return {"path": path, "state": "same sha256"}


def _draft(item: ReviewItem, request: _Request, decision_id: str, file_check: dict[str, Any]) -> dict[str, Any]:
    """The entry without its place in the log (seq, time, actions), checked to be recordable
    before any action is taken."""
    rec = item.record
    draft = {
        "decision_id": decision_id,
        "item_id": item.id,
        "decision": request.decision,
        "by": request.by,
        "reason": request.reason,
        "file": file_check,
        "path": item.path,
        "member": item.member,
        "sha256": item.sha256,
        "geometry_hash": rec.get("geometry_hash"),
        "verdict": item.verdict,
        "category": item.category,
        "scores": item.scores,
        "explanation": item.explanation,
        "matches": rec.get("matches") or [],
        "scanned_at": item.scanned_at,
        "scanner_version": rec.get("scanner_version"),
        "library_version": rec.get("library_version"),
        "model_version": rec.get("model_version"),
    }
    try:
        canonical(draft)
    except (TypeError, ValueError) as exc:
        raise ReviewError("bad-record", f"the verdict of item {item.short_id} cannot be recorded: {exc}") from None
    return draft
