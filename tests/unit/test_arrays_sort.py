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


def _sort64_cases() -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    n = 300_000  # above the radix threshold
    hashes = rng.integers(0, 2**63, n, dtype=np.int64).astype(np.uint64) * np.uint64(2) + np.uint64(1)
    packed = (rng.integers(0, 2**36, n, dtype=np.int64) << np.int64(19)) | np.arange(n, dtype=np.int64)
    return [
        hashes,
        packed,  # non-negative int64, an index in the low bits (as the mesh's edge keys)
        rng.integers(0, 40, n).astype(np.uint64),  # few distinct values: piled in a few buckets
        np.concatenate([np.zeros(n, dtype=np.uint64), hashes[:1000]]),  # skewed
        np.repeat(hashes[:1000], 300),  # every key many times
        rng.integers(-(2**40), 2**40, n, dtype=np.int64),  # negative: numpy's sort
        hashes[::3],  # a strided view
        hashes[:1000],  # below the threshold
        hashes[:8743],  # a small file's sample: the small radix path (coarse skew check)
        packed[:15_000],  # a small mesh's edge keys
        np.concatenate([np.zeros(5000, dtype=np.uint64), hashes[:100]]),  # small and skewed: numpy's sort
        np.repeat(hashes[:50], 100),  # small, every key many times
        np.zeros(0, dtype=np.uint64),
    ]


@pytest.mark.parametrize("values", _sort64_cases(), ids=lambda v: f"{v.dtype}-n{len(v)}")
def test_sort64_is_numpys_sort(values: np.ndarray) -> None:
    """The radix-then-merge sort returns exactly ``np.sort``'s array, whatever the keys."""
    from scanner.arrays import sort64

    before = values.copy()
    got = sort64(values)
    expected = np.sort(values)
    assert got.dtype == expected.dtype
    assert np.array_equal(got, expected)
    assert np.array_equal(values, before)  # the input is left as it was
