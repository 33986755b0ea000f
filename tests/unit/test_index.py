"""NearDuplicateIndex: exact k-NN, metadata carried, per-row thresholds respected."""

from __future__ import annotations

import numpy as np

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
