"""What loaders share: the per-upload budget they draw on, the result type for archive
members, the one function that turns parsed arrays into a validated :class:`Mesh`, and the
declarations (:class:`Format`, :class:`Sniffer`) by which a format module registers itself
(see :mod:`scanner.formats.registry`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from scanner.arrays import unique_sorted
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

if TYPE_CHECKING:
    from scanner.formats._probe import Probe


@dataclass
class Usage:
    """What one upload has used so far, shared by every nesting level."""

    uncompressed_bytes: int = 0
    members: int = 0


@dataclass
class LoadContext:
    """Limits, the nesting depth here, the upload's shared :class:`Usage`, and the reader
    that containers hand their members to (set by :func:`scanner.formats.read_blob`)."""

    limits: Limits = field(default_factory=Limits)
    depth: int = 0
    usage: Usage = field(default_factory=Usage)
    reader: MemberReader | None = None

    @property
    def uncompressed_bytes(self) -> int:
        return self.usage.uncompressed_bytes

    def read(self, blob: Blob) -> Iterator[MemberResult]:
        """Every mesh in ``blob`` (an archive member), read like an upload of its own.

        The reader is handed down rather than imported: a container module is listed by the
        registry, so importing the registry's dispatcher from it would be an import cycle.
        """
        if self.reader is None:
            raise RuntimeError("a container was read without a reader: call scanner.formats.read_blob")
        return self.reader(blob, self)

    def nested(self) -> LoadContext:
        """The context for reading inside one more archive level."""
        if self.depth + 1 > self.limits.max_depth:
            raise UnreadableInput(LIMIT_DEPTH, f"archives nested deeper than {self.limits.max_depth}")
        return LoadContext(self.limits, self.depth + 1, self.usage, self.reader)

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
MemberReader = ContainerReader
"""Reads any blob (sniff, then dispatch): :func:`scanner.formats.read_blob`."""


@dataclass(frozen=True)
class Format:
    """A sniffed name meshscan reads, as its module declares it (in ``FORMATS``).

    Exactly one of ``loader`` (one mesh) or ``container`` (members, each read like an
    upload; a 3MF package is one too, for the parts beside its build). ``title`` and
    ``notes`` are its row in the README's format table: formats with the same title share
    a row, whose notes one of them gives. ``priority`` orders the registry and the table.
    """

    name: str
    title: str
    priority: int
    notes: str = ""
    loader: MeshLoader | None = None
    container: ContainerReader | None = None

    def __post_init__(self) -> None:
        if (self.loader is None) == (self.container is None):
            raise TypeError(f"format {self.name!r} needs exactly one of loader and container")


@dataclass(frozen=True)
class Sniffer:
    """One test of a blob's bytes, as its module declares it (in ``SNIFFERS``).

    :func:`scanner.formats.sniff.sniff` runs every module's sniffers in ``priority`` order,
    lowest first, and the first name answered decides; ``None`` passes to the next. The
    bands, which the order of the checks depends on:

    * 0-99: what the blob is rather than what its bytes say (a folder);
    * 100-299: containers and compressed streams, by magic number;
    * 300-399: headers that say what the file is (PLY, OFF);
    * 400-699: binary content (STL's size rule, binary magic numbers), then UTF-16 text;
      610 answers ``unknown`` for whatever is still not text;
    * 700-799: text only (every sniffer from here on may assume :attr:`Probe.is_text`).

    ``names``: every name ``test`` can answer (the registry test checks each is read by a
    loader or container, or declared unsupported or not a model).
    """

    priority: int
    test: Callable[[Probe], str | None]
    names: frozenset[str]


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
        used = vertices if faces is None else vertices[unique_sorted(faces)]
        if not _finite32(used):
            raise UnreadableInput(NON_FINITE, "NaN or infinite (as float32) coordinates in a triangle")
    if groups is not None and len(unique_sorted(groups)) <= 1:
        groups = None
    return Mesh(
        vertices=vertices,
        faces=faces,
        source=blob.name,
        format=fmt,
        groups=groups,
        group_names=list(group_names or []),
    )
