"""The compiled kernels (scanner/_kernels.c) give the numpy code's bytes (issue 18, item 1).

A library enrolled on an install with the kernels must match a scan on one without, so each
kernel is compared byte for byte with the numpy code it replaces (``kernels.compiled = None``
forces that code) on: 200 files of the throughput bench's small set (1-5k triangles, made
here with its generator and seed), every mesh of ``fixtures/demo``, blobs of 3k to 200k
triangles, and edge cases (points far beyond the density grid's reach, flat and collinear and
coincident point sets, fewer than three points, a single triangle). Then the whole
``describe_triangles`` vector with the kernels on and off on the same inputs.

The extension must be importable here: CI installs with ``pip install -e '.[test]'``, which
builds it (setup.py), and a skipped test would not show that the C path is the one measured.
In a source checkout without an install, build it in place with the flags setup.py gives:

    gcc -shared -fPIC -O2 -ffp-contract=off -fno-fast-math -fno-math-errno \\
        -I"$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')" \\
        scanner/_kernels.c -o scanner/_kernels$(python -c \\
        'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
"""

from __future__ import annotations

import dataclasses
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest

from scanner import kernels
from scanner.features import describe_triangles, families, sampling
from scanner.mesh import Mesh
from tests.conftest import REPO

KERNEL_CALLS = {"moments": 1, "seeds": 1, "points": 1, "density": 1, "legs": 1, "bins": 2, "cos_bins": 1}
"""Kernel calls per describe_triangles: the sampler's surface moments, triangle seeds and
points, their weights, D2/A3's legs, the D1 and D2 histograms, A3's from the cosines."""


def test_the_extension_is_built_here() -> None:
    assert kernels.compiled is not None, "scanner._kernels is not built (see this module's docstring)"


class _Counting:
    """The extension, counting the calls of each kernel."""

    def __init__(self, module: object) -> None:
        self.module, self.calls = module, {}

    def __getattr__(self, name: str) -> object:
        fn = getattr(self.module, name)

        def counted(*args: object) -> object:
            self.calls[name] = self.calls.get(name, 0) + 1
            return fn(*args)

        return counted


def test_describe_runs_every_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparisons below compare the C path: describe_triangles takes it."""
    counting = _Counting(kernels.compiled)
    monkeypatch.setattr(kernels, "compiled", counting)
    tri = np.random.default_rng(3).normal(size=(2000, 3, 3)).astype(np.float32)
    describe_triangles(tri)
    assert counting.calls == KERNEL_CALLS


class _Off:
    """``with _Off():`` runs the numpy code: the extension ``kernels.<attr>`` set to None."""

    def __init__(self, attr: str = "compiled") -> None:
        self.attr = attr

    def __enter__(self) -> None:
        self.saved = getattr(kernels, self.attr)
        setattr(kernels, self.attr, None)

    def __exit__(self, *exc: object) -> None:
        setattr(kernels, self.attr, self.saved)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _fresh(sample: sampling.SurfaceSample) -> sampling.SurfaceSample:
    return dataclasses.replace(sample, shared={})


def _check_kernels(tri: np.ndarray, keys: np.ndarray | None) -> None:
    """Each kernel on this surface's sample, C against numpy, then the whole vector."""
    assert kernels.compiled is not None
    sample = sampling.sample_surface(tri, corner_keys=keys)
    with _Off():
        reference = sampling.sample_surface(tri, corner_keys=keys)
    for field in ("coords", "axes", "eigenvalues"):
        assert _same(getattr(sample, field), getattr(reference, field))
    assert sample.area == reference.area and sample.triangles == reference.triangles
    assert sample.coords.flags.c_contiguous
    _check_seeds(tri, keys)
    pts = sample.coords.astype(np.float64)
    w_c = sampling.density_weights(pts)
    with _Off():
        w_n = sampling.density_weights(pts)
    assert _same(w_c, w_n)

    on, off = _fresh(sample), _fresh(sample)
    legs_c = families._legs(on)
    with _Off():
        legs_n = families._legs(off)
    for x, y in zip(legs_c, legs_n, strict=True):
        assert _same(x, y)

    c, w = on.weighted()
    lengths, weights, cos, wc = legs_c
    angles = np.arccos(np.clip(cos, -1, 1))
    for values, weight, lo, hi, size in (
        (np.sqrt((c * c).sum(axis=0)), w, 0.0, 2.4, families.D1.size),
        (lengths, weights, 0.0, 3.2, families.D2.size),
        (angles, wc, 0.0, np.pi, families.A3.size),
    ):
        _check_bins(values, weight, lo, hi, size)
    _check_cos_bins(cos, wc)
    a3_c = families.A3.compute(_fresh(sample))
    with _Off():
        a3_n = families.A3.compute(_fresh(sample))
    assert _same(a3_c, a3_n)

    d_c = describe_triangles(tri, keys)
    with _Off():
        d_n = describe_triangles(tri, keys)
    assert _same(d_c, d_n)


