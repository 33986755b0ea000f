"""The audit log of a subscribed library: every update, disable and enable, hash-chained.

Why here and not in the review audit log (:mod:`scanner.review.audit`): that log records one
decision per scanned *item* in a results database, and a subscribed library is consumed by
many databases (or none: ``watch`` and ``serve`` may run without one). A disable is a decision
about the *library*, so it is kept with the library, in ``banks.json``'s ``events``, and
travels with every library version.

Tamper-evident with the review log's scheme: each event holds ``seq``, the ``prev_hash`` of the
event before it (:data:`GENESIS` for the first) and ``hash`` = sha256 of ``prev_hash``, a
newline and the event's canonical JSON. An edited, deleted, inserted or reordered event
breaks the chain, which :func:`verify_events` reports. As with the review log, whoever can
write the file can recompute a whole chain: the head hash that ``signatures status`` prints,
noted elsewhere, is what proves the history was not rewritten since.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from scanner.util import canonical, chain_hash

GENESIS = "0" * 64
"""``prev_hash`` of a library's first chained event (as the review audit log's)."""


def head(events: list[dict[str, Any]]) -> str:
    """The hash of the last chained event (:data:`GENESIS` when there is none)."""
    chained = [e for e in events if "hash" in e]
    return str(chained[-1]["hash"]) if chained else GENESIS


def append_event(events: list[dict[str, Any]], event: dict[str, Any]) -> dict[str, Any]:
    """Append ``event`` to ``events`` (in place) as the next link of the chain; returns it."""
    entry = {**event, "seq": sum(1 for e in events if "hash" in e) + 1}
    prev = head(events)
    row = {**entry, "prev_hash": prev, "hash": chain_hash(prev, canonical(entry))}
    events.append(row)
    return row


@dataclass
class EventCheck:
    """What :func:`verify_events` found."""

    events: int = 0
    chained: int = 0
    head: str = GENESIS
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_events(events: list[Any], disabled: dict[str, Any] | None = None) -> EventCheck:
    """Recompute the chain. Events written before the chain existed (no ``hash``) may only come
    first: they are counted in a note, as they prove nothing; one after a chained event means
    a chained event was replaced. With ``disabled`` (``banks.json``'s list), also check that
    replaying the disable and enable events gives exactly those ids, so a signature cannot be
    quietly re-enabled or disabled by editing the list."""
    check = EventCheck(events=len(events))
    prev, expected = GENESIS, 1
    for n, event in enumerate(events, 1):
        if not isinstance(event, dict):
            check.problems.append(f"event {n}: not an object")
            continue
        if "hash" not in event:
            if expected > 1:
                check.problems.append(f"event {n}: unchained event after the chain began (an event was replaced)")
            continue
        body = {k: v for k, v in event.items() if k not in ("prev_hash", "hash")}
        where = f"event #{event.get('seq')}"
        if event.get("seq") != expected:
            check.problems.append(f"{where}: expected #{expected} here (events deleted, inserted or reordered)")
        if event.get("prev_hash") != prev:
            check.problems.append(f"{where}: does not link to the event before it (events deleted or edited)")
        if chain_hash(str(event.get("prev_hash")), canonical(body)) != event["hash"]:
            check.problems.append(f"{where}: content does not match its hash (edited)")
        prev, expected = str(event["hash"]), expected + 1
    check.chained, check.head = expected - 1, prev
    unchained = sum(1 for e in events if isinstance(e, dict) and "hash" not in e)
    if unchained and not check.problems:
        check.notes.append(f"{unchained} event(s) recorded before the log was hash-chained (not verifiable)")
    if disabled is not None and not unchained:
        _check_disabled(events, disabled, check)
    return check


def _check_disabled(events: list[Any], disabled: dict[str, Any], check: EventCheck) -> None:
    replayed: set[str] = set()
    for event in events:
        if isinstance(event, dict) and event.get("action") in ("disable", "enable"):
            ids = {str(i) for i in event.get("ids", [])}
            replayed = replayed | ids if event["action"] == "disable" else replayed - ids
    for sid in sorted(set(disabled) - replayed):
        check.problems.append(f"signature {sid} is disabled without a disable event (list edited)")
    for sid in sorted(replayed - set(disabled)):
        check.problems.append(f"signature {sid} was disabled and never enabled, but is not in the list (list edited)")
