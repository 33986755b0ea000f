"""SignatureLibrary: descriptors and hashes of known files, never their geometry.

On-disk format (a directory; format version 2, opened in O(1) whatever its size; version 1
is still read), every file plain data and safe to load:

``manifest.json``
    ``{"format": "meshscan-signatures", "format_version": 2, "name", "description",
    "descriptor_version", "created", "updated", "signatures": n, "library_version",
    "files": {name: sha256}}``. ``library_version`` is derived from the content checksums,
    so any change to the content gives a new version, which every verdict records.
``signatures.json`` (+ ``signatures.offsets.npy``, ``signatures.{id,sha256,geometry}.{keys,pos}.npy``,
``signatures.flags.npy``)
    one object per signature, one a line: ``id, category, source, added, note, name, sha256,
    geometry_hash, triangles, bodies`` and, for a disabled signature only, ``disabled``
    (``{"by", "why", "at"}``: who took it out of matching, why and when); beside it each
    record's byte span, sorted exact-lookup columns and a disabled flag per signature
    (:mod:`scanner.library_columns`), so an open parses no record and builds no dictionary.
    In format 1 the records were one indented JSON document, parsed whole at every open.
``descriptors.npy`` / ``rows.npy`` / ``thresholds.npy``
    float32 (R, D) descriptor rows, int64 (R, 2) ``[signature index, body]`` (body -1 = the
    whole file) and float32 (R,) per-row distance thresholds set at enrolment from how far
    the row is from benign reference shapes (scanner/features/reference.py); all read with
    ``allow_pickle=False`` and memory-mapped read-only (``mmap_mode="r"``): a library of
    millions of rows is paged in as queries touch it, never loaded whole, and any attempt to
    write into a loaded array raises instead of silently changing the library.
``ann.faiss`` (libraries of :func:`scanner.ann.min_rows` rows or more, with ``meshscan[ann]``)
    the approximate shortlist over the descriptor rows (:mod:`scanner.ann`), written by
    :meth:`SignatureLibrary.save`. It is derived data, not content: the manifest's ``ann``
    entry records its sha256, row count and the ``descriptors.npy`` checksum it was built
    from, and a file that does not match all three is never read - the shortlist is rebuilt
    from the vectors instead (and written at the next save). It does not enter
    ``library_version``, so verdicts do not depend on whether it exists.
``allowlist.json`` (+ ``allowlist.offsets.npy``, ``allowlist.{sha256,geometry}.{keys,pos}.npy``)
    known-benign files (``sha256`` / ``geometry_hash`` + note), whose matches are suppressed.
``verified.json``
    verification stamps: which large files were hashed in full and found equal to the
    manifest, and their (size, mtime, ctime, inode, device) then; an open hashes a large file
    only when its stamp no longer holds (:mod:`scanner.library_integrity`). Not content.

A library never silences itself: an allowlist entry whose sha256 or geometry hash equals an
enrolled signature's is refused (:meth:`SignatureLibrary.allow` raises
:class:`AllowlistConflict`), and enrolling a signature whose hash is allowlisted drops those
allowlist entries (the signature wins; :meth:`SignatureLibrary.add_signature` returns them so
the caller can say so). Why the signature wins and not the entry: an enrolment is a deliberate,
sourced decision about a known part, while an allowlist entry may have arrived in a partner's
export; letting the entry win would let anyone who can get an entry in first block enrolment.
:meth:`SignatureLibrary.merge` imports a partner's allowlist only when asked
(``with_allowlist``) and reports every signature and entry it added, skipped or refused.

A signature can be *disabled* (:meth:`SignatureLibrary.disable`; a review decision overturned
on appeal does it): it stays in the library with its descriptors and who disabled it, why and
when, but it no longer matches (:mod:`scanner.matching` skips it) and is not published in
bundles or signal exports. Why not delete it: the record of what was enrolled and why it was
taken out is part of the accountability trail, and deleting would also lose the descriptors a
later decision might restore.

A library whose checksums fail, or whose descriptor version differs from this scanner's, is
refused (at open: files under 1 MiB always hashed, larger ones unless their stamp holds;
:meth:`SignatureLibrary.verify` hashes everything and checks the lookup columns against the
records). It cannot be rebuilt for a new descriptor version: it holds no geometry, by design,
so re-enrol the original files (``meshscan signatures add``) with the new scanner.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from scanner.errors import MeshscanError
from scanner.library_columns import (
    DISABLED,
    LazyRecords,
    StoredAllowIndex,
    StoredExactIndex,
    encode_key,
    open_table,
    table_files,
    write_table,
)
from scanner.library_integrity import Checker
from scanner.util import sha256_hex, sha256_path, utc_now

FORMAT = "meshscan-signatures"
FORMAT_VERSION = 2
"""Written and read by this scanner. Version 1 (one JSON document of signatures, every file
hashed at each open) predates local patch codes; a library holds no geometry to compute them
from, so a format-1 library is refused with the re-enrolment message, not converted."""
CATEGORIES = (
    "barrel",
    "frame_or_receiver",
    "slide_or_cylinder",
    "bolt_or_breech_block",
    "other_component",
    "accessory",
)
ESSENTIAL = CATEGORIES[:4]
ANN_FILE = "ann.faiss"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArraySpec:
    """One named array of a library: the attribute it is held in, its file, its dtype, its
    trailing width (None = one value per entry, -1 = the descriptor width) and its *group*:
    the arrays of one group are aligned entry for entry, and the group's owner column
    (:data:`GROUPS`) says which signature each entry belongs to."""

    attr: str
    file: str
    dtype: str
    width: int | None
    group: str = "rows"


ARRAYS: tuple[ArraySpec, ...] = (
    ArraySpec("vectors", "descriptors.npy", "<f4", -1),
    ArraySpec("rows", "rows.npy", "<i8", 2),
    ArraySpec("thresholds", "thresholds.npy", "<f4", None),
    ArraySpec("patch_codes", "patches.codes.npy", "<u8", None, group="patches"),
    ArraySpec("patch_sizes", "patches.sizes.npy", "<i2", None, group="patches"),
    ArraySpec("patch_shares", "patches.shares.npy", "<f4", None, group="patches"),
    ArraySpec("patch_sigs", "patches.sigs.npy", "<i8", None, group="patches"),
)
"""Every array a library stores; save, load, integrity and remove loop over it. A new kind of
per-signature data (e.g. several local hashes per signature) is a new group: add its arrays
here with ``group="NAME"`` and its owner to :data:`GROUPS` (docs: README "Library scaling")."""
GROUPS: dict[str, tuple[str, int | None]] = {"rows": ("rows", 0), "patches": ("patch_sigs", None)}
"""group -> (attribute of its owner array, column holding the signature position, None for
a 1-D owner array)."""
LOOKUPS = {"id": "id", "sha256": "sha256", "geometry": "geometry_hash"}
"""Exact-lookup columns of the signatures table (sorted keys, :mod:`scanner.library_columns`)."""
ALLOW_LOOKUPS = {"sha256": "sha256", "geometry": "geometry_hash"}
CONTENT_FILES = (
    *table_files("signatures", LOOKUPS, flags=True),
    *table_files("allowlist", ALLOW_LOOKUPS),
    *(spec.file for spec in ARRAYS),
)
"""The files of a format-2 library, all checksummed by the manifest."""
PATCH_DTYPE = np.dtype([("code", "<u8"), ("size", "<i2"), ("share", "<f4")])
"""A signature's patch sketch as one record per distinctive code (:mod:`scanner.features.patches`):
the 64-bit code, its coarse size and its share of the signature's area. The library keeps
them as the ``patches`` array group (one column each, plus the signature's position), sorted
by code when saved, so the matcher binary-searches the memory map without sorting it."""


def empty_patches() -> np.ndarray:
    return np.zeros(0, dtype=PATCH_DTYPE)


class LibraryError(MeshscanError):
    """A signature library that cannot be used, with the reason in words."""


class AllowlistConflict(LibraryError):
    """An allowlist entry that would silence an enrolled signature (same sha256 or geometry
    hash): refused, so that no allowlist - least of all an imported one - can override the
    library's own exact match."""

    def __init__(self, entry: AllowEntry, signatures: list[Signature]) -> None:
        self.entry = entry
        self.signatures = signatures
        super().__init__(conflict_message(entry, signatures))


@dataclass
class Signature:
    id: str
    category: str
    source: str
    added: str
    note: str = ""
    name: str = ""
    sha256: str | None = None
    geometry_hash: str | None = None
    triangles: int = 0
    bodies: int = 0
    disabled: dict[str, str] | None = None
    """None while the signature matches; ``{"by", "why", "at"}`` once it was disabled."""

    def record(self) -> dict[str, Any]:
        """The signature as stored: ``disabled`` only when set, so a library without disabled
        signatures is written byte for byte as before the field existed (same library version)."""
        out = asdict(self)
        if out["disabled"] is None:
            del out["disabled"]
        return out


@dataclass
class AllowEntry:
    sha256: str | None
    geometry_hash: str | None
    added: str
    note: str = ""
    by: str = ""

    def label(self) -> str:
        """The entry in words, for messages: its hashes (shortened) and note."""
        parts = []
        if self.sha256:
            parts.append(f"sha256 {self.sha256[:16]}")
        if self.geometry_hash:
            parts.append(f"geometry {self.geometry_hash[:16]}")
        text = ", ".join(parts) or "no hash"
        return text + (f" ({self.note})" if self.note else "")

    def hits(self, signature: Signature) -> list[str]:
        """Which of this entry's hashes equal ``signature``'s (``sha256``, ``geometry hash``)."""
        out = []
        if self.sha256 and self.sha256 == signature.sha256:
            out.append("sha256")
        if self.geometry_hash and self.geometry_hash == signature.geometry_hash:
            out.append("geometry hash")
        return out


def conflict_message(entry: AllowEntry, signatures: list[Signature]) -> str:
    """Why ``entry`` may not be allowed: the signature(s) it would silence, by id and name."""
    named = "; ".join(
        f"{s.id} ({s.category}{', ' + repr(s.name) if s.name else ''}: same {' and '.join(entry.hits(s))})"
        for s in signatures
    )
    return (
        f"allowlist entry {entry.label()} refused: it would silence enrolled signature {named}. "
        "An exact signature match is never allowlisted; if the signature was enrolled by mistake, "
        "remove it first ('meshscan signatures remove ID')."
    )


@dataclass
class AddResult:
    """What :meth:`SignatureLibrary.add_signature` did."""

    added: bool
    """False when the same geometry was already enrolled (nothing stored)."""
    dropped_allow: list[AllowEntry] = field(default_factory=list)
    """Allowlist entries removed because they would have silenced the new signature."""


@dataclass
class MergeReport:
    """Everything one :meth:`SignatureLibrary.merge` imported, skipped or refused, per kind."""

    signatures_added: list[str] = field(default_factory=list)
    signatures_duplicate: list[str] = field(default_factory=list)
    allow_offered: int = 0
    """Allowlist entries the other library holds."""
    allow_imported: bool = False
    """Whether they were considered at all (``with_allowlist``)."""
    allow_added: list[AllowEntry] = field(default_factory=list)
    allow_duplicate: list[AllowEntry] = field(default_factory=list)
    allow_refused: list[tuple[AllowEntry, str]] = field(default_factory=list)
    """(entry, why): entries equal to an enrolled signature's hash."""
    allow_dropped: list[tuple[AllowEntry, str]] = field(default_factory=list)
    """(entry, signature id): this library's own entries dropped because an imported signature
    has their hash (the signature wins)."""

    @property
    def conflicts(self) -> int:
        return len(self.allow_refused) + len(self.allow_dropped)

    def to_dict(self) -> dict[str, Any]:
        return {
            "signatures": {"added": self.signatures_added, "duplicate": self.signatures_duplicate},
            "allowlist": {
                "offered": self.allow_offered,
                "imported": self.allow_imported,
                "added": [asdict(a) for a in self.allow_added],
                "duplicate": [asdict(a) for a in self.allow_duplicate],
                "refused": [{"entry": asdict(a), "reason": why} for a, why in self.allow_refused],
                "dropped": [{"entry": asdict(a), "signature_id": sid} for a, sid in self.allow_dropped],
            },
        }

    def lines(self) -> list[str]:
        """The summary in words: one line per kind, then one per conflict."""
        out = [f"signatures: {len(self.signatures_added)} added, {len(self.signatures_duplicate)} duplicate(s) skipped"]
        if not self.allow_imported:
            out.append(
                f"allowlist: {self.allow_offered} entr{'y' if self.allow_offered == 1 else 'ies'} not imported"
                + (" (pass --with-allowlist to import them)" if self.allow_offered else "")
            )
        else:
            out.append(
                f"allowlist: {len(self.allow_added)} added, {len(self.allow_duplicate)} already present, "
                f"{len(self.allow_refused)} refused (conflict with a signature)"
            )
        out += [f"conflict: {why}" for _, why in self.allow_refused]
        out += [
            f"conflict: allowlist entry {a.label()} dropped: imported signature {sid} has its hash "
            "(a signature always wins over an allowlist entry)"
            for a, sid in self.allow_dropped
        ]
        return out


@dataclass
class SignatureLibrary:
    path: Path | None = None
    name: str = "meshscan signatures"
    description: str = ""
    descriptor_version: str = ""
    created: str = field(default_factory=utc_now)
    updated: str = field(default_factory=utc_now)
    signatures: list[Signature] = field(default_factory=list)
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    rows: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))
    thresholds: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    patch_codes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    patch_sizes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int16))
    patch_shares: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    patch_sigs: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    patch_version: str = ""
    """The patch codes' version (:data:`scanner.features.patches.PATCH_VERSION`)."""
    patches_ordered: bool = False
    """True while the patch columns are as saved (sorted by code): set by load and save,
    cleared when a signature adds patches."""
    allowlist: list[AllowEntry] = field(default_factory=list)
    library_version: str = "empty"
    _ann: Any = field(default=None, repr=False, compare=False)
    """The ANN shortlist (:class:`scanner.ann.AnnShortlist`) over a prefix of the rows, or None."""
    _ann_entry: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    """The manifest's ``ann`` entry as loaded (checked and read on first use)."""
    _spare: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)
    """Per array column, the buffer with room to grow that the column is a view of
    (:meth:`_append`)."""

    # ------------------------------------------------------------------ create / load
    @classmethod
    def create(
        cls, path: str | os.PathLike[str] | None = None, name: str = "", description: str = ""
    ) -> SignatureLibrary:
        from scanner.features import DESCRIPTOR_SIZE, DESCRIPTOR_VERSION

        lib = cls(path=Path(path) if path else None, name=name or "meshscan signatures", description=description)
        from scanner.features.patches import PATCH_VERSION

        lib.descriptor_version = DESCRIPTOR_VERSION
        lib.patch_version = PATCH_VERSION
        lib.vectors = np.zeros((0, DESCRIPTOR_SIZE), dtype=np.float32)
        return lib

    @classmethod
    def load(cls, path: str | os.PathLike[str], check_version: bool = True) -> SignatureLibrary:
        """Open and verify a library directory; raise :class:`LibraryError` saying why not.

        O(1) in the library's size for format 2: the arrays and record tables are memory-mapped
        (no record parsed), small files are hashed, large ones are hashed unless their
        verification stamp still holds (:mod:`scanner.library_integrity`)."""
        root = Path(path)
        return cls._load(root, cls._read_manifest(root), Checker(root), check_version)

    @classmethod
    def _load(cls, root: Path, manifest: dict[str, Any], checker: Checker, check_version: bool) -> SignatureLibrary:
        if check_version:
            _check_patch_version(root, manifest.get("patch_version", ""))
        files = manifest.get("files", {})
        problems = checker.problems(files, CONTENT_FILES)
        if problems:
            raise LibraryError(f"library {root} failed verification: {'; '.join(problems)}")
        lib = cls(path=root)
        lib.name = manifest.get("name", "")
        lib.description = manifest.get("description", "")
        lib.descriptor_version = manifest.get("descriptor_version", "")
        lib.patch_version = manifest.get("patch_version", "")
        lib.created = manifest.get("created", "")
        lib.updated = manifest.get("updated", "")
        lib.library_version = manifest.get("library_version", "")
        if check_version:
            from scanner.features import DESCRIPTOR_VERSION

            if lib.descriptor_version != DESCRIPTOR_VERSION:
                raise LibraryError(
                    f"library {root} was built with descriptor {lib.descriptor_version!r}; this scanner computes "
                    f"{DESCRIPTOR_VERSION!r}. Descriptors of different versions cannot be compared, and a library "
                    "holds no geometry to rebuild them from: re-enrol the original files with this scanner "
                    "('meshscan signatures add') into a new library."
                )
        try:
            lib.signatures = open_table(root, "signatures", _signature, LOOKUPS, _open_array, flags=True)  # type: ignore[assignment]
            lib.allowlist = open_table(root, "allowlist", _allow_entry, ALLOW_LOOKUPS, _open_array)  # type: ignore[assignment]
            for spec in ARRAYS:
                setattr(lib, spec.attr, _open_array(root / spec.file))
        except (OSError, ValueError, TypeError) as exc:
            raise LibraryError(f"library {root} is unreadable: {exc}") from None
        lib._check_arrays(root, check_version, checker.hashed)
        lib.patches_ordered = True
        entry = manifest.get("ann")
        if isinstance(entry, dict) and entry.get("descriptors") == files.get("descriptors.npy"):
            lib._ann_entry = entry
        checker.record()
        return lib

    def _check_arrays(self, root: Path, check_version: bool, hashed: set[str]) -> None:
        """Shapes and types of every array (O(1)); the range of every position column only for
        files hashed in this open (a file whose stamp holds was range-checked when it was
        hashed and stamped, since stamps are written only after a load that passed)."""
        n, lengths = len(self.signatures), {}
        for spec in ARRAYS:
            a = getattr(self, spec.attr)
            width = _descriptor_size() if spec.width == -1 and check_version else spec.width
            shaped = a.ndim == 1 if spec.width is None else a.ndim == 2 and (width == -1 or a.shape[1] == width)
            if a.dtype != np.dtype(spec.dtype) or not shaped or lengths.setdefault(spec.group, len(a)) != len(a):
                raise LibraryError(f"library {root} has descriptor arrays of the wrong shape or type")
        for group, (attr, column) in GROUPS.items():
            owner = getattr(self, attr)
            owner = owner if column is None else owner[:, column]
            spec = next(s for s in ARRAYS if s.attr == attr)
            if spec.file in hashed and len(owner) and (owner.min() < 0 or owner.max() >= n):
                raise LibraryError(f"library {root} has {group} pointing at missing signatures")
        for table, keys in (("signatures", LOOKUPS), ("allowlist", ALLOW_LOOKUPS)):
            records = getattr(self, table)
            for key in keys if isinstance(records, LazyRecords) else ():
                pos = records.lookups[key].pos
                if f"{table}.{key}.pos.npy" in hashed and len(pos) and (pos.min() < 0 or pos.max() >= len(pos)):
                    raise LibraryError(f"library {root} has a {table} {key} lookup pointing at missing records")

    def shortlist(self) -> Any:
        """The ANN shortlist the matcher should use (:class:`scanner.ann.AnnShortlist`), or None
        for exact search: below :func:`scanner.ann.min_rows` rows, or without
        ``meshscan[ann]``. The stored ``ann.faiss`` is used only when its sha256, row count and
        source checksum equal the manifest's; otherwise it is rebuilt here (minutes at 10M
        rows; the next save stores it), never trusted."""
        from scanner import ann

        if len(self.vectors) < ann.min_rows() or not ann.available():
            return None
        if self._ann is None and self._ann_entry is not None and self.path is not None:
            self._ann = _read_ann(self.path, self._ann_entry, self.vectors.shape[1])
            self._ann_entry = None
        if self._ann is None or self._ann.rows > len(self.vectors):
            log.warning("library %s: building its ANN shortlist over %d rows", self.path, len(self.vectors))
            self._ann = ann.AnnShortlist.build(self.vectors)
        return self._ann

    @staticmethod
    def _read_manifest(root: Path) -> dict[str, Any]:
        path = root / "manifest.json"
        if not path.is_file():
            raise LibraryError(
                f"{root} is not a signature library (no manifest.json); create one with 'signatures init'"
            )
        try:
            manifest = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise LibraryError(f"{path} is unreadable: {exc}") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise LibraryError(f"{path} is not a meshscan signature manifest")
        if manifest.get("format_version") == 1:
            _check_patch_version(root, "")  # format 1 predates patch codes: re-enrol
        if manifest.get("format_version") != FORMAT_VERSION:
            raise LibraryError(
                f"{root} uses library format {manifest.get('format_version')}; this scanner reads {FORMAT_VERSION}"
            )
        return manifest

    @classmethod
    def verify(cls, path: str | os.PathLike[str]) -> list[str]:
        """Every problem with a library on disk (empty list = it verifies): every file hashed
        in full whatever its stamp, every position in range, and every lookup column and flag
        equal to what the records themselves say (each record parsed). Refreshes the stamps."""
        root = Path(path)
        try:
            manifest = cls._read_manifest(root)
        except LibraryError as exc:
            return [str(exc)]
        try:
            lib = cls._load(root, manifest, Checker(root, full=True), True)
        except LibraryError as exc:
            return [str(exc)]
        return lib._record_problems()

    def _record_problems(self) -> list[str]:
        """For ``verify``: the stored lookup columns and flags against the records (each parsed)."""
        out = []
        for table, keys in (("signatures", LOOKUPS), ("allowlist", ALLOW_LOOKUPS)):
            records = getattr(self, table)
            if not isinstance(records, LazyRecords):
                continue
            try:
                items = list(records)
            except ValueError as exc:
                return [f"{table}.json: {exc}"]
            for key, attribute in keys.items():
                column = records.lookups[key].keys
                if len(column) > 1 and not bool(np.all(column[:-1] <= column[1:])):
                    out.append(f"{table}.{key}.keys.npy is not sorted")
                if records.lookups[key].by_position().tolist() != [_key(getattr(i, attribute)) for i in items]:
                    out.append(f"{table}.{key} lookup columns disagree with {table}.json")
            if records.flags is not None and [bool(f & DISABLED) for f in records.flags] != [
                s.disabled is not None for s in items
            ]:
                out.append(f"{table}.flags.npy disagrees with {table}.json")
        return out

    def save(self, path: str | os.PathLike[str] | None = None) -> None:
        """Write atomically, in format 2: content files first, the manifest (with checksums)
        last. Records not read since the load are copied as stored bytes (not parsed)."""
        root = Path(path or self.path or ".")
        root.mkdir(parents=True, exist_ok=True)
        self.path = root
        self.updated = utc_now()
        try:
            self._write_table(root, "signatures", self.signatures, LOOKUPS, lambda s: s.record(), flags=True)
            self._write_table(root, "allowlist", self.allowlist, ALLOW_LOOKUPS, asdict)
        except ValueError as exc:
            raise LibraryError(f"cannot save library {root}: {exc}") from None
        self._sort_patches()
        self.patches_ordered = True
        for spec in ARRAYS:
            _atomic_npy(root / spec.file, np.asarray(getattr(self, spec.attr)).astype(np.dtype(spec.dtype), copy=False))
        checksums = {name: sha256_path(root / name) for name in CONTENT_FILES}
        ann_entry = self._save_ann(root, checksums["descriptors.npy"])
        self.library_version = sha256_hex(json.dumps(checksums, sort_keys=True).encode())[:12]
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "description": self.description,
            "descriptor_version": self.descriptor_version,
            "patch_version": self.patch_version,
            "created": self.created,
            "updated": self.updated,
            "signatures": len(self.signatures),
            "library_version": self.library_version,
            "files": checksums,
        }
        if ann_entry:
            manifest["ann"] = ann_entry
        _atomic_write(root / "manifest.json", json.dumps(manifest, indent=2).encode())

    def _sort_patches(self) -> None:
        """Patch rows in (code, signature) order, as the matcher searches them."""
        codes = np.asarray(self.patch_codes)
        if len(codes) > 1 and not bool(np.all(codes[1:] >= codes[:-1])):
            order = np.lexsort((np.asarray(self.patch_sigs), codes))
            for spec in ARRAYS:
                if spec.group == "patches":
                    setattr(self, spec.attr, np.asarray(getattr(self, spec.attr))[order])

    @staticmethod
    def _write_table(
        root: Path, stem: str, items: Any, keys: dict[str, str], record: Callable[[Any], dict], flags: bool = False
    ) -> None:
        """One record table: stored records copied as bytes, the rest encoded one a line."""
        encode = lambda item: json.dumps(record(item), separators=(",", ":")).encode()  # noqa: E731
        if isinstance(items, LazyRecords):
            columns = {key: items.keys_in_order(key) for key in keys}
            mask = items.disabled_mask() if flags else None
            data = items.record_bytes(encode)
        else:
            columns = {key: [_key(getattr(i, attribute)) for i in items] for key, attribute in keys.items()}
            mask = np.array([i.disabled is not None for i in items], dtype=bool) if flags else None
            data = (encode(i) for i in items)
        column_flags = None if mask is None else np.where(mask, DISABLED, 0).astype(np.uint8)
        write_table(root, stem, data, columns, _atomic, _atomic_npy, column_flags)

    def _save_ann(self, root: Path, descriptors_sha256: str) -> dict[str, Any] | None:
        """Write ``ann.faiss`` for a library large enough to need it: the loaded shortlist
        extended by the rows added since (FAISS appends them without retraining), else built."""
        from scanner import ann

        if len(self.vectors) < ann.min_rows() or not ann.available():
            return None
        if self._ann is None and self._ann_entry is not None and self.path is not None:
            self._ann = _read_ann(self.path, self._ann_entry, self.vectors.shape[1])
        self._ann_entry = None
        try:
            if self._ann is not None and self._ann.rows < len(self.vectors):
                self._ann.add(self.vectors[self._ann.rows :])
            elif self._ann is not None and self._ann.rows == len(self.vectors):
                self._ann.in_memory()  # a mapped index is written as its codes, not as a reference
        except ValueError as exc:  # the stored index changed under a mapped one: not trusted
            log.warning("library %s: %s; rebuilding it", root, exc)
            self._ann = None
        if self._ann is None or self._ann.rows != len(self.vectors):
            self._ann = ann.AnnShortlist.build(self.vectors)
        self._ann.save(root / ANN_FILE)
        return {"kind": ann.KIND, "file": ANN_FILE, "sha256": sha256_path(root / ANN_FILE),
                "rows": self._ann.rows, "descriptors": descriptors_sha256, **self._ann.meta()}  # fmt: skip

    # ------------------------------------------------------------------ content
    def __len__(self) -> int:
        return len(self.signatures)

    def find(self, geometry_hash: str | None = None, sha256: str | None = None) -> list[int]:
        """Positions of the signatures with this geometry hash or sha256, in library order
        (sorted-column lookups on an opened library, a scan of an in-memory one)."""
        if isinstance(self.signatures, LazyRecords):
            found = self.signatures.find("geometry", geometry_hash) + self.signatures.find("sha256", sha256)
            return sorted(set(found))
        return [
            i
            for i, s in enumerate(self.signatures)
            if (geometry_hash and s.geometry_hash == geometry_hash) or (sha256 and s.sha256 == sha256)
        ]

    def stored_index(self, kind: str) -> StoredExactIndex | None:
        """The matcher's exact index for ``kind`` (``sha256`` / ``geometry``) straight over the
        stored sorted column of an opened library (nothing built); None for an in-memory one."""
        if isinstance(self.signatures, LazyRecords):
            return StoredExactIndex(self.signatures, kind)
        return None

    def stored_allow_index(self) -> StoredAllowIndex | None:
        """The matcher's allowlist index over the stored sorted columns, or None (in memory)."""
        if isinstance(self.allowlist, LazyRecords):
            return StoredAllowIndex(self.allowlist)
        return None

    def add(
        self,
        signature: Signature,
        vectors: np.ndarray,
        bodies: list[int],
        thresholds: np.ndarray,
        patches: np.ndarray | None = None,
    ) -> bool:
        """Enrol one signature; False if the same geometry is already enrolled.

        Allowlist entries with the signature's sha256 or geometry hash are dropped (the
        signature wins); use :meth:`add_signature` to learn which."""
        return self.add_signature(signature, vectors, bodies, thresholds, patches).added

    def add_signature(
        self,
        signature: Signature,
        vectors: np.ndarray,
        bodies: list[int],
        thresholds: np.ndarray,
        patches: np.ndarray | None = None,
    ) -> AddResult:
        """Enrol one signature, and drop the allowlist entries that would silence it.

        The signature wins over an allowlist entry with its hash because enrolment is a
        deliberate decision about a known part, and an entry may have been imported from
        someone else's library: refusing the enrolment instead would let an entry placed first
        keep a known part out of the library for good."""
        if signature.category not in CATEGORIES:
            raise LibraryError(f"unknown category {signature.category!r}; one of: {', '.join(CATEGORIES)}")
        if self.find(geometry_hash=signature.geometry_hash):
            return AddResult(False)
        if vectors.shape[1] != self.vectors.shape[1] and len(self.vectors):
            raise LibraryError("descriptor length differs from the library's")
        index = len(self.signatures)
        self.signatures.append(signature)
        self._append("vectors", np.asarray(vectors, dtype=np.float32).reshape(len(bodies), -1))
        self._append("rows", np.column_stack([np.full(len(bodies), index), np.asarray(bodies)]).astype(np.int64))
        self._append("thresholds", np.asarray(thresholds, dtype=np.float32).reshape(-1))
        if patches is not None and len(patches):
            self.patches_ordered = False
            self._append("patch_codes", np.asarray(patches["code"], dtype=np.uint64))
            self._append("patch_sizes", np.asarray(patches["size"], dtype=np.int16))
            self._append("patch_shares", np.asarray(patches["share"], dtype=np.float32))
            self._append("patch_sigs", np.full(len(patches), index, dtype=np.int64))
        dropped = [a for a in self._allow_candidates(signature.sha256, signature.geometry_hash) if a.hits(signature)]
        if dropped:
            self.allowlist = [a for a in self.allowlist if not a.hits(signature)]
        return AddResult(True, dropped)

    def _append(self, column: str, new: np.ndarray) -> None:
        """Append rows to an array column in amortised constant time per row: the column is a
        view of a buffer that doubles when full, so enrolling n signatures one by one copies
        O(n) rows, not O(n^2) (10,000 signatures of ~100 rows each would copy terabytes)."""
        current = getattr(self, column)
        if current.ndim == 2 and not len(current):
            current = current.reshape(0, *new.shape[1:])
        used, spare = len(current), self._spare.get(column)
        if spare is None or current.base is not spare or spare.shape[1:] != new.shape[1:] or spare.dtype != new.dtype:
            spare = None  # the column was replaced (loaded, removed from, sorted): start from it
        if spare is None or len(spare) < used + len(new):
            grown = np.empty((max(64, 2 * (used + len(new))), *new.shape[1:]), dtype=new.dtype)
            grown[:used] = current
            spare = self._spare[column] = grown
        spare[used : used + len(new)] = new
        setattr(self, column, spare[: used + len(new)])

    def remove(self, ids: list[str]) -> list[str]:
        """Remove signatures by id; returns the ids that were found and removed. Every array
        group (:data:`ARRAYS`) loses the removed signatures' entries and is renumbered."""
        if isinstance(self.signatures, LazyRecords):
            gone = sorted({p for i in set(ids) for p in self.signatures.find("id", i)})
        else:
            gone = [p for p, s in enumerate(self.signatures) if s.id in ids]
        removed = [self.signatures[p].id for p in gone]
        if not removed:
            return []
        remap = np.arange(len(self.signatures))
        remap[gone] = -1
        keep = np.flatnonzero(remap >= 0)
        remap[keep] = np.arange(len(keep))
        for group, (attr, column) in GROUPS.items():
            owner = np.asarray(getattr(self, attr))
            mask = remap[owner if column is None else owner[:, column]] >= 0
            for spec in ARRAYS:
                if spec.group == group:
                    setattr(self, spec.attr, np.asarray(getattr(self, spec.attr))[mask])
            owner = np.array(getattr(self, attr))
            if column is None:
                owner = remap[owner]
            else:
                owner[:, column] = remap[owner[:, column]]
            setattr(self, attr, owner)
        self.signatures = [self.signatures[int(i)] for i in keep]
        # row numbers changed: the ANN shortlist no longer numbers these rows
        self._ann, self._ann_entry = None, None
        return removed

    def disable(self, signature_id: str, by: str, why: str) -> bool:
        """Take a signature out of matching, recording who, why and when (its descriptors and
        hashes stay). False when it is already disabled; :class:`LibraryError` when there is
        no such signature."""
        if isinstance(self.signatures, LazyRecords):
            found = [self.signatures[i] for i in self.signatures.find("id", signature_id)]
        else:
            found = [s for s in self.signatures if s.id == signature_id]
        if not found:
            raise LibraryError(f"no signature {signature_id} in library {self.path}")
        if found[0].disabled is not None:
            return False
        found[0].disabled = {"by": by, "why": why, "at": utc_now()}
        return True

    def patches_of(self, index: int) -> np.ndarray:
        """The patch sketch of the signature at ``index`` (``PATCH_DTYPE`` records)."""
        mine = np.flatnonzero(np.asarray(self.patch_sigs) == index)
        out = np.zeros(len(mine), dtype=PATCH_DTYPE)
        out["code"], out["size"], out["share"] = self.patch_codes[mine], self.patch_sizes[mine], self.patch_shares[mine]
        return out

    def active(self) -> list[bool]:
        """Per signature position: does it match (not disabled)? (From the flags column on an
        opened library: no record parsed.)"""
        if isinstance(self.signatures, LazyRecords):
            return (~self.signatures.disabled_mask()).tolist()
        return [s.disabled is None for s in self.signatures]

    def merge(self, other: SignatureLibrary, with_allowlist: bool = False) -> MergeReport:
        """Add the other library's signatures (duplicates - same geometry hash - are skipped)
        and, only with ``with_allowlist``, its allowlist entries; report every one, per kind.

        A partner's allowlist suppresses matches in *this* library, so it is never imported
        silently: without ``with_allowlist`` the entries are only counted. Imported entries that
        equal the hash of any signature (this library's or one just merged) are refused, and this
        library's own entries that equal a merged signature's hash are dropped (the signature
        wins, as in :meth:`add_signature`); the report names each conflict."""
        if other.descriptor_version != self.descriptor_version or other.patch_version != self.patch_version:
            raise LibraryError("cannot merge libraries of different descriptor versions")
        report = MergeReport(allow_offered=len(other.allowlist), allow_imported=with_allowlist)
        for index, sig in enumerate(other.signatures):
            mask = other.rows[:, 0] == index
            result = self.add_signature(
                Signature(**asdict(sig)),
                other.vectors[mask],
                list(other.rows[mask, 1]),
                other.thresholds[mask],
                other.patches_of(index),
            )
            (report.signatures_added if result.added else report.signatures_duplicate).append(sig.id)
            report.allow_dropped += [(a, sig.id) for a in result.dropped_allow]
        if with_allowlist:
            for entry in other.allowlist:
                try:
                    added = self.allow(AllowEntry(**asdict(entry)))
                except AllowlistConflict as exc:
                    report.allow_refused.append((entry, str(exc)))
                    continue
                (report.allow_added if added else report.allow_duplicate).append(entry)
        return report

    def allow_conflicts(self, entry: AllowEntry) -> list[Signature]:
        """The enrolled signatures ``entry`` would silence (same sha256 or geometry hash)."""
        found = self.find(geometry_hash=entry.geometry_hash, sha256=entry.sha256)
        return [self.signatures[i] for i in found if entry.hits(self.signatures[i])]

    def allow(self, entry: AllowEntry) -> bool:
        """Add an allowlist entry; False if the same entry is already there.

        Raises :class:`AllowlistConflict` (naming the signature) when the entry's sha256 or
        geometry hash equals an enrolled signature's: an allowlist never overrides the
        library's own exact match."""
        conflicts = self.allow_conflicts(entry)
        if conflicts:
            raise AllowlistConflict(entry, conflicts)
        same = lambda a: (a.sha256, a.geometry_hash) == (entry.sha256, entry.geometry_hash)  # noqa: E731
        if any(same(a) for a in self._allow_candidates(entry.sha256, entry.geometry_hash)):
            return False
        self.allowlist.append(entry)
        return True

    def _allow_candidates(self, sha256: str | None, geometry_hash: str | None) -> list[AllowEntry]:
        """The allowlist entries that may carry either hash, in order: from the sorted columns
        of an opened library (every entry for one with neither hash), else all of them."""
        table = self.allowlist
        if not isinstance(table, LazyRecords) or not (sha256 or geometry_hash):
            return list(table)
        return [table[i] for i in sorted(set(table.find("sha256", sha256) + table.find("geometry", geometry_hash)))]

    def allowed(self, sha256: str | None, geometry_hash: str | None) -> AllowEntry | None:
        for a in self._allow_candidates(sha256, geometry_hash):
            if (sha256 and a.sha256 == sha256) or (geometry_hash and a.geometry_hash == geometry_hash):
                return a
        return None

    def export_json(self) -> dict[str, Any]:
        """The whole library as one JSON document (descriptors included; still no geometry)."""
        entries = []
        for i, s in enumerate(self.signatures):
            rows = np.flatnonzero(self.rows[:, 0] == i)
            descriptors = [
                {
                    "body": int(self.rows[r, 1]),
                    "threshold": round(float(self.thresholds[r]), 7),
                    "vector": [round(float(x), 7) for x in self.vectors[r]],
                }
                for r in rows
            ]
            entries.append(dict(s.record(), descriptors=descriptors, patches=patch_record(self.patches_of(i))))
        return {
            "format": FORMAT + "-export",
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "descriptor_version": self.descriptor_version,
            "patch_version": self.patch_version,
            "library_version": self.library_version,
            "signatures": entries,
            "allowlist": [asdict(a) for a in self.allowlist],
        }

    @classmethod
    def from_export(cls, doc: dict[str, Any]) -> SignatureLibrary:
        if doc.get("format") != FORMAT + "-export" or doc.get("format_version") != FORMAT_VERSION:
            raise LibraryError("not a meshscan signature export")
        lib = cls.create(name=doc.get("name", ""))
        lib.descriptor_version = doc.get("descriptor_version", "")
        lib.patch_version = doc.get("patch_version", "")
        try:
            for s in doc["signatures"]:
                s = dict(s)
                descs = s.pop("descriptors")
                patches = patches_from_record(s.pop("patches", None))
                vectors = np.array([d["vector"] for d in descs], dtype=np.float32)
                thresholds = np.array([d["threshold"] for d in descs], dtype=np.float32)
                lib.add(Signature(**s), vectors, [int(d["body"]) for d in descs], thresholds, patches)
            # kept as offered, conflicts included: an export is only carried into a library by
            # merge(), which vets (and reports) every entry
            lib.allowlist = [AllowEntry(**a) for a in doc.get("allowlist", [])]
        except (KeyError, TypeError, ValueError) as exc:
            raise LibraryError(f"malformed signature export: {exc}") from None
        return lib


