"""The small-file fast routes give what the reference computations give, bit for bit
(issue 18, item 1).

Each speed-up of the small-file pipeline replaced a computation by a cheaper one with the same
numbers (or skips work whose result cannot change the answer); these tests run the new route
and the reference on the same meshes - several bodies with loose triangles, one body, and a
degenerate surface (slivers, repeated triangles, a flat plate) - and compare them exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

import scanner.features.sampling as sampling
from scanner.mesh import Mesh


def _multi_body(seed: int) -> np.ndarray:
    """(F, 3, 3) float32: five perturbed spheres, a box and a few loose triangles, shuffled."""
    rng = np.random.default_rng(seed)
    parts = []
    for i in range(5):
        s = trimesh.creation.icosphere(subdivisions=1 + i % 3)
        v = s.vertices * rng.uniform(0.5, 2.0, 3) + rng.uniform(-9, 9, 3)
        parts.append(v[s.faces])
    box = trimesh.creation.box(extents=(3.0, 1.0, 0.5))
    parts.append(box.vertices[box.faces] + 20.0)
    parts.append(rng.normal(size=(7, 3, 3)))
    tri = np.concatenate(parts).astype(np.float32)
    return tri[rng.permutation(len(tri))]


def _single_body(seed: int) -> np.ndarray:
    """One perturbed sphere of ~1,300 triangles, as the throughput bench makes them."""
    rng = np.random.default_rng(seed)
    s = trimesh.creation.icosphere(subdivisions=3)
    k = rng.uniform(1, 4, 3)
    v = s.vertices * (1 + 0.2 * np.sin(k[0] * s.vertices[:, :1]) * np.cos(k[1] * s.vertices[:, 1:2]))
    return (v * rng.uniform(0.5, 3.0, 3))[s.faces].astype(np.float32)


def _degenerate(seed: int) -> np.ndarray:
    """A thin flat plate with slivers, zero-area and repeated triangles and a tube beside it."""
    rng = np.random.default_rng(seed)
    plate = trimesh.creation.box(extents=(4.0, 3.0, 1e-3))
    tube = trimesh.creation.annulus(r_min=0.4, r_max=0.5, height=2.0, sections=16)
    tri = np.concatenate([plate.vertices[plate.faces], tube.vertices[tube.faces] + 5.0])
    sliver = tri[:6].copy()
    sliver[:, 2] = sliver[:, 1] + 1e-7 * rng.normal(size=(6, 3))
    flat = np.repeat(tri[:4, :1], 3, axis=1)  # zero area
    return np.concatenate([tri, tri[:5], sliver, flat]).astype(np.float32)


MESHES = {
    "multi-body": [_multi_body(s) for s in (0, 1)],
    "single-body": [_single_body(s) for s in (2, 3)],
    "degenerate": [_degenerate(s) for s in (4,)],
}
CASES = [(kind, i) for kind, meshes in MESHES.items() for i in range(len(meshes))]


def surface(kind: str, i: int) -> Mesh:
    return Mesh(vertices=MESHES[kind][i].reshape(-1, 3)).surface()


@pytest.mark.parametrize(("kind", "i"), CASES)
def test_sample_fraction_is_the_float_remainder(kind: str, i: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sampler's ``x - floor(x)`` gives the points that ``x % 1.0`` gave: in the numpy code
    (:func:`sampling._fraction`) and in the compiled kernel's (scanner/_kernels.c)."""
    from scanner import kernels

    s = surface(kind, i)
    compiled = sampling.sample_surface(s.corners32, corner_keys=s.corner_keys).coords
    monkeypatch.setattr(kernels, "compiled", None)
    new = sampling.sample_surface(s.corners32, corner_keys=s.corner_keys).coords
    monkeypatch.setattr(sampling, "_fraction", lambda x: x % 1.0)
    old = sampling.sample_surface(s.corners32, corner_keys=s.corner_keys).coords
    assert new.dtype == old.dtype and new.shape == old.shape
    assert new.tobytes() == old.tobytes() and compiled.tobytes() == old.tobytes()


