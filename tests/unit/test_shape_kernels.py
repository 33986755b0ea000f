"""The shape-feature kernels (scanner/_shape_kernels.c) give the numpy code's bytes (issue 18,
item 1), but for the convex hull's volume, which stands in for Qhull and agrees with it to
rounding (``HULL_RTOL``): the solidity feature is compared to that, every other byte for byte.

The classifier's features feed a model whose scores are printed in verdicts, so the compiled
path must give the numpy path's bits: :func:`shape_features` with the kernels on and off
(``kernels.shape = None``), and each helper they replace, byte for byte on the inputs of
``tests/unit/test_kernels.py`` (200 files of the throughput bench's small set, every mesh of
``fixtures/demo``, blobs of 3k to 200k triangles) and on edge cases (one triangle, open
surfaces, flat plates, non-manifold edges, degenerate triangles, huge and tiny coordinates).

Build the extension in place as ``tests/unit/test_kernels.py`` says, with
``scanner/_shape_kernels.c`` and ``scanner/_shape_kernels$EXT_SUFFIX``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scanner import kernels
from scanner.classify import shape
from scanner.mesh import Mesh
from tests.unit.test_kernels import DEMO, _Counting, _surface, small_set  # noqa: F401 (small_set: a fixture)
from tests.unit.test_kernels import _Off as _KernelsOff

KERNEL_CALLS = {"bounds": 1, "face_values": 1, "frame": 1, "extreme": 1, "edge_cosines": 1, "curved_faces": 1,
                "round_about": 1, "line_clear": 2, "profile_steps": 1, "hull_volume": 1}  # fmt: skip
"""Kernel calls per shape_features of a surface of more than 64 distinct vertices: its
bounds, face values, points in the principal frame, the hull's extreme points, edge cosines
and curved faces, faces round about the long axis, two line casts, the profile's steps, the
hull's volume."""
HULL_RTOL = 1e-12
"""How far the kernel's hull volume may be from Qhull's, relative (measured: under 1e-14)."""
SOLIDITY = shape.FEATURE_NAMES.index("solidity")


def test_the_extension_is_built_here() -> None:
    assert kernels.shape is not None, "scanner._shape_kernels is not built (see this module's docstring)"