def _signature(record: dict[str, Any]) -> Signature:
    return Signature(**record)


def _allow_entry(record: dict[str, Any]) -> AllowEntry:
    return AllowEntry(**record)


def _key(value: str | None) -> bytes:
    return encode_key(value)


def patch_record(patches: np.ndarray) -> dict[str, str]:
    """A signature's patch rows as text for exports and bundles: base64 of little-endian
    codes, sizes and shares (no positions: they are not in the rows either)."""
    import base64

    return {
        name: base64.b64encode(np.ascontiguousarray(patches[name], dtype=dtype).tobytes()).decode("ascii")
        for name, dtype in (("code", "<u8"), ("size", "<i2"), ("share", "<f4"))
    }


def patches_from_record(record: dict[str, str] | None) -> np.ndarray:
    """The inverse of :func:`patch_record` (``ValueError`` when the three columns disagree)."""
    import base64
    import binascii

    if not record:
        return empty_patches()
    try:
        cols = {
            name: np.frombuffer(base64.b64decode(record[name], validate=True), dtype=dtype)
            for name, dtype in (("code", "<u8"), ("size", "<i2"), ("share", "<f4"))
        }
    except (KeyError, TypeError, binascii.Error) as exc:
        raise ValueError(f"malformed patches: {exc}") from None
    if not len(cols["code"]) == len(cols["size"]) == len(cols["share"]):
        raise ValueError("patch codes, sizes and shares disagree in length")
    out = np.zeros(len(cols["code"]), dtype=PATCH_DTYPE)
    for name, col in cols.items():
        out[name] = col
    return out


