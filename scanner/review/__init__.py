"""Human review: the queue of verdicts waiting for a person, and the audit log of their decisions.

meshscan never decides on its own what happens to a file: ``review`` verdicts (and, on request,
``flag`` verdicts) wait in a results database (written by ``meshscan scan --db`` or ``meshscan
watch --state``) until a named reviewer confirms or dismisses them, with a reason. A
confirmation can enrol the file into a signature library (descriptors and hashes only), a
dismissal can add it to a library's allowlist; both change what later scans say.

The package, one concern a module:

* :mod:`~scanner.review.queue` - items (rows of the ``results`` table, read through the results
  store) and their stable ids, the queue, finding an item by id prefix;
* :mod:`~scanner.review.audit` - the append-only, hash-chained audit log ``review_decisions``
  and its verification (with a JSONL mirror);
* :mod:`~scanner.review.library_actions` - enrol and allowlist, applied under the log's write
  lock and undone if the decision cannot be recorded;
* :mod:`~scanner.review.appeals` - appeals and their outcomes (four eyes), as entries of the
  same audit log, and the rules its verification checks;
* :mod:`~scanner.review.transparency` - the transparency report's figures per period
  (aggregate: no paths, no names);
* :mod:`~scanner.review.store` - :class:`ReviewStore`, one database under review, and deciding.

The names below are the public ones (``meshscan review`` and the tests import them from here).
"""

from __future__ import annotations

from scanner.review.appeals import APPEAL, APPEAL_OUTCOME, ENTRY_KINDS, OUTCOMES, OVERTURNED, UPHELD, History
from scanner.review.audit import AUDIT_SCHEMA, GENESIS, AuditCheck, AuditLog, canonical, chain_hash
from scanner.review.errors import ReviewError
from scanner.review.library_actions import AllowAction, DisableAction, EnrolAction, LibraryAction, UnallowAction
from scanner.review.queue import MIN_PREFIX, REVIEWABLE, SHORT_ID, ReviewItem, ReviewQueue, item_id
from scanner.review.store import CONFIRM, DECISIONS, DISMISS, Outcome, ReviewStore

__all__ = [
    "APPEAL",
    "APPEAL_OUTCOME",
    "AUDIT_SCHEMA",
    "CONFIRM",
    "DECISIONS",
    "DISMISS",
    "ENTRY_KINDS",
    "GENESIS",
    "MIN_PREFIX",
    "OUTCOMES",
    "OVERTURNED",
    "REVIEWABLE",
    "SHORT_ID",
    "UPHELD",
    "AllowAction",
    "AuditCheck",
    "AuditLog",
    "DisableAction",
    "EnrolAction",
    "History",
    "LibraryAction",
    "Outcome",
    "ReviewError",
    "ReviewItem",
    "ReviewQueue",
    "ReviewStore",
    "UnallowAction",
    "canonical",
    "chain_hash",
    "item_id",
]
