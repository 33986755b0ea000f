"""A deterministic, normalised view of a surface that every descriptor family reads.

Why this is careful: random sampling noise is the first enemy of near-duplicate recall.

1. Sampling is seeded by intrinsic shape, not by position in the file or in space: each
   triangle draws its sample count and barycentric coordinates from a hash of its edge
   lengths and corner distances to the centroid (:func:`intrinsic_keys`), and the points are
   then ordered by their own hash. The same surface therefore gives the same points - up to
   the motion itself - whatever the triangle order, corner order, winding, file format,
   pose, mirror image or scale.
2. Counts are stratified: a triangle with expected count ``e`` gets ``floor(e)`` or
   ``floor(e) + 1`` points, which has far lower variance than independent draws.
3. The frame (centroid, scale, principal axes) comes from exact surface moments of the
   triangles, not from the samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scanner import kernels
from scanner.arrays import sort64, stable_argsort_u64
from scanner.mesh import _splitmix, vertex_keys

N_POINTS = 8192
"""Points per surface (whole file or body), whatever its triangle count."""
SEED = np.uint64(20211)
_TO_UNIT = 1.0 / float(1 << 53)
_PLASTIC = 1.324717957244746  # real root of x^3 = x + 1; R2 sequence steps are its inverse powers
_R2 = (1.0 / _PLASTIC, 1.0 / _PLASTIC**2)
_SHIFT1, _SHIFT2 = np.uint64(0xA0761D6478BD642F), np.uint64(0xE7037ED1A0B428DB)


def _unit(keys: np.ndarray) -> np.ndarray:
    """Uniform floats in [0, 1) from 64-bit keys."""
    return (keys >> np.uint64(11)).astype(np.float64) * _TO_UNIT


@dataclass(frozen=True, eq=False)
class SurfaceSample:
    """A surface centred on its area centroid and scaled to unit RMS radius."""

    coords: np.ndarray
    """(3, N) float32 coordinates (x row, y row, z row) of points spread uniformly by area, in
    the normalised frame, in canonical order. Rows, because every family works per axis."""
    axes: np.ndarray
    """(3, 3) principal axes as rows, major first."""
    eigenvalues: np.ndarray
    """Second-moment eigenvalues (sum 1), descending."""
    area: float
    """Surface area in the normalised frame (area / RMS radius squared)."""
    triangles: int
    shared: dict = field(default_factory=dict, compare=False, repr=False)
    """Intermediate results that several families read (computed once per sample)."""

    @property
    def points(self) -> np.ndarray:
        """The points as an (N, 3) view."""
        return self.coords.T

    def weighted(self) -> tuple[np.ndarray, np.ndarray]:
        """The points re-centred on their :func:`density_weights`-weighted mean and scaled to
        unit weighted RMS radius, as (3, N) float32 in C order, with the weights (float64,
        mean 1): what every family reads."""
        out = self.shared.get("weighted")
        if out is None:
            pts = self.coords.astype(np.float64)
            w = density_weights(pts)
            total = float(w.sum())
            rel = pts - ((pts @ w) / total)[:, None]
            radius = float(np.sqrt(((rel * rel) @ w).sum() / total))
            coords = np.ascontiguousarray(rel / max(radius, 1e-300), dtype=np.float32)
            out = self.shared["weighted"] = (coords, w)
        return out


DENSITY_CELL = 0.08
"""Grid step of :func:`density_weights`, in RMS radii. Points are spread onto the grid and read
back with linear (cloud-in-cell) weights and the grid is blurred once by [1, 2, 1] / 4 along
each axis: a smooth kernel of about one step's width (sigma ~0.07 radius), far above the noise
an uploader can add without visibly changing the part (1% of the diagonal is ~0.02 radius) and
below a tube's wall-to-wall width. Measured on a demo barrel proxy densified, with 0.5% noise: a
Gaussian kernel of sigma 0.15 left it 0.14 from its clean self, this one 0.03."""
DENSITY_REACH = 3.0
"""The density grid spans +-3 RMS radii (at most 80^3 cells); the rare points further out (a
far-flung speck: a share s of the area can sit 1/sqrt(s) radii away) are counted at its
border, so no file can make the grid large."""


def density_weights(pts: np.ndarray, cell: float = DENSITY_CELL) -> np.ndarray:
    """A weight per sample point, inversely proportional to how many points lie around it
    (a kernel density of the points at the scale of ``cell``), mean weight 1.

    Why (issue 11, re-tessellation): points are spread by triangle area, and vertex noise on a
    finely tessellated surface inflates area - most where triangles are small or thin (0.5%
    noise on a densified proxy adds 50-450% to its area, nearly all of it on slivers), so the
    sample piles up on some regions and every distribution moves (median 0.08 from its
    signature, against thresholds of 0.02-0.05). Measured: with the clean mesh's areas the
    noisy copy lands where the clean one does (0.016). Weighing each point by the inverse of
    its local density at a scale far above the noise turns the measure into "area of the
    surface seen at that scale", which noise does not inflate.

    O(N) plus one pass over a small grid. The grid follows the file's axes, so the kernel is a
    product of one-dimensional B-spline-like kernels: close to isotropic (a rotated copy
    lands at median 0.006 from its signature, as before), not exactly.

    With the compiled kernels (:mod:`scanner.kernels`) the scatter, blur and gather run in C,
    the same operations in the same order (measured 0.36-0.38 -> 0.24 ms a call on the small
    set); the mean stays numpy's pairwise sum. The numpy code below is the reference."""
    compiled = kernels.compiled
    if compiled is not None and isinstance(pts, np.ndarray) and pts.dtype in (np.float32, np.float64):
        if pts.ndim == 2 and len(pts) == 3 and pts.shape[1] > 0:
            flat = np.ascontiguousarray(pts, dtype=np.float64)  # float32 -> float64 is exact, as the clip's cast
            w = np.empty(flat.shape[1])
            if compiled.density(flat, flat.shape[1], 1.0 / cell, DENSITY_REACH, w):  # False: NaN, left to numpy
                return w * (len(w) / w.sum())
    q = np.clip(pts, -DENSITY_REACH, DENSITY_REACH, dtype=np.float64)  # a new float64 array, scaled in place
    q *= 1.0 / cell
    base = np.floor(q)
    frac = q - base
    cells = base.astype(np.int64)
    cells -= cells.min(axis=1, keepdims=True) - 2  # two empty cells each side: the blur stays inside
    dims = cells.max(axis=1) + 4
    steps = (dims[1] * dims[2], dims[2], 1)
    flat = cells[0] * steps[0] + cells[1] * steps[1] + cells[2]
    corners = [dx * steps[0] + dy * steps[1] + dz for dx in (0, 1) for dy in (0, 1) for dz in (0, 1)]
    ids = flat[None, :] + np.asarray(corners, dtype=np.int64)[:, None]  # (8, N): the 8 cells around each point
    xyz = np.empty((3, 2, frac.shape[1]))  # (axis, 2, N) linear weights per axis: 1 - f, f
    np.subtract(1.0, frac, out=xyz[:, 0])
    xyz[:, 1] = frac
    x, y, z = xyz
    share = ((x[:, None, :] * y[None, :, :])[:, :, None, :] * z[None, None, :, :]).reshape(8, -1)
    grid = np.bincount(ids.reshape(-1), weights=share.reshape(-1), minlength=int(dims.prod()))
    grid = _blur_flat(grid, steps)
    density = (grid.take(ids) * share).sum(axis=0)
    w = 1.0 / np.maximum(density, 1e-12)
    return w * (len(w) / w.sum())


