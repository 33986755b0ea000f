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
- the weighted fine histogram of :func:`scanner.features.families._cdf` (D1, D2, A3): D2's
  whole ``_cdf`` 0.23 -> 0.12 ms.
- the end of :func:`scanner.features.sampling.sample_surface` after the stratified counts
  (point keys, their sort, R2 coordinates, the float32 points): the whole sampler 1.09 ->
  0.92 ms. The keys carry their index in the low bits, so they are distinct and every
  correct sort orders them alike.
- the triangle seeds of :func:`scanner.features.sampling.intrinsic_keys` (float32 measures,
  corner ranks, splitmix chain; one block of up to 65,536 triangles): ``intrinsic_keys``
  0.28 -> 0.15 ms, the whole sampler then 0.74 ms.

Each kernel repeats the numpy operations element by element, in the same order and dtypes
(float32 where numpy computes in float32; sums in numpy's order), built without FMA
contraction or fast-math (``setup.py``), so it gives the same bits
(``tests/unit/test_kernels.py``): a library enrolled on an install with the kernels matches a
scan on one without. What numpy reduces pairwise or hands to BLAS (``w.sum()``, moments, the
kernel product of ``_cdf``) stays numpy's.

:data:`compiled` is the extension module, or None when it was not built (an install without a
compiler: ``setup.py`` declares it optional); every caller then runs its numpy code, which is
the reference. Tests set it to None to compare both paths."""

from __future__ import annotations

import importlib
from types import ModuleType

compiled: ModuleType | None
try:  # by name: the extension imports nothing of scanner (tests/unit/test_import_graph.py reads .py files)
    compiled = importlib.import_module("scanner._kernels")
except ImportError:  # not built: the numpy code
    compiled = None

patches: ModuleType | None
"""The patch codes' kernels (``scanner/_patch_kernels.c``): :func:`scanner.features.patches._chunk_codes`
does its float32 geometry (up to the ratios and the fold's legs) and its quantisation, hashes and fold
sides in C, numpy's ``log2`` and ``arctan2`` in between (numpy's SIMD log2 and atan2 are not glibc's,
so those stay numpy's). None when not built; tests set it to None to compare both paths."""
try:
    patches = importlib.import_module("scanner._patch_kernels")
except ImportError:
    patches = None