def test_fraction_matches_the_remainder_on_edge_values() -> None:
    x = np.array([0.0, 1.0, 2.0, 0.5, 1e-300, 5e-324, 8191.999999999999, 1 - 2**-53, 2**40 + 0.25, 3.0 - 2**-51])
    x = np.concatenate([x, np.random.default_rng(0).uniform(0, 9000, 10_000)])
    assert sampling._fraction(x.copy()).tobytes() == (x % 1.0).tobytes()


def _reference_affine_row(tri: np.ndarray, keys: np.ndarray, width: int) -> np.ndarray:
    """The whitened row as :func:`affine_row` computed it before it was staged."""
    from scanner.features.affine import _BLOCK, AFFINE_FAMILIES, AFFINE_WIDTH, _whitened

    white64, scale = _whitened(tri)
    white = np.empty(white64.shape, dtype=np.float32)
    for lo in range(0, len(white64), _BLOCK):
        white[lo : lo + _BLOCK] = white64[lo : lo + _BLOCK] / scale
    sample = sampling.sample_surface(white, corner_keys=keys)
    out = np.zeros(width, dtype=np.float32)
    parts = [np.sqrt(f.weight) * np.asarray(f.compute(sample), dtype=np.float64) for f in AFFINE_FAMILIES]
    out[:AFFINE_WIDTH] = np.concatenate(parts)
    return out


@pytest.mark.parametrize(("kind", "i"), CASES)
def test_staged_affine_row_is_the_affine_row(kind: str, i: int) -> None:
    from scanner.features import DESCRIPTOR_SIZE
    from scanner.features.affine import StagedAffineRow, affine_row

    s = surface(kind, i)
    reference = _reference_affine_row(s.corners32, s.corner_keys, DESCRIPTOR_SIZE)
    staged = StagedAffineRow(s.corners32, s.corner_keys, DESCRIPTOR_SIZE)
    head = staged.head  # the head first, as the matcher asks: the row then reuses it
    assert staged.row.tobytes() == reference.tobytes()
    assert head.tobytes() == reference[: len(head)].tobytes() and len(head) == 24
    assert affine_row(s.corners32, s.corner_keys, DESCRIPTOR_SIZE).tobytes() == reference.tobytes()


def _stretched(tri: np.ndarray, factor: float) -> np.ndarray:
    return (tri * np.array([factor, 1.0, 1.0], dtype=np.float32)).astype(np.float32)


def test_the_head_gate_gives_the_hits_of_the_whole_row() -> None:
    """Signatures: the test meshes' whitened rows. Queries: each mesh and stretched copies,
    against every signature (hits) and against the others only (in band or not, no hit). With
    the head asked first, every query gives exactly the hits it gave without it, and the
    whole row is computed only when the head left a signature within reach."""
    from scanner.features import DESCRIPTOR_SIZE, describe_triangles
    from scanner.features.affine import AFFINE_THRESHOLD, AffineIndex, StagedAffineRow

    meshes = [surface(kind, i) for kind, i in CASES]
    plain = np.stack([describe_triangles(m.corners32, m.corner_keys) for m in meshes])
    affine = np.stack([StagedAffineRow(m.corners32, m.corner_keys, DESCRIPTOR_SIZE).row for m in meshes])
    thresholds = np.full(len(meshes), AFFINE_THRESHOLD)
    everyone = AffineIndex(affine, np.arange(len(meshes)), thresholds, plain)
    hits_seen, gated_out = 0, 0
    for k, m in enumerate(meshes):
        others = np.arange(len(meshes)) != k
        without = AffineIndex(affine[others], np.flatnonzero(others), thresholds[others], plain[others])
        for tri in (m.corners32, _stretched(m.corners32, 1.1), _stretched(m.corners32, 1.2)):
            q = Mesh(vertices=tri.reshape(-1, 3)).surface()
            whole = describe_triangles(q.corners32, q.corner_keys)
            for index in (everyone, without):
                staged = StagedAffineRow(q.corners32, q.corner_keys, DESCRIPTOR_SIZE)
                calls: list[str] = []

                def row(staged: StagedAffineRow = staged, calls: list[str] = calls) -> np.ndarray:
                    calls.append("row")
                    return staged.row

                gated = index.query(whole, row, rivals=1.5, head=lambda staged=staged: staged.head)
                ungated = index.query(whole, lambda staged=staged: staged.row, rivals=1.5)
                assert gated == ungated
                hits_seen += len(gated)
                gated_out += not calls and "head" in staged.__dict__  # in band, settled by the head
    assert hits_seen >= len(meshes)  # each mesh finds itself (and its stretched copies mostly)
    assert gated_out > 0


