"""One results database under review: its queue, its audit log, and deciding.

:class:`ReviewStore` opens an existing results database through its owner
(:class:`scanner.store.results.ResultsStore`), and puts together the queue
(:mod:`scanner.review.queue`), the audit log (:mod:`scanner.review.audit`) and the library
actions (:mod:`scanner.review.library_actions`): :meth:`ReviewStore.decide` validates a
decision, prepares its action outside the lock, then has the audit log apply it and record the
decision in one transaction. :meth:`ReviewStore.appeal` and :meth:`ReviewStore.decide_appeal`
do the same for appeals (:mod:`scanner.review.appeals`): an overturned decision's library
action is undone under the same lock, in the same transaction as its outcome.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scanner.review import appeals
from scanner.review.audit import AuditCheck, AuditLog, already_decided, append_to_mirror, canonical
from scanner.review.errors import ReviewError
from scanner.review.library_actions import AllowAction, EnrolAction, LibraryAction, reverse_action
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
        self.path = self.results.path  # a file, or a PostgreSQL URL without its password
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
        """What waits for a person: first the items with an open appeal (oldest appeal first,
        whatever their verdict: a reopened decision waits like a new one; see
        :meth:`open_appeals`), then the items without a decision for their current content,
        highest top score first (items without scores last), then the oldest scan first."""
        waiting = sorted(self.open_appeals().values(), key=lambda h: int((h.appeal or {}).get("seq", 0)))
        appealed = [_decided_item(h) for h in waiting]
        return appealed + self.items_queue.pending(verdicts, self.log.decided_items())

    def open_appeals(self) -> dict[str, appeals.History]:
        """Item id -> its history (``decision``, the open ``appeal``) for every open appeal."""
        return {i: h for i, h in appeals.histories(self.log.decisions()).items() if h.appeal_open}

    def find(self, prefix: str) -> ReviewItem:
        return self.items_queue.find(prefix)

    def recorded_item(self, item: str) -> ReviewItem:
        """Decided item id ``item`` (full id) as its decision recorded it: what an open appeal
        is about even when the file has changed (a new id) or gone since."""
        return _decided_item(self.history(item))

    # ------------------------------------------------------------------ the audit log
    def decisions(self) -> list[dict[str, Any]]:
        return self.log.decisions()

    def decision_for(self, item: str) -> dict[str, Any] | None:
        return self.log.decision_for(item)

    def history(self, item: str) -> appeals.History:
        """The decision, appeal and appeal outcome of item id ``item`` (full id)."""
        return appeals.histories(self.log.entries_for(item)).get(item) or appeals.History(item)

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

    # ------------------------------------------------------------------ appeals
    def appeal(
        self, item: str, by: str, reason: str, *, mirror: str | os.PathLike[str] | None = None
    ) -> dict[str, Any]:
        """Reopen the decision on item ``item`` (an id prefix) as an appeal, filed by ``by`` for
        ``reason``. Returns the recorded row (with ``mirror_error`` added when the ``mirror``
        line could not be written); :class:`ReviewError` when refused (``not-decided``,
        ``appeal-open``, ``appeal-closed``, an unknown or ambiguous id), nothing recorded."""
        by, reason = _who_why(by, reason)
        history = self.history(self._decided(item))
        appeals.check_appeal(history, by)
        draft = appeals.draft_appeal(history, "ra-" + uuid.uuid4().hex[:12], by, reason)
        return self._record(draft, None, lambda: appeals.check_appeal(self.history(history.item_id), by), mirror)

    def decide_appeal(
        self, item: str, by: str, outcome: str, reason: str, *, mirror: str | os.PathLike[str] | None = None
    ) -> dict[str, Any]:
        """Record the outcome (``upheld`` or ``overturned``) of the open appeal on item ``item``,
        decided by ``by`` - never the contested decision's reviewer (``same-reviewer``) nor the
        appellant (``same-appellant``). Overturning undoes the decision's library action (a
        signature it enrolled is disabled, an allowlist entry it added is removed) under the
        log's write lock, and puts the library back if the outcome cannot be recorded."""
        if outcome not in appeals.OUTCOMES:
            raise ReviewError("bad-outcome", f"an appeal outcome is one of: {', '.join(appeals.OUTCOMES)}")
        by, reason = _who_why(by, reason)
        history = self.history(self._decided(item))
        appeals.check_outcome(history, by)
        draft = appeals.draft_outcome(history, "ro-" + uuid.uuid4().hex[:12], outcome, by, reason)
        action = None
        if outcome == appeals.OVERTURNED:
            assert history.decision is not None
            undo = appeals.undone_actions(history.decision)
            why = f"{reason} [appeal {draft['appeal_id']} overturned review {history.decision.get('decision_id')}]"
            action = reverse_action(undo[0], by, why) if undo else None
        return self._record(draft, action, lambda: appeals.check_outcome(self.history(history.item_id), by), mirror)

    def _decided(self, prefix: str) -> str:
        """The full id of the one decided item ``prefix`` names; an item that exists but was
        never decided is ``not-decided``."""
        found = appeals.resolve(prefix, self.log.decided_items())
        if found is None:
            item = self.find(prefix)  # unknown-id / ambiguous-id when it does not exist either
            raise ReviewError("not-decided", f"item {item.short_id} has no decision to appeal or decide an appeal on")
        return found

    def _record(
        self,
        draft: dict[str, Any],
        action: LibraryAction | None,
        precheck: Callable[[], None],
        mirror: str | os.PathLike[str] | None,
    ) -> dict[str, Any]:
        """Append an appeal or outcome entry (its rules checked again under the write lock by
        ``precheck``), then its mirror line."""
        try:
            canonical(draft)
        except (TypeError, ValueError) as exc:
            raise ReviewError("bad-record", f"the entry cannot be recorded: {exc}") from None
        row = self.log.append(draft, action, precheck)
        if mirror is not None:
            try:
                append_to_mirror(mirror, row)
            except OSError as exc:
                return {**row, "mirror_error": f"could not append to audit log mirror {mirror}: {exc}"}
        return row


def _who_why(by: str | None, reason: str | None) -> tuple[str, str]:
    by, reason = (by or "").strip(), (reason or "").strip()
    if not by or not reason:
        raise ReviewError("missing-reviewer", "an appeal and its outcome need who (--by) and why (--reason)")
    return by, reason


def _decided_item(history: appeals.History) -> ReviewItem:
    """An item with an open appeal, as its decision recorded it (the content that was judged,
    even when the file has changed or gone since)."""
    d = history.decision or {}
    keys = ("path", "member", "sha256", "geometry_hash", "verdict", "category", "scores", "explanation", "matches",
            "scanned_at", "scanner_version", "library_version", "model_version")  # fmt: skip
    record = {k: d.get(k) for k in keys}
    path, verdict, scanned = str(d.get("path") or ""), str(d.get("verdict") or ""), str(d.get("scanned_at") or "")
    member, sha, category = d.get("member"), d.get("sha256"), d.get("category")
    return ReviewItem(history.item_id, path, member, sha, verdict, category, scanned, record)


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