def _blur_flat(grid: np.ndarray, steps: tuple[int, int, int]) -> np.ndarray:
    """[1, 2, 1] along each axis of the density grid (axis 0, then 1, then 2), on the flat
    (C-order) grid: a neighbour along an axis is ``steps[axis]`` cells away.

    Why flat: each pass is then three operations on one contiguous array, where the same pass
    on a 3-D view strides along its axis (measured: the blur was a fifth of the weights'
    time). Why the same numbers: every cell still gets ``(g + g) + left + right`` in that order;
    a flat shift also pairs a cell on a face of the grid with the cell on the opposite face one
    row over, but both faces of every axis hold zeros when that axis is blurred (the points
    sit two cells inside each face, and the earlier passes spread along other axes only), and
    ``x + 0.0`` is ``x`` for the non-negative sums here. The flat ends have no neighbour, as
    the axis's ends had none."""
    for step in steps:
        out = grid + grid
        out[step:] += grid[:-step]
        out[:-step] += grid[step:]
        grid = out
    return grid


def triangle_areas(tri: np.ndarray) -> np.ndarray:
    """Areas of (F, 3, 3) triangles from their sorted edge lengths (Kahan's stable Heron).

    Why not the cross product: its rounding depends on which corner comes first, and an area
    that differs in the last bit can change a triangle's stratified point count. Edge lengths
    are the same numbers whatever the corner order or winding, so the areas are too.

    Speed: block by block (:data:`_AREA_ROWS`), each block copied to (corner, coordinate,
    triangle) order so that every operand is a contiguous row, where ``tri[:, k][:, c]``
    strides over nine values: the same per-element arithmetic, measured 3x faster in float32
    and 1.5x in float64 on blocks of 65k triangles, with temporaries that stay in cache."""
    tri = np.asarray(tri).reshape(-1, 3, 3)
    if len(tri) <= _AREA_ROWS:
        return _block_areas(tri)
    out = None
    for lo in range(0, len(tri), _AREA_ROWS):
        part = _block_areas(tri[lo : lo + _AREA_ROWS])
        if out is None:
            out = np.empty(len(tri), dtype=part.dtype)
        out[lo : lo + _AREA_ROWS] = part
    return out