def _check_seeds(tri: np.ndarray, keys: np.ndarray | None) -> None:
    """intrinsic_keys' seeds and corner order, C against numpy, from the sampler's own inputs."""
    from scanner.mesh import vertex_keys

    tri32 = np.asarray(tri, dtype=np.float32).reshape(-1, 3, 3)
    if keys is None:
        tri32 = tri32 + np.float32(0.0)
        keys = vertex_keys(tri32.reshape(-1, 3)).reshape(-1, 3)
    lo, hi = sampling._axis_bounds(tri32.reshape(-1, 3))
    offset = ((lo + hi) / 2.0).astype(np.float32)
    rows = sampling._corner_rows(tri32, offset)
    centroid, _, second = sampling.surface_moments(tri32, sampling._row_areas(rows), offset)
    radius = float(np.sqrt(np.trace(second)))
    for r in (rows, None) if len(tri32) <= sampling._CHUNK else (None,):
        got = sampling.intrinsic_keys(tri32, centroid, radius, keys, offset, r)
        with _Off():
            want = sampling.intrinsic_keys(tri32, centroid, radius, keys, offset, r)
        assert _same(got[0], want[0]) and _same(got[1], want[1])


def _check_bins(values: np.ndarray, weight: np.ndarray, lo: float, hi: float, size: int) -> None:
    """The kernel's fine histogram is np.bincount's of the numpy bins, and _cdf's vector the same."""
    _, a, b, fine = families._kernel(lo, hi, size, 0.5)
    counts = np.empty(fine)
    ok = kernels.compiled.bins(values, float(np.float32(a)), float(np.float32(fine / (b - a))), fine, weight, counts)
    assert ok
    ref = np.bincount(families._fine_bins((values - a) * (fine / (b - a)), fine), weights=weight, minlength=fine)
    assert _same(counts, ref)
    got = families._cdf(values, lo, hi, size, weights=weight)
    with _Off():
        want = families._cdf(values, lo, hi, size, weights=weight)
    assert _same(got, want)


def _angle_scale() -> tuple[np.ndarray, float, float, int]:
    """A3's smoothing matrix, its fine bins' start and scale (float32, as the steps take them)
    and their number."""
    kernel, a, b, fine = families._kernel(0.0, np.pi, families.A3.size, 0.5)
    return kernel, float(np.float32(a)), float(np.float32(fine / (b - a))), fine


def _check_cos_bins(cos: np.ndarray, weight: np.ndarray) -> None:
    """cos_bins' fine histogram is np.bincount's of numpy's count of the steps below each cosine."""
    _, a, scale, fine = _angle_scale()
    steps, top = families._angle_steps(a, scale, fine)
    _, a64, b64, _ = families._kernel(0.0, np.pi, families.A3.size, 0.5)
    counts = np.empty(fine)
    assert kernels.compiled.cos_bins(cos, steps, top, fine, a64, fine / (b64 - a64), weight, counts)
    ref = np.bincount(top - np.searchsorted(steps, cos, side="right"), weights=weight, minlength=fine)
    assert _same(counts, ref)


