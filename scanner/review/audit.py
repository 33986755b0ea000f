"""The audit log of review decisions: append-only, hash-chained, tamper-evident.

Table ``review_decisions`` in the results database itself. Why there: the decision and the
verdict it decides live and travel together, and SQLite gives atomic appends. The log is
append-only and tamper-evident:

* ``BEFORE UPDATE`` / ``BEFORE DELETE`` triggers abort any change to a recorded row, and a
  ``BEFORE INSERT`` trigger refuses a row that does not extend the chain;
* every row holds the hash of the previous row, and its own hash is the sha256 of the
  previous hash and its canonical JSON entry (which includes its sequence number), so any
  edit, deletion or reordering made by going around the triggers breaks the chain, which
  :meth:`AuditLog.verify` detects;
* a JSONL mirror (``--audit-log FILE``), appended and fsynced after each commit, can be kept
  elsewhere (another disk, a WORM store, an oversight body). A chain can always be recomputed
  from scratch by someone who can write the database, so only a copy of the head hash held
  outside the database (the mirror, or the head printed by ``--verify``) proves that the whole
  log was not rewritten; verification against the mirror checks it.

Appeals and their outcomes are entries of the same log (``decision`` column ``appeal`` and
``appeal-outcome``; :mod:`scanner.review.appeals` says what they hold), so they are chained,
mirrored and verified like the decisions; :meth:`AuditLog.verify` also checks the appeal
rules over the whole log (an outcome follows an open appeal of the same item, and is not
decided by the contested decision's reviewer nor by the appellant). Logs written before
appeals existed hold decisions only, and verify as before.

A decision is appended only after its action (enrol, allowlist; :mod:`scanner.review.library_actions`)
has been saved, in the same write transaction (the results store's, ``BEGIN IMMEDIATE``) that
holds the database lock: if the library cannot be written, no decision is recorded; if the
decision cannot be recorded, the action is undone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from scanner.review.appeals import check_log
from scanner.review.errors import ReviewError
from scanner.review.queue import SHORT_ID
from scanner.store.backend import DB_ERRORS, dialect_of, trigger_names
from scanner.store.results import ResultsStore
from scanner.util import canonical, chain_hash, utc_now

GENESIS = "0" * 64
"""``prev_hash`` of the first row of the audit log."""

AUDIT_TABLE = """
CREATE TABLE IF NOT EXISTS review_decisions (
    seq INTEGER PRIMARY KEY,
    decision_id TEXT NOT NULL UNIQUE,
    item_id TEXT NOT NULL,
    decision TEXT NOT NULL,
    at TEXT NOT NULL,
    entry TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE
);
CREATE INDEX IF NOT EXISTS review_decisions_item ON review_decisions (item_id);
"""
AUDIT_SCHEMA = (
    AUDIT_TABLE
    + f"""
CREATE TRIGGER IF NOT EXISTS review_decisions_no_update BEFORE UPDATE ON review_decisions
BEGIN
    SELECT RAISE(ABORT, 'review_decisions is an append-only audit log: recorded decisions cannot be changed');
END;
CREATE TRIGGER IF NOT EXISTS review_decisions_no_delete BEFORE DELETE ON review_decisions
BEGIN
    SELECT RAISE(ABORT, 'review_decisions is an append-only audit log: recorded decisions cannot be deleted');
END;
CREATE TRIGGER IF NOT EXISTS review_decisions_chain BEFORE INSERT ON review_decisions
WHEN NEW.seq IS NOT (SELECT COALESCE(MAX(seq), 0) + 1 FROM review_decisions)
  OR NEW.prev_hash IS NOT COALESCE((SELECT hash FROM review_decisions ORDER BY seq DESC LIMIT 1), '{GENESIS}')
BEGIN
    SELECT RAISE(ABORT, 'review_decisions is an append-only hash chain: a new row must extend the last one');
END;
"""
)
TRIGGERS = ("review_decisions_no_update", "review_decisions_no_delete", "review_decisions_chain")

AUDIT_SCHEMA_PG = (
    AUDIT_TABLE
    + f"""
CREATE OR REPLACE FUNCTION review_decisions_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        RAISE EXCEPTION 'review_decisions is an append-only audit log: recorded decisions cannot be changed';
    END IF;
    RAISE EXCEPTION 'review_decisions is an append-only audit log: recorded decisions cannot be deleted';
END $$;
CREATE OR REPLACE FUNCTION review_decisions_extend() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.seq IS DISTINCT FROM (SELECT COALESCE(MAX(seq), 0) + 1 FROM review_decisions)
       OR NEW.prev_hash IS DISTINCT FROM
          COALESCE((SELECT hash FROM review_decisions ORDER BY seq DESC LIMIT 1), '{GENESIS}') THEN
        RAISE EXCEPTION 'review_decisions is an append-only hash chain: a new row must extend the last one';
    END IF;
    RETURN NEW;
