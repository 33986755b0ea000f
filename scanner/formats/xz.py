"""xz (and legacy ``.lzma``) compressed streams, read with the standard library's :mod:`lzma`.

Like gzip and bzip2 (:mod:`scanner.formats.archive`): the one stream is decompressed within
the upload's budget (per-file size, total bytes, ``max_ratio`` times the compressed size -
the declared sizes in the xz index are never trusted) and the result is sniffed and read
like an upload of its own, one nesting level down. A multi-stream file (``xz`` concatenates
streams) is read as one, as ``xz -d`` does; zero stream padding is skipped, and any other
bytes after the last stream make the upload ``corrupt`` (:class:`lzma.LZMAFile` dropped them
silently, so a model appended to a benign stream was never read).
"""

from __future__ import annotations

import lzma
import posixpath
from collections.abc import Iterator

from scanner.errors import CORRUPT, TRUNCATED, UnreadableInput
from scanner.formats._probe import Probe
from scanner.formats.archive import read_member_bytes, read_streams
from scanner.formats.base import Format, LoadContext, MemberResult, Sniffer
from scanner.formats.blob import Blob

XZ_MAGIC = b"\xfd7zXZ\x00"
_SUFFIXES = (".xz", ".txz", ".lzma")


def inner_name(blob: Blob, suffixes: tuple[str, ...]) -> str:
    """The member name of a single-stream container: its file name less the suffix."""
    base = posixpath.basename(blob.name.replace("\\", "/"))
    return next((base[: -len(s)] for s in suffixes if base.lower().endswith(s)), base) or "data"


def _decompressor() -> lzma.LZMADecompressor:
    return lzma.LZMADecompressor(format=lzma.FORMAT_XZ)


def iter_xz(blob: Blob, ctx: LoadContext) -> Iterator[MemberResult]:
    """The decompressed stream, read like an archive member."""
    ctx = ctx.nested()
    try:
        with blob.open() as raw:
            data = read_streams(raw, blob.size, ctx, _decompressor, XZ_MAGIC, "xz")
    except EOFError as exc:
        raise UnreadableInput(TRUNCATED, f"xz stream ends early: {exc}") from None
    except (lzma.LZMAError, OSError, ValueError) as exc:
        raise UnreadableInput(CORRUPT, f"cannot decompress xz: {exc}") from None
    yield from read_member_bytes(inner_name(blob, _SUFFIXES), data, ctx)


def _sniff(p: Probe) -> str | None:
    return "xz" if p.head.startswith(XZ_MAGIC) else None


FORMATS = (
    Format(
        "xz",
        "xz",
        72,
        "decompressed (capped by the same size, total and ratio limits as gzip) and sniffed again",
        container=iter_xz,
    ),
)
SNIFFERS = (Sniffer(112, _sniff, frozenset({"xz"})),)
