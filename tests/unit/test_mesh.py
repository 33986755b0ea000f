"""Mesh: bodies, the canonical geometry hash and its invariances, and basic measurements."""

from __future__ import annotations

import numpy as np
import pytest
from _builders import soup, tetra, unit_cube

from scanner.mesh import Mesh, weld

CUBE_V, CUBE_F = unit_cube()


def soup_mesh(vertices, faces, **kw) -> Mesh:
    return Mesh(vertices=soup(vertices, faces).reshape(-1, 3), **kw)


def indexed_mesh(vertices, faces, **kw) -> Mesh:
    return Mesh(vertices=np.asarray(vertices, dtype=np.float64), faces=np.asarray(faces), **kw)


# ----------------------------------------------------------------------------- measurements


@pytest.mark.parametrize("make", [soup_mesh, indexed_mesh], ids=["soup", "indexed"])
def test_unit_cube_measurements(make):
    mesh = make(CUBE_V, CUBE_F)
    assert mesh.triangle_count == 12
    assert mesh.volume == pytest.approx(1.0)
    assert mesh.area == pytest.approx(6.0)
    assert mesh.is_watertight
    assert mesh.euler_number == 2
    assert mesh.body_count == 1
    assert len(mesh.welded_vertices) == 8
    assert mesh.edge_count == 18
    np.testing.assert_array_equal(mesh.bounds, [[0, 0, 0], [1, 1, 1]])
    np.testing.assert_array_equal(mesh.extents, [1, 1, 1])


def test_inside_out_cube_has_negative_volume():
    assert soup_mesh(CUBE_V, CUBE_F[:, ::-1]).volume == pytest.approx(-1.0)


def test_tetrahedron_measurements():
    mesh = soup_mesh(*tetra())
    assert mesh.volume == pytest.approx(1 / 6)
    assert mesh.area == pytest.approx(1.5 + np.sqrt(3) / 2)
    assert mesh.is_watertight
    assert mesh.euler_number == 2


def test_open_box_is_not_watertight():
    mesh = soup_mesh(CUBE_V, CUBE_F[2:])  # no bottom
    assert not mesh.is_watertight
    assert mesh.euler_number == 1  # a disc


def test_inconsistent_winding_is_not_watertight():
    faces = CUBE_F.copy()
    faces[4] = faces[4][::-1]
    assert not soup_mesh(CUBE_V, faces).is_watertight


def test_summary_of_unit_cube():
    s = soup_mesh(CUBE_V, CUBE_F).summary()
    assert s["triangles"] == 12
    assert s["vertices"] == 8
    assert s["extents"] == [1.0, 1.0, 1.0]
    assert s["area"] == pytest.approx(6.0)
    assert s["volume"] == pytest.approx(1.0)
    assert s["watertight"] is True
    assert s["euler_number"] == 2
    assert len(s["geometry_hash"]) == 64


# ----------------------------------------------------------------------------- bodies


def two_cubes() -> tuple[np.ndarray, np.ndarray]:
    v2, f2 = unit_cube((3.0, 0.0, 0.0))
    return np.concatenate([CUBE_V, v2]), np.concatenate([CUBE_F, f2 + 8])


@pytest.mark.parametrize("make", [soup_mesh, indexed_mesh], ids=["soup", "indexed"])
def test_two_disjoint_cubes_are_two_bodies(make):
    mesh = make(*two_cubes())
    assert mesh.body_count == 2
    bodies = mesh.bodies()
    assert len(bodies) == 2
    for body in bodies:
        assert body.triangle_count == 12
        assert body.volume == pytest.approx(1.0)
        assert body.is_watertight
    assert bodies[0].bounds[0].tolist() == [0, 0, 0]
    assert bodies[1].bounds[0].tolist() == [3, 0, 0]
    assert mesh.euler_number == 4  # two spheres


def test_body_order_follows_first_face():
    v, f = two_cubes()
    f = np.concatenate([f[12:], f[:12]])  # the far cube first
    assert soup_mesh(v, f).bodies()[0].bounds[0].tolist() == [3, 0, 0]


def test_interleaved_faces_of_two_bodies():
    v, f = two_cubes()
    order = np.arange(24).reshape(2, 12).T.ravel()  # 0, 12, 1, 13, ...
    mesh = soup_mesh(v, f[order])
    np.testing.assert_array_equal(mesh.body_labels(), np.tile([0, 1], 12))
    assert [b.triangle_count for b in mesh.bodies()] == [12, 12]


def test_cubes_sharing_a_corner_are_one_body_whatever_the_groups():
    v2, f2 = unit_cube((1.0, 1.0, 1.0))  # touches at (1, 1, 1)
    v, f = np.concatenate([CUBE_V, v2]), np.concatenate([CUBE_F, f2 + 8])
    assert soup_mesh(v, f).body_count == 1
    # declared groups are names, not bodies: a printer prints the welded triangles
    assert soup_mesh(v, f, groups=np.repeat([0, 1], 12)).body_count == 1
    assert soup_mesh(v, f, groups=np.arange(24)).body_count == 1


