"""The in-memory mesh every loader produces, and the geometry every later stage reads.

A :class:`Mesh` is plain numpy data: ``vertices`` (V, 3) and ``faces`` (F, 3). Loaders of
triangle-soup formats (STL) pass ``faces=None`` and vertices as consecutive triples, so a
4M-triangle STL costs one float32 array and nothing else until a stage needs topology.

Topology (welding, bodies, edges) is computed lazily and cached, because most scans only
need the triangles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from scanner import kernels, parallel
from scanner.arrays import sort64, sorted_order_u64, unique_sorted
from scanner.util import sha256_chunks

_MIX1 = np.uint64(0x9E3779B97F4A7C15)
_MIX2 = np.uint64(0xBF58476D1CE4E5B9)
_MIX3 = np.uint64(0x94D049BB133111EB)


_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


def _splitmix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, vectorised: a cheap, well-spread 64-bit hash of uint64 keys.

    In place on one new array and one scratch shift (the same integer operations as
    ``x = (x ^ (x >> 30)) * M2`` ...): the written-out form made seven arrays, which for the
    millions of keys of a large mesh (corner, triangle and sampling seeds) measured 1.6x
    slower.

    Overflow is the point of the arithmetic. numpy's integer loops on arrays never check it;
    its scalar arithmetic does (and warns), so only a scalar key is mixed under
    ``np.errstate(over="ignore")``: entering and leaving that context cost ~2 us, which at
    ~30 calls a small file was about 1% of its scan."""
    x = np.add(x, _MIX1)
    if type(x) is not np.ndarray:  # a numpy scalar: its multiplication checks for overflow
        with np.errstate(over="ignore"):
            return _mix(x)
    return _mix(x)


def _mix(x: np.ndarray) -> np.ndarray:
    """The rest of :func:`_splitmix` after the first addition, in place on ``x`` (its own)."""
    if type(x) is not np.ndarray:
        x = (x ^ (x >> _S30)) * _MIX2
        x = (x ^ (x >> _S27)) * _MIX3
        return x ^ (x >> _S31)
    t = np.right_shift(x, _S30)
    x ^= t
    x *= _MIX2
    np.right_shift(x, _S27, out=t)
    x ^= t
    x *= _MIX3
    np.right_shift(x, _S31, out=t)
    x ^= t
    return x


def canonical_float32(points: np.ndarray) -> np.ndarray:
    """Coordinates as float32 with -0.0 folded into +0.0: the precision every format can hold."""
    out = np.asarray(points, dtype=np.float32) + np.float32(0.0)
    return out


_P1 = np.uint64(0xD6E8FEB86659FD93)
_P2 = np.uint64(0xA0761D6478BD642F)
_P3 = np.uint64(0xE7037ED1A0B428DB)


def vertex_keys(points32: np.ndarray) -> np.ndarray:
    """A 64-bit content hash per float32 point (N, 3) -> (N,) uint64 (-0.0 must be folded)."""
    bits = np.ascontiguousarray(points32, dtype=np.float32).view(np.uint32).reshape(-1, 3)
    with np.errstate(over="ignore"):
        lin = bits[:, 0].astype(np.uint64) * _P1
        lin += bits[:, 1].astype(np.uint64) * _P2
        lin += (bits[:, 2].astype(np.uint64) << np.uint64(32) | bits[:, 0]) * _P3
    return _splitmix(lin)


