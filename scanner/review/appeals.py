"""Appeals: a decided item reopened, and decided again by a second person (four eyes).

An appeal and its outcome are entries of the same hash-chained audit log as the decisions
(:mod:`scanner.review.audit`), told apart by their ``decision`` column:

* ``confirm`` / ``dismiss`` - a decision (the entries written before appeals existed);
* ``appeal`` - the decision of an item is contested: ``appeal_id`` (``ra-…``, also the row's
  ``decision_id``), ``appeals`` (the contested decision's id), ``original`` (its ``decision``,
  ``by``, ``at``), who filed it (``by``), why (``reason``), and the file it is about
  (``path``, ``member``, ``sha256``);
* ``appeal-outcome`` - the appeal is decided: ``outcome`` (``upheld`` or ``overturned``),
  ``appeal_id``, ``appeals``, ``original``, ``appellant``, who decided (``by``), why
  (``reason``), and ``actions``: what overturning undid in a library.

The rules, each a refusal with a reason code when asked for and a problem for
:meth:`AuditLog.verify <scanner.review.audit.AuditLog.verify>` when found in a log:

* only a decided item can be appealed (``not-decided``), and not while an appeal of it is open
  (``appeal-open``);
* a decision gets **one** appeal: once its outcome is recorded the item cannot be appealed
  again (``appeal-closed``). Why: the appeal already had the second person the decision
  lacked; letting the same content be appealed until some reviewer overturns it ("appeal
  shopping") would empty the four-eyes rule, and would let one party keep an item in the queue
  for ever. New evidence about the content is a new upload: its scan is a new item;
* an outcome needs an open appeal (``no-open-appeal``), and is refused to the person who made
  the contested decision (``same-reviewer``: four eyes) and to the person who filed the appeal
  (``same-appellant``: nobody judges their own case - an uploader may file an appeal, and must
  never be the one to grant it). Names are compared without regard to case or repeated
  spaces; an identity is only as strong as the name a reviewer gives (``--by``, or the web
  queue's login).

An overturned ``confirm`` that enrolled a signature disables it in its library (kept, with who,
why and when: :meth:`scanner.library.SignatureLibrary.disable`); an overturned ``dismiss``
that added an allowlist entry removes the entry. A decision whose action found the signature or
entry already there (``already-enrolled``, ``already-allowed``) changed nothing, so its
overturning undoes nothing in the library. An upheld appeal changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from scanner.review.errors import ReviewError
from scanner.review.queue import MIN_PREFIX, SHORT_ID

DECISION_KINDS = ("confirm", "dismiss")
APPEAL = "appeal"
APPEAL_OUTCOME = "appeal-outcome"
ENTRY_KINDS = (*DECISION_KINDS, APPEAL, APPEAL_OUTCOME)
"""Every value the audit log's ``decision`` column may hold."""
UPHELD, OVERTURNED = "upheld", "overturned"
OUTCOMES = (UPHELD, OVERTURNED)


def same_person(a: str | None, b: str | None) -> bool:
    """Are two reviewer names the same person's? Case and runs of spaces do not count."""
    return " ".join(str(a or "").split()).casefold() == " ".join(str(b or "").split()).casefold()


@dataclass
class History:
    """One item's entries in the audit log, as far as appeals care: its decision, its appeal
    (open or decided) and the appeal's outcome."""

    item_id: str
    decision: dict[str, Any] | None = None
    appeal: dict[str, Any] | None = None
    outcome: dict[str, Any] | None = None

    @property
    def appeal_open(self) -> bool:
        return self.appeal is not None and self.outcome is None

    @property
    def short(self) -> str:
        return self.item_id[:SHORT_ID]

    def add(self, entry: dict[str, Any]) -> list[str]:
        """Take the next entry of this item (log order); returns what is wrong with it (an
        entry is taken even when wrong, so that one bad row is reported once)."""
        kind = entry.get("decision")
        if kind in DECISION_KINDS:
            if self.decision is not None:
                return [f"item {self.short} is decided a second time (decisions are never rewritten)"]
            self.decision = entry
            return []
        if kind == APPEAL:
            problems = self._appeal_problems(entry)
            self.appeal, self.outcome = entry, None
            return problems
        if kind == APPEAL_OUTCOME:
            problems = self._outcome_problems(entry)
            self.outcome = entry
            return problems
        return [f"unknown entry kind {kind!r} (one of: {', '.join(ENTRY_KINDS)})"]

    def _appeal_problems(self, entry: dict[str, Any]) -> list[str]:
        if self.decision is None:
            return [f"appeal of item {self.short}, which has no decision"]
        problems = []
        if self.appeal is not None:
            problems.append(f"second appeal of item {self.short} (a decision gets one appeal)")
        if entry.get("appeals") != self.decision.get("decision_id"):
            named, own = entry.get("appeals"), self.decision.get("decision_id")
            problems.append(f"appeal names decision {named}, not the item's {own}")
        if entry.get("appeal_id") != entry.get("decision_id"):
            problems.append("appeal_id differs from the row's decision_id")
        return problems

    def _outcome_problems(self, entry: dict[str, Any]) -> list[str]:
        if not self.appeal_open:
            return [f"appeal outcome for item {self.short} without an open appeal"]
        assert self.appeal is not None and self.decision is not None
        problems = []
        if entry.get("appeal_id") != self.appeal.get("appeal_id"):
            named, own = entry.get("appeal_id"), self.appeal.get("appeal_id")
            problems.append(f"outcome names appeal {named}, not the open {own}")
        if entry.get("outcome") not in OUTCOMES:
            problems.append(f"outcome {entry.get('outcome')!r} is not one of: {', '.join(OUTCOMES)}")
        if same_person(entry.get("by"), self.decision.get("by")):
            problems.append("appeal decided by the person who made the contested decision (four eyes)")
        if same_person(entry.get("by"), self.appeal.get("by")):
            problems.append("appeal decided by the person who filed it")
        return problems


