"""meshscan's signals as strings, in the shape python-threatexchange and HMA exchange them: a
signal type name and a signal value string, compared by a function of two strings. No
dependency on python-threatexchange: :mod:`scanner.exchange.tx` wraps these for it, and
``signatures export-signals`` writes them in its local-file exchange format (one
``<signal type> <signal value>`` per line), which HMA and the ``threatexchange`` CLI read.

Three signal types:

``mesh_geometry_hash``
    the sha256 meshscan computes over a mesh's triangles (any file format, triangle order or
    winding): 64 lowercase hex digits, matched exactly.
``mesh_descriptor``
    one descriptor row: ``<descriptor version>;<threshold>;<vector>``, the vector as
    little-endian float32 in URL-safe base64 without padding, the threshold the row's own
    (set at enrolment from how far it lies from benign shapes) or empty for a row hashed from
    an upload. Two rows match when their distance is within the banked row's threshold (the
    larger of the two when both carry one), or :data:`DEFAULT_THRESHOLD` when neither does.
    Rows of different descriptor versions never compare: a string of another version is
    invalid here.
``mesh_patches``
    distinctive triangle patch codes (:mod:`scanner.features.patches`): hashes of a triangle
    with its neighbours, so a cut, fused, split or decoyed copy keeps most of them.
    ``<patch version>;<codes>;<sizes>;<shares>;<distinct>``, each array little-endian in
    URL-safe base64 without padding: codes uint64 (sorted), sizes int16. A banked signature's
    sketch carries ``shares`` (float32, each code's share of its area) and no ``distinct``; an
    upload's carries no shares and ``distinct``, how many distinct (code, size) pairs the upload
    has - more than it carries when it was capped at :data:`MAX_SIGNAL_PATCHES` of each kind
    (the smallest codes: the same bottom-k rule as a signature's sketch, so every code of a
    signature below the cut-off is still there). They match as meshscan's own ``local`` rule
    decides (:class:`scanner.patch_index.PatchIndex`). A string of another patch version is
    refused (:data:`PATCH_VERSION_MISMATCH`): codes of two versions are different hashes.
"""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from scanner.errors import MeshscanError
from scanner.features.patches import KINDS, MAX_SIGNATURE_PATCHES, PATCH_VERSION, PatchCodes
from scanner.features.version import DESCRIPTOR_SIZE, DESCRIPTOR_VERSION

if TYPE_CHECKING:
    from scanner.patch_index import PatchIndex

GEOMETRY_SIGNAL = "mesh_geometry_hash"
DESCRIPTOR_SIGNAL = "mesh_descriptor"
PATCH_SIGNAL = "mesh_patches"
DEFAULT_THRESHOLD = 0.08
"""As meshscan's own ``match.distance_threshold`` default (:class:`scanner.config.MatchSettings`)."""

_HEX64 = re.compile(r"^[0-9a-f]{64}$")

MAX_SIGNAL_PATCHES = 32 * MAX_SIGNATURE_PATCHES
"""Distinct (code, size) pairs of each kind an upload's patch signal carries: those with the
smallest codes. An upload with at most this many of each (about 30,000 triangles or more,
depending on how repetitive its surface is) carries them all, and a lookup finds what a scan
finds. A larger one carries a bottom-k sample coordinated with the signatures' own (every
code below the cut-off is kept), so a signature whose sketch lies below the cut-off is still
found in full; others lose patches in proportion. At most 2 x 32,768 x 10 bytes raw (870 kB
as text)."""
PATCH_VERSION_MISMATCH = "patch-version"
"""Reason code: patch codes of a version this meshscan does not compute (never compared)."""
MALFORMED_PATCHES = "malformed-patches"
"""Reason code: a patch signal that cannot be parsed."""


