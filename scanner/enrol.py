"""Enrolling known files into a signature library: describe, hash, store - no geometry."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from scanner.config import Limits
from scanner.errors import UnreadableInput
from scanner.features import describe
from scanner.library import AllowEntry, Signature, SignatureLibrary
from scanner.loading import iter_meshes
from scanner.mesh import Mesh
from scanner.util import file_sha256, utc_now

MIN_MATCHABLE_BODY_SHARE = 0.2
"""A signature body holding less of its file's surface than this is not matchable on its own
(threshold 0: exact copies only). Small bodies are where unrelated files look alike (issue 11:
3 of 4 false matches among 147 enrolled printed parts were on one pin- or nut-like body)."""

SAMPLING_NOISE = 0.02
"""Distance at which a rotated or re-exported copy of a mesh lands from itself (p95 0.016 in
bench/robustness.py on the public corpus)."""


@dataclass
class EnrolResult:
    path: str
    member: str | None
    signature_id: str | None
    status: str
    """``added``, ``duplicate`` or ``unreadable:<reason>``."""
    threshold: float | None = None
    """The largest threshold given to a row of the file or its bodies (None when nothing was
    enrolled); piece rows are capped by the whole file's row, so they never exceed it."""
    dropped_allow: list[AllowEntry] = field(default_factory=list)
    """Allowlist entries removed because they had this signature's hash (the signature wins)."""

    @property
    def distinctive(self) -> bool:
        """False when even the best row sits so close to benign reference shapes that its
        threshold is below the descriptor's sampling noise: then only exact copies match."""
        return self.threshold is None or self.threshold >= SAMPLING_NOISE


POSE_MARGIN = 2.0
"""A signature row's threshold is at least this many times the distance its own file moves
under a change of pose (:func:`pose_noise`)."""


BENIGN_CEILING = 0.8
"""The pose floor never lifts a threshold past this share of the distance to the nearest
benign reference shape: a signature row that a benign shape sits on (a plain solid) stays
matchable by exact copies only."""


def pose_noise(mesh: Mesh, vectors: np.ndarray) -> np.ndarray:
    """How far each descriptor row moves when the same file is rotated, mirrored or rescaled.

    Why: a threshold set from benign neighbours alone can sit below the descriptor's own
    sampling noise (symmetric facets can still swap points, see ``intrinsic_keys``), and then a
    plain rotation of the enrolled file is missed. Three seeded poses of the mesh itself are
    described; each row keeps its largest distance to the nearest row of a posed copy."""
    from scanner.features import describe

    rng = np.random.default_rng(int(mesh.geometry_hash[:8], 16))
    tri = mesh.surface().corners32.astype(np.float64)
    worst = np.zeros(len(vectors))
    for scale, mirror in ((1.0, False), (7.3, True), (0.2, False)):
        q, r = np.linalg.qr(rng.normal(size=(3, 3)))
        rotation = q * np.sign(np.diag(r))
        if mirror:
            rotation = rotation @ np.diag([-1.0, 1.0, 1.0])
        posed = Mesh(vertices=(tri.reshape(-1, 3) @ rotation.T) * scale)
        other, _ = describe(posed).rows()
        d = np.sqrt(((vectors[:, None, :].astype(np.float64) - other[None, :, :]) ** 2).sum(axis=2)).min(axis=1)
        worst = np.maximum(worst, d)
    return worst


def piece_rows(mesh: Mesh, threshold: float) -> tuple[np.ndarray, list[int], np.ndarray]:
    """Descriptor rows of the signature's plane-cut pieces (:mod:`scanner.features.pieces`),
    their body numbers and thresholds.

    A piece's threshold comes from the benign reference alone (``row_thresholds``): a cut
    piece of a part is more often generic than the part (half a box-and-tube composition is
    near many brackets, and pieces of different designs near each other: ``PIECE_THRESHOLD``),
    and no pose floor applies because no exact copy is at stake. ``threshold`` caps them too:
    the caller passes the whole file row's own threshold, since a piece is never more
    distinctive than the whole (a plain pipe's pieces stay exact-only, like the pipe)."""
    from scanner.features import describe_triangles
    from scanner.features.pieces import PIECE_THRESHOLD, piece_row, plane_pieces
    from scanner.features.reference import PLAIN_SOLID, nearest_generic_distance, row_thresholds

    pieces = plane_pieces(mesh)
    if not pieces:
        return np.zeros((0, 0), dtype=np.float32), [], np.zeros(0, dtype=np.float32)
    vectors = np.stack([describe_triangles(tri) for _, tri in pieces])
    thresholds = row_thresholds(vectors, min(threshold, PIECE_THRESHOLD))
    thresholds[nearest_generic_distance(vectors) < PLAIN_SOLID] = 0.0  # half a plate is a plate
    return vectors, [piece_row(kept) for kept, _ in pieces], thresholds


def patch_rows(mesh: Mesh) -> np.ndarray:
    """The signature's distinctive patch sketch as library rows (:mod:`scanner.features.patches`):
    codes, sizes and area shares only."""
    from scanner.features.patches import signature_patches
    from scanner.library import PATCH_DTYPE

    sketch = signature_patches(mesh)
    rows = np.zeros(len(sketch), dtype=PATCH_DTYPE)
    rows["code"], rows["size"], rows["share"] = sketch.codes, sketch.sizes, sketch.shares
    return rows


