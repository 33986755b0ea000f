"""Bytes a format's reader steps over, read like a member: where nothing else would look.

Why: a ``clear`` claims every byte of the upload was read (DESIGN.md, "Adversary model"). A
zip's comment and the bytes after its end record, a gzip header's extra field and comment, and
the bytes after a PNG's ``IEND`` are skipped by every reader of those formats, so a known part
put there byte for byte - found by ``dd`` or ``binwalk``, never by unzip - came out ``clear``
(measured: an enrolled demo proxy in each of the four places, each ``clear``, exit 0).

Such bytes are read as a member named ``#comment``, ``#after-end``, ``#extra`` ...: when they
hold something meshscan reads (a model, an archive) or a model format it cannot read, those
results are the upload's like any member's; text (a zip comment naming a commit), images and
unknown bytes give no result - they were read and hold no model.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

from scanner.errors import EMPTY, NOT_A_MODEL, UNSUPPORTED_FORMAT
from scanner.formats.base import LoadContext, MemberResult
from scanner.formats.blob import Blob, BytesBlob

MIN_HIDDEN_BYTES = 64
"""Fewer bytes hold no mesh worth a result (a one-triangle binary STL is 134 bytes)."""


def read_hidden(where: str, data: bytes, ctx: LoadContext) -> Iterator[MemberResult]:
    """``data`` read like a member named ``where`` (``ctx``: a container's, already nested);
    nothing when it holds no model (above)."""
    if len(data) < MIN_HIDDEN_BYTES:
        return
    results = list(ctx.read(BytesBlob(where, data)))
    if all(_holds_nothing(r) for r in results):
        return
    for result in results:
        result.member = where if result.member is None else f"{where}/{result.member}"
        yield result


def _holds_nothing(result: MemberResult) -> bool:
    if result.mesh is not None or result.error is None:
        return False
    reason = result.error.reason
    return reason in (NOT_A_MODEL, EMPTY) or (reason == UNSUPPORTED_FORMAT and result.format == "unknown")


_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_trailer_at(blob: Blob) -> int | None:
    """Where the bytes after a PNG's ``IEND`` chunk start (None: no bytes after it, or the
    chunks cannot be walked to it), read by seeking from chunk header to chunk header."""
    with blob.open() as fh:
        if fh.read(8) != _PNG_MAGIC:
            return None
        at = 8
        while at + 12 <= blob.size:
            fh.seek(at)
            head = fh.read(8)
            if len(head) < 8:
                return None
            (length,) = struct.unpack(">I", head[:4])
            at += 12 + length
            if head[4:8] == b"IEND":
                return at if at < blob.size else None
    return None


def jpeg_trailer_at(blob: Blob) -> int | None:
    """Where the bytes after a JPEG's end (``EOI``) start (None: none, or the markers cannot be
    walked to it): length-delimited segments are stepped over (an EXIF thumbnail's own ``EOI``
    inside one is not the end), entropy-coded data is scanned for the next marker."""
    data = blob.read()
    if not data.startswith(b"\xff\xd8"):
        return None
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker == 0xD9:  # EOI
            return at + 2 if at + 2 < len(data) else None
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # no length
            at += 2
            continue
        (length,) = struct.unpack_from(">H", data, at + 2)
        at += 2 + length
        if marker == 0xDA:  # start of scan: entropy-coded data up to the next real marker
            while True:
                at = data.find(b"\xff", at)
                if at < 0 or at + 1 >= len(data):
                    return None
                if data[at + 1] == 0x00 or 0xD0 <= data[at + 1] <= 0xD7:
                    at += 2
                    continue
                break
    return None


def gif_trailer_at(blob: Blob) -> int | None:
    """Where the bytes after a GIF's trailer byte (``;``) start, walking its blocks."""
    data = blob.read()
    if len(data) < 13 or data[:4] != b"GIF8":
        return None
    at = 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
    while at < len(data):
        kind = data[at]
        if kind == 0x3B:  # trailer
            return at + 1 if at + 1 < len(data) else None
        if kind == 0x21:  # extension: label, then sub-blocks
            at += 2
        elif kind == 0x2C:  # image: descriptor, local colour table, LZW code size, sub-blocks
            if at + 10 > len(data):
                return None
            flags = data[at + 9]
            at += 10 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0) + 1
        else:
            return None
        while at < len(data) and data[at]:  # sub-blocks up to the zero-length one
            at += data[at] + 1
        at += 1
    return None


