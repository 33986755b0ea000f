"""Interpretable shape features: the part of the classifier a moderator can read.

The invariant histogram descriptor (``scanner.features``) is what near-duplicate matching
needs, but "your D2 profile resembles a barrel" explains nothing. These few numbers do:
each has a human name and phrase templates, so an explanation can say "elongated
(length/width 9.3), through-bore along its length, thin walls". All are invariant to
rotation, translation, uniform scale, mirroring, triangle order and winding, and cost a few
milliseconds for a 5k-triangle file (one convex hull, one edge sort, two line casts).

``SHAPE_VERSION`` names this family; a model trained with another version is refused.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from scanner import kernels
from scanner.features.sampling import surface_moments
from scanner.mesh import Mesh

SHAPE_VERSION = "sf3"

_EPS = 1e-12
CURVED_MIN_DEG, CURVED_MAX_DEG = 0.5, 50.0
"""An edge between faces whose normals differ by this much is a facet edge of a curved
surface (a 24-sided cylinder has 15 degree edges, a coarse 8-sided one 45); 0 is flat, 90 a
sharp box edge, and a hexagonal prism's 60 degree edges count as flat faces."""


@functools.cache
def curved_cosines() -> tuple[float, float]:
    """The closed interval of cosines whose angle, ``degrees(acos(c))`` in the C library's
    double ``acos``, lies strictly between ``CURVED_MIN_DEG`` and ``CURVED_MAX_DEG``: an edge
    is a curved-surface facet edge when its normals' cosine is in it.

    Why not the angles themselves: ``np.arccos`` is the C library's ``acos`` on some CPUs and
    numpy's own SIMD code (another rounding) on AVX-512 ones, and it cost ~1.5 arccos calls a
    face; the angle only falls as the cosine rises, so the two ends of the band, found once by
    bisection over the doubles of [0, 1] (~130 ``math.acos`` calls), decide every edge as the
    angle did - with this machine's ``acos`` on every machine."""
    low = _first_double(lambda c: _degrees(c) < CURVED_MAX_DEG)
    return low, math.nextafter(_first_double(lambda c: not _degrees(c) > CURVED_MIN_DEG), -math.inf)


def _degrees(c: float) -> float:
    """``np.degrees(np.arccos(c))`` of one double as the C library computes it."""
    return math.degrees(math.acos(c))


def _ordered(x: float) -> int:
    """Non-negative doubles in order as integers (their bits)."""
    return struct.unpack("<q", struct.pack("<d", x))[0]


def _from_ordered(i: int) -> float:
    return struct.unpack("<d", struct.pack("<q", i))[0]


def _first_double(holds: Callable[[float], bool]) -> float:
    """The least double of [0, 1] from which ``holds`` is true (false below it; ``math.inf``
    when it is nowhere true)."""
    if holds(0.0):
        return 0.0
    if not holds(1.0):
        return math.inf
    lo, hi = _ordered(0.0), _ordered(1.0)
    while hi - lo > 1:  # holds(hi), not holds(lo)
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if holds(_from_ordered(mid)) else (mid, hi)
    return _from_ordered(hi)


PROFILE_BINS = 12


@dataclass(frozen=True)
class ShapeFeature:
    """One feature: its column name, a short human name and phrases for high / low values.

    Phrases are ``str.format`` templates receiving ``v`` (the value)."""

    name: str
    label: str
    high: str
    low: str


