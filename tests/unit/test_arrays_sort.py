"""The value-sort stand-ins for ``argsort`` and ``unique(return_inverse=True)`` give numpy's
exact answers, including when different keys share their high bits (the fallback path)."""

from __future__ import annotations

import numpy as np
import pytest

from scanner.arrays import inverse_u64, stable_argsort_u64


def _cases() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    out = []
    for n in (0, 1, 2, 7, 1000, 50_000):
        out.append(rng.integers(0, 2**63, n, dtype=np.int64).astype(np.uint64) * np.uint64(2))  # full range
        out.append(rng.integers(0, 5, n).astype(np.uint64))  # many ties: stability matters
        # keys that differ only in their lowest bits: the packed sort alone would order them wrong
        out.append((rng.integers(0, 3, n).astype(np.uint64) << np.uint64(62)) | rng.integers(0, 4, n).astype(np.uint64))
    return out


@pytest.mark.parametrize("keys", _cases(), ids=lambda k: f"n{len(k)}")
def test_same_as_numpy(keys: np.ndarray) -> None:
    assert np.array_equal(stable_argsort_u64(keys), np.argsort(keys, kind="stable"))
    assert np.array_equal(inverse_u64(keys), np.unique(keys, return_inverse=True)[1].reshape(-1))