def _check_patch_version(root: Path, version: str) -> None:
    from scanner.features.patches import PATCH_VERSION

    if version != PATCH_VERSION:
        raise LibraryError(
            f"library {root} was built with patch codes {version or 'none'!r}; this scanner computes "
            f"{PATCH_VERSION!r} (local patches find cut, fused and padded copies). A library holds no "
            "geometry to rebuild them from: re-enrol the original files with this scanner "
            "('meshscan signatures add') into a new library."
        )


def _descriptor_size() -> int:
    from scanner.features.version import DESCRIPTOR_SIZE

    return DESCRIPTOR_SIZE


def open_any(path: str | os.PathLike[str]) -> SignatureLibrary:
    """A library directory, or a JSON export file."""
    p = Path(path)
    if p.is_dir():
        return SignatureLibrary.load(p)
    try:
        doc = json.loads(p.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise LibraryError(f"{p} is neither a library directory nor a JSON export: {exc}") from None
    lib = SignatureLibrary.from_export(doc)
    from scanner.features import DESCRIPTOR_VERSION

    if lib.descriptor_version != DESCRIPTOR_VERSION:
        raise LibraryError(
            f"{p} holds descriptor {lib.descriptor_version!r}; this scanner computes {DESCRIPTOR_VERSION!r}"
        )
    return lib


def _atomic_write(path: Path, data: bytes) -> None:
    _atomic(path, lambda fh: fh.write(data))


def _atomic_npy(path: Path, array: np.ndarray) -> None:
    """np.save straight into the temp file (no in-memory copy of a large matrix), then rename."""
    _atomic(path, lambda fh: np.save(fh, array, allow_pickle=False))


def _atomic(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write a temp file beside ``path`` (fsynced), then rename it over ``path``: a reader
    sees the old file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _open_array(path: Path) -> np.ndarray:
    """A ``.npy`` array memory-mapped read-only (never pickle); an empty one read plainly
    (there is nothing to map)."""
    array = np.load(path, mmap_mode="r", allow_pickle=False)
    return np.load(path, allow_pickle=False) if array.size == 0 else array


def _read_ann(root: Path, entry: dict[str, Any], width: int) -> Any:
    """The stored ANN shortlist when its sha256 matches the manifest entry and it holds the
    rows the entry says; None otherwise (logged: the caller rebuilds it)."""
    from scanner.ann import KIND, AnnShortlist

    path, checker = root / ANN_FILE, Checker(root)  # hashed unless its verification stamp holds
    if entry.get("kind") != KIND or not path.is_file() or not checker.matches(ANN_FILE, str(entry.get("sha256"))):
        log.warning("library %s: %s missing or not the one the manifest records; rebuilding it", root, ANN_FILE)
        return None
    try:
        shortlist = AnnShortlist.read(path, width, entry)
    except (RuntimeError, ValueError) as exc:
        log.warning("library %s: %s unreadable (%s); rebuilding it", root, ANN_FILE, exc)
        return None
    if shortlist.rows != entry.get("rows"):
        return None
    checker.record()
    return shortlist


def shipped_library_path() -> Path:
    """The demo library that ships with meshscan (``signatures/`` in the source tree).

    An installed meshscan has it as the package-data mapping ``scanner._shipped``. A process
    that imports ``scanner`` from a source tree instead - a Dask worker or a guarded child
    started inside a clone, where the working directory comes first on ``sys.path``, or
    ``PYTHONPATH=.`` - has no ``scanner._shipped`` (the mapping exists only in an install), so
    the library is then the tree's own ``signatures/`` folder beside ``scanner/``. Each process
    resolves this for itself, so workers on other machines use their own copy."""
    from importlib.resources import files

    try:
        return Path(str(files("scanner._shipped")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "signatures"
