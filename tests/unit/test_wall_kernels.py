"""The compiled plane keys of :func:`scanner.mesh.shared_walls` (``wall_bounds`` and
``wall_keys`` in ``scanner/_kernels.c``) give the numpy code's bits: on the bench's small files,
the demo meshes, parts cut into touching pieces (where walls are found), degenerate and extreme
triangles, and rounding ties; input the kernels leave to numpy goes to numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from scanner import kernels
from scanner import mesh as mesh_mod
from tests.conftest import REPO

DEMO = sorted(p for p in (REPO / "fixtures" / "demo").iterdir() if p.suffix in (".stl", ".obj", ".3mf"))


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _numpy_walls(corners32: np.ndarray, owner: np.ndarray | None = None) -> np.ndarray:
    saved = kernels.compiled
    kernels.compiled = None
    try:
        return mesh_mod.shared_walls(corners32, owner)
    finally:
        kernels.compiled = saved


def _check(corners32: np.ndarray, owner: np.ndarray | None = None) -> np.ndarray:
    """Keys and walls by the kernels and by numpy: the same bits. The walls, for the caller."""
    assert kernels.compiled is not None, "scanner._kernels is not built"
    got = mesh_mod._compiled_plane_keys(corners32)
    assert got is not None, "the kernels declined input they should take"
    want = mesh_mod._numpy_plane_keys(corners32)
    for g, w in zip(got, want, strict=True):
        assert _same(g, w)
    walls = mesh_mod.shared_walls(corners32, owner)
    assert _same(walls, _numpy_walls(corners32, owner))
    return walls


def _surface(path: Path) -> np.ndarray:
    from scanner.loading import load

    return load(path).surface().corners32


def test_the_small_files_and_demo_meshes() -> None:
    from bench.throughput import blob_stl

    rng = np.random.default_rng(1)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for i in range(40):
            path = Path(tmp) / f"blob-{i}.stl"
            blob_stl(path, int(rng.integers(1000, 5001)), rng)
            assert not _check(_surface(path)).any()  # a blob has no wall
    assert len(DEMO) >= 60
    for path in DEMO:
        _check(_surface(path))


def test_parts_cut_into_touching_pieces_have_the_same_walls() -> None:
    from fixtures.evasions import split

    rng = np.random.default_rng(11)
    found = 0
    for path in DEMO[::6]:
        tm = trimesh.load(path, force="mesh")
        for pieces in (2, 4):
            parts = [piece for piece, _ in split(tm, rng, pieces)]
            corners = np.concatenate([np.asarray(p.triangles, dtype=np.float32) for p in parts])
            owner = np.concatenate([np.full(len(p.faces), k) for k, p in enumerate(parts)])
            walls = _check(corners, owner)
            _check(corners)
            found += int(walls.any())
    assert found >= 4  # the wall path ran, not only the early "no two triangles on a plane"


def test_degenerate_and_extreme_triangles() -> None:
    rng = np.random.default_rng(5)
    cube = rng.normal(size=(500, 3, 3)).astype(np.float32)
    point = np.repeat(cube[:20, :1], 3, axis=1)  # no area: no normal (ok False, not divided)
    line = point.copy()
    line[:, 1, 0] += np.float32(1.0)
    line[:, 2, 0] += np.float32(2.0)  # collinear
    tiny = cube * np.float32(1e-30)  # cross products below the smallest double's square
    huge = cube * np.float32(1e30)
    mixed = np.concatenate([cube, point, line, cube[:50] * np.float32(1e-20), cube[:50] * np.float32(1e25)])
    axis = np.array([[[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 0, 1], [0, 1, 1], [1, 0, 1]]], dtype=np.float32)
    for corners in (cube, point, line, tiny, huge, mixed, axis, cube[:1], -cube):
        _check(corners)


def test_rounding_ties_go_to_even() -> None:
    """Offsets of exactly k + 1/2 steps, and oriented normal components on both sides of the
    1e-6 cut-off: the kernel's rounding is np.round's."""
    k = np.arange(-40, 41, dtype=np.float32)
    z = (k + np.float32(0.5)) / np.float32(mesh_mod.WALL_OFFSET_STEPS)  # exact in float32
    flat = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=np.float32)
    corners = np.repeat(flat[None], len(z), axis=0)
    corners[:, :, 2] = z[:, None]
    tilted = corners.copy()
    tilted[:, 1, 2] += np.float32(1e-7)  # a normal with a component near the 1e-6 cut-off
    compiled = kernels.compiled
    assert compiled is not None
    for c in (corners, tilted, corners[::-1]):
        n = len(c)
        ok, sign, packed = np.empty(n, dtype=bool), np.empty(n), np.empty(n, dtype=np.uint64)
        steps = (float(mesh_mod.WALL_NORMAL_STEPS), float(mesh_mod.WALL_OFFSET_STEPS))
        assert compiled.wall_keys(np.ascontiguousarray(c), 0.0, 0.0, 0.0, 1.0, *steps, ok, sign, packed)
        rows = mesh_mod._rows64(c)
        want = mesh_mod._plane_keys(rows, mesh_mod._centres(rows), np.zeros(3), 1.0)
        for g, w in zip((ok, sign, packed), want, strict=True):
            assert _same(g, w)
        _check(c)


def test_input_the_kernels_leave_to_numpy() -> None:
    compiled = kernels.compiled
    assert compiled is not None
    cube = np.random.default_rng(2).normal(size=(50, 3, 3)).astype(np.float32)
    bad = cube.copy()
    bad[7, 1, 2] = np.nan
    lo, hi = np.empty(3), np.empty(3)
    assert not compiled.wall_bounds(bad, lo, hi)
    assert mesh_mod._compiled_plane_keys(bad) is None
    n = len(cube)
    out = np.empty(n, dtype=bool), np.empty(n), np.empty(n, dtype=np.uint64)
    steps = (float(mesh_mod.WALL_NORMAL_STEPS), float(mesh_mod.WALL_OFFSET_STEPS))
    # an offset beyond int64 once rounded (a plane far from a box of no size): numpy's cast
    assert not compiled.wall_keys(cube, 0.0, 0.0, 0.0, 1e-300, *steps, *out)
    assert mesh_mod._compiled_plane_keys(np.zeros((0, 3, 3), dtype=np.float32)) is None
    assert mesh_mod._compiled_plane_keys(cube.astype(np.float64)) is None
    with pytest.raises(ValueError):
        compiled.wall_keys(cube, 0.0, 0.0, 0.0, 1.0, *steps, out[0][:-1], out[1], out[2])
