"""Containers: zip, gzip, bzip2 and tar. Each member is sniffed and read like an upload of
its own, so archives nest (up to ``max_depth``).

Decompression never trusts declared sizes: a member is read up to its budget plus one byte
(trimesh's ``util.decompress`` trick), and the budget is the smallest of the per-file limit,
what is left of the upload's total, and ``max_ratio`` times its compressed size.
"""

from __future__ import annotations

import bz2
import gzip
import posixpath
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import BinaryIO, Protocol

from scanner.errors import (
    CORRUPT,
    EMPTY,
    ENCRYPTED,
    LIMIT_BYTES,
    LIMIT_MEMBERS,
    LIMIT_RATIO,
    TRUNCATED,
    UNSAFE_PATH,
    UnreadableInput,
)
from scanner.formats._hidden import gzip_header_fields, read_hidden, zip_trailer
from scanner.formats._probe import Probe
from scanner.formats.base import Format, LoadContext, MemberResult, Sniffer
from scanner.formats.blob import Blob, BytesBlob

READ_CHUNK = 1 << 20
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header, or an empty zip's end record
GZIP_MAGIC = b"\x1f\x8b"
BZ2_MAGIC = b"BZh"


def over_budget(by_ratio: int, by_bytes: int, ctx: LoadContext) -> UnreadableInput:
    if by_ratio <= by_bytes:
        return UnreadableInput(LIMIT_RATIO, f"expands more than {ctx.limits.max_ratio:g}x")
    return UnreadableInput(LIMIT_BYTES, "decompressed size exceeds the limit")


def read_capped(stream: BinaryIO, compressed_size: int, ctx: LoadContext) -> bytes:
    """Decompress ``stream`` within the budget; raise ``limit:ratio``/``limit:bytes`` past it."""
    by_ratio = int(max(compressed_size, 1) * ctx.limits.max_ratio)
    by_bytes = ctx.remaining_bytes()
    budget = min(by_ratio, by_bytes)
    parts, total = [], 0
    while total <= budget:
        chunk = stream.read(min(READ_CHUNK, budget + 1 - total))
        if not chunk:
            break
        parts.append(chunk)
        total += len(chunk)
    if total > budget:
        raise over_budget(by_ratio, by_bytes, ctx)
    ctx.spend(total)
    return b"".join(parts)


class Decompressor(Protocol):
    """What :class:`lzma.LZMADecompressor` and :class:`bz2.BZ2Decompressor` share."""

    eof: bool
    needs_input: bool
    unused_data: bytes

    def decompress(self, data: bytes, max_length: int = -1) -> bytes: ...


def _next_stream(raw: BinaryIO, pending: bytes, magic: bytes, kind: str) -> bytes | None:
    """After a stream's end: the bytes that start the next stream, or None at the end of input.

    Zero bytes between and after streams are skipped (xz calls them stream padding; they carry
    no data). Anything else that does not start with ``magic`` is refused: :class:`lzma.LZMAFile`
    and :class:`bz2.BZ2File` silently drop such a tail, so a model appended to a small benign
    stream was never read and the upload came out ``clear``.
    """
    while True:
        pending = pending.lstrip(b"\0")
        if len(pending) < len(magic):
            more = raw.read(READ_CHUNK)
            if more:
                pending += more
                continue
            if not pending:
                return None
        if pending.startswith(magic):
            return pending
        at = raw.tell() - len(pending)
        raise UnreadableInput(CORRUPT, f"bytes from offset {at} after the last {kind} stream are not a {kind} stream")


