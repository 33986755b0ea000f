"""A signature row for the enrolled surface after one level of Loop subdivision.

Why (issue 11, re-tessellation): Loop subdivision is not a re-tessellation of the same
surface. Each level moves every vertex towards its neighbours, so a coarse CAD export (a box
of 12 triangles, a 24-sided tube) comes back rounded and shrunk: its area drops by 5-30% and
its descriptor moves 0.05-0.15 from its signature (median 0.07 over the evasion bench's
proxies), against thresholds of 0.02-0.05. No shape descriptor can call those two the same
without also calling many benign shapes the same. But the result is fixed by the enrolled
geometry: whoever subdivides a copy of the file (in any pose, in any format) gets the same
surface as meshscan does at enrolment. So the signature also stores the descriptor of its
own surface subdivided once, and the subdivided copy lands next to it (measured: median
0.004, max 0.011, on 24 proxies).

A finely tessellated surface is barely changed by subdivision (its own rows already catch
the subdivided copy), and subdividing it costs memory four times its size: above
``MAX_TRIANGLES`` no row is added.
"""

from __future__ import annotations

import numpy as np

from scanner.mesh import Mesh

SUBDIVIDED_ROW = -5
"""Body number of the subdivided whole-file row among a signature's rows (``-1`` is the whole
file, ``-2`` loose triangles, ``-3`` the wall-free surface, ``-4`` the whitened row)."""
MAX_TRIANGLES = 200_000
"""Surfaces with more triangles get no subdivided row."""
SUBDIVIDED_THRESHOLD = 0.025
"""Most tolerance the subdivided row ever gets: the row is there for the enrolled geometry
subdivided again, which lands within the descriptor's sampling noise of it (measured: median
0.004, max 0.011 over 24 proxies turned and rescaled; a rotated copy of any file lands within
0.018), not for look-alikes. Subdivision rounds shapes into each other: with the whole row's
own tolerance (up to 0.08) the subdivided row of one demo accessory proxy took in another
design of the same category at 0.039."""


def subdivided_surface(mesh: Mesh) -> Mesh | None:
    """The welded surface after one level of Loop subdivision (trimesh's, as an uploader's tool
    would do it), or None when it cannot be subdivided (too large, or not a manifold)."""
    import trimesh

    surface = mesh.surface()
    if surface.triangle_count == 0 or surface.triangle_count > MAX_TRIANGLES:
        return None
    try:
        vertices, faces = trimesh.remesh.subdivide_loop(
            np.asarray(surface.welded_vertices, dtype=np.float64), np.asarray(surface.welded_faces), iterations=1
        )
    except (ValueError, IndexError):  # Loop's rules need every edge shared by at most two faces
        return None
    return Mesh(vertices=np.asarray(vertices, dtype=np.float64), faces=np.asarray(faces))


def subdivided_rows(
    mesh: Mesh, vectors: np.ndarray, bodies: list[int], thresholds: np.ndarray, floor: float, ceiling_ratio: float
) -> tuple[np.ndarray, list[int], np.ndarray]:
    """The signature's rows with its subdivided row (``SUBDIVIDED_ROW``) appended, when the
    surface can be subdivided and its whole-file row (the first) is matchable at all.

    The row's threshold follows the whole-file row's rule on the subdivided shape's own benign
    neighbours - ``ALPHA`` x the distance to the nearest benign reference, raised to ``floor``
    (the whole row's pose floor) but never past ``ceiling_ratio`` x that distance - and is
    never wider than the whole row's, nor than ``SUBDIVIDED_THRESHOLD``: a subdivided copy is
    never matched more loosely than the file itself, and a shape that subdivision rounds into
    a benign-looking one stays exact-only."""
    from scanner.features import describe_triangles
    from scanner.features.reference import ALPHA, nearest_reference_distance

    whole = float(thresholds[0])
    smooth = subdivided_surface(mesh) if whole > 0 else None
    surface = smooth.surface() if smooth is not None else None
    if surface is None or surface.triangle_count == 0:
        return vectors, bodies, thresholds
    row = describe_triangles(surface.corners32, surface.corner_keys)
    benign = float(nearest_reference_distance(row[None, :])[0])
    limit = min(whole, SUBDIVIDED_THRESHOLD, max(ALPHA * benign, min(floor, ceiling_ratio * benign)))
    return (
        np.vstack([vectors, row[None, :]]),
        [*bodies, SUBDIVIDED_ROW],
        np.append(thresholds, np.float32(limit)).astype(np.float32),
    )
