"""The matcher's crowding test (``CROWD_DESIGNS`` other designs within ``CROWD_RATIO`` x the hit
distance refuse a hit): the false flags left against 10,000 proxy signatures were all in the
outer band of some row's threshold with several other designs about as near, while a copy of a
design is clearly nearer it than anything else.

Upload rows and rival signatures are placed in descriptor space around a real enrolled demo
proxy, so each test controls exactly what the rule reads; each checks that the rule, not
another test of the matcher, decides (the same rows with the rule off give the opposite).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scanner.enrol import enrol
from scanner.features.affine import AffineIndex
from scanner.features.reference import confirms, nearest_generic_distance
from scanner.library import Signature, SignatureLibrary
from scanner.matching import CROWD_BAND, CROWD_DESIGNS, CROWD_RATIO, DISTINCT_RATIO, SAME_DESIGN, Matcher, crowded

DEMO = Path(__file__).resolve().parents[2] / "fixtures" / "demo"


def _orthonormal(width: int, count: int, seed: int = 0) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(width, count)))
    return q.T


def test_three_other_designs_about_as_near_contest_a_hit() -> None:
    own = np.zeros(8)
    d = 0.02
    rivals = 1.3 * d * _orthonormal(8, 3)  # each 1.3 x d from the upload at the origin's side
    distances = np.full(3, 1.3 * d)
    signatures = np.array([1, 2, 3])
    assert crowded(own, rivals, signatures, distances, d, d)
    assert not crowded(own, rivals[:2], signatures[:2], distances[:2], d, d)  # two: not crowded
    # three rows of one signature are one design
    assert not crowded(own, rivals, np.array([1, 1, 1]), distances, d, d)


def test_rivals_that_are_one_shape_count_once_and_the_hit_shape_enrolled_again_not_at_all() -> None:
    own = np.zeros(8)
    d = 0.02
    base = 1.3 * d * _orthonormal(8, 1)[0]
    twins = np.stack([base, base + 0.2 * SAME_DESIGN * _orthonormal(8, 2, seed=1)[0], base * 1.0001])
    assert not crowded(own, twins, np.array([1, 2, 3]), np.full(3, 1.3 * d), d, d)  # one shape, three ids
    again = 0.5 * SAME_DESIGN * _orthonormal(8, 3, seed=2)  # the hit's own shape under other ids
    assert not crowded(own, again, np.array([4, 5, 6]), np.full(3, 1.2 * d), d, d)


def test_a_hit_well_inside_its_threshold_stands_in_a_crowd() -> None:
    own, d = np.zeros(8), 0.02
    rivals = 1.3 * d * _orthonormal(8, 3)
    assert crowded(own, rivals, np.array([1, 2, 3]), np.full(3, 1.3 * d), d, d / CROWD_BAND * 0.99)
    assert not crowded(own, rivals, np.array([1, 2, 3]), np.full(3, 1.3 * d), d, d / CROWD_BAND * 1.01)


def test_one_rival_nearer_than_the_distinct_ratio_contests_alone() -> None:
    own, d = np.zeros(8), 0.02
    rival = 1.05 * d * _orthonormal(8, 1)
    assert 1.05 < 1 / DISTINCT_RATIO
    assert crowded(own, rival, np.array([1]), np.array([1.05 * d]), d, d)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> SignatureLibrary:
    lib = SignatureLibrary.create(tmp_path_factory.mktemp("lib"), name="t")
    enrol(lib, sorted(DEMO.glob("proxy-*.stl"))[1], "other_component", "test")
    return lib


def _placed_hit(lib: SignatureLibrary, ratio: float) -> tuple[np.ndarray, float]:
    """An upload row at ``ratio`` x the whole-file row's threshold from it, in a direction where
    the other second-stage tests let it through. Returns (row, its distance)."""
    bodies = np.asarray(lib.rows)[:, 1]
    vectors = np.asarray(lib.vectors, dtype=np.float64)
    thresholds = np.asarray(lib.thresholds, dtype=np.float64)
    whole = int(np.flatnonzero(bodies == -1)[0])
    t = float(thresholds[whole])
    assert t >= 0.015, "the demo proxy's whole row needs a usable threshold"
    for direction in _orthonormal(vectors.shape[1], 16, seed=3):
        row = vectors[whole] + ratio * t * direction
        near = np.sqrt(((vectors - row) ** 2).sum(axis=1))
        if near.min() < ratio * t * 0.999:  # another row of the proxy nearer: not the hit we place
            continue
        if confirms(ratio * t, float(nearest_generic_distance(row[None, :])[0])):
            return row, ratio * t
    raise AssertionError("no direction around the demo proxy's whole row passes the other tests")


def _with_rivals(
    lib: SignatureLibrary, row: np.ndarray, d: float, count: int, ratio: float, tmp: Path
) -> SignatureLibrary:
    """A copy of ``lib`` plus ``count`` one-row signatures at ``ratio`` x ``d`` from ``row``, in
    mutually orthogonal directions (other designs), each with a threshold that matches nothing."""
    out = SignatureLibrary.create(tmp, name="t+rivals")
    out.merge(lib)
    directions = _orthonormal(len(row), count, seed=5)
    for i, direction in enumerate(directions):
        key = f"{i:064x}"
        sig = Signature(id=f"ms-rival{i}", category="other_component", source="test", added="2026-11-30T00:00:00+00:00",
                        sha256=key, geometry_hash=key, triangles=12, bodies=1)  # fmt: skip
        vector = (row + ratio * d * direction)[None, :].astype(np.float32)
        out.add(sig, vector, [-1], np.array([1e-4], dtype=np.float32))
    return out


def _near(lib: SignatureLibrary, row: np.ndarray) -> list:
    return Matcher.build(lib).near(row[None, :].astype(np.float32), [-1], k=5, radius=0.08, shares=[1.0])


def test_a_hit_with_three_other_designs_about_as_near_is_refused(library, tmp_path, monkeypatch) -> None:
    row, d = _placed_hit(library, 0.8)
    assert [m.signature_id for m in _near(library, row)] == [library.signatures[0].id]  # alone: it stands
    crowd = _with_rivals(library, row, d, CROWD_DESIGNS, 0.5 * (1 / DISTINCT_RATIO + CROWD_RATIO), tmp_path / "l")
    assert _near(crowd, row) == []
    monkeypatch.setattr("scanner.matching.CROWD_DESIGNS", 99)  # the rule off: the same hit stands
    assert [m.signature_id for m in _near(crowd, row)] == [library.signatures[0].id]


def test_a_clearly_nearer_copy_stands_among_other_designs(library, tmp_path) -> None:
    """The same rivals, but the upload much nearer the signature (a copy): they are beyond
    ``CROWD_RATIO`` x its distance, so it flags."""
    row, d = _placed_hit(library, 0.3)
    crowd = _with_rivals(library, row, d, CROWD_DESIGNS + 2, 1.2 * CROWD_RATIO, tmp_path / "l")
    assert [m.signature_id for m in _near(crowd, row)] == [library.signatures[0].id]


def test_a_stretched_hit_is_contested_by_other_designs_in_its_bands(library, tmp_path, monkeypatch) -> None:
    """The stretch rule's whitened rows: the hit lists the other in-band signatures within
    ``rivals`` x its distance, and the matcher refuses it when they are a crowd."""
    width = 40
    plain = np.zeros((5, 20), dtype=np.float32)
    plain[np.arange(5), np.arange(5)] = 0.03  # five designs (plain rows 0.042 apart), all in band
    plain[:, -2:] = 0.5  # equal inertia ratios: no stretch needed
    affine = np.zeros((5, width), dtype=np.float32)
    query = np.zeros(width)
    d = 0.01
    for i, direction in enumerate(_orthonormal(width, 5, seed=8)):
        affine[i] = query + (d if i == 0 else 1.3 * d) * direction
    thresholds = np.array([0.018, 1e-4, 1e-4, 1e-4, 1e-4])
    index = AffineIndex(affine, np.arange(5), thresholds, plain)
    (hit,) = index.query(plain[0], lambda: query, rivals=CROWD_RATIO)
    assert hit.position == 0 and sorted(r[0] for r in hit.rivals) == [1, 2, 3, 4]
    lib = SignatureLibrary.create(tmp_path, name="t")
    for i in range(5):  # five signatures for the positions to name (their plain rows play no part)
        key = f"{i + 100:064x}"
        sig = Signature(id=f"ms-s{i}", category="other_component", source="test", added="2026-11-30T00:00:00+00:00",
                        sha256=key, geometry_hash=key, triangles=12, bodies=1)  # fmt: skip
        lib.add(
            sig, np.full((1, library_width(library)), 10.0 + i, dtype=np.float32), [-1], np.array([1e-4], np.float32)
        )
    matcher = Matcher.build(lib)
    matcher.stretch = index
    assert matcher.stretched(plain[0], lambda: query) == []
    monkeypatch.setattr("scanner.matching.CROWD_DESIGNS", 99)  # the rule off: the same hit stands
    assert [m.signature_id for m in matcher.stretched(plain[0], lambda: query)] == ["ms-s0"]


def library_width(lib: SignatureLibrary) -> int:
    return int(np.asarray(lib.vectors).shape[1])


def test_a_stretched_hit_stands_beside_one_sibling_design_as_near(tmp_path) -> None:
    """Whitening removes what tells a design from its siblings of other proportions, so a
    stretched copy is about as near a sibling that differs from its design only by a stretch
    (and is a stretched copy of that one too): one such rival does not refuse a stretched hit,
    where it refuses a plain one (the one-rival test, ``DISTINCT_RATIO``); a crowd still does."""
    width = 40
    plain = np.zeros((2, 20), dtype=np.float32)
    plain[np.arange(2), np.arange(2)] = 0.03  # two designs, their plain rows 0.042 apart: not one design
    plain[:, -2:] = 0.5
    query = np.zeros(width)
    d = 0.01
    directions = _orthonormal(width, 2, seed=9)
    affine = np.stack([query + d * directions[0], query + 1.05 * d * directions[1]]).astype(np.float32)
    assert 1.05 < 1 / DISTINCT_RATIO and 1.05 < CROWD_RATIO
    index = AffineIndex(affine, np.arange(2), np.array([0.018, 1e-4]), plain)
    (hit,) = index.query(plain[0], lambda: query, rivals=CROWD_RATIO)
    assert hit.distance > CROWD_BAND * hit.threshold  # in the band the crowding test reads
    lib = SignatureLibrary.create(tmp_path, name="t")
    for i in range(2):
        key = f"{i + 200:064x}"
        sig = Signature(id=f"ms-t{i}", category="other_component", source="test", added="2026-11-30T00:00:00+00:00",
                        sha256=key, geometry_hash=key, triangles=12, bodies=1)  # fmt: skip
        lib.add(sig, np.full((1, 76), 10.0 + i, dtype=np.float32), [-1], np.array([1e-4], np.float32))
    matcher = Matcher.build(lib)
    matcher.stretch = index
    assert [m.signature_id for m in matcher.stretched(plain[0], lambda: query)] == ["ms-t0"]
    rival = ([plain[1]], [1], [1.05 * d])
    assert crowded(plain[0], *rival, hit.distance, hit.threshold)  # as a plain hit: refused
    assert not crowded(plain[0], *rival, hit.distance, hit.threshold, one_rival=False)
