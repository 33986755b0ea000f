"""One registry of readers keyed by the *sniffed* format name.

Each format module ends with a small ``loaders`` dict (mesh formats) or ``containers`` dict
(archives), merged here, as in trimesh's ``exchange/``. :func:`read_blob` is the single entry
point: sniff, dispatch, and turn every failure into a :class:`MemberResult` carrying an
:class:`UnreadableInput`, so no caller ever sees a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator

from scanner.errors import CORRUPT, EMPTY, LIMIT_MEMORY, UNSUPPORTED_FORMAT, UnreadableInput
from scanner.formats import archive, obj, off, ply, stl, threemf
from scanner.formats.base import ContainerReader, LoadContext, MemberResult, MeshLoader
from scanner.formats.blob import Blob, BytesBlob, FileBlob
from scanner.formats.sniff import sniff

LOADERS: dict[str, MeshLoader] = {**stl.loaders, **obj.loaders, **ply.loaders, **off.loaders, **threemf.loaders}
CONTAINERS: dict[str, ContainerReader] = dict(archive.containers)

__all__ = [
    "LOADERS",
    "CONTAINERS",
    "read_blob",
    "sniff",
    "Blob",
    "BytesBlob",
    "FileBlob",
    "LoadContext",
    "MemberResult",
]


def read_blob(blob: Blob, ctx: LoadContext) -> Iterator[MemberResult]:
    """Every mesh in ``blob`` (one for a mesh file, one per member for archives)."""
    fmt = "unknown"
    try:
        fmt = sniff(blob, ctx.limits.max_members)
        if fmt in CONTAINERS:
            yield from CONTAINERS[fmt](blob, ctx)
            return
        if fmt == "empty":
            raise UnreadableInput(EMPTY, "zero-byte file")
        loader = LOADERS.get(fmt)
        if loader is None:
            raise UnreadableInput(UNSUPPORTED_FORMAT, "not a mesh format meshscan reads")
        yield MemberResult(None, fmt, mesh=loader(blob, ctx))
    except UnreadableInput as err:
        yield MemberResult(None, fmt, error=err)
    except MemoryError:
        yield MemberResult(None, fmt, error=UnreadableInput(LIMIT_MEMORY, "ran out of memory while reading"))
    except (ValueError, IndexError, TypeError, OverflowError, UnicodeError) as exc:
        # a malformed file that slipped past a loader's checks: still a result, never a crash
        yield MemberResult(None, fmt, error=UnreadableInput(CORRUPT, f"{type(exc).__name__}: {exc}"))
