"""The matcher's confirmation of plane-cut piece hits (``PIECE_CONFIRM``): a hit on a piece row
beyond ``PIECE_CONFIRM`` x its threshold stands only when the upload is near the same signature
another way - its row near the signature's whole-file row (``PIECE_WHOLE``), or another of its
rows near a row of the same signature (``PIECE_AGREE``). Every benign false pair left in
``bench/evasion.py`` (issue 11: 0 over 100,000) was a lone row at 0.71-1.0 x a piece's
threshold with nothing else of the signature near it; the copies pieces are for are nearer, or
are most of the part, or come in several pieces.

The upload rows here are placed in descriptor space around a real enrolled demo proxy's rows,
so each test controls exactly which statistic the rule reads; each checks that the rule, not
another test of the matcher, decides (the same rows with the rule off give the opposite).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scanner.enrol import enrol
from scanner.features.pieces import piece_share
from scanner.features.reference import confirms, nearest_generic_distance
from scanner.library import SignatureLibrary
from scanner.matching import PIECE_AGREE, PIECE_CONFIRM, PIECE_WHOLE, SAME_DESIGN, Matcher

DEMO = Path(__file__).resolve().parents[2] / "fixtures" / "demo"


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> SignatureLibrary:
    lib = SignatureLibrary.create(tmp_path_factory.mktemp("lib"), name="t")
    enrol(lib, sorted(DEMO.glob("proxy-*.stl"))[1], "other_component", "test")
    return lib


def _rows(lib: SignatureLibrary) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(vectors float64, body numbers, thresholds, the whole-file row's vector)."""
    bodies = np.asarray(lib.rows)[:, 1]
    vectors = np.asarray(lib.vectors, dtype=np.float64)
    return vectors, bodies, np.asarray(lib.thresholds, dtype=np.float64), vectors[int(np.flatnonzero(bodies == -1)[0])]


def _first_stage(matcher: Matcher, rows: np.ndarray) -> list:
    return matcher.descriptors.query(rows.astype(np.float32), k=5, radius=0.08)


def _lone_piece_hit(lib: SignatureLibrary, matcher: Matcher, ratio: float) -> tuple[np.ndarray, int]:
    """An upload row at ``ratio`` x a piece row's threshold from it, moved straight away from the
    whole-file row, that only piece rows reach, each beyond ``PIECE_CONFIRM`` x its threshold, and
    that the other second-stage tests let through (no plain solid nearer): the shape of every
    benign false pair left. Returns (row, the piece row's index)."""
    vectors, bodies, thresholds, whole = _rows(lib)
    for i in np.flatnonzero(bodies <= -100):
        if thresholds[i] < 0.015:
            continue
        away = (vectors[i] - whole) / np.linalg.norm(vectors[i] - whole)
        row = vectors[i] + ratio * thresholds[i] * away
        hits = _first_stage(matcher, row[None, :])
        if not hits or any(piece_share(h.body) is None or h.distance <= PIECE_CONFIRM * h.threshold for h in hits):
            continue
        if np.linalg.norm(row - whole) <= PIECE_WHOLE:
            continue
        if all(confirms(h.distance, float(nearest_generic_distance(row[None, :])[0])) for h in hits):
            return row, int(i)
    raise AssertionError("the demo proxy has no piece row the test can place a lone hit beside")


def test_a_lone_row_near_a_piece_threshold_is_no_evidence(library, monkeypatch) -> None:
    """A benign-like hit: one upload row at 0.9 x a piece row's threshold, far from the
    signature as a whole, no other row near it - refused; with the rule off it would flag."""
    matcher = Matcher.build(library)
    row, _ = _lone_piece_hit(library, matcher, 0.9)
    assert matcher.near(row[None, :].astype(np.float32), [-1], k=5, radius=0.08, shares=[1.0]) == []
    monkeypatch.setattr("scanner.matching.PIECE_CONFIRM", 1.0)  # the rule off: the same row flags
    found = matcher.near(row[None, :].astype(np.float32), [-1], k=5, radius=0.08, shares=[1.0])
    assert found and all(m.signature_share is not None for m in found)


