"""Interval estimates for proportions: the numbers a prevalence report stands on.

Why Wilson: prevalence of flagged files is small (often 0 in a sample), and the textbook
normal ("Wald") interval collapses to [0, 0] at k = 0 and undercovers badly near 0 and 1.
The Wilson score interval (Wilson 1927; recommended by Brown, Cai and DasGupta 2001,
"Interval Estimation for a Binomial Proportion", Statistical Science 16(2)) keeps close to
its nominal coverage for small n and small p, and never leaves [0, 1].

For a sample drawn without replacement from a finite population of N (``meshscan survey``),
the variance of the sample proportion shrinks by the finite-population correction
``(N - n) / (N - 1)``. We apply it the standard way for score intervals: the interval is
computed with the effective sample size ``n / fpc`` (and the same observed proportion), so
a census (n = N) gives a zero-width interval at the observed proportion, and n << N gives the
plain Wilson interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054
"""The 97.5th percentile of the standard normal: a two-sided 95% interval."""


def wilson_interval(k: int, n: int, z: float = Z95, population: int | None = None) -> tuple[float, float]:
    """The Wilson score interval for ``k`` successes in ``n`` trials.

    ``population``: size of the finite population the ``n`` items were drawn from without
    replacement (finite-population correction, see the module docstring). ``n == 0`` gives
    the uninformative ``(0.0, 1.0)``.
    """
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = k / n
    n_eff = float(n)
    if population is not None:
        if population < n:
            raise ValueError(f"population {population} is smaller than the sample {n}")
        if population == n or population <= 1:
            return p, p  # a census: no sampling error
        fpc = (population - n) / (population - 1)
        n_eff = n / fpc
    z2 = z * z
    denom = 1 + z2 / n_eff
    centre = (p + z2 / (2 * n_eff)) / denom
    half = z * math.sqrt(p * (1 - p) / n_eff + z2 / (4 * n_eff * n_eff)) / denom
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    # exact ends: at k = 0 the lower bound is 0, at k = n the upper bound is 1 (rounding aside)
    if k == 0:
        lo = 0.0
    if k == n:
        hi = 1.0
    return lo, hi


@dataclass(frozen=True)
class Proportion:
    """An estimated proportion with its 95% interval, as written into ``summary.json``."""

    k: int
    n: int
    estimate: float | None
    ci95: tuple[float, float]
    method: str = "wilson"

    def to_dict(self) -> dict[str, object]:
        return {
            "k": self.k,
            "n": self.n,
            "estimate": self.estimate,
            "ci95": [self.ci95[0], self.ci95[1]],
            "method": self.method,
        }


def proportion(k: int, n: int, population: int | None = None) -> Proportion:
    """``k / n`` with its Wilson 95% interval (``wilson-fpc`` when a population is given)."""
    lo, hi = wilson_interval(k, n, population=population)
    return Proportion(k, n, k / n if n else None, (lo, hi), "wilson" if population is None else "wilson-fpc")
