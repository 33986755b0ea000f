"""``signatures update``: subscribe a library to publishers' signed bundles, as freshclam
subscribes ClamAV to its mirrors and an HMA deployment fetches banks from exchanges.

A subscriber library is managed by meshscan: ``--library DIR`` is a symlink to one complete,
verified library folder under ``.DIR.versions/`` beside it. An update builds the new library
in a fresh folder, verifies it, then replaces the symlink with one ``rename`` - so a reader
(``scan``, ``watch``, ``serve --reload-library``) opens either the old library or the new
one, never a mix, and a crash at any moment leaves one of the two in place (a half-built
folder is never pointed at, and is cleared by the next update).

Each publisher (each signing key) is a *bank*, recorded in ``banks.json`` inside the library
folder: its name, the version and sha256 of the bundle held, and which signature ids and
allowlist entries came from it. So an update applies only the difference - new signatures
added, the bank's signatures the publisher dropped (or tombstoned) removed - and never removes
a signature that another bank or a local enrolment holds. ``banks.json`` also keeps the
per-signature ``disabled`` list (HMA's "disable content": who, why, when) and an ``events``
audit log of every update, disable and enable, hash-chained like the review audit log (see
:mod:`scanner.exchange.events` for why it lives with the library); a disabled signature stays
out through updates until enabled again.

One change at a time: ``update``, ``disable`` and ``enable`` read ``banks.json``, build the next
folder and swap the symlink while holding an exclusive ``flock`` on ``.DIR.lock`` beside the
library. Without it two overlapping runs (two cron jobs) would both start from the same
``banks.json``, the last swap would silently drop the other run's bundle, and one run's prune
would delete the other's half-written folder. A second run waits for the first (up to
:data:`LOCK_WAIT_SECONDS`), then is refused with ``busy``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scanner.exchange import errors as why
from scanner.exchange.bundle import MAX_BYTES, Bundle, open_bundle
from scanner.exchange.errors import Refused
from scanner.exchange.events import append_event
from scanner.exchange.fetch import fetch
from scanner.exchange.keys import PublicKey
from scanner.exchange.source import bank_source
from scanner.library import AllowEntry, AllowlistConflict, Signature, SignatureLibrary
from scanner.util import utc_now

BANKS_FILE = "banks.json"
KEEP_VERSIONS = 2
"""Library folders kept under ``.DIR.versions``: the current one and the one before it."""
LOCK_WAIT_SECONDS = 60.0
"""How long a change waits for another one on the same library before it is refused (``busy``)."""


def versions_dir(path: Path) -> Path:
    return path.parent / f".{path.name}.versions"


def lock_path(path: Path) -> Path:
    return path.parent / f".{path.name}.lock"


@contextlib.contextmanager
def locked(path: Path, wait: float | None = None) -> Iterator[None]:
    """Hold the library's exclusive lock for one read-build-swap, so overlapping runs apply one
    after the other; :class:`Refused` (``busy``) after ``wait`` seconds (default
    :data:`LOCK_WAIT_SECONDS`). The kernel drops the lock when the process ends, even killed."""
    wait = LOCK_WAIT_SECONDS if wait is None else wait
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path(path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise Refused(
                        why.BUSY,
                        f"another 'signatures update', 'disable' or 'enable' of {path} is still running "
                        f"after {wait:g} s (lock {lock_path(path)}); try again later",
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def read_state(folder: Path | None) -> dict[str, Any]:
    """``banks.json`` of a library folder (an empty state when there is none)."""
    empty: dict[str, Any] = {"banks": {}, "disabled": {}, "events": []}
    if folder is None or not (folder / BANKS_FILE).is_file():
        return empty
    try:
        state = json.loads((folder / BANKS_FILE).read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise Refused(why.MALFORMED, f"{folder / BANKS_FILE} is unreadable: {exc}") from None
    return {**empty, **state}


def current_folder(path: Path) -> Path | None:
    """The folder ``path`` points at, None when there is no library yet; :class:`Refused`
    (``unmanaged-library``) when ``path`` is a folder that update did not create."""
    if path.is_symlink():
        return path.resolve() if path.exists() else None
    if path.exists():
        raise Refused(
            why.UNMANAGED_LIBRARY,
            f"{path} is a library folder made by hand; 'signatures update' only swaps libraries it created. "
            f"Subscribe into a new path (e.g. {path}-subscribed), then 'signatures merge' your own library into it",
        )
    return None


def banks(folder: Path | None) -> list[dict[str, Any]]:
    """The publishers a library subscribes to, for ``signatures list``: name, key fingerprint
    (what a subscriber compares out of band with the one the publisher gave), version held,
    signatures held from it, whether its allowlist is trusted, when it was last updated."""
    return [
        {"publisher": bank.get("publisher", "?"), "key": key, "version": bank.get("sequence"),
         "signatures": len(bank.get("signatures", [])), "allowlist_trusted": bool(bank.get("allowlist_trusted")),
         "updated": bank.get("updated", "")}
        for key, bank in sorted(read_state(folder)["banks"].items())
    ]  # fmt: skip


@dataclass
class UpdateReport:
    """What one update did, per kind and per category."""

    status: str
    """``updated`` or ``current``."""
    publisher: str
    key: str
    held: int | None
    """The version held before (None: a new subscription)."""
    sequence: int
    added: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    removed: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    disabled: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    """Signatures in the bundle left out because they are disabled here."""
    kept: list[str] = field(default_factory=list)
    duplicate: list[tuple[str, str]] = field(default_factory=list)
    """(signature id, who already holds it: another bank or ``local``)."""
    tombstone_ignored: list[tuple[str, str]] = field(default_factory=list)
    allow_offered: int = 0
    allow_trusted: bool = False
    allow_added: list[AllowEntry] = field(default_factory=list)
    allow_removed: list[AllowEntry] = field(default_factory=list)
    allow_refused: list[tuple[AllowEntry, str]] = field(default_factory=list)
    allow_dropped: list[tuple[AllowEntry, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {
            "status": self.status,
            "publisher": self.publisher,
            "key": self.key,
            "from_version": self.held,
            "to_version": self.sequence,
            "signatures": {
                "added": dict(self.added),
                "removed": dict(self.removed),
                "disabled": dict(self.disabled),
                "unchanged": len(self.kept),
                "duplicate": [{"id": i, "held_by": b} for i, b in self.duplicate],
                "tombstone_ignored": [{"id": i, "held_by": b} for i, b in self.tombstone_ignored],
            },
            "allowlist": {
                "offered": self.allow_offered,
                "trusted": self.allow_trusted,
                "added": [asdict(a) for a in self.allow_added],
                "removed": [asdict(a) for a in self.allow_removed],
                "refused": [{"entry": asdict(a), "reason": r} for a, r in self.allow_refused],
                "dropped": [{"entry": asdict(a), "signature_id": s} for a, s in self.allow_dropped],
            },
        }

    def lines(self) -> list[str]:
        """The summary in words: one line per kind and category, then one per conflict."""
        head = "already current" if self.status == "current" else "updated"
        out = [f"{self.publisher} ({self.key}): {head}, version {self.held or '-'} -> {self.sequence}"]
        for kind, table in (("added", self.added), ("removed", self.removed), ("disabled", self.disabled)):
            for category, ids in sorted(table.items()):
                out.append(f"  {kind} {len(ids)} {category}: {', '.join(ids)}")
        out.append(f"  unchanged {len(self.kept)} signature(s)")
        out += [f"  duplicate: {i} already held by {b} (kept there)" for i, b in self.duplicate]
        out += [
            f"  conflict: tombstone for {i} ignored: held by {b}, not by this publisher"
            for i, b in self.tombstone_ignored
        ]
        if not self.allow_trusted:
            out.append(
                f"  allowlist: {self.allow_offered} entr{'y' if self.allow_offered == 1 else 'ies'} not imported"
                + (" (this publisher is not trusted for allowlists: --trust-allowlist)" if self.allow_offered else "")
            )
        else:
            out.append(f"  allowlist: {len(self.allow_added)} added, {len(self.allow_removed)} removed, "
                       f"{len(self.allow_refused)} refused (conflict with a signature)")  # fmt: skip
        out += [f"  conflict: {r}" for _, r in self.allow_refused]
        out += [
            f"  conflict: allowlist entry {a.label()} dropped: signature {s} has its hash"
            for a, s in self.allow_dropped
        ]
        return out


def _holder(state: dict[str, Any], sid: str) -> str:
    for key, bank in state["banks"].items():
        if sid in bank.get("signatures", []):
            return f"{bank.get('publisher', '?')} ({key})"
    return "local"


def _rows_of(lib: SignatureLibrary, index: int):  # noqa: ANN202
    mask = lib.rows[:, 0] == index
    return lib.vectors[mask], [int(b) for b in lib.rows[mask, 1]], lib.thresholds[mask], lib.patches_of(index)


def apply_bundle(lib: SignatureLibrary, state: dict[str, Any], bundle: Bundle, trust_allowlist: bool) -> UpdateReport:
    """Merge ``bundle`` into ``lib`` and ``state`` (both changed in place) as its publisher's
    bank; the report says every change. Pure: nothing is written."""
    bank = state["banks"].get(bundle.key, {})
    owned = set(bank.get("signatures", []))
    report = UpdateReport("updated", bundle.publisher, bundle.key, bank.get("sequence"), bundle.sequence)
    incoming = {s.id: i for i, s in enumerate(bundle.library.signatures)}
    tombstoned = {t["id"] for t in bundle.tombstones}
    present = {s.id: s for s in lib.signatures}
    gone = sorted(sid for sid in (owned - set(incoming)) | (owned & tombstoned) if sid in present)
    for sid in gone:
        report.removed[present[sid].category].append(sid)
    lib.remove(gone)
    owned -= set(gone) | tombstoned
    report.tombstone_ignored = [(sid, _holder(state, sid)) for sid in sorted(tombstoned - set(gone)) if sid in present]
    for sid, index in incoming.items():
        sig = bundle.library.signatures[index]
        if sid in state["disabled"]:
            report.disabled[sig.category].append(sid)
            continue
        if sid in owned and lib.find(geometry_hash=sig.geometry_hash):
            report.kept.append(sid)
            continue
        source = bank_source(bundle.publisher, bundle.key, sig.source)
        result = lib.add_signature(Signature(**{**vars(sig), "source": source}), *_rows_of(bundle.library, index))
        if result.added:
            owned.add(sid)
            report.added[sig.category].append(sid)
            report.allow_dropped += [(a, sid) for a in result.dropped_allow]
        else:
            report.duplicate.append((sid, _holder(state, sid)))
    _apply_allowlist(lib, bank, bundle, trust_allowlist, report)
    state["banks"][bundle.key] = {
        "publisher": bundle.publisher,
        "sequence": bundle.sequence,
        "bundle_sha256": bundle.sha256,
        "created": bundle.created,
        "updated": utc_now(),
        "allowlist_trusted": trust_allowlist,
        "signatures": sorted(owned),
        "allowlist": bank.pop("allowlist_new", []),
    }
    return report


def _apply_allowlist(
    lib: SignatureLibrary, bank: dict[str, Any], bundle: Bundle, trust: bool, report: UpdateReport
) -> None:
    """A publisher's allowlist comes in only when it is trusted for allowlists; its entries from
    earlier versions that it no longer offers are removed; an entry equal to any enrolled
    signature's hash (ours or another bank's) is refused and named."""
    report.allow_offered, report.allow_trusted = len(bundle.library.allowlist), trust
    offered = {(a.sha256, a.geometry_hash) for a in bundle.library.allowlist} if trust else set()
    had = {tuple(k) for k in bank.get("allowlist", [])}
    stale = had - offered
    report.allow_removed = [a for a in lib.allowlist if (a.sha256, a.geometry_hash) in stale]
    lib.allowlist = [a for a in lib.allowlist if (a.sha256, a.geometry_hash) not in stale]
    kept = sorted(had & offered, key=str)
    for entry in bundle.library.allowlist if trust else []:
        key = (entry.sha256, entry.geometry_hash)
        try:
            if lib.allow(AllowEntry(**vars(entry))):
                report.allow_added.append(entry)
                kept.append(key)
        except AllowlistConflict as exc:
            report.allow_refused.append((entry, str(exc)))
    bank["allowlist_new"] = [list(k) for k in dict.fromkeys(kept)]


def commit(path: Path, lib: SignatureLibrary, state: dict[str, Any]) -> Path:
    """Write ``lib`` and ``state`` into a fresh folder under ``.DIR.versions`` and point
    ``path`` at it with one atomic rename; older folders past :data:`KEEP_VERSIONS` go."""
    versions = versions_dir(path)
    versions.mkdir(parents=True, exist_ok=True)
    stamp = utc_now().replace(":", "").replace("+0000", "Z") + "-" + uuid.uuid4().hex[:8]
    staging = versions / f".staging-{stamp}"
    lib.save(staging)
    (staging / BANKS_FILE).write_text(json.dumps(state, indent=1), "utf-8")
    problems = SignatureLibrary.verify(staging)
    if problems:  # never point at a folder that does not load
        shutil.rmtree(staging, ignore_errors=True)
        raise Refused(why.MALFORMED, f"the updated library does not verify: {'; '.join(problems)}")
    final = versions / stamp
    os.rename(staging, final)
    link = path.parent / f".{path.name}.link-{stamp}"
    os.symlink(os.path.relpath(final, path.parent), link)
    try:
        os.replace(link, path)  # the swap: atomic on POSIX
    except BaseException:
        os.unlink(link)
        raise
    _fsync_dir(path.parent)
    _prune(versions, final)
    return final


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _prune(versions: Path, current: Path) -> None:
    """Drop half-built staging folders and all but the newest :data:`KEEP_VERSIONS` versions
    (meshscan's own library copies; never a user's file). Called under the library's lock, so
    a staging folder here is a crashed run's leftover, never another run's work in progress."""
    for stale in versions.glob(".staging-*"):
        shutil.rmtree(stale, ignore_errors=True)
    done = sorted((p for p in versions.iterdir() if not p.name.startswith(".")), key=lambda p: p.name)
    for old in done[:-KEEP_VERSIONS]:
        if old != current:
            shutil.rmtree(old, ignore_errors=True)


def update(
    source: str,
    path: str | os.PathLike[str],
    trusted: Sequence[PublicKey],
    trust_allowlist: Sequence[PublicKey] = (),
    max_bytes: int = MAX_BYTES,
) -> UpdateReport:
    """Fetch ``source``, verify it against ``trusted`` keys, refuse a rollback, merge it as its
    publisher's bank and swap the library in atomically. :class:`Refused` says why not."""
    root = Path(path)
    current_folder(root)  # refuse a hand-made folder before downloading anything
    bundle = open_bundle(fetch(source, max_bytes), trusted, max_bytes)
    with locked(root):  # read, merge and swap as one step: another run waits its turn
        return _update_locked(root, bundle, trust_allowlist)


