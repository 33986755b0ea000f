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
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from typing import BinaryIO

from scanner.errors import (
    CORRUPT,
    ENCRYPTED,
    LIMIT_BYTES,
    LIMIT_RATIO,
    TRUNCATED,
    UNSAFE_PATH,
    UnreadableInput,
)
from scanner.formats.base import LoadContext, MemberResult
from scanner.formats.blob import Blob, BytesBlob

READ_CHUNK = 1 << 20


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
        if by_ratio <= by_bytes:
            raise UnreadableInput(LIMIT_RATIO, f"expands more than {ctx.limits.max_ratio:g}x")
        raise UnreadableInput(LIMIT_BYTES, "decompressed size exceeds the limit")
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
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        raise UnreadableInput(CORRUPT, f"cannot decompress: {exc}") from None
    except RuntimeError as exc:  # zipfile's word for 'encrypted'
        raise UnreadableInput(ENCRYPTED, str(exc)) from None


def _open_zip(blob: Blob) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(blob.open())
    except zipfile.BadZipFile as exc:
        reason = TRUNCATED if "End-of-central-directory" in str(exc) else CORRUPT
        raise UnreadableInput(reason, f"zip: {exc}") from None
    except (OSError, ValueError, EOFError) as exc:
        raise UnreadableInput(CORRUPT, f"zip: {exc}") from None


def _members(name: str, inner: Iterator[MemberResult]) -> Iterator[MemberResult]:
    """Prefix member names of a nested read with the outer member's name."""
    for result in inner:
        result.member = name if result.member is None else f"{name}/{result.member}"
        yield result


def _read_member_bytes(name: str, data: bytes, ctx: LoadContext) -> Iterator[MemberResult]:
    from scanner.formats import read_blob

    yield from _members(name, read_blob(BytesBlob(name, data), ctx))


def iter_zip(blob: Blob, ctx: LoadContext) -> Iterator[MemberResult]:
    ctx = ctx.nested()
    with _open_zip(blob) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            ctx.count_member()
            try:
                data = read_zip_member(zf, info, ctx)
            except UnreadableInput as err:
                if err.reason == LIMIT_BYTES and ctx.uncompressed_bytes >= ctx.limits.max_uncompressed_bytes:
                    raise
                yield MemberResult(info.filename, "", error=err)
                continue
            yield from _read_member_bytes(info.filename, data, ctx)


def _single_stream(blob: Blob, ctx: LoadContext, opener, suffixes: tuple[str, ...]) -> Iterator[MemberResult]:
    ctx = ctx.nested()
    base = posixpath.basename(blob.name.replace("\\", "/"))
    inner = next((base[: -len(s)] for s in suffixes if base.lower().endswith(s)), base) or "data"
    try:
        with opener(blob.open()) as stream:
            data = read_capped(stream, blob.size, ctx)
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        reason = TRUNCATED if isinstance(exc, EOFError) else CORRUPT
        raise UnreadableInput(reason, f"cannot decompress: {exc}") from None
    yield from _read_member_bytes(inner, data, ctx)


def iter_gzip(blob: Blob, ctx: LoadContext) -> Iterator[MemberResult]:
    yield from _single_stream(blob, ctx, lambda f: gzip.GzipFile(fileobj=f), (".gz", ".tgz"))


def iter_bz2(blob: Blob, ctx: LoadContext) -> Iterator[MemberResult]:
    yield from _single_stream(blob, ctx, bz2.BZ2File, (".bz2",))


def iter_tar(blob: Blob, ctx: LoadContext) -> Iterator[MemberResult]:
    ctx = ctx.nested()
    try:
        tf = tarfile.open(fileobj=blob.open(), mode="r:")
    except (tarfile.TarError, OSError) as exc:
        raise UnreadableInput(CORRUPT, f"tar: {exc}") from None
    with tf:
        try:
            for info in tf:
                if info.isdir():
                    continue
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
                yield from _read_member_bytes(info.name, data, ctx)
        except tarfile.TarError as exc:
            raise UnreadableInput(CORRUPT, f"tar: {exc}") from None


containers = {"zip": iter_zip, "gzip": iter_gzip, "bz2": iter_bz2, "tar": iter_tar}
