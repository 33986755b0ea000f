"""Public loading API: :func:`load` for one mesh file, :func:`iter_meshes` for any upload."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from scanner.config import Limits
from scanner.errors import EMPTY, UnreadableInput
from scanner.formats import FileBlob, LoadContext, MemberResult, read_blob
from scanner.mesh import Mesh


def iter_meshes(path: str | os.PathLike[str], limits: Limits | None = None) -> Iterator[MemberResult]:
    """Each mesh of an upload: one result for a mesh file, one per member of an archive.

    Unreadable files and members come out as results carrying ``error``; nothing is skipped.
    """
    limits = limits or Limits()
    ctx = LoadContext(limits)
    try:
        blob = FileBlob(path, limits.max_file_bytes)
    except UnreadableInput as err:
        yield MemberResult(None, "", error=err)
        return
    for result in read_blob(blob, ctx):
        if result.mesh is not None:
            result.mesh.source = os.fspath(path)
            result.mesh.member = result.member
        yield result


def load(path: str | os.PathLike[str], limits: Limits | None = None) -> Mesh:
    """All the triangles of one upload as one Mesh; raises :class:`UnreadableInput`.

    For an archive, the members that are meshes are joined (each member its own group, so
    bodies never cross members); other members are ignored, and an archive with no mesh at
    all raises the first member's error.
    """
    results = list(iter_meshes(path, limits))
    meshes = [r.mesh for r in results if r.mesh is not None]
    if not meshes:
        errors = [r.error for r in results if r.error is not None]
        if len(results) == 1 and errors:
            raise errors[0]
        reasons = sorted({e.reason for e in errors})
        first = errors[0] if errors else UnreadableInput(EMPTY, "archive holds no files")
        raise UnreadableInput(first.reason, f"no member is a readable mesh ({', '.join(reasons)})")
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
    return Mesh(vertices=tris, faces=None, source=source, format="archive", groups=np.concatenate(groups), group_names=names)