def _update_locked(root: Path, bundle: Bundle, trust_allowlist: Sequence[PublicKey]) -> UpdateReport:
    """The part of :func:`update` done under the lock, from the library as it is now."""
    folder = current_folder(root)
    state = read_state(folder)
    held = state["banks"].get(bundle.key)
    if held:
        if bundle.sequence < held["sequence"]:
            raise Refused(
                why.ROLLBACK,
                f"{bundle.publisher} version {bundle.sequence} is older than version {held['sequence']} held: refused",
            )
        if bundle.sequence == held["sequence"]:
            if bundle.sha256 == held["bundle_sha256"]:
                return UpdateReport("current", bundle.publisher, bundle.key, held["sequence"], bundle.sequence)
            raise Refused(
                why.VERSION_CONFLICT,
                f"{bundle.publisher} version {bundle.sequence} differs from the version {held['sequence']} held",
            )
    lib = SignatureLibrary.load(folder) if folder else SignatureLibrary.create(name=f"subscribed: {bundle.publisher}")
    trust_allow = bundle.key in {k.fingerprint for k in trust_allowlist}
    report = apply_bundle(lib, state, bundle, trust_allow)
    append_event(
        state["events"],
        {"at": utc_now(), "action": "update", "publisher": bundle.publisher, "key": bundle.key,
         "from": report.held, "to": bundle.sequence, "bundle_sha256": bundle.sha256,
         "added": sum(map(len, report.added.values())), "removed": sum(map(len, report.removed.values()))}
    )  # fmt: skip
    commit(root, lib, state)
    return report


