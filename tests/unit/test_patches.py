"""Patch codes (scanner.features.patches) and their index (scanner.patch_index): exact under
what they promise (rigid motion, scale, mirror, winding, order), partial under cuts and
unions, silent on generic geometry, and the index votes at one consistent scale."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from importlib.resources import files

import numpy as np
import pytest
import trimesh

from scanner.features.patches import (
    FOLD,
    MAX_SIGNATURE_PATCHES,
    MIN_MATCHED,
    PATCH_VERSION,
    RING,
    PatchCodes,
    _triangle_hash,
    generic_codes,
    mesh_patch_codes,
    signature_patches,
)
from scanner.loading import load
from scanner.mesh import Mesh, _splitmix
from scanner.patch_index import MAX_DESIGNS_PER_CODE, MAX_HITS_PER_CODE, PatchIndex
from tests.conftest import REPO

DEMO = REPO / "fixtures" / "demo"


def mesh_of(vertices: np.ndarray, faces: np.ndarray) -> Mesh:
    return Mesh(vertices=np.asarray(vertices, dtype=np.float64), faces=np.asarray(faces, dtype=np.int64))


@pytest.fixture(scope="module")
def part() -> trimesh.Trimesh:
    """An enrolled demo proxy (a synthetic box/cylinder composition)."""
    return trimesh.load(DEMO / "proxy-slide_or_cylinder-s1-000.obj", force="mesh")


def codes(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    return np.sort(mesh_patch_codes(mesh_of(vertices, faces)).codes)


def test_codes_are_exactly_invariant_to_pose_scale_mirror_winding_and_order(part: trimesh.Trimesh) -> None:
    rng = np.random.default_rng(4)
    v, f = np.asarray(part.vertices), np.asarray(part.faces)
    base = codes(v, f)
    rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    assert np.array_equal(base, codes(v @ rotation.T * 0.05, f))  # turned, scaled down
    assert np.array_equal(base, codes(v * 17.0, f))
    assert np.array_equal(base, codes(v * [1.0, -1.0, 1.0], f))  # mirrored
    assert np.array_equal(base, codes(v, f[:, ::-1]))  # every winding flipped
    assert np.array_equal(base, codes(v, np.roll(f[rng.permutation(len(f))], 1, axis=1)))
    # moved a few of its sizes away, float32 rounding moves a rare ratio across a step
    moved = codes(v @ rotation.T + 5 * part.scale, f)
    assert np.isin(moved, base).mean() > 0.98


def test_each_triangle_has_one_code_of_each_kind(part: trimesh.Trimesh) -> None:
    pc = mesh_patch_codes(mesh_of(part.vertices, part.faces))
    kinds = (pc.codes & np.uint64(1)).astype(int)
    assert np.sum(kinds == RING) == np.sum(kinds == FOLD) == len(part.faces)


def test_a_cut_or_fused_copy_is_found_and_a_jittered_one_is_not(part: trimesh.Trimesh) -> None:
    """A copy cut to half (manifold3d's plane trim, capped) or unioned with a plate keeps
    enough unchanged triangles; moving every vertex a little changes every code (that family
    is the global descriptor's)."""
    from fixtures.evasions import fused_plate, keep_fraction

    sketch = signature_patches(mesh_of(part.vertices, part.faces))
    index = PatchIndex(sketch.codes, sketch.sizes, sketch.shares, np.zeros(len(sketch), np.int64), signatures=1)
    for edited in (keep_fraction(part, np.random.default_rng(0), 0.5), fused_plate(part)):
        (hit,) = index.query(mesh_patch_codes(mesh_of(edited.vertices, edited.faces)))
        assert hit.signature == 0 and hit.matched >= MIN_MATCHED and hit.scale == 1.0
    jitter = np.random.default_rng(1).normal(scale=1e-3 * part.scale, size=part.vertices.shape)
    assert index.query(mesh_patch_codes(mesh_of(np.asarray(part.vertices) + jitter, part.faces))) == []


def test_signature_patches_drop_generic_codes_and_are_a_bounded_sketch(part: trimesh.Trimesh) -> None:
    mesh = mesh_of(part.vertices, part.faces)
    sketch = signature_patches(mesh)
    assert len(sketch) and not np.isin(sketch.codes, generic_codes()).any()
    assert np.all(np.diff(sketch.codes.astype(np.float64)) >= 0)
    for kind in (RING, FOLD):
        mine = (sketch.codes & np.uint64(1)) == kind
        assert 0 < mine.sum() <= MAX_SIGNATURE_PATCHES and 0 < sketch.shares[mine].sum() <= 1.0 + 1e-6
    # a code in the benign codebook is never part of a sketch: make every code generic
    everything = np.unique(mesh_patch_codes(mesh).codes)
    assert len(signature_patches(mesh, generic=everything)) == 0
    # a plain box has too few distinct patches of either kind to ever be matched on them
    box = trimesh.creation.box(extents=(1, 2, 3))
    kinds = signature_patches(mesh_of(box.vertices, box.faces)).codes & np.uint64(1)
    assert max(np.sum(kinds == RING), np.sum(kinds == FOLD)) < MIN_MATCHED


def test_shipped_codebook_matches_this_scanner() -> None:
    meta = json.loads(files("scanner.data").joinpath("generic_patches.json").read_text("utf-8"))
    book = generic_codes()
    assert meta["patch_version"] == PATCH_VERSION and meta["codes"] == len(book)
    assert book.dtype == np.uint64 and np.all(book[1:] > book[:-1])


def index_of(*sketches: PatchCodes | None, active: list[bool] | None = None) -> PatchIndex:
    cols = [[], [], [], []]
    for position, sk in enumerate(sketches):
        if sk is None:
            continue
        cols[0].append(sk.codes)
        cols[1].append(sk.sizes)
        cols[2].append(np.full(len(sk), 1.0 / len(sk), dtype=np.float32))
        cols[3].append(np.full(len(sk), position, dtype=np.int64))
    c, s, w, g = (np.concatenate(x) for x in cols)
    order = np.lexsort((g, c))
    return PatchIndex(c[order], s[order], w[order], g[order], signatures=len(sketches),
                      active=None if active is None else np.asarray(active))  # fmt: skip


def synthetic(n: int, seed: int, size: int = 10) -> PatchCodes:
    rng = np.random.default_rng(seed)
    c = (rng.integers(0, 2**62, size=n, dtype=np.int64).astype(np.uint64) << np.uint64(1)) | np.uint64(RING)
    return PatchCodes(c, np.full(n, size, dtype=np.int16), np.ones(n))


def test_index_finds_a_subset_at_one_scale_shift() -> None:
    sig = synthetic(40, 1)
    index = index_of(sig, synthetic(40, 2))
    part = PatchCodes(sig.codes[:12], sig.sizes[:12] + 8, sig.weights[:12])  # 30% of it, twice as large
    (hit,) = index.query(part)
    assert (hit.signature, hit.matched, hit.total) == (0, 12, 40)
    assert hit.share == pytest.approx(0.3) and hit.scale == pytest.approx(4.0)  # 8 quarter octaves
    assert index.query(PatchCodes(sig.codes[: MIN_MATCHED - 1], sig.sizes[: MIN_MATCHED - 1], np.ones(7))) == []


def test_index_refuses_codes_at_scattered_scales_and_disabled_signatures() -> None:
    sig = synthetic(40, 1)
    scattered = PatchCodes(sig.codes, (sig.sizes + np.arange(40) * 3).astype(np.int16), sig.weights)
    index = index_of(sig)
    assert index.query(scattered) == []  # each code matches, but no 8 of them at one scale
    assert index_of(sig, active=[False]).query(sig) == []


def test_a_code_shared_by_many_signatures_is_not_evidence() -> None:
    common = synthetic(10, 9)
    sketches = [common] * (MAX_HITS_PER_CODE + 1)
    assert index_of(*sketches).query(common) == []
    assert len(index_of(*sketches[:3]).query(common)) == 3


def test_codes_common_in_the_library_cast_no_vote(monkeypatch: pytest.MonkeyPatch) -> None:
    """A code more than ``MAX_DESIGNS_PER_CODE`` signatures carry is common local geometry in
    this library (a real jig flagged a proxy at 10,000 signatures on 9 such codes): an upload
    with only such codes matches nothing, and a copy is found on the codes that are its own."""
    common = synthetic(10, 9)
    own = synthetic(12, 10)
    part = PatchCodes(np.concatenate([common.codes, own.codes]), np.full(22, 10, np.int16), np.ones(22))
    others = [common] * MAX_DESIGNS_PER_CODE  # with the part: one signature more than allowed
    index = index_of(part, *others)
    (hit,) = index.query(part)
    assert (hit.signature, hit.matched) == (0, 12)  # its own codes only
    assert index.query(common) == []
    monkeypatch.setattr("scanner.patch_index.MAX_DESIGNS_PER_CODE", MAX_HITS_PER_CODE)  # the rule off
    assert len(index.query(common)) == 1 + MAX_DESIGNS_PER_CODE


def _digest(pc: PatchCodes) -> str:
    h = hashlib.sha256()
    for a in (pc.codes, pc.sizes, pc.weights):
        h.update(a.dtype.str.encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _sheet_with_fin() -> Mesh:
    """A wavy open grid (boundary edges) with a fin on one inner diagonal (an edge of three
    triangles): every kind of edge the codes treat apart."""
    xs, ys = np.meshgrid(np.linspace(0, 11, 12), np.linspace(0, 8, 9), indexing="ij")
    zs = 0.3 * np.sin(xs * 0.7) * np.cos(ys * 0.5) + 0.01 * xs * ys
    v = np.stack([xs, ys, zs], axis=-1).reshape(-1, 3)
    idx = np.arange(12 * 9).reshape(12, 9)
    a, b, c, d = idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    fin = np.array([[v[idx[5, 4]], v[idx[6, 5]], v[idx[5, 4]] + np.array([0.2, -0.1, 2.0])]])
    return Mesh(vertices=np.concatenate([v[faces], fin]).astype(np.float32).reshape(-1, 3))


@pytest.mark.parametrize(
    ("mesh", "digest"),
    [
        (
            lambda: load(DEMO / "proxy-barrel-s1-000.stl"),
            "99aa6f0c1b1c581753bbdd2e51e6bd6be7c8c9fb49a06c8a6790290e1ec3fe8f",
        ),
        (_sheet_with_fin, "e69a02e4b0ddcabb0888ff2cfda33cf64874aba9db4459b6d8cefc617f548da1"),
    ],
    ids=["closed-proxy", "open-sheet-with-fin"],
)
def test_codes_are_the_ones_libraries_were_built_with(mesh: Callable[[], Mesh], digest: str) -> None:
    """The codes, sizes and weights, bit for bit, as pc2 first computed them (before issue 18's
    speed-ups): a library's signatures hold these codes, so a faster implementation must give
    the same ones. A deliberate change of the codes bumps ``PATCH_VERSION`` and these digests."""
    assert PATCH_VERSION == "pc2"
    assert _digest(mesh_patch_codes(mesh())) == digest


def test_triangle_code_hashes_the_sorted_edge_triple() -> None:
    """Any order of a triangle's three edge hashes, ties included, gives its code: the sorted
    triple chained through splitmix, the kind in the lowest bit."""
    rng = np.random.default_rng(8)
    edges = rng.integers(0, 2**63, (500, 3), dtype=np.uint64)
    edges[:100, 1] = edges[:100, 0]  # two equal
    edges[100:150, :] = edges[100:150, :1]  # all three equal
    for kind in (RING, FOLD):
        want = np.full(500, np.uint64(0x9E3779B97F4A7C15), dtype=np.uint64)
        for col in np.sort(edges, axis=1).T:
            want = _splitmix(want ^ col)
        want = (want & ~np.uint64(1)) | np.uint64(kind)
        for perm in ([0, 1, 2], [2, 0, 1], [1, 2, 0], [2, 1, 0]):
            assert np.array_equal(_triangle_hash(edges[:, perm].T, kind), want)


def test_the_bit_table_finds_what_looking_every_code_up_finds(monkeypatch: pytest.MonkeyPatch) -> None:
    """An upload's codes that the library's bit table rules out are in no signature: queries
    with the table (a small library) and without it (every code looked up) give the same hits,
    for copies at a scale, parts of several signatures, repeated codes and no match at all."""
    import scanner.patch_index as patch_index

    sigs = [synthetic(40, seed, size=10 + seed) for seed in range(1, 7)]
    index = index_of(*sigs)
    noise = synthetic(5_000, 99)
    uploads = [
        PatchCodes(np.concatenate([noise.codes, sigs[0].codes[:20]]),
                   np.concatenate([noise.sizes, sigs[0].sizes[:20] + 4]), np.ones(5_020)),
        PatchCodes(np.concatenate([sigs[2].codes, sigs[3].codes[:15], sigs[2].codes[:9]]),
                   np.concatenate([sigs[2].sizes, sigs[3].sizes[:15] - 2, sigs[2].sizes[:9]]), np.ones(64)),
        noise,
        PatchCodes(sigs[5].codes[:3], sigs[5].sizes[:3], np.ones(3)),
    ]  # fmt: skip
    with_table = [index.query(u) for u in uploads]
    assert index._filter is not None and [len(h) for h in with_table] == [1, 2, 0, 0]
    monkeypatch.setattr(patch_index, "FILTER_MAX_CODES", -1)
    fresh = index_of(*sigs)
    assert [fresh.query(u) for u in uploads] == with_table
    assert fresh._filter is None
