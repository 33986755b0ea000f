"""Local patch codes (scanner/features/local.py): invariance, partial matching, no geometry stored."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

import scanner
from scanner.features.local import (
    SIGNATURE_LEVELS,
    LocalDescriptors,
    LocalIndex,
    _hamming_masks,
    _in_ball,
    benign_codebook,
    describe_local,
    describe_signature,
)
from tests.conftest import REPO

PROXY = REPO / "fixtures" / "demo" / "proxy-frame_or_receiver-s1-001.stl"
THRESHOLD = 0.3
"""The coverage threshold bench/local_descriptors.py chose."""


def overlap(a: LocalDescriptors, b: LocalDescriptors, radius: int = 1) -> float:
    """Share of a's valid codes that b reproduces within Hamming ``radius`` at the same step."""
    masks = _hamming_masks(56, radius)
    hit = total = 0
    for row, k in enumerate(a.levels):
        other = np.flatnonzero(b.levels == k)
        if not len(other):
            continue
        pool = np.unique(b.codes[other[0]][b.valid[other[0]]])
        codes = a.codes[row][a.valid[row]]
        hit += int(_in_ball(codes, pool, masks).sum())
        total += len(codes)
    return hit / max(total, 1)


@pytest.fixture(scope="module")
def proxy() -> np.ndarray:
    return scanner.load(PROXY).corners32


@pytest.fixture(scope="module")
def proxy_codes(proxy) -> LocalDescriptors:
    return describe_local(proxy)


def _moved(tri: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return (tri.reshape(-1, 3).astype(np.float64) @ matrix.T).astype(np.float32).reshape(-1, 3, 3)


def test_deterministic(proxy, proxy_codes) -> None:
    again = describe_local(proxy)
    assert np.array_equal(again.codes, proxy_codes.codes) and np.array_equal(again.valid, proxy_codes.valid)


def test_triangle_and_corner_order_change_nothing(proxy, proxy_codes) -> None:
    rng = np.random.default_rng(3)
    shuffled = proxy[rng.permutation(len(proxy))][:, ::-1]  # reorder triangles, flip every winding
    other = describe_local(np.ascontiguousarray(shuffled))
    assert np.array_equal(other.codes, proxy_codes.codes)


@pytest.mark.parametrize(
    "name,matrix",
    [
        ("rotation", trimesh.transformations.random_rotation_matrix(np.random.default_rng(1).random(3))[:3, :3]),
        ("mirror", np.diag([-1.0, 1.0, 1.0])),
        ("scale 0.05", np.eye(3) * 0.05),
        ("scale 20", np.eye(3) * 20.0),
    ],
)
def test_similarity_keeps_the_codes(proxy, proxy_codes, name, matrix) -> None:
    other = describe_local(_moved(proxy, matrix))
    assert overlap(proxy_codes, other) >= 0.85, name


def test_codes_differ_between_shapes(proxy, proxy_codes) -> None:
    """Flat and straight patches are common to every box-and-cylinder shape (which is why the
    index keeps only distinctive ones), but a copy reproduces clearly more than another shape."""
    tube = trimesh.creation.annulus(r_min=0.5, r_max=1.0, height=6.0, sections=48)
    other = overlap(proxy_codes, describe_local(np.asarray(tube.triangles, dtype=np.float32)))
    copy = overlap(proxy_codes, describe_local(_moved(proxy, np.diag([1.0, -1.0, 1.0]))))
    assert other <= copy - 0.1


@pytest.fixture(scope="module")
def index(proxy) -> LocalIndex:
    """The proxy enrolled against a small benign codebook of generated look-alikes."""
    import fixtures.generate as gen

    rng = np.random.default_rng(303)
    benign = [fn(rng) for fn in gen.BENIGN.values() for _ in range(2)]
    descs = [describe_local(np.asarray(b.triangles, dtype=np.float32)) for b in benign]
    idx = LocalIndex(benign=benign_codebook(descs))
    assert idx.add("proxy", describe_signature(proxy)) >= idx.min_distinctive
    idx.build()
    thresholds = idx.calibrate([[d] for d in descs], floor=THRESHOLD)
    assert thresholds["proxy"] >= THRESHOLD
    return idx


def _cut(tri: np.ndarray, normal, keep: float) -> np.ndarray:
    """The part of a closed mesh on one side of a plane, capped, keeping ~``keep`` of its extent."""
    import manifold3d

    tm = trimesh.Trimesh(tri.reshape(-1, 3), np.arange(len(tri) * 3).reshape(-1, 3))
    tm.merge_vertices()
    solid = manifold3d.Manifold(manifold3d.Mesh(np.asarray(tm.vertices, np.float32), np.asarray(tm.faces, np.uint32)))
    n = np.asarray(normal, dtype=np.float64) / np.linalg.norm(normal)
    proj = tm.vertices @ n
    offset = proj.max() - keep * (proj.max() - proj.min())
    out = solid.trim_by_plane(tuple(n), float(offset)).to_mesh()
    return np.asarray(out.vert_properties, np.float32)[:, :3][np.asarray(out.tri_verts)]


def test_full_copy_matches(index, proxy) -> None:
    turned = _moved(
        proxy, 3.0 * trimesh.transformations.random_rotation_matrix(np.random.default_rng(5).random(3))[:3, :3]
    )
    found = index.query(describe_local(turned))
    assert found and found[0].signature_id == "proxy" and found[0].matched


def test_partial_copy_reaches_threshold(index, proxy) -> None:
    part = _cut(proxy, (1.0, 0.2, 0.1), 0.7)
    found = [m for m in index.query(describe_local(part)) if m.signature_id == "proxy"]
    assert found and found[0].matched
    # the cut copy is at the proxy's own scale: the voted size of the whole signature agrees
    unit = describe_signature(proxy).unit
    assert 0.5 < found[0].consistent_scale / unit < 2.0


def test_unrelated_benign_mesh_stays_below(index) -> None:
    import fixtures.generate as gen

    rng = np.random.default_rng(909)
    for fn in (gen.benign_bracket, gen.benign_enclosure, gen.benign_pipe, gen.benign_plate):
        tri = np.asarray(fn(rng).triangles, dtype=np.float32)
        assert not any(m.matched for m in index.query(describe_local(tri)))


def test_stored_signature_holds_no_coordinates(proxy) -> None:
    part = describe_signature(proxy).signature_part()
    assert set(part) == {"codes", "valid", "levels", "radial"}
    for value in part.values():
        assert value.dtype.kind in "uib", value.dtype  # integers and flags only: no float coordinates
    assert part["radial"].max() < 16 and set(np.unique(part["levels"]).tolist()) <= set(SIGNATURE_LEVELS)
    idx = LocalIndex()
    idx.add("s", part)
    stored = idx._stored["s"]
    assert all(np.asarray(getattr(stored, f)).dtype.kind in "uib" for f in ("codes", "levels", "radial", "key"))
