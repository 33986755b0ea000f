"""Plane-cut pieces of a signature (scanner.features.pieces): what enrolment cuts, and that a
surface which is not a closed solid is left alone rather than cut wrongly."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from scanner.features.pieces import KEPT_SHARES, N_DIRECTIONS, directions, piece_row, piece_share, plane_pieces
from scanner.features.sampling import triangle_areas
from scanner.mesh import Mesh


def mesh_of(tm: trimesh.Trimesh) -> Mesh:
    return Mesh(vertices=np.asarray(tm.triangles, dtype=np.float64).reshape(-1, 3))


def test_piece_rows_name_their_share_and_are_not_body_rows() -> None:
    for kept in KEPT_SHARES:
        assert piece_share(piece_row(kept)) == pytest.approx(kept)
    for body in (0, 3, -1, -2, -3):  # bodies, whole file, loose triangles, walls
        assert piece_share(body) is None


def test_directions_cover_the_sphere_evenly() -> None:
    d = directions()
    assert d.shape == (N_DIRECTIONS, 3)
    assert np.allclose(np.linalg.norm(d, axis=1), 1.0)
    # every orientation is near a lattice direction: the worst of 2,000 random ones
    rng = np.random.default_rng(0)
    probe = rng.normal(size=(2000, 3))
    probe /= np.linalg.norm(probe, axis=1, keepdims=True)
    worst = np.degrees(np.arccos(np.clip((probe @ d.T).max(axis=1), -1, 1))).max()
    assert worst < 30.0  # 27.5 degrees at 32 directions (median 14)


def test_a_closed_solid_is_cut_into_capped_pieces_of_the_stated_share() -> None:
    tm = trimesh.creation.box(extents=(3.0, 1.0, 0.5))
    tm = tm.subdivide().subdivide()  # enough triangles for the share to be measured on centres
    pieces = plane_pieces(mesh_of(tm))
    assert len(pieces) == N_DIRECTIONS * len(KEPT_SHARES)
    total = float(tm.area)
    for kept, tri in pieces:
        piece = trimesh.Trimesh(**trimesh.triangles.to_kwargs(tri.astype(np.float64)))
        piece.merge_vertices()
        assert piece.is_watertight  # capped: a printable solid, as an uploader's cut would be
        # its original surface (without the cap) is about the stated share of the box's
        cap = piece.area - float(np.sum(triangle_areas(tri)[_on_original(tri, tm)]))
        assert 0.0 <= cap
        kept_area = piece.area - cap
        assert kept_area == pytest.approx(kept * total, abs=0.12 * total)


def _on_original(tri: np.ndarray, tm: trimesh.Trimesh) -> np.ndarray:
    """Triangles of a piece lying on the box's faces (the rest are the cap)."""
    centres = tri.mean(axis=1).astype(np.float64)
    half = np.asarray(tm.extents) / 2
    return (np.abs(np.abs(centres) - half[None, :]) < 1e-4).any(axis=1)


def test_an_open_surface_is_not_cut() -> None:
    tm = trimesh.creation.box(extents=(1.0, 2.0, 3.0))
    open_box = trimesh.Trimesh(tm.vertices, tm.faces[:-2])  # one face missing: not a solid
    assert plane_pieces(mesh_of(open_box)) == []


def test_an_inside_out_file_is_cut_like_the_same_solid_wound_outward() -> None:
    """Winding is not shape: a signature enrolled from an inside-out file must give the same
    pieces (manifold3d keeps an inverted solid inverted, which would keep the other sides)."""
    from scanner.features import describe_triangles

    tm = trimesh.creation.box(extents=(3.0, 1.0, 0.5)).subdivide()
    tm = tm.union(trimesh.creation.cylinder(radius=0.3, height=2.0), engine="manifold")
    outward = plane_pieces(mesh_of(tm))
    inward = plane_pieces(Mesh(vertices=np.asarray(tm.triangles, dtype=np.float64)[:, ::-1].reshape(-1, 3)))
    assert len(outward) == len(inward) == N_DIRECTIONS * len(KEPT_SHARES)
    a = np.stack([describe_triangles(t) for _, t in outward])
    b = np.stack([describe_triangles(t) for _, t in inward])
    np.testing.assert_array_equal(a, b)
