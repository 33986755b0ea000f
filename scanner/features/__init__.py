"""Versioned, invariant shape descriptors for a mesh and each of its bodies.

``describe(mesh)`` returns a :class:`Descriptor`: one vector for the whole surface and one
per body (every body, largest first, plus one row pooling loose triangles), with the exact
identities beside them. The descriptor version names every family and its version; a signature library built
with another version is refused rather than silently compared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from scanner.features.families import FAMILIES
from scanner.features.sampling import sample_surface, triangle_areas
from scanner.features.version import DESCRIPTOR_SIZE, DESCRIPTOR_VERSION, SAMPLING_VERSION  # noqa: F401 - re-exported
from scanner.mesh import Mesh

MIN_BODY_TRIANGLES = 4
"""Bodies with fewer triangles cannot enclose a volume; they are not described one by one but
pooled into one "loose triangles" row, so a part taken apart into single triangles (or any
soup that does not weld) is still described as a whole."""
LOOSE_ROW = -2
"""Body number of the pooled row of loose triangles (``-1`` is the whole file)."""
WALLS_ROW = -3
"""Body number of the row describing the surface without its walls (see ``_without_walls``)."""
MIN_LOOSE_SHARE = 0.01
"""The loose row is described when loose triangles hold at least this share of the area."""

T = TypeVar("T")

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
    body_shares: list[float] | None = None
    """Share of the surface area of each row of ``bodies`` (None: not measured)."""

    def row_shares(self) -> np.ndarray:
        """Area share of each row of :meth:`rows` (the whole file is 1)."""
        if self.body_count <= 1:
            return np.ones(len(self.rows()[1]))
        shares = self.body_shares if self.body_shares is not None else [1.0] * len(self.bodies)
        return np.asarray([1.0, *shares])

    def rows(self) -> tuple[np.ndarray, list[int]]:
        """All vectors as a matrix, with body numbers (-1 = whole file, -2 = loose triangles,
        -3 = the surface without its walls).

        A one-body file has its whole-file row (the body is the same surface), and its
        wall-free row when it has walls."""
        if self.body_count <= 1:
            extra = [(v, i) for v, i in zip(self.bodies, self.body_ids, strict=True) if i == WALLS_ROW]
            return np.stack([self.whole, *(v for v, _ in extra)]), [-1, *(i for _, i in extra)]
        return np.stack([self.whole, *self.bodies]), [-1, *self.body_ids]


def _without_walls(surface: Mesh) -> tuple[np.ndarray, np.ndarray] | None:
    """The surface minus its walls - planes faced both ways, where a part was cut into pieces
    that touch again in the file (:func:`scanner.mesh.shared_walls`) - or None when it has
    none. Described as one more row, never instead of the whole: an uploader cannot remove
    anything from the description by adding walls."""
    from scanner.mesh import shared_walls

    wall = shared_walls(surface.corners32)
    if not wall.any() or wall.all():
        return None
    return surface.corners32[~wall], surface.corner_keys[~wall]


def whole_rows(surface: Mesh) -> tuple[np.ndarray, np.ndarray | None]:
    """The rows of :func:`describe` that read no topology: the whole surface's vector and
    that of the surface without its walls (None: it has none)."""
    unwalled = _without_walls(surface)
    walls_row = None if unwalled is None else describe_triangles(*unwalled)
    return describe_triangles(surface.corners32, surface.corner_keys), walls_row


def describe(
    mesh: Mesh,
    max_bodies: int | None = None,
    whole: tuple[np.ndarray, np.ndarray | None] | None = None,
    each: Callable[[Callable[[T], np.ndarray], list[T]], list[np.ndarray]] | None = None,
) -> Descriptor:
    """Describe a mesh's surface and every one of its bodies.

    The surface excludes degenerate and repeated triangles (:meth:`Mesh.surface`), and bodies
    are its welded connected components. Every body of at least ``MIN_BODY_TRIANGLES`` is
    described, largest first, however many there are: decoys cannot push a part out of the
    description. More than ``max_bodies`` of them (``Limits.max_bodies``) is an
    :class:`UnreadableInput` (``limit:bodies``), because a verdict on part of the bodies would
    claim more than was read. Smaller bodies are pooled into one row (``LOOSE_ROW``).

    ``whole``: :func:`whole_rows` of the surface when already computed; ``each``: how the
    rows of the bodies are computed, ``each(fn, items) == [fn(x) for x in items]`` (the
    default; :func:`scanner.parallel.shared_map` shares them between two threads).
    """
    from scanner.config import Limits
    from scanner.errors import EMPTY, LIMIT_BODIES, UnreadableInput

    max_bodies = Limits().max_bodies if max_bodies is None else max_bodies
    surface = mesh.surface()
    if surface.triangle_count == 0:
        raise UnreadableInput(EMPTY, "no triangle with any area")
    tri, keys = surface.corners32, surface.corner_keys
    whole_row, walls_row = whole_rows(surface) if whole is None else whole
    n = surface.body_count
    jobs, ids, shares = [], [], []  # each row's triangles (a callable picking them), body number, share
    if n > 1:
        labels = surface.body_labels()
        counts = np.bincount(labels, minlength=n)
        areas = triangle_areas(tri).astype(np.float64)
        body_area = np.bincount(labels, weights=areas, minlength=n)
        solid = counts >= MIN_BODY_TRIANGLES
        if int(solid.sum()) > max_bodies:
            raise UnreadableInput(
                LIMIT_BODIES, f"{int(solid.sum())} bodies of {MIN_BODY_TRIANGLES}+ triangles (limit {max_bodies})"
            )
        order = [int(b) for b in np.argsort(-body_area, kind="stable") if solid[b] and body_area[b] > 0]
        by_body = np.argsort(labels, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)])
        total = float(areas.sum())
        for b in order:
            faces = by_body[starts[b] : starts[b + 1]]
            jobs.append(lambda faces=faces: (tri[faces], keys[faces]))
            ids.append(b)
            shares.append(float(body_area[b]) / total)
        loose = ~solid[labels]
        loose_area = float(areas[loose].sum())
        if loose.sum() >= MIN_BODY_TRIANGLES and loose_area >= MIN_LOOSE_SHARE * total and order:
            jobs.append(lambda: (tri[loose], keys[loose]))
            ids.append(LOOSE_ROW)
            shares.append(loose_area / total)
        bodies = (each or _each)(lambda job: describe_triangles(*job()), jobs)
    else:
        bodies, ids, shares = [whole_row], [0], [1.0]
    if walls_row is not None:
        bodies.append(walls_row)
        ids.append(WALLS_ROW)
        shares.append(1.0)
    return Descriptor(DESCRIPTOR_VERSION, whole_row, bodies, ids, n, mesh.geometry_hash, shares)


def _each(fn: Callable[[T], np.ndarray], items: list[T]) -> list[np.ndarray]:
    return [fn(x) for x in items]