class SignalError(MeshscanError, ValueError):
    """A signal refused, with a stable ``reason`` code (a ValueError, as python-threatexchange
    expects of a signal string that does not validate)."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason, self.detail = reason, detail
        super().__init__(f"{reason}: {detail}")


def validate_geometry_hash(text: str) -> str:
    """The normalised geometry hash, or ValueError."""
    value = text.strip().lower()
    if not _HEX64.match(value):
        raise ValueError("a mesh geometry hash is 64 hex digits")
    return value


@dataclass(frozen=True)
class DescriptorSignal:
    """One descriptor row, with its version and (for a banked row) its threshold."""

    vector: np.ndarray
    threshold: float | None = None
    version: str = DESCRIPTOR_VERSION

    def encode(self) -> str:
        raw = np.ascontiguousarray(self.vector, dtype="<f4").tobytes()
        body = base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")
        threshold = "" if self.threshold is None else f"{self.threshold:.6f}"
        return f"{self.version};{threshold};{body}"

    @classmethod
    def decode(cls, text: str) -> DescriptorSignal:
        """Parse and check a descriptor signal string; ValueError says what is wrong."""
        parts = text.strip().split(";")
        if len(parts) != 3:
            raise ValueError("a mesh descriptor signal is '<version>;<threshold>;<vector>'")
        version, threshold, body = parts
        if version != DESCRIPTOR_VERSION:
            raise ValueError(f"descriptor version {version!r}; this meshscan computes {DESCRIPTOR_VERSION!r}")
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except ValueError:
            raise ValueError("the descriptor vector is not base64") from None
        if len(raw) != 4 * DESCRIPTOR_SIZE:
            raise ValueError(f"the descriptor vector has {len(raw) // 4} values, not {DESCRIPTOR_SIZE}")
        vector = np.frombuffer(raw, dtype="<f4").astype(np.float64)
        if not np.isfinite(vector).all():
            raise ValueError("the descriptor vector holds non-finite values")
        value = float(threshold) if threshold else None
        if value is not None and not (np.isfinite(value) and value >= 0):
            raise ValueError("the threshold must be a finite number >= 0")
        return cls(vector, value, version)


def _b64(array: np.ndarray, dtype: str) -> str:
    raw = np.ascontiguousarray(array, dtype=dtype).tobytes()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(body: str, dtype: str, what: str) -> np.ndarray:
    try:
        raw = base64.b64decode(body + "=" * (-len(body) % 4), altchars=b"-_", validate=True)
    except ValueError:
        raise SignalError(MALFORMED_PATCHES, f"the patch {what} are not URL-safe base64") from None
    width = np.dtype(dtype).itemsize
    if len(raw) % width:
        raise SignalError(MALFORMED_PATCHES, f"the patch {what} are not a whole number of {width}-byte values")
    return np.frombuffer(raw, dtype=dtype)


@dataclass(frozen=True)
class PatchSignal:
    """Distinct patch codes with their coarse sizes: an upload's (``distinct`` set) or a
    banked signature's sketch (``shares`` set). Hashes only, no geometry."""

    codes: np.ndarray
    """(n,) uint64, sorted."""
    sizes: np.ndarray
    """(n,) int16: quarter octaves of each patch's perimeter."""
    shares: np.ndarray | None = None
    """Banked: (n,) float32, each code's share of the signature's area."""
    distinct: int | None = None
    """Upload: its distinct (code, size) pairs, counted before the cap."""
    version: str = PATCH_VERSION

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def sampled(self) -> bool:
        """An upload's signal capped at :data:`MAX_SIGNAL_PATCHES` of a kind."""
        return self.distinct is not None and self.distinct > len(self.codes)

    @classmethod
    def of_upload(cls, codes: PatchCodes, cap: int = MAX_SIGNAL_PATCHES) -> PatchSignal:
        """The distinct (code, size) pairs of an upload's patch codes, at most ``cap`` of each
        kind (the smallest codes)."""
        pairs = [np.asarray(codes.codes, np.uint64), np.asarray(codes.sizes, np.int16)]
        keys = np.unique(np.rec.fromarrays(pairs, names="c,s"))
        code, size = np.asarray(keys["c"], np.uint64), np.asarray(keys["s"], np.int16)
        kind = (code & np.uint64(1)).astype(np.int64)
        keep = np.sort(np.concatenate([np.flatnonzero(kind == k)[:cap] for k in KINDS]))
        return cls(code[keep], size[keep], distinct=len(code))

    @classmethod
    def of_sketch(cls, codes: np.ndarray, sizes: np.ndarray, shares: np.ndarray, version: str) -> PatchSignal:
        """A banked signature's sketch, as the library stores it."""
        order = np.lexsort((sizes, codes))
        codes, sizes = np.asarray(codes, np.uint64)[order], np.asarray(sizes, np.int16)[order]
        return cls(codes, sizes, np.asarray(shares, np.float32)[order], version=version)

    def patch_codes(self) -> PatchCodes:
        """As :meth:`scanner.matching.Matcher.local` reads an upload (weights are not read)."""
        return PatchCodes(np.asarray(self.codes, np.uint64), np.asarray(self.sizes, np.int16), np.ones(len(self)))

    def encode(self) -> str:
        shares = "" if self.shares is None else _b64(self.shares, "<f4")
        distinct = "" if self.distinct is None else str(self.distinct)
        return f"{self.version};{_b64(self.codes, '<u8')};{_b64(self.sizes, '<i2')};{shares};{distinct}"

    @classmethod
    def decode(cls, text: str) -> PatchSignal:
        """Parse and check a patch signal; :class:`SignalError` (a ValueError) says why not,
        with reason ``patch-version`` for codes of another version."""
        parts = text.strip().split(";")
        if len(parts) != 5:
            raise SignalError(MALFORMED_PATCHES, "a patch signal is '<version>;<codes>;<sizes>;<shares>;<distinct>'")
        version, codes_text, sizes_text, shares_text, distinct_text = parts
        if version != PATCH_VERSION:
            why = f"patch codes {version!r} cannot be compared with {PATCH_VERSION!r} (this meshscan's): hash again"
            raise SignalError(PATCH_VERSION_MISMATCH, why)
        codes = _unb64(codes_text, "<u8", "codes").astype(np.uint64)
        sizes = _unb64(sizes_text, "<i2", "sizes").astype(np.int16)
        if len(sizes) != len(codes):
            raise SignalError(MALFORMED_PATCHES, f"{len(codes)} patch codes but {len(sizes)} sizes")
        if len(codes) > 1 and not bool(np.all(codes[1:] >= codes[:-1])):
            raise SignalError(MALFORMED_PATCHES, "the patch codes are not sorted")
        shares = _unb64(shares_text, "<f4", "shares").astype(np.float32) if shares_text else None
        if shares is not None and (len(shares) != len(codes) or not bool(np.all((shares >= 0) & (shares <= 1)))):
            raise SignalError(MALFORMED_PATCHES, "the patch shares must be one number in [0, 1] per code")
        distinct = None
        if distinct_text:
            if not distinct_text.isdigit() or int(distinct_text) < len(codes):
                raise SignalError(MALFORMED_PATCHES, "distinct must be a whole number, at least the codes carried")
            distinct = int(distinct_text)
        if shares is None and len(codes) > len(KINDS) * MAX_SIGNAL_PATCHES:
            why = f"an upload's patch signal carries at most {MAX_SIGNAL_PATCHES} codes of each kind"
            raise SignalError(MALFORMED_PATCHES, why)
        return cls(codes, sizes, shares, distinct, version)