def histories(entries: Iterable[dict[str, Any]]) -> dict[str, History]:
    """Every item's history, from log entries in log order (nothing checked)."""
    out: dict[str, History] = {}
    for entry in entries:
        item = str(entry.get("item_id"))
        out.setdefault(item, History(item)).add(entry)
    return out


def check_log(rows: Iterable[tuple[int, dict[str, Any] | None]]) -> list[str]:
    """The problems of a whole log with appeal rules: ``rows`` are (seq, parsed entry), in
    log order (None for an entry that is not JSON: reported elsewhere, skipped here)."""
    found: dict[str, History] = {}
    problems = []
    for seq, entry in rows:
        if not entry:
            continue
        item = str(entry.get("item_id"))
        problems += [f"decision #{seq}: {p}" for p in found.setdefault(item, History(item)).add(entry)]
    return problems


# ---------------------------------------------------------------------- asking


def resolve(prefix: str, decided: Iterable[str]) -> str | None:
    """The one decided item id starting with ``prefix``; None when no decided item has it (the
    caller says whether the item exists undecided); ``ambiguous-id`` when several have it."""
    prefix = prefix.strip().lower()
    if len(prefix) < MIN_PREFIX or any(c not in "0123456789abcdef" for c in prefix):
        raise ReviewError("bad-id", f"{prefix!r} is not an item id (at least {MIN_PREFIX} hex characters)")
    found = sorted(i for i in decided if i.startswith(prefix))
    if len(found) > 1:
        names = ", ".join(i[:SHORT_ID] for i in found[:5])
        raise ReviewError("ambiguous-id", f"item id {prefix} is ambiguous ({len(found)} decided items: {names})")
    return found[0] if found else None


def check_appeal(history: History, by: str) -> None:
    """Refuse an appeal that breaks the rules (see the module docstring)."""
    del by  # anyone may file an appeal, the original reviewer too: another person must decide it
    if history.decision is None:
        raise ReviewError("not-decided", f"item {history.short} has no decision to appeal")
    if history.appeal_open:
        assert history.appeal is not None
        raise ReviewError(
            "appeal-open",
            f"item {history.short} already has an open appeal ({history.appeal.get('appeal_id')} by "
            f"{history.appeal.get('by')} at {history.appeal.get('at')}): decide it with --decide-appeal",
        )
    if history.outcome is not None:
        raise ReviewError(
            "appeal-closed",
            f"the decision on item {history.short} was appealed already and the appeal was "
            f"{history.outcome.get('outcome')} ({history.outcome.get('decision_id')} by {history.outcome.get('by')}): "
            "a decision gets one appeal",
        )


def check_outcome(history: History, by: str) -> None:
    """Refuse an appeal outcome that breaks the rules, four eyes first."""
    if not history.appeal_open:
        raise ReviewError("no-open-appeal", f"item {history.short} has no open appeal to decide")
    assert history.appeal is not None and history.decision is not None
    if same_person(by, history.decision.get("by")):
        raise ReviewError(
            "same-reviewer",
            f"{by} made the contested decision {history.decision.get('decision_id')} on item {history.short}: "
            "an appeal must be decided by someone else (four eyes)",
        )
    if same_person(by, history.appeal.get("by")):
        raise ReviewError(
            "same-appellant",
            f"{by} filed appeal {history.appeal.get('appeal_id')} on item {history.short}: "
            "an appeal must be decided by someone other than its appellant",
        )


def _about(decision: dict[str, Any]) -> dict[str, Any]:
    return {
        "item_id": decision["item_id"],
        "appeals": decision.get("decision_id"),
        "original": {k: decision.get(k) for k in ("decision", "by", "at", "reason")},
        "path": decision.get("path"),
        "member": decision.get("member"),
        "sha256": decision.get("sha256"),
    }


def draft_appeal(history: History, appeal_id: str, by: str, reason: str) -> dict[str, Any]:
    """The appeal's entry without its place in the log (seq, time, actions)."""
    assert history.decision is not None
    return {"decision_id": appeal_id, "appeal_id": appeal_id, "decision": APPEAL, "by": by, "reason": reason,
            **_about(history.decision)}  # fmt: skip


def draft_outcome(history: History, outcome_id: str, outcome: str, by: str, reason: str) -> dict[str, Any]:
    """The outcome's entry without its place in the log."""
    assert history.decision is not None and history.appeal is not None
    return {
        "decision_id": outcome_id,
        "decision": APPEAL_OUTCOME,
        "outcome": outcome,
        "appeal_id": history.appeal.get("appeal_id"),
        "appellant": history.appeal.get("by"),
        "appeal_reason": history.appeal.get("reason"),
        "by": by,
        "reason": reason,
        **_about(history.decision),
    }


def undone_actions(decision: dict[str, Any]) -> list[dict[str, Any]]:
    """The recorded actions of ``decision`` that overturning it must undo: an enrolment that
    added a signature, an allowlisting that added an entry."""
    return [
        a
        for a in decision.get("actions") or []
        if (a.get("action"), a.get("status")) in {("enrol", "added"), ("allowlist", "added")}
    ]
