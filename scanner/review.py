"""Human review: the queue of verdicts waiting for a person, and the audit log of their decisions.

meshscan never decides on its own what happens to a file: ``review`` verdicts (and, on request,
``flag`` verdicts) wait in a results database (written by ``meshscan scan --db`` or ``meshscan
watch --state``) until a named reviewer confirms or dismisses them, with a reason. A
confirmation can enrol the file into a signature library (descriptors and hashes only), a
dismissal can add it to a library's allowlist; both change what later scans say.

Items
    An item is one row of the ``results`` table (one file, or one archive member) with verdict
    ``review`` or ``flag``. Its id is the sha256 of ``[path, member, sha256]``: stable across
    rescans of the same content, new as soon as the content changes (so a decision always
    refers to the exact bytes a reviewer saw). Ids are shown shortened; any unambiguous prefix
    of at least :data:`MIN_PREFIX` characters is accepted, as git does.

Audit log
    Table ``review_decisions`` in the same SQLite database. Why there: the decision and the
    verdict it decides live and travel together, and SQLite gives atomic appends. The log is
    append-only and tamper-evident:

    * ``BEFORE UPDATE`` / ``BEFORE DELETE`` triggers abort any change to a recorded row, and a
      ``BEFORE INSERT`` trigger refuses a row that does not extend the chain;
    * every row holds the hash of the previous row, and its own hash is the sha256 of the
      previous hash and its canonical JSON entry (which includes its sequence number), so any
      edit, deletion or reordering made by going around the triggers breaks the chain, which
      :meth:`ReviewStore.verify` detects;
    * a JSONL mirror (``--audit-log FILE``), appended and fsynced after each commit, can be
      kept elsewhere (another disk, a WORM store, an oversight body). A chain can always be
      recomputed from scratch by someone who can write the database, so only a copy of the
      head hash held outside the database (the mirror, or the head printed by ``--verify``)
      proves that the whole log was not rewritten; verification against the mirror checks it.

A decision is recorded only after its action (enrol, allowlist) has been saved, in the same
write transaction that holds the database lock: if the library cannot be written, no decision
is recorded; if the decision cannot be recorded, the library is put back as it was.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scanner.errors import MeshscanError
from scanner.verdict import FLAG, REVIEW

REVIEWABLE = (REVIEW, FLAG)
CONFIRM, DISMISS = "confirm", "dismiss"
DECISIONS = (CONFIRM, DISMISS)
GENESIS = "0" * 64
"""``prev_hash`` of the first row of the audit log."""
SHORT_ID = 12
"""Characters of an item id shown to people (48 bits: collisions need ~16 million items)."""
MIN_PREFIX = 4
ITEM_COLUMNS = "path, member, sha256, verdict, category, scanned_at, record"

AUDIT_SCHEMA = f"""
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


class ReviewError(MeshscanError):
    """A review request that cannot be carried out; ``code`` is a stable reason code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def item_id(path: str, member: str | None, sha256: str | None) -> str:
    """Stable id of one reviewable thing: this path (and archive member) with these bytes."""
    key = json.dumps([path, member or "", sha256 or ""], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def canonical(obj: Any) -> str:
    """The one JSON spelling of an entry that its hash is computed over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def chain_hash(prev_hash: str, entry_json: str) -> str:
    return hashlib.sha256(f"{prev_hash}\n{entry_json}".encode()).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


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


@dataclass
class AuditCheck:
    """What :meth:`ReviewStore.verify` found."""

    rows: int = 0
    head: str = GENESIS
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class Outcome:
    """A recorded decision, and whether its mirror line could be written."""

    row: dict[str, Any]
    mirror_error: str | None = None


