"""The public Python API: a scanner loaded once, for a platform's upload pipeline.

    from scanner import Scanner
    scanner = Scanner(library="signatures/", model=None)       # load once
    for v in scanner.scan("upload.stl"):                        # or bytes, with name=
        print(v.verdict, v.explanation)
    signals = scanner.hash("upload.stl")                        # hash at the edge ...
    matches = scanner.lookup(signals[0])                        # ... match elsewhere
    notes = signals[0].notes()                                  # what a lookup of them cannot see

Every scan goes through :func:`scanner.pipeline.scan_one`, the function the CLI, the daemon and
the Dask workers call, so a verdict is the same whichever door it came through. A scanner
without a library is refused (:class:`~scanner.context.NoLibraryError`): nothing is ever
``clear`` for want of something to compare with. ``isolated=True`` scans each upload in a
forked worker under the time and memory limits of ``meshscan scan``.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scanner.config import Settings
from scanner.verdict import Match, Verdict

if TYPE_CHECKING:
    from collections.abc import Callable

    from scanner.classify.model import ComponentModel
    from scanner.context import ScanContext
    from scanner.exchange.signals import PatchSignal
    from scanner.library import SignatureLibrary

SHIPPED = "shipped"
"""Use the demo library or model that ships with meshscan."""
NO_AFFINE_ROW = "no-affine-row"
"""A lookup note: the signals carry no whitened row, so no stretched copy can be found."""
NO_PATCH_CODES = "no-patch-codes"
"""A lookup note: the signals carry no patch codes, so no local match can be found."""
PATCHES_SAMPLED = "patches-sampled"
"""A lookup note: the mesh has more distinct patches than its signals carry (the cap of
:data:`scanner.exchange.signals.MAX_SIGNAL_PATCHES` per kind)."""


@dataclass
class Signals:
    """What matching needs from one mesh (a file, or one archive member): hashes, descriptor
    rows (plain and whitened) and distinct patch codes, never geometry, so they can be computed at the edge and
    sent to a matcher that never sees the file (HMA's hash-then-lookup split)."""

    sha256: str | None
    """The file's sha256 (None for an archive member: the member has no file of its own)."""
    geometry_hash: str
    descriptor_version: str
    rows: list[list[float]]
    """Descriptor rows: the whole surface, then bodies, loose triangles, the wall-free surface."""
    row_bodies: list[int]
    """What each row describes: -1 whole file, -2 loose triangles, -3 without walls, else a body."""
    member: str | None = None
    triangles: int = 0
    bodies: int = 0
    patches: str | None = None
    """The mesh's distinct patch codes with their sizes and version, as the ``mesh_patches``
    signal (:class:`scanner.exchange.signals.PatchSignal`): what finds a cut, fused, split or
    decoyed copy. None in signals from a meshscan before patch codes: those still match
    exactly and as near duplicates, never locally (:meth:`notes` says so)."""
    affine: list[float] | None = None
    """The whitened whole-file row (:func:`scanner.features.affine.affine_row`): what finds a
    copy stretched along some axis when no row matched. None in older signals (no stretched
    match then; :meth:`notes` says so)."""
    row_shares: list[float] | None = None
    """Each row's share of the mesh's surface (1 for the whole file): a signature's plane-cut
    piece matches only a row holding enough of the upload
    (:data:`scanner.matching.PIECE_UPLOAD_SHARE`). None in older signals: any row may then."""
    row_solidity: list[float | None] | None = None
    """Each row's solidity (enclosed over convex hull volume; None where it has none): a convex
    row's hit on a signature's plane-cut piece needs corroboration
    (:data:`scanner.matching.CONVEX_SOLIDITY`). None in older signals: no row is taken for
    convex then."""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Signals:
        return cls(**d)

    def patch_signal(self) -> PatchSignal | None:
        """The decoded patch codes (None: the signals carry none); raises
        :class:`~scanner.exchange.signals.SignalError` with reason ``patch-version`` for codes
        of another version, ``malformed-patches`` for a string that does not parse."""
        from scanner.exchange.signals import PatchSignal

        return None if self.patches is None else PatchSignal.decode(self.patches)

    def notes(self) -> list[dict[str, str]]:
        """What a lookup of these signals cannot see that a scan of the file would: each a
        ``kind`` of match, a ``reason`` code and a sentence. Empty for signals of this meshscan
        with every patch code of the mesh."""
        notes = []
        if self.affine is None:
            why = "the signals carry no whitened row (hashed by an older meshscan): a copy stretched along some axis "
            why += "cannot be found"
            notes.append({"kind": "stretched", "reason": NO_AFFINE_ROW, "detail": why})
        signal = self.patch_signal()
        if signal is None:
            why = "the signals carry no patch codes (hashed by a meshscan before them): a cut, fused, split or "
            why += "decoyed copy cannot be found"
            notes.append({"kind": "local", "reason": NO_PATCH_CODES, "detail": why})
        elif signal.sampled:
            why = f"the mesh has {signal.distinct} distinct patches; its signals carry the {len(signal)} with the "
            why += "smallest codes, so a local match a scan finds may be missed"
            notes.append({"kind": "local", "reason": PATCHES_SAMPLED, "detail": why})
        return notes


@dataclass
class Scanner:
    """A library (and optionally a classifier model) loaded once, scanning many uploads.

    ``library``: a library folder or JSON export, a loaded :class:`SignatureLibrary`, or
    ``"shipped"`` (the demo library). ``model``: a model folder, a loaded model, ``"shipped"``
    (the demo model) or None (signature matching only). ``settings``: limits and thresholds
    (default: the CLI's defaults).
    """

    library: str | os.PathLike[str] | SignatureLibrary | None = SHIPPED
    model: str | os.PathLike[str] | ComponentModel | None = SHIPPED
    settings: Settings = field(default_factory=Settings)
    isolated: bool = False
    _context: ScanContext = field(init=False, repr=False)

    def __post_init__(self) -> None:
        from scanner.context import NoLibraryError, ScanContext

        if self.library is None:
            raise NoLibraryError("Scanner needs a signature library (a folder, an export, or 'shipped')")
        self._context = ScanContext(settings=self.settings, library=_library(self.library), model=_model(self.model))
        if len(self._context.library) == 0 and self._context.model is None:
            raise NoLibraryError("the signature library is empty and no classifier is loaded: nothing could flag")
        self._context.matcher  # noqa: B018 - build the indexes once, before the first upload

    @property
    def library_version(self) -> str | None:
        return self._context.library_version

    @property
    def model_version(self) -> str | None:
        return self._context.model_version

    def scan(self, upload: str | os.PathLike[str] | bytes, name: str | None = None) -> list[Verdict]:
        """Verdicts for one upload: one per mesh file or archive member. ``bytes`` are written
        to a private temporary file (``name``, default ``upload``, becomes the record's path)."""
        if isinstance(upload, bytes | bytearray | memoryview):
            with tempfile.TemporaryDirectory(prefix="meshscan-") as tmp:
                path = Path(tmp) / "upload"
                path.write_bytes(bytes(upload))
                verdicts = self._scan_path(str(path))
            label = name or "upload"
            for v in verdicts:
                v.path = label
            return verdicts
        verdicts = self._scan_path(os.fspath(upload))
        if name is not None:
            for v in verdicts:
                v.path = name
        return verdicts

    def _scan_path(self, path: str) -> list[Verdict]:
        if not self.isolated:
            from scanner.pipeline import scan_one

            return scan_one(path, self._context)
        from scanner.batch import Upload
        from scanner.engines.local import LocalPool

        limits = self.settings.limits
        with LocalPool(self._context, 1, limits.max_seconds, limits.max_memory_bytes) as pool:
            ((_, verdicts),) = list(pool.scan([Upload(path, os.path.dirname(path) or ".")]))
        return verdicts

    def hash(self, upload: str | os.PathLike[str]) -> list[Signals]:
        """The signals of each mesh of an upload, without matching. Unreadable meshes are
        skipped here; :meth:`scan` reports them."""
        from scanner.errors import UnreadableInput
        from scanner.exchange.signals import PatchSignal
        from scanner.loading import open_upload
        from scanner.shape import Shape

        limits = self.settings.limits
        try:  # opened as scan_one opens it, so both give the same sha256 (URLs included)
            opened = open_upload(upload, limits)
        except UnreadableInput:
            return []
        sha = opened.sha256
        out = []
        for result in opened.members():
            if result.mesh is None:
                continue
            shape = Shape.of(result.mesh, limits.max_bodies)  # what a scan reads, computed as a scan does
            try:
                desc = shape.descriptor
                affine = np.asarray(shape.affine, dtype=np.float64).round(7).tolist()
                patches = PatchSignal.of_upload(shape.patch_codes).encode()
            except (UnreadableInput, ValueError):
                continue
            rows, bodies = shape.rows
            out.append(
                Signals(
                    sha256=sha if result.member is None else None,
                    geometry_hash=result.mesh.geometry_hash,  # of the mesh as read, as a scan's
                    descriptor_version=desc.version,
                    rows=np.asarray(rows, dtype=np.float64).round(7).tolist(),
                    row_bodies=list(bodies),
                    member=result.member,
                    triangles=result.mesh.triangle_count,
                    bodies=shape.bodies,
                    patches=patches,
                    affine=affine,
                    row_shares=np.asarray(desc.row_shares(), dtype=np.float64).round(7).tolist(),
                    row_solidity=[_rounded(shape.solidity(b)) for b in bodies],
                )
            )
        return out

    def lookup(self, signals: Signals) -> list[Match]:
        """Matches of one mesh's signals against the library, by the rules of a scan: exact
        identity first, then near-duplicate rows within each signature row's threshold (or,
        when none, a stretched copy), then local patches (a cut, fused, split or decoyed
        copy). An allowlisted geometry gives only exact matches (as in :meth:`scan`). Signals
        of another descriptor version are refused (:class:`~scanner.library.LibraryError`),
        patch codes of another version too (:class:`~scanner.exchange.signals.SignalError`,
        reason ``patch-version``); older signals without patch codes or whitened row find no
        local or stretched match (:meth:`Signals.notes` says so)."""
        from scanner.features import DESCRIPTOR_VERSION
        from scanner.library import LibraryError

        if signals.descriptor_version != DESCRIPTOR_VERSION:
            raise LibraryError(
                f"signals of descriptor {signals.descriptor_version!r} cannot be compared with {DESCRIPTOR_VERSION!r}"
            )
        patches = signals.patch_signal()  # refused before any matching, whatever would match
        matcher, match = self._context.matcher, self.settings.match
        exact = matcher.exact(signals.sha256, signals.geometry_hash, match.distance_threshold)
        if exact or matcher.allowed(signals.sha256, signals.geometry_hash) is not None:
            return exact
        rows = np.asarray(signals.rows, dtype=np.float32)
        codes = None if patches is None else patches.patch_codes  # corroborate a piece hit (PIECE_CONFIRM)
        near = matcher.near(rows, signals.row_bodies, k=match.neighbours, radius=match.distance_threshold,
                            shares=signals.row_shares, patches=codes, solidity=_row_solidity(signals))  # fmt: skip
        if not near and signals.affine is not None and -1 in signals.row_bodies:  # a stretched copy?
            affine = np.asarray(signals.affine, dtype=np.float32)
            near = matcher.stretched(rows[signals.row_bodies.index(-1)], lambda: affine)
        if near or patches is None or len(matcher.library) == 0 or not len(matcher.patches):
            return near
        return matcher.local(patches.patch_codes())


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 7)