def triangle_keys(corner_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two independent 64-bit keys per triangle from its (F, 3) corner keys.

    Built from sums of the corner keys and of their squares (wrapping), which do not depend
    on corner order or winding; hashing them once more spreads the bits.
    """
    c0, c1, c2 = corner_keys[:, 0], corner_keys[:, 1], corner_keys[:, 2]
    with np.errstate(over="ignore"):  # wrapping sums: any order gives the same bits, columns are fastest
        s1 = c0 + c1 + c2
        s2 = c0 * c0 + c1 * c1 + c2 * c2
    return _splitmix(s1 ^ (s2 >> np.uint64(1))), _splitmix(s2 + _P2)


def weld(points: np.ndarray, keys: np.ndarray | None = None, canonical: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Merge bit-identical float32 points. Returns (unique_points, inverse).

    Sorting is the cost, and numpy's SIMD ``sort`` is several times faster than ``argsort``:
    so the point index is packed into the low bits of the 64-bit content hash and the
    packed keys are sorted. Points are then checked against their representative; if two
    different points shared the truncated hash, the exact (slower) path is taken.
    ``canonical``: ``points`` are already :func:`canonical_float32` (a mesh's ``corners32``),
    so they are not copied again.
    """
    unique, inverse, _, _ = _weld(points, keys, canonical)
    return unique, inverse


def _weld(points: np.ndarray, keys: np.ndarray | None, canonical: bool
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:  # fmt: skip
    """:func:`weld`, and one point index per unique point (a first use of it: the first of
    its sorted run), or None when the exact path was taken; and the point indices in the
    order of their unique point (grouped, unique points in order), or None likewise."""
    p32 = points if canonical else canonical_float32(points)
    keys = vertex_keys(p32) if keys is None else keys
    n = len(keys)
    shift = np.uint64(max(1, (n - 1).bit_length()))
    packed = sort64(((keys >> shift) << shift) | np.arange(n, dtype=np.uint64))
    perm = (packed & ((np.uint64(1) << shift) - np.uint64(1))).astype(np.int64)
    unique, inverse, firsts = _group_sorted(p32, packed >> shift, perm)
    if not _rows_match(unique, inverse, p32):  # truncated-hash collision: full hash
        perm = np.argsort(keys)
        unique, inverse, firsts = _group_sorted(p32, keys[perm], perm)
        if not _rows_match(unique, inverse, p32):  # 64-bit collision: exact rows
            unique, inverse = np.unique(p32, axis=0, return_inverse=True)
            firsts = perm = None
    return unique, inverse.reshape(-1).astype(np.int64, copy=False), firsts, perm


_MATCH_ROWS = 1 << 16
"""Points per block of :func:`_rows_match`: a block's gathered rows stay in cache (the whole
gather was a 36 MB temporary for 1M triangles, page-faulted afresh on every scan)."""


def _rows_match(unique: np.ndarray, inverse: np.ndarray, p32: np.ndarray) -> bool:
    """``np.array_equal(unique[inverse], p32)``, block by block (the same answer: every block
    equal exactly when the whole is; NaN rows never match, as there)."""
    if len(inverse) != len(p32):
        return False
    for lo in range(0, len(p32), _MATCH_ROWS):
        # np.take: the same rows as unique[inverse], gathered several times faster than fancy indexing
        if not np.array_equal(np.take(unique, inverse[lo : lo + _MATCH_ROWS], axis=0), p32[lo : lo + _MATCH_ROWS]):
            return False
    return True


def _group_sorted(p32: np.ndarray, ordered: np.ndarray, perm: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    new = np.empty(len(ordered), dtype=bool)
    new[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
    inverse = np.empty(len(ordered), dtype=np.int64)
    inverse[perm] = np.cumsum(new) - 1
    firsts = perm[new]
    return np.take(p32, firsts, axis=0), inverse, firsts


def _two_threads(triangles: int) -> bool:
    """Whether a step of this many triangles' topology is shared with the helper thread
    (:mod:`scanner.parallel`: a large mesh, a core no other scan worker uses)."""
    return triangles >= parallel.MIN_TRIANGLES and parallel.enabled()


DEGENERATE_HEIGHT = 2e-6
"""A triangle whose height is below this share of its longest edge carries no surface: float32
coordinates hold about 7 digits, so a collinear sliver comes out of a file with a relative
height of about 1e-7; the thinnest real facets of CAD exports are orders of magnitude wider."""


_CHUNK = 1 << 18
_WALL_CHUNK = 1 << 15
"""Triangles per block of :func:`shared_walls`' float64 work: its (n, 3, 3) block and the dozen
(n,) temporaries of :func:`_plane_keys` then fit in a core's cache (measured 15% faster than
``_CHUNK`` on 1M triangles; every value is per triangle, so the block size changes none)."""
WALL_NORMAL_STEPS = 512
"""Quantisation of unit normals when looking for walls (about 0.1 degree)."""
WALL_OFFSET_STEPS = 8192
"""Quantisation of a plane's offset, in steps per half bounding-box diagonal."""


def shared_walls(corners32: np.ndarray, owner: np.ndarray | None = None) -> np.ndarray:
    """True for triangles on a plane where two different owners (bodies, archive members) both
    have surface facing opposite ways: the two faces of a cut, where a part was split into
    pieces that are then printed (or glued) together. Each piece's cap may be triangulated
    differently, so planes are compared, not triangles. A whole part never has such a plane
    between two of its own pieces, so dropping these walls gives back the surface before the
    cut (up to re-tessellation).

    Speed: per-triangle work is written out on coordinate columns (the same float64
    arithmetic as ``mean``, ``np.cross`` and ``np.linalg.norm``, which are slow on (N, 3)
    arrays), the planes are sorted once, and without ``owner`` (every triangle its own owner)
    the owners of a plane are counted instead of sorted."""
    n = len(corners32)
    keyed = _compiled_plane_keys(corners32)
    ok, sign, packed = keyed if keyed is not None else _numpy_plane_keys(corners32)
    order, ordered = sorted_order_u64(packed)
    ordered_ok = ordered[ok[order]]
    if not np.any(ordered_ok[1:] == ordered_ok[:-1]):  # no plane holds two triangles: no wall anywhere
        return np.zeros(n, dtype=bool)
    new = np.empty(n, dtype=bool)  # inverse_u64(packed), from the order already sorted
    new[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
    plane = np.empty(n, dtype=np.int64)
    plane[order] = np.cumsum(new) - 1
    facing = (sign > 0).astype(np.int64)
    n_plane = int(plane.max()) + 1 if len(plane) else 1
    if owner is None:  # each triangle its own owner: a wall is any plane faced both ways
        per_side = np.bincount((plane * 2 + facing)[ok], minlength=2 * n_plane).reshape(n_plane, 2)
        return ok & ((per_side[:, 0] > 0) & (per_side[:, 1] > 0))[plane]
    owner = np.asarray(owner, dtype=np.int64)
    n_owner = int(owner.max()) + 1 if len(owner) else 1
    # distinct (plane, facing, owner) triples, then per (plane, facing): how many owners, which
    triple = unique_sorted(((plane * 2 + facing) * n_owner + owner)[ok])
    side, who = triple // n_owner, triple % n_owner
    owners = np.bincount(side, minlength=2 * n_plane).reshape(n_plane, 2)
    first = np.full(2 * n_plane, -1, dtype=np.int64)
    first[side[::-1]] = who[::-1]  # the smallest owner on each side
    first = first.reshape(n_plane, 2)
    both = (owners[:, 0] > 0) & (owners[:, 1] > 0)
    one_body = (owners[:, 0] == 1) & (owners[:, 1] == 1) & (first[:, 0] == first[:, 1])
    wall = ok & (both & ~one_body)[plane]
    return wall


def _plane_frame(lo_c: np.ndarray, hi_c: np.ndarray) -> tuple[np.ndarray, float]:
    """The middle of the triangles' centres and half the diagonal of their box, which the
    plane offsets are measured from and in."""
    return (lo_c + hi_c) / 2.0, max(float(np.linalg.norm(hi_c - lo_c)) / 2.0, 1e-300)


def _compiled_plane_keys(corners32: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """:func:`_numpy_plane_keys` by the compiled kernels (:mod:`scanner.kernels`): the same
    float64 operations per triangle, so the same bits, without the dozen (F,) temporaries
    (measured on the bench's small files: 0.38-0.46 -> 0.13-0.15 ms a file, the whole wall test
    0.63-0.99 -> 0.36-0.54 ms). None when they are not built, the input is not float32 rows, or a value is one the
    kernel leaves to numpy (not finite, or beyond int64 once rounded)."""
    compiled, n = kernels.compiled, len(corners32)
    if compiled is None or not n or corners32.dtype != np.float32 or corners32.shape[1:] != (3, 3):
        return None
    corners = np.ascontiguousarray(corners32)
    lo_c, hi_c = np.empty(3), np.empty(3)
    if not compiled.wall_bounds(corners, lo_c, hi_c):
        return None
    mid, half = _plane_frame(lo_c, hi_c)
    ok, sign, packed = np.empty(n, dtype=bool), np.empty(n), np.empty(n, dtype=np.uint64)
    m0, m1, m2 = (float(x) for x in mid)
    if not compiled.wall_keys(corners, m0, m1, m2, half, float(WALL_NORMAL_STEPS), float(WALL_OFFSET_STEPS),
                              ok, sign, packed):  # fmt: skip
        return None
    return ok, sign, packed


def _numpy_plane_keys(corners32: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each triangle: has it a normal, the sign that orients its plane one way, and the
    64-bit key of its oriented plane (:func:`_plane_keys`), chunk by chunk."""
    n = len(corners32)
    lows, highs = [], []
    kept = None  # a surface of one chunk keeps its float64 rows and centres for the second pass
    for lo in range(0, n, _WALL_CHUNK):  # in chunks: float64 temporaries stay in cache
        rows = _rows64(corners32[lo : lo + _WALL_CHUNK])
        centre = _centres(rows)
        lows.append([centre[k].min() for k in range(3)])
        highs.append([centre[k].max() for k in range(3)])
        kept = (rows, centre) if n <= _WALL_CHUNK else None
    if n:  # the least and greatest centre (a minimum of minimums: the same numbers)
        lo_c, hi_c = np.min(np.array(lows), axis=0), np.max(np.array(highs), axis=0)
    else:
        lo_c, hi_c = np.zeros(3), np.zeros(3)
    mid, half = _plane_frame(lo_c, hi_c)
    ok = np.empty(n, dtype=bool)
    sign = np.empty(n)
    packed = np.empty(n, dtype=np.uint64)
    for lo in range(0, n, _WALL_CHUNK):  # the centres again, from cache (no (n, 3) array kept)
        part = slice(lo, lo + _WALL_CHUNK)
        t, centre = kept if kept is not None else (t := _rows64(corners32[part]), _centres(t))
        ok[part], sign[part], packed[part] = _plane_keys(t, centre, mid, half)
    return ok, sign, packed


def _rows64(corners32: np.ndarray) -> np.ndarray:
    """(3, 3, F) float64 copy of (F, 3, 3) float32 corners: corner, coordinate, triangle.
    Why: every per-triangle value below is arithmetic on one coordinate of one corner of
    every triangle; as contiguous rows it runs at full speed, where ``t[:, k, c]`` strides
    over nine values (the same per-element operations, so the same numbers)."""
    return np.ascontiguousarray(corners32.transpose(1, 2, 0), dtype=np.float64)


def _centres(t: np.ndarray) -> np.ndarray:
    """(3, F) centres of (3, 3, F) float64 triangles (:func:`_rows64`): ``mean(axis=1)`` of
    (F, 3, 3) corners, the same sums, several times faster."""
    return (t[0] + t[1] + t[2]) / 3.0


def _plane_keys(t: np.ndarray, centre: np.ndarray, mid: np.ndarray, half: float
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """For (3, 3, F) float64 triangles (:func:`_rows64`) and their (3, F) centres: which
    have a normal, the sign that orients their plane one way, and a 64-bit key of the
    oriented plane (quantised normal and offset)."""
    a0, a1, a2 = (t[1, k] - t[0, k] for k in range(3))
    b0, b1, b2 = (t[2, k] - t[0, k] for k in range(3))
    n0, n1, n2 = a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0  # np.cross, the same products
    length = np.sqrt(n0 * n0 + n1 * n1 + n2 * n2)  # np.linalg.norm's sum, left to right
    ok = length > 0
    for c in (n0, n1, n2):
        np.divide(c, length, out=c, where=ok)
    c0, c1, c2 = (centre[k] - mid[k] for k in range(3))
    offset = (c0 * n0 + c1 * n1 + c2 * n2) / half
    # one orientation per plane: the sign of the first clearly non-zero component (of the
    # first component when none is), as argmax over ``abs(normal) > 1e-6`` picks it
    # (one choice per triangle, first over second over third over the default, as the masked
    # assignments in that order gave it; no masked gathers)
    s0 = np.sign(n0)
    sign = np.where(np.abs(n0) > 1e-6, s0,
                    np.where(np.abs(n1) > 1e-6, np.sign(n1), np.where(np.abs(n2) > 1e-6, np.sign(n2), s0)))  # fmt: skip
    sign[sign == 0] = 1.0
    with np.errstate(over="ignore"):  # int64 -> uint64 as a view: the bits astype gives
        packed = _splitmix(np.round(n0 * sign * WALL_NORMAL_STEPS).astype(np.int64).view(np.uint64))
        packed = _splitmix(packed + np.round(n1 * sign * WALL_NORMAL_STEPS).astype(np.int64).view(np.uint64))
        packed = _splitmix(packed + np.round(n2 * sign * WALL_NORMAL_STEPS).astype(np.int64).view(np.uint64))
        packed = _splitmix(packed + np.round(offset * sign * WALL_OFFSET_STEPS).astype(np.int64).view(np.uint64))
    return ok, sign, packed


def _height_ratio(t: np.ndarray) -> np.ndarray:
    """Twice the area over the longest edge squared (the height as a share of that edge)."""
    e1, e2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    cross = np.empty_like(e1)  # np.cross written out: the same arithmetic without its overhead
    cross[:, 0] = e1[:, 1] * e2[:, 2] - e1[:, 2] * e2[:, 1]
    cross[:, 1] = e1[:, 2] * e2[:, 0] - e1[:, 0] * e2[:, 2]
    cross[:, 2] = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    e3 = e2 - e1
    longest_sq = np.maximum(np.maximum(np.einsum("ij,ij->i", e1, e1), np.einsum("ij,ij->i", e2, e2)),
                            np.einsum("ij,ij->i", e3, e3))  # fmt: skip
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.sqrt(np.einsum("ij,ij->i", cross, cross)) / longest_sq
    return np.nan_to_num(ratio, nan=0.0, posinf=0.0)


def _rough_height_ratio(t: np.ndarray) -> np.ndarray:
    """:func:`_height_ratio` of float32 (F, 3, 3) triangles on coordinate columns (a third
    faster than on (F, 3) rows). Only the surface's first pass reads it, to choose which
    triangles get the exact float64 test: a triangle near that pass's cut (1e-3) is kept
    whichever side rounding puts it, so its rounding cannot change the surface; NaN and
    infinite ratios are 0 (tested exactly), as there."""
    x0, y0, z0 = t[:, 0, 0], t[:, 0, 1], t[:, 0, 2]
    ax, ay, az = t[:, 1, 0] - x0, t[:, 1, 1] - y0, t[:, 1, 2] - z0
    bx, by, bz = t[:, 2, 0] - x0, t[:, 2, 1] - y0, t[:, 2, 2] - z0
    cx, cy, cz = ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx
    dx, dy, dz = bx - ax, by - ay, bz - az
    longest_sq = np.maximum(np.maximum(ax * ax + ay * ay + az * az, bx * bx + by * by + bz * bz),
                            dx * dx + dy * dy + dz * dz)  # fmt: skip
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.sqrt(cx * cx + cy * cy + cz * cz) / longest_sq
    # NaN and +inf to 0 in place (the ratio is never negative): ``np.nan_to_num(ratio, nan=0.0,
    # posinf=0.0)``'s values without its several passes (50 of this function's ~110 us)
    np.copyto(ratio, np.float32(0.0), where=~(ratio < np.inf))
    return ratio


def two_face_edges(key: np.ndarray, position: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Of sorted edge keys and their places (:attr:`Mesh.sorted_edges`): the two places of
    every edge shared by exactly two faces (the first and second of its run of two), and
    whether every edge is one (a closed surface: runs of exactly two cover all the edges)."""
    n = len(key)
    if n < 2:
        return position[:0], position[:0], n == 0
    same = key[1:] == key[:-1]  # sorted edge i equals edge i + 1
    pair = same.copy()
    pair[1:] &= ~same[:-1]  # not the second of a run
    pair[:-1] &= ~same[1:]  # the run is exactly two long
    first = np.flatnonzero(pair)
    return position[first], position[first + 1], 2 * len(first) == n


def _without_sorted(ordered: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """``ordered`` (sorted) less one occurrence per element of ``removed`` (sorted, a
    sub-multiset of it): ``np.sort`` of what is left, without sorting it again. The r-th of a
    run of equal removed values takes the r-th equal value of ``ordered``."""
    if not len(removed):
        return ordered
    first = np.empty(len(removed), dtype=bool)
    first[:1] = True
    np.not_equal(removed[1:], removed[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    rank = np.arange(len(removed)) - np.repeat(starts, np.diff(np.append(starts, len(removed))))
    keep = np.ones(len(ordered), dtype=bool)
    keep[np.searchsorted(ordered, removed, side="left") + rank] = False
    return ordered[keep]


_GRAPH_CORNERS = 1 << 18
"""Welds of at most this many corners keep their corners' order by vertex (8 bytes a corner)
for :func:`_small_face_vertex_components`."""


def _small_face_vertex_components(faces: np.ndarray, by_vertex: np.ndarray) -> tuple[int, np.ndarray] | None:
    """:func:`_face_vertex_components` of a small mesh without scipy's sparse-matrix layer, or
    None where scipy's traversal is not the one known here (then the public function is used).

    Why: for a small file's ~7k nodes, building the ``csr_matrix``, validating it and making its
    transpose (which ``connected_components`` does for an undirected graph) cost ~0.12 ms, the
    traversal itself ~0.04 ms. Here the graph's two CSR halves are made directly: faces to
    their vertices (vertices numbered as welded, in key order), and vertices to their faces,
    from the weld's corners grouped by vertex (``by_vertex``, the order its sort left them
    in: no sort of our own). The same graph as the public route's, numbered otherwise, so the
    same components; labels are renumbered by first face afterwards (or all 0 for one body),
    so their numbering here does not matter."""
    try:
        from scipy.sparse.csgraph._traversal import _connected_components_undirected
    except ImportError:
        return None
    n_faces = len(faces)
    flat = faces.reshape(-1)
    nv = int(flat.max()) + 1 if n_faces else 0
    nodes = n_faces + nv
    out_ptr = np.full(nodes + 1, 3 * n_faces, dtype=np.int32)
    out_ptr[: n_faces + 1] = np.arange(0, 3 * n_faces + 1, 3, dtype=np.int32)
    out_idx = flat.astype(np.int32)
    out_idx += np.int32(n_faces)
    in_ptr = np.zeros(nodes + 1, dtype=np.int32)
    np.cumsum(np.bincount(flat, minlength=nv), out=in_ptr[n_faces + 1 :])
    in_idx = (by_vertex // 3).astype(np.int32)
    labels = np.full(nodes, -1, dtype=np.int32)
    try:
        n = _connected_components_undirected(out_idx, out_ptr, in_idx, in_ptr, labels)
    except (TypeError, ValueError):
        return None
    return int(n), labels[:n_faces]


def _face_vertex_components(faces: np.ndarray, firsts: np.ndarray, by_vertex: np.ndarray | None = None
                            ) -> tuple[int, np.ndarray]:  # fmt: skip
    """Connected components of ``faces`` (F, 3) of welded corners, as (count, one label per
    face): the graph whose nodes are the faces and the vertices, each face joined to its
    three. ``firsts``: a corner index (row-major into ``faces``) of each vertex.

    Why this graph: scipy's traversal is bound by cache misses, and welded vertex ids are in
    hash order, so walking the vertex graph in them jumps all over memory (1M triangles: 0.14
    s). Here the vertices are numbered by first use in face order instead (a cumulative count,
    no sort), so neighbours in the mesh are mostly neighbours in memory, and the faces' rows
    of the graph are just their corners, in order (0.08 s with the graph built).
    ``by_vertex`` (a small mesh's corners grouped by vertex, from the weld): the graph goes
    straight to scipy's traversal (:func:`_small_face_vertex_components`)."""
    if by_vertex is not None:
        small = _small_face_vertex_components(faces, by_vertex)
        if small is not None:
            return small
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    n_faces, nv = len(faces), len(firsts)
    used_first = np.zeros(3 * n_faces, dtype=bool)
    used_first[firsts] = True
    node = np.take(np.cumsum(used_first, dtype=np.int32), firsts)  # 1 + rank of each vertex by first use
    node += np.int32(n_faces - 1)
    indptr = np.full(n_faces + nv + 1, 3 * n_faces, dtype=np.int32)
    indptr[: n_faces + 1] = np.arange(0, 3 * n_faces + 1, 3, dtype=np.int32)
    # float64 weights: the dtype connected_components works in (no conversion, no copy)
    graph = csr_matrix(
        (np.ones(3 * n_faces), np.take(node, faces.reshape(-1)), indptr), shape=(n_faces + nv, n_faces + nv)
    )
    n, labels = connected_components(graph, directed=False)
    return n, labels[:n_faces]


def _edge_components(key: np.ndarray, base: int, nv: int) -> tuple[int, np.ndarray]:
    """Connected components of the vertex graph of sorted edge keys (:attr:`Mesh.sorted_edges`),
    as (count, one label per vertex). The graph goes to scipy as CSR straight from the sorted
    keys (rows are the smaller ends, already in order), each edge once."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    distinct = np.empty(len(key), dtype=bool)
    distinct[:1] = True
    np.not_equal(key[1:], key[:-1], out=distinct[1:])
    low, high = np.divmod(key[distinct], base)
    index = np.int32 if max(nv, len(low)) < 2**31 - 1 else np.int64
    indptr = np.zeros(nv + 1, dtype=index)
    np.cumsum(np.bincount(low, minlength=nv), out=indptr[1:])
    graph = csr_matrix((np.ones(len(low)), high.astype(index), indptr), shape=(nv, nv))
    return connected_components(graph, directed=False)


@dataclass(eq=False)
class Mesh:
    """Triangles of one file or archive member, with where they came from.

    ``groups`` (optional, one int per face) keeps the objects the file itself declares
    (OBJ ``o``/``g``, ASCII STL ``solid`` blocks, 3MF objects) for reports only. Bodies come
    from the welded geometry's connectivity and ignore groups: a slicer prints triangles, not
    names, so an uploader who declares one group per triangle must not be able to hide a part
    in groups too small to describe.
    """

    vertices: np.ndarray
    faces: np.ndarray | None = None
    source: str = ""
    member: str | None = None
    format: str = ""
    groups: np.ndarray | None = None
    group_names: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ basic geometry
    @property
    def triangle_count(self) -> int:
        return len(self.vertices) // 3 if self.faces is None else len(self.faces)

    @property
    def triangles(self) -> np.ndarray:
        """(F, 3, 3) corner coordinates."""
        if self.faces is None:
            return self.vertices.reshape(-1, 3, 3)
        return self.vertices[self.faces]

    @cached_property
    def corners32(self) -> np.ndarray:
        """(F, 3, 3) corner coordinates as canonical float32 (-0.0 folded to 0.0).

        Indexed meshes convert their vertices first and gather after: the same numbers
        without a float64 (F, 3, 3) temporary."""
        if self.faces is None:
            return canonical_float32(self.triangles)
        return np.take(canonical_float32(self.vertices), self.faces, axis=0)

    @cached_property
    def corner_keys(self) -> np.ndarray:
        """(F, 3) 64-bit content hash of each corner; equal points, equal keys (hashed once
        per vertex of an indexed mesh)."""
        if self.faces is None:
            points = self.corners32.reshape(-1, 3)
            if not _two_threads(self.triangle_count):
                return vertex_keys(points).reshape(-1, 3)
            keys = np.empty(len(points), dtype=np.uint64)  # written in place: no halves concatenated

            def half(part: slice) -> None:  # each point's key is its own: two halves, the same keys
                keys[part] = vertex_keys(points[part])

            mid = len(points) // 2
            parallel.shared_map(half, [slice(0, mid), slice(mid, None)])
            return keys.reshape(-1, 3)
        return vertex_keys(canonical_float32(self.vertices))[self.faces]

    @cached_property
    def triangle_keys(self) -> tuple[np.ndarray, np.ndarray]:
        """Two 64-bit content keys per triangle, independent of corner order and winding."""
        return triangle_keys(self.corner_keys)

    @cached_property
    def surface_mask(self) -> np.ndarray:
        """True for the triangles that carry surface: not degenerate, not a repeat.

        Why: an uploader can pad a part with triangles a printer never sees - zero-area or
        collinear slivers (whose float32 area can come out as real weight), or every
        triangle twice (also with the winding flipped) - to move its descriptor. Areas are
        judged in float64 from the float32 corners, relative to the longest edge, so the test
        does not depend on the model's size; repeats are found by the winding- and
        corner-order-independent triangle keys."""
        n = self.triangle_count
        if n == 0:
            return np.zeros(0, dtype=bool)
        keep = np.ones(n, dtype=bool)
        for lo in range(0, n, _CHUNK):  # in chunks: the temporaries stay a few MB whatever the size
            tri = self.corners32[lo : lo + _CHUNK]
            thin = np.flatnonzero(_rough_height_ratio(tri) < 1e-3)  # float32: a cheap first pass
            if len(thin):
                keep[lo + thin] = _height_ratio(tri[thin].astype(np.float64)) > DEGENERATE_HEIGHT
        k1, k2 = self.triangle_keys
        ordered = self._sorted_triangle_keys[0]
        if np.any(ordered[1:] == ordered[:-1]):
            order = np.lexsort((k2, k1))
            a, b = k1[order], k2[order]
            repeat = np.zeros(n, dtype=bool)
            repeat[order[1:]] = (a[1:] == a[:-1]) & (b[1:] == b[:-1])
            keep &= ~repeat
        return keep

    def surface(self) -> Mesh:
        """The mesh without degenerate and repeated triangles (itself when it has none): the
        surface that descriptors read and that bodies are found in."""
        out = self._cleaned
        return self if out is None else out

    @cached_property
    def _cleaned(self) -> Mesh | None:
        """The surface as a new mesh, or None when nothing is dropped. Why None and not
        ``self``: a mesh holding itself in its own ``__dict__`` is a reference cycle, which
        only the cyclic collector frees - and a scan allocates too few Python objects for it
        to run often, so every clean file's arrays (about 100 MB at 500k triangles) stayed
        alive after its scan: a worker grew by that much a file, and faulted the next file's
        arrays into new memory instead of reusing the last one's."""
        keep = self.surface_mask
        if keep.all():
            return None
        out = Mesh(
            vertices=np.compress(keep, self.corners32, axis=0).reshape(-1, 3),
            faces=None,
            source=self.source,
            member=self.member,
            format=self.format,
        )
        out.__dict__["corner_keys"] = np.compress(keep, self.corner_keys, axis=0)
        out.__dict__["surface_mask"] = np.ones(out.triangle_count, dtype=bool)  # clean by construction
        # the surface's triangle keys are the kept ones, and its sorted keys this mesh's sorted
        # keys less the dropped ones (a merge, not another two sorts of every triangle)
        k1, k2 = self.triangle_keys
        out.__dict__["triangle_keys"] = (np.compress(keep, k1), np.compress(keep, k2))
        drop = ~keep
        out.__dict__["_sorted_triangle_keys"] = tuple(
            _without_sorted(ordered, sort64(k[drop]))
            for ordered, k in zip(self._sorted_triangle_keys, (k1, k2), strict=True)
        )
        return out

    @cached_property
    def _welded(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(unique float32 vertices, (F, 3) face indices into them, and for welded corners
        one corner index per vertex (a use of it; None for an indexed mesh))."""
        if self.faces is not None:  # weld the vertex array (smaller than the corners), then index it
            unique, inverse = weld(self.vertices)
            faces = inverse[self.faces]
            used = np.zeros(len(unique), dtype=bool)
            used[faces.ravel()] = True
            if not used.all():  # drop vertices no face uses, as welding the corners would
                remap = np.cumsum(used) - 1
                unique, faces = unique[used], remap[faces]
            return unique, faces, None
        unique, inverse, firsts, by_vertex = _weld(self.corners32.reshape(-1, 3), self.corner_keys.reshape(-1), True)
        if by_vertex is not None and len(by_vertex) <= _GRAPH_CORNERS:  # for the bodies' graph (small meshes)
            self.__dict__["_corners_by_vertex"] = by_vertex
        return unique, inverse.reshape(-1, 3), firsts

    @property
    def welded_vertices(self) -> np.ndarray:
        return self._welded[0]

    @property
    def welded_faces(self) -> np.ndarray:
        return self._welded[1]

    @cached_property
    def sorted_edges(self) -> tuple[np.ndarray, np.ndarray, int]:
        """Every face edge of the welded mesh, sorted: ``(key, position, base)``.

        The edges are taken face by face as ends 0-1, then 1-2, then 2-0 (edge ``k`` of that
        concatenation belongs to face ``k mod F``); an edge's key is ``low * base + high`` for
        its smaller and larger welded end, so sorted keys order edges by (smaller, larger end);
        ``position`` is each sorted edge's place in the concatenation, ties in place order
        (``np.argsort(key, kind="stable")``). Bodies and the classifier's edge statistics both
        read it: one sort, with the position packed into the low bits of the key (a value sort
        is several times faster than ``argsort``, and hands back the sorted keys too)."""
        faces = self.welded_faces
        ids = np.int32 if len(self.welded_vertices) < 2**31 - 1 else np.int64  # half the bytes to move
        start = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2]], dtype=ids)
        end = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0]], dtype=ids)
        # each edge's two ends, smaller first (min/max: ten times faster than sorting 2-wide rows)
        low = np.minimum(start, end).astype(np.int64)
        high = np.maximum(start, end)
        base = int(high.max(initial=0)) + 1
        key = low * base + high
        n = len(key)
        shift = max(1, (n - 1).bit_length())
        if n < 2 or int(key.max()).bit_length() + shift > 63:
            order = np.argsort(key, kind="stable")
            return key[order], order, base
        packed = sort64((key << np.int64(shift)) | np.arange(n, dtype=np.int64))
        return packed >> np.int64(shift), packed & np.int64((1 << shift) - 1), base

    @cached_property
    def two_face_edges(self) -> tuple[np.ndarray, np.ndarray, bool]:
        """The welded edges shared by exactly two faces (:func:`two_face_edges` of
        :attr:`sorted_edges`): what the patch codes' neighbours and the classifier's edge
        statistics both read, found once."""
        key, position, _ = self.sorted_edges
        return two_face_edges(key, position)

    @cached_property
    def _body_labels(self) -> tuple[int, np.ndarray]:
        """Connected components of faces sharing a welded vertex (declared groups are ignored),
        numbered in order of their first face (so labels do not depend on vertex numbering).

        Welded corners (:attr:`_welded` knows a corner of each vertex) go to scipy as the graph
        of faces and their corners' vertices (:func:`_face_vertex_components`: no edge sort,
        no division); an indexed mesh as the graph of its edges (:func:`_edge_components`)."""
        faces = self.welded_faces
        n_faces = len(faces)
        if n_faces == 0:
            return 0, np.zeros(0, dtype=np.int64)
        firsts = self._welded[2]
        if firsts is not None and 3 * n_faces + len(firsts) < 2**31 - 1:
            n, flabels = _face_vertex_components(faces, firsts, self.__dict__.get("_corners_by_vertex"))
        else:
            key, _, base = self.sorted_edges
            n, vlabels = _edge_components(key, base, len(self.welded_vertices))
            flabels = vlabels[faces[:, 0]] if n > 1 else None
        if n == 1:
            return 1, np.zeros(n_faces, dtype=np.int64)
        # renumber bodies by first face (every component has a face: the vertices were welded
        # from the faces' corners)
        first = np.full(n, n_faces, dtype=np.int64)
        np.minimum.at(first, flabels, np.arange(n_faces, dtype=np.int64))
        order = np.argsort(first)
        remap = np.empty(n, dtype=np.int64)
        remap[order] = np.arange(n)
        return n, remap[flabels]

    @property
    def body_count(self) -> int:
        return self._body_labels[0]

    def body_labels(self) -> np.ndarray:
        """One body number per face, bodies numbered in order of their first face."""
        return self._body_labels[1]

    def bodies(self) -> list[Mesh]:
        """Each connected component of the welded geometry as its own Mesh."""
        n, labels = self._body_labels
        if n <= 1:
            return [self] if self.triangle_count else []
        order = np.argsort(labels, kind="stable")
        splits = np.cumsum(np.bincount(labels, minlength=n))[:-1]
        tris = self.triangles
        out = []
        for index, face_ids in enumerate(np.split(order, splits)):
            out.append(
                Mesh(
                    vertices=np.take(tris, face_ids, axis=0).reshape(-1, 3),
                    faces=None,
                    source=self.source,
                    member=self.member,
                    format=self.format,
                    group_names=[f"body {index}"],
                )
            )
        return out

    # ------------------------------------------------------------------ measurements
    @cached_property
    def _edge_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """(unique directed-free edges as (E, 2), how many faces use each)."""
        f = self.welded_faces
        edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
        nv = max(len(self.welded_vertices), 1)
        keys = edges[:, 0].astype(np.int64) * nv + edges[:, 1]
        uniq, counts = np.unique(keys, return_counts=True)
        return uniq, counts

    @property
    def edge_count(self) -> int:
        return len(self._edge_counts[0])

    @property
    def euler_number(self) -> int:
        """V - E + F on the welded mesh (2 for a closed sphere-like surface per body)."""
        used = unique_sorted(self.welded_faces)
        return int(len(used) - self.edge_count + self.triangle_count)

    @property
    def is_watertight(self) -> bool:
        """Every edge shared by exactly two faces, with opposite directions (consistent winding)."""
        if self.triangle_count == 0:
            return False
        _, counts = self._edge_counts
        if not np.all(counts == 2):
            return False
        f = self.welded_faces
        directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]).astype(np.int64)
        nv = max(len(self.welded_vertices), 1)
        keys = directed[:, 0] * nv + directed[:, 1]
        return len(unique_sorted(keys)) == len(keys)

    @property
    def area(self) -> float:
        t = self.triangles.astype(np.float64, copy=False)
        cross = np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])
        return float(0.5 * np.sqrt((cross**2).sum(axis=1)).sum())

    @property
    def volume(self) -> float:
        """Signed volume by the divergence theorem; meaningful only when watertight."""
        t = self.triangles.astype(np.float64, copy=False)
        return float(np.einsum("ij,ij->i", t[:, 0], np.cross(t[:, 1], t[:, 2])).sum() / 6.0)

    @property
    def bounds(self) -> np.ndarray:
        if self.triangle_count == 0:
            return np.zeros((2, 3))
        v = self.triangles.reshape(-1, 3)
        return np.stack([v.min(axis=0), v.max(axis=0)]).astype(np.float64)

    @property
    def extents(self) -> np.ndarray:
        b = self.bounds
        return b[1] - b[0]

    # ------------------------------------------------------------------ identity
    @cached_property
    def geometry_hash(self) -> str:
        """sha256 over the sorted 128-bit content keys of the triangles.

        The same multiset of triangles gives the same hash, independent of file format,
        vertex indexing/sharing, triangle order, corner order and winding. Coordinates are
        compared as float32 (the precision of STL, the poorest format), with -0.0 == 0.0.
        """
        k1, k2 = self._sorted_triangle_keys
        return sha256_chunks([b"meshscan-geometry-v2", k1.astype("<u8").tobytes(), k2.astype("<u8").tobytes()])

    @cached_property
    def _sorted_triangle_keys(self) -> tuple[np.ndarray, np.ndarray]:
        """Both triangle keys sorted: the surface's repeat test and the geometry hash share them."""
        k1, k2 = self.triangle_keys
        if _two_threads(len(k1)):  # a large mesh where a core is idle: one sort on each
            return parallel.both(lambda: sort64(k1), lambda: sort64(k2))
        return sort64(k1), sort64(k2)

    def summary(self) -> dict:
        """The numbers `meshscan inspect` prints for a mesh or a body."""
        return {
            "triangles": int(self.triangle_count),
            "vertices": int(len(self.welded_vertices)),
            "extents": [round(float(x), 6) for x in self.extents],
            "area": float(self.area),
            "volume": float(self.volume),
            "watertight": bool(self.is_watertight),
            "euler_number": int(self.euler_number),
            "geometry_hash": self.geometry_hash,
        }