def test_one_group_per_triangle_still_one_body():
    assert soup_mesh(CUBE_V, CUBE_F, groups=np.arange(12)).body_count == 1


def test_surface_drops_repeated_and_degenerate_triangles():
    tri = CUBE_V[CUBE_F]
    flipped = tri[:, ::-1]  # every triangle again, winding reversed
    a, b = tri[0, 0], tri[0, 1]
    sliver = np.stack([a, b, a + (b - a) * np.float32(0.37)])[None]  # collinear: no area
    padded = np.concatenate([tri, flipped, np.repeat(sliver, 50, axis=0)])
    mesh = Mesh(vertices=padded.reshape(-1, 3))
    assert mesh.triangle_count == 12 + 12 + 50
    surface = mesh.surface()
    assert surface.triangle_count == 12
    assert surface.geometry_hash == soup_mesh(CUBE_V, CUBE_F).geometry_hash
    clean = soup_mesh(CUBE_V, CUBE_F)
    assert clean.surface() is clean


def test_surface_keys_equal_a_fresh_mesh_of_its_triangles():
    """The surface's triangle keys and geometry hash are derived from the padded mesh's (its
    sorted keys less the dropped ones): they must be what the surface alone gives."""
    rng = np.random.default_rng(5)
    tri = rng.normal(size=(400, 3, 3)).astype(np.float32)
    repeats = tri[rng.integers(0, 400, 150)][:, ::-1]  # some triangles two or three times
    slivers = tri[:40].copy()
    slivers[:, 2] = slivers[:, 0] + np.float32(0.5) * (slivers[:, 1] - slivers[:, 0])
    padded = np.concatenate([tri, repeats, slivers, repeats[:20]])[rng.permutation(610)]
    surface = Mesh(vertices=padded.reshape(-1, 3)).surface()
    fresh = Mesh(vertices=surface.corners32.reshape(-1, 3))
    assert surface.triangle_count < 610
    for got, want in zip(surface.triangle_keys, fresh.triangle_keys, strict=True):
        assert np.array_equal(got, want)
    for got, want in zip(surface._sorted_triangle_keys, fresh._sorted_triangle_keys, strict=True):
        assert np.array_equal(got, want)
    assert surface.geometry_hash == fresh.geometry_hash


def test_single_body_returns_itself():
    mesh = soup_mesh(CUBE_V, CUBE_F)
    assert mesh.bodies() == [mesh]


def test_empty_mesh_has_no_bodies():
    mesh = Mesh(vertices=np.zeros((0, 3)))
    assert mesh.body_count == 0
    assert mesh.bodies() == []
    assert not mesh.is_watertight


# ----------------------------------------------------------------------------- geometry hash

REFERENCE = soup_mesh(CUBE_V, CUBE_F).geometry_hash


def test_hash_is_sha256_hex():
    assert len(REFERENCE) == 64
    int(REFERENCE, 16)


def test_hash_invariant_to_triangle_order():
    perm = np.random.default_rng(1).permutation(12)
    assert soup_mesh(CUBE_V, CUBE_F[perm]).geometry_hash == REFERENCE


def test_hash_invariant_to_corner_rotation():
    rolled = np.array([np.roll(f, k) for f, k in zip(CUBE_F, np.arange(12) % 3, strict=True)])
    assert not np.array_equal(rolled, CUBE_F)
    assert soup_mesh(CUBE_V, rolled).geometry_hash == REFERENCE


def test_hash_invariant_to_winding_flip():
    assert soup_mesh(CUBE_V, CUBE_F[:, ::-1]).geometry_hash == REFERENCE


def test_hash_same_for_indexed_and_soup():
    assert indexed_mesh(CUBE_V, CUBE_F).geometry_hash == REFERENCE


def test_hash_invariant_to_vertex_numbering_and_duplicates():
    perm = np.random.default_rng(2).permutation(8)
    inverse = np.argsort(perm)
    v = CUBE_V[perm]
    f = inverse[CUBE_F]
    assert indexed_mesh(v, f).geometry_hash == REFERENCE
    # a duplicated vertex and an unused one change nothing
    v2 = np.concatenate([CUBE_V, CUBE_V[:1], [[9.0, 9.0, 9.0]]])
    f2 = CUBE_F.copy()
    f2[f2 == 0] = 8
    assert indexed_mesh(v2, f2).geometry_hash == REFERENCE


def test_hash_same_for_float32_and_float64_and_negative_zero():
    assert Mesh(vertices=soup(CUBE_V, CUBE_F).reshape(-1, 3).astype(np.float32)).geometry_hash == REFERENCE
    negzero = np.where(CUBE_V == 0, -0.0, CUBE_V)
    assert np.signbit(negzero).any()
    assert indexed_mesh(negzero, CUBE_F).geometry_hash == REFERENCE