def test_a_piece_hit_well_inside_its_threshold_stands_alone(library) -> None:
    """A cut copy near the piece it reproduces (a partial or split copy: median 0.6 x the
    threshold in the bench) needs no other evidence."""
    matcher = Matcher.build(library)
    row, piece = _lone_piece_hit(library, matcher, 0.9)
    vectors, _, thresholds, _ = _rows(library)
    nearer = vectors[piece] + 0.5 * (row - vectors[piece]) / 0.9  # the same direction, at 0.5 x the threshold
    assert 0.5 <= PIECE_CONFIRM
    found = matcher.near(nearer[None, :].astype(np.float32), [-1], k=5, radius=0.08, shares=[1.0])
    assert [m.signature_share for m in found] == [piece_share(int(np.asarray(library.rows)[piece, 1]))]


def test_a_piece_hit_on_most_of_the_part_stands_when_the_whole_row_is_near(library) -> None:
    """A sliced or decimated copy rebuilt from most of the part (the 85% piece at 0.85-0.93 x its
    threshold in the bench and tests/integration/test_appended_payloads.py) is also near the
    signature's whole-file row: that corroborates the piece hit."""
    matcher = Matcher.build(library)
    vectors, bodies, thresholds, whole = _rows(library)
    whole_threshold = float(thresholds[int(np.flatnonzero(bodies == -1)[0])])
    placed = None
    for i in np.flatnonzero(bodies <= -100):
        if thresholds[i] < 0.015:
            continue
        toward = (whole - vectors[i]) / np.linalg.norm(whole - vectors[i])
        row = vectors[i] + 0.9 * thresholds[i] * toward
        hits = _first_stage(matcher, row[None, :])
        gap = np.linalg.norm(row - whole)
        if gap <= PIECE_WHOLE and gap > whole_threshold and hits and all(piece_share(h.body) is not None for h in hits):
            if all(h.distance > PIECE_CONFIRM * h.threshold for h in hits):
                placed = row
                break
    assert placed is not None, "the demo proxy has no piece row within PIECE_WHOLE of its whole row"
    found = matcher.near(placed[None, :].astype(np.float32), [-1], k=5, radius=0.08, shares=[1.0])
    assert found and all(m.signature_share is not None for m in found)


def test_a_piece_hit_stands_when_another_piece_of_the_upload_is_near_the_same_signature(library) -> None:
    """A copy split into pieces (or sliced walls in pieces): the doubtful piece hit of one body
    is corroborated by another body that is near another row of the same signature, though not
    within its threshold; without that body the same hit is refused."""
    matcher = Matcher.build(library)
    row, piece = _lone_piece_hit(library, matcher, 0.9)
    vectors, bodies, thresholds, whole = _rows(library)
    second = None
    for other in np.flatnonzero(bodies <= -100):
        if other == piece or thresholds[other] <= 0:
            continue
        away = (vectors[other] - whole) / np.linalg.norm(vectors[other] - whole)
        candidate = vectors[other] + 0.5 * (1.0 + PIECE_AGREE) * thresholds[other] * away  # 1.25 x its threshold
        if np.linalg.norm(candidate - row) > SAME_DESIGN and not _first_stage(matcher, candidate[None, :]):
            second = candidate  # near a row of the signature, within no row's threshold: no hit of its own
            break
    assert second is not None, "no piece row of the demo proxy to place a second, non-matching body beside"
    rows = np.stack([row, second]).astype(np.float32)
    found = matcher.near(rows, [0, 1], k=5, radius=0.08, shares=[0.5, 0.5])
    assert [m.body for m in found] == [0] and found[0].signature_share is not None
    assert matcher.near(rows[:1], [0], k=5, radius=0.08, shares=[0.5]) == []


