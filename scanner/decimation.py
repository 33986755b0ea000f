"""Signature rows for the enrolled surface after quadric decimation (issue 11, re-tessellation).

Why: measured on the 24 proxies of ``bench/evasion.py`` (seed 0), decimation by the common
tool (fast-simplification, which trimesh's ``simplify_quadric_decimation`` calls) is not a
re-tessellation of the same surface. It works to a triangle budget with an error bound in the
file's own units that grows each pass, so on a part of 100-250 units it collapses real
features: to 50% of a coarse export the area drops by a median 1.4% (up to 28%) and the volume
by 3.5% (up to 70%, a box of 48 triangles left as 22 non-manifold ones), and the descriptor
moves a median 0.029 from its signature (0.07 at 25%, 0.14 at 10%), against thresholds of
0.02-0.05. The descriptor is not what moves: the decimated copy, re-tessellated finely again,
lands within 0.010 (sampling noise) of the decimated copy itself and just as far from the
signature; a gentler decimator (vertex clustering on a 30-60 cell grid, fast-simplification
with aggressiveness 3) leaves the shape and the descriptor in place (median 0.010, every copy
within 0.025). So, as for Loop subdivision (:mod:`scanner.subdivision`), the signature stores
the descriptors of its own surface decimated the way that tool does it, at a few budgets:
whoever decimates the file as published gets what meshscan stored.

What it does not cover, measured: the tool's result depends on the file's scale (its error
bound is absolute), so a copy rescaled before decimation lands near these rows only partly;
and a copy densified before decimation is another surface again, which depends on the dense
tessellation (see the README's evasion section for both).

Why no route catches a densified copy decimated by the tool (issue 11: recall 58% / 50% / 46%
at 50% / 25% / 10%), measured on the 24 proxies, seed 0 (``bench/evasion_misses.py`` prints
each missed copy): the tool *damages* those copies. The 10 missed at 50% lost a median 5.5% of
their area and 7.2% of their volume (up to 12.7% and 36.9%, on tube proxies), and keep
42-91% of the enrolled surface within 0.5% of the diagonal. Every one of them is turned away
by distance - no row of its signature within that row's threshold: the nearest row (mostly an
85% plane-cut piece) at 1.0-2.5x its threshold, the whole row at 1.15-3.6x, i.e. farther from
the signature than the nearest benign reference is (a threshold is half that distance) - and
one at 25% / 10% by the distinct-design test. Local patch codes find 0-3 distinct codes of
the signature (the route needs 8): the copy keeps no triangle of the enrolled file, which is
what those codes read. Loosening every row's band with the second stage kept (300 benign
look-alikes x 24 proxies): x1.25 recalls 17 / 16 / 15 of 24 with 2 false pairs of 7,200
(1 today), x1.5 19 / 18 / 18 with 4; neither reaches 90% at 50%. A tessellation-independent
local descriptor (spin images at 300 signature / 600 upload keypoints, radius 0.15 x sqrt(area),
a codebook of 100 benign files of another seed for generic keypoints) recalled at most 54% /
46% / 46% at zero benign pairs over 7,200 (rotated copies only 42-83%): box-and-tube
neighbourhoods are what benign look-alikes are made of. Combined with a x1.5 band it separated
the band's 9 benign pairs (coverage 0-2%) from its 19 true copies (10-83%): 79% at every
strength, short of 90% at 50%, on 9 benign pairs of evidence, and only with keypoint descriptors
stored per signature (a library column). That, not another decimated row, is the measured way on.

A finely tessellated surface is decimated at memory and time proportional to its size: above
``MAX_TRIANGLES`` no row is added (a fine mesh is what the tool leaves nearly unchanged).
"""

from __future__ import annotations

import numpy as np

from scanner.mesh import Mesh