def set_disabled(
    path: str | os.PathLike[str], ids: Sequence[str], by: str, reason: str, enable: bool = False
) -> list[str]:
    """Disable signatures (HMA's "disable content"): taken out of the library, and kept out by
    later updates, with who and why in ``banks.json``'s audit trail; or enable them again (they
    come back with the next update of the bank that offers them). Returns the ids changed."""
    root = Path(path)
    if current_folder(root) is None:
        raise Refused(why.UNMANAGED_LIBRARY, f"{root} is not a subscribed library (nothing to disable)")
    with locked(root):
        return _set_disabled_locked(root, ids, by, reason, enable)


def _set_disabled_locked(root: Path, ids: Sequence[str], by: str, reason: str, enable: bool) -> list[str]:
    folder = current_folder(root)
    if folder is None:
        raise Refused(why.UNMANAGED_LIBRARY, f"{root} is not a subscribed library (nothing to disable)")
    lib, state = SignatureLibrary.load(folder), read_state(folder)
    now = utc_now()
    if enable:
        changed = [i for i in ids if state["disabled"].pop(i, None) is not None]
    else:
        changed = lib.remove(list(ids))
        for sid in changed:
            state["disabled"][sid] = {"by": by, "why": reason, "at": now, "held_by": _holder(state, sid)}
            for bank in state["banks"].values():
                if sid in bank.get("signatures", []):
                    bank["signatures"].remove(sid)
    if changed:
        append_event(
            state["events"],
            {"at": now, "action": "enable" if enable else "disable", "ids": changed, "by": by, "why": reason},
        )
        commit(root, lib, state)
    return changed