def read_streams(
    raw: BinaryIO, compressed_size: int, ctx: LoadContext, make: Callable[[], Decompressor], magic: bytes, kind: str
) -> bytes:
    """Decompress every concatenated stream of ``raw`` within the same budget as
    :func:`read_capped`, and refuse bytes after the last stream that are neither zero padding
    nor another stream (``corrupt``): a ``clear`` must mean the whole upload was read.

    ``make`` builds a fresh decompressor per stream; its ``max_length`` keeps each call within
    the budget plus one byte, so a bomb stops as in :func:`read_capped`.
    """
    by_ratio = int(max(compressed_size, 1) * ctx.limits.max_ratio)
    by_bytes = ctx.remaining_bytes()
    budget = min(by_ratio, by_bytes)
    parts: list[bytes] = []
    total, dec, pending = 0, make(), b""
    while True:
        if dec.eof:
            nxt = _next_stream(raw, dec.unused_data + pending, magic, kind)
            if nxt is None:
                break
            dec, pending = make(), nxt
        if dec.needs_input:
            data, pending = pending or raw.read(READ_CHUNK), b""
            if not data:
                raise EOFError(f"the {kind} stream ends before its end marker")
        else:
            data = b""
        out = dec.decompress(data, budget + 1 - total)
        parts.append(out)
        total += len(out)
        if total > budget:
            raise over_budget(by_ratio, by_bytes, ctx)
    ctx.spend(total)
    return b"".join(parts)


def check_member_path(name: str) -> None:
    """Refuse absolute paths, drive letters and ``..`` segments (zip-slip)."""
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":") or ".." in norm.split("/"):
        raise UnreadableInput(UNSAFE_PATH, f"member path {name!r} escapes the archive")


def read_zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, ctx: LoadContext) -> bytes:
    check_member_path(info.filename)
    if info.flag_bits & 0x1:
        raise UnreadableInput(ENCRYPTED, "password-protected member")
    try:
        with zf.open(info) as stream:
            return read_capped(stream, info.compress_size, ctx)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, OSError, ValueError) as exc:
        # OSError: a damaged directory can point a member before the start of the file
        raise UnreadableInput(CORRUPT, f"cannot decompress: {exc}") from None
    except RuntimeError as exc:  # zipfile's word for 'encrypted'
        raise UnreadableInput(ENCRYPTED, str(exc)) from None


_EOCD = b"PK\x05\x06"
_EOCD_BYTES = 22
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_LOCATOR_BYTES = 20
_ZIP64_EOCD = b"PK\x06\x06"
_ZIP64_EOCD_BYTES = 56
_CD_ENTRY = b"PK\x01\x02"
_CD_ENTRY_MIN_BYTES = 46


def zip_has_more_entries_than(blob: Blob, limit: int) -> bool:
    """Does the zip's central directory list more than ``limit`` entries?

    Answered from the end-of-central-directory record *before* :mod:`zipfile` parses the
    directory, which builds a ZipInfo per entry with no cap: a 17 MB zip of 200,000 empty
    entries took 3.5 s and 120 MB per open, so ``max_members`` came too late to help. The
    declared count is not trusted (zipfile reads entries until the directory's byte size is
    used up): a directory too big for ``limit`` minimal entries has its entry signatures
    counted, which overcounts only if names contain the signature. Returns False when there
    is no readable end record; zipfile then names the damage.
    """
    size = blob.size
    tail_len = min(size, _EOCD_BYTES + 0xFFFF)  # the record ends in a comment of up to 64 KiB
    with blob.open() as fh:
        fh.seek(size - tail_len)
        tail = fh.read(tail_len)
        at = tail.rfind(_EOCD)
        if at < 0 or at + _EOCD_BYTES > len(tail):
            return False
        entries, cd_bytes = struct.unpack_from("<HI", tail, at + 10)
        cd_end = size - tail_len + at
        locator = at - _ZIP64_LOCATOR_BYTES
        if locator >= 0 and tail[locator : locator + 4] == _ZIP64_LOCATOR and cd_end >= 76:
            fh.seek(cd_end - _ZIP64_LOCATOR_BYTES - _ZIP64_EOCD_BYTES)  # where zipfile looks for it
            record = fh.read(_ZIP64_EOCD_BYTES)
            if record[:4] == _ZIP64_EOCD:
                entries, cd_bytes = struct.unpack_from("<QQ", record, 32)
                cd_end -= _ZIP64_LOCATOR_BYTES + _ZIP64_EOCD_BYTES
        if entries > limit:
            return True
        if cd_bytes <= _CD_ENTRY_MIN_BYTES * limit:
            return False
        fh.seek(max(cd_end - cd_bytes, 0))
        left, count, carry = min(cd_bytes, cd_end), 0, b""
        while left > 0:
            data = fh.read(min(READ_CHUNK, left))
            if not data:
                break
            left -= len(data)
            # the signature cannot overlap itself, so one starting in the 3 carried bytes
            # was not counted in the previous chunk
            chunk = carry + data
            count += chunk.count(_CD_ENTRY)
            if count > limit:
                return True
            carry = chunk[-3:]
        return False


