"""A deterministic, normalised view of a surface that every descriptor family reads.

Why this is careful: random sampling noise is the first enemy of near-duplicate recall.

1. Sampling is seeded by content, not by position in the file: each triangle draws its
   sample count and barycentric coordinates from a hash of its own corners (independent
   of corner order and winding), and the points are then ordered by their own hash. The
   same surface therefore gives the same points whatever the triangle order, corner order,
   winding or file format - without sorting a million triangles.
2. Counts are stratified: a triangle with expected count ``e`` gets ``floor(e)`` or
   ``floor(e) + 1`` points, which has far lower variance than independent draws.
3. The frame (centroid, scale, principal axes) comes from exact surface moments of the
   triangles, not from the samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scanner.mesh import _splitmix, triangle_keys, vertex_keys

N_POINTS = 16384
SEED = np.uint64(20211)
_TO_UNIT = 1.0 / float(1 << 53)


def _unit(keys: np.ndarray) -> np.ndarray:
    """Uniform floats in [0, 1) from 64-bit keys."""
    return (keys >> np.uint64(11)).astype(np.float64) * _TO_UNIT


@dataclass(frozen=True)
class SurfaceSample:
    """A surface centred on its area centroid and scaled to unit RMS radius."""

    points: np.ndarray
    """(N, 3) points spread uniformly by area, in the normalised frame, in canonical order."""
    axes: np.ndarray
    """(3, 3) principal axes as rows, major first."""
    eigenvalues: np.ndarray
    """Second-moment eigenvalues (sum 1), descending."""
    area: float
    """Surface area in the normalised frame (area / RMS radius squared)."""
    triangles: int


def triangle_areas(tri: np.ndarray) -> np.ndarray:
    """Areas of (F, 3, 3) triangles; the cross product written out (np.cross is slow)."""
    u = tri[:, 1] - tri[:, 0]
    v = tri[:, 2] - tri[:, 0]
    cx = u[:, 1] * v[:, 2] - u[:, 2] * v[:, 1]
    cy = u[:, 2] * v[:, 0] - u[:, 0] * v[:, 2]
    cz = u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]
    return 0.5 * np.sqrt(cx * cx + cy * cy + cz * cz)


def surface_moments(tri: np.ndarray, areas: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Exact area-weighted centroid, total area, second-moment matrix about the centroid.

    Uses E[x x^T] over a triangle = (aa' + bb' + cc' + ss') / 12 with s = a + b + c, all
    nine corner-coordinate products at once as one (9 x F)(F x 9) weighted Gram product.
    ``tri`` should already be roughly centred (it may be float32).
    """
    total = float(areas.sum(dtype=np.float64))
    if not total > 0:
        raise ValueError("surface has no area")
    w = (areas / total).astype(tri.dtype)
    flat = tri.reshape(len(tri), 9)
    gram = ((flat * w[:, None]).T @ flat).astype(np.float64).reshape(3, 3, 3, 3)  # [ci, i, cj, j]
    centroid = (w @ flat).astype(np.float64).reshape(3, 3).sum(axis=0) / 3.0
    corners = sum(gram[c, :, c, :] for c in range(3))
    sums = gram.sum(axis=(0, 2))
    second = (corners + sums) / 12.0 - np.outer(centroid, centroid)
    return centroid, total, second


def sample_surface(
    triangles: np.ndarray, n_points: int = N_POINTS, corner_keys: np.ndarray | None = None
) -> SurfaceSample:
    """Normalise and sample a surface given as (F, 3, 3) triangles (float32 canonical)."""
    tri32 = np.asarray(triangles, dtype=np.float32).reshape(-1, 3, 3)
    if corner_keys is None:
        tri32 = tri32 + np.float32(0.0)  # fold -0.0 so keys match Mesh.corner_keys
        corner_keys = vertex_keys(tri32.reshape(-1, 3)).reshape(-1, 3)
    # work in float32, centred on the bounding box so that float32 keeps its digits
    flat = tri32.reshape(-1, 3)
    lo, hi = flat.min(axis=0), flat.max(axis=0)
    offset = (lo.astype(np.float64) + hi) / 2.0
    tri = tri32 - offset.astype(np.float32)
    areas = triangle_areas(tri)
    centroid, area, second = surface_moments(tri, areas)
    radius = float(np.sqrt(np.trace(second)))
    if not radius > 0:
        raise ValueError("degenerate surface")
    evals, evecs = np.linalg.eigh(second / radius**2)
    order = np.argsort(evals)[::-1]
    evals = np.clip(evals[order], 0, None)
    evals = evals / max(evals.sum(), 1e-300)
    axes = evecs[:, order].T

    tkey, _ = triangle_keys(corner_keys)
    tkey = _splitmix(tkey ^ SEED)
    expected = areas.astype(np.float64) * (n_points / area)
    counts = np.floor(expected + _unit(tkey)).astype(np.int64)
    chosen = np.flatnonzero(counts)
    counts = counts[chosen]
    owner = np.repeat(chosen, counts)
    within = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
    with np.errstate(over="ignore"):
        skey = _splitmix(tkey[owner] + np.uint64(0x9E3779B97F4A7C15) * (within.astype(np.uint64) + np.uint64(1)))
    r1 = np.sqrt(_unit(skey))
    r2 = _unit(_splitmix(skey))
    # corners in content order, so barycentric weights do not depend on the file's order
    ck = corner_keys[owner]
    corner_order = np.argsort(ck, axis=1, kind="stable")
    t = np.take_along_axis(tri[owner].astype(np.float64), corner_order[:, :, None], axis=1)
    points = (1 - r1)[:, None] * t[:, 0] + (r1 * (1 - r2))[:, None] * t[:, 1] + (r1 * r2)[:, None] * t[:, 2]
    points = (points[np.argsort(skey, kind="stable")] - centroid) / radius
    return SurfaceSample(points=points, axes=axes, eigenvalues=evals, area=area / radius**2, triangles=len(tri))
