"""What loaders share: the per-upload budget they draw on, the result type for archive
members, and the one function that turns parsed arrays into a validated :class:`Mesh`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from scanner.config import Limits
from scanner.errors import (
    BAD_INDEX,
    EMPTY,
    LIMIT_BYTES,
    LIMIT_DEPTH,
    LIMIT_MEMBERS,
    LIMIT_TRIANGLES,
    LIMIT_VERTICES,
    NON_FINITE,
    UnreadableInput,
)
from scanner.formats.blob import Blob
from scanner.mesh import Mesh


@dataclass
class Usage:
    """What one upload has used so far, shared by every nesting level."""

    uncompressed_bytes: int = 0
    members: int = 0


@dataclass
class LoadContext:
    """Limits, the nesting depth here, and the upload's shared :class:`Usage`."""

    limits: Limits = field(default_factory=Limits)
    depth: int = 0
    usage: Usage = field(default_factory=Usage)

    @property
    def uncompressed_bytes(self) -> int:
        return self.usage.uncompressed_bytes

    def nested(self) -> LoadContext:
        """The context for reading inside one more archive level."""
        if self.depth + 1 > self.limits.max_depth:
            raise UnreadableInput(LIMIT_DEPTH, f"archives nested deeper than {self.limits.max_depth}")
        return LoadContext(self.limits, self.depth + 1, self.usage)

    def count_member(self) -> None:
        self.usage.members += 1
        if self.usage.members > self.limits.max_members:
            raise UnreadableInput(LIMIT_MEMBERS, f"more than {self.limits.max_members} archive members")

    def remaining_bytes(self) -> int:
        """How many more decompressed bytes this upload may produce (one member at most)."""
        left = self.limits.max_uncompressed_bytes - self.uncompressed_bytes
        return min(left, self.limits.max_file_bytes)

    def spend(self, n: int) -> None:
        self.usage.uncompressed_bytes += n
        if self.usage.uncompressed_bytes > self.limits.max_uncompressed_bytes:
            raise UnreadableInput(LIMIT_BYTES, "decompressed total exceeds the limit")

    def check_triangles(self, n: int) -> None:
        if n > self.limits.max_triangles:
            raise UnreadableInput(LIMIT_TRIANGLES, f"{n} triangles > limit {self.limits.max_triangles}")

    def check_vertices(self, n: int) -> None:
        if n > self.limits.max_vertices:
            raise UnreadableInput(LIMIT_VERTICES, f"{n} vertices > limit {self.limits.max_vertices}")


@dataclass
class MemberResult:
    """One mesh (or the reason there is none) found in an upload."""

    member: str | None
    format: str
    mesh: Mesh | None = None
    error: UnreadableInput | None = None


MeshLoader = Callable[[Blob, LoadContext], Mesh]
ContainerReader = Callable[[Blob, LoadContext], Iterator[MemberResult]]


# Smallest magnitude that rounds to infinity in float32 (halfway between its largest finite
# value, 2**128 - 2**104, and 2**128; the tie rounds to even, i.e. up).
_F32_OVERFLOW = 2.0**128 - 2.0**103


def _finite32(values: np.ndarray) -> bool:
    """Are all values finite *as float32*?

    Geometry is hashed and compared as float32 (see :mod:`scanner.mesh`), so a text format's
    ``1e39`` - finite as float64 - would silently become ``inf`` there; it is refused here,
    like NaN and ``inf``, instead.
    """
    if values.size == 0:
        return True
    # max/min propagate NaN, which compares False, and need no temporary the size of the
    # input (``np.isfinite(values).all()`` builds a bool array: 36 MB per 1M triangles)
    if values.dtype == np.float32:
        return bool(values.max() < np.inf and values.min() > -np.inf)
    return bool(values.max() < _F32_OVERFLOW and values.min() > -_F32_OVERFLOW)


def build_mesh(
    vertices: np.ndarray,
    faces: np.ndarray | None,
    blob: Blob,
    fmt: str,
    ctx: LoadContext,
    groups: np.ndarray | None = None,
    group_names: list[str] | None = None,
    *,
    known_finite: bool = False,
) -> Mesh:
    """Validate parsed arrays (limits, indices, finite coordinates, not empty) into a Mesh.

    ``known_finite``: the loader has already checked every coordinate (binary STL does, chunk
    by chunk while the data is in cache), so the whole-array pass is skipped.
    """
    vertices = np.asarray(vertices)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        vertices = vertices.reshape(-1, 3)
    n_tri = len(vertices) // 3 if faces is None else len(faces)
    ctx.check_triangles(n_tri)
    ctx.check_vertices(len(vertices))
    if n_tri == 0:
        raise UnreadableInput(EMPTY, "no triangles")
    if faces is not None:
        faces = np.asarray(faces)
        lo, hi = int(faces.min()), int(faces.max())
        if lo < 0 or hi >= len(vertices):
            raise UnreadableInput(BAD_INDEX, f"face index {lo if lo < 0 else hi} outside 0..{len(vertices) - 1}")
    if not known_finite and not _finite32(vertices):
        used = vertices if faces is None else vertices[np.unique(faces)]
        if not _finite32(used):
            raise UnreadableInput(NON_FINITE, "NaN or infinite (as float32) coordinates in a triangle")
    if groups is not None and len(np.unique(groups)) <= 1:
        groups = None
    return Mesh(
        vertices=vertices,
        faces=faces,
        source=blob.name,
        format=fmt,
        groups=groups,
        group_names=list(group_names or []),
    )