_LOCAL_HEADER = b"PK\x03\x04"
_LOCAL_HEADER_BYTES = 30


_DESCRIPTOR_MAX_BYTES = 24  # a data descriptor: signature, CRC and two 64-bit sizes


def check_unlisted_entries(blob: Blob, zf: zipfile.ZipFile) -> None:
    """Refuse zip bytes that no entry of the central directory accounts for.

    zipfile (like unzip, which only warns of "extra bytes") reads what the directory names,
    at the sizes it gives; streaming readers (Java's ``ZipInputStream``, checked) walk the
    local headers at the sizes *they* give. A local entry the directory leaves out, or one
    whose local header declares more data than the directory (an OBJ whose part follows the
    decoy's lines), was extracted by those and never read here: a decoy made it ``clear``.
    So: a local header's sizes must match the directory's (unless a data descriptor follows
    the data); between entries nothing but a data descriptor may lie; and before the first
    entry (a self-extractor's stub, an image a zip is appended to) no local header may hide.
    """
    spans = []
    with blob.open() as fh:
        for info in zf.infolist():
            if info.header_offset < 0:
                continue  # a damaged directory: reading the entry says so
            fh.seek(info.header_offset)
            head = fh.read(_LOCAL_HEADER_BYTES)
            if len(head) < _LOCAL_HEADER_BYTES or not head.startswith(_LOCAL_HEADER):
                continue  # zipfile names the damage when the entry is read
            (flags,) = struct.unpack_from("<H", head, 6)
            sizes = struct.unpack_from("<II", head, 18)
            if not flags & 0x8 and 0xFFFFFFFF not in sizes and sizes != (info.compress_size, info.file_size):
                raise UnreadableInput(
                    CORRUPT, f"zip entry {info.filename!r}: its local header and the directory disagree on its size"
                )
            name_len, extra_len = struct.unpack_from("<HH", head, 26)
            end = info.header_offset + _LOCAL_HEADER_BYTES + name_len + extra_len + info.compress_size
            spans.append((info.header_offset, end))
        spans.sort()
        pos = 0
        for start, end in [*spans, (zf.start_dir, zf.start_dir)]:
            if start > pos:
                if spans and pos >= spans[0][0] and start - pos > _DESCRIPTOR_MAX_BYTES:
                    raise UnreadableInput(CORRUPT, f"{start - pos} bytes at offset {pos} lie outside every zip entry")
                _refuse_local_headers(fh, pos, start)
            pos = max(pos, end)


def _refuse_local_headers(fh: BinaryIO, start: int, end: int) -> None:
    fh.seek(start)
    at, carry = start, b""
    while at < end:
        data = fh.read(min(READ_CHUNK, end - at))
        if not data:
            return
        chunk = carry + data
        found = chunk.find(_LOCAL_HEADER)
        if found >= 0:
            offset = at - len(carry) + found
            raise UnreadableInput(CORRUPT, f"a zip entry at offset {offset} is not in the zip's directory")
        at += len(data)
        carry = chunk[-3:]


@contextmanager
def open_zip(blob: Blob, max_members: int | None = None) -> Iterator[zipfile.ZipFile]:
    """The blob as an open ZipFile; its file is closed on leaving the ``with`` (zipfile
    never closes a file object it was handed, which leaked one handle per archive)."""
    if max_members is not None and zip_has_more_entries_than(blob, max_members):
        raise UnreadableInput(LIMIT_MEMBERS, f"the zip directory lists more than {max_members} entries")
    with blob.open() as fh:
        try:
            zf = zipfile.ZipFile(fh)
        except zipfile.BadZipFile as exc:
            reason = TRUNCATED if "End-of-central-directory" in str(exc) else CORRUPT
            raise UnreadableInput(reason, f"zip: {exc}") from None
        except (OSError, ValueError, EOFError, NotImplementedError) as exc:
            # NotImplementedError: a directory entry claiming a zip version from the future
            raise UnreadableInput(CORRUPT, f"zip: {exc}") from None
        with zf:
            yield zf