def patch_index(banked: list[PatchSignal]) -> PatchIndex:
    """meshscan's local-patch index (:class:`scanner.patch_index.PatchIndex`) over banked
    sketches, position i being ``banked[i]``: built once, queried with :func:`patch_matches`."""
    from scanner.patch_index import PatchIndex

    if any(b.shares is None for b in banked):
        raise SignalError(MALFORMED_PATCHES, "a banked patch signal carries the shares of its codes")
    empty = [np.zeros(0, np.uint64), np.zeros(0, np.int16), np.zeros(0, np.float32), np.zeros(0, np.int64)]
    columns = [
        np.concatenate([b.codes for b in banked] or [empty[0]]),
        np.concatenate([b.sizes for b in banked] or [empty[1]]),
        np.concatenate([b.shares for b in banked if b.shares is not None] or [empty[2]]),
        np.concatenate([np.full(len(b), i, dtype=np.int64) for i, b in enumerate(banked)] or [empty[3]]),
    ]
    return PatchIndex(*columns, signatures=len(banked))


def patch_matches(index: PatchIndex, query: PatchSignal) -> list[tuple[int, float, int, int]]:
    """(position of the banked sketch, share found, patches matched, patches total) of each
    sketch of ``index`` the upload's ``query`` reproduces enough of, most covered first:
    meshscan's own ``local`` rule over these sketches alone."""
    return [(h.signature, h.share, h.matched, h.total) for h in index.query(query.patch_codes())]


