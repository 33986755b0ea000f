"""What sniffers look at: a :class:`Probe` of one blob (its head, and facts about it worked
out once), and the byte tests more than one format module needs.

A sniffer never consults the file name: uploaders choose names.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from scanner.formats.blob import Blob

HEAD_BYTES = 65536
"""Bytes of a blob that sniffers see (:attr:`Probe.head`)."""

_NUM = rb"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_IDX = rb"-?\d+(?:/-?\d*)?(?:/-?\d+)?"
# A line only a mesh holds: an OBJ vertex or face, an ASCII STL vertex (three numbers or indices).
MESH_LINE_RE = re.compile(
    rb"^[ \t]*(?:(?P<v>v)[ \t]+" + _NUM + rb"[ \t]+" + _NUM + rb"[ \t]+" + _NUM
    + rb"|(?P<f>f)[ \t]+" + _IDX + rb"[ \t]+" + _IDX + rb"[ \t]+" + _IDX
    + rb"|(?P<stl>[vV][eE][rR][tT][eE][xX])[ \t]+" + _NUM + rb"[ \t]+" + _NUM + rb"[ \t]+" + _NUM + rb")",
    re.M,
)  # fmt: skip
MESH_LINE_NAMES = frozenset({"stl-ascii", "obj"})
"""What :func:`mesh_line_kind` answers."""

_XML_ROOT_RE = re.compile(
    rb"\A(?:\xef\xbb\xbf)?\s*(?:<\?.*?\?>\s*|<!--.*?-->\s*|<!DOCTYPE[^>\[]*(?:\[.*?\]\s*)?>\s*)*"
    rb"<(?:[A-Za-z_][\w.-]*:)?([A-Za-z_][\w.-]*)",  # a DOCTYPE's internal subset may hold '>'
    re.S,
)
_XML_START_RE = re.compile(rb"\A(?:\xef\xbb\xbf)?\s*<(?:\?|!--|!DOCTYPE)")
XML_PROLOG_BYTES = 1 << 24
"""How far an XML prolog is followed to find the root element."""
_NON_MODEL_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"%PDF-", "pdf"),
    (b"\x00\x05\x16\x07", "appledouble"),  # AppleDouble (``__MACOSX/._name``, ``._name``)
    (b"\x00\x05\x16\x00", "appledouble"),  # AppleSingle
)
NON_MODEL_MAGIC_NAMES = frozenset({name for _, name in _NON_MODEL_MAGIC} | {"webp", "bmp"})
"""What :func:`non_model_magic` answers."""
_CONTROL_BYTES = tuple(bytes([c]) for c in (*range(1, 9), 14, 15, *range(16, 27), *range(28, 32), 127))


def looks_text(head: bytes) -> bool:
    """No NUL byte: may be text (a cheap first test)."""
    return b"\x00" not in head


def is_text(head: bytes) -> bool:
    """Text in an ASCII-compatible encoding: no NUL, (almost) no other control bytes, and
    either valid UTF-8 (a sequence cut by the end of the head allowed) or few bytes above
    127 (Latin-1 prose). Random bytes are none of these: unknown binary stays unknown."""
    if not looks_text(head):
        return False
    controls = sum(head.count(c) for c in _CONTROL_BYTES)
    if controls > len(head) // 100:
        return False
    try:
        head.decode("utf-8")
        return True
    except UnicodeDecodeError as exc:
        if exc.start >= len(head) - 3 and exc.reason == "unexpected end of data":
            return True
    high = len(head) - len(head.translate(None, bytes(range(128, 256))))
    return high <= len(head) // 4


def mesh_line_kind(data: bytes) -> str | None:
    """``stl-ascii`` or ``obj`` if ``data`` holds a line only a mesh holds (the first decides)."""
    if b"\r" in data:  # a bare \r ends a line too (PrusaSlicer's OBJ parser): search those lines
        data = data.replace(b"\r", b"\n")
    found = MESH_LINE_RE.search(data)
    if found is None:
        return None
    return "stl-ascii" if found.group("stl") else "obj"


def non_model_magic(head: bytes, size: int) -> str | None:
    """The not-a-model name (an image, a PDF, AppleDouble) that ``head``'s magic number says."""
    for magic, name in _NON_MODEL_MAGIC:
        if head.startswith(magic):
            return name
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith(b"BM") and len(head) >= 6 and struct.unpack_from("<I", head, 2)[0] == size:
        return "bmp"
    return None


@dataclass
class Probe:
    """One blob as the sniffers see it. ``sniff`` sniffs another blob (text transcoded from
    UTF-16 is sniffed again), so a sniffer never imports the sniffing driver."""

    blob: Blob
    head: bytes
    max_members: int | None
    sniff: Callable[[Blob], str]

    @cached_property
    def looks_text(self) -> bool:
        return looks_text(self.head)

    @cached_property
    def is_text(self) -> bool:
        return is_text(self.head)

    @cached_property
    def body(self) -> bytes:
        """The head without a UTF-8 byte order mark or leading blanks."""
        return self.head.lstrip(b"\xef\xbb\xbf \t\r\n")

    @cached_property
    def xml_root(self) -> bytes | None:
        """The lower-cased local name of the root element, if the blob is XML.

        A prolog (comments, processing instructions, a DOCTYPE) may run past the head: up to
        :data:`XML_PROLOG_BYTES` are then read to find the root (an AMF behind a long comment,
        which PrusaSlicer reads, was sniffed as text and skipped); ``b""`` when the root lies
        further still (:mod:`scanner.formats.others` calls that unknown, never not a model)."""
        root = _XML_ROOT_RE.match(self.head)
        if root is not None:
            return root.group(1).lower()
        if self.blob.size <= len(self.head) or not _XML_START_RE.match(self.head):
            return None
        with self.blob.open() as fh:
            more = fh.read(XML_PROLOG_BYTES)
        root = _XML_ROOT_RE.match(more)
        if root is not None:
            return root.group(1).lower()
        return b"" if len(more) == XML_PROLOG_BYTES else None
