"""Descriptor families. Each is a small class naming itself, its version and its length,
with one ``compute(sample) -> vector`` (python-threatexchange's signal-type shape). Vectors
are cumulative histograms (values in [0, 1]), so the Euclidean distance between two is a
Cramer-von-Mises-like distance between distributions: small shifts move it a little, never
a whole bin's worth.

All of them read a :class:`SurfaceSample`, which is already centred, scaled to unit RMS
radius and in a canonical triangle order, so every family is invariant to rigid motion,
uniform scale, mirroring, element order and format by construction. They read its points
through :meth:`SurfaceSample.weighted`: each point weighs the inverse of its local density,
so that area inflated by vertex noise does not count (D1, D2 and A3 version 3, inertia 2).
"""

from __future__ import annotations

import functools
import math
from typing import ClassVar

import numpy as np

from scanner import kernels
from scanner.features.sampling import SEED, SurfaceSample

TRIPLES_PER_POINT = 6
"""Triples per surface point: 6 x 8,192 angles for A3, twice as many distances for D2."""


@functools.lru_cache(maxsize=4)
def _kernel(lo: float, hi: float, bins: int, bandwidth: float) -> tuple[np.ndarray, float, float, int]:
    """The smoothing matrix of :func:`_cdf`: fine-bin counts -> smoothed CDF at the edges."""
    from scipy.special import erf

    step = (hi - lo) / bins
    fine = 16 * bins + 128
    a, b = lo - 4 * step, hi + 4 * step
    fine_edges = np.linspace(a, b, fine + 1)
    centres = 0.5 * (fine_edges[1:] + fine_edges[:-1])
    z = (np.linspace(lo, hi, bins + 1)[1:, None] - centres[None, :]) / (bandwidth * step)
    return 0.5 * (1.0 + erf(z / np.sqrt(2.0))), a, b, fine


def _cdf(
    values: np.ndarray, lo: float, hi: float, bins: int, bandwidth: float = 0.5, weights: np.ndarray | None = None
) -> np.ndarray:
    """Kernel-smoothed cumulative distribution at ``bins`` evenly spaced edges in (lo, hi].

    Each value contributes a Gaussian-smoothed step (``bandwidth`` in bin widths), so a tight
    distribution (a sphere's D1 is a spike) moves the vector smoothly under small noise
    instead of jumping a whole bin. Evaluated from a fine histogram (values outside the
    range pile up in its end bins), so it costs O(N) plus one small matrix product. With the
    compiled kernels (:mod:`scanner.kernels`) the fine histogram is counted in C, the same
    float32 bins and in-order sums (measured: D2's ``_cdf`` 0.23 -> 0.12 ms on the small set).
    """
    kernel, a, b, fine = _kernel(lo, hi, bins, bandwidth)
    compiled = kernels.compiled
    if compiled is not None and weights is not None and values.dtype == np.float32 and values.ndim == 1 and len(values):
        # the same float32 ``(values - a) * scale`` (a Python float meets a float32 array as a
        # float32) and the same in-order accumulation as np.bincount; False: a value outside
        # int32's range or NaN, left to the numpy code below
        counts = np.empty(fine)
        values, weights = np.ascontiguousarray(values), np.ascontiguousarray(weights, dtype=np.float64)
        if len(values) == len(weights) and compiled.bins(
            values, float(np.float32(a)), float(np.float32(fine / (b - a))), fine, weights, counts
        ):
            return _smoothed(kernel, counts)
    idx = _fine_bins((values - a) * (fine / (b - a)), fine)
    return _smoothed(kernel, np.bincount(idx, weights=weights, minlength=fine))


