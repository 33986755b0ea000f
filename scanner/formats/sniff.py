"""Decide what a blob *is* from its bytes; the file name is never consulted.

Order matters: containers first (their magic numbers are unambiguous), then PLY and OFF
headers, then the STL binary/ASCII question (the classic trap: a binary STL whose 80-byte
header starts with ``solid``), then OBJ as the text format of last resort.
"""

from __future__ import annotations

import re
import struct
import zipfile

import numpy as np

from scanner.formats.blob import Blob

STL_HEADER_BYTES = 80
STL_COUNT_BYTES = 4
STL_RECORD_BYTES = 50
STL_PREAMBLE = STL_HEADER_BYTES + STL_COUNT_BYTES

# Magic numbers of common non-mesh uploads, so that they never reach the STL heuristics.
_FOREIGN_MAGIC = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG",
    b"GIF8",
    b"%PDF",
    b"\x7fELF",
    b"MZ",
    b"RIFF",
    b"glTF",
    b"Rar!",
    b"7z\xbc\xaf",
    b"\xfd7zXZ",
)

# OFF may open with comment lines before its header keyword (trimesh and meshlab read those)
_OFF_RE = re.compile(rb"\A(?:\s*#[^\n]*\n)*\s*(?:ST)?C?N?4?n?OFF(?:\s|\Z|[0-9])")
_OBJ_LINE_RE = re.compile(rb"^[ \t]*(?:v|vn|vt|f|o|g|mtllib|usemtl)[ \t]", re.M)
_STL_ASCII_RE = re.compile(rb"\A\s*solid", re.I)


def _looks_text(head: bytes) -> bool:
    return b"\x00" not in head


def _plausible_stl_records(head: bytes) -> bool:
    """Do the first complete records hold finite, ordinary float32 numbers?"""
    body = head[STL_PREAMBLE:]
    n = min(len(body) // STL_RECORD_BYTES, 20)
    if n == 0:
        return False
    rec = np.frombuffer(body[: n * STL_RECORD_BYTES], dtype=np.uint8).reshape(n, STL_RECORD_BYTES)
    floats = rec[:, :48].copy().view("<f4").ravel()
    if not np.all(np.isfinite(floats)):
        return False
    mag = np.abs(floats)
    return bool(np.all((mag == 0) | ((mag > 1e-30) & (mag < 1e9))))


def sniff(blob: Blob, max_members: int | None = None) -> str:
    """Return a format name of the registry, or ``"unknown"``."""
    head = blob.head(65536)
    if not head:
        return "empty"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _sniff_zip(blob, max_members)
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"BZh"):
        return "bz2"
    if len(head) > 262 and head[257:262] == b"ustar":
        return "tar"
    if head.startswith(_FOREIGN_MAGIC):
        return "unknown"
    if re.match(rb"ply\r?\n", head):
        return "ply"
    if _looks_text(head) and _OFF_RE.match(head):
        return "off"
    stl_binary_size = None
    if blob.size >= STL_PREAMBLE:
        (count,) = struct.unpack("<I", head[STL_HEADER_BYTES:STL_PREAMBLE])
        stl_binary_size = STL_PREAMBLE + STL_RECORD_BYTES * count
    if _STL_ASCII_RE.match(head) and _looks_text(head[:4096]):
        # an ASCII STL: unless the size is exactly a binary STL's and no facet is written
        text_like = re.search(rb"facet|endsolid", head[:4096], re.I) is not None
        if text_like or stl_binary_size != blob.size:
            return "stl-ascii"
    if stl_binary_size is not None:
        if stl_binary_size == blob.size:
            return "stl-binary"
        if not _looks_text(head) and _plausible_stl_records(head):
            return "stl-binary"  # truncated or padded: the loader says which
    if _looks_text(head) and _OBJ_LINE_RE.search(head):
        return "obj"
    if _looks_text(head) and _only_comments(head) and blob.size <= 65536:
        return "obj"  # a comment-only OBJ (exporters write these): loads as empty
    return "unknown"


def _only_comments(head: bytes) -> bool:
    lines = [ln.strip() for ln in head.splitlines()]
    return all(not ln or ln.startswith(b"#") for ln in lines)


def _sniff_zip(blob: Blob, max_members: int | None) -> str:
    """A 3MF package is a zip holding an OPC content-types part and a 3D model part.

    A zip listing more than ``max_members`` entries is not opened here (zipfile would parse
    its whole directory first): the zip reader refuses it with ``limit:members``.
    """
    from scanner.formats.archive import zip_has_more_entries_than

    if max_members is not None and zip_has_more_entries_than(blob, max_members):
        return "zip"
    try:
        with blob.open() as fh, zipfile.ZipFile(fh) as zf:  # zipfile leaves fh open
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
        return "zip"  # the zip loader reports what is wrong with it
    lower = {n.lower().lstrip("/") for n in names}
    if "[content_types].xml" in lower and any(n.endswith(".model") for n in lower):
        return "3mf"
    return "zip"