DECIMATED_ROWS: dict[float, int] = {0.5: -6, 0.25: -7, 0.1: -8}
"""Share of the triangles each decimated row keeps -> its body number among a signature's
rows (``-1`` whole file, ``-2`` loose triangles, ``-3`` wall-free, ``-4`` whitened, ``-5``
Loop-subdivided)."""
MAX_TRIANGLES = 200_000
"""Surfaces with more triangles get no decimated rows."""
DECIMATED_THRESHOLD = 0.02
"""Most tolerance a decimated row ever gets: the descriptor's sampling noise
(``scanner.enrol.SAMPLING_NOISE``). The row is there for the enrolled geometry decimated again
by the same tool, which lands on it (0.000 at the file's own scale, in any pose), not for
look-alikes - decimation simplifies shapes towards each other, as subdivision rounds them.
Measured with ``bench/evasion.py --proxies 200 --benign 500``: at 0.025 (the subdivided row's
cap) a turned benign look-alike matched a proxy's 50% row at 0.0223, one false pair more than
without the rows; at 0.02 none. The price: copies rescaled x37 before decimation to 25% / 10%
gain nothing over the file's own rows (at 0.025 they went from 71% / 62% to 83% / 71%)."""


def decimated_surfaces(mesh: Mesh) -> list[tuple[float, Mesh]]:
    """The welded surface decimated to each share of ``DECIMATED_ROWS`` (fast-simplification's
    defaults, as trimesh's ``simplify_quadric_decimation``), in the file's own units; a budget
    the tool cannot reach gives the same surface as the one before it, which is left out. Empty
    when the surface is too large or the tool is not installed."""
    try:
        import fast_simplification
    except ImportError:  # an optional tool: enrolment works without these rows
        return []
    surface = mesh.surface()
    if not 4 <= surface.triangle_count <= MAX_TRIANGLES:
        return []
    vertices = np.ascontiguousarray(surface.welded_vertices, dtype=np.float64)
    faces = np.ascontiguousarray(surface.welded_faces, dtype=np.int64)
    out: list[tuple[float, Mesh]] = []
    previous: tuple[int, int] | None = None
    for keep in DECIMATED_ROWS:
        v, f = fast_simplification.simplify(vertices, faces, target_reduction=1.0 - keep)
        size = (len(v), len(f))
        if len(f) == 0 or len(f) == len(faces) or size == previous:
            continue  # nothing collapsed, or no further than the last budget
        previous = size
        out.append((keep, Mesh(vertices=np.asarray(v, dtype=np.float64), faces=np.asarray(f, dtype=np.int64))))
    return out


def decimated_rows(
    mesh: Mesh, vectors: np.ndarray, bodies: list[int], thresholds: np.ndarray
) -> tuple[np.ndarray, list[int], np.ndarray]:
    """The signature's rows with its decimated rows (``DECIMATED_ROWS``) appended, when its
    whole-file row (the first) is matchable at all.

    Each row's threshold is ``ALPHA`` x its distance to the nearest benign reference, never
    wider than the whole row's nor than ``DECIMATED_THRESHOLD``, and 0 (exact copies only)
    when the decimated surface is a plain solid (within ``PLAIN_SOLID`` of the generic set): a
    decimated copy is never matched more loosely than the file itself."""
    from scanner.features import describe_triangles
    from scanner.features.reference import ALPHA, PLAIN_SOLID, nearest_generic_distance, nearest_reference_distance

    whole = float(thresholds[0])
    if not whole > 0:
        return vectors, bodies, thresholds
    rows, ids = [], []
    for keep, decimated in decimated_surfaces(mesh):
        surface = decimated.surface()
        if surface.triangle_count:
            rows.append(describe_triangles(surface.corners32, surface.corner_keys))
            ids.append(DECIMATED_ROWS[keep])
    if not rows:
        return vectors, bodies, thresholds
    block = np.stack(rows)
    limits = np.minimum(min(whole, DECIMATED_THRESHOLD), ALPHA * nearest_reference_distance(block))
    limits[nearest_generic_distance(block) < PLAIN_SOLID] = 0.0
    return (
        np.vstack([vectors, block]),
        [*bodies, *ids],
        np.append(thresholds, limits.astype(np.float32)).astype(np.float32),
    )
