"""An affine-normalised ("whitened") descriptor row: a stretch-tolerant second opinion.

Why (issue 11, "stretch"): the global descriptor is normalised for rotation, mirror and
uniform scale only, so a copy stretched 1.2x along one axis moves far from its signature.
Mapping the surface by the inverse square root of its second-moment matrix
(``x -> S^-1/2 (x - mu)``) before the shape distributions makes them invariant to any
linear map up to a rotation - a stretch along any axis, a shear.

The moments are area-weighted, and a stretch reweights faces at different angles
differently, so one whitening step is close but not exact. The step is therefore repeated
on the whitened surface (its own areas) a few times: it converges to a surface whose own
area-weighted second moment is isotropic, and a linear image of the input reaches the same
surface up to rotation - so the row is invariant to a linear map up to that convergence.

Whitening also discards proportions (a long and a short cylinder coincide), so this row is
never a match on its own: :func:`stretch_consistent` bounds how far the plain descriptor's
inertia ratios may move under the stretch it tolerates, and the matcher also requires the
plain descriptor within a looser band (:mod:`scanner.matching`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from scanner.features.families import A3, D1, D2, DescriptorFamily
from scanner.features.sampling import SurfaceSample, sample_surface, surface_moments, triangle_areas

AFFINE_ROW = -4
"""Body number of the whitened whole-file row among a signature's rows (``-1`` is the plain
whole file, ``-2`` loose triangles, ``-3`` the wall-free surface)."""
AFFINE_FAMILIES: tuple[type[DescriptorFamily], ...] = (D1, D2, A3)
"""The shape distributions read on the whitened surface (its inertia is isotropic by
construction, so the inertia family would be constant)."""
AFFINE_WIDTH = sum(f.size for f in AFFINE_FAMILIES)
"""Columns of an affine row that carry the whitened families; the rest of the row is zero."""
WHITEN_STEPS = 4
"""Whitening repeated on its own result: the first step leaves a residual anisotropy of a few
percent (the area reweighting), each further one shrinks it by roughly that factor again."""
AFFINE_THRESHOLD = 0.018
"""Largest whitened-row distance that counts (a signature's own is lower when its plain whole
row's threshold is: a shape near benign references stays near them when stretched). Measured
by ``bench/stretch.py`` (seeds 101, 202 and 303, never the evasion bench's 0; 420 proxies):
an own stretched copy lands at median 0.010, max 0.024 (x0.8 to x1.25), and 97-99% of x1.05
and x1.2 copies pass the whole rule; rotated-only copies land at max 0.016 (the row's sampling
noise). Nearest false pair passing the two bands below: 0.0274 over 96,000 generated (benign,
proxy) pairs, 0.0351 over 13,200 (corpus part, proxy) pairs, 0.0211 over 1,453 (corpus part,
corpus part) pairs; none within 0.018."""
PLAIN_BAND = 0.25
"""The plain whole-file rows must still be this close: a stretch of 1.25 moves them by at
most 0.23 (p95 0.21) in the same measurement."""
STRETCH_LOG = 0.25
"""Most stretch the plain inertia ratios may need, as log(factor) (:func:`stretch_spread`):
log 1.25 = 0.223 for an exact one-axis stretch; measured max 0.229 (area reweighting)."""
MIN_EIGEN_RATIO = 1e-4
"""Second moments below this share of the largest are raised to it before inverting: a flat
plate has no thickness to whiten, and noise in it must not be blown up without bound."""


_BLOCK = 1 << 16
"""Triangles per block of :func:`whiten`'s per-triangle work (the map and the areas): its
temporaries stay in cache, where a 1M-triangle surface's were 72 MB arrays, page-faulted
afresh at every step (the sampler's ``_AREA_ROWS``, for the same reason)."""


def _whitened(triangles: np.ndarray, steps: int = WHITEN_STEPS) -> tuple[np.ndarray, float]:
    """The surface of :func:`whiten` before its final scaling, and that scale (the caller
    divides, as a block-by-block cast may follow).

    Each step reads the whole surface once for its second moments (sums in input order,
    :func:`scanner.features.sampling.surface_moments`) and then maps it block
    by block into a second buffer, the areas the next step weighs by computed from the block
    while it is in cache. Every value is the one the whole-array form gave: a triangle's map
    and area depend on that triangle alone, and the map of a block of corners is the same
    matrix product row by row."""
    tri = np.array(triangles, dtype=np.float64).reshape(-1, 3, 3)  # a copy of its own, centred in place
    tri -= tri.reshape(-1, 3).mean(axis=0)
    out = np.empty_like(tri)
    areas = np.empty(len(tri))
    for lo in range(0, len(tri), _BLOCK):
        areas[lo : lo + _BLOCK] = triangle_areas(tri[lo : lo + _BLOCK])
    for step in range(max(1, steps)):
        centroid, _, second = surface_moments(tri, areas)
        evals, evecs = np.linalg.eigh(second)
        top = float(evals.max())
        if not top > 0:
            raise ValueError("degenerate surface")
        evals = np.maximum(evals, MIN_EIGEN_RATIO * top)
        inv_sqrt_t = ((evecs / np.sqrt(evals)) @ evecs.T).T
        last = step == max(1, steps) - 1
        for lo in range(0, len(tri), _BLOCK):
            block = out[lo : lo + _BLOCK]
            np.matmul((tri[lo : lo + _BLOCK] - centroid).reshape(-1, 3), inv_sqrt_t, out=block.reshape(-1, 3))
            if not last:
                areas[lo : lo + _BLOCK] = triangle_areas(block)
        tri, out = out, tri
    return tri, float(np.sqrt(3.0))


def whiten(triangles: np.ndarray, steps: int = WHITEN_STEPS) -> np.ndarray:
    """(F, 3, 3) triangles mapped so that their own area-weighted second moment is isotropic
    (float64, centred, unit RMS radius)."""
    tri, scale = _whitened(triangles, steps)
    return tri / scale


def affine_row(triangles: np.ndarray, corner_keys: np.ndarray | None, width: int) -> np.ndarray:
    """One float32 row of ``width`` values: the whitened surface's D1, D2 and A3 in the first
    ``AFFINE_WIDTH`` columns, zeros after (a row of the signature matrix, which is wider)."""
    return StagedAffineRow(triangles, corner_keys, width).row


class StagedAffineRow:
    """The whitened row of :func:`affine_row`, computed in two stages for the matcher's gate:
    :attr:`head` (the first family's columns: D1, cheap once the whitened surface is sampled)
    and then, only if asked, :attr:`row` (every family, the head's values reused).

    Why: an upload within a signature's plain bands needs its whitened row, ~7 ms on a small
    file, and most of them (97 of 103 files of the throughput bench's small set and the demo
    fixtures that got that far) are already further than the row's threshold over the D1
    columns alone, often by 5-20x. The distance over some columns is a lower bound of the
    distance over all of them, so :meth:`AffineIndex.query` first reads the head and stops
    when no signature can be within reach; D2 and A3 (the triples) are skipped. The row, when
    computed, is the same to the last bit: the same steps in the same order."""

    def __init__(self, triangles: np.ndarray, corner_keys: np.ndarray | None, width: int) -> None:
        self._triangles, self._keys, self._width = triangles, corner_keys, width
        self._parts: dict[int, np.ndarray] = {}

    @cached_property
    def _sample(self) -> SurfaceSample:
        tri, scale = _whitened(self._triangles)
        white = np.empty(tri.shape, dtype=np.float32)
        for lo in range(0, len(tri), _BLOCK):  # the float64 quotient of a block, cast while in cache
            white[lo : lo + _BLOCK] = tri[lo : lo + _BLOCK] / scale
        return sample_surface(white, corner_keys=self._keys)

    def _part(self, k: int) -> np.ndarray:
        if k not in self._parts:
            family = AFFINE_FAMILIES[k]
            self._parts[k] = np.sqrt(family.weight) * np.asarray(family.compute(self._sample), dtype=np.float64)
        return self._parts[k]

    @cached_property
    def head(self) -> np.ndarray:
        """The first family's columns of :attr:`row`, float32 (the same values)."""
        return self._part(0).astype(np.float32)

    @cached_property
    def row(self) -> np.ndarray:
        """The whole row (float32, ``width`` values, zeros after ``AFFINE_WIDTH``)."""
        out = np.zeros(self._width, dtype=np.float32)
        out[:AFFINE_WIDTH] = np.concatenate([self._part(k) for k in range(len(AFFINE_FAMILIES))])
        return out


HEAD_MARGIN = 1e-9
"""Relative margin of the head test (:func:`_out_of_reach`): float64 sums of at most 74
squares round by ~1e-14 relative, so a head distance this much above a threshold cannot be
within it once the other columns are added, whatever the order of the sums."""


def _out_of_reach(rows: np.ndarray, head: np.ndarray, thresholds: np.ndarray) -> bool:
    """True when every whitened row of ``rows`` is further from the upload than its threshold
    over the head's columns alone (then it is over all of them: :data:`HEAD_MARGIN`)."""
    h = np.asarray(head, dtype=np.float64)
    d = rows[:, : len(h)].astype(np.float64) - h
    return bool(np.all(np.sqrt((d * d).sum(axis=1)) > thresholds * (1.0 + HEAD_MARGIN)))


def affine_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance over the whitened families' columns (rows of ``a`` against ``b``)."""
    d = np.asarray(a, dtype=np.float64)[..., :AFFINE_WIDTH] - np.asarray(b, dtype=np.float64)[..., :AFFINE_WIDTH]
    return np.sqrt((d * d).sum(axis=-1))


def stretch_spread(inertia_a: np.ndarray, inertia_b: np.ndarray) -> np.ndarray:
    """How much stretch the plain inertia ratios of two rows need at least, as log(factor).

    The inertia family holds ``sqrt(l2/l1), sqrt(l3/l1)``: the lengths of the second-moment
    ellipsoid's axes relative to the longest. A stretch by ``s >= 1`` along any direction
    scales each axis length by a factor in ``[1, s]`` (interlacing of ``S C S``), so the
    log-ratios of corresponding axis lengths differ by at most ``log s`` from one another.
    Returns max - min of those log-ratios (axis 1 included as 0)."""
    a = np.log(np.maximum(np.asarray(inertia_a, dtype=np.float64), 1e-6))
    b = np.log(np.maximum(np.asarray(inertia_b, dtype=np.float64), 1e-6))
    diff = b - a
    zero = np.zeros(diff.shape[:-1] + (1,))
    full = np.concatenate([zero, diff], axis=-1)
    return full.max(axis=-1) - full.min(axis=-1)


@dataclass(frozen=True)
class AffineHit:
    position: int
    """Position of the signature in the library."""
    distance: float
    """Whitened-row distance (what the threshold is compared with)."""
    threshold: float
    plain_distance: float
    """Distance between the plain whole-file rows (at most ``PLAIN_BAND``)."""
    stretch: float
    """Least stretch factor that explains the plain inertia ratios (at most ``exp(STRETCH_LOG)``)."""
    row: int = -1
    """The signature's whitened row (index into :attr:`AffineIndex.affine`)."""
    rivals: tuple[tuple[int, float, int], ...] = ()
    """Other signatures within both plain bands whose whitened rows are within the query's
    ``rivals`` x ``distance`` of the upload's: (position, whitened distance, row) each - who
    else a stretch would explain about as well (the matcher's crowding test)."""


class AffineIndex:
    """The signatures' whitened rows, each with its plain whole-file row, for the stretch rule:
    whitened distance within the row's own threshold, AND plain distance within
    ``PLAIN_BAND``, AND inertia ratios that a stretch of at most ``exp(STRETCH_LOG)`` explains.

    Why all three: whitening discards proportions, so the whitened row alone would match a
    long tube to a short one; the two plain bands keep the match to copies that a moderate
    stretch of the signature explains. Brute force over the rows (one query row per upload):
    both plain bands over every row, the plain one as a float32 matrix-vector product, exact
    distances only for the rows left - 2-3 ms CPU over 100,000 signatures on one thread."""

    def __init__(self, affine: np.ndarray, positions: np.ndarray, thresholds: np.ndarray, plain: np.ndarray) -> None:
        keep = np.asarray(thresholds, dtype=np.float64) > 0
        self.affine = np.asarray(affine, dtype=np.float32)[keep, :AFFINE_WIDTH]
        self.positions = np.asarray(positions, dtype=np.int64)[keep]
        self.thresholds = np.asarray(thresholds, dtype=np.float64)[keep]
        self.plain = np.ascontiguousarray(np.asarray(plain, dtype=np.float32)[keep])
        self.norms = np.einsum("rd,rd->r", self.plain, self.plain)
        log = np.log(np.maximum(self.plain[:, -2:].astype(np.float64), 1e-6))
        self.inertia = (np.ascontiguousarray(log[:, 0]), np.ascontiguousarray(log[:, 1]))
        """Log inertia ratios as two columns: elementwise work on them beats reducing (n, 2) rows."""

    def __len__(self) -> int:
        return len(self.positions)

    def query(
        self,
        plain: np.ndarray,
        affine: Callable[[], np.ndarray],
        rivals: float = 0.0,
        head: Callable[[], np.ndarray] | None = None,
    ) -> list[AffineHit]:
        """Signatures the upload matches under the stretch rule, nearest first. ``plain`` is the
        upload's plain whole-file row; ``affine`` computes its whitened row, called only when
        some signature passes both plain bands (it costs one more surface sample). ``head``,
        when given, computes the row's first columns (:attr:`StagedAffineRow.head`), asked
        first: when no in-band signature is within reach over them, there is no hit and the
        rest of the row is never computed. Each hit lists the other in-band signatures within
        ``rivals`` x its distance (:attr:`AffineHit.rivals`)."""
        if not len(self):
            return []
        q = np.asarray(plain, dtype=np.float64).reshape(-1)
        ql = np.log(np.maximum(q[-2:], 1e-6))
        d2, d3 = ql[0] - self.inertia[0], ql[1] - self.inertia[1]  # as in stretch_spread
        spread = np.maximum(np.maximum(d2, d3), 0.0) - np.minimum(np.minimum(d2, d3), 0.0)
        # plain band in float32 first (one matrix-vector product), then exact on the few left
        q2 = float(q @ q)
        approx = self.norms - 2.0 * (self.plain @ q.astype(np.float32)) + q2
        margin = 1e-4 + 16 * float(np.finfo(np.float32).eps) * (float(self.norms.max()) + q2)
        near = np.flatnonzero((spread <= STRETCH_LOG) & (approx <= PLAIN_BAND**2 + margin))
        if len(near):
            d = self.plain[near].astype(np.float64) - q
            dp = np.sqrt(np.einsum("md,md->m", d, d))
            within = dp <= PLAIN_BAND
            near, dp = near[within], dp[within]
        if not len(near) or (head is not None and _out_of_reach(self.affine[near], head(), self.thresholds[near])):
            return []
        dw = affine_distance(self.affine[near], np.asarray(affine(), dtype=np.float64))
        hits = []
        for i, w, p in zip(near, dw, dp, strict=True):
            if w > self.thresholds[i]:
                continue
            position = int(self.positions[i])
            close = (dw <= rivals * w) & (self.positions[near] != position)
            crowd = tuple(
                (int(self.positions[j]), float(d), int(j)) for j, d in zip(near[close], dw[close], strict=True)
            )
            hits.append(AffineHit(position, float(w), float(self.thresholds[i]), float(p), float(np.exp(spread[i])),
                                  int(i), crowd))  # fmt: skip
        return sorted(hits, key=lambda h: h.distance)
