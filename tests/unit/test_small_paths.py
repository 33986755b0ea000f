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
    """The sampler's ``x - floor(x)`` gives the points that ``x % 1.0`` gave."""
    s = surface(kind, i)
    new = sampling.sample_surface(s.corners32, corner_keys=s.corner_keys).coords
    monkeypatch.setattr(sampling, "_fraction", lambda x: x % 1.0)
    old = sampling.sample_surface(s.corners32, corner_keys=s.corner_keys).coords
    assert new.dtype == old.dtype and new.shape == old.shape
    assert new.tobytes() == old.tobytes()


def test_fraction_matches_the_remainder_on_edge_values() -> None:
    x = np.array([0.0, 1.0, 2.0, 0.5, 1e-300, 5e-324, 8191.999999999999, 1 - 2**-53, 2**40 + 0.25, 3.0 - 2**-51])
    x = np.concatenate([x, np.random.default_rng(0).uniform(0, 9000, 10_000)])
    assert sampling._fraction(x.copy()).tobytes() == (x % 1.0).tobytes()