def is_empty_dir(info: zipfile.ZipInfo) -> bool:
    """A directory entry holding nothing. A name ending in ``/`` can still hold bytes (zipfile
    reads them): such an entry is a member, not a directory to skip."""
    return info.is_dir() and info.file_size == 0 and info.compress_size <= 2


def _members(name: str, inner: Iterator[MemberResult]) -> Iterator[MemberResult]:
    """Prefix member names of a nested read with the outer member's name."""
    for result in inner:
        result.member = name if result.member is None else f"{name}/{result.member}"
        yield result


def read_member_bytes(name: str, data: bytes, ctx: LoadContext) -> Iterator[MemberResult]:
    """Every mesh in one member's bytes, read like an upload (``ctx.read``), named under it."""
    yield from _members(name, ctx.read(BytesBlob(name, data)))


def iter_zip(blob: Blob, ctx: LoadContext) -> Iterator[MemberResult]:
    ctx = ctx.nested()
    with open_zip(blob, ctx.limits.max_members - ctx.usage.members) as zf:
        files = [info for info in zf.infolist() if not is_empty_dir(info)]
        if not files:  # a result, not silence: an empty archive is unscannable, not clean
            raise UnreadableInput(EMPTY, "archive holds no files")
        check_unlisted_entries(blob, zf)
        for info in files:
            ctx.count_member()
            try:
                data = read_zip_member(zf, info, ctx)
            except UnreadableInput as err:
                if err.reason == LIMIT_BYTES and ctx.uncompressed_bytes >= ctx.limits.max_uncompressed_bytes:
                    raise
                yield MemberResult(info.filename, "", error=err)
                continue
            yield from read_member_bytes(info.filename, data, ctx)
        comment = zf.comment
    # what unzip steps over (scanner/formats/_hidden.py)
    yield from read_hidden("#comment", comment, ctx)
    yield from read_hidden("#after-end", zip_trailer(blob), ctx)


def _single_stream(blob: Blob, ctx: LoadContext, opener, suffixes: tuple[str, ...]) -> Iterator[MemberResult]:
    ctx = ctx.nested()
    base = posixpath.basename(blob.name.replace("\\", "/"))
    inner = next((base[: -len(s)] for s in suffixes if base.lower().endswith(s)), base) or "data"
    try:
        with blob.open() as raw, opener(raw) as stream:  # the opener does not close ``raw``
            data = read_capped(stream, blob.size, ctx)
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        reason = TRUNCATED if isinstance(exc, EOFError) else CORRUPT
        raise UnreadableInput(reason, f"cannot decompress: {exc}") from None
    yield from read_member_bytes(inner, data, ctx)


def iter_gzip(blob: Blob, ctx: LoadContext) -> Iterator[MemberResult]:
    yield from _single_stream(blob, ctx, lambda f: gzip.GzipFile(fileobj=f), (".gz", ".tgz"))
    for where, data in gzip_header_fields(blob):  # what gunzip steps over (scanner/formats/_hidden.py)
        yield from read_hidden(where, data, ctx.nested())


def iter_bz2(blob: Blob, ctx: LoadContext) -> Iterator[MemberResult]:
    """Every bzip2 stream (``bzip2`` concatenates them), and nothing after them but zeros:
    :class:`bz2.BZ2File` ignored trailing bytes that were not a stream."""
    ctx = ctx.nested()
    base = posixpath.basename(blob.name.replace("\\", "/"))
    inner = base[: -len(".bz2")] if base.lower().endswith(".bz2") else base
    try:
        with blob.open() as raw:
            data = read_streams(raw, blob.size, ctx, bz2.BZ2Decompressor, BZ2_MAGIC, "bzip2")
    except (OSError, EOFError, ValueError) as exc:
        reason = TRUNCATED if isinstance(exc, EOFError) else CORRUPT
        raise UnreadableInput(reason, f"cannot decompress: {exc}") from None
    yield from read_member_bytes(inner or "data", data, ctx)


