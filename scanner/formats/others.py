"""What meshscan recognises but does not read, and its sniffers.

* Model and container formats meshscan cannot read (``UNSUPPORTED``: FBX, 3DS, Collada,
  VRML/X3D, DXF, lz4/rar, ...), and ``unknown`` bytes - reported as ``unsupported-format``,
  an error: uploaders choose the bytes, so what is not recognised is never assumed harmless.
* Content recognised as *not a model* (``NON_MODEL``: text, JSON, XML, images, PDF, MTL
  materials, AppleDouble metadata) - listed inside archives, skipped by folder walks.

``not a model`` is a claim that nothing in the blob is a mesh, so it is checked against every
byte (:func:`confirm_non_model`): a file whose head is prose or a PNG but which holds OBJ
vertex or ASCII STL ``vertex`` lines anywhere, or ends in a zip directory (a zip appended to
an image), is sniffed as that instead.

A format module that starts reading one of these declares a sniffer of lower priority for
it and drops it from the table here.
"""

from __future__ import annotations

import re
import struct

from scanner.formats._probe import (
    HEAD_BYTES,
    MESH_LINE_NAMES,
    NON_MODEL_MAGIC_NAMES,
    Probe,
    is_text,
    mesh_line_kind,
    non_model_magic,
)
from scanner.formats.base import Format, Sniffer
from scanner.formats.blob import Blob, BytesBlob

UNSUPPORTED: dict[str, str] = {
    "mesh+zip": "a mesh file with a zip archive appended (two readings of one file, neither alone is all of it)",
    "json-mesh": "a JSON mesh (vertices/faces arrays)",
    "lz4": "lz4-compressed data",
    "rar": "RAR archive",
    "fbx": "FBX",
    "3ds": "3D Studio (3DS)",
    "collada": "Collada (DAE)",
    "vrml": "VRML",
    "x3d": "X3D",
    "3dxml": "3DXML",
    "dxf": "DXF",
    "dwg": "DWG",
    "blend": "Blender",
    "skp": "SketchUp",
    "openscad": "OpenSCAD source",
    "unknown": "unrecognised content",
}
"""Model and container formats meshscan recognises but cannot read, by sniffed name."""

NON_MODEL: dict[str, str] = {
    "text": "text",
    "json": "JSON",
    "xml": "XML",
    "html": "HTML",
    "svg": "SVG image",
    "mtl": "MTL material library",
    "png": "PNG image",
    "jpeg": "JPEG image",
    "gif": "GIF image",
    "webp": "WebP image",
    "bmp": "BMP image",
    "tiff": "TIFF image",
    "pdf": "PDF document",
    "appledouble": "AppleDouble metadata (macOS resource fork)",
}
"""Content recognised as not a model: listed in archives, skipped by folder walks."""

_ARCHIVE_MAGIC = (
    (b"\x04\x22\x4d\x18", "lz4"),
    (b"Rar!\x1a\x07", "rar"),
)
_BINARY_MODEL_MAGIC = (
    (b"Kaydara FBX Binary", "fbx"),
    (b"BLENDER", "blend"),
    (b"AutoCAD Binary DXF", "dxf"),
    (b"\xff\xfe\xff\x0eS\x00k\x00e\x00t\x00c\x00h\x00U\x00p", "skp"),
)
_TEXT_MAGIC = (
    (b"#VRML", "vrml"),
    (b"#X3D", "x3d"),
    (b"; FBX", "fbx"),
)
_XML_MODEL_ROOTS = {
    b"collada": "collada",
    b"x3d": "x3d",
    b"model_3dxml": "3dxml",
    b"xmlrepresentation": "3dxml",  # a 3DXML tessellated part (.3DRep)
}
_DXF_RE = re.compile(rb"\A\s*(?:999\s*\r?\n[^\n]*\n\s*)?0\s*\r?\n\s*SECTION\b")
_SCAD_RE = re.compile(
    rb"(?<![.\w])(?:cube|cylinder|sphere|polyhedron|linear_extrude|rotate_extrude)\s*\([^()\n]*\)\s*;"
)
_JSON_GLTF_RE = re.compile(rb'"asset"\s*:')
_JSON_GLTF_PARTS_RE = re.compile(rb'"(?:meshes|accessors|bufferViews|buffers|nodes|scenes)"\s*:')
_JSON_MESH_RE = re.compile(rb'"(?:vertices|faces|positions|indices|triangles)"\s*:\s*\[')
_MTL_RE = re.compile(rb"^[ \t]*newmtl[ \t]", re.M)
_EOCD = b"PK\x05\x06"
_CHUNK = 1 << 20
_OVERLAP = 512