FEATURES: tuple[ShapeFeature, ...] = (
    ShapeFeature("elongation", "length/width", "elongated (length/width {v:.1f})",
                 "not elongated (length/width {v:.1f})"),
    ShapeFeature("flatness", "width/thickness", "flat (width/thickness {v:.1f})",
                 "thick cross-section (width/thickness {v:.1f})"),
    ShapeFeature("solidity", "share of its convex hull filled", "solid and convex (fills {v:.0%} of its convex hull)",
                 "hollow or open (fills {v:.0%} of its convex hull)"),
    ShapeFeature("box_fill", "share of its bounding box filled", "fills {v:.0%} of its bounding box",
                 "fills only {v:.0%} of its bounding box"),
    ShapeFeature("wall", "wall thickness / width", "thick walls (wall about {v:.0%} of its width)",
                 "thin walls (wall about {v:.0%} of its width)"),
    ShapeFeature("compactness", "compactness", "compact, bulky form (compactness {v:.2f})",
                 "spindly or sheet-like form (compactness {v:.2f})"),
    ShapeFeature("curved_share", "curved surface share", "curved, cylinder-like surfaces on {v:.0%} of its area",
                 "mostly flat faces (curved on {v:.0%} of its area)"),
    ShapeFeature("coaxial_round", "round about the long axis", "round about its long axis on {v:.0%} of its surface",
                 "not round about its long axis ({v:.0%} of its surface)"),
    ShapeFeature("bore_length", "through-bore along the length",
                 "coaxial through-bore along its length (bore/outer diameter {v:.2f})",
                 "no through-bore along its length"),
    ShapeFeature("bore_thickness", "through-hole across the thickness",
                 "central through-hole across its thickness (hole/outer diameter {v:.2f})",
                 "no central hole across its thickness"),
    ShapeFeature("holes", "through-holes (genus)", "{v:.0f} through-hole(s) in closed bodies", "no through-holes"),
    ShapeFeature("bodies", "separate bodies", "{v:.0f} separate bodies", "a single body"),
    ShapeFeature("profile_steps", "steps in the outer profile",
                 "stepped outer profile along its length ({v:.0%} step: collars or shoulders)",
                 "uniform outer profile along its length ({v:.0%} step)"),
)  # fmt: skip
FEATURE_NAMES = tuple(f.name for f in FEATURES)


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Row-wise cross product written out (np.cross is several times slower on small arrays)."""
    out = np.empty_like(u)
    out[:, 0] = u[:, 1] * v[:, 2] - u[:, 2] * v[:, 1]
    out[:, 1] = u[:, 2] * v[:, 0] - u[:, 0] * v[:, 2]
    out[:, 2] = u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]
    return out


def _dot3(points: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """points @ axis for (N, 3) points, without a BLAS call (BLAS threads cost more than
    they save on arrays this small, and fight the scan's worker processes for the cores)."""
    return points[:, 0] * axis[0] + points[:, 1] * axis[1] + points[:, 2] * axis[2]


def _moments(tri: np.ndarray, areas: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Area centroid and principal axes (rows, major first) from the exact surface moments
    the descriptor's sampling uses."""
    centroid, _, second = surface_moments(tri, areas)
    evals, evecs = np.linalg.eigh(second)
    return centroid, evecs[:, np.argsort(evals)[::-1]].T, evals


_ROWS = 1 << 16
"""Rows per block of the edge statistics and the line casts: their (n, 3) float64 temporaries
stay in cache and below the allocator's mmap threshold (a 1M-triangle mesh's whole-array
gathers were 36 MB each, page-faulted afresh on every scan); every value is per row, so the
block size changes none."""


CastBlock = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""What a line cast through the centroid reads of a block of triangles, whatever the line's
direction: the edges from the first corner (``e1``, ``e2``), the centroid less that corner
(``t``) and ``t x e1``."""


def _cast_block(block: np.ndarray, centroid: np.ndarray, edges: tuple[np.ndarray, np.ndarray] | None = None
                ) -> CastBlock:  # fmt: skip
    """:data:`CastBlock` of (n, 3, 3) float64 ``block``; ``edges``: its ``e1``, ``e2`` when the
    caller has them (:func:`_face_values` makes the very same differences)."""
    e1, e2 = edges if edges is not None else (block[:, 1] - block[:, 0], block[:, 2] - block[:, 0])
    t = centroid - block[:, 0]
    return e1, e2, t, _cross(t, e1)


def _cast_blocks(tri: np.ndarray, centroid: np.ndarray, edges: tuple[np.ndarray, np.ndarray] | None
                 ) -> Callable[[], Iterable[CastBlock]]:  # fmt: skip
    """The blocks every line cast reads, for each cast in turn. A surface of one block
    (``edges`` given: every small file) has its block made once and read by every cast: the
    two casts differ only in their direction, and made it twice (with the edges that
    :func:`_face_values` had made already). A larger surface's blocks are made afresh by each
    cast, which stops at the first block with a hit, as before (all blocks kept would be
    ~100 MB at 1M triangles)."""
    if edges is not None and len(tri) <= _ROWS:
        one = [_cast_block(tri, centroid, edges)]
        return lambda: one
    return lambda: (_cast_block(tri[lo : lo + _ROWS], centroid) for lo in range(0, len(tri), _ROWS))


def _bore_ratios(clear: Callable[[float, np.ndarray], bool], reach: float, rel_sq: np.ndarray,
                 axes: list[tuple[np.ndarray, np.ndarray]]) -> list[float]:  # fmt: skip
    """Inner / outer radius of a through-bore along each axis through the centroid (0: none).

    ``clear(tiny, axis)``: does the line from the centroid along ``axis`` miss the surface
    (:func:`_line_clear` over the surface's :func:`_cast_blocks`, or the compiled cast);
    ``reach`` the largest coordinate of its triangles' first edges; ``rel_sq`` are the points'
    squared distances from the centroid, and ``axes`` pairs each axis with the points' distances
    along it (which the caller has already)."""
    tiny = _EPS * (reach + _EPS) ** 2
    out = []
    for axis, along in axes:
        if not clear(tiny, axis):
            out.append(0.0)
            continue
        radial = np.sqrt(np.maximum(rel_sq - along**2, 0.0))
        outer = radial.max()
        out.append(float(radial.min() / outer) if outer > _EPS else 0.0)
    return out


def _line_clear(blocks: Iterable[CastBlock], tiny: float, direction: np.ndarray) -> bool:
    """True when the line from the centroid along ``direction`` misses every triangle
    (Moller-Trumbore, edges count as hits). Block by block of triangles (:func:`_cast_blocks`:
    made in cache), and the cast stops at the first block with a hit (most lines hit the
    surface)."""
    d0, d1, d2 = (float(c) for c in direction)  # _cross(direction broadcast, e2): the same products
    tol = 1e-9
    for e1, e2, t, q in blocks:
        p = np.empty_like(e2)
        p[:, 0] = d1 * e2[:, 2] - d2 * e2[:, 1]
        p[:, 1] = d2 * e2[:, 0] - d0 * e2[:, 2]
        p[:, 2] = d0 * e2[:, 1] - d1 * e2[:, 0]
        det = np.einsum("ij,ij->i", e1, p)
        ok = np.abs(det) > tiny
        inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
        u = np.einsum("ij,ij->i", t, p) * inv
        v = _dot3(q, direction) * inv
        if bool((ok & (u >= -tol) & (v >= -tol) & (u + v <= 1 + tol)).any()):
            return False
    return True


def _profile_steps(along: np.ndarray, rel_sq: np.ndarray) -> float:
    """How much the outer radius about the long axis changes along it (0: uniform): ``along``
    are the points' distances along that axis from the centroid, ``rel_sq`` their squared
    distances from it."""
    shape = kernels.shape
    if shape is not None and along.dtype == rel_sq.dtype == np.float64 and len(along) == len(rel_sq) > 0:
        steps = shape.profile_steps(np.ascontiguousarray(along), np.ascontiguousarray(rel_sq), PROFILE_BINS)
        if steps is not None:  # None: a NaN, the numpy code decides
            return steps
    radial = np.sqrt(np.maximum(rel_sq - along**2, 0.0))
    lo, hi = along.min(), along.max()
    if hi - lo <= _EPS:
        return 0.0
    bins = np.minimum(((along - lo) / (hi - lo) * PROFILE_BINS).astype(np.int64), PROFILE_BINS - 1)
    top = np.full(PROFILE_BINS, -1.0)
    np.maximum.at(top, bins, radial)
    top = top[top >= 0]
    return float((top.max() - top.min()) / top.max()) if top.max() > _EPS else 0.0


def _edge_stats(mesh: Mesh, normals: np.ndarray) -> tuple[np.ndarray, bool]:
    """Per face: does it touch a curved-surface edge; and is every edge shared by two faces."""
    n_faces = len(mesh.welded_faces)
    first, second, closed = mesh.two_face_edges  # from the sort that bodies were found with
    low, high = curved_cosines()
    shape = kernels.shape
    if shape is not None and first.dtype == second.dtype == np.int64 and normals.dtype == np.float64:
        # the gathers, products, clip and the faces' flags compiled (the same bits)
        first, second = np.ascontiguousarray(first), np.ascontiguousarray(second)
        cosine = np.empty(len(first))
        shape.edge_cosines(np.ascontiguousarray(normals), n_faces, first, second, cosine)
        soft = (cosine >= low) & (cosine <= high)
        curved = np.empty(n_faces, dtype=bool)
        shape.curved_faces(soft, first, second, n_faces, curved)
        return curved, closed
    f1 = first % max(n_faces, 1)  # edge k of the concatenation belongs to face k mod F
    f2 = second % max(n_faces, 1)
    soft = np.empty(len(first), dtype=bool)
    for lo in range(0, len(first), _ROWS):
        part = slice(lo, lo + _ROWS)
        # np.take: normals[f1] and normals[f2], gathered several times faster than by fancy indexing
        dot = np.einsum("ij,ij->i", np.take(normals, f1[part], axis=0), np.take(normals, f2[part], axis=0))
        cosine = np.abs(np.clip(dot, -1.0, 1.0))  # winding-independent
        soft[part] = (cosine >= low) & (cosine <= high)
    curved = np.zeros(n_faces, dtype=bool)
    curved[f1[soft]] = True
    curved[f2[soft]] = True
    return curved, closed


def _bounds(corners32: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bounding box (float64) of (F, 3, 3) float32 corners, one coordinate row at a time:
    the same minimum and maximum as ``min(axis=0)``, which is slow on (N, 3) arrays (the
    sampler's :func:`scanner.features.sampling._axis_bounds`: contiguous rows for a small
    surface, the same numbers)."""
    from scanner.features.sampling import _axis_bounds

    shape = kernels.shape
    if shape is not None and corners32.dtype == np.float32:
        lo, hi = np.empty(3), np.empty(3)
        if shape.bounds(np.ascontiguousarray(corners32), lo, hi):  # False: a zero bound or not finite
            return lo, hi
    return _axis_bounds(corners32.reshape(-1, 3))


def _face_values(tri: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, tuple | None]:
    """Per triangle of (F, 3, 3) float64 ``tri``: area, unit normal (zero where degenerate)
    and the signed-volume term ``a . (b x c)``; the largest coordinate of the first edges
    (the line casts' tolerance); and for a surface of one block, its two edges from the first
    corner (what the line casts read too: :func:`_cast_blocks`), else None. Block by block,
    every value per triangle: the same numbers as whole-array arithmetic, from cache."""
    n = len(tri)
    areas, normals, volume, reach = np.empty(n), np.empty((n, 3)), np.empty(n), []
    shape = kernels.shape
    if shape is not None and tri.dtype == np.float64 and tri.shape[1:] == (3, 3):
        keep = 0 < n <= _ROWS
        edge1, edge2 = (np.empty((n, 3)), np.empty((n, 3))) if keep else (np.empty(0), np.empty(0))
        top = shape.face_values(np.ascontiguousarray(tri), areas, normals, volume, edge1, edge2, keep)
        return areas, normals, volume, top, (edge1, edge2) if keep else None
    edge1 = edge2 = None
    for lo in range(0, n, _ROWS):
        part, block = slice(lo, lo + _ROWS), tri[lo : lo + _ROWS]
        edge1, edge2 = block[:, 1] - block[:, 0], block[:, 2] - block[:, 0]
        cross = _cross(edge1, edge2)
        double_area = np.sqrt(cross[:, 0] * cross[:, 0] + cross[:, 1] * cross[:, 1] + cross[:, 2] * cross[:, 2])
        areas[part] = 0.5 * double_area
        normals[part] = cross / np.where(double_area > 0, double_area, 1.0)[:, None]
        volume[part] = np.einsum("ij,ij->i", block[:, 0], _cross(block[:, 1], block[:, 2]))
        reach.append(np.abs(edge1).max())
    edges = (edge1, edge2) if edge1 is not None and n <= _ROWS else None
    return areas, normals, volume, float(np.max(reach)) if reach else 0.0, edges


def _round_about(tri: np.ndarray, normals: np.ndarray, curved: np.ndarray, centroid: np.ndarray, axis: np.ndarray
                 ) -> np.ndarray:  # fmt: skip
    """Curved faces whose normal points away from ``axis`` (through ``centroid``): round about
    it. Block by block, per face."""
    out = np.empty(len(tri), dtype=bool)
    shape = kernels.shape
    if shape is not None and tri.dtype == normals.dtype == np.float64 and curved.dtype == bool:
        shape.round_about(np.ascontiguousarray(tri), np.ascontiguousarray(normals), np.ascontiguousarray(curved),
                          tuple(float(c) for c in centroid), tuple(float(a) for a in axis), out)  # fmt: skip
        return out
    for lo in range(0, len(tri), _ROWS):
        part, block, nrm = slice(lo, lo + _ROWS), tri[lo : lo + _ROWS], normals[lo : lo + _ROWS]
        rel = (block[:, 0] + block[:, 1] + block[:, 2]) / 3.0 - centroid  # tri.mean(axis=1), the same sums
        radial = rel - np.outer(_dot3(rel, axis), axis)
        norm = np.sqrt(radial[:, 0] * radial[:, 0] + radial[:, 1] * radial[:, 1] + radial[:, 2] * radial[:, 2])
        radial /= np.maximum(norm, _EPS)[:, None]  # np.linalg.norm's sum, left to right
        out[part] = curved[part] & (np.abs(_dot3(nrm, axis)) < 0.2) & (np.abs(np.einsum("ij,ij->i", nrm, radial)) > 0.9)
    return out


def _frame(vertices: np.ndarray, middle: np.ndarray, centroid: np.ndarray, axes: np.ndarray
           ) -> tuple[list[np.ndarray] | np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """The (float32) vertices in the principal frame: each point's distances along the axes
    from the centroid (per axis, and as (N, 3) ``proj``), its squared distance from the
    centroid, and the extent along each axis; ``middle`` is the bounding box's centre, taken
    off first (as from the triangles)."""
    shape = kernels.shape
    if shape is not None and vertices.dtype == np.float32 and axes.dtype == np.float64 and len(vertices) > 0:
        n = len(vertices)
        along, proj, rel_sq, ext = np.empty((3, n)), np.empty((n, 3)), np.empty(n), np.empty(3)
        at, mid = tuple(float(c) for c in centroid), tuple(float(c) for c in middle)
        if shape.frame(np.ascontiguousarray(vertices), mid, at, np.ascontiguousarray(axes), along, proj, rel_sq, ext):
            return along, proj, rel_sq, ext  # False: a NaN, the numpy code decides
    points = vertices.astype(np.float64) - middle  # every corner, each once
    rel_points = points - centroid
    along = [_dot3(rel_points, axes[k]) for k in range(3)]
    proj = np.stack(along, axis=1)
    rel_sq = (rel_points**2).sum(axis=1)
    ext = np.array([a.max() - a.min() for a in along])  # per column: (N, 3) axis-0 reductions are slow
    return along, proj, rel_sq, ext


def shape_features(mesh: Mesh) -> np.ndarray:
    """The ``FEATURES`` of a mesh (all bodies together), float64, in ``FEATURE_NAMES`` order."""
    lo, hi = _bounds(mesh.corners32)
    tri = mesh.corners32 - (lo + hi) / 2.0  # float64: each float32 corner widened, then the offset subtracted
    areas, normals, volume_terms, reach, edges = _face_values(tri)
    area = float(areas.sum())
    if not area > 0:
        raise ValueError("surface has no area")
    centroid, axes, _ = _moments(tri, areas)
    along, proj, rel_sq, ext = _frame(mesh.welded_vertices, (lo + hi) / 2.0, centroid, axes)
    size = max(float(ext[0]), _EPS)
    e1, e2, e3 = (max(float(e), size * 1e-6) for e in ext)
    volume = abs(float(volume_terms.sum()) / 6.0)
    hull_volume = _hull_volume(proj)
    curved, closed = _edge_stats(mesh, normals)
    round_axis = _round_about(tri, normals, curved, centroid, axes[0])
    bore_axes = [(axes[0], along[0]), (axes[2], along[2])]
    if kernels.shape is not None:  # every triangle cast in C, no blocks made
        at, line_clear = tuple(float(c) for c in centroid), kernels.shape.line_clear

        def clear(tiny: float, axis: np.ndarray) -> bool:
            return line_clear(tri, at, tiny, tuple(float(c) for c in axis))

    else:
        blocks = _cast_blocks(tri, centroid, edges)

        def clear(tiny: float, axis: np.ndarray) -> bool:
            return _line_clear(blocks(), tiny, axis)

    bores = _bore_ratios(clear, reach, rel_sq, bore_axes)
    bodies = mesh.body_count
    holes = 0.0
    if closed:
        used = len(mesh.welded_vertices)  # welded from the corners: every vertex is used
        euler = used - 1.5 * len(mesh.welded_faces) + len(mesh.welded_faces)  # closed: E = 3F/2
        holes = max(0.0, (2 * bodies - euler) / 2.0)
    return np.array(
        [
            e1 / e2,
            e2 / e3,
            min(volume / hull_volume, 1.5) if hull_volume > _EPS * size**3 else 0.0,
            min(volume / (e1 * e2 * e3), 1.5),
            min(2.0 * volume / area / e2, 1.5),
            min(36.0 * np.pi * volume**2 / area**3, 1.5),
            float(areas[curved].sum() / area),
            float(areas[round_axis].sum() / area),
            *bores,
            min(holes, 64.0),
            float(min(bodies, 64)),
            _profile_steps(along[0], rel_sq),
        ],
        dtype=np.float64,
    )


def _directions(n: int) -> np.ndarray:
    """``2n`` directions spread evenly over the sphere (a Fibonacci lattice and its mirror)."""
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / (2 * n)
    r = np.sqrt(1.0 - z * z)
    phi = np.pi * (1.0 + 5**0.5) * i
    d = np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)
    return np.concatenate([d, -d])


_HULL_DIRECTIONS = _directions(32).astype(np.float32)
_HALF = len(_HULL_DIRECTIONS) // 2
_HULL_HALF = np.ascontiguousarray(_HULL_DIRECTIONS[:_HALF])
"""The first half of the directions: the second half is their exact negation (float32 rounding
is symmetric), so a point's product with a direction of the second half is exactly minus its
product with the mirrored one, and the first point furthest along it is the first point with
the smallest product along the mirror (``argmin`` of the products: the same ties, the same
NaN rule as ``argmax`` of their negations)."""
assert np.array_equal(_HULL_DIRECTIONS[_HALF:], -_HULL_HALF)


_HULL_BLOCK = 4096
"""Points per block of the extreme-point search: (32, block) float32 products stay in cache."""


def _extreme_points(points: np.ndarray) -> np.ndarray:
    """Index of the first point furthest along each of ``_HULL_DIRECTIONS``: ``np.argmax(d @
    p.T, axis=1)`` with the products and sums written out in float32, block by block of
    points (a block's maximum replaces the best so far only when strictly larger, so ties go
    to the first point, as ``argmax`` has them). Points that are not all finite take one
    block, where ``argmax``'s own NaN rule applies.

    Only the first half of the directions is multiplied out (:data:`_HULL_HALF`): the second
    half's products are the exact negations, so its answers are ``argmin`` of the same
    products (half the arithmetic; the same indices)."""
    shape = kernels.shape
    if shape is not None and points.dtype == np.float64 and len(points) > 0:
        found = np.empty(2 * _HALF, dtype=np.int64)
        if shape.extreme(np.ascontiguousarray(points), _HULL_HALF, found):
            return found  # all finite, no NaN product: the same first extremes
    d, p32 = _HULL_HALF, np.ascontiguousarray(points.T, dtype=np.float32)
    n = p32.shape[1]
    block = n if n <= 2 * _HULL_BLOCK or not np.isfinite(p32).all() else _HULL_BLOCK
    dots = np.empty((len(d), min(block, n)), dtype=np.float32)
    scratch = np.empty_like(dots)
    best_at = np.zeros(2 * len(d), dtype=np.int64)
    best = np.full(len(d), -np.inf, dtype=np.float32)  # largest product so far (first half)
    least = np.full(len(d), np.inf, dtype=np.float32)  # smallest product so far (second half)
    rows = np.arange(len(d))
    for lo in range(0, n, block):
        part = p32[:, lo : lo + block]
        w = part.shape[1]
        out, tmp = dots[:, :w], scratch[:, :w]
        np.multiply(d[:, 0:1], part[0], out=out)  # the same float32 products and sums as d @ p32
        out += np.multiply(d[:, 1:2], part[1], out=tmp)
        out += np.multiply(d[:, 2:3], part[2], out=tmp)
        at_max, at_min = np.argmax(out, axis=1), np.argmin(out, axis=1)
        if block == n:
            return np.concatenate([at_max, at_min])
        top, bottom = out[rows, at_max], out[rows, at_min]
        better, lower = top > best, bottom < least  # -bottom > -least: strictly further along -d
        best[better], best_at[:_HALF][better] = top[better], at_max[better] + lo
        least[lower], best_at[_HALF:][lower] = bottom[lower], at_min[lower] + lo
    return best_at


def _hull_volume(points: np.ndarray) -> float:
    """Convex hull volume of points given in the principal frame.

    A large point set is first cut down to its extreme points along 64 directions fixed in
    the principal frame (so still invariant to pose): their hull is within a few percent of
    the exact one and costs a fraction of a millisecond instead of Qhull on every vertex.
    scipy.spatial is imported only when Qhull is asked (the kernel absent, or declining a
    sheet): a scan that never needs it does not load it (0.1 s of CPU a process)."""
    if len(points) > 2 * len(_HULL_DIRECTIONS):
        points = points[np.unique(_extreme_points(points))]
    if len(points) < 4:
        return 0.0
    points = np.ascontiguousarray(points, dtype=np.float64)
    if kernels.shape is not None:  # a small hull in C; Qhull where it declines
        volume = kernels.shape.hull_volume(points)
        if volume >= 0.0:
            return volume
    from scipy.spatial import QhullError

    try:
        return _qhull_volume(points)
    except (QhullError, ValueError):
        return 0.0  # flat or degenerate: no volume to fill


def _qhull_volume(points: np.ndarray) -> float:
    """``scipy.spatial.ConvexHull(points).volume``: the same Qhull run (options ``Qt``, then
    triangulated) without the simplex, neighbour and equation arrays ``ConvexHull`` also builds
    (~60 of its ~110 us on a small file's 57 points; the same volume, bit for bit). Where
    scipy's private ``_Qhull`` is not what it was (an upgrade renamed or changed it), the
    public class is used."""
    from scipy.spatial import ConvexHull

    try:
        from scipy.spatial._qhull import _Qhull

        hull = _Qhull(b"i", points, b"", required_options=b"Qt")
    except (ImportError, TypeError, AttributeError):
        return float(ConvexHull(points).volume)
    try:
        hull.triangulate()
        return float(hull.volume_area()[0])
    finally:
        hull.close()


def phrase(feature: ShapeFeature, value: float, high: bool) -> str:
    """The feature in a moderator's words, for a value that is above (``high``) or below the
    benign typical value."""
    return (feature.high if high else feature.low).format(v=value)