def test_cos_bins_count_the_steps_below_each_cosine() -> None:
    """Every kind of cosine gets numpy's count: uniform over [-1, 1] and beyond, within a few
    floats of every step, the tiny cosines around the step at a right angle, the ends, signed
    zeros and infinities."""
    _, a, scale, fine = _angle_scale()
    steps, _ = families._angle_steps(a, scale, fine)
    rng = np.random.default_rng(21)
    near = steps.view(np.int32)[:, None] + np.arange(-40, 41, dtype=np.int32)[None, :]
    tiny = (rng.choice([-1.0, 1.0], 200_000) * 10.0 ** rng.uniform(-45, -3, 200_000)).astype(np.float32)
    ends = (1 - 10.0 ** rng.uniform(-8, -1, 100_000)) * rng.choice([-1.0, 1.0], 100_000)
    special = [-np.inf, -2.0, -1.0, -0.0, 0.0, 1.0, 1.5, np.inf]
    for cos in (
        rng.uniform(-1.1, 1.1, 500_000).astype(np.float32),
        near.ravel().view(np.float32),
        tiny,
        ends.astype(np.float32),
        np.array(special, dtype=np.float32),
    ):
        _check_cos_bins(cos, rng.uniform(0.1, 3.0, len(cos)))


def test_angle_steps_are_the_correctly_rounded_angles_bins() -> None:
    """Each step is where the correctly rounded angle (float64 acos rounded to float32) enters
    a lower bin: the float below it is one bin higher. The bins are then those of the true angle
    on every machine, whatever its arccos rounds (glibc 2.36's acosf moves 71 of the 288 steps
    by a float; numpy's AVX-512 code others). Measured against np.arccos here: each step within
    one float of where numpy's bins drop."""
    _, a, scale, fine = _angle_scale()
    steps, top = families._angle_steps(a, scale, fine)
    assert (len(steps), top) == (288, 352) and np.all(np.diff(steps) > 0)
    below = np.nextafter(steps, np.float32(-2))
    want = top - np.arange(1, len(steps) + 1)
    assert np.array_equal(families._rounded_angle_bins(steps, a, scale, fine), want)
    assert np.array_equal(families._rounded_angle_bins(below, a, scale, fine), want + 1)
    angle_bins = np.clip(np.trunc((np.arccos(steps) - np.float32(a)) * np.float32(scale)), 0, fine - 1)
    off = np.flatnonzero(angle_bins != want)  # numpy's arccos puts these steps a float higher
    after = np.nextafter(steps[off], np.float32(2))
    assert np.array_equal(np.clip(np.trunc((np.arccos(after) - np.float32(a)) * np.float32(scale)), 0, fine - 1),
                          want[off])  # fmt: skip


def test_a3_of_a_nan_cosine_is_arccos_binned_as_before() -> None:
    """A NaN cosine (a NaN point) leaves A3 to arccos and _cdf, as before the steps, on both paths."""
    sample = sampling.sample_surface(np.random.default_rng(5).normal(size=(3000, 3, 3)).astype(np.float32))
    lengths, weights, cos, wc = families._legs(_fresh(sample))
    with_nan = cos.copy()
    with_nan[17] = np.nan
    vectors = []
    for off in (False, True):
        broken = _fresh(sample)
        broken.shared["legs"] = (lengths, weights, with_nan, wc)
        with np.errstate(invalid="ignore"), _Off() if off else nullcontext():
            vectors.append(families.A3.compute(broken))
    with np.errstate(invalid="ignore"):
        want = families._cdf(np.arccos(np.clip(with_nan, -1, 1)), 0.0, np.pi, families.A3.size, weights=wc)
    assert _same(vectors[0], want) and _same(vectors[1], want)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from bench.throughput import make_set

    folder = make_set(tmp_path_factory.mktemp("small") / "small-200", 200, 1000, 5000, 1)  # the bench's seed
    return sorted(folder.glob("*.stl"))


def _surface(path: Path) -> Mesh:
    from scanner.loading import load

    return load(path).surface()


