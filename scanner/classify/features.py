"""The classifier's input row: interpretable shape features, then the invariant descriptor.

The descriptor (D1/D2/A3/inertia histograms) carries the fine shape information; the shape
features carry what a moderator can read. Both are versioned, and a model records
``FEATURE_VERSION``, so a model trained on other features is refused instead of silently
scoring nonsense.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scanner.classify.shape import FEATURE_NAMES, FEATURES, SHAPE_VERSION, shape_features
from scanner.mesh import Mesh

DESCRIPTOR_GROUPS = {
    "d1": "how its surface spreads around its centre (D1 profile)",
    "d2": "its overall proportions (D2 distance profile)",
    "a3": "its mix of flat and rounded regions (A3 angle profile)",
    "inertia": "its mass distribution (inertia ratios)",
}
"""Moderator words for the descriptor families (unknown families get their own name)."""


def descriptor_version() -> str:
    """The descriptor vector's version: a model reads one vector per file, never the
    library's other row kinds (so adding one, like the affine row, does not retire models)."""
    from scanner.features.version import VECTOR_VERSION

    return VECTOR_VERSION


def feature_version() -> str:
    """Shape-feature version + descriptor version: what a model's rows were computed with."""
    return f"{SHAPE_VERSION}+{descriptor_version()}"


@dataclass(frozen=True)
class FeatureGroup:
    """Columns that are occluded together when explaining a score."""

    name: str
    columns: tuple[int, ...]
    label: str
    shape_index: int | None
    """Index into ``FEATURES`` for a shape feature; None for a descriptor family."""


def feature_groups() -> list[FeatureGroup]:
    from scanner.features import family_slices

    groups = [FeatureGroup(f.name, (i,), f.label, i) for i, f in enumerate(FEATURES)]
    offset = len(FEATURES)
    for name, sl in family_slices().items():
        cols = tuple(range(offset + sl.start, offset + sl.stop))
        groups.append(FeatureGroup(name, cols, DESCRIPTOR_GROUPS.get(name, f"its {name} descriptor"), None))
    return groups


def column_names() -> list[str]:
    from scanner.features import DESCRIPTOR_SIZE, family_slices

    names = list(FEATURE_NAMES) + [""] * DESCRIPTOR_SIZE
    for fam, sl in family_slices().items():
        for k in range(sl.start, sl.stop):
            names[len(FEATURE_NAMES) + k] = f"{fam}[{k - sl.start}]"
    return names


def feature_row(
    mesh: Mesh, whole_descriptor: np.ndarray | None = None, features: np.ndarray | None = None
) -> np.ndarray:
    """One classifier row (float64) for a mesh; pass the whole-file descriptor if the scan
    already computed it (it is the expensive part), and its shape features likewise."""
    if whole_descriptor is None:
        from scanner.features import describe_triangles

        whole_descriptor = describe_triangles(mesh.corners32, mesh.corner_keys)
    features = shape_features(mesh) if features is None else features
    return np.concatenate([features, np.asarray(whole_descriptor, dtype=np.float64)])