class ReviewStore:
    """The review queue and the audit log of one results database."""

    def __init__(self, db_path: str | os.PathLike[str], readonly: bool = False) -> None:
        """``readonly``: for listing and auditing, which must never write (and may be all a
        reviewer's account is allowed to do)."""
        self.path = Path(db_path)
        if not self.path.is_file():
            raise ReviewError("no-database", f"{self.path}: no such results database")
        try:
            # mode=rw/ro: never create an empty database by mistake; autocommit, explicit transactions
            self.conn = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode={'ro' if readonly else 'rw'}",
                uri=True,
                timeout=30,
                isolation_level=None,
            )
            tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as exc:
            raise ReviewError("not-a-results-database", f"{self.path}: not a SQLite database ({exc})") from None
        if "results" not in tables:
            self.conn.close()
            raise ReviewError(
                "not-a-results-database",
                f"{self.path} has no results table: write one with 'meshscan scan --db' or 'meshscan watch --state'",
            )
        self._has_log = "review_decisions" in tables

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> ReviewStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ items and the queue
    def items(self, verdicts: Iterable[str] = REVIEWABLE) -> list[ReviewItem]:
        verdicts = tuple(verdicts)
        marks = ",".join("?" * len(verdicts))
        rows = self.conn.execute(
            f"SELECT {ITEM_COLUMNS} FROM results WHERE verdict IN ({marks})",
            verdicts,
        ).fetchall()
        return [self._item(*r) for r in rows]

    @staticmethod
    def _item(
        path: str, member: str, sha: str | None, verdict: str, category: str | None, scanned_at: str | None, record: str
    ) -> ReviewItem:
        try:
            rec = json.loads(record)
        except ValueError:
            rec = {}
        member_or_none = member or None
        return ReviewItem(
            item_id(path, member_or_none, sha), path, member_or_none, sha, verdict, category, scanned_at or "", rec
        )

    def decided_items(self) -> set[str]:
        if not self._has_log:
            return set()
        return {r[0] for r in self.conn.execute("SELECT DISTINCT item_id FROM review_decisions")}

    def queue(self, verdicts: Iterable[str] = (REVIEW,)) -> list[ReviewItem]:
        """Items without a decision for their current content: highest top score first (items
        without scores last), then the oldest scan first."""
        decided = self.decided_items()
        pending = [i for i in self.items(verdicts) if i.id not in decided]

        def key(item: ReviewItem) -> tuple[float, str, str, str]:
            score = item.top[1]
            return (-score if score is not None else float("inf"), item.scanned_at, item.path, item.member or "")

        return sorted(pending, key=key)

    def find(self, prefix: str) -> ReviewItem:
        """The one item whose id starts with ``prefix``: among review and flag verdicts (indexed,
        so fast on large databases), else among all rows, so that a refusal can say why."""
        prefix = prefix.strip().lower()
        if len(prefix) < MIN_PREFIX or any(c not in "0123456789abcdef" for c in prefix):
            raise ReviewError("bad-id", f"{prefix!r} is not an item id (at least {MIN_PREFIX} hex characters)")
        marks = ",".join("?" * len(REVIEWABLE))
        keys = []
        for where, args in ((f"WHERE verdict IN ({marks})", REVIEWABLE), ("", ())):
            keys = [
                key
                for key in self.conn.execute(f"SELECT path, member, sha256 FROM results {where}", args)
                if item_id(key[0], key[1] or None, key[2]).startswith(prefix)
            ]  # the ids of every row, but the records only of the matches
            if keys:
                break
        found = [
            self._item(*self.conn.execute(f"SELECT {ITEM_COLUMNS} FROM results WHERE path = ? AND member = ?",
                                          key[:2]).fetchone())
            for key in keys
        ]  # fmt: skip
        if not found:
            raise ReviewError(
                "unknown-id",
                f"no item {prefix} in {self.path} (an id changes when the file's content changes and it is "
                "rescanned; list the queue with 'meshscan review')",
            )
        if len(found) > 1:
            names = "; ".join(f"{i.short_id} {_label(i.path, i.member)}" for i in found[:5])
            raise ReviewError(
                "ambiguous-id", f"item id {prefix} is ambiguous ({len(found)} items: {names}): give more characters"
            )
        return found[0]

    # ------------------------------------------------------------------ the audit log
    def decisions(self) -> list[dict[str, Any]]:
        """Every recorded decision, oldest first: the entry plus ``prev_hash`` and ``hash``."""
        if not self._has_log:
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

    def decision_for(self, item: str) -> dict[str, Any] | None:
        if not self._has_log:
            return None
        row = self.conn.execute(
            "SELECT entry FROM review_decisions WHERE item_id = ? ORDER BY seq LIMIT 1", (item,)
        ).fetchone()
        return json.loads(row[0]) if row else None

    def verify(self, mirror: str | os.PathLike[str] | None = None) -> AuditCheck:
        """Recompute the hash chain; with ``mirror``, also check it against the JSONL copy."""
        check = AuditCheck()
        if self._has_log:
            triggers = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
            for name in ("review_decisions_no_update", "review_decisions_no_delete", "review_decisions_chain"):
                if name not in triggers:
                    check.problems.append(f"the append-only trigger {name} has been removed")
            rows = self.conn.execute(
                "SELECT seq, decision_id, item_id, decision, at, entry, prev_hash, hash FROM review_decisions "
                "ORDER BY seq"
            ).fetchall()
        else:
            rows = []
        prev, expected_seq = GENESIS, 1
        by_seq = {}
        for seq, decision_id, item, decision, at, entry_json, prev_hash, digest in rows:
            by_seq[seq] = digest
            where = f"decision #{seq}"
            if seq != expected_seq:
                check.problems.append(f"{where}: expected #{expected_seq} here (rows deleted or inserted)")
            if prev_hash != prev:
                check.problems.append(f"{where}: does not link to the previous row (rows deleted, inserted or edited)")
            if chain_hash(prev_hash, entry_json) != digest:
                check.problems.append(f"{where}: content does not match its hash (edited)")
            try:
                entry = json.loads(entry_json)
                if canonical(entry) != entry_json:
                    raise ValueError("not canonical JSON")
            except ValueError as exc:
                check.problems.append(f"{where}: entry is not valid canonical JSON ({exc})")
                entry = {}
            fields = {"seq": seq, "decision_id": decision_id, "item_id": item, "decision": decision, "at": at}
            for name, value in fields.items():
                if entry and entry.get(name) != value:
                    check.problems.append(f"{where}: column {name} differs from the hashed entry (edited)")
            prev, expected_seq = digest, seq + 1
        check.rows, check.head = len(rows), prev
        if mirror is not None:
            self._verify_mirror(Path(mirror), by_seq, check)
        return check

    @staticmethod
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
        from scanner.library import CATEGORIES

        by, reason = (by or "").strip(), (reason or "").strip()
        if decision not in DECISIONS:
            raise ReviewError("bad-decision", f"decision must be one of: {', '.join(DECISIONS)}")
        if not by or not reason:
            raise ReviewError("missing-reviewer", "a decision needs who made it (--by) and why (--reason)")
        if enrol_library is not None and decision != CONFIRM:
            raise ReviewError("bad-action", "only a confirmation can enrol a file into a library")
        if allowlist_library is not None and decision != DISMISS:
            raise ReviewError("bad-action", "only a dismissal can add a file to an allowlist")
        if category is not None and enrol_library is None:
            raise ReviewError("bad-action", "--category goes with --enrol")
        item = self.find(prefix)
        if item.verdict not in REVIEWABLE:
            raise ReviewError(
                "not-reviewable", f"item {item.short_id} is '{item.verdict}': only review and flag verdicts are decided"
            )
        earlier = self.decision_for(item.id)
        if earlier is not None:
            raise ReviewError("already-decided", _already(item.id, earlier))
        file_check = self._check_file(item, file, needed=enrol_library is not None)
        if enrol_library is not None:
            category = category or item.category or item.top[0]
            if category not in CATEGORIES:
                raise ReviewError(
                    "bad-category", f"category {category!r} is not one of: {', '.join(CATEGORIES)}; give --category"
                )
        decision_id = "rd-" + uuid.uuid4().hex[:12]
        draft = self._draft(item, decision, by, reason, decision_id, file_check)
        plan = None
        if enrol_library is not None:
            plan = _EnrolPlan.prepare(Path(enrol_library), file_check["path"], item, category, decision_id, by, reason)
        elif allowlist_library is not None:
            plan = _AllowPlan.prepare(Path(allowlist_library), item, decision_id, by, reason)
        return self._record(draft, plan, mirror)

    @staticmethod
    def _check_file(item: ReviewItem, file: str | os.PathLike[str] | None, needed: bool) -> dict[str, Any]:
        """Make sure the bytes on disk are the bytes that were judged (when they are on disk)."""
        from scanner.inspect import file_sha256

        path = os.fspath(file) if file is not None else item.path
        if "://" in path:
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

    @staticmethod
    def _draft(item: ReviewItem, decision: str, by: str, reason: str, decision_id: str,
               file_check: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
        """The entry without its place in the log (seq, time, actions), checked to be recordable
        before any action is taken."""
        rec = item.record
        draft = {
            "decision_id": decision_id,
            "item_id": item.id,
            "decision": decision,
            "by": by,
            "reason": reason,
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

    def _record(self, draft: dict[str, Any], plan: _Plan | None, mirror: str | os.PathLike[str] | None) -> Outcome:
        self.conn.executescript(AUDIT_SCHEMA)
        self._has_log = True
        self.conn.execute("BEGIN IMMEDIATE")  # the write lock: one decision at a time, per database
        applied = False
        try:
            earlier = self.decision_for(draft["item_id"])  # decided by someone else meanwhile?
            if earlier is not None:
                raise ReviewError("already-decided", _already(draft["item_id"], earlier))
            actions = []
            if plan is not None:
                actions.append(plan.apply())
                applied = True
            seq, prev = self.conn.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1, "
                f"COALESCE((SELECT hash FROM review_decisions ORDER BY seq DESC LIMIT 1), '{GENESIS}') "
                "FROM review_decisions"
            ).fetchone()
            entry = {"seq": seq, **draft, "at": _now(), "actions": actions}
            entry_json = canonical(entry)
            digest = chain_hash(prev, entry_json)
            self.conn.execute(
                "INSERT INTO review_decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (seq, entry["decision_id"], entry["item_id"], entry["decision"], entry["at"], entry_json, prev, digest),
            )
            self.conn.execute("COMMIT")
        except BaseException as exc:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # already rolled back by SQLite
            if applied:
                plan.undo()
            if isinstance(exc, sqlite3.Error):
                raise ReviewError(
                    "audit-log", f"could not record the decision in {self.path}: {exc}; nothing was changed"
                ) from None
            raise
        row = {**entry, "prev_hash": prev, "hash": digest}
        outcome = Outcome(row)
        if mirror is not None:
            try:
                _append_synced(Path(mirror), canonical(row))
            except OSError as exc:
                outcome.mirror_error = f"could not append to audit log mirror {mirror}: {exc}"
        return outcome


def _label(path: str, member: str | None) -> str:
    return path + (f" :: {member}" if member else "")


def _already(item: str, earlier: dict[str, Any]) -> str:
    return (
        f"item {item[:SHORT_ID]} was already decided for this content: {earlier.get('decision')} by "
        f"{earlier.get('by')} at {earlier.get('at')} ({earlier.get('decision_id')}); decisions are never rewritten"
    )


def _append_synced(path: Path, line: str) -> None:
    """Append one line and make it durable before returning."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


class _Plan:
    """An action on a library, prepared (slow work, validation) before the database lock is
    taken, applied under it, and undone if the decision cannot be recorded."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.original = None

    def _load(self):  # noqa: ANN202 - SignatureLibrary
        from scanner.library import LibraryError, SignatureLibrary

        try:
            return SignatureLibrary.load(self.root)
        except LibraryError as exc:
            raise ReviewError("library", str(exc)) from None

    def apply(self) -> dict[str, Any]:
        lib = self._load()
        self.original = self._load()
        before = lib.library_version
        result = self._change(lib)
        if result.pop("changed"):
            try:
                lib.save()
            except BaseException as exc:
                self.undo()
                if isinstance(exc, OSError):
                    raise ReviewError(
                        "library", f"could not write library {self.root}: {exc}; no decision was recorded"
                    ) from None
                raise
        return {
            **result,
            "library": str(self.root.resolve()),
            "library_version_before": before,
            "library_version_after": lib.library_version,
        }

    def _change(self, lib) -> dict[str, Any]:  # noqa: ANN001
        raise NotImplementedError

    def undo(self) -> None:
        """Write the library back as it was (same content, so the same library version)."""
        if self.original is None:
            return
        try:
            self.original.save()
        except OSError as exc:
            raise ReviewError(
                "library",
                f"library {self.root} could not be restored after a failed decision "
                f"({exc}): check it with 'meshscan signatures verify'",
            ) from None


class _EnrolPlan(_Plan):
    @classmethod
    def prepare(
        cls, root: Path, path: str, item: ReviewItem, category: str, decision_id: str, by: str, reason: str
    ) -> _EnrolPlan:
        """Describe the file now (outside the lock): enrol it into a scratch library and keep
        the signature of the reviewed member."""
        from scanner.enrol import enrol
        from scanner.library import SignatureLibrary

        plan = cls(root)
        plan._load()  # refuse an unusable library before doing any work
        scratch = SignatureLibrary.create()
        from scanner.features.reference import ReferenceError as ReferenceSetError

        try:
            enrolled = enrol(scratch, path, category, f"meshscan review {decision_id} by {by}", reason)
        except (MeshscanError, ReferenceSetError) as exc:
            raise ReviewError("enrol", f"{path} could not be enrolled: {exc}") from None
        results = [r for r in enrolled if r.member == item.member]
        if not results or results[0].signature_id is None:
            status = results[0].status if results else "member not found"
            raise ReviewError("unreadable", f"{_label(path, item.member)} could not be enrolled ({status})")
        index = next(i for i, s in enumerate(scratch.signatures) if s.id == results[0].signature_id)
        judged = item.record.get("geometry_hash")
        if judged and scratch.signatures[index].geometry_hash != judged:  # replaced since the sha256 check
            raise ReviewError("content-changed", f"{_label(path, item.member)} is not the geometry that was judged")
        mask = scratch.rows[:, 0] == index
        plan.signature = scratch.signatures[index]
        plan.vectors, plan.bodies = scratch.vectors[mask], [int(b) for b in scratch.rows[mask, 1]]
        plan.thresholds = scratch.thresholds[mask]
        plan.category = category
        return plan

    def _change(self, lib) -> dict[str, Any]:  # noqa: ANN001
        from scanner.library import LibraryError

        try:
            result = lib.add_signature(self.signature, self.vectors, self.bodies, self.thresholds)
        except LibraryError as exc:
            raise ReviewError("library", f"cannot enrol into {self.root}: {exc}") from None
        action = {
            "action": "enrol",
            "status": "added" if result.added else "already-enrolled",
            "changed": result.added,
            "signature_id": self.signature.id,
            "category": self.category,
        }
        if result.dropped_allow:  # the signature wins over allowlist entries with its hash: on the record
            action["allowlist_dropped"] = [
                {"sha256": a.sha256, "geometry_hash": a.geometry_hash, "note": a.note} for a in result.dropped_allow
            ]
        return action


class _AllowPlan(_Plan):
    @classmethod
    def prepare(cls, root: Path, item: ReviewItem, decision_id: str, by: str, reason: str) -> _AllowPlan:
        from scanner.library import AllowEntry

        plan = cls(root)
        plan._load()
        gh = item.record.get("geometry_hash")
        # a whole file is allowed by its bytes and its triangles; an archive member by its
        # triangles only (the archive's sha256 would allow every other member too)
        sha = item.sha256 if item.member is None else None
        if not sha and not gh:
            raise ReviewError("no-hash", f"item {item.short_id} has no sha256 or geometry hash to allow")
        plan.entry = AllowEntry(
            sha256=sha, geometry_hash=gh, added=_now(), note=f"{reason} [review {decision_id}]", by=by
        )
        return plan

    def _change(self, lib) -> dict[str, Any]:  # noqa: ANN001
        from scanner.library import AllowlistConflict

        try:
            added = lib.allow(self.entry)
        except AllowlistConflict as exc:  # the item is an enrolled signature: never allowlisted
            raise ReviewError("allowlist-conflict", str(exc)) from None
        return {
            "action": "allowlist",
            "status": "added" if added else "already-allowed",
            "changed": added,
            "sha256": self.entry.sha256,
            "geometry_hash": self.entry.geometry_hash,
        }