def test_small_set(small_set: list[Path]) -> None:
    assert len(small_set) == 200
    for path in small_set:
        s = _surface(path)
        _check_kernels(s.corners32, s.corner_keys)


DEMO = sorted(p for p in (REPO / "fixtures" / "demo").iterdir() if p.suffix in (".stl", ".obj", ".3mf"))


def test_demo_meshes() -> None:
    assert len(DEMO) >= 60
    for path in DEMO:
        s = _surface(path)
        _check_kernels(s.corners32, s.corner_keys)


@pytest.mark.parametrize("triangles", [3_000, 12_000, 50_000, 200_000])
def test_blobs(triangles: int, tmp_path: Path) -> None:
    from bench.throughput import blob_stl

    path = tmp_path / "blob.stl"
    blob_stl(path, triangles, np.random.default_rng(triangles))
    s = _surface(path)
    assert s.triangle_count == triangles
    _check_kernels(s.corners32, s.corner_keys)


def test_edge_surfaces() -> None:
    rng = np.random.default_rng(5)
    one = np.array([[[0, 0, 0], [1, 0, 0], [0, 1, 0]]], dtype=np.float32)
    needle = np.array([[[0, 0, 0], [1e3, 0, 0], [1e3, 1e-3, 0]]], dtype=np.float32)
    plate = np.concatenate([one, one + np.float32(2.0), one * np.float32(1e-4)])
    # a speck far out: most points near the centre, a few beyond the grid's reach
    cube = rng.normal(size=(3000, 3, 3)).astype(np.float32)
    speck = np.concatenate([cube, (rng.normal(size=(4, 3, 3)) * 0.01 + 400.0).astype(np.float32)])
    # slivers and repeated triangles, no NaN
    sliver = np.repeat(cube[:50, :1], 3, axis=1)
    sliver[:, 2] += np.float32(1e-6)
    sliver[:, 1, 0] += np.float32(1.0)
    degenerate = np.concatenate([cube[:200], cube[:200], sliver])
    # zero-area needles through the middle: an edge of 2e9 (its measure wraps past 2^63 when
    # shifted, as numpy's int64 shift wraps) and of 2e30 (an infinite float32 square: numpy's)
    wrap = np.concatenate([cube, np.array([[[-1e9, 0, 0], [0, 0, 0], [1e9, 0, 0]]], dtype=np.float32)])
    huge = np.concatenate([cube, np.array([[[-1e30, 0, 0], [0, 0, 0], [1e30, 0, 0]]], dtype=np.float32)])
    for tri in (one, needle, plate, speck, degenerate, wrap):
        _check_kernels(tri, None)
    from scanner.mesh import vertex_keys

    keys = vertex_keys(huge.reshape(-1, 3)).reshape(-1, 3)
    offset = np.zeros(3, dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):  # no area to sample: the seeds alone
        for rows in (sampling._corner_rows(huge, offset), None):
            got = sampling.intrinsic_keys(huge, np.zeros(3), 1.0, keys, offset, rows)
            with _Off():
                want = sampling.intrinsic_keys(huge, np.zeros(3), 1.0, keys, offset, rows)
            assert _same(got[0], want[0]) and _same(got[1], want[1])


def test_edge_point_sets() -> None:
    """density_weights and _cdf directly on point sets no sample gives."""
    rng = np.random.default_rng(6)
    sets = [
        np.zeros((3, 1)),
        np.zeros((3, 2)),
        np.array([[0.0, 1.0], [0.0, 0.0], [0.0, -5.0]]),
        np.zeros((3, 9)),  # coincident
        np.stack([rng.uniform(-1, 1, 500), np.zeros(500), np.zeros(500)]),  # collinear
        np.concatenate([rng.normal(size=(3, 800)), [[50.0, -1e30], [-60.0, 1e30], [0.0, 3.0]]], axis=1),  # far out
        rng.normal(size=(3, 3000)).astype(np.float32),
        rng.normal(size=(3, 8192)) * 1e-7,
        np.full((3, 4), 3.0),  # on the reach
        np.asfortranarray(rng.normal(size=(3, 100))),
    ]
    for pts in sets:
        got = sampling.density_weights(pts)
        with _Off():
            want = sampling.density_weights(pts)
        assert _same(got, want)
    # NaN: the numpy code decides (both paths the same bytes, whatever they are)
    pts = rng.normal(size=(3, 50))
    pts[1, 7] = np.nan
    with np.errstate(invalid="ignore", over="ignore"):
        got = sampling.density_weights(pts)
        with _Off():
            want = sampling.density_weights(pts)
    assert got.tobytes() == want.tobytes()