CONFIRMED = frozenset({"zip"} | MESH_LINE_NAMES)
"""What :func:`confirm_non_model` may answer besides the not-a-model name it was given."""


def confirm_non_model(blob: Blob, kind: str) -> str:
    """``kind`` if no byte of the blob says otherwise; else what the bytes hold.

    A zip directory at the end (an archive appended to an image: zip readers find it) makes
    it a zip; a line only a mesh holds (OBJ ``v x y z`` / ``f a b c``, STL ``vertex x y z``),
    anywhere, makes it an OBJ or ASCII STL for the loader to judge. The whole blob is read,
    in chunks, once: prose and pictures must not be a wrapper that hides a mesh from the
    scan (and from a folder walk, which skips what is not a model).
    """
    size = blob.size
    tail_len = min(size, 22 + 0xFFFF)
    if isinstance(blob, BytesBlob):
        if _EOCD in blob.data[size - tail_len :]:
            return "zip"
        return mesh_line_kind(blob.data) or kind
    with blob.open() as fh:
        fh.seek(size - tail_len)
        if _EOCD in fh.read(tail_len):
            return "zip"
        fh.seek(0)
        carry = b""
        while True:
            chunk = fh.read(_CHUNK)
            if not chunk:
                return kind
            data = carry + chunk
            found = mesh_line_kind(data)
            if found is not None:
                return found
            # the next search starts at the last line break: a mesh line cut by the chunk
            # border is searched whole (lines longer than the overlap are not mesh lines)
            cut = data.rfind(b"\n")
            carry = data[cut:] if 0 <= cut and len(data) - cut <= _CHUNK else data[-_OVERLAP:]


# ----------------------------------------------------------------------------- binary


def _archive_magic(p: Probe) -> str | None:
    """Compressed streams and archives meshscan does not open."""
    return next((name for magic, name in _ARCHIVE_MAGIC if p.head.startswith(magic)), None)


def _binary_model_magic(p: Probe) -> str | None:
    """Binary model formats by magic number (after STL's size rule: a binary STL's 80-byte
    header may say anything)."""
    head = p.head
    for magic, name in _BINARY_MODEL_MAGIC:
        if head.startswith(magic):
            return name
    if head.startswith(b"MM") and len(head) >= 6 and struct.unpack_from("<I", head, 2)[0] == p.blob.size:
        return "3ds"  # the main chunk (0x4D4D) spans the whole file
    if re.match(rb"AC1\d{3}", head):
        return "dwg"
    return None


def _non_model_magic(p: Probe) -> str | None:
    """Images, PDF, AppleDouble - unless some byte says there is a mesh (or a zip) in it."""
    kind = non_model_magic(p.head, p.blob.size)
    return None if kind is None else confirm_non_model(p.blob, kind)


def _utf16(p: Probe) -> str | None:
    """Text saved as UTF-16 (Windows' "Unicode"): judged as its UTF-8 transcoding is."""
    head = p.head
    if not head.startswith((b"\xff\xfe", b"\xfe\xff")) or head.startswith(b"\xff\xfe\x00\x00"):
        return None
    if p.blob.size > 1 << 26:
        return "unknown"
    try:
        text = p.blob.read().decode("utf-16").encode("utf-8")
    except (UnicodeError, MemoryError):
        return "unknown"
    kind = p.sniff(BytesBlob(p.blob.name, text)) if is_text(text[:HEAD_BYTES]) else "unknown"
    return kind if kind in NON_MODEL or kind in UNSUPPORTED else "unknown"


def _not_text(p: Probe) -> str | None:
    """Binary content nothing above recognised: ``unknown`` (an error, never assumed harmless)."""
    return None if p.is_text else "unknown"


# ----------------------------------------------------------------------------- text