def riff_trailer_at(blob: Blob) -> int | None:
    """Where the bytes after a RIFF file's declared size (WebP) start."""
    head = blob.head(12)
    if len(head) < 12 or head[:4] != b"RIFF":
        return None
    end = 8 + struct.unpack_from("<I", head, 4)[0]
    end += end % 2  # chunks are padded to even sizes
    return end if end < blob.size else None


_IMAGE_ENDS = {
    "png": png_trailer_at,
    "jpeg": jpeg_trailer_at,
    "gif": gif_trailer_at,
    "webp": riff_trailer_at,
}


def image_trailer_at(blob: Blob, fmt: str) -> int | None:
    """Where bytes after an image's end start, for the images whose end can be walked to
    (TIFF, SVG and PDF cannot: their ends are not where their bytes end; a BMP with bytes past
    its declared size is not sniffed as a BMP at all, so it is unscannable, never skipped)."""
    find = _IMAGE_ENDS.get(fmt)
    return None if find is None else find(blob)


def zip_trailer(blob: Blob) -> bytes:
    """The bytes after a zip's end record and the comment it declares, where zipfile finds
    that record (the last signature within 64 KiB of the end)."""
    tail_len = min(blob.size, 22 + 0xFFFF)
    with blob.open() as fh:
        fh.seek(blob.size - tail_len)
        tail = fh.read(tail_len)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        return b""
    (comment_len,) = struct.unpack_from("<H", tail, at + 20)
    return tail[at + 22 + comment_len :]


def gzip_header_fields(blob: Blob) -> list[tuple[str, bytes]]:
    """Every gzip member's header extra field (``FEXTRA``) and comment (``FCOMMENT``): gzip
    readers step over both. Later members are found by inflating each member's data to its
    end (the output is dropped, a chunk at a time); a header that cannot be parsed ends the
    walk (reading the stream itself reports the damage)."""
    fields: list[tuple[str, bytes]] = []
    with blob.open() as fh:
        member = 0
        while True:
            head = fh.read(10)
            if len(head) < 10 or head[:2] != b"\x1f\x8b":
                return fields
            suffix = "" if member == 0 else f"-{member + 1}"
            flags = head[3]
            if flags & 0x04:
                raw = fh.read(2)
                if len(raw) < 2:
                    return fields
                fields += [(name + suffix, data) for name, data in _subfields(fh.read(struct.unpack("<H", raw)[0]))]
            for bit, name in ((0x08, None), (0x10, "#comment")):
                if flags & bit:
                    text = _zero_terminated(fh)
                    if name is not None:
                        fields.append((name + suffix, text))
            if flags & 0x02:
                fh.read(2)  # header CRC
            if not _skip_deflate(fh):
                return fields
            fh.read(8)  # CRC32 and size
            member += 1


def _skip_deflate(fh) -> bool:  # noqa: ANN001 - a binary file
    """Read past one raw deflate stream; False if it does not end."""
    inflate = zlib.decompressobj(-15)
    while not inflate.eof:
        chunk = inflate.unconsumed_tail or fh.read(1 << 16)
        if not chunk:
            return False
        try:
            inflate.decompress(chunk, 1 << 16)
        except zlib.error:
            return False
    fh.seek(fh.tell() - len(inflate.unused_data))  # every chunk fed ends where the file was read to
    return True


def _subfields(extra: bytes) -> list[tuple[str, bytes]]:
    """The extra field's subfields (two id bytes, a length, the data: RFC 1952 2.3.1.1), or
    the field whole when it is not made of them."""
    out, at = [], 0
    while at + 4 <= len(extra):
        (length,) = struct.unpack_from("<H", extra, at + 2)
        out.append((f"#extra-{extra[at : at + 2].hex()}", extra[at + 4 : at + 4 + length]))
        at += 4 + length
    return out if at == len(extra) else [("#extra", extra)]


def _zero_terminated(fh, limit: int = 1 << 20) -> bytes:  # noqa: ANN001 - a binary file
    out = bytearray()
    while len(out) < limit:
        chunk = fh.read(4096)
        if not chunk:
            break
        end = chunk.find(b"\0")
        if end >= 0:
            out += chunk[:end]
            fh.seek(fh.tell() - len(chunk) + end + 1)
            break
        out += chunk
    return bytes(out)