_AREA_ROWS = 1 << 16
"""Triangles per block of :func:`triangle_areas` (every area is its triangle's alone)."""


def _block_areas(tri: np.ndarray) -> np.ndarray:
    return _row_areas(np.ascontiguousarray(tri.transpose(1, 2, 0)))


def _corner_rows(tri: np.ndarray, offset: np.ndarray | None) -> np.ndarray:
    """(3, 3, F) copy of (F, 3, 3) ``tri`` less ``offset`` (corner, coordinate, triangle):
    ``np.ascontiguousarray((tri - offset).transpose(1, 2, 0))`` in one pass, the same float32
    differences."""
    t = np.empty((3, 3, len(tri)), dtype=tri.dtype if offset is None else np.result_type(tri, offset))
    if offset is None:
        t[...] = tri.transpose(1, 2, 0)
    else:
        np.subtract(tri.transpose(1, 2, 0), offset[None, :, None], out=t)
    return t


def _row_areas(t: np.ndarray) -> np.ndarray:
    """:func:`_block_areas` of triangles given as (3, 3, F) rows (:func:`_corner_rows`)."""
    e = [t[(k + 1) % 3] - t[k] for k in range(3)]
    la, lb, lc = (np.sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]) for d in e)
    hi = np.maximum(np.maximum(la, lb), lc)
    lo = np.minimum(np.minimum(la, lb), lc)
    mid = np.maximum(np.minimum(la, lb), np.minimum(np.maximum(la, lb), lc))
    prod = (hi + (mid + lo)) * (lo - (hi - mid)) * (lo + (hi - mid)) * (hi + (mid - lo))
    return 0.25 * np.sqrt(np.clip(prod, 0, None))


def surface_moments(
    tri: np.ndarray, areas: np.ndarray, offset: np.ndarray | None = None
) -> tuple[np.ndarray, float, np.ndarray]:
    """Exact area-weighted centroid, total area, second-moment matrix about the centroid.

    Uses E[x x^T] over a triangle = (aa' + bb' + cc' + ss') / 12 with s = a + b + c, from the
    weighted sums of the nine corner coordinates and of their 45 distinct products
    (:func:`_weighted_sums`). ``tri`` should already be roughly centred; ``offset`` (float32,
    for float32 ``tri``) is subtracted from every corner first, as from the whole (the sampler
    keeps no centred copy).

    Why sums of our own, in input order, and not one BLAS Gram product as before: BLAS sums a
    product in whatever order its kernels for the CPU choose, so the same file's moments
    differed between machines in their last bits - and where two moments are nearly equal (a
    round part) the principal axes turn freely with those bits (a barrel proxy's solidity was
    0.70588 on one machine and 0.70665 on another). Summed triangle after triangle, the
    moments are the same bits on every machine, with the kernels or without, in blocks or
    whole. Accumulated in float64: the order moves the result by ~1e-16 relative, far below
    the float32 the points are computed in.
    """
    total = float(areas.sum(dtype=np.float64))
    if not total > 0:
        raise ValueError("surface has no area")
    w = np.ascontiguousarray(areas, dtype=np.float64) / total
    sums = _weighted_sums(tri, w, offset)
    gram = np.empty((9, 9))
    gram[_UPPER] = sums[9:]
    gram[_UPPER[::-1]] = sums[9:]  # symmetric by construction
    gram = gram.reshape(3, 3, 3, 3)  # [ci, i, cj, j]
    centroid = sums[:9].reshape(3, 3).sum(axis=0) / 3.0
    corners = sum(gram[c, :, c, :] for c in range(3))
    second = (corners + gram.sum(axis=(0, 2))) / 12.0 - np.outer(centroid, centroid)
    return centroid, total, second


