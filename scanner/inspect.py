"""The records behind ``meshscan inspect``: one per file or archive member."""

from __future__ import annotations

from collections.abc import Iterator

from scanner.config import Limits
from scanner.errors import IO_ERROR
from scanner.loading import iter_meshes
from scanner.util import file_sha256  # also imported from here by runner, review and tests


def inspect_path(path: str, limits: Limits, bodies: bool = True) -> Iterator[dict]:
    """Yield an inspect record per mesh (or unreadable member) in ``path``."""
    sha = file_sha256(path)
    for result in iter_meshes(path, limits):
        rec: dict = {"path": path, "member": result.member, "format": result.format, "sha256": sha}
        if result.error is not None:
            rec.update(error=True, reason=result.error.reason, detail=result.error.detail)
            if sha is None and result.error.reason != IO_ERROR:
                rec.update(reason=IO_ERROR)
            yield rec
            continue
        mesh = result.mesh
        rec.update(mesh.summary())
        rec["bodies"] = mesh.body_count
        if bodies and mesh.body_count > 1:
            rec["body_list"] = [dict(body=i, **b.summary()) for i, b in enumerate(mesh.bodies())]
        yield rec
