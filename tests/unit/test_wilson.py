"""The Wilson interval against published values, its edge cases and the finite-population
correction; reservoir sampling is uniform and reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from scanner.report.stats import proportion, wilson_interval
from scanner.report.survey import reservoir_sample

# Newcombe (1998), "Two-sided confidence intervals for the single proportion: comparison of
# seven methods", Statistics in Medicine 17, Table II, method 3 (Wilson score, no continuity correction).
NEWCOMBE = [
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0000, 0.1611),
    (1, 29, 0.0061, 0.1718),
]


@pytest.mark.parametrize(("k", "n", "lo", "hi"), NEWCOMBE)
def test_wilson_matches_published_values(k: int, n: int, lo: float, hi: float) -> None:
    got = wilson_interval(k, n)
    assert got[0] == pytest.approx(lo, abs=6e-5)
    assert got[1] == pytest.approx(hi, abs=6e-5)


def test_wilson_edges_and_symmetry() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = wilson_interval(0, 50)
    assert lo == 0.0 and 0 < hi < 0.1
    lo, hi = wilson_interval(50, 50)
    assert hi == 1.0 and 0.9 < lo < 1
    for k in range(0, 31):
        a, b = wilson_interval(k, 30)
        c, d = wilson_interval(30 - k, 30)
        assert a == pytest.approx(1 - d, abs=1e-12) and b == pytest.approx(1 - c, abs=1e-12)
        assert 0 <= a <= k / 30 <= b <= 1
    with pytest.raises(ValueError):
        wilson_interval(5, 4)
    with pytest.raises(ValueError):
        wilson_interval(-1, 4)


def test_finite_population_correction() -> None:
    plain = wilson_interval(10, 100)
    assert wilson_interval(10, 100, population=10**9) == pytest.approx(plain, abs=1e-6)
    half = wilson_interval(10, 100, population=200)
    assert plain[0] < half[0] < 0.1 < half[1] < plain[1]  # narrower, still around the estimate
    assert wilson_interval(10, 100, population=100) == (0.1, 0.1)  # a census has no sampling error
    with pytest.raises(ValueError):
        wilson_interval(1, 10, population=5)
    p = proportion(3, 40, population=400).to_dict()
    assert p["method"] == "wilson-fpc" and p["estimate"] == 3 / 40 and p["k"] == 3 and p["n"] == 40


def test_reservoir_is_reproducible_ordered_and_counts_the_stream() -> None:
    items = list(range(1000))
    a, n = reservoir_sample(iter(items), 50, np.random.default_rng(7))
    b, _ = reservoir_sample(iter(items), 50, np.random.default_rng(7))
    c, _ = reservoir_sample(iter(items), 50, np.random.default_rng(8))
    assert a == b and a != c and n == 1000
    assert a == sorted(a) and len(set(a)) == 50
    few, n_few = reservoir_sample(iter(range(3)), 10, np.random.default_rng(0))
    assert few == [0, 1, 2] and n_few == 3
    with pytest.raises(ValueError):
        reservoir_sample(iter(items), 0, np.random.default_rng(0))


def test_reservoir_is_uniform() -> None:
    """Every item is kept with probability k/N: chi-square over 4,000 seeded draws."""
    n_items, k, draws = 40, 5, 4000
    hits = np.zeros(n_items)
    for seed in range(draws):
        sample, _ = reservoir_sample(iter(range(n_items)), k, np.random.default_rng(seed))
        hits[sample] += 1
    expected = draws * k / n_items
    chi2 = float(((hits - expected) ** 2 / expected).sum())
    # 39 degrees of freedom: the 99.9th percentile is 72.1; a biased sampler lands far above
    assert chi2 < 72.1, (chi2, hits)
    # and early, middle and late items alike (Algorithm L's skips must not favour the start)
    assert abs(hits[:10].mean() - hits[-10:].mean()) < 0.1 * expected
