"""The whitened (affine-normalised) row and the stretch rule (scanner.features.affine)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scanner.features import DESCRIPTOR_SIZE, describe
from scanner.features.affine import (
    AFFINE_THRESHOLD,
    AFFINE_WIDTH,
    STRETCH_LOG,
    AffineIndex,
    affine_distance,
    affine_row,
    stretch_spread,
    whiten,
)
from scanner.features.sampling import surface_moments, triangle_areas
from scanner.loading import load
from scanner.mesh import Mesh

DEMO = Path(__file__).resolve().parents[2] / "fixtures" / "demo"
PROXY = DEMO / "proxy-bolt_or_breech_block-s1-000.stl"


def _linear(mesh: Mesh, matrix: np.ndarray) -> Mesh:
    tri = mesh.surface().corners32.astype(np.float64).reshape(-1, 3)
    return Mesh(vertices=tri @ matrix.T)


def _stretch(axis: np.ndarray, factor: float) -> np.ndarray:
    """A stretch by ``factor`` along the unit vector ``axis`` (not a coordinate axis)."""
    axis = axis / np.linalg.norm(axis)
    return np.eye(3) + (factor - 1.0) * np.outer(axis, axis)


def _rows(mesh: Mesh) -> tuple[np.ndarray, np.ndarray]:
    surf = mesh.surface()
    return describe(mesh).whole.astype(np.float64), affine_row(surf.corners32, surf.corner_keys, DESCRIPTOR_SIZE)


def test_whitened_surface_has_isotropic_area_weighted_moments() -> None:
    tri = load(PROXY).surface().corners32.astype(np.float64) @ np.diag([1.0, 3.0, 0.4])
    white = whiten(tri)
    _, _, second = surface_moments(white, triangle_areas(white))
    assert np.allclose(second, np.eye(3) / 3.0, atol=1e-3)


def test_a_stretch_along_an_oblique_axis_moves_the_plain_row_but_not_the_whitened_one() -> None:
    mesh = load(PROXY)
    plain, white = _rows(mesh)
    rng = np.random.default_rng(5)
    for factor in (1.2, 0.8):
        q, r = np.linalg.qr(rng.normal(size=(3, 3)))
        stretched = _linear(mesh, (q * np.sign(np.diag(r))) @ _stretch(rng.normal(size=3), factor))
        s_plain, s_white = _rows(stretched)
        assert float(affine_distance(white, s_white)) <= AFFINE_THRESHOLD
        assert np.linalg.norm(plain - s_plain) > 2 * AFFINE_THRESHOLD  # why the plain row alone misses it
        assert float(stretch_spread(plain[-2:], s_plain[-2:])) <= STRETCH_LOG
    assert not white[AFFINE_WIDTH:].any()


def test_stretch_spread_is_the_log_of_the_stretch_for_an_axis_aligned_ellipsoid() -> None:
    before = np.array([0.5, 0.25])  # axis lengths relative to the longest
    after = np.array([0.5 * 1.2, 0.25])  # the middle axis stretched 1.2x
    assert float(stretch_spread(before, after)) == pytest.approx(np.log(1.2))
    assert float(stretch_spread(before, before)) == 0.0


def test_the_rule_refuses_other_proportions_that_whitening_alone_would_accept() -> None:
    """A box of other proportions is a linear image of the box: its whitened row is the same,
    but no stretch of at most exp(STRETCH_LOG) explains it, so nothing matches."""
    import trimesh

    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    signature = Mesh(vertices=np.asarray(box.vertices, dtype=np.float64), faces=np.asarray(box.faces))
    plain, white = _rows(signature)
    index = AffineIndex(white[None, :], np.array([0]), np.array([AFFINE_THRESHOLD]), plain[None, :])
    for extents, matches in (((1.0, 1.0, 1.15), True), ((1.0, 1.0, 2.5), False)):
        other = _linear(signature, np.diag(extents))
        o_plain, o_white = _rows(other)
        assert float(affine_distance(white, o_white)) <= AFFINE_THRESHOLD  # whitening cannot tell
        asked: list[np.ndarray] = []

        def whitened(w: np.ndarray = o_white, log: list[np.ndarray] = asked) -> np.ndarray:
            log.append(w)
            return w

        hits = index.query(o_plain, whitened)
        assert bool(hits) is matches
        assert bool(asked) is matches  # the whitened row is computed only past the plain bands


def test_a_row_with_threshold_zero_never_matches() -> None:
    plain, white = _rows(load(PROXY))
    index = AffineIndex(white[None, :], np.array([0]), np.array([0.0]), plain[None, :])
    assert len(index) == 0 and index.query(plain, lambda: white) == []


def test_the_matcher_finds_a_stretched_copy_only_through_its_own_signal(tmp_path: Path) -> None:
    """Enrolled, the whitened row is a row of the library like any other, but the plain index
    never compares with it; a disabled signature's whitened row matches nothing either."""
    from scanner.enrol import enrol
    from scanner.features.affine import AFFINE_ROW
    from scanner.library import SignatureLibrary
    from scanner.matching import Matcher

    lib = SignatureLibrary.create(tmp_path / "lib", name="t")
    (result,) = enrol(lib, PROXY, "bolt_or_breech_block", "test")
    assert (lib.rows[:, 1] == AFFINE_ROW).sum() == 1
    stretched = _linear(load(PROXY), _stretch(np.array([0.4, 1.0, -0.7]), 1.2))
    plain, white = _rows(stretched)
    matcher = Matcher.build(lib)
    assert not any(h.body == AFFINE_ROW for h in matcher.descriptors.query(lib.vectors, k=50, radius=10.0))
    found = matcher.stretched(plain, lambda: white)
    assert [(m.signature_id, m.kind, m.body) for m in found] == [(result.signature_id, "stretched", None)]
    assert found[0].distance <= found[0].threshold <= AFFINE_THRESHOLD
    lib.disable(result.signature_id, "test", "appeal upheld")
    assert Matcher.build(lib).stretched(plain, lambda: white) == []


def test_shared_descriptor_signals_never_include_the_whitened_row(tmp_path: Path) -> None:
    """Another platform compares a shared descriptor as a plain one: the whitened row stays home."""
    from scanner.enrol import enrol
    from scanner.exchange.signals import DESCRIPTOR_SIGNAL, library_signals
    from scanner.features.affine import AFFINE_ROW
    from scanner.library import SignatureLibrary

    lib = SignatureLibrary.create(tmp_path / "lib", name="t")
    enrol(lib, PROXY, "bolt_or_breech_block", "test")
    shared = [v for _, kind, v in library_signals(lib, all_rows=True) if kind == DESCRIPTOR_SIGNAL]
    plain = (lib.thresholds > 0) & (lib.rows[:, 1] != AFFINE_ROW)
    assert len(shared) == int(plain.sum()) > 0
