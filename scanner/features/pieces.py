"""Plane-cut pieces of a signature: find a copy of which only part was kept, or only part of
which sits in one file or archive member.

A global descriptor describes a whole surface, so 70% of a part (the rest cut away and the
cut capped, as any slicer-ready file must be) or one of two halves shipped as separate
files is a different whole, far from the part's descriptor (issue 11: recall 0% for
"partial" and "split, spaced" before this module). At enrolment the signature's solid is
cut by planes - ``N_DIRECTIONS`` directions spread evenly over the sphere (a Fibonacci
lattice), each at ``KEPT_SHARES`` of the surface area kept - and each capped piece is
described with the same global descriptor as any upload. The rows are stored like body
rows (descriptors only, never geometry) with their own thresholds, so a piece of a
signature is found by the same k-nearest-neighbour query, at no extra cost per upload
beyond the larger index.

Why these numbers (``bench/evasion.py``'s proxies and benign look-alikes, 24-36 proxies, 300
benign files of another seed): 16 directions x {50%, 70%} kept recalled 42% / 38% / 38% of
70%-kept / 50%-kept / split-in-2 copies at distance 0.03; 32 x {50, 70, 85%} gives the
figures under ``PIECE_THRESHOLD``; 64 directions x {50 ... 90%} brings a 70%-kept copy
closer to its nearest piece (median 0.017 against 0.024) but at 3.3x the rows, and at the
threshold where no unseen design matched (0.02) it recalled less (36% / 28% / 33%). A random
cut lands at most 28 degrees (median 14) from a lattice direction at 32 directions.

Cost: ~97 rows per signature (enrolment ~5 ms per piece on small files); a library's row
count grows by that factor, which the brute-force index pays per query (see
``bench/match.py``). Cutting needs a closed, manifold solid (manifold3d's plane trim caps
the cut); a signature whose surface is not one gets no pieces, and ``signatures list``
shows it.
"""

from __future__ import annotations

import numpy as np

from scanner.features.sampling import triangle_areas
from scanner.mesh import Mesh

N_DIRECTIONS = 32
KEPT_SHARES = (0.5, 0.7, 0.85)
"""Share of the signature's surface area each piece keeps (measured on triangle centres)."""
PIECE_THRESHOLD = 0.03
"""A piece row's threshold is at most this (and, like every row, at most ``ALPHA`` x its
distance to the benign reference). Pieces of different designs sit closer together than
whole designs do: over 36 proxies (32 directions x 3 shares) a never-enrolled proxy design
landed within a piece's threshold for 36% of designs with the global 0.08, 8% at 0.04, 6%
at 0.035 and 0% at 0.03. Lower caps were measured and rejected: at 0.02 the benign false pairs
that remained over 100,000 (all piece rows, at 0.0214 and 0.0299 once the matcher's
library-side test and ``PIECE_UPLOAD_SHARE`` had removed the rest) went, but so did a sliced
copy whose outer walls were relabelled as a skirt, rebuilt from its inner walls at 0.0254 from
the part's 85% piece (``tests/integration/test_appended_payloads.py``), and one upload of 24
of ``bench/evasion.py``'s "walls in shuffled pieces"; 0.025 kept one of the two false pairs
and lost the sliced copy all the same."""
PIECE_ROW_BASE = -100
"""Body number of a piece row is ``PIECE_ROW_BASE - percent kept`` (-170: a 70% piece), so
piece rows travel through the library's ``[signature, body]`` row table unchanged."""


def piece_row(kept: float) -> int:
    """The body number recording a piece that keeps ``kept`` of the surface."""
    return PIECE_ROW_BASE - round(100 * kept)


def piece_share(body: int) -> float | None:
    """The share of its signature a row describes, when the row is a piece (else None)."""
    return (PIECE_ROW_BASE - body) / 100.0 if body <= PIECE_ROW_BASE else None


def directions(n: int = N_DIRECTIONS) -> np.ndarray:
    """``n`` unit vectors spread evenly over the sphere (Fibonacci lattice): every plane
    orientation lies within 28 degrees of one of them at n = 32 (median 14)."""
    i = np.arange(n) + 0.5
    polar = np.arccos(1.0 - 2.0 * i / n)
    azimuth = np.pi * (1.0 + 5.0**0.5) * i
    return np.stack([np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar), np.cos(polar)], axis=1)


def plane_pieces(mesh: Mesh, shares: tuple[float, ...] = KEPT_SHARES, n_directions: int = N_DIRECTIONS):
    """Capped pieces of ``mesh``'s surface: ``(kept share, (F, 3, 3) float32 triangles)`` per
    direction and share, or nothing when the surface is not a closed manifold solid."""
    import manifold3d

    surface = mesh.surface()
    vertices, faces = surface.welded_vertices, surface.welded_faces
    solid = manifold3d.Manifold(
        manifold3d.Mesh(
            vert_properties=np.ascontiguousarray(vertices, dtype=np.float32),
            tri_verts=np.ascontiguousarray(faces, dtype=np.uint32),
        )
    )
    if solid.status() != manifold3d.Error.NoError or solid.is_empty():
        return []
    if solid.volume() < 0:  # an inside-out file: manifold keeps the winding, so cuts would keep
        faces = faces[:, ::-1]  # the other side; the same solid wound outward cuts the same way
        solid = manifold3d.Manifold(
            manifold3d.Mesh(
                vert_properties=np.ascontiguousarray(vertices, dtype=np.float32),
                tri_verts=np.ascontiguousarray(faces, dtype=np.uint32),
            )
        )
    tri = np.asarray(vertices, dtype=np.float64)[faces]
    centres = tri.mean(axis=1)
    areas = triangle_areas(tri.astype(np.float32)).astype(np.float64)
    out = []
    for normal in directions(n_directions):
        height = centres @ normal
        order = np.argsort(height, kind="stable")
        cumulative = np.cumsum(areas[order])
        for kept in shares:
            at = min(int(np.searchsorted(cumulative, (1.0 - kept) * cumulative[-1])), len(order) - 1)
            piece = solid.trim_by_plane(tuple(normal.tolist()), float(height[order[at]])).to_mesh()
            piece_faces = np.asarray(piece.tri_verts)
            if len(piece_faces):
                points = np.asarray(piece.vert_properties, dtype=np.float32)[:, :3]
                out.append((kept, points[piece_faces]))
    return out
