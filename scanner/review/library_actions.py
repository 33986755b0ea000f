"""What a decision does to a signature library, transactionally.

A confirmation can enrol the file into a library (descriptors and hashes only, never
geometry); a dismissal can add it to a library's allowlist. Each is an action prepared (slow
work, validation) *before* the database lock is taken, applied under it by
:meth:`scanner.review.audit.AuditLog.append`, and undone - the library written back as it was,
so with the same library version - if the decision cannot be recorded.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from scanner.errors import MeshscanError
from scanner.review.audit import utc_now
from scanner.review.errors import ReviewError
from scanner.review.queue import ReviewItem, label

if TYPE_CHECKING:
    from scanner.library import SignatureLibrary


class LibraryAction:
    """An action on the library at ``root``; subclasses say what :meth:`_change` does."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.original: SignatureLibrary | None = None

    def _load(self) -> SignatureLibrary:
        from scanner.library import LibraryError, SignatureLibrary

        try:
            return SignatureLibrary.load(self.root)
        except LibraryError as exc:
            raise ReviewError("library", str(exc)) from None

    def apply(self) -> dict[str, Any]:
        """Change and save the library (keeping the original to undo); returns what was done,
        for the audit entry."""
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

    def _change(self, lib: SignatureLibrary) -> dict[str, Any]:
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


class EnrolAction(LibraryAction):
    """Add the reviewed file's (or member's) signature to the library."""

    @classmethod
    def prepare(
        cls, root: Path, path: str, item: ReviewItem, category: str, decision_id: str, by: str, reason: str
    ) -> EnrolAction:
        """Describe the file now (outside the lock): enrol it into a scratch library and keep
        the signature of the reviewed member."""
        from scanner.enrol import enrol
        from scanner.library import SignatureLibrary

        action = cls(root)
        action._load()  # refuse an unusable library before doing any work
        scratch = SignatureLibrary.create()
        try:
            enrolled = enrol(scratch, path, category, f"meshscan review {decision_id} by {by}", reason)
        except MeshscanError as exc:  # a LibraryError too (e.g. a reference set that does not fit)
            raise ReviewError("enrol", f"{path} could not be enrolled: {exc}") from None
        results = [r for r in enrolled if r.member == item.member]
        if not results or results[0].signature_id is None:
            status = results[0].status if results else "member not found"
            raise ReviewError("unreadable", f"{label(path, item.member)} could not be enrolled ({status})")
        index = next(i for i, s in enumerate(scratch.signatures) if s.id == results[0].signature_id)
        judged = item.record.get("geometry_hash")
        if judged and scratch.signatures[index].geometry_hash != judged:  # replaced since the sha256 check
            raise ReviewError("content-changed", f"{label(path, item.member)} is not the geometry that was judged")
        mask = scratch.rows[:, 0] == index
        action.signature = scratch.signatures[index]
        action.vectors, action.bodies = scratch.vectors[mask], [int(b) for b in scratch.rows[mask, 1]]
        action.thresholds = scratch.thresholds[mask]
        action.patches = scratch.patches_of(index)
        action.category = category
        return action

    def _change(self, lib: SignatureLibrary) -> dict[str, Any]:
        from scanner.library import LibraryError

        try:
            result = lib.add_signature(self.signature, self.vectors, self.bodies, self.thresholds, self.patches)
        except LibraryError as exc:
            raise ReviewError("library", f"cannot enrol into {self.root}: {exc}") from None
        action = {
            "action": "enrol",
            "status": "added" if result.added else "already-enrolled",
            "changed": result.added,
            "signature_id": self.signature.id,
            "category": self.category,
        }
        held = [lib.signatures[i] for i in lib.find(geometry_hash=self.signature.geometry_hash)]
        if not result.added and held and held[0].disabled is not None:
            # the geometry is enrolled but was disabled (an appeal overturned its confirmation):
            # it stays disabled - a reviewer re-enables nothing by accident - and the record says so
            action.update(status="already-enrolled-disabled", signature_id=held[0].id, disabled=held[0].disabled)
        if result.dropped_allow:  # the signature wins over allowlist entries with its hash: on the record
            action["allowlist_dropped"] = [
                {"sha256": a.sha256, "geometry_hash": a.geometry_hash, "note": a.note} for a in result.dropped_allow
            ]
        return action


class AllowAction(LibraryAction):
    """Add the reviewed file's hashes to the library's allowlist."""

    @classmethod
    def prepare(cls, root: Path, item: ReviewItem, decision_id: str, by: str, reason: str) -> AllowAction:
        from scanner.library import AllowEntry

        action = cls(root)
        action._load()
        gh = item.record.get("geometry_hash")
        # a whole file is allowed by its bytes and its triangles; an archive member by its
        # triangles only (the archive's sha256 would allow every other member too)
        sha = item.sha256 if item.member is None else None
        if not sha and not gh:
            raise ReviewError("no-hash", f"item {item.short_id} has no sha256 or geometry hash to allow")
        action.entry = AllowEntry(
            sha256=sha, geometry_hash=gh, added=utc_now(), note=f"{reason} [review {decision_id}]", by=by
        )
        return action

    def _change(self, lib: SignatureLibrary) -> dict[str, Any]:
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


class DisableAction(LibraryAction):
    """Overturning a confirmation on appeal: disable the signature it enrolled (kept in the
    library, with who, why and when; it no longer matches)."""

    def __init__(self, root: Path, signature_id: str, by: str, why: str) -> None:
        super().__init__(root)
        self.signature_id, self.by, self.why = signature_id, by, why

    def _change(self, lib: SignatureLibrary) -> dict[str, Any]:
        from scanner.library import LibraryError

        try:
            changed = lib.disable(self.signature_id, self.by, self.why)
            status = "disabled" if changed else "already-disabled"
        except LibraryError:  # removed by hand since: nothing left to disable, on the record
            changed, status = False, "not-found"
        return {"action": "disable", "status": status, "changed": changed, "signature_id": self.signature_id}


class UnallowAction(LibraryAction):
    """Overturning a dismissal on appeal: remove the allowlist entry it added (the entry with
    the same sha256 and geometry hash), so later scans judge the file again."""

    def __init__(self, root: Path, sha256: str | None, geometry_hash: str | None) -> None:
        super().__init__(root)
        self.key = (sha256, geometry_hash)

    def _change(self, lib: SignatureLibrary) -> dict[str, Any]:
        kept = [a for a in lib.allowlist if (a.sha256, a.geometry_hash) != self.key]
        removed = len(lib.allowlist) - len(kept)
        lib.allowlist = kept
        return {
            "action": "unallow",
            "status": "removed" if removed else "not-found",
            "changed": bool(removed),
            "sha256": self.key[0],
            "geometry_hash": self.key[1],
        }


def reverse_action(action: dict[str, Any], by: str, why: str) -> LibraryAction:
    """The action that undoes a recorded ``enrol`` or ``allowlist`` action of a decision
    overturned on appeal, on the library it was applied to."""
    root = Path(action["library"])
    if action["action"] == "enrol":
        return DisableAction(root, action["signature_id"], by, why)
    return UnallowAction(root, action.get("sha256"), action.get("geometry_hash"))