@pytest.mark.parametrize(("kind", "i"), CASES)
def test_shared_cast_blocks_give_the_shape_features(kind: str, i: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Line casts reading one shared block (with :func:`_face_values`' edges) give the shape
    features of casts that make their block afresh, per cast, as before."""
    import scanner.classify.shape as shape_mod
    from scanner import kernels

    monkeypatch.setattr(kernels, "shape", None)  # the numpy casts (the compiled one reads no blocks)
    s = surface(kind, i)
    new = shape_mod.shape_features(s)
    fresh = shape_mod._cast_blocks
    monkeypatch.setattr(shape_mod, "_cast_blocks", lambda tri, centroid, edges: fresh(tri, centroid, None))
    old = shape_mod.shape_features(Mesh(vertices=s.corners32.reshape(-1, 3)).surface())
    assert new.tobytes() == old.tobytes()


def _reference_bins(scaled: np.ndarray, fine: int) -> np.ndarray:
    idx = scaled.astype(np.int64)
    np.clip(idx, 0, fine - 1, out=idx)
    return idx


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fine_bins_are_the_int64_bins(dtype: type) -> None:
    from scanner.features.families import _fine_bins

    rng = np.random.default_rng(1)
    fine = 640
    cases = [
        rng.uniform(-50, 700, 98_304),
        np.array([-1.0, -0.999, -0.0, 0.0, 0.5, 639.0, 639.999, 640.0, 1e6, -1e6, 2.0**31 - 256, -(2.0**31) + 256]),
        np.array([0.5, 3e9, 7.0]),  # beyond int32: the int64 route
        np.array([0.5, -3e9, 7.0]),
        np.array([1.0, np.nan, 5.0]),
        np.array([1.0, np.inf, 5.0]),
        np.array([1.0, -np.inf, 5.0]),
    ]
    with np.errstate(invalid="ignore"):
        for values in cases:
            scaled = values.astype(dtype)
            got = _fine_bins(scaled, fine)
            np.testing.assert_array_equal(got, _reference_bins(scaled, fine))


@pytest.mark.parametrize(("kind", "i"), CASES)
def test_descriptor_rows_with_int32_bins(kind: str, i: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every family's vector, and the whitened row, are those of the int64 bins (the numpy
    code's: the compiled histogram, which takes no bins from ``_fine_bins``, is off)."""
    import scanner.features.families as families
    from scanner import kernels
    from scanner.features import DESCRIPTOR_SIZE, describe
    from scanner.features.affine import affine_row

    monkeypatch.setattr(kernels, "compiled", None)
    s = surface(kind, i)
    new = describe(s).rows()[0], affine_row(s.corners32, s.corner_keys, DESCRIPTOR_SIZE)
    monkeypatch.setattr(families, "_fine_bins", _reference_bins)
    s = surface(kind, i)
    old = describe(s).rows()[0], affine_row(s.corners32, s.corner_keys, DESCRIPTOR_SIZE)
    assert new[0].tobytes() == old[0].tobytes() and new[1].tobytes() == old[1].tobytes()


def _non_manifold() -> np.ndarray:
    """Three triangles on one edge (non-manifold), an open fan and a closed box."""
    fin = np.array([[[0, 0, 0], [1, 0, 0], [0.5, 1, 0]], [[0, 0, 0], [1, 0, 0], [0.5, 0, 1]],
                    [[0, 0, 0], [1, 0, 0], [0.5, -1, 0.2]]], dtype=np.float64)  # fmt: skip
    fan = np.array([[[3, 0, 0], [4, 0, 0], [4, 1, 0]], [[3, 0, 0], [4, 1, 0], [3, 1, 0.1]]], dtype=np.float64)
    box = trimesh.creation.box(extents=(1.0, 2.0, 0.5))
    return np.concatenate([fin, fan, box.vertices[box.faces] + 7.0]).astype(np.float32)


def _reference_edge_pairs(key: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """The classifier's edge statistics' own run count, as it was."""
    first = np.ones(len(key), dtype=bool)
    first[1:] = key[1:] != key[:-1]
    starts = np.flatnonzero(first)
    counts = np.diff(np.append(starts, len(key)))
    pairs = starts[counts == 2]
    return order[pairs], order[pairs + 1], bool(np.all(counts == 2))


@pytest.mark.parametrize(("kind", "i"), [*CASES, ("non-manifold", 0)])
def test_two_face_edges_are_the_edge_statistics_pairs(kind: str, i: int) -> None:
    from scanner.classify.shape import shape_features
    from scanner.features.patches import mesh_patch_codes, patch_codes

    tri = _non_manifold() if kind == "non-manifold" else MESHES[kind][i]
    s = Mesh(vertices=tri.reshape(-1, 3)).surface()
    key, position, _ = s.sorted_edges
    first, second, closed = s.two_face_edges
    ref_first, ref_second, ref_closed = _reference_edge_pairs(key, position)
    assert first.tobytes() == ref_first.tobytes() and second.tobytes() == ref_second.tobytes()
    assert closed == ref_closed
    if kind in ("single-body", "non-manifold"):
        assert closed == (kind == "single-body")  # a fin and a fan are open
    codes = mesh_patch_codes(s)
    alone = patch_codes(s.welded_vertices, s.welded_faces, (key, position))  # its own pairs
    assert codes.codes.tobytes() == alone.codes.tobytes() and codes.weights.tobytes() == alone.weights.tobytes()
    assert np.isfinite(shape_features(s)).all()


def test_two_face_edges_of_tiny_inputs() -> None:
    from scanner.mesh import two_face_edges

    for n in (0, 1):
        key, position = np.arange(n, dtype=np.int64), np.arange(n, dtype=np.int64)
        first, second, closed = two_face_edges(key, position)
        ref = _reference_edge_pairs(key, position)
        assert len(first) == len(second) == 0 and closed == ref[2] == (n == 0)


def _reference_density(pts: np.ndarray, cell: float = sampling.DENSITY_CELL) -> np.ndarray:
    """density_weights as it was: the blur on the 3-D grid, axis by axis."""
    reach = sampling.DENSITY_REACH
    q = np.clip(pts.astype(np.float64), -reach, reach) * (1.0 / cell)
    base = np.floor(q)
    frac = q - base
    cells = base.astype(np.int64)
    cells -= cells.min(axis=1, keepdims=True) - 2
    dims = cells.max(axis=1) + 4
    steps = (dims[1] * dims[2], dims[2], 1)
    flat = cells[0] * steps[0] + cells[1] * steps[1] + cells[2]
    corners = [dx * steps[0] + dy * steps[1] + dz for dx in (0, 1) for dy in (0, 1) for dz in (0, 1)]
    ids = flat[None, :] + np.asarray(corners, dtype=np.int64)[:, None]
    x, y, z = (np.stack([1.0 - f, f]) for f in frac)
    share = ((x[:, None, :] * y[None, :, :])[:, :, None, :] * z[None, None, :, :]).reshape(8, -1)
    grid = np.bincount(ids.reshape(-1), weights=share.reshape(-1), minlength=int(dims.prod()))
    grid = grid.reshape(tuple(int(d) for d in dims))
    for axis in range(3):
        src = np.moveaxis(grid, axis, 0)
        out = src + src
        out[1:] += src[:-1]
        out[:-1] += src[1:]
        grid = np.moveaxis(out, 0, axis)
    density = (np.ascontiguousarray(grid).reshape(-1).take(ids) * share).sum(axis=0)
    w = 1.0 / np.maximum(density, 1e-12)
    return w * (len(w) / w.sum())


@pytest.mark.parametrize(("kind", "i"), CASES)
def test_flat_blur_density_weights_are_the_grid_blur(kind: str, i: int) -> None:
    s = surface(kind, i)
    coords = sampling.sample_surface(s.corners32, corner_keys=s.corner_keys).coords
    for pts in (coords, coords.astype(np.float64), coords[:, :5], coords * 40.0, coords * 1e-4):
        assert sampling.density_weights(pts).tobytes() == _reference_density(pts).tobytes()


def test_flat_blur_density_weights_on_thin_and_far_point_sets() -> None:
    rng = np.random.default_rng(9)
    sets = [
        np.zeros((3, 7)),  # one cell
        np.stack([rng.uniform(-1, 1, 500), np.zeros(500), np.zeros(500)]),  # a line: a 1-cell-thick grid
        np.concatenate([rng.normal(size=(3, 800)), [[50.0], [-60.0], [0.0]]], axis=1),  # a far speck, clipped
        rng.normal(size=(3, 3000)).astype(np.float32),
    ]
    for pts in sets:
        assert sampling.density_weights(pts).tobytes() == _reference_density(pts).tobytes()


def _walls() -> np.ndarray:
    """A box cut in two halves that touch (a wall), beside a sphere."""
    box = trimesh.creation.box(extents=(2.0, 1.0, 1.0))
    sphere = trimesh.creation.icosphere(subdivisions=2)
    parts = [box.vertices[box.faces], (box.vertices + [2.0, 0, 0])[box.faces], (sphere.vertices + 9.0)[sphere.faces]]
    return np.concatenate(parts).astype(np.float32)


@pytest.mark.parametrize(("kind", "i"), [*CASES, ("walls", 0)])
def test_walls_of_one_chunk_reuse_its_rows(kind: str, i: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A surface of one chunk keeps its float64 rows and centres for the plane keys (the numpy
    code, without the compiled kernels): the walls are those found with both made afresh in
    each pass, chunk by chunk, as before - and those the kernels find."""
    import scanner.mesh as mesh_mod
    from scanner import kernels

    tri = _walls() if kind == "walls" else MESHES[kind][i]
    s = Mesh(vertices=tri.reshape(-1, 3)).surface()
    owner = s.body_labels() if kind != "walls" else np.minimum(np.arange(s.triangle_count) // 12, 2)  # 3 pieces
    compiled = mesh_mod.shared_walls(s.corners32), mesh_mod.shared_walls(s.corners32, owner)
    monkeypatch.setattr(kernels, "compiled", None)
    made = []
    rows64 = mesh_mod._rows64
    monkeypatch.setattr(mesh_mod, "_rows64", lambda c: made.append(len(c)) or rows64(c))
    new = mesh_mod.shared_walls(s.corners32), mesh_mod.shared_walls(s.corners32, owner)
    assert made == [s.triangle_count] * 2  # once per call
    monkeypatch.setattr(mesh_mod, "_WALL_CHUNK", 37)  # chunked: the rows and centres made twice, as before
    old = mesh_mod.shared_walls(s.corners32), mesh_mod.shared_walls(s.corners32, owner)
    np.testing.assert_array_equal(new[0], old[0])
    np.testing.assert_array_equal(new[1], old[1])
    assert kind != "walls" or new[0].sum() == new[1].sum() == 4  # the two caps of the cut (two triangles each)
    np.testing.assert_array_equal(compiled[0], new[0])
    np.testing.assert_array_equal(compiled[1], new[1])


def _reference_extreme_points(points: np.ndarray) -> np.ndarray:
    """The extreme-point search before the mirrored directions were folded: every one of the 64
    directions multiplied out in float32, ``argmax`` over the points."""
    from scanner.classify.shape import _HULL_DIRECTIONS

    d, p32 = _HULL_DIRECTIONS, np.ascontiguousarray(points.T, dtype=np.float32)
    out = d[:, 0:1] * p32[0]
    out = out + d[:, 1:2] * p32[1]
    out = out + d[:, 2:3] * p32[2]
    return np.argmax(out, axis=1)


@pytest.mark.parametrize("n", [70, 2_500, 8_192, 8_193, 20_000])
def test_extreme_points_of_half_the_directions(n: int) -> None:
    """argmin of the first half's products answers for the mirrored half: the same first
    extreme points, with ties (rounded coordinates), across blocks and with a NaN row."""
    from scanner.classify.shape import _extreme_points

    rng = np.random.default_rng(n)
    for points in (rng.normal(size=(n, 3)), np.round(rng.normal(size=(n, 3)), 1), np.where(
            np.arange(n)[:, None] == 5, np.nan, rng.normal(size=(n, 3)))):  # fmt: skip
        assert np.array_equal(_extreme_points(points), _reference_extreme_points(points))


def test_qhull_volume_is_convex_hulls() -> None:
    from scipy.spatial import ConvexHull, QhullError

    from scanner.classify.shape import _hull_volume, _qhull_volume

    rng = np.random.default_rng(5)
    for n in (4, 12, 57, 200):
        points = rng.normal(size=(n, 3)) * rng.uniform(0.1, 3.0, 3)
        assert _qhull_volume(points) == ConvexHull(points).volume
    flat = np.c_[rng.normal(size=(30, 2)), np.zeros(30)]
    with pytest.raises(QhullError):
        _qhull_volume(flat)
    assert _hull_volume(flat) == 0.0


@pytest.mark.parametrize("n", [0, 1, 2, 10, 3_000, 20_000])
def test_code_size_order_is_lexsort(n: int) -> None:
    """The local-patch query's two stable sorts give ``np.lexsort``'s order: distinct codes,
    repeated codes (ties broken by size, then position) and codes alike in their high bits."""
    from scanner.patch_index import _code_size_order

    rng = np.random.default_rng(n)
    hashes = rng.integers(0, 2**63, n, dtype=np.int64).astype(np.uint64) * np.uint64(2)
    repeated = hashes[rng.integers(0, max(n // 10, 1), n)] if n else hashes
    alike = (rng.integers(0, 4, n).astype(np.uint64) << np.uint64(60)) | rng.integers(0, 3, n).astype(np.uint64)
    for codes in (hashes, repeated, alike):
        sizes = rng.integers(-5, 40, n).astype(np.int16)
        assert np.array_equal(_code_size_order(codes, sizes), np.lexsort((sizes, codes)))


def test_axis_bounds_are_the_column_reductions() -> None:
    """The sampler's bounds from contiguous rows are the stride-3 columns' minima and maxima,
    bit for bit, signed zeros and NaN included (those take the column reductions)."""
    from scanner.features.sampling import _axis_bounds

    def reference(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cols = c.T
        return (np.array([x.min() for x in cols], dtype=np.float64),
                np.array([x.max() for x in cols], dtype=np.float64))  # fmt: skip

    rng = np.random.default_rng(9)
    base = rng.normal(size=(9_000, 3)).astype(np.float32)
    flat = base.copy()
    flat[:, 2] = np.where(rng.random(len(flat)) < 0.5, np.float32(-0.0), np.float32(0.0))
    nan = base.copy()
    nan[17, 1] = np.nan
    for corners in (
        base,
        flat,
        nan,
        np.abs(base),
        -np.abs(base),
        base[:1],
        rng.normal(size=(70_000, 3)).astype(np.float32),
    ):
        lo, hi = _axis_bounds(corners)
        ref_lo, ref_hi = reference(corners)
        np.testing.assert_array_equal(lo, ref_lo)
        np.testing.assert_array_equal(hi, ref_hi)
        assert np.array_equal(np.signbit(lo), np.signbit(ref_lo)) and np.array_equal(np.signbit(hi), np.signbit(ref_hi))


def _reference_intrinsic_head(tri: np.ndarray, centroid: np.ndarray, radius: float, corner_keys: np.ndarray,
                              offset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The seeds before congruent triangles are told apart, and the corner order, as the (F, 3)
    column form computed them (before the (3, F) rows)."""
    from scanner.mesh import _splitmix

    scale = np.float32(sampling.KEY_STEPS / radius)
    t = np.ascontiguousarray((tri - offset).transpose(1, 2, 0))
    edge = [t[(k + 2) % 3] - t[(k + 1) % 3] for k in range(3)]
    rel = t - centroid.astype(np.float32)[None, :, None]
    measure = np.empty((len(tri), 3), dtype=np.int64)
    for k in range(3):
        e, r = edge[k], rel[k]
        opposite = np.sqrt(e[0] * e[0] + e[1] * e[1] + e[2] * e[2]) * scale
        reach = np.sqrt(r[0] * r[0] + r[1] * r[1] + r[2] * r[2]) * scale
        measure[:, k] = (opposite.astype(np.int64) << np.int64(24)) | np.minimum(reach.astype(np.int64), (1 << 24) - 1)

    def first(i: int, j: int) -> np.ndarray:
        mi, mj = measure[:, i], measure[:, j]
        return (mi > mj) | ((mi == mj) & (corner_keys[:, i] < corner_keys[:, j]))

    f01, f02, f12 = (first(i, j).astype(np.int64) for i, j in ((0, 1), (0, 2), (1, 2)))
    ranks = (2 - f01 - f02, 1 + f01 - f12, f02 + f12)
    order = np.empty((len(measure), 3), dtype=np.int64)
    for r in range(3):
        order[:, r] = (ranks[1] == r) + 2 * (ranks[2] == r)
    canon = np.take_along_axis(measure, order, 1).astype(np.uint64)
    with np.errstate(over="ignore"):
        seeds = _splitmix(_splitmix(_splitmix(canon[:, 0] ^ sampling.SEED) + canon[:, 1]) + canon[:, 2])
    return seeds, order


@pytest.mark.parametrize(("kind", "i"), CASES)
def test_intrinsic_keys_on_rows_are_the_column_form(kind: str, i: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seeds and corner order from (3, F) rows are the (F, 3) column form's, in one block and
    in several (``_CHUNK``), where no two triangles are congruent (every seed its own)."""
    s = surface(kind, i)
    tri, keys = s.corners32, s.corner_keys
    offset = ((tri.reshape(-1, 3).min(axis=0) + tri.reshape(-1, 3).max(axis=0)) / 2).astype(np.float32)
    centroid, radius = np.array([0.2, -0.1, 0.3]), 1.7
    want_seeds, want_order = _reference_intrinsic_head(tri, centroid, radius, keys, offset)
    for chunk in (sampling._CHUNK, 7):
        monkeypatch.setattr(sampling, "_CHUNK", chunk)
        seeds, order = sampling.intrinsic_keys(tri, centroid, radius, keys, offset)
        np.testing.assert_array_equal(order, want_order)
        alone = np.ones(len(want_seeds), dtype=bool)  # seeds no other triangle shares: not re-ranked
        ordered = np.sort(want_seeds)
        repeated = ordered[1:][ordered[1:] == ordered[:-1]]
        alone &= ~np.isin(want_seeds, repeated)
        np.testing.assert_array_equal(seeds[alone], want_seeds[alone])


def test_splitmix_without_errstate_is_the_same_hash() -> None:
    """Arrays are mixed outside ``np.errstate`` (numpy's integer array loops never check
    overflow): the same hashes as the in-place form under it, and no warning; a scalar key
    takes the scalar form under it."""
    import warnings

    from scanner.mesh import _MIX1, _MIX2, _MIX3, _splitmix

    def reference(x: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            x = np.add(x, _MIX1)
            x ^= x >> np.uint64(30)
            x *= _MIX2
            x ^= x >> np.uint64(27)
            x *= _MIX3
            x ^= x >> np.uint64(31)
            return x

    keys = np.random.default_rng(1).integers(0, 2**63, 5000, dtype=np.int64).astype(np.uint64) * np.uint64(2)
    keys[:3] = (0, 2**64 - 1, 2**63)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        got = _splitmix(keys)
        scalar = _splitmix(np.uint64(2**64 - 1))
    np.testing.assert_array_equal(got, reference(keys.copy()))
    assert scalar == reference(np.array([2**64 - 1], dtype=np.uint64))[0]


def test_forest_table_walk_reaches_the_fancy_index_walks_leaves() -> None:
    """The flat-table forest walk ends in the leaves the 2-D fancy-indexing walk reached, for
    one row and several (the shipped model's 60 trees), and a forest with a one-child node
    (not scikit-learn's) takes the old walk."""
    from scanner.classify.model import load_model

    fast = load_model()._fast
    assert fast is not None

    def reference(z: np.ndarray) -> np.ndarray:  # the 2-D fancy-indexing walk: no flat tables
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(fast, "_walk_tables", lambda: None)
            return fast._leaf_values(z)

    rng = np.random.default_rng(4)
    for n in (1, 2, 7):
        x = rng.normal(size=(n, len(fast.mean))) * fast.scale * 2 + fast.mean
        z = ((x - fast.mean) / fast.scale).astype(np.float32).astype(np.float64)
        np.testing.assert_array_equal(fast._leaf_values(z), reference(z))
    odd = type(fast).from_arrays(fast.arrays())
    odd.right = odd.right.copy()
    odd.right[0, 0] = -1  # a root with a left child only
    assert odd._walk_tables() is None


@pytest.mark.parametrize(("kind", "i"), CASES)
def test_small_components_are_scipys_public_components(kind: str, i: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bodies of a small mesh from the two CSR halves made here are those of the public
    ``connected_components`` on the face-vertex graph (the same partition, and so the same
    labels once renumbered by first face); without scipy's private traversal the public route
    is taken."""
    import scanner.mesh as mesh_module

    s = surface(kind, i)
    faces, firsts = s.welded_faces, s._welded[2]
    by_vertex = s.__dict__.get("_corners_by_vertex")
    assert by_vertex is not None
    n_new, new = mesh_module._face_vertex_components(faces, firsts, by_vertex)
    n_old, old = mesh_module._face_vertex_components(faces, firsts)
    assert n_new == n_old
    # the same partition: each new label maps to exactly one old label and back
    pairs = np.unique(np.stack([new, old]), axis=1)
    assert pairs.shape[1] == n_old == len(np.unique(new))
    monkeypatch.setattr(mesh_module, "_small_face_vertex_components", lambda faces, by_vertex: None)
    n_fallback, fallback = mesh_module._face_vertex_components(faces, firsts, by_vertex)
    assert n_fallback == n_old and np.array_equal(fallback, old)


@pytest.mark.parametrize(("kind", "i"), CASES)
def test_sample_from_rows_is_the_gathered_sample(kind: str, i: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A surface of one block samples its points' frame from the centred (3, 3, F) rows; with
    blocks smaller than the surface (no rows kept) the (C, 3, 3) gather gives the same points."""
    s = surface(kind, i)
    rows_sample = sampling.sample_surface(s.corners32, corner_keys=s.corner_keys)
    monkeypatch.setattr(sampling, "_CHUNK", 5)  # blocks of the seeds' measures: no shared rows
    gathered = sampling.sample_surface(s.corners32, corner_keys=s.corner_keys)
    np.testing.assert_array_equal(rows_sample.coords, gathered.coords)