_UPPER = np.triu_indices(9)
"""The 45 distinct products of nine coordinates, (i, j) with i <= j in row order."""
_SUM_ROWS = 8192
"""Triangles per block of :func:`_weighted_sums`' numpy code: its (rows, 54) terms and their
running sums stay in cache."""


def _weighted_sums(tri: np.ndarray, w: np.ndarray, offset: np.ndarray | None) -> np.ndarray:
    """The 54 sums of :func:`surface_moments`: x_j w (j < 9) and (x_i w) x_j (i <= j), x the
    nine float64 corner coordinates of a triangle (float32 ones less ``offset`` first), added
    triangle after triangle in input order: the compiled kernel (``moments`` in
    ``scanner/_kernels.c``, no temporaries: 0.2-0.4 -> ~0.05 ms a call on a small file), or
    numpy's running sum, which adds in that order by definition - the same bits."""
    compiled = kernels.compiled
    flat = np.asarray(tri).reshape(-1, 9)
    sums = np.zeros(54)
    if compiled is not None and flat.dtype in (np.float32, np.float64) and len(flat) == len(w):
        off = (0.0, 0.0, 0.0) if offset is None else tuple(float(np.float32(v)) for v in offset)
        compiled.moments(np.ascontiguousarray(flat), flat.dtype == np.float64, off, offset is not None, w, sums)
        return sums
    lo_i, hi_i = _UPPER
    shift = None if offset is None else np.tile(np.asarray(offset, dtype=flat.dtype), 3)  # x, y, z of each corner
    for lo in range(0, len(flat), _SUM_ROWS):
        part = flat[lo : lo + _SUM_ROWS]
        x = (part if shift is None else part - shift).astype(np.float64)
        terms = np.empty((len(x), 54))
        xw = np.multiply(x, w[lo : lo + _SUM_ROWS, None], out=terms[:, :9])
        np.multiply(xw[:, lo_i], x[:, hi_i], out=terms[:, 9:])
        terms[0] += sums  # the sums so far, then each triangle's terms in turn
        sums = np.cumsum(terms, axis=0)[-1]
    return sums


KEY_STEPS = 4096
"""Quantisation of the intrinsic triangle measures, in steps per RMS radius. A re-export in
another pose re-rounds float32 coordinates by ~1e-7 of the radius, so a measure crosses a step
boundary for about 1 triangle in 2,000: those few resample, the rest keep their points."""


def _order_corners(measure: np.ndarray, corner_keys: np.ndarray) -> np.ndarray:
    """(3, F) corner order, as rows (row ``r``: the corner of rank ``r`` of each triangle):
    largest measure first, ties by smaller content key. ``measure`` and ``corner_keys``: (3, F)
    rows, one per corner. Each corner's rank is counted from three pairwise comparisons:
    cheaper than sorting rows (and on contiguous rows, where columns of (F, 3) arrays stride)."""

    def first(i: int, j: int) -> np.ndarray:
        mi, mj = measure[i], measure[j]
        return (mi > mj) | ((mi == mj) & (corner_keys[i] < corner_keys[j]))

    f01, f02, f12 = (first(i, j).astype(np.int64) for i, j in ((0, 1), (0, 2), (1, 2)))
    ranks = (2 - f01 - f02, 1 + f01 - f12, f02 + f12)
    # order[r] is the corner whose rank is r (ranks are a permutation of 0, 1, 2 per triangle)
    order = np.empty((3, measure.shape[1]), dtype=np.int64)
    for r in range(3):
        np.add(ranks[1] == r, 2 * (ranks[2] == r), out=order[r])
    return order


_CHUNK = 1 << 16
"""Triangles per block of the elementwise float32 work: its temporaries stay in cache."""