def test_hash_changes_when_one_coordinate_changes():
    v = CUBE_V.copy()
    v[6, 2] = np.nextafter(np.float32(1.0), np.float32(2.0))  # one float32 ulp
    assert indexed_mesh(v, CUBE_F).geometry_hash != REFERENCE


def test_hash_changes_when_a_triangle_is_dropped_or_duplicated():
    assert soup_mesh(CUBE_V, CUBE_F[1:]).geometry_hash != REFERENCE
    assert soup_mesh(CUBE_V, np.concatenate([CUBE_F, CUBE_F[:1]])).geometry_hash != REFERENCE


def test_hash_changes_when_the_mesh_moves():
    assert soup_mesh(CUBE_V + 1.0, CUBE_F).geometry_hash != REFERENCE


def test_hash_distinguishes_triangulations_of_the_same_square():
    v = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], dtype=float)
    a = soup_mesh(v, [[0, 1, 2], [0, 2, 3]]).geometry_hash
    b = soup_mesh(v, [[0, 1, 3], [1, 2, 3]]).geometry_hash
    assert a != b


# ----------------------------------------------------------------------------- weld


def test_weld_merges_bit_identical_points_only():
    pts = np.array([[0, 0, 0], [1, 0, 0], [0, 0, 0], [1, 0, 1e-7], [-0.0, 0, 0]], dtype=np.float64)
    unique, inverse = weld(pts)
    assert len(unique) == 3
    np.testing.assert_array_equal(unique[inverse], pts.astype(np.float32) + np.float32(0))
    assert inverse[0] == inverse[2] == inverse[4]
    assert inverse[1] != inverse[3]


def test_unique_sorted_is_numpys_unique() -> None:
    from scanner.arrays import unique_sorted

    rng = np.random.default_rng(3)
    for values in (
        rng.integers(0, 50, size=1000),
        rng.integers(0, 2**62, size=500, dtype=np.int64),
        rng.integers(0, 9, size=(40, 3)),
        np.zeros(0, dtype=np.int64),
        np.array([7]),
        np.array([2**64 - 1, 0, 2**64 - 1], dtype=np.uint64),
    ):
        expected = np.unique(values)
        got = unique_sorted(values)
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)


def test_stable_order_is_a_stable_argsort() -> None:
    """The packed value sort orders exactly as ``argsort(kind="stable")``: ties by position,
    including keys too large to pack (the argsort fallback)."""
    from scanner.arrays import stable_order

    rng = np.random.default_rng(5)
    for keys in (
        rng.integers(0, 40, size=5000),  # many ties
        rng.integers(0, 2**40, size=3000, dtype=np.int64),
        rng.integers(2**60, 2**62, size=100, dtype=np.int64),  # no room for the position
        np.zeros(0, dtype=np.int64),
        np.array([9]),
        np.array([3, 3, 1, 3, 1]),
    ):
        np.testing.assert_array_equal(stable_order(keys), np.argsort(keys, kind="stable"))


def test_d2_a3_legs_are_the_rolled_differences() -> None:
    """The legs and their weights computed without rolled copies are, bit for bit, the ones
    ``np.roll`` gives."""
    from scanner.features.families import TRIPLES_PER_POINT, _legs, _shift_pairs
    from scanner.features.sampling import sample_surface

    tri = np.random.default_rng(6).normal(size=(300, 3, 3)).astype(np.float32)
    sample = sample_surface(tri, n_points=1024)
    lengths, weights, cos, angle_weights = _legs(sample)
    pt, w = sample.weighted()
    m = len(cos)
    lu, lv, wu, wv = lengths[:m], lengths[m:], weights[:m], weights[m:]
    for t, (a, b) in enumerate(_shift_pairs(pt.shape[1], TRIPLES_PER_POINT)):
        u, v = np.roll(pt, -a, axis=1) - pt, np.roll(pt, -b, axis=1) - pt
        uu, vv, uv = (u * u).sum(axis=0), (v * v).sum(axis=0), (u * v).sum(axis=0)
        denom = np.sqrt(uu * vv)
        part = slice(t * pt.shape[1], (t + 1) * pt.shape[1])
        np.testing.assert_array_equal(lu[part], np.sqrt(uu))
        np.testing.assert_array_equal(lv[part], np.sqrt(vv))
        np.testing.assert_array_equal(cos[part], uv / np.where(denom > 0, denom, 1.0))
        np.testing.assert_array_equal(wu[part], np.roll(w, -a) * w)
        np.testing.assert_array_equal(wv[part], np.roll(w, -b) * w)
        np.testing.assert_allclose(angle_weights[part], np.roll(w, -a) * w * np.roll(w, -b), rtol=1e-12)
