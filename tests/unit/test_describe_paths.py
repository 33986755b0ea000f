"""The describe path's fast routes give what the plain ones give (issue 18, item 3).

Each speed-up of describing a large mesh replaced a whole-array computation by a blocked one,
a graph by another graph or two gathers by one; these tests run both routes on the same input
(blocks made tiny so that small meshes cross many block boundaries) and compare the results.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import trimesh

import scanner.classify.shape as shape_mod
import scanner.features.affine as affine_mod
import scanner.features.sampling as sampling
import scanner.mesh as mesh_mod
from scanner.arrays import sorted_order_u64
from scanner.classify.shape import shape_features
from scanner.mesh import Mesh


def _blobs(seed: int) -> np.ndarray:
    """(F, 3, 3) float32 triangles: five perturbed spheres, a few loose triangles and one
    bent strip, shuffled (bodies interleaved in the file)."""
    rng = np.random.default_rng(seed)
    parts = []
    for i in range(5):
        s = trimesh.creation.icosphere(subdivisions=1 + i % 3)
        v = s.vertices * rng.uniform(0.5, 2.0, 3) + rng.uniform(-9, 9, 3)
        parts.append(v[s.faces])
    parts.append(rng.normal(size=(7, 3, 3)))
    tri = np.concatenate(parts).astype(np.float32)
    return tri[rng.permutation(len(tri))]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_face_vertex_components_match_the_edge_graph(seed: int) -> None:
    tri = _blobs(seed)
    soup = Mesh(vertices=tri.reshape(-1, 3))
    assert soup._welded[2] is not None  # the face-vertex graph route
    vertices, faces = soup.welded_vertices, soup.welded_faces
    indexed = Mesh(vertices=vertices, faces=faces)
    assert indexed._welded[2] is None  # the edge graph route
    assert soup.body_count == indexed.body_count >= 6
    np.testing.assert_array_equal(soup.body_labels(), indexed.body_labels())


def test_sorted_order_is_a_stable_argsort_with_its_keys() -> None:
    rng = np.random.default_rng(5)
    # keys that differ only in bits the packed sort drops: the order is checked and the exact
    # argsort taken
    close = rng.integers(0, 1000, 70_000).astype(np.uint64) << np.uint64(20)
    close |= rng.integers(0, 3, 70_000).astype(np.uint64)
    for keys in (
        rng.integers(0, 2**63, 100_000, dtype=np.int64).astype(np.uint64) * np.uint64(2),
        rng.integers(0, 50, 100_000).astype(np.uint64),  # many ties
        close,
        np.zeros(1, dtype=np.uint64),
    ):
        order, ordered = sorted_order_u64(keys)
        np.testing.assert_array_equal(order, np.argsort(keys, kind="stable"))
        np.testing.assert_array_equal(ordered, keys[order])


def test_weld_check_block_by_block_is_array_equal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mesh_mod, "_MATCH_ROWS", 5)
    p = np.random.default_rng(1).normal(size=(23, 3)).astype(np.float32)
    unique, inverse = p[:20], np.r_[np.arange(20), [3, 4, 5]]
    assert mesh_mod._rows_match(unique, inverse, np.concatenate([p[:20], p[3:6]]))
    moved = np.concatenate([p[:20], p[3:6]])
    moved[21, 2] += 1
    assert not mesh_mod._rows_match(unique, inverse, moved)
    nan = np.concatenate([p[:20], p[3:6]])
    nan[0, 0] = np.nan  # NaN rows never match, as in np.array_equal
    assert not mesh_mod._rows_match(np.where(np.isnan(nan[:20]), np.nan, unique), inverse, nan)


def test_rough_height_ratio_chooses_the_same_thin_triangles() -> None:
    tri = _blobs(3)
    sliver = tri[:40].copy()
    sliver[:, 2] = sliver[:, 0] + np.float32(1e-6) * (sliver[:, 1] - sliver[:, 0])
    odd = tri[:3].copy()
    odd[0, 1] = odd[0, 0]  # two equal corners: 0 / 0
    odd[1, 2, 1] = np.inf
    odd[2, 0, 0] = np.nan
    every = np.concatenate([tri, sliver, odd])
    rough, plain = mesh_mod._rough_height_ratio(every), mesh_mod._height_ratio(every)
    np.testing.assert_array_equal(rough < 1e-3, plain < 1e-3)
    np.testing.assert_allclose(rough, plain, rtol=1e-5, atol=1e-7)
    assert np.all(np.isfinite(rough))


def test_shape_features_block_by_block_are_the_whole_array_values(monkeypatch: pytest.MonkeyPatch) -> None:
    tri = _blobs(4)
    whole = shape_features(Mesh(vertices=tri.reshape(-1, 3)))
    monkeypatch.setattr(shape_mod, "_ROWS", 7)  # every block boundary crossed many times
    blocked = shape_features(Mesh(vertices=tri.reshape(-1, 3)))
    np.testing.assert_array_equal(blocked, whole)


def test_moments_are_the_same_bits_in_blocks_with_or_without_the_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    """The moments are sums in input order: the kernel, the numpy running sum in blocks of any
    size, and an offset subtracted on the way or beforehand give the same bits."""
    from scanner import kernels

    tri = _blobs(6)
    areas = sampling.triangle_areas(tri)
    offset = np.float32([0.25, -1.5, 3.0])
    shifted = tri - offset
    with_kernels = sampling.surface_moments(tri, areas), sampling.surface_moments(tri, areas, offset)
    monkeypatch.setattr(kernels, "compiled", None)
    for rows in (len(tri) + 1, 17, 1):
        monkeypatch.setattr(sampling, "_SUM_ROWS", rows)
        numpy_moments = sampling.surface_moments(tri, areas), sampling.surface_moments(tri, areas, offset)
        for got, want in zip(numpy_moments, with_kernels, strict=True):
            for a, b in zip(got, want, strict=True):
                np.testing.assert_array_equal(a, b)
    for a, b in zip(sampling.surface_moments(shifted, areas), with_kernels[1], strict=True):
        np.testing.assert_array_equal(a, b)
    keys = Mesh(vertices=tri.reshape(-1, 3)).corner_keys
    plain = sampling.sample_surface(tri, corner_keys=keys)
    monkeypatch.setattr(sampling, "_AREA_ROWS", 17)
    monkeypatch.setattr(sampling, "_CHUNK", 13)
    small = sampling.sample_surface(tri, corner_keys=keys)
    np.testing.assert_array_equal(small.coords, plain.coords)


def test_scan_workers_take_normal_pages() -> None:
    code = (
        "try:\n    from numpy._core import multiarray as m\n"
        "except ImportError:\n    from numpy.core import multiarray as m\n"
        "from scanner.engines.worker import keep_freed_memory\n"
        "keep_freed_memory()\n"
        "print(m._set_madvise_hugepage(False))\n"  # returns the setting it replaces
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _whiten_whole(tri: np.ndarray, steps: int) -> np.ndarray:
    """The affine row's whitening as whole-array arithmetic (the form before the blocks)."""
    tri = np.asarray(tri, dtype=np.float64).reshape(-1, 3, 3)
    tri = tri - tri.reshape(-1, 3).mean(axis=0)
    for _ in range(steps):
        centroid, _, second = sampling.surface_moments(tri, sampling.triangle_areas(tri))
        evals, evecs = np.linalg.eigh(second)
        evals = np.maximum(evals, affine_mod.MIN_EIGEN_RATIO * float(evals.max()))
        tri = (tri - centroid) @ ((evecs / np.sqrt(evals)) @ evecs.T).T
    return tri / np.sqrt(3.0)