def _measures(
    tri: np.ndarray,
    centroid: np.ndarray,
    scale: np.float32,
    offset: np.ndarray | None = None,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """(F, 3) quantised intrinsic measure of each corner: the length of the opposite edge
    (high bits) and the distance to the centroid (low 24 bits), in units of ``1 / scale``.
    A transposed view of (3, F) rows. ``offset`` (float32): subtracted from every corner first
    (in the copy to (corner, coordinate, triangle) order: the same float32 differences);
    ``rows``: that copy (:func:`_corner_rows`) when the caller has it."""
    t = _corner_rows(tri, offset) if rows is None else rows  # (corner, coordinate, triangle): contiguous rows
    edge = [t[(k + 2) % 3] - t[(k + 1) % 3] for k in range(3)]  # the edge opposite corner k
    rel = t - centroid.astype(np.float32)[None, :, None]
    measure = np.empty((3, len(tri)), dtype=np.int64)
    for k in range(3):
        e, r = edge[k], rel[k]
        opposite = np.sqrt(e[0] * e[0] + e[1] * e[1] + e[2] * e[2]) * scale
        reach = np.sqrt(r[0] * r[0] + r[1] * r[1] + r[2] * r[2]) * scale
        np.bitwise_or(opposite.astype(np.int64) << np.int64(24), np.minimum(reach.astype(np.int64), (1 << 24) - 1),
                      out=measure[k])  # fmt: skip
    return measure.T


def _seeds(
    tri: np.ndarray,
    centroid: np.ndarray,
    scale: np.float32,
    corner_keys: np.ndarray,
    offset: np.ndarray | None,
    rows: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`intrinsic_keys`' seeds before the congruent triangles are told apart, and the
    (F, 3) corner order: the numpy code (the reference of :func:`_compiled_seeds`)."""
    n = len(tri)
    if n <= _CHUNK:
        measure = _measures(tri, centroid, scale, offset, rows).T  # (3, F) rows, one per corner
    else:
        measure = np.empty((3, n), dtype=np.int64)
        for lo in range(0, n, _CHUNK):  # per triangle, so chunks give the same numbers, from cache
            measure[:, lo : lo + _CHUNK] = _measures(tri[lo : lo + _CHUNK], centroid, scale, offset).T
    order = _order_corners(measure, np.ascontiguousarray(corner_keys.T))
    # the measures in rank order (take_along_axis of the (F, 3) forms): one flat gather
    at = order * np.int64(n)
    at += np.arange(n, dtype=np.int64)
    canon = measure.reshape(-1).take(at).view(np.uint64)  # int64 -> uint64: the same bits as astype
    del measure, at  # a large surface's (3, F) temporaries go before the seeds are hashed
    order = order.T  # (F, 3): the corner order as the sampler reads it
    with np.errstate(over="ignore"):
        intrinsic = _splitmix(_splitmix(_splitmix(canon[0] ^ SEED) + canon[1]) + canon[2])
    return intrinsic, order


def _compiled_seeds(
    tri: np.ndarray,
    centroid: np.ndarray,
    scale: np.float32,
    corner_keys: np.ndarray,
    offset: np.ndarray | None,
    rows: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`_seeds` of one block (at most :data:`_CHUNK` triangles) in C (:mod:`scanner.kernels`):
    the same float32 measures, corner ranks and splitmix chain (measured: ``intrinsic_keys``
    0.28 -> 0.15 ms a call on the small set). None: no compiled kernels, other dtypes, or a
    measure numpy's cast must decide (not finite, or 2^63 or more): then :func:`_seeds`."""
    compiled = kernels.compiled
    if compiled is None or tri.dtype != np.float32 or corner_keys.dtype != np.uint64:
        return None
    t = _corner_rows(tri, offset) if rows is None else rows
    if t.dtype != np.float32:
        return None
    order = np.empty((3, len(tri)), dtype=np.int64)
    intrinsic = np.empty(len(tri), dtype=np.uint64)
    c = [float(x) for x in centroid.astype(np.float32)]
    keys = np.ascontiguousarray(corner_keys)
    if not compiled.seeds(np.ascontiguousarray(t), *c, float(scale), keys, order, intrinsic):
        return None
    return intrinsic, order.T


def intrinsic_keys(
    tri: np.ndarray,
    centroid: np.ndarray,
    radius: float,
    corner_keys: np.ndarray,
    offset: np.ndarray | None = None,
    rows: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A 64-bit seed per triangle and its corners' canonical order, from its intrinsic shape.

    Why (issue 11, "exact invariance"): seeds taken from coordinates change with every
    rotation, so a rotated copy sampled different points and landed ~0.011 from itself, more
    than the threshold of a signature near benign shapes. Here a triangle is known by its edge
    lengths and its corners' distances to the surface centroid, in units of the RMS radius:
    the same numbers after any rigid motion, mirror or uniform scale. Corners are ordered by
    the length of the opposite edge, then distance to the centroid. Congruent triangles at the
    same distance (the facets of a turned part) share those numbers; they are told apart by
    their rank in coordinate-key order, which only permutes points among symmetric images.
    ``offset`` (float32): subtracted from every corner first, block by block; ``rows``: a
    surface of one block as :func:`_corner_rows` of ``tri`` and ``offset``, when the caller
    has it (the sampler's areas read the same copy).
    """
    scale = np.float32(KEY_STEPS / radius)
    n = len(tri)
    found = _compiled_seeds(tri, centroid, scale, corner_keys, offset, rows) if n <= _CHUNK else None
    intrinsic, order = found if found is not None else _seeds(tri, centroid, scale, corner_keys, offset, rows)
    # a value sort first, its index in the low bits: most surfaces have no two seeds alike, and
    # where some are, the sort already holds their order (as :func:`stable_argsort_u64` does)
    shift = np.uint64(max(1, (len(intrinsic) - 1).bit_length()))
    packed = sort64(((intrinsic >> shift) << shift) | np.arange(len(intrinsic), dtype=np.uint64))
    high = packed >> shift
    if not np.any(high[1:] == high[:-1]):
        return intrinsic, order
    by_key = (packed & ((np.uint64(1) << shift) - np.uint64(1))).astype(np.int64)
    ordered = intrinsic[by_key]
    if not np.all(ordered[1:] >= ordered[:-1]):  # equal high bits, different keys: exact order
        by_key = stable_argsort_u64(intrinsic)
        ordered = intrinsic[by_key]
    shared = np.zeros(len(intrinsic), dtype=bool)
    shared[1:] = ordered[1:] == ordered[:-1]
    shared[:-1] |= shared[1:]
    if shared.any():  # rank congruent triangles by content, so no file order leaks in
        members = by_key[shared]
        seeds = ordered[shared]  # intrinsic[members], already in key order
        first = np.ones(len(members), dtype=bool)
        first[1:] = seeds[1:] != seeds[:-1]
        group = np.cumsum(first).astype(np.uint64) - np.uint64(1)
        with np.errstate(over="ignore"):
            ck = np.take(corner_keys, members, axis=0)
            content = ck[:, 0] + ck[:, 1] + ck[:, 2]  # independent of corner order (wrapping sum)
        # sorted by group first, so the seeds of ``within`` are ``seeds`` again, group by group
        within = members[stable_argsort_u64((group << np.uint64(40)) | (content >> np.uint64(24)))]
        starts = np.flatnonzero(first)
        rank = (np.arange(len(within)) - np.repeat(starts, np.diff(np.r_[starts, len(within)]))).astype(np.uint64)
        with np.errstate(over="ignore"):
            intrinsic[within] = _splitmix(seeds ^ _splitmix(rank + np.uint64(1)))
    return intrinsic, order


def _fraction(x: np.ndarray) -> np.ndarray:
    """``x % 1.0`` for non-negative finite floats, in place: ``x - floor(x)``.

    Why: numpy's float ``%`` goes through ``fmod`` and a sign fix-up per element, 25x slower
    than a floor and a subtraction (100 us against 4 us on a small file's 8,500 points, twice
    per sample). For ``x >= 0`` both are the exact fractional part (a double's fractional
    part is itself a double, so neither rounds), so the points are the same to the last bit
    (``tests/unit/test_sampling_fraction.py``)."""
    x -= np.floor(x)
    return x


_BOUNDS_ROWS = 1 << 16
"""Corners up to which :func:`_axis_bounds` copies the coordinates into contiguous rows."""


def _axis_bounds(corners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-axis minimum and maximum (float64) of (N, 3) float32 corners, as
    ``np.array([c.min() for c in corners.T])`` (and ``max``) gave them.

    Why: a reduction over a stride-3 column runs element by element (six of them: ~50 us on a
    small file's 15k corners); over a contiguous row it is vectorised, so a small surface is
    first copied into three rows (~5 us). A minimum or maximum is one of the values, so the
    bounds are the same - save for the sign of a zero, which the vector and element loops may
    pick differently between 0.0 and -0.0 (and NaN): where an axis's bound is zero or not
    finite, the column reductions are taken, as before. Large surfaces keep the column form
    (no copy of millions of corners)."""
    if len(corners) <= _BOUNDS_ROWS:
        rows = np.ascontiguousarray(corners.T)
        lo, hi = rows.min(axis=1).astype(np.float64), rows.max(axis=1).astype(np.float64)
        if np.all(np.isfinite(lo) & np.isfinite(hi) & (lo != 0) & (hi != 0)):
            return lo, hi
    columns = corners.T
    return (np.array([c.min() for c in columns], dtype=np.float64),
            np.array([c.max() for c in columns], dtype=np.float64))  # fmt: skip


def _sample_frame(
    tri32: np.ndarray,
    rows: np.ndarray | None,
    corner_order: np.ndarray,
    chosen: np.ndarray,
    centroid: np.ndarray,
    offset: np.ndarray,
    radius: float,
) -> np.ndarray:
    """(9, C) float32 rows (corner x, y, z, edge 1, edge 2) of the sampled triangles, in the
    normalised frame: :func:`sample_surface`'s per-triangle gather (``rows``: the centred
    corner rows of a one-block surface, else None)."""
    # corners in their intrinsic order, so barycentric weights depend neither on the file's
    # order nor on the pose; per sampled triangle: first corner and two edges, gathered once
    inv_r = np.float32(1.0 / radius)
    frame = np.empty((9, len(chosen)), dtype=np.float32)  # rows: corner x, y, z, edge 1, edge 2
    if rows is not None:
        # from the centred (corner, coordinate, triangle) rows (the same float32 differences
        # as ``tri32 - offset``): one flat gather of (rank, coordinate, chosen) and contiguous
        # arithmetic, where the (C, 3, 3) gather's columns strided
        at = corner_order.T.take(chosen, axis=1) * 3  # (3, C): the corner of each rank
        at = (at[:, None, :] + np.arange(3)[None, :, None]) * len(tri32)
        at += chosen
        ordered = rows.reshape(-1).take(at)  # (rank, coordinate, C) float32
        np.multiply(ordered[0] - centroid.astype(np.float32)[:, None], inv_r, out=frame[0:3])
        np.multiply(ordered[1] - ordered[0], inv_r, out=frame[3:6])
        np.multiply(ordered[2] - ordered[0], inv_r, out=frame[6:9])
    else:
        gather = ((chosen * 3)[:, None] + np.take(corner_order, chosen, axis=0)).reshape(-1)
        ordered = tri32.reshape(-1, 3).take(gather, axis=0).reshape(-1, 3, 3) - offset  # (C, 3, 3) float32
        frame[0:3] = ((ordered[:, 0] - centroid.astype(np.float32)) * inv_r).T
        frame[3:6] = ((ordered[:, 1] - ordered[:, 0]) * inv_r).T
        frame[6:9] = ((ordered[:, 2] - ordered[:, 0]) * inv_r).T
    return frame


def sample_surface(
    triangles: np.ndarray, n_points: int | None = None, corner_keys: np.ndarray | None = None
) -> SurfaceSample:
    """Normalise and sample a surface given as (F, 3, 3) triangles (float32 canonical).

    Returns exactly ``n_points`` points (unless the surface is degenerate enough that the
    stratified draw falls short, which the slack makes vanishingly rare): a few more are drawn
    than needed and the ones with the smallest point hash are kept. A hash is independent of
    position, so the cut is a uniform random subset, and a fixed count lets every family reuse
    one precomputed set of pair indices instead of drawing them per file.

    With the compiled kernels (:mod:`scanner.kernels`) the triangle seeds and everything after
    the stratified counts (point keys, canonical sort, R2 coordinates, points) run in C, the
    same integer and float operations (measured: the whole call 1.07-1.09 -> 0.74 ms on the
    small set).
    """
    n_points = N_POINTS if n_points is None else n_points
    tri32 = np.asarray(triangles, dtype=np.float32).reshape(-1, 3, 3)
    if corner_keys is None:
        tri32 = tri32 + np.float32(0.0)  # fold -0.0 so keys match Mesh.corner_keys
        corner_keys = vertex_keys(tri32.reshape(-1, 3)).reshape(-1, 3)
    # work in float32, centred on the bounding box so that float32 keeps its digits
    lo, hi = _axis_bounds(tri32.reshape(-1, 3))
    # every step below reads the triangles less ``offset`` block by block (float32: the same
    # numbers as one centred copy, which at 1M triangles was a 36 MB array faulted in afresh)
    offset = ((lo + hi) / 2.0).astype(np.float32)
    rows = None  # a surface of one block: its centred corners copied to rows once, for the areas and seeds
    if len(tri32) <= min(_CHUNK, _AREA_ROWS):
        rows = _corner_rows(tri32, offset)
        areas = _row_areas(rows)
    else:
        areas = np.empty(len(tri32), dtype=np.float32)
        for start in range(0, len(tri32), _AREA_ROWS):
            areas[start : start + _AREA_ROWS] = triangle_areas(tri32[start : start + _AREA_ROWS] - offset)
    centroid, area, second = surface_moments(tri32, areas, offset)
    radius = float(np.sqrt(np.trace(second)))
    if not radius > 0:
        raise ValueError("degenerate surface")
    evals, evecs = np.linalg.eigh(second / radius**2)
    order = np.argsort(evals)[::-1]
    evals = np.clip(evals[order], 0, None)
    evals = evals / max(evals.sum(), 1e-300)
    axes = evecs[:, order].T

    tkey, corner_order = intrinsic_keys(tri32, centroid, radius, corner_keys, offset, rows)
    # the total of stratified counts varies by at most sqrt(target): 6 sigma of slack
    target = n_points + 6.0 * np.sqrt(n_points) + 8.0
    expected = areas.astype(np.float64) * (target / area)
    counts = np.floor(expected + _unit(tkey)).astype(np.int64)
    chosen = np.flatnonzero(counts)
    counts = counts[chosen]
    compiled = kernels.compiled
    if compiled is not None:
        # the rest in C (:mod:`scanner.kernels`): the same point keys, canonical order, R2
        # coordinates and float32 points as the numpy code below
        frame = _sample_frame(tri32, rows, corner_order, chosen, centroid, offset, radius)
        coords = np.empty((3, n_points), dtype=np.float32)
        m = compiled.points(tkey[chosen], counts, frame, n_points, _R2[0], _R2[1], coords)
        if m < n_points:  # the stratified draw fell short
            coords = np.ascontiguousarray(coords[:, :m])
        return SurfaceSample(coords=coords, axes=axes, eigenvalues=evals, area=area / radius**2, triangles=len(tri32))
    local = np.repeat(np.arange(len(chosen)), counts)
    within = np.arange(len(local)) - np.repeat(np.cumsum(counts) - counts, counts)
    with np.errstate(over="ignore"):
        step = np.uint64(0x9E3779B97F4A7C15) * (within.astype(np.uint64) + np.uint64(1))
        skey = _splitmix(tkey[chosen][local] + step)
    # canonical order = by point hash; the index rides in the low bits so that a (SIMD) value
    # sort does the work of an argsort (equal high bits, ~1e-7 per file, fall back to position)
    shift = np.uint64(max(1, (len(skey) - 1).bit_length()))
    low = (np.uint64(1) << shift) - np.uint64(1)
    packed = sort64((skey & ~low) | np.arange(len(skey), dtype=np.uint64))[:n_points]
    keep = (packed & low).astype(np.int64)
    local, within = local[keep], within[keep].astype(np.float64)
    # within a triangle the points follow the R2 low-discrepancy sequence, shifted by the
    # triangle's hash (Cranley-Patterson rotation): a large triangle's points cover it
    # evenly instead of clumping, which is what keeps re-sampled descriptors close
    tk = tkey[chosen]
    u1 = _fraction(_unit(_splitmix(tk ^ _SHIFT1))[local] + within * _R2[0])
    u2 = _fraction(_unit(_splitmix(tk ^ _SHIFT2))[local] + within * _R2[1])
    r1 = np.sqrt(u1)
    r2 = u2
    frame = _sample_frame(tri32, rows, corner_order, chosen, centroid, offset, radius)
    g = frame.take(local, axis=1)
    w1 = (r1 * (1 - r2)).astype(np.float32)
    w2 = (r1 * r2).astype(np.float32)
    coords = g[0:3] + w1 * g[3:6] + w2 * g[6:9]
    return SurfaceSample(coords=coords, axes=axes, eigenvalues=evals, area=area / radius**2, triangles=len(tri32))
