"""Public loading API: :func:`load` for one mesh file, :func:`iter_meshes` for any upload."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from scanner.config import Limits
from scanner.errors import EMPTY, NOT_A_MODEL, UnreadableInput
from scanner.formats import Blob, LoadContext, MemberResult, read_blob
from scanner.mesh import Mesh


def iter_meshes(path: str | os.PathLike[str], limits: Limits | None = None) -> Iterator[MemberResult]:
    """Each mesh of an upload (a local path or an fsspec URL): one result for a mesh file,
    one per member of an archive.

    Unreadable files and members come out as results carrying ``error``; nothing is skipped.
    """
    from scanner.sources import open_blob

    limits = limits or Limits()
    try:
        blob = open_blob(os.fspath(path), limits.max_file_bytes)
    except UnreadableInput as err:
        yield MemberResult(None, "", error=err)
        return
    yield from iter_blob_meshes(blob, limits, os.fspath(path))


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
