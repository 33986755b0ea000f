"""Zstandard (``.zst``) compressed streams, through the optional ``compress`` extra.

Read like xz (:mod:`scanner.formats.xz`): every concatenated frame is decompressed within the
upload's budget (per-file size, total bytes, ``max_ratio`` times the compressed size - the
frame header's declared content size is never trusted), and the result is sniffed and read as
an upload of its own, one nesting level down. Bytes after the last frame that are neither zero
nor another frame make the upload ``corrupt``: a ``clear`` must mean every byte was read.

The decompressor is the standard library's :mod:`compression.zstd` (Python 3.14) or its
backport ``backports.zstd`` (installed by ``meshscan[compress]``): it has the same
``decompress(data, max_length)`` / ``eof`` / ``needs_input`` / ``unused_data`` interface as
:mod:`lzma`, so :func:`scanner.formats.archive.read_streams` bounds each call's output - a
bomb stops at the budget plus one byte. (The ``zstandard`` package's ``decompressobj`` has no
output bound per call, so one input chunk could expand to gigabytes before the check.)

Without the extra, zstd is still recognised and reported ``unsupported-format`` with the
install hint: an upload meshscan cannot open is an error, never ``clear``.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

from scanner.errors import CORRUPT, TRUNCATED, UNSUPPORTED_FORMAT, UnreadableInput
from scanner.formats._probe import Probe
from scanner.formats.archive import read_member_bytes, read_streams
from scanner.formats.base import Format, LoadContext, MemberResult, Sniffer
from scanner.formats.blob import Blob
from scanner.formats.xz import inner_name

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_SUFFIXES = (".zst", ".zstd", ".tzst")
INSTALL_HINT = "zstd-compressed data: reading it needs the optional extra (pip install 'meshscan[compress]')"


def zstd_module() -> ModuleType:
    """The zstd decompression module, or ``unsupported-format`` naming the extra to install."""
    try:
        import compression.zstd as zstd  # Python 3.14 and later
    except ImportError:
        try:
            import backports.zstd as zstd
        except ImportError:
            raise UnreadableInput(UNSUPPORTED_FORMAT, INSTALL_HINT) from None
    return zstd


def iter_zstd(blob: Blob, ctx: LoadContext) -> Iterator[MemberResult]:
    """The decompressed stream, read like an archive member."""
    zstd = zstd_module()
    ctx = ctx.nested()
    try:
        with blob.open() as raw:
            data = read_streams(raw, blob.size, ctx, zstd.ZstdDecompressor, ZSTD_MAGIC, "zstd")
    except EOFError as exc:
        raise UnreadableInput(TRUNCATED, f"zstd stream ends early: {exc}") from None
    except (zstd.ZstdError, OSError, ValueError, MemoryError) as exc:
        raise UnreadableInput(CORRUPT, f"cannot decompress zstd: {exc}") from None
    yield from read_member_bytes(inner_name(blob, _SUFFIXES), data, ctx)


def _sniff(p: Probe) -> str | None:
    return "zstd" if p.head.startswith(ZSTD_MAGIC) else None


FORMATS = (
    Format(
        "zstd",
        "zstd",
        73,
        "with `meshscan[compress]`: decompressed (capped by the same size, total and ratio limits as "
        "gzip) and sniffed again; without it recognised and reported `unsupported-format`",
        container=iter_zstd,
    ),
)
SNIFFERS = (Sniffer(113, _sniff, frozenset({"zstd"})),)