def test_a_piece_hit_stands_when_the_upload_carries_some_of_the_signatures_patches(library) -> None:
    """A partial or split copy keeps its triangles: a few of the signature's distinctive patches
    (fewer than the ``local`` kind needs on its own) corroborate a doubtful piece hit; the same
    row with no patches of it is refused. The patches are asked for only then (lazily)."""
    from scanner.features.patches import mesh_patch_codes
    from scanner.loading import load

    matcher = Matcher.build(library)
    row, _ = _lone_piece_hit(library, matcher, 0.9)
    codes = mesh_patch_codes(load(sorted(DEMO.glob("proxy-*.stl"))[1]))  # the enrolled file's own patches
    asked = []

    def patches():
        asked.append(True)
        return codes

    query = row[None, :].astype(np.float32)
    found = matcher.near(query, [-1], k=5, radius=0.08, shares=[1.0], patches=patches)
    assert asked and found and all(m.signature_share is not None for m in found)
    other = mesh_patch_codes(load(sorted(DEMO.glob("benign-*.stl"))[0]))  # a benign file: none of its patches
    assert matcher.near(query, [-1], k=5, radius=0.08, shares=[1.0], patches=lambda: other) == []


def _near_piece_hit(library: SignatureLibrary, matcher: Matcher) -> tuple[np.ndarray, int]:
    """An upload row at 0.5 x a piece row's threshold: a hit that stands alone by distance."""
    row, piece = _lone_piece_hit(library, matcher, 0.9)
    vectors, _, _, _ = _rows(library)
    return vectors[piece] + 0.5 * (row - vectors[piece]) / 0.9, piece


def test_a_convex_row_near_a_piece_needs_corroboration(library, monkeypatch) -> None:
    """A stock shape (a pin, a block: solidity 1) that lands near a signature's plane-cut piece -
    the corpus's dowel pin on half a bolt proxy at 0.41 x - is refused however near, unless
    corroborated; the same row from a non-convex surface, or with its solidity unknown, stands."""
    from scanner.matching import CONVEX_SOLIDITY

    matcher = Matcher.build(library)
    row, piece = _near_piece_hit(library, matcher)
    query = row[None, :].astype(np.float32)
    asked: list[int] = []

    def solid(value: float | None):
        def read(i: int) -> float | None:
            asked.append(i)
            return value

        return read

    assert matcher.near(query, [-1], k=5, radius=0.08, shares=[1.0], solidity=solid(1.0)) == []
    assert asked == [0]
    assert matcher.near(query, [-1], k=5, radius=0.08, shares=[1.0], solidity=solid(CONVEX_SOLIDITY)) == []
    for value in (CONVEX_SOLIDITY - 0.01, 0.5, None):
        found = matcher.near(query, [-1], k=5, radius=0.08, shares=[1.0], solidity=solid(value))
        assert [m.signature_share for m in found] == [piece_share(int(np.asarray(library.rows)[piece, 1]))], value
    monkeypatch.setattr("scanner.matching.CONVEX_SOLIDITY", 1.01)  # the rule off: the convex row flags
    assert matcher.near(query, [-1], k=5, radius=0.08, shares=[1.0], solidity=solid(1.0))


def test_a_convex_row_on_a_piece_stands_with_the_signatures_patches(library) -> None:
    """A convex half of the part that keeps its triangles (a partial copy cut to a block) carries
    the signature's patches: corroborated, it stands."""
    from scanner.features.patches import mesh_patch_codes
    from scanner.loading import load

    matcher = Matcher.build(library)
    row, _ = _near_piece_hit(library, matcher)
    codes = mesh_patch_codes(load(sorted(DEMO.glob("proxy-*.stl"))[1]))
    found = matcher.near(row[None, :].astype(np.float32), [-1], k=5, radius=0.08, shares=[1.0],
                         patches=lambda: codes, solidity=lambda i: 1.0)  # fmt: skip
    assert found and all(m.signature_share is not None for m in found)


def test_the_solidity_of_a_piece_hit_is_not_computed_for_hits_that_need_no_answer(library) -> None:
    """Solidity costs a convex hull: it is asked about a near piece hit only, never for whole-row
    hits or uploads with no hit."""
    matcher = Matcher.build(library)
    vectors, bodies, _, whole = _rows(library)
    asked: list[int] = []
    found = matcher.near(whole[None, :].astype(np.float32), [-1], k=5, radius=0.08, shares=[1.0],
                         solidity=lambda i: asked.append(i) or 1.0)  # fmt: skip
    assert found and found[0].signature_share is None and asked == []
