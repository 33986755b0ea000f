"""NearDuplicateIndex: exact k-NN, metadata carried, per-row thresholds respected."""

from __future__ import annotations

import numpy as np
import pytest

from scanner.index import NearDuplicateIndex


def test_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((500, 20), dtype=np.float32)
    index = NearDuplicateIndex()
    index.add(x, np.arange(500) // 2, np.arange(500) % 2 - 1)
    index.build()
    q = rng.random((3, 20))
    hits = index.query(q, k=4)
    for row in range(3):
        d = np.sqrt(((x.astype(np.float64) - q[row]) ** 2).sum(axis=1))
        expected = np.argsort(d)[:4]
        got = [h for h in hits if h.query_row == row]
        assert [h.signature for h in got] == list(expected // 2)
        np.testing.assert_allclose([h.distance for h in got], d[expected], rtol=1e-9)
        assert [h.body for h in got] == list(expected % 2 - 1)


def test_row_thresholds_and_radius() -> None:
    x = np.array([[0.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    index = NearDuplicateIndex()
    index.add(x, [0, 1], [-1, -1], thresholds=np.array([0.05, 0.5], dtype=np.float32))
    hits = index.query(np.array([[0.1, 0.0], [0.9, 0.0]]), k=2)
    assert [(h.query_row, h.signature) for h in hits] == [(1, 1)]  # 0.1 > row 0's own 0.05
    assert hits[0].threshold == np.float32(0.5)
    assert index.query(np.array([[0.9, 0.0]]), k=2, radius=0.05) == []
    rel = index.min_distance_per_signature(np.array([[0.1, 0.0]]), relative=True)
    np.testing.assert_allclose(rel, [0.1 / 0.05, 0.9 / 0.5], rtol=1e-6)


def test_empty_index_returns_nothing() -> None:
    assert NearDuplicateIndex().build().query(np.zeros((1, 4))) == []


def test_rows_of_one_signature_do_not_crowd_out_a_match_of_another() -> None:
    """Many rows of signature 0 (pieces, bodies) sit nearer to the query than signature 1's row
    but with thresholds too tight to match: signature 1's row, within its own threshold, is
    still found - every row within the radius is a candidate, not only the k nearest."""
    from scanner.index import NearDuplicateIndex

    q = np.zeros((1, 4), dtype=np.float32)
    near = np.tile(np.array([[0.01, 0, 0, 0]], dtype=np.float32), (50, 1))
    far = np.array([[0.05, 0, 0, 0]], dtype=np.float32)
    index = NearDuplicateIndex()
    index.add(near, [0] * 50, [-101 - i for i in range(50)], np.full(50, 0.005, dtype=np.float32))
    index.add(far, [1], [-1], np.array([0.06], dtype=np.float32))
    hits = index.build().query(q, k=5, radius=0.08)
    assert [(h.signature, h.body) for h in hits] == [(1, -1)]
    assert hits[0].distance == pytest.approx(0.05, abs=1e-6)


def test_at_most_k_signatures_per_query_row_each_with_its_nearest_row() -> None:
    from scanner.index import NearDuplicateIndex

    index = NearDuplicateIndex()
    for s in range(8):
        index.add(np.array([[0.01 * (s + 1), 0.0], [0.01 * (s + 1) + 0.001, 0.0]], dtype=np.float32), [s, s], [-1, 0])
    hits = index.build().query(np.zeros((1, 2), dtype=np.float32), k=3, radius=0.08)
    assert [(h.signature, h.body) for h in hits] == [(0, -1), (1, -1), (2, -1)]