def distance(a: DescriptorSignal, b: DescriptorSignal) -> float:
    """Euclidean distance, in float64 as meshscan's own index computes it."""
    return float(np.linalg.norm(np.asarray(a.vector, np.float64) - np.asarray(b.vector, np.float64)))


def threshold_for(a: DescriptorSignal, b: DescriptorSignal) -> float:
    """The banked row's threshold decides; the larger when both are banked rows."""
    given = [t for t in (a.threshold, b.threshold) if t is not None]
    return max(given) if given else DEFAULT_THRESHOLD


FILE_SIGNALS = ("geometry", "descriptor", "patches")
"""What :func:`hash_file` can compute for a file, one threatexchange signal type each."""


def hash_file(path: str | os.PathLike[str], signal: str) -> str:
    """One signal (one of :data:`FILE_SIGNALS`) of the first mesh in ``path`` that can be read
    and described; "" when none can (as a threatexchange hasher answers). Only what that
    signal needs is computed: threatexchange hashes a file once per signal type."""
    from scanner.errors import UnreadableInput
    from scanner.features import describe
    from scanner.features.patches import mesh_patch_codes
    from scanner.loading import iter_meshes

    if signal not in FILE_SIGNALS:
        raise ValueError(f"unknown file signal {signal!r}")
    for result in iter_meshes(os.fspath(path)):
        if result.mesh is None:
            continue
        try:
            desc = describe(result.mesh)  # also the check that the mesh has a surface to describe
        except UnreadableInput:
            continue
        if signal == "geometry":
            return desc.geometry_hash
        if signal == "descriptor":
            return DescriptorSignal(desc.whole).encode()
        return PatchSignal.of_upload(mesh_patch_codes(result.mesh)).encode()
    return ""


def library_signals(lib, all_rows: bool = False) -> list[tuple[str, str, str]]:  # noqa: ANN001 - SignatureLibrary
    """(signature id, signal type, signal value) for every signature of ``lib``: its geometry
    hash, its whole-file descriptor row when that row is matchable (threshold > 0) - with
    ``all_rows`` every matchable row (bodies and plane-cut pieces too) - and its patch sketch
    when it has one."""
    from scanner.features.affine import AFFINE_ROW

    sketches = _sketches(lib)
    out = []
    for index, sig in enumerate(lib.signatures):
        if sig.disabled is not None:  # taken out of matching: not offered to anyone else either
            continue
        if sig.geometry_hash:
            out.append((sig.id, GEOMETRY_SIGNAL, sig.geometry_hash))
        for row in np.flatnonzero(lib.rows[:, 0] == index):
            body, threshold = int(lib.rows[row, 1]), float(lib.thresholds[row])
            if threshold > 0 and body != AFFINE_ROW and (all_rows or body == -1):  # a whitened row is no plain one
                signal = DescriptorSignal(lib.vectors[row], threshold, lib.descriptor_version)
                out.append((sig.id, DESCRIPTOR_SIGNAL, signal.encode()))
        if index in sketches:
            out.append((sig.id, PATCH_SIGNAL, sketches[index].encode()))
    return out


def _sketches(lib) -> dict[int, PatchSignal]:  # noqa: ANN001 - SignatureLibrary
    """Each signature's patch sketch, grouped in one pass over the library's patch columns."""
    sigs = np.asarray(lib.patch_sigs, dtype=np.int64)
    if not len(sigs) or lib.patch_version != PATCH_VERSION:
        return {}
    order = np.argsort(sigs, kind="stable")
    cuts = np.flatnonzero(np.diff(sigs[order])) + 1
    codes, sizes, shares = (np.asarray(c)[order] for c in (lib.patch_codes, lib.patch_sizes, lib.patch_shares))
    out = {}
    for part in np.split(np.arange(len(order)), cuts):
        out[int(sigs[order[part[0]]])] = PatchSignal.of_sketch(codes[part], sizes[part], shares[part], PATCH_VERSION)
    return out