def iter_tar(blob: Blob, ctx: LoadContext) -> Iterator[MemberResult]:
    ctx = ctx.nested()
    raw = blob.open()  # tarfile does not close a file object it was handed
    try:
        tf = tarfile.open(fileobj=raw, mode="r:")
    except (tarfile.TarError, OSError) as exc:
        raw.close()
        raise UnreadableInput(CORRUPT, f"tar: {exc}") from None
    with raw, tf:
        seen = 0
        try:
            for info in tf:
                # pax records (a comment, any keyword) are stepped over by tar (scanner/formats/_hidden.py)
                for key, value in sorted(info.pax_headers.items()):
                    data = value.encode("utf-8", "surrogateescape")
                    yield from read_hidden(f"{info.name}#pax-{key}", data, ctx)
                if info.isdir():
                    continue
                seen += 1
                ctx.count_member()
                try:
                    check_member_path(info.name)
                    if not info.isfile():
                        raise UnreadableInput(UNSAFE_PATH, "links and devices are not read")
                    if info.size > ctx.remaining_bytes():
                        raise UnreadableInput(LIMIT_BYTES, f"member of {info.size} bytes")
                    stream = tf.extractfile(info)
                    data = read_capped(stream, max(info.size, 1), ctx) if stream else b""
                    if len(data) < info.size:
                        raise UnreadableInput(TRUNCATED, "tar member ends early")
                except UnreadableInput as err:
                    yield MemberResult(info.name, "", error=err)
                    continue
                yield from read_member_bytes(info.name, data, ctx)
        except tarfile.TarError as exc:
            raise UnreadableInput(CORRUPT, f"tar: {exc}") from None
        if not seen:  # as for zip: an empty archive is a result
            raise UnreadableInput(EMPTY, "archive holds no files")
        _check_tar_tail(raw, tf.offset)


def _check_tar_tail(raw: BinaryIO, end: int) -> None:
    """Refuse anything but zero bytes after where :mod:`tarfile` stopped reading.

    tarfile stops at the first zero block, and silently at a header it cannot parse; GNU tar
    reads on past both (``--ignore-zeros`` reads concatenated archives; a bad header is
    "Skipping to next header"). So a part appended after a tar's end marker, or after one
    damaged header, was never read and the upload came out ``clear``."""
    raw.seek(end)
    at = end
    while chunk := raw.read(READ_CHUNK):
        if chunk.count(0) != len(chunk):
            first = at + len(chunk) - len(chunk.lstrip(b"\0"))
            raise UnreadableInput(CORRUPT, f"bytes from offset {first} after the tar's end are not zero padding")
        at += len(chunk)


def _sniff(p: Probe) -> str | None:
    """Containers meshscan opens, by magic number (a zip holding a 3MF package is claimed
    first, by :mod:`scanner.formats.threemf`)."""
    head = p.head
    if head.startswith(ZIP_MAGIC):
        return "zip"
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(BZ2_MAGIC):
        return "bz2"
    if len(head) > 262 and head[257:262] == b"ustar":
        return "tar"
    return None


_ARCHIVES = "zip, tar"
_STREAMS = "gzip, bzip2"
FORMATS = (
    Format(
        "zip", _ARCHIVES, 60, "every member read as its own upload, recursively (depth-limited)", container=iter_zip
    ),
    Format("tar", _ARCHIVES, 61, container=iter_tar),
    Format("gzip", _STREAMS, 70, "the stream is decompressed (capped) and sniffed again", container=iter_gzip),
    Format("bz2", _STREAMS, 71, container=iter_bz2),
)
SNIFFERS = (Sniffer(110, _sniff, frozenset({"zip", "gzip", "bz2", "tar"})),)