def _smoothed(kernel: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The smoothed CDF of fine-bin ``counts`` (weights; normalised to sum 1 here)."""
    return kernel @ (counts / max(float(counts.sum()), 1e-300))


_INT32_REACH = float(2**31)


def _fine_bins(scaled: np.ndarray, fine: int) -> np.ndarray:
    """``scaled`` truncated to integers and clipped to ``[0, fine)``: the fine histogram's
    bin of each value, as ``scaled.astype(np.int64)`` then clipped gave it.

    Why int32 when every value fits: a float to int64 cast has no vector instruction short of
    AVX-512 and costs ~120 us on D2's 98,304 values, to int32 ~22 us (plus ~25 us for the range
    check); both truncate toward zero, so the bins are the same. A value outside int32's
    range, NaN or infinite (whose int64 casts the clip maps as before) takes the int64 cast."""
    low, high = scaled.min(), scaled.max()
    if low > -_INT32_REACH and high < _INT32_REACH:  # False for NaN: it propagates into both
        idx = scaled.astype(np.int32)
    else:
        idx = scaled.astype(np.int64)
    np.clip(idx, 0, fine - 1, out=idx)
    return idx


@functools.lru_cache(maxsize=8)
def _shift_pairs(n: int, count: int) -> tuple[tuple[int, int], ...]:
    """``count`` pairs of distinct offsets (a, b) in [1, n): triple k is (k + a, k, k + b) mod n.

    The points are in a content-hashed (pseudo-random) order, so pairing each point with the
    points ``a`` and ``b`` places further on is a random draw of triples in which every point
    takes part equally often - and it needs no gathers, only rolled copies."""
    if n < 3:
        return ()
    rng = np.random.default_rng(int(SEED) + 2)
    offsets = rng.choice(np.arange(1, n), size=min(2 * count, n - 1), replace=False)
    return tuple((int(offsets[2 * t]), int(offsets[2 * t + 1])) for t in range(len(offsets) // 2))


class DescriptorFamily:
    name: ClassVar[str]
    version: ClassVar[int]
    size: ClassVar[int]
    weight: ClassVar[float] = 1.0

    @classmethod
    def compute(cls, sample: SurfaceSample) -> np.ndarray:
        raise NotImplementedError


class D1(DescriptorFamily):
    """Distances of surface points from their (density-weighted) centroid (Osada et al.'s D1).
    Version 3: every family weighs points by :func:`density_weights`."""

    name, version, size = "d1", 3, 24

    @classmethod
    def compute(cls, sample: SurfaceSample) -> np.ndarray:
        c, w = sample.weighted()
        return _cdf(np.sqrt((c * c).sum(axis=0)), 0.0, 2.4, cls.size, weights=w)


def _shifted_minus(pt: np.ndarray, shift: int, out: np.ndarray) -> None:
    """``out = np.roll(pt, -shift, axis=1) - pt``, without the rolled copy."""
    n = pt.shape[1]
    np.subtract(pt[:, shift:], pt[:, : n - shift], out=out[:, : n - shift])
    np.subtract(pt[:, :shift], pt[:, n - shift :], out=out[:, n - shift :])


def _shifted_product(w: np.ndarray, shift: int, out: np.ndarray) -> None:
    """``out = np.roll(w, -shift) * w``, without the rolled copy."""
    n = len(w)
    np.multiply(w[shift:], w[: n - shift], out=out[: n - shift])
    np.multiply(w[:shift], w[n - shift :], out=out[n - shift :])


def _legs(sample: SurfaceSample) -> tuple[np.ndarray, ...]:
    """For TRIPLES_PER_POINT x N triples (a, j, b): the legs |p_a - p_j| and |p_b - p_j| (one
    array) with their weights (w_a w_j, w_b w_j), the cosine of the angle at p_j and its
    weight (w_a w_j w_b). A3 reads the angle; both legs are random point pairs, so D2 reads them
    too and costs nothing of its own. With the compiled kernels (:mod:`scanner.kernels`) one C
    pass per pair computes the same bits (measured 0.43-0.45 -> 0.13 ms a call on the small set)."""
    legs = sample.shared.get("legs")
    if legs is None:
        pt, w = sample.weighted()  # (3, N): shifts and sums on contiguous rows
        n = pt.shape[1]
        pairs = _shift_pairs(n, TRIPLES_PER_POINT)
        m = len(pairs) * n
        lengths, weights = np.empty(2 * m, dtype=pt.dtype), np.empty(2 * m)  # both legs in one run for D2
        lu, lv, wu, wv = lengths[:m], lengths[m:], weights[:m], weights[m:]
        cos, wc = np.empty(m, dtype=pt.dtype), np.empty(m)
        compiled = kernels.compiled
        if compiled is not None and pairs and pt.dtype == np.float32 and pt.flags.c_contiguous:
            # one pass per pair in C: the same float32 differences, sums ((u0 u0 + u1 u1) + u2 u2,
            # as .sum(axis=0) adds rows), roots and quotient, and the same float64 weights
            compiled.legs(pt, np.ascontiguousarray(w, dtype=np.float64), n, np.asarray(pairs, dtype=np.int64),
                          lengths, weights, cos, wc)  # fmt: skip
            pairs = ()  # done: the numpy loop below has nothing left to do
        u, v = np.empty_like(pt), np.empty_like(pt)
        for t, (a, b) in enumerate(pairs):
            _shifted_minus(pt, a, u)
            _shifted_minus(pt, b, v)
            uu, vv, uv = (u * u).sum(axis=0), (v * v).sum(axis=0), (u * v).sum(axis=0)
            denom = np.sqrt(uu * vv)
            part = slice(t * n, (t + 1) * n)
            np.sqrt(uu, out=lu[part])
            np.sqrt(vv, out=lv[part])
            np.divide(uv, np.where(denom > 0, denom, 1.0), out=cos[part])
            _shifted_product(w, a, wu[part])
            _shifted_product(w, b, wv[part])
            np.multiply(wu[part], wv[part], out=wc[part])
            wc[part] /= w
        legs = sample.shared["legs"] = (lengths, weights, cos, wc)
    return legs


class D2(DescriptorFamily):
    """Distances between random pairs of surface points (Osada et al.'s D2)."""

    name, version, size = "d2", 3, 32

    @classmethod
    def compute(cls, sample: SurfaceSample) -> np.ndarray:
        lengths, weights, _, _ = _legs(sample)
        return _cdf(lengths, 0.0, 3.2, cls.size, weights=weights)


_ONE = 0x3F800000
"""The bits of float32 1.0: :func:`_ordered_floats` numbers the float32 values of [-1, 1] from
``-_ONE - 1`` (-1.0) to ``_ONE`` (1.0), in the order of their values."""


def _ordered_floats(keys: np.ndarray) -> np.ndarray:
    """float32 values from ordered integer keys: key k >= 0 is the float with bits k, k < 0 the
    negative float with magnitude bits -k - 1 (-0.0 is -1, +0.0 is 0)."""
    keys = np.asarray(keys, dtype=np.int64)
    bits = np.where(keys >= 0, keys, (-keys - 1) | 0x80000000).astype(np.uint32)
    return bits.view(np.float32)


def _rounded_angle_bins(cos: np.ndarray, a: float, scale: float, fine: int) -> np.ndarray:
    """The fine bin of each float32 cosine's angle, the angle rounded correctly to float32 (the
    C library's double ``acos``, within an ulp of a double, then rounded: 2^29 times finer than
    a float32's rounding needs) and binned as :func:`_cdf` bins float32 values (``a`` and
    ``scale`` float32)."""
    angle = np.array([math.acos(min(1.0, max(-1.0, float(c)))) for c in cos], dtype=np.float64).astype(np.float32)
    return np.clip(np.trunc((angle - np.float32(a)) * np.float32(scale)), 0, fine - 1).astype(np.int64)


@functools.lru_cache(maxsize=2)
def _angle_steps(a: float, scale: float, fine: int) -> tuple[np.ndarray, int]:
    """A3's fine bins as cosines: (steps, top), the bin of a cosine c being ``top - #{steps <=
    c}`` (``top``: the bin of c = -1): step m is the least float32 cosine whose correctly rounded
    angle lies in bin ``top - m - 1`` or lower, found by bisection over the float32 numbers of
    [-1, 1] (32 rounds over the 288 steps, 9 ms once per process).

    Why (issue 18, item 1, and a descriptor that is the same on every machine): A3 bins the angle
    at a point between two others, and took it from ``np.arccos`` on 49,152 float32 cosines a
    file - the C library's ``acosf``, one value at a time: A3 took 0.85-0.88 ms of a small
    file's ~15 ms in a slow window of this machine (about 6%), 0.36-0.37 ms from the steps (60
    files of the throughput bench's small set, four alternated rounds). And that arccos is not
    the same function everywhere: numpy takes the C library's ``acosf`` on this machine (AVX2)
    and its own SIMD code where AVX-512 is found, and neither rounds correctly - glibc 2.36's
    ``acosf`` puts 71 of these 288 steps one float away from the correctly rounded angle's.
    About one cosine in ten files lands on such a float, so the same file's A3 differed between
    machines by one sample's weight (~2e-5). The bin needs only which side of each step a cosine
    lies on, so A3 now reads the steps: the correctly rounded angle's bins on every machine,
    from ``scanner/_kernels.c`` ``cos_bins`` or from ``np.searchsorted`` without the compiled
    kernels. (Other machine-dependent rounding remains: the classifier's principal axes, see
    ``tests/unit/test_classify.py``.)"""
    top = int(_rounded_angle_bins(np.float32([-1.0]), a, scale, fine)[0])
    bottom = int(_rounded_angle_bins(np.float32([1.0]), a, scale, fine)[0])
    levels = np.arange(top - 1, bottom - 1, -1, dtype=np.int64)  # step m: the least cosine whose bin <= levels[m]
    lo = np.full(len(levels), -_ONE - 1, dtype=np.int64)  # bin(-1) = top > every level
    hi = np.full(len(levels), _ONE, dtype=np.int64)  # bin(1) = bottom <= every level
    while np.any(hi - lo > 1):
        mid = (lo + hi) // 2
        low_enough = _rounded_angle_bins(_ordered_floats(mid), a, scale, fine) <= levels
        hi, lo = np.where(low_enough, mid, hi), np.where(low_enough, lo, mid)
    return np.ascontiguousarray(_ordered_floats(hi), dtype=np.float32), top


class A3(DescriptorFamily):
    """Angles at a surface point between two others (Osada et al.'s A3), binned on the
    correctly rounded angle (:func:`_angle_steps`)."""

    name, version, size = "a3", 3, 18

    @classmethod
    def compute(cls, sample: SurfaceSample) -> np.ndarray:
        _, _, cos, wc = _legs(sample)
        kernel, a, b, fine = _kernel(0.0, np.pi, cls.size, 0.5)
        steps, top = _angle_steps(float(np.float32(a)), float(np.float32(fine / (b - a))), fine)
        wc = np.ascontiguousarray(wc, dtype=np.float64)
        compiled = kernels.compiled
        if compiled is not None and cos.dtype == np.float32 and cos.ndim == 1 and 0 < len(cos) == len(wc):
            counts = np.empty(fine)  # False: a NaN cosine, left to the code below
            if compiled.cos_bins(np.ascontiguousarray(cos), steps, top, fine, float(a), float(fine / (b - a)), wc,
                                 counts):  # fmt: skip
                return _smoothed(kernel, counts)
        cos = np.asarray(cos, dtype=np.float32)
        if np.isnan(cos).any() or not len(cos):  # as before the steps: arccos's NaN bins
            return _cdf(np.arccos(np.clip(cos, -1, 1)), 0.0, np.pi, cls.size, weights=wc)
        return _smoothed(
            kernel, np.bincount(top - np.searchsorted(steps, cos, side="right"), weights=wc, minlength=fine)
        )


class Inertia(DescriptorFamily):
    """Shape of the second-moment ellipsoid: sqrt(l2/l1) and sqrt(l3/l1), of the
    density-weighted points (version 2; version 1 took the triangles' exact moments, which
    weigh by area and so move with noise-inflated area as the distributions did).
    (Surface area per size was tried and dropped: vertex noise inflates it.)"""

    name, version, size = "inertia", 2, 2
    weight = 1.0

    @classmethod
    def compute(cls, sample: SurfaceSample) -> np.ndarray:
        c, w = sample.weighted()
        c64 = c.astype(np.float64)
        second = (c64 * w) @ c64.T
        ev = np.clip(np.linalg.eigvalsh(second)[::-1], 0, None)
        l1 = max(ev[0], 1e-300)
        return np.array([np.sqrt(ev[1] / l1), np.sqrt(ev[2] / l1)])


FAMILIES: tuple[type[DescriptorFamily], ...] = (D1, D2, A3, Inertia)
# Measured and dropped (bench/robustness.py on the public corpus): spread along/around the
# principal axes (axes swap under remeshing when two moments are close: recall 73% on loop
# subdivision) and shell-wise spherical-harmonic energies (Kazhdan 2003; too sensitive to
# the area redistribution that vertex noise causes: recall 87% at 0.5% noise).
