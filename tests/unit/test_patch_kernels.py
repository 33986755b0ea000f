"""The patch codes' compiled kernels (scanner/_patch_kernels.c) give the numpy code's bytes.

A library enrolled on an install with the kernels must match a scan on one without, so the
:class:`~scanner.features.patches.PatchCodes` (codes, sizes, weights) are compared byte for
byte with the kernels on and off (``kernels.patches = None`` forces the numpy code) on the
inputs of tests/unit/test_kernels.py (200 files of the throughput bench's small set, every
mesh of ``fixtures/demo``, blobs of 3k to 200k triangles) and on edge cases: one triangle,
open surfaces, edges of three or more faces, zero-area and sliver triangles, huge and tiny
coordinates, float64 vertices (the numpy code), two threads' half blocks.

The extension must be importable here; in a source checkout build it in place as
tests/unit/test_kernels.py says, with ``scanner/_patch_kernels.c`` and
``scanner/_patch_kernels$(EXT_SUFFIX)``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from scanner import kernels
from scanner.features import patches
from scanner.features.patches import PatchCodes, mesh_patch_codes, patch_codes, signature_patches
from scanner.mesh import Mesh
from tests.unit.test_kernels import DEMO, _Counting, _surface, small_set  # noqa: F401 (small_set: a fixture)
from tests.unit.test_kernels import _Off as _KernelsOff


def test_the_extension_is_built_here() -> None:
    assert kernels.patches is not None, "scanner._patch_kernels is not built (see this module's docstring)"


def _Off() -> _KernelsOff:  # noqa: N802 - used as the class it was
    """``with _Off():`` runs the numpy code."""
    return _KernelsOff("patches")


def _same(a: PatchCodes, b: PatchCodes) -> bool:
    return all(
        x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
        for x, y in ((a.codes, b.codes), (a.sizes, b.sizes), (a.weights, b.weights))
    )


def _check(mesh: Mesh) -> PatchCodes:
    got = mesh_patch_codes(mesh)
    with _Off():
        want = mesh_patch_codes(mesh)
    assert _same(got, want)
    return got


def test_the_kernels_are_called(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparisons below compare the C path: mesh_patch_codes takes it, once per block."""
    counting = _Counting(kernels.patches)
    monkeypatch.setattr(kernels, "patches", counting)
    mesh_patch_codes(_surface(DEMO[0]))
    assert counting.calls == {"geometry": 1, "codes": 1}


def test_small_set(small_set: list[Path]) -> None:  # noqa: F811 (the imported fixture)
    assert len(small_set) == 200
    for path in small_set:
        _check(_surface(path))


def test_demo_meshes() -> None:
    assert len(DEMO) >= 60
    for path in DEMO:
        assert len(_check(_surface(path)))


@pytest.mark.parametrize("triangles", [3_000, 12_000, 50_000, 200_000])
def test_blobs(triangles: int, tmp_path: Path) -> None:
    """Past one block of 65,536 triangles too; and two threads' half blocks."""
    from bench.throughput import blob_stl
    from scanner.parallel import shared_map

    path = tmp_path / "blob.stl"
    blob_stl(path, triangles, np.random.default_rng(triangles))
    mesh = _surface(path)
    got = _check(mesh)
    assert _same(mesh_patch_codes(mesh, each=shared_map), got)


def _mesh(tri: np.ndarray) -> Mesh:
    return Mesh(vertices=np.asarray(tri, dtype=np.float32).reshape(-1, 3))


def _edge_meshes() -> list[Callable[[], Mesh]]:
    from tests.unit.test_patches import _sheet_with_fin

    rng = np.random.default_rng(11)
    one = np.array([[[0, 0, 0], [1, 0, 0], [0, 1, 0]]], dtype=np.float32)
    soup = rng.normal(size=(500, 3, 3)).astype(np.float32)  # every edge open
    # a fan of five triangles round one edge (non-manifold), and a strip sharing edges in pairs
    fan = np.array([[[0, 0, 0], [0, 0, 1], [np.cos(a), np.sin(a), 0.5]] for a in np.linspace(0, 5, 5)], np.float32)
    strip = np.array([[[i, 0, 0], [i + 1, 0, 0], [i, 1, 0.1 * i]] for i in range(20)], np.float32)
    # zero-area and sliver triangles among good ones (float32 area 0 after welding)
    flat = np.concatenate([soup[:50], np.array([[[0, 0, 0], [1, 0, 0], [2, 0, 0]]], np.float32)])
    sliver = soup[:60].copy()
    sliver[:, 2] = sliver[:, 1] + np.float32(1e-3)
    out = [lambda: _mesh(one), lambda: _mesh(soup), lambda: _mesh(fan), lambda: _mesh(strip), _sheet_with_fin]
    out += [lambda: _mesh(flat), lambda: _mesh(sliver)]
    # scaled copies of a closed proxy: huge (squares overflow float32), tiny (ratios underflow)
    closed = _surface(DEMO[0]).triangles.astype(np.float32)
    for scale in (1e-30, 1e-20, 1e-12, 1e15, 1e18, 3e18, 1e19, 3e19, 1e25, 3e38):
        out.append(lambda s=scale: _mesh((closed.astype(np.float64) * s).astype(np.float32)))
    far = np.concatenate([closed, closed[:3] + np.float32(1e20)])  # a few far-away triangles
    out.append(lambda: _mesh(far))
    return out


def test_edge_surfaces() -> None:
    with np.errstate(all="ignore"):  # huge coordinates: the numpy code warns, both paths give its bytes
        for make in _edge_meshes():
            _check(make())


def test_direct_inputs() -> None:
    """patch_codes itself: float64 vertices (the numpy code on both paths), int32 and
    non-contiguous faces, neighbours found from the sorted edges."""
    mesh = _surface(DEMO[1])
    vertices, faces = mesh.welded_vertices, mesh.welded_faces
    key, position, _ = mesh.sorted_edges
    for v, f in (
        (vertices, faces),
        (vertices.astype(np.float64), faces),
        (vertices, faces.astype(np.int32)),
        (vertices, np.asfortranarray(faces)),
        (np.asfortranarray(vertices), faces[:7]),
    ):
        edges = (key, position) if len(f) == len(faces) else _sorted_edges(f)
        got = patch_codes(v, f, edges)
        with _Off():
            want = patch_codes(v, f, edges)
        assert _same(got, want)


def _sorted_edges(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ends = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).astype(np.int64)
    base = int(faces.max()) + 1
    key = ends.min(axis=1) * base + ends.max(axis=1)
    position = np.argsort(key, kind="stable")
    return key[position], position


def test_signature_patches() -> None:
    for path in DEMO[:20]:
        mesh = _surface(path)
        got = signature_patches(mesh)
        with _Off():
            want = signature_patches(mesh)
        for field in ("codes", "sizes", "shares"):
            assert getattr(got, field).tobytes() == getattr(want, field).tobytes()


def test_falls_back_where_values_are_not_finite(monkeypatch: pytest.MonkeyPatch) -> None:
    """A block the kernels leave to numpy (huge coordinates) is the numpy code's."""
    closed = _surface(DEMO[0]).triangles.astype(np.float64) * 1e19  # squared sides overflow float32
    calls: list[int] = []
    real = patches._chunk_codes

    def counted(*args: object) -> tuple:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(patches, "_chunk_codes", counted)
    with np.errstate(all="ignore"):
        assert len(_check(_mesh(closed)))
    assert calls == [1, 1]  # the C path's fallback, then the reference
