"""The matcher's second stage, library side: a near-duplicate hit stands only when no other
known design is about as near the upload (``DISTINCT_RATIO``). An unrelated part that lands in
a crowded region of a large library sits inside some row's threshold but also beside other
designs; a copy of a design is clearly nearer that design (issue 11, item 4: precision must not
fall as the library grows)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from fixtures.evasions import noise
from scanner.enrol import enrol
from scanner.features import describe
from scanner.index import NearDuplicateIndex
from scanner.library import SignatureLibrary
from scanner.loading import load
from scanner.matching import DISTINCT_RATIO, SAME_DESIGN, Matcher
from scanner.pipeline import ScanContext, scan_one
from scanner.verdict import FLAG

DEMO = Path(__file__).resolve().parents[2] / "fixtures" / "demo"


@pytest.fixture
def two_designs(tmp_path: Path) -> tuple[SignatureLibrary, np.ndarray, np.ndarray]:
    """Two near but different designs enrolled (a proxy, and the proxy stretched 1.25x along
    one axis: 0.08 apart, both far from any plain solid), their whole-file rows widened so
    that a row between them is within both thresholds, as in a crowded library."""
    lib = SignatureLibrary.create(tmp_path / "lib", name="t")
    proxy = sorted(DEMO.glob("proxy-*.stl"))[1]
    enrol(lib, proxy, "other_component", "test")
    stretched = trimesh.load(proxy, force="mesh")
    stretched.apply_scale([1.0, 1.0, 1.25])
    stretched.export(tmp_path / "other.stl")
    enrol(lib, tmp_path / "other.stl", "other_component", "test")
    rows = np.asarray(lib.rows)
    whole = [int(np.flatnonzero((rows[:, 0] == i) & (rows[:, 1] == -1))[0]) for i in range(2)]
    lib.thresholds[whole] = 1.0
    a, b = (np.asarray(lib.vectors[w], dtype=np.float64) for w in whole)
    return lib, a, b


def _whole_row(path: Path) -> np.ndarray:
    return describe(load(path)).rows()[0][:1]


def _near(lib: SignatureLibrary, row: np.ndarray) -> list:
    return Matcher.build(lib).near(row[None, :].astype(np.float32), [-1], k=5, radius=10.0)


def test_a_row_about_as_near_two_designs_matches_neither(two_designs) -> None:
    lib, a, b = two_designs
    between = a + 0.5 * (b - a)
    first_stage = Matcher.build(lib).descriptors.query(between[None, :], k=5, radius=10.0)
    assert {h.signature for h in first_stage} == {0, 1}, "the test needs both rows within threshold"
    assert np.linalg.norm(a - b) > SAME_DESIGN
    assert _near(lib, between) == []


def test_a_row_clearly_nearer_one_design_matches_it(two_designs) -> None:
    lib, a, b = two_designs
    # nearer a by more than the margin: |q - a| = 0.3 |a - b|, |q - b| = 0.7 |a - b|
    row = a + 0.3 * (b - a)
    assert 0.3 / 0.7 < DISTINCT_RATIO
    matches = _near(lib, row)
    assert [m.signature_id for m in matches] == [lib.signatures[0].id]


def test_the_margin_decides_near_ties(two_designs) -> None:
    """Just nearer one design is not enough: 0.48 against 0.52 of the way is within the margin."""
    lib, a, b = two_designs
    assert 0.48 / 0.52 > DISTINCT_RATIO
    assert _near(lib, a + 0.48 * (b - a)) == []


def test_the_same_design_enrolled_twice_still_flags_a_copy(tmp_path: Path) -> None:
    """Two sources enrol one design (a re-exported, rotated copy: other bytes, other triangles):
    their rows sit within sampling noise of each other, so a copy near both is no tie."""
    proxy = sorted(DEMO.glob("proxy-*.stl"))[0]
    lib = SignatureLibrary.create(tmp_path / "lib", name="t")
    enrol(lib, proxy, "other_component", "source-a")
    other = trimesh.load(proxy, force="mesh")
    other.apply_transform(trimesh.transformations.rotation_matrix(0.9, (1, 0, 1)))
    other.export(tmp_path / "reexport.obj")
    (second,) = enrol(lib, tmp_path / "reexport.obj", "other_component", "source-b")
    assert second.signature_id is not None and len(lib.signatures) == 2
    # a noisy copy: as near one enrolled copy as the other (about 0.01 from each)
    copy = noise(trimesh.load(proxy, force="mesh"), np.random.default_rng(5), 0.005)
    copy.export(tmp_path / "upload.stl")
    hits = Matcher.build(lib).descriptors.query(_whole_row(tmp_path / "upload.stl"), k=5, radius=1.0)
    assert {h.signature for h in hits} == {0, 1}, hits
    assert {m.signature_id for m in _near(lib, _whole_row(tmp_path / "upload.stl")[0])} == {
        s.id for s in lib.signatures
    }
    (verdict,) = scan_one(tmp_path / "upload.stl", ScanContext(library=lib, model=None))
    assert verdict.verdict == FLAG, verdict.explanation


def test_neighbours_ignore_row_thresholds_and_disabled_rows() -> None:
    """Rivals count whatever their own threshold (a tight row of another design still makes a
    hit ambiguous); rows that may not match (disabled signatures) are no rivals."""
    index = NearDuplicateIndex()
    vectors = np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.2], [0.05, 0.05]], dtype=np.float32)
    index.add(vectors, [0, 1, 2, 3], [-1, -1, -1, -1], np.array([0.5, 0.0, 0.0, 0.0], dtype=np.float32))
    index.build()
    index.active = np.array([True, True, True, False])
    ((rows, dist),) = index.neighbours(np.zeros((1, 2)), radius=0.15)
    assert rows.tolist() == [0, 1]
    assert np.allclose(dist, [0.0, 0.1])


def test_a_piece_of_a_signature_matches_a_large_upload_row_only(tmp_path: Path) -> None:
    """A plane-cut piece row matches a row holding enough of the upload (a partial copy, half of
    a split one), not a small body of a larger model that happens to look like part of it."""
    from scanner.features.pieces import piece_share
    from scanner.matching import PIECE_UPLOAD_SHARE

    lib = SignatureLibrary.create(tmp_path / "lib", name="t")
    enrol(lib, sorted(DEMO.glob("proxy-*.stl"))[1], "other_component", "test")
    rows, thresholds = np.asarray(lib.rows), np.asarray(lib.thresholds)
    piece = next(i for i, (_, b) in enumerate(rows) if piece_share(int(b)) == 0.7 and thresholds[i] > 0)
    query = np.asarray(lib.vectors[piece], dtype=np.float32)[None, :]
    matcher = Matcher.build(lib)

    def found(share: float | None) -> list:
        return matcher.near(query, [0], k=5, radius=0.08, shares=None if share is None else [share])

    assert [m.signature_share for m in found(None)] == [0.7]
    assert [m.signature_share for m in found(PIECE_UPLOAD_SHARE)] == [0.7]
    assert found(0.024) == []


def test_rows_of_a_signature_by_binary_search_or_by_scan() -> None:
    """The piece confirmation reads one signature's rows: found by binary search when the rows
    are grouped by signature (as libraries write them), by a scan otherwise - the same rows."""
    grouped = NearDuplicateIndex()
    grouped.add(np.zeros((6, 2), dtype=np.float32), [0, 0, 1, 1, 1, 3], [-1, 0, -1, 0, 1, -1])
    grouped.build()
    assert grouped.rows_of(1).tolist() == [2, 3, 4] and grouped.rows_of(2).tolist() == []
    assert grouped._grouped is True
    shuffled = NearDuplicateIndex()
    shuffled.add(np.zeros((6, 2), dtype=np.float32), [1, 0, 1, 3, 0, 1], [-1, -1, 0, -1, 0, 1])
    shuffled.build()
    assert shuffled.rows_of(1).tolist() == [0, 2, 5] and shuffled._grouped is False
