"""The descriptor's version and size, in a module of their own so that the reference set and
the classifier can name the version without importing the whole feature package."""

from __future__ import annotations

from scanner.features.families import FAMILIES

SAMPLING_VERSION = "ms3"
"""ms1: 16,384 independent random points per surface; ms2: exactly N_POINTS, laid out on a
shifted low-discrepancy lattice inside each triangle (less noise per point, so fewer points);
ms3: the same, seeded by each triangle's intrinsic shape instead of its coordinates, so a
rotated, mirrored or rescaled copy samples the same points."""
VECTOR_VERSION = SAMPLING_VERSION + ":" + "+".join(f"{f.name}.{f.version}" for f in FAMILIES)
"""What one descriptor vector means (sampling and families): the classifier's rows read it.
Family versions d1.3, d2.3, a3.3 and inertia.2 weigh each sample point by the inverse of its
local density (:func:`scanner.features.sampling.density_weights`), so that area inflated by
vertex noise no longer moves the distributions (issue 11, re-tessellation)."""
AFFINE_VERSION = "affine.1"
"""The whitened whole-file row every signature also stores (:mod:`scanner.features.affine`)."""
DESCRIPTOR_VERSION = VECTOR_VERSION + "+" + AFFINE_VERSION
"""What a library's rows mean: the vectors, plus the row kinds stored beside them. A scanner
that does not know the affine row would compare it as a plain one, so a library holding it
is refused by older scanners (and older libraries, without it, are refused here)."""
DESCRIPTOR_SIZE = sum(f.size for f in FAMILIES)
