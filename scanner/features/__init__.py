"""Versioned, invariant shape descriptors for a mesh and each of its bodies.

``describe(mesh)`` returns a :class:`Descriptor`: one vector for the whole file and one per
body (the largest bodies first, at most ``MAX_BODIES``), with the exact identities beside
them. The descriptor version names every family and its version; a signature library built
with another version is refused rather than silently compared.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scanner.features.families import FAMILIES
from scanner.features.sampling import sample_surface, triangle_areas
from scanner.mesh import Mesh

SAMPLING_VERSION = "ms2"
"""ms1: 16,384 independent random points per surface; ms2: exactly N_POINTS, laid out on a
shifted low-discrepancy lattice inside each triangle (less noise per point, so fewer points)."""
DESCRIPTOR_VERSION = SAMPLING_VERSION + ":" + "+".join(f"{f.name}.{f.version}" for f in FAMILIES)
DESCRIPTOR_SIZE = sum(f.size for f in FAMILIES)
MAX_BODIES = 32
"""Bodies described per file (largest by area): enough for any printable part bundle."""
MIN_BODY_TRIANGLES = 4
"""Smaller bodies (stray triangles, labels) are not described on their own."""

_SLICES: dict[str, slice] = {}
_start = 0
for _f in FAMILIES:
    _SLICES[_f.name] = slice(_start, _start + _f.size)
    _start += _f.size


def family_slices() -> dict[str, slice]:
    """Which columns of a descriptor vector each family owns (for explanations)."""
    return dict(_SLICES)


def describe_triangles(triangles: np.ndarray, corner_keys: np.ndarray | None = None) -> np.ndarray:
    """One descriptor vector (float32) for a set of (F, 3, 3) triangles."""
    sample = sample_surface(triangles, corner_keys=corner_keys)
    parts = [np.sqrt(f.weight) * np.asarray(f.compute(sample), dtype=np.float64) for f in FAMILIES]
    return np.concatenate(parts).astype(np.float32)


@dataclass
class Descriptor:
    version: str
    whole: np.ndarray
    """Descriptor of the whole file (all bodies together)."""
    bodies: list[np.ndarray]
    body_ids: list[int]
    """Body number (as in ``Mesh.bodies()``) of each row of ``bodies``."""
    body_count: int
    geometry_hash: str

    def rows(self) -> tuple[np.ndarray, list[int]]:
        """All vectors as a matrix, with body numbers (-1 = whole file).

        A one-body file has just its whole-file row (the body is the same surface)."""
        if self.body_count <= 1:
            return self.whole[None, :], [-1]
        return np.stack([self.whole, *self.bodies]), [-1, *self.body_ids]


def describe(mesh: Mesh) -> Descriptor:
    """Describe a mesh and its largest bodies."""
    tri, keys = mesh.corners32, mesh.corner_keys
    whole = describe_triangles(tri, keys)
    n = mesh.body_count
    bodies, ids = [], []
    if n > 1:
        labels = mesh.body_labels()
        counts = np.bincount(labels, minlength=n)
        areas = triangle_areas(tri).astype(np.float64)
        body_area = np.bincount(labels, weights=areas, minlength=n)
        order = np.argsort(-body_area, kind="stable")
        order = [b for b in order if counts[b] >= MIN_BODY_TRIANGLES and body_area[b] > 0][:MAX_BODIES]
        for b in order:
            mask = labels == b
            bodies.append(describe_triangles(tri[mask], keys[mask]))
            ids.append(int(b))
    else:
        bodies, ids = [whole], [0]
    return Descriptor(DESCRIPTOR_VERSION, whole, bodies, ids, n, mesh.geometry_hash)