def test_shape_features_runs_every_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparisons below compare the C path: shape_features takes it."""
    counting = _Counting(kernels.shape)
    monkeypatch.setattr(kernels, "shape", counting)
    shape.shape_features(_mesh(np.random.default_rng(3).normal(size=(2000, 3, 3))))
    assert counting.calls == KERNEL_CALLS


def _Off() -> _KernelsOff:  # noqa: N802 - used as the class it was
    """``with _Off():`` runs the numpy code."""
    return _KernelsOff("shape")


def _same(a: object, b: object) -> bool:
    if isinstance(a, tuple | list):
        return isinstance(b, tuple | list) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if a is None or b is None:
        return a is b
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _features(mesh: Mesh) -> np.ndarray | str:
    try:
        return shape.shape_features(mesh)
    except ValueError as exc:  # no area: both paths must refuse alike
        return str(exc)


def _check(mesh: Mesh) -> None:
    """shape_features and every replaced helper, kernels on and off, byte for byte."""
    got = _features(mesh)
    with _Off():
        want = _features(Mesh(vertices=mesh.corners32.reshape(-1, 3)).surface())
    assert type(got) is type(want)
    if isinstance(got, str):
        assert got == want
    else:  # solidity through the hull's volume (to rounding), every other feature to the bit
        others = np.arange(len(got)) != SOLIDITY
        assert got[others].tobytes() == want[others].tobytes()
        assert np.isclose(got[SOLIDITY], want[SOLIDITY], rtol=HULL_RTOL, atol=0.0)
    if not mesh.triangle_count:
        return
    lo, hi = shape._bounds(mesh.corners32)
    with _Off():
        assert _same((lo, hi), shape._bounds(mesh.corners32))
    tri = mesh.corners32 - (lo + hi) / 2.0
    with np.errstate(all="ignore"):
        got_faces = shape._face_values(tri)
        with _Off():
            want_faces = shape._face_values(tri)
        assert _same(got_faces[:3], want_faces[:3]) and _same(got_faces[4], want_faces[4])
        assert np.array_equal(np.float64(got_faces[3]), np.float64(want_faces[3]), equal_nan=True)
        areas, normals = want_faces[0], want_faces[1]
        if not areas.sum() > 0:
            return
        centroid, axes, _ = shape._moments(tri, areas)
        got_frame = shape._frame(mesh.welded_vertices, (lo + hi) / 2.0, centroid, axes)
        with _Off():
            want_frame = shape._frame(mesh.welded_vertices, (lo + hi) / 2.0, centroid, axes)
        assert _same(np.asarray(got_frame[0]), np.asarray(want_frame[0])) and _same(got_frame[1:], want_frame[1:])
        along, rel_sq = want_frame[0], want_frame[2]
        for k in range(3):
            got_steps = shape._profile_steps(along[k], rel_sq)
            with _Off():
                want_steps = shape._profile_steps(along[k], rel_sq)
            assert type(got_steps) is type(want_steps) and _same(np.float64(got_steps), np.float64(want_steps))
        got_edges = shape._edge_stats(mesh, normals)
        with _Off():
            want_edges = shape._edge_stats(mesh, normals)
        assert _same(got_edges[0], want_edges[0]) and got_edges[1] == want_edges[1]
        curved = want_edges[0]
        for axis in axes:
            got_round = shape._round_about(tri, normals, curved, centroid, axis)
            with _Off():
                want_round = shape._round_about(tri, normals, curved, centroid, axis)
            assert _same(got_round, want_round)
        reach = want_faces[3]
        tiny = shape._EPS * (reach + shape._EPS) ** 2
        rng = np.random.default_rng(len(tri))
        directions = list(axes) + list(rng.normal(size=(4, 3)) / 2.0) + [np.array([1.0, 0.0, 0.0])]
        at = tuple(float(c) for c in centroid)
        for d in directions:
            got_clear = kernels.shape.line_clear(tri, at, tiny, tuple(float(c) for c in d))
            want_clear = shape._line_clear(shape._cast_blocks(tri, centroid, None)(), tiny, d)
            assert got_clear is want_clear
        points = (mesh.welded_vertices.astype(np.float64) - (lo + hi) / 2.0 - centroid) @ axes.T
        if len(points):
            got_ext = shape._extreme_points(points)
            with _Off():
                want_ext = shape._extreme_points(points)
            assert _same(got_ext, want_ext)
            got_hull = shape._hull_volume(points)
            with _Off():
                want_hull = shape._hull_volume(points)
            assert np.isclose(got_hull, want_hull, rtol=HULL_RTOL, atol=0.0)


def test_small_set(small_set: list[Path]) -> None:  # noqa: F811 (the imported fixture)
    assert len(small_set) == 200
    for path in small_set:
        _check(_surface(path))


def test_demo_meshes() -> None:
    assert len(DEMO) >= 60
    for path in DEMO:
        _check(_surface(path))


@pytest.mark.parametrize("triangles", [3_000, 12_000, 50_000, 200_000])
def test_blobs(triangles: int, tmp_path: Path) -> None:
    from bench.throughput import blob_stl

    path = tmp_path / "blob.stl"
    blob_stl(path, triangles, np.random.default_rng(triangles))
    s = _surface(path)
    assert s.triangle_count == triangles
    _check(s)


def _mesh(tri: np.ndarray) -> Mesh:
    return Mesh(vertices=np.asarray(tri, dtype=np.float32).reshape(-1, 3)).surface()


def _box(lo: tuple[float, float, float], hi: tuple[float, float, float]) -> np.ndarray:
    (x0, y0, z0), (x1, y1, z1) = lo, hi
    v = np.array([[x, y, z] for x in (x0, x1) for y in (y0, y1) for z in (z0, z1)], dtype=np.float64)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    return np.array([[v[a], v[b], v[c]] for a, b, c, d in quads for a, b, c in ((a, b, c), (a, c, d))])


def _tube(n: int, inner: float, outer: float, length: float) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    ring = lambda r, z: np.stack([r * np.cos(t), r * np.sin(t), np.full(n, z)], axis=1)  # noqa: E731
    o0, o1, i0, i1 = ring(outer, 0), ring(outer, length), ring(inner, 0), ring(inner, length)
    out = []
    for k in range(n):
        j = (k + 1) % n
        out += [[o0[k], o0[j], o1[j]], [o0[k], o1[j], o1[k]], [i0[k], i1[j], i0[j]], [i0[k], i1[k], i1[j]]]
        out += [[o0[k], i0[j], o0[j]], [o0[k], i0[k], i0[j]], [o1[k], o1[j], i1[j]], [o1[k], i1[j], i1[k]]]
    return np.array(out)


def test_edge_cases() -> None:
    rng = np.random.default_rng(7)
    one = np.array([[[0, 0, 0], [1, 0, 0], [0, 1, 0]]], dtype=np.float64)
    box = _box((0, 0, 0), (3, 2, 1))
    tube = _tube(24, 1.0, 2.0, 20.0)
    cases = {
        "one triangle": one,
        "open box": box[:-2],
        "open tube": tube[: len(tube) // 2],
        "flat plate": np.concatenate([one, one + [2, 0, 0], one * 5]),
        "grid plate": np.array([[[x, y, 0], [x + 1, y, 0], [x, y + 1, 0]] for x in range(12) for y in range(12)]),
        "box": box,
        "tube": tube,
        "non-manifold": np.concatenate([box, box[:4] + [0, 0, 0.0], [[[0, 0, 0], [3, 0, 0], [0, 0, 5]]]]),
        "two boxes": np.concatenate([box, _box((5, 5, 5), (6, 9, 6))]),
        "degenerate": np.concatenate([box, np.repeat(box[:5, :1], 3, axis=1), [[[0, 0, 0], [1, 0, 0], [2, 0, 0]]]]),
        "zero area": np.repeat(box[:6, :1], 3, axis=1),
        "huge": box * 1e30,
        "huge offset": box + 1e7,
        "tiny": box * 1e-30,
        "tiny tube": tube * 1e-20,
        "extreme": np.concatenate([box * 1e-20, box * 1e20]),
        "needle": np.array([[[0, 0, 0], [1e3, 0, 0], [1e3, 1e-3, 0]], [[0, 0, 0], [1e3, 1e-3, 0], [0, 0, 1e-3]]]),
        "blob": rng.normal(size=(300, 3, 3)),
        "rounded": np.round(rng.normal(size=(500, 3, 3)), 1),
    }
    for name, tri in cases.items():
        with np.errstate(all="ignore"):  # float32 squares of 1e30 overflow in the surface's checks
            try:
                _check(_mesh(tri))
            except AssertionError as exc:
                raise AssertionError(name) from exc


@pytest.mark.parametrize("n", [1, 3, 4, 5, 65, 70, 2_500, 8_192, 8_193, 20_000])
def test_extreme_points_ties(n: int) -> None:
    """The first extreme point, lane by lane then over the lanes: ties of rounded and of
    integer coordinates, zeros of both signs (equal, as argmax compares them)."""
    rng = np.random.default_rng(n)
    zeros = np.where(rng.random((n, 3)) < 0.5, 0.0, -0.0)
    ints = rng.integers(-2, 3, size=(n, 3)) * 1.0
    mixed = np.where(rng.random((n, 1)) < 0.9, zeros, np.clip(ints, -1, 1))
    for points in (rng.normal(size=(n, 3)), np.round(rng.normal(size=(n, 3)), 1), ints, zeros, mixed):
        got = shape._extreme_points(points)
        with _Off():
            want = shape._extreme_points(points)
        assert _same(got, want)


def test_extreme_points_fall_back() -> None:
    """Points that are not all finite, or whose float32 products overflow into NaN, take the
    numpy code (argmax's NaN rule): the same indices."""
    rng = np.random.default_rng(2)
    for n in (70, 9_000):
        for points in (np.where(np.arange(n)[:, None] == 5, np.nan, rng.normal(size=(n, 3))),
                       np.where(np.arange(n)[:, None] == 7, np.inf, rng.normal(size=(n, 3))),
                       np.where(np.arange(n)[:, None] == 9, [[3e38, -3e38, 3e38]], rng.normal(size=(n, 3))),
                       rng.normal(size=(n, 3)) * 1e38):  # fmt: skip
            with np.errstate(all="ignore"):
                got = shape._extreme_points(points)
                with _Off():
                    want = shape._extreme_points(points)
            assert _same(got, want)


def test_edge_cosines_refuse_places_out_of_range() -> None:
    normals = np.zeros((4, 3))
    with pytest.raises(ValueError, match="out of range"):
        kernels.shape.edge_cosines(normals, 8, np.array([1, 6], dtype=np.int64), np.array([0, 1], dtype=np.int64),
                                   np.empty(2))  # fmt: skip


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 13, 100, 101])
def test_bounds(n: int) -> None:
    """The bounds four corners at a time and the rest one by one: the numpy code's, and
    numpy's own where a coordinate is infinite or NaN or a bound is zero."""
    rng = np.random.default_rng(n)
    base = rng.normal(size=(n, 3)).astype(np.float32)
    cases = [base, base + np.float32(5), -np.abs(base), np.abs(base), base * np.float32(8e37)]  # |normal| < 4: finite
    for at in {0, n // 2, n - 1}:
        for bad in (np.inf, -np.inf, np.nan):
            c = base.copy()
            c[at, at % 3] = bad
            cases.append(c)
        c = np.abs(base) + np.float32(1)
        c[at, (at + 1) % 3] = 0.0  # a zero bound (its sign: numpy's)
        cases.append(c)
    for corners in cases:
        with np.errstate(all="ignore"):
            got = shape._bounds(corners.reshape(-1, 3, 3) if n % 3 == 0 else corners)
            with _Off():
                want = shape._bounds(corners.reshape(-1, 3, 3) if n % 3 == 0 else corners)
        assert _same(got, want)


class _Summing:
    """A stand-in extension whose dot_rows sums each row of three in a given order."""

    def __init__(self, order: str) -> None:
        self.order = order

    def dot_rows(self, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
        p = a * b
        if self.order == "left to right":
            out[:] = (p[:, 0] + p[:, 1]) + p[:, 2]
        elif self.order == "no zero accumulator":
            out[:] = (p[:, 0] + p[:, 2]) + p[:, 1]
        elif self.order == "horizontal add":
            out[:] = (p[:, 0] + p[:, 1]) + (p[:, 2] + 0.0)
        else:  # the order the kernels repeat
            out[:] = (p[:, 0] + p[:, 2]) + (p[:, 1] + 0.0)


def test_the_import_probe_tells_summation_orders_apart() -> None:
    """scanner.kernels keeps the shape kernels only where this numpy sums rows of three as they
    do: the built extension passes, every other order (or a lost zero sign) fails."""
    assert kernels._sums_as_the_kernels_do(kernels.shape)
    assert kernels._sums_as_the_kernels_do(_Summing("kernels"))
    for order in ("left to right", "no zero accumulator", "horizontal add"):
        assert not kernels._sums_as_the_kernels_do(_Summing(order)), order
    # a fused multiply-add of the third product into the first (NEON's two-lane loop) shows on
    # a crafted row: (1 + 2^-30)^2 - (1 + 2^-29) is 2^-60 exactly, 0 when the square rounds
    a, b = kernels._probe_rows()
    row = [i for i in range(len(a)) if a[i, 0] == -(1.0 + 2.0**-29)]
    assert row and np.einsum("ij,ij->i", a[row], b[row])[0] == 0.0


def _point_sets(rng: np.random.Generator, count: int):
    """Point sets of 4-128 points (the sizes ``_hull_volume`` hands the kernel) of the kinds
    where an incremental hull can go wrong: many coplanar points (grids on a box, rings of a
    cylinder), cospherical ones, duplicates, thin plates, far from the origin and rounded."""
    for i in range(count):
        n, kind = int(rng.integers(4, 129)), i % 8
        if kind == 0:
            p = rng.normal(size=(n, 3))
        elif kind == 1:
            p = rng.uniform(-1, 1, size=(n, 3))
        elif kind == 2:
            p = rng.integers(0, 4, size=(n, 3)) * rng.uniform(0.1, 50, 3)
        elif kind == 3:
            t, z = rng.integers(0, 16, n) * 2 * np.pi / 16, rng.integers(0, 3, n)
            p = np.stack([np.cos(t), np.sin(t), z * 0.7], axis=1) * rng.uniform(1, 100)
        elif kind == 4:
            p = rng.uniform(-1, 1, size=(n, 3)) * [1.0, 1.0, 10 ** rng.uniform(-8, -1)]
        elif kind == 5:
            p = np.tile(rng.normal(size=(max(4, n // 3), 3)), (3, 1))[: max(n, 4)]
        elif kind == 6:
            p = rng.normal(size=(n, 3))
            p /= np.linalg.norm(p, axis=1)[:, None]
        else:
            p = (rng.normal(size=(n, 3)) * 10 + 1e4).astype(np.float32).astype(np.float64) - 1e4
        yield np.ascontiguousarray(p, dtype=np.float64)


def test_hull_volume_is_qhulls() -> None:
    """The kernel's hull volume is Qhull's to rounding on 2,400 hard point sets, or it declines
    (-1) and ``_hull_volume`` asks Qhull - only on sheets (``HULL_FLAT``: thinner than 1e-6 of
    the largest coordinate; here the thinnest declined is under 1e-5 of it), never on a solid."""
    from scipy.spatial import ConvexHull

    declined = 0
    for points in _point_sets(np.random.default_rng(11), 2_400):
        got = kernels.shape.hull_volume(points)
        if got < 0:
            thinnest = np.linalg.svd(points - points.mean(axis=0), compute_uv=False)[-1]
            assert thinnest <= 1e-5 * np.abs(points).max()
            declined += 1
            continue
        assert np.isclose(got, ConvexHull(points).volume, rtol=HULL_RTOL, atol=0.0)
    assert declined < 120  # the sheets: a third of the plates (thickness 1e-8 to 1e-1), a few flat grids


def test_hull_volume_declines_what_qhull_must_decide() -> None:
    """Flat, collinear, coincident, non-finite, too few or too many points: -1, and
    ``_hull_volume`` gives Qhull's answer (0 where Qhull finds no volume)."""
    rng = np.random.default_rng(5)
    flat = np.concatenate([rng.normal(size=(40, 2)), np.zeros((40, 1))], axis=1)
    line = np.outer(rng.normal(size=30), [1.0, 2.0, 3.0])
    cases = {
        "flat": flat,
        "collinear": line,
        "one point": np.ones((10, 3)),
        "zeros": np.zeros((10, 3)),
        "nan": np.where(np.arange(20)[:, None] == 3, np.nan, rng.normal(size=(20, 3))),
        "inf": np.where(np.arange(20)[:, None] == 3, np.inf, rng.normal(size=(20, 3))),
        "three": rng.normal(size=(3, 3)),
        "many": rng.normal(size=(257, 3)),
    }
    for name, points in cases.items():
        assert kernels.shape.hull_volume(np.ascontiguousarray(points)) == -1.0, name
    with np.errstate(all="ignore"):
        for name in ("flat", "collinear", "one point", "zeros"):
            assert shape._hull_volume(cases[name]) == 0.0, name
    many = cases["many"]
    assert np.isclose(shape._hull_volume(many[:128]), shape._qhull_volume(many[:128]), rtol=HULL_RTOL, atol=0.0)