def _text_magic(p: Probe) -> str | None:
    """Text model formats by their first line: DXF, VRML, X3D, ASCII FBX (STEP and IGES: :mod:`scanner.formats.cad`)."""
    body = p.body
    if _DXF_RE.match(body):
        return "dxf"
    return next((name for magic, name in _TEXT_MAGIC if body.startswith(magic)), None)


def _xml(p: Probe) -> str | None:
    root = p.xml_root
    if root is None:
        return None
    if root == b"":  # a prolog longer than is followed: what it holds is not known
        return "unknown"
    if root in _XML_MODEL_ROOTS:
        return _XML_MODEL_ROOTS[root]
    return confirm_non_model(p.blob, "svg" if root == b"svg" else "html" if root == b"html" else "xml")


def _json(p: Probe) -> str | None:
    """glTF, a JSON mesh, or JSON - by keys anywhere in the file, not only in the head: JSON
    keys come in any order, and a glTF opening with a long ``extras`` object (trimesh reads
    it) was sniffed as plain JSON, not a model, and skipped."""
    if not p.body.startswith((b"{", b"[")):
        return None
    seen: set[str] = set()
    kind = _json_kind(p.head, seen)
    if kind is None and p.blob.size > len(p.head):
        kind = _json_kind_anywhere(p.blob)
    elif kind is None and "mesh" in seen:
        kind = "json-mesh"
    return kind or confirm_non_model(p.blob, "json")


def _json_kind(data: bytes, seen: set[str] | None = None) -> str | None:
    """``gltf`` or ``json-mesh`` from the keys in ``data`` (and those ``seen`` before it)."""
    seen = set() if seen is None else seen
    if _JSON_GLTF_RE.search(data):
        seen.add("asset")
    if _JSON_GLTF_PARTS_RE.search(data):
        seen.add("parts")
    if {"asset", "parts"} <= seen:
        return "gltf"
    if _JSON_MESH_RE.search(data):
        seen.add("mesh")
    return None


def _json_kind_anywhere(blob: Blob) -> str | None:
    """:func:`_json_kind` over the whole blob, in chunks (a key cut by a chunk border is seen
    whole in the overlap); ``json-mesh`` only once no glTF can follow."""
    seen: set[str] = set()
    with blob.open() as fh:
        carry = b""
        while chunk := fh.read(_CHUNK):
            data = carry + chunk
            if _json_kind(data, seen) == "gltf":
                return "gltf"
            carry = data[-_OVERLAP:]
    return "json-mesh" if "mesh" in seen else None


def _openscad(p: Probe) -> str | None:
    return "openscad" if _SCAD_RE.search(p.head) else None


def _prose(p: Probe) -> str:
    """The last word on text: HTML, an MTL material library, or text - if every byte agrees."""
    if p.body[:6].lower() in (b"<!doct", b"<html>"):
        return confirm_non_model(p.blob, "html")
    return confirm_non_model(p.blob, "mtl" if _MTL_RE.search(p.head) else "text")


FORMATS: tuple[Format, ...] = ()  # none read: declared so that the registry lists this module
SNIFFERS = (
    Sniffer(200, _archive_magic, frozenset(name for _, name in _ARCHIVE_MAGIC)),
    Sniffer(410, _binary_model_magic, frozenset({name for _, name in _BINARY_MODEL_MAGIC} | {"3ds", "dwg"})),
    Sniffer(500, _non_model_magic, frozenset(NON_MODEL_MAGIC_NAMES | CONFIRMED)),
    Sniffer(600, _utf16, frozenset(UNSUPPORTED) | frozenset(NON_MODEL)),
    Sniffer(610, _not_text, frozenset({"unknown"})),
    Sniffer(700, _text_magic, frozenset({"dxf"} | {name for _, name in _TEXT_MAGIC})),
    Sniffer(745, _xml, frozenset({*_XML_MODEL_ROOTS.values(), "svg", "html", "xml", "unknown"} | CONFIRMED)),
    Sniffer(750, _json, frozenset({"gltf", "json-mesh", "json"} | CONFIRMED)),
    Sniffer(770, _openscad, frozenset({"openscad"})),
    Sniffer(790, _prose, frozenset({"html", "mtl", "text"} | CONFIRMED)),
)