def _row_solidity(signals: Signals) -> Callable[[int], float | None] | None:
    """The signals' row solidities as the matcher asks for them (by row), None when not sent."""
    known = signals.row_solidity
    if known is None or len(known) != len(signals.rows):
        return None
    return lambda row: known[row]


def scan(upload: str | os.PathLike[str] | bytes, name: str | None = None) -> list[Verdict]:
    """One-off scan with the shipped demo library and model. The verdicts say so: the demo
    library holds synthetic proxies only, and a platform builds or receives its own."""
    verdicts = _shipped_scanner().scan(upload, name=name)
    for v in verdicts:
        v.explanation += " [scanned with meshscan's shipped DEMO library and model: synthetic proxies only]"
    return verdicts


_SHIPPED_SCANNER: list[Scanner] = []


def _shipped_scanner() -> Scanner:
    if not _SHIPPED_SCANNER:
        _SHIPPED_SCANNER.append(Scanner())
    return _SHIPPED_SCANNER[0]


def _library(spec: str | os.PathLike[str] | SignatureLibrary) -> SignatureLibrary:
    from scanner.library import SignatureLibrary, open_any, shipped_library_path

    if isinstance(spec, SignatureLibrary):
        return spec
    if spec == SHIPPED:
        return SignatureLibrary.load(shipped_library_path())
    return open_any(spec)


def _model(spec: str | os.PathLike[str] | ComponentModel | None) -> ComponentModel | None:
    if spec is None:
        return None
    from scanner.classify.model import load_model

    if spec == SHIPPED:
        return load_model(None)
    if isinstance(spec, str | os.PathLike):
        return load_model(os.fspath(spec))
    return spec
