"""Public loading API: :func:`open_upload` for an upload opened once (its hash and its
meshes), :func:`iter_meshes` for the meshes of any upload, :func:`load` for one mesh."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from scanner.config import Limits
from scanner.errors import EMPTY, NOT_A_MODEL, UnreadableInput
from scanner.formats import Blob, LoadContext, MemberResult, read_blob
from scanner.mesh import Mesh
from scanner.sources import blob_sha256, open_blob


@dataclass(frozen=True)
class OpenedUpload:
    """One upload, opened once: the stage of a scan that reads bytes.

    Why one value: the file's sha256 and its meshes must come from the same opened blob (a
    URL is fetched once, into memory), and every reader - the scan, enrolment, ``inspect`` -
    then sees the same members in the same order. ``members()`` is lazy, one mesh at a time,
    so a large archive is never held whole before the first member is judged.
    """

    path: str
    blob: Blob
    limits: Limits

    @cached_property
    def sha256(self) -> str | None:
        """The upload's bytes' sha256, read on first use (None: the bytes could not be re-read)."""
        return blob_sha256(self.blob)

    def members(self) -> Iterator[MemberResult]:
        """Each mesh: one result for a mesh file, one per member of an archive; unreadable
        ones come out carrying ``error``, nothing is skipped. Each call reads the blob anew."""
        return iter_blob_meshes(self.blob, self.limits, self.path)


def open_upload(path: str | os.PathLike[str], limits: Limits | None = None) -> OpenedUpload:
    """Open a local path or an fsspec URL; raises :class:`UnreadableInput` (``io-error``,
    ``limit:bytes``) when it cannot be opened at all."""
    limits = limits or Limits()
    source = os.fspath(path)
    return OpenedUpload(source, open_blob(source, limits.max_file_bytes), limits)


def iter_meshes(path: str | os.PathLike[str], limits: Limits | None = None) -> Iterator[MemberResult]:
    """Each mesh of an upload (a local path or an fsspec URL): one result for a mesh file,
    one per member of an archive.

    Unreadable files and members come out as results carrying ``error``; nothing is skipped.
    """
    try:
        upload = open_upload(path, limits)
    except UnreadableInput as err:
        yield MemberResult(None, "", error=err)
        return
    yield from upload.members()


def iter_blob_meshes(blob: Blob, limits: Limits, source: str) -> Iterator[MemberResult]:
    """Each mesh of an already opened upload."""
    for result in read_blob(blob, LoadContext(limits)):
        if result.mesh is not None:
            result.mesh.source = source
            result.mesh.member = result.member
        yield result


def load(path: str | os.PathLike[str], limits: Limits | None = None) -> Mesh:
    """All the triangles of one upload as one Mesh; raises :class:`UnreadableInput`.

    For an archive, the members that are meshes are joined (each member its own group, so
    bodies never cross members). Members recognised as not a model (``not-a-model``: notes,
    textures, materials) are ignored. Any other failure - a model format meshscan cannot
    read, a damaged or encrypted member, an unsafe path, or a limit that stopped the archive
    being read to its end - is raised: returning the readable part as if it were the whole
    upload would silently skip what could not be read (the same rule as the scan's exit code,
    :attr:`scanner.verdict.Verdict.is_error`).
    """
    results = list(iter_meshes(path, limits))
    meshes = [r.mesh for r in results if r.mesh is not None]
    serious = [r for r in results if r.error is not None and (r.error.reason != NOT_A_MODEL or r.member is None)]
    if serious:
        first = serious[0]
        if first.member is None:
            raise first.error
        raise UnreadableInput(first.error.reason, f"member {first.member}: {first.error.detail}", member=first.member)
    if not meshes:
        raise UnreadableInput(EMPTY, "archive holds no files")
    if len(results) == 1:
        return meshes[0]
    return join(meshes, os.fspath(path))


def join(meshes: list[Mesh], source: str) -> Mesh:
    """Concatenate meshes; each keeps its own group(s)."""
    tris = np.concatenate([m.triangles.reshape(-1, 3).astype(np.float64) for m in meshes])
    groups, names, next_id = [], [], 0
    for m in meshes:
        g = m.groups if m.groups is not None else np.zeros(m.triangle_count, dtype=np.int32)
        groups.append(g + next_id)
        own = m.group_names or [m.member or "mesh"]
        names += [f"{m.member}/{n}" if m.member else n for n in own]
        next_id += int(g.max()) + 1 if len(g) else 1
    return Mesh(
        vertices=tris, faces=None, source=source, format="archive", groups=np.concatenate(groups), group_names=names
    )
