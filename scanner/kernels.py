"""The optional compiled kernels of the descriptor's hot path (``scanner/_kernels.c``).

Why (issue 18, item 1): a small file's descriptor works on 8,192 sample points whatever its
triangle count, through dozens of numpy calls, each with its overhead and temporaries; seven
bit-identical numpy passes left ~2.4 ms per ``describe_triangles`` call (1.3 calls per file).
Measured per call on 100 files of the throughput bench's small set (1-5k triangles; a scan
worker's allocator settings, one thread), numpy -> C:

- :func:`scanner.features.sampling.density_weights` (scatter onto the grid, [1, 2, 1] blur,
  gather): 0.36-0.38 -> 0.24 ms.
- :func:`scanner.features.families._legs` (D2 and A3's shifted differences, sums, roots,
  cosines, weights): 0.43-0.45 -> 0.13 ms.
- the weighted fine histogram of :func:`scanner.features.families._cdf` (D1, D2): D2's
  whole ``_cdf`` 0.23 -> 0.12 ms.
- A3's fine histogram from the cosines (``cos_bins``): the count of the correctly rounded
  angle's steps below each cosine (:func:`scanner.features.families._angle_steps`), where
  ``np.arccos`` and ``_cdf`` binned the angles: 0.85-0.88 -> 0.36-0.37 ms a file in a slow
  window. Its reference is ``np.searchsorted`` on the same steps, not ``np.arccos``, whose
  rounding differs between machines.
- the end of :func:`scanner.features.sampling.sample_surface` after the stratified counts
  (point keys, their sort, R2 coordinates, the float32 points): the whole sampler 1.09 ->
  0.92 ms. The keys carry their index in the low bits, so they are distinct and every
  correct sort orders them alike.
- the triangle seeds of :func:`scanner.features.sampling.intrinsic_keys` (float32 measures,
  corner ranks, splitmix chain; one block of up to 65,536 triangles): ``intrinsic_keys``
  0.28 -> 0.15 ms, the whole sampler then 0.74 ms.
- the oriented plane keys of :func:`scanner.mesh.shared_walls` (the wall test of every
  file's descriptor rows and of an archive's members read together: centres, unit normals,
  offsets, orienting signs, rounding, splitmix chain): 0.38-0.46 -> 0.13-0.15 ms a file in a
  slow window, the whole wall test 0.63-0.99 -> 0.36-0.54 ms (``tests/unit/test_wall_kernels.py``).
- the running sums of :func:`scanner.features.sampling.surface_moments` (``moments``: the
  sampler's, the classifier's principal frame's and the whitening's moments, summed triangle
  after triangle; its numpy reference is ``np.cumsum``, not a BLAS product, whose order
  depends on the CPU).

Each kernel repeats the numpy operations element by element, in the same order and dtypes
(float32 where numpy computes in float32; sums in numpy's order), built without FMA
contraction or fast-math (``setup.py``), so it gives the same bits
(``tests/unit/test_kernels.py``): a library enrolled on an install with the kernels matches a
scan on one without. What numpy reduces pairwise or hands to BLAS (``w.sum()``, the kernel
product of ``_cdf``) stays numpy's.

:data:`compiled` is the extension module, or None when it was not built (an install without a
compiler: ``setup.py`` declares it optional); every caller then runs its numpy code, which is
the reference. Tests set it to None to compare both paths.

:data:`shape` is the second extension (``scanner/_shape_kernels.c``), the same way optional:
the elementwise parts of :func:`scanner.classify.shape.shape_features` (issue 18, item 1: ~1.5
ms of a small file's CPU): the bounds, the face values (areas, normals, volume terms, edges),
the points in the principal frame, the hull's extreme points, the edge cosines and curved
faces' flags, the faces round about the long axis, the two line casts (every triangle, no
blocks made) and the profile steps. What numpy reduces pairwise or hands to LAPACK
(``eigh``, ``areas.sum()``) stays numpy's; the edge angles are told from their cosines
(:func:`scanner.classify.shape.curved_cosines`), with no ``arccos``. One kernel is not numpy's bits:
the convex hull's volume (``hull_volume``, an incremental hull of the 4-128 extreme points) stands
in for Qhull, whose set-up alone cost 100-300 us of a small file's ~7 ms in a scan worker
(about 5% of its CPU; the kernel 7 us), and agrees with it to rounding (under 1e-14 relative on
2,400 hard point sets; it hands Qhull what it cannot decide: flat, non-finite or inconsistent
input) - so solidity, the one feature it feeds, may differ from Qhull's in its last bits, which
no score printed to four decimals shows (``tests/integration/test_golden_verdicts.py``); the kernels
repeat ``np.einsum("ij,ij->i")``'s order for rows of three (see ``_shape_kernels.c``). Per
small file (100 files of the small set, worker allocator, one thread, best of 7, alternated):
``shape_features`` 1.575 -> 0.654 ms. Tested bit for bit in
``tests/unit/test_shape_kernels.py``. Where this numpy sums rows of three in another order
than the kernels repeat (another numpy version, another SIMD path: probed at import),
:data:`shape` is None and the numpy code runs."""