@pytest.mark.parametrize("block", [1, 7, 64, 1 << 16])
def test_whitening_in_blocks_gives_the_whole_array_values(block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    tri = _blobs(3) * np.float32([1.0, 3.0, 0.5])  # stretched: whitening has work to do
    want = _whiten_whole(tri, affine_mod.WHITEN_STEPS)
    monkeypatch.setattr(affine_mod, "_BLOCK", block)
    np.testing.assert_array_equal(affine_mod.whiten(tri), want)
    keys = Mesh(vertices=tri.reshape(-1, 3)).corner_keys
    row = affine_mod.affine_row(tri, keys, affine_mod.AFFINE_WIDTH + 5)
    plain = sampling.sample_surface(want.astype(np.float32), corner_keys=keys)
    families = [np.sqrt(f.weight) * np.asarray(f.compute(plain), dtype=np.float64) for f in affine_mod.AFFINE_FAMILIES]
    np.testing.assert_array_equal(row[: affine_mod.AFFINE_WIDTH], np.concatenate(families).astype(np.float32))


def test_splitmix_in_place_is_the_written_out_hash() -> None:
    x = np.random.default_rng(5).integers(0, 2**63, 100_003, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    with np.errstate(over="ignore"):
        want = x + np.uint64(0x9E3779B97F4A7C15)
        want = (want ^ (want >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        want = (want ^ (want >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        want = want ^ (want >> np.uint64(31))
    before = x.copy()
    np.testing.assert_array_equal(mesh_mod._splitmix(x), want)
    np.testing.assert_array_equal(x, before)  # the input is left as it was


HEAP_PROBE = """
import numpy as np
from scanner.engines.worker import keep_freed_memory, release_freed_memory
def heap():
    for line in open("/proc/self/maps"):
        if line.rstrip().endswith("[heap]"):
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            return hi - lo
    return 0
if {keep}:
    keep_freed_memory()
before = heap()
a = np.ones(8_000_000)  # 64 MB: above glibc's largest mmap threshold
grown = heap() - before
del a
kept = heap() - before
release_freed_memory()
print(grown, kept, heap() - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator and /proc/self/maps")
def test_workers_keep_large_arrays_on_the_heap_until_idle() -> None:
    def probe(keep: bool) -> list[int]:
        code = HEAP_PROBE.format(keep=keep)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        return [int(v) for v in out.stdout.split()]

    grown, kept, released = probe(True)
    if grown == 0:
        pytest.skip("not glibc's allocator: nothing to tune")
    assert grown >= 60_000_000 and kept >= 60_000_000  # on the heap, and kept for the next file
    assert released < 8_000_000  # given back when the worker waits
    assert probe(False)[0] < 8_000_000  # without it, a 64 MB array is mapped on its own


def _areas_strided(tri: np.ndarray) -> np.ndarray:
    """Kahan's Heron on (F, 3, 3) corners as strided columns (the form before the blocks)."""
    e = [tri[:, (k + 1) % 3] - tri[:, k] for k in range(3)]
    la, lb, lc = (np.sqrt(d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1] + d[:, 2] * d[:, 2]) for d in e)
    hi = np.maximum(np.maximum(la, lb), lc)
    lo = np.minimum(np.minimum(la, lb), lc)
    mid = np.maximum(np.minimum(la, lb), np.minimum(np.maximum(la, lb), lc))
    prod = (hi + (mid + lo)) * (lo - (hi - mid)) * (lo + (hi - mid)) * (hi + (mid - lo))
    return 0.25 * np.sqrt(np.clip(prod, 0, None))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_areas_and_measures_on_contiguous_rows_are_the_strided_values(dtype: type, monkeypatch: pytest.MonkeyPatch
                                                                      ) -> None:  # fmt: skip
    tri = _blobs(4).astype(dtype)
    tri[3] = tri[3, [0, 0, 1]]  # a degenerate triangle: area 0 either way
    want = _areas_strided(tri)
    monkeypatch.setattr(sampling, "_AREA_ROWS", 5)
    got = sampling.triangle_areas(tri)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    if dtype is np.float32:
        centroid, scale = np.array([0.3, -1.0, 2.0]), np.float32(4096 / 3.7)
        edge = [tri[:, (k + 2) % 3] - tri[:, (k + 1) % 3] for k in range(3)]
        rel = tri - centroid.astype(np.float32)
        for k, column in enumerate(sampling._measures(tri, centroid, scale).T):
            e, r = edge[k], rel[:, k]
            opposite = np.sqrt(e[:, 0] * e[:, 0] + e[:, 1] * e[:, 1] + e[:, 2] * e[:, 2]) * scale
            reach = np.sqrt(r[:, 0] * r[:, 0] + r[:, 1] * r[:, 1] + r[:, 2] * r[:, 2]) * scale
            expect = (opposite.astype(np.int64) << np.int64(24)) | np.minimum(reach.astype(np.int64), (1 << 24) - 1)
            np.testing.assert_array_equal(column, expect)


def _plane_keys_strided(t: np.ndarray, mid: np.ndarray, half: float) -> tuple[np.ndarray, ...]:
    """The wall test's plane keys on (F, 3, 3) float64 corners as strided columns (the form
    before the (corner, coordinate, triangle) copy)."""
    centre = (t[:, 0] + t[:, 1] + t[:, 2]) / 3.0
    a0, a1, a2 = (t[:, 1, k] - t[:, 0, k] for k in range(3))
    b0, b1, b2 = (t[:, 2, k] - t[:, 0, k] for k in range(3))
    n0, n1, n2 = a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0
    length = np.sqrt(n0 * n0 + n1 * n1 + n2 * n2)
    ok = length > 0
    for c in (n0, n1, n2):
        np.divide(c, length, out=c, where=ok)
    offset = ((centre[:, 0] - mid[0]) * n0 + (centre[:, 1] - mid[1]) * n1 + (centre[:, 2] - mid[2]) * n2) / half
    return ok, n0, n1, n2, offset


def test_wall_plane_keys_on_contiguous_rows_are_the_strided_values() -> None:
    a, b = trimesh.creation.box((2, 1, 1)), trimesh.creation.box((2, 1, 1))
    a.apply_translation((-1, 0, 0))
    b.apply_translation((1, 0, 0))  # a box cut in two: the cut is a wall, faced both ways
    tri = np.concatenate([a.triangles, b.triangles, _blobs(6)]).astype(np.float32)
    tri[5] = tri[5, [0, 0, 1]]  # no normal
    t = mesh_mod._rows64(tri)
    mid, half = np.array([0.1, -0.2, 0.3]), 4.5
    ok, sign, packed = mesh_mod._plane_keys(t, mesh_mod._centres(t), mid, half)
    want_ok, n0, n1, n2, offset = _plane_keys_strided(tri.astype(np.float64), mid, half)
    np.testing.assert_array_equal(ok, want_ok)
    want_sign = np.sign(n0)  # the first clearly non-zero component's sign
    for n in (n2, n1, n0):
        want_sign[np.abs(n) > 1e-6] = np.sign(n[np.abs(n) > 1e-6])
    want_sign[want_sign == 0] = 1.0
    np.testing.assert_array_equal(sign, want_sign)
    with np.errstate(over="ignore"):
        want = np.zeros(len(tri), dtype=np.uint64)
        for i, (v, steps) in enumerate(((n0, 512), (n1, 512), (n2, 512), (offset, 8192))):
            q = np.round(v * sign * steps).astype(np.int64).astype(np.uint64)
            want = mesh_mod._splitmix(q if i == 0 else want + q)
    np.testing.assert_array_equal(packed, want)
    walls = mesh_mod.shared_walls(tri, np.r_[np.zeros(12, int), np.ones(12, int), 2 + np.arange(len(tri) - 24)])
    cut = np.abs(tri[:24, :, 0]).max(axis=1) == 0  # the two caps at x = 0
    assert walls[:24][cut].all() and not walls[:24][~cut].any()


def test_a_described_mesh_is_freed_without_the_cyclic_collector() -> None:
    """A scan worker's arrays must go when its file is done: a mesh that held itself (its
    clean surface) in its own ``__dict__`` waited for the cyclic collector, which a scan
    rarely triggers, and a worker grew by ~100 MB per 500k-triangle file."""
    import gc
    import weakref

    from scanner.shape import Shape

    gc.collect()
    gc.disable()
    try:
        for tri in (_blobs(7), np.concatenate([_blobs(7), _blobs(7)[:5]])):  # clean, and with repeats
            mesh = Mesh(vertices=tri.reshape(-1, 3))
            shape = Shape.of(mesh, 1000)
            shape.descriptor, shape.patch_codes, shape.classifier_row, shape.body_rows  # noqa: B018
            refs = [weakref.ref(mesh), weakref.ref(shape.surface), weakref.ref(mesh.corners32)]
            del mesh, shape
            assert [r() for r in refs] == [None, None, None]
    finally:
        gc.enable()