END $$;
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'review_decisions_no_update') THEN
        CREATE TRIGGER review_decisions_no_update BEFORE UPDATE ON review_decisions
            FOR EACH ROW EXECUTE FUNCTION review_decisions_refuse();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'review_decisions_no_delete') THEN
        CREATE TRIGGER review_decisions_no_delete BEFORE DELETE ON review_decisions
            FOR EACH ROW EXECUTE FUNCTION review_decisions_refuse();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'review_decisions_no_truncate') THEN
        CREATE TRIGGER review_decisions_no_truncate BEFORE TRUNCATE ON review_decisions
            FOR EACH STATEMENT EXECUTE FUNCTION review_decisions_refuse();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'review_decisions_chain') THEN
        CREATE TRIGGER review_decisions_chain BEFORE INSERT ON review_decisions
            FOR EACH ROW EXECUTE FUNCTION review_decisions_extend();
    END IF;
END $$;
"""
)
"""The same log in PostgreSQL: plpgsql triggers refuse UPDATE, DELETE and TRUNCATE, and an
insert that does not extend the chain; appends are serialised by the store's write lock
(an advisory lock every appender on every machine takes), so two writers cannot fork it."""
SCHEMAS = {
    "sqlite": (AUDIT_SCHEMA, TRIGGERS),
    "postgresql": (AUDIT_SCHEMA_PG, (*TRIGGERS, "review_decisions_no_truncate")),
}


def already_decided(item: str, earlier: dict[str, Any]) -> str:
    """Why an item cannot be decided twice, naming the decision that stands."""
    return (
        f"item {item[:SHORT_ID]} was already decided for this content: {earlier.get('decision')} by "
        f"{earlier.get('by')} at {earlier.get('at')} ({earlier.get('decision_id')}); decisions are never rewritten"
    )


class Action(Protocol):
    """What a decision does besides being recorded: applied under the log's write lock, and
    undone if the decision cannot be recorded (:mod:`scanner.review.library_actions`)."""

    def apply(self) -> dict[str, Any]: ...

    def undo(self) -> None: ...


@dataclass
class AuditCheck:
    """What :meth:`AuditLog.verify` found."""

    rows: int = 0
    head: str = GENESIS
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class AuditLog:
    """The ``review_decisions`` table of one results database (created by the first decision)."""

    def __init__(self, results: ResultsStore) -> None:
        self.results = results
        self.conn = results.conn
        self.exists = results.has_table("review_decisions")

    def decided_items(self) -> set[str]:
        """The ids of every item with a decision."""
        if not self.exists:
            return set()
        return {r[0] for r in self.conn.execute("SELECT DISTINCT item_id FROM review_decisions")}

    def decisions(self) -> list[dict[str, Any]]:
        """Every recorded decision, oldest first: the entry plus ``prev_hash`` and ``hash``."""
        if not self.exists:
            return []
        out = []
        for seq, entry, prev, digest in self.conn.execute(
            "SELECT seq, entry, prev_hash, hash FROM review_decisions ORDER BY seq"
        ):
            try:
                row = json.loads(entry)
            except ValueError:
                row = {"seq": seq, "unreadable_entry": entry}
            out.append({**row, "prev_hash": prev, "hash": digest})
        return out

    def entries_for(self, item: str) -> list[dict[str, Any]]:
        """Every entry of item id ``item`` (its decision, appeal, appeal outcome), oldest first."""
        if not self.exists:
            return []
        rows = self.conn.execute("SELECT entry FROM review_decisions WHERE item_id = ? ORDER BY seq", (item,))
        return [json.loads(r[0]) for r in rows]

    def decision_for(self, item: str) -> dict[str, Any] | None:
        """The decision recorded for item id ``item``, if any."""
        if not self.exists:
            return None
        row = self.conn.execute(
            "SELECT entry FROM review_decisions WHERE item_id = ? ORDER BY seq LIMIT 1", (item,)
        ).fetchone()
        return json.loads(row[0]) if row else None

    # ------------------------------------------------------------------ appending
    def append(
        self, draft: dict[str, Any], action: Action | None, precheck: Callable[[], None] | None = None
    ) -> dict[str, Any]:
        """Take the write lock, apply ``action``, and append ``draft`` as the next entry, in one
        transaction; on any failure roll back, undo the action and raise (a database error as
        :class:`ReviewError` ``audit-log``). Returns the row: entry, ``prev_hash``, ``hash``.

        ``precheck`` runs under the lock first and raises :class:`ReviewError` when the entry
        may no longer be appended (an appeal filed or decided by someone else meanwhile); by
        default, a decision is refused when the item was decided meanwhile."""
        self.conn.executescript(SCHEMAS[dialect_of(self.conn)][0])
        self.exists = True
        applied = False
        try:
            with self.results.transaction(immediate=True):  # the write lock: one decision at a time
                if precheck is not None:
                    precheck()
                elif (earlier := self.decision_for(draft["item_id"])) is not None:  # decided meanwhile?
                    raise ReviewError("already-decided", already_decided(draft["item_id"], earlier))
                actions = []
                if action is not None:
                    actions.append(action.apply())
                    applied = True
                row = self._insert(draft, actions)
        except BaseException as exc:
            if applied:
                action.undo()
            if isinstance(exc, DB_ERRORS):
                raise ReviewError(
                    "audit-log", f"could not record the decision in {self.results.path}: {exc}; nothing was changed"
                ) from None
            raise
        return row

    def _insert(self, draft: dict[str, Any], actions: list[dict[str, Any]]) -> dict[str, Any]:
        seq, prev = self.conn.execute(
            "SELECT COALESCE(MAX(seq), 0) + 1, "
            f"COALESCE((SELECT hash FROM review_decisions ORDER BY seq DESC LIMIT 1), '{GENESIS}') "
            "FROM review_decisions"
        ).fetchone()
        entry = {"seq": seq, **draft, "at": utc_now(), "actions": actions}
        entry_json = canonical(entry)
        digest = chain_hash(prev, entry_json)
        self.conn.execute(
            "INSERT INTO review_decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, entry["decision_id"], entry["item_id"], entry["decision"], entry["at"], entry_json, prev, digest),
        )
        return {**entry, "prev_hash": prev, "hash": digest}

    # ------------------------------------------------------------------ verifying
    def verify(self, mirror: str | os.PathLike[str] | None = None) -> AuditCheck:
        """Recompute the hash chain; with ``mirror``, also check it against the JSONL copy."""
        check = AuditCheck()
        rows = []
        if self.exists:
            triggers = trigger_names(self.conn)
            for name in SCHEMAS[dialect_of(self.conn)][1]:
                if name not in triggers:
                    check.problems.append(f"the append-only trigger {name} has been removed")
            rows = self.conn.execute(
                "SELECT seq, decision_id, item_id, decision, at, entry, prev_hash, hash FROM review_decisions "
                "ORDER BY seq"
            ).fetchall()
        prev, expected_seq = GENESIS, 1
        by_seq = {}
        entries: list[tuple[int, dict[str, Any] | None]] = []
        for seq, decision_id, item, decision, at, entry_json, prev_hash, digest in rows:
            by_seq[seq] = digest
            where = f"decision #{seq}"
            if seq != expected_seq:
                check.problems.append(f"{where}: expected #{expected_seq} here (rows deleted or inserted)")
            if prev_hash != prev:
                check.problems.append(f"{where}: does not link to the previous row (rows deleted, inserted or edited)")
            if chain_hash(prev_hash, entry_json) != digest:
                check.problems.append(f"{where}: content does not match its hash (edited)")
            columns = {"seq": seq, "decision_id": decision_id, "item_id": item, "decision": decision, "at": at}
            entries.append((seq, _check_entry(where, entry_json, columns, check)))
            prev, expected_seq = digest, seq + 1
        check.problems += check_log(entries)  # appeal rules: outcomes follow open appeals, four eyes
        check.rows, check.head = len(rows), prev
        if mirror is not None:
            _verify_mirror(Path(mirror), by_seq, check)
        return check


def _check_entry(where: str, entry_json: str, columns: dict[str, Any], check: AuditCheck) -> dict[str, Any] | None:
    """The hashed entry is canonical JSON and agrees with the row's indexed columns; returns
    it (None when it is not a JSON object)."""
    try:
        entry = json.loads(entry_json)
        if canonical(entry) != entry_json:
            raise ValueError("not canonical JSON")
    except ValueError as exc:
        check.problems.append(f"{where}: entry is not valid canonical JSON ({exc})")
        return None
    if not isinstance(entry, dict):
        check.problems.append(f"{where}: entry is not a JSON object")
        return None
    for name, value in columns.items():
        if entry and entry.get(name) != value:
            check.problems.append(f"{where}: column {name} differs from the hashed entry (edited)")
    return entry


def _verify_mirror(mirror: Path, by_seq: dict[int, str], check: AuditCheck) -> None:
    try:
        lines = mirror.read_text("utf-8").splitlines()
    except OSError as exc:
        check.problems.append(f"audit log mirror {mirror} is unreadable: {exc}")
        return
    seen = set()
    for n, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
            prev_hash, digest = row.pop("prev_hash"), row.pop("hash")
            seq = row["seq"]
        except (ValueError, KeyError, TypeError, AttributeError):
            check.problems.append(f"{mirror}:{n}: not an audit log line")
            continue
        seen.add(seq)
        if chain_hash(prev_hash, canonical(row)) != digest:
            check.problems.append(f"{mirror}:{n}: decision #{seq} does not match its hash (mirror edited)")
        elif seq not in by_seq:
            check.problems.append(f"{mirror}:{n}: decision #{seq} is missing from the database (deleted)")
        elif by_seq[seq] != digest:
            check.problems.append(f"{mirror}:{n}: decision #{seq} differs from the database's (rewritten)")
    missing = sorted(set(by_seq) - seen)
    if missing:
        check.notes.append(f"{len(missing)} decision(s) recorded without this mirror (e.g. #{missing[0]})")


def append_to_mirror(mirror: str | os.PathLike[str], row: dict[str, Any]) -> None:
    """Append one recorded row to the JSONL mirror and make it durable before returning."""
    fd = os.open(Path(mirror), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (canonical(row) + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