from __future__ import annotations

import importlib
from types import ModuleType

compiled: ModuleType | None
shape: ModuleType | None
try:  # by name: the extension imports nothing of scanner (tests/unit/test_import_graph.py reads .py files)
    compiled = importlib.import_module("scanner._kernels")
except ImportError:  # not built: the numpy code
    compiled = None


def _probe_rows() -> tuple[object, object]:
    """Rows of three on which summation orders differ: seeded normals of mixed exponents, and
    rows where a fused multiply-add, the order of the three products or the sign of a zero
    shows."""
    import numpy as np

    rng = np.random.default_rng(18)
    a = rng.normal(size=(512, 3)) * 2.0 ** rng.integers(-30, 30, size=(512, 3))
    b = rng.normal(size=(512, 3)) * 2.0 ** rng.integers(-30, 30, size=(512, 3))
    e = 1.0 + 2.0**-30
    crafted_a = [[1.0, 1e-16, -1.0], [-(1.0 + 2.0**-29), 0.0, e], [-0.0, -0.0, -0.0], [1.0, -0.0, 0.0], [e, e, -e]]
    crafted_b = [[1.0, 1.0, 1.0], [1.0, 1.0, e], [1.0, 1.0, 1.0], [-0.0, 1.0, -0.0], [e, -e, -e]]
    return np.concatenate([a, crafted_a]), np.concatenate([b, crafted_b])


def _sums_as_the_kernels_do(module: ModuleType) -> bool:
    """The shape kernels repeat numpy 2.4's (x86-64) order of ``np.einsum("ij,ij->i")`` and of
    ``(x**2).sum(axis=1)`` over rows of three (see scanner/_shape_kernels.c): True when this
    numpy, on this CPU, sums the probe rows so."""
    import numpy as np

    a, b = _probe_rows()
    mine = np.empty(len(a))
    module.dot_rows(a, b, mine)
    square = a * a
    return (
        mine.tobytes() == np.einsum("ij,ij->i", a, b).tobytes()
        and (square[:, 0] + square[:, 1] + square[:, 2]).tobytes() == (a**2).sum(axis=1).tobytes()
    )


try:  # the classifier's shape features (scanner/_shape_kernels.c): see below
    shape = importlib.import_module("scanner._shape_kernels")
except ImportError:
    shape = None
if shape is not None and not _sums_as_the_kernels_do(shape):  # another numpy's order: numpy's code
    shape = None

patches: ModuleType | None
"""The patch codes' kernels (``scanner/_patch_kernels.c``): :func:`scanner.features.patches._chunk_codes`
does its float32 geometry (up to the ratios and the fold's legs) and its quantisation, hashes and fold
sides in C, numpy's ``log2`` and ``arctan2`` in between (numpy's SIMD log2 and atan2 are not glibc's,
so those stay numpy's). None when not built; tests set it to None to compare both paths."""
try:
    patches = importlib.import_module("scanner._patch_kernels")
except ImportError:
    patches = None