def affine_rows(
    mesh: Mesh, vectors: np.ndarray, bodies: list[int], thresholds: np.ndarray
) -> tuple[np.ndarray, list[int], np.ndarray]:
    """The signature's rows with its whitened whole-file row (``AFFINE_ROW``) appended; its
    threshold is ``AFFINE_THRESHOLD`` capped by the plain whole-file row's (the first)."""
    from scanner.features.affine import AFFINE_ROW, AFFINE_THRESHOLD, affine_row

    surface = mesh.surface()
    row = affine_row(surface.corners32, surface.corner_keys, vectors.shape[1])
    limit = np.float32(min(AFFINE_THRESHOLD, float(thresholds[0])))
    return np.vstack([vectors, row[None, :]]), [*bodies, AFFINE_ROW], np.append(thresholds, limit).astype(np.float32)


def signature_id(geometry_hash: str) -> str:
    """Stable, content-derived id: the same geometry gets the same id in any library."""
    return "ms-" + geometry_hash[:16]


def enrol(
    lib: SignatureLibrary,
    path: str | os.PathLike[str],
    category: str,
    source: str,
    note: str = "",
    limits: Limits | None = None,
    threshold: float | None = None,
) -> list[EnrolResult]:
    """Enrol every mesh of ``path`` (each archive member is its own signature).

    Each descriptor row gets its own threshold: the global one (``threshold``, default the
    configured distance threshold), lowered for rows that sit near benign reference shapes.
    An allowlist entry with the new signature's sha256 or geometry hash is dropped (the
    signature wins: see :meth:`SignatureLibrary.add_signature`) and listed in the result.
    """
    from scanner.config import MatchSettings
    from scanner.decimation import decimated_rows
    from scanner.features.reference import (
        PLAIN_SOLID,
        nearest_generic_distance,
        nearest_reference_distance,
        row_thresholds,
    )
    from scanner.subdivision import subdivided_rows

    threshold = MatchSettings().distance_threshold if threshold is None else threshold
    path = os.fspath(path)
    sha = file_sha256(path)
    out = []
    for result in iter_meshes(path, limits):
        if result.error is not None:
            out.append(EnrolResult(path, result.member, None, f"unreadable:{result.error.reason}"))
            continue
        mesh = result.mesh
        try:
            desc = describe(mesh, (limits or Limits()).max_bodies)
        except UnreadableInput as err:  # no surface, or past the body limit: as a scan would say
            out.append(EnrolResult(path, result.member, None, f"unreadable:{err.reason}"))
            continue
        vectors, bodies = desc.rows()
        sig = Signature(
            id=signature_id(desc.geometry_hash),
            category=category,
            source=source,
            added=utc_now(),
            note=note,
            name=os.path.basename(path) + (f"::{result.member}" if result.member else ""),
            sha256=sha if result.member is None else None,
            geometry_hash=desc.geometry_hash,
            triangles=mesh.triangle_count,
            bodies=desc.body_count,
        )
        benign = nearest_reference_distance(vectors)
        thresholds = row_thresholds(vectors, threshold, benign)
        # never tighter than the row's own pose noise, so a rotated, mirrored or rescaled copy
        # of the enrolled file itself matches (no fragile signatures) - but never so wide that
        # a benign reference shape falls inside (a plain sphere or box stays unmatchable)
        floor = np.minimum(POSE_MARGIN * pose_noise(mesh, vectors), threshold)
        ceiling = BENIGN_CEILING * benign
        thresholds = np.maximum(thresholds, np.minimum(floor, ceiling)).astype(np.float32)
        # a small body of a multi-body signature (a pin, a nut beside the part) is generic, and
        # so is a row that is a plain solid (a washer, a plate): exact copies only, never a look-alike
        thresholds[desc.row_shares() < MIN_MATCHABLE_BODY_SHARE] = 0.0
        thresholds[nearest_generic_distance(vectors) < PLAIN_SOLID] = 0.0
        # the surface after one level of Loop subdivision (scanner.subdivision) as one more
        # row: thresholded on its own benign neighbours, never wider than the whole file's row
        vectors, bodies, thresholds = subdivided_rows(mesh, vectors, bodies, thresholds)
        # the surface decimated as trimesh's quadric decimation does it (scanner.decimation), at
        # a few triangle budgets: the same caps as the subdivided row
        vectors, bodies, thresholds = decimated_rows(mesh, vectors, bodies, thresholds)
        # a piece is never more distinctive than its whole: a plain pipe's pieces stay exact-only
        pieces, piece_bodies, piece_thresholds = piece_rows(mesh, min(threshold, float(thresholds[0])))
        whole_threshold = float(thresholds.max())
        if len(pieces):
            vectors = np.concatenate([vectors, pieces])
            bodies = [*bodies, *piece_bodies]
            thresholds = np.concatenate([thresholds, piece_thresholds])
        # the whitened whole-file row, for stretched copies (scanner.features.affine): never
        # wider than the plain whole row's own threshold, so a shape near benign ones stays tight
        vectors, bodies, thresholds = affine_rows(mesh, vectors, bodies, thresholds)
        added = lib.add_signature(sig, vectors, bodies, thresholds, patch_rows(mesh))
        status = "added" if added.added else "duplicate"
        out.append(EnrolResult(path, result.member, sig.id, status, whole_threshold, added.dropped_allow))
    return out
