"""Reading uploads, by the *sniffed* format name.

Each format module declares its formats (a mesh loader or a container reader - archives,
and 3MF packages, whose other members are scanned too) and its sniffers; the registry
(:mod:`scanner.formats.registry`) is built from those declarations. :func:`read_blob` is the
single entry point: sniff, dispatch, and turn every failure into a :class:`MemberResult`
carrying an :class:`UnreadableInput`, so no caller ever sees a traceback. Containers read
their members through the context (``ctx.read``), which :func:`read_blob` hands them, so no
module of the package imports this one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from scanner.errors import CORRUPT, EMPTY, LIMIT_MEMORY, NOT_A_MODEL, UNSUPPORTED_FORMAT, UnreadableInput
from scanner.formats._hidden import image_trailer_at, read_hidden
from scanner.formats.base import LoadContext, MemberResult
from scanner.formats.blob import Blob, BytesBlob, FileBlob
from scanner.formats.registry import CONTAINERS, FORMATS, LOADERS
from scanner.formats.sniff import NON_MODEL, describe, sniff

__all__ = [
    "LOADERS",
    "CONTAINERS",
    "FORMATS",
    "read_blob",
    "sniff",
    "Blob",
    "BytesBlob",
    "FileBlob",
    "LoadContext",
    "MemberResult",
]


def read_blob(blob: Blob, ctx: LoadContext) -> Iterator[MemberResult]:
    """Every mesh in ``blob`` (one for a mesh file, one per member for archives).

    An upload in which nothing is a model is never silently empty: when every member of an
    archive was recognised as not a model, a last result for the whole upload says so
    (``not-a-model`` on the upload itself, which is an error).
    """
    if ctx.reader is None:
        ctx = dataclasses.replace(ctx, reader=read_blob)
    if ctx.depth > 0:
        yield from _read(blob, ctx)
        return
    listed, other = 0, False
    sniffed: list[str] = []
    for result in _read(blob, ctx, sniffed):
        if result.member is not None and result.error is not None and result.error.reason == NOT_A_MODEL:
            listed += 1
        else:
            other = True
        yield result
    if listed and not other:
        err = UnreadableInput(NOT_A_MODEL, f"nothing in it is a model ({listed} non-model member(s))")
        yield MemberResult(None, sniffed[0] if sniffed else "", error=err)


def _read(blob: Blob, ctx: LoadContext, sniffed: list[str] | None = None) -> Iterator[MemberResult]:
    fmt = "unknown"
    try:
        fmt = sniff(blob, ctx.limits.max_members)
        if sniffed is not None:
            sniffed.append(fmt)
        if fmt in CONTAINERS:
            yield from CONTAINERS[fmt](blob, ctx)
            return
        if fmt == "empty":
            raise UnreadableInput(EMPTY, "zero-byte file")
        if fmt in NON_MODEL:
            if (at := image_trailer_at(blob, fmt)) is not None:  # bytes after an image's end
                with blob.open() as fh:
                    fh.seek(at)
                    yield from read_hidden("#after-end", fh.read(), ctx.nested())
            raise UnreadableInput(NOT_A_MODEL, f"{describe(fmt)}, not a model")
        loader = LOADERS.get(fmt)
        if loader is None:
            what = "not a format meshscan recognises" if fmt == "unknown" else "a format meshscan does not read"
            raise UnreadableInput(UNSUPPORTED_FORMAT, f"{describe(fmt)}: {what}")
        yield MemberResult(None, fmt, mesh=loader(blob, ctx))
    except UnreadableInput as err:
        yield MemberResult(None, fmt, error=err)
    except MemoryError:
        yield MemberResult(None, fmt, error=UnreadableInput(LIMIT_MEMORY, "ran out of memory while reading"))
    except (ValueError, IndexError, TypeError, OverflowError, UnicodeError) as exc:
        # a malformed file that slipped past a loader's checks: still a result, never a crash
        yield MemberResult(None, fmt, error=UnreadableInput(CORRUPT, f"{type(exc).__name__}: {exc}"))
