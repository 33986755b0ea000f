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


def surface_moments(tri: np.ndarray, areas: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Exact area-weighted centroid, total area, second-moment matrix about the centroid.

    Uses E[x x^T] over a triangle = (aa' + bb' + cc' + ss') / 12 with s = a + b + c.
    """
    total = float(areas.sum())
    if not total > 0:
        raise ValueError("surface has no area")
    w = areas / total
    centroid = (w @ tri.sum(axis=1)) / 3.0
    rows = tri - centroid  # (F, 3, 3)
    sw = np.sqrt(w / 12.0)[:, None]
    second = np.zeros((3, 3))
    for corner in range(3):
        x = rows[:, corner] * sw
        second += x.T @ x
    x = rows.sum(axis=1) * sw
    second += x.T @ x
    return centroid, total, second


def sample_surface(
    triangles: np.ndarray, n_points: int = N_POINTS, corner_keys: np.ndarray | None = None
) -> SurfaceSample:
    """Normalise and sample a surface given as (F, 3, 3) triangles (float32 canonical)."""
    tri32 = np.asarray(triangles, dtype=np.float32).reshape(-1, 3, 3) + np.float32(0.0)
    if corner_keys is None:
        corner_keys = vertex_keys(tri32.reshape(-1, 3)).reshape(-1, 3)
    tri = tri32.astype(np.float64)
    areas = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
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
    expected = areas / area * n_points
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
    t = np.take_along_axis(tri[owner], corner_order[:, :, None], axis=1)
    points = (1 - r1)[:, None] * t[:, 0] + (r1 * (1 - r2))[:, None] * t[:, 1] + (r1 * r2)[:, None] * t[:, 2]
    points = (points[np.argsort(skey, kind="stable")] - centroid) / radius
    return SurfaceSample(points=points, axes=axes, eigenvalues=evals, area=area / radius**2, triangles=len(tri))