def test_edge_bins() -> None:
    rng = np.random.default_rng(7)
    for off in (False, True):  # no values: numpy's min() refuses, on either path
        with _Off() if off else nullcontext(), pytest.raises(ValueError):
            families._cdf(np.array([], dtype=np.float32), 0.0, 3.2, 32, weights=np.array([]))
    cases = [
        np.array([0.0], dtype=np.float32),
        np.array([-1.0, -0.0, 0.0, 2.4, 2.5, 1e6, -1e6, 3e9, -3e9], dtype=np.float32),
        rng.uniform(-1, 4, 98_304).astype(np.float32),
        np.array([1.0, np.inf, 0.5], dtype=np.float32),
        np.array([1.0, np.nan, 0.5], dtype=np.float32),
    ]
    for values in cases:
        weight = rng.uniform(0, 2, len(values))
        with np.errstate(invalid="ignore"):
            got = families._cdf(values, 0.0, 3.2, 32, weights=weight)
            with _Off():
                want = families._cdf(values, 0.0, 3.2, 32, weights=weight)
        assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize("n_points", [1, 2, 3, 100, 20_000])
def test_sample_sizes(n_points: int) -> None:
    """The sampler's points for other sample sizes than the descriptor's 8,192."""
    rng = np.random.default_rng(n_points)
    for tri in (rng.normal(size=(3000, 3, 3)).astype(np.float32), np.eye(3, dtype=np.float32)[None]):
        got = sampling.sample_surface(tri, n_points=n_points)
        with _Off():
            want = sampling.sample_surface(tri, n_points=n_points)
        assert _same(got.coords, want.coords) and got.coords.shape == (3, n_points)


def test_points_fall_short() -> None:
    """When the counts sum to fewer than n_points, the kernel writes them all (in the order a
    longer request gives them) and says how many: the sampler then keeps only those."""
    rng = np.random.default_rng(8)
    tk = rng.integers(0, 2**63, 50, dtype=np.uint64)
    counts = rng.integers(1, 4, 50).astype(np.int64)
    frame = rng.normal(size=(9, 50)).astype(np.float32)
    total = int(counts.sum())
    exact = np.empty((3, total), dtype=np.float32)
    more = np.empty((3, total + 7), dtype=np.float32)
    assert kernels.compiled.points(tk, counts, frame, total, 0.7, 0.5, exact) == total
    assert kernels.compiled.points(tk, counts, frame, total + 7, 0.7, 0.5, more) == total
    assert more[:, :total].tobytes() == exact.tobytes()
    assert kernels.compiled.points(tk[:0], counts[:0], frame[:, :0], 5, 0.7, 0.5, more[:, :5].copy()) == 0


def test_point_key_sort() -> None:
    """The points' key sort is np.sort: spread keys (buckets), crowded ones (the radix route),
    repeated keys and tiny inputs."""
    rng = np.random.default_rng(10)
    spread = rng.integers(0, 2**64 - 1, 8743, dtype=np.uint64, endpoint=True)
    crowded = spread >> np.uint64(20)  # every key in the first buckets
    cases = [spread, crowded, np.repeat(spread[:100], 5), spread[:0], spread[:1], spread[:2], np.zeros(9, np.uint64)]
    cases.append(np.concatenate([spread[:500], crowded[:500]]))
    for keys in cases:
        got = keys.copy()
        kernels.compiled.sort(got)
        assert got.tobytes() == np.sort(keys).tobytes()
