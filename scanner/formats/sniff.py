"""Decide what a blob *is* from its bytes; the file name is never consulted.

Every blob gets one of three kinds of answer:

* a format meshscan reads (``READABLE``: the mesh loaders and the containers);
* a model or container format meshscan does **not** read (``UNSUPPORTED``: GLB/glTF, STEP,
  IGES, AMF, FBX, 3DS, Collada, VRML/X3D, DXF, xz/zstd/7z/rar, ...), or ``unknown`` bytes -
  reported as ``unsupported-format``, an error: uploaders choose the bytes, so what is not
  recognised is never assumed harmless;
* something recognised by content as *not a model* (``NON_MODEL``: text, JSON, XML, images,
  PDF, MTL materials, AppleDouble metadata) - listed inside archives, skipped by folder walks.

``not a model`` is a claim that nothing in the blob is a mesh, so it is checked against every
byte (:func:`_confirm_non_model`): a file whose head is prose or a PNG but which holds OBJ
vertex or ASCII STL ``vertex`` lines anywhere, or ends in a zip directory (a zip appended to
an image), is sniffed as that instead.

Order matters: containers first (their magic numbers are unambiguous), then PLY and OFF
headers, then the STL binary/ASCII question (the classic trap: a binary STL whose 80-byte
header starts with ``solid``, or with an image's magic), then the other binary signatures,
then text.
"""

from __future__ import annotations

import re
import struct
import zipfile
import zlib

import numpy as np

from scanner.formats.blob import Blob, BytesBlob

HEAD_BYTES = 65536
STL_HEADER_BYTES = 80
STL_COUNT_BYTES = 4
STL_RECORD_BYTES = 50
STL_PREAMBLE = STL_HEADER_BYTES + STL_COUNT_BYTES

CONTAINER_FORMATS = frozenset({"zip", "gzip", "bz2", "tar", "3mf"})
MESH_FORMATS = frozenset({"stl-ascii", "stl-binary", "obj", "ply", "off", "3mf-model"})

UNSUPPORTED: dict[str, str] = {
    "glb": "glTF binary (GLB)",
    "gltf": "glTF (JSON)",
    "json-mesh": "a JSON mesh (vertices/faces arrays)",
    "xz": "xz-compressed data",
    "zstd": "zstd-compressed data",
    "lz4": "lz4-compressed data",
    "7z": "7-Zip archive",
    "rar": "RAR archive",
    "step": "STEP (ISO 10303-21)",
    "iges": "IGES",
    "amf": "AMF",
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
    "gcode": "G-code (printer instructions)",
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
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\x04\x22\x4d\x18", "lz4"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"Rar!\x1a\x07", "rar"),
    (b"glTF", "glb"),
)
_BINARY_MODEL_MAGIC = (
    (b"Kaydara FBX Binary", "fbx"),
    (b"BLENDER", "blend"),
    (b"AutoCAD Binary DXF", "dxf"),
    (b"GCDE", "gcode"),  # binary G-code (.bgcode)
    (b"\xff\xfe\xff\x0eS\x00k\x00e\x00t\x00c\x00h\x00U\x00p", "skp"),
)
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

# OFF may open with comment lines before its header keyword (trimesh and meshlab read those)
_OFF_RE = re.compile(rb"\A(?:\s*#[^\n]*\n)*\s*(?:ST)?C?N?4?n?OFF(?:\s|\Z|[0-9])")
_OBJ_WORD_RE = re.compile(rb"^[ \t]*(?:mtllib|usemtl)[ \t]", re.M)
_STL_ASCII_RE = re.compile(rb"\A\s*solid", re.I)
_NUM = rb"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_IDX = rb"-?\d+(?:/-?\d*)?(?:/-?\d+)?"
# A line only a mesh holds: an OBJ vertex or face, an ASCII STL vertex (three numbers or indices).
_MESH_LINE_RE = re.compile(
    rb"^[ \t]*(?:(?P<v>v)[ \t]+" + _NUM + rb"[ \t]+" + _NUM + rb"[ \t]+" + _NUM
    + rb"|(?P<f>f)[ \t]+" + _IDX + rb"[ \t]+" + _IDX + rb"[ \t]+" + _IDX
    + rb"|(?P<stl>[vV][eE][rR][tT][eE][xX])[ \t]+" + _NUM + rb"[ \t]+" + _NUM + rb"[ \t]+" + _NUM + rb")",
    re.M,
)  # fmt: skip
_XML_ROOT_RE = re.compile(
    rb"\A(?:\xef\xbb\xbf)?\s*(?:<\?.*?\?>\s*|<!--.*?-->\s*|<!DOCTYPE[^>]*>\s*)*<(?:[A-Za-z_][\w.-]*:)?([A-Za-z_][\w.-]*)",
    re.S,
)
_XML_MODEL_ROOTS = {
    b"model": "3mf-model",
    b"amf": "amf",
    b"collada": "collada",
    b"x3d": "x3d",
    b"model_3dxml": "3dxml",
    b"xmlrepresentation": "3dxml",  # a 3DXML tessellated part (.3DRep)
}
_IGES_RE = re.compile(rb"\A[^\r\n]{72}S[ 0-9]{7}\r?\n")
_DXF_RE = re.compile(rb"\A\s*(?:999\s*\r?\n[^\n]*\n\s*)?0\s*\r?\n\s*SECTION\b")
_GCODE_LINE_RE = re.compile(rb"^[ \t]*[GM]\d{1,3}(?:[ \t;]|\r?$)", re.M)
_GCODE_MARK_RE = re.compile(rb"^;\s*(?:FLAVOR:|generated by|Generated with)", re.M | re.I)
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


def _looks_text(head: bytes) -> bool:
    return b"\x00" not in head


def _is_text(head: bytes) -> bool:
    """Text in an ASCII-compatible encoding: no NUL, (almost) no other control bytes, and
    either valid UTF-8 (a sequence cut by the end of the head allowed) or few bytes above
    127 (Latin-1 prose). Random bytes are none of these: unknown binary stays unknown."""
    if not _looks_text(head):
        return False
    controls = sum(head.count(bytes([c])) for c in (*range(1, 9), 14, 15, *range(16, 27), *range(28, 32), 127))
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


def _plausible_stl_records(head: bytes, need_nonzero: bool = False) -> bool:
    """Do the first complete records hold finite, ordinary float32 numbers?

    ``need_nonzero``: the head has an image's (or PDF's) magic, and zero padding after it is
    no evidence of triangles."""
    body = head[STL_PREAMBLE:]
    n = min(len(body) // STL_RECORD_BYTES, 20)
    if n == 0:
        return False
    rec = np.frombuffer(body[: n * STL_RECORD_BYTES], dtype=np.uint8).reshape(n, STL_RECORD_BYTES)
    floats = rec[:, :48].copy().view("<f4").ravel()
    if not np.all(np.isfinite(floats)):
        return False
    mag = np.abs(floats)
    if need_nonzero and not mag.any():
        return False
    return bool(np.all((mag == 0) | ((mag > 1e-30) & (mag < 1e9))))


def sniff(blob: Blob, max_members: int | None = None) -> str:
    """Return a format name: of the registry, of ``UNSUPPORTED``, of ``NON_MODEL``, or ``empty``."""
    head = blob.head(HEAD_BYTES)
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
    for magic, name in _ARCHIVE_MAGIC:
        if head.startswith(magic):
            return name
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
    if stl_binary_size == blob.size:
        return "stl-binary"  # whatever the 80-byte header says (a PNG's magic, say)
    kind = _binary_kind(head, blob.size)
    if kind in UNSUPPORTED:
        return kind
    if stl_binary_size is not None and not _looks_text(head) and _plausible_stl_records(head, kind is not None):
        return "stl-binary"  # truncated or padded: the loader says which
    if kind is not None:
        return _confirm_non_model(blob, kind)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) and not head.startswith(b"\xff\xfe\x00\x00"):
        return _utf16_kind(blob)
    if not _is_text(head):
        return "unknown"
    return _text_kind(blob, head)


def _utf16_kind(blob: Blob) -> str:
    """Text saved as UTF-16 (Windows' "Unicode"): judged as its UTF-8 transcoding is."""
    if blob.size > 1 << 26:
        return "unknown"
    try:
        text = blob.read().decode("utf-16").encode("utf-8")
    except (UnicodeError, MemoryError):
        return "unknown"
    inner = BytesBlob(blob.name, text)
    kind = sniff(inner) if _is_text(text[:HEAD_BYTES]) else "unknown"
    return kind if kind in NON_MODEL else "unknown" if kind not in UNSUPPORTED else kind


def _binary_kind(head: bytes, size: int) -> str | None:
    for magic, name in _BINARY_MODEL_MAGIC:
        if head.startswith(magic):
            return name
    if head.startswith(b"MM") and len(head) >= 6 and struct.unpack_from("<I", head, 2)[0] == size:
        return "3ds"  # the main chunk (0x4D4D) spans the whole file
    if re.match(rb"AC1\d{3}", head):
        return "dwg"
    for magic, name in _NON_MODEL_MAGIC:
        if head.startswith(magic):
            return name
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith(b"BM") and len(head) >= 6 and struct.unpack_from("<I", head, 2)[0] == size:
        return "bmp"
    return None


def _text_kind(blob: Blob, head: bytes) -> str:
    """Text: a text model format (read or not), or - checked against every byte - not a model."""
    body = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if body.startswith(b"ISO-10303-21"):
        return "step"
    if _IGES_RE.match(body):
        return "iges"
    if _DXF_RE.match(body):
        return "dxf"
    if body.startswith(b"#VRML"):
        return "vrml"
    if body.startswith(b"#X3D"):
        return "x3d"
    if body.startswith(b"; FBX"):
        return "fbx"
    found = _MESH_LINE_RE.search(head)
    if found is not None:
        return "stl-ascii" if found.group("stl") else "obj"
    if _OBJ_WORD_RE.search(head):
        return "obj"
    if _only_comments(head) and blob.size <= HEAD_BYTES:
        return "obj"  # a comment-only OBJ (exporters write these): loads as empty
    root = _XML_ROOT_RE.match(head)
    if root is not None:
        name = root.group(1).lower()
        if name in _XML_MODEL_ROOTS:
            return _XML_MODEL_ROOTS[name]
        kind = "svg" if name == b"svg" else "html" if name == b"html" else "xml"
        return _confirm_non_model(blob, kind)
    if body.startswith((b"{", b"[")):
        if _JSON_GLTF_RE.search(head) and _JSON_GLTF_PARTS_RE.search(head):
            return "gltf"
        if _JSON_MESH_RE.search(head):
            return "json-mesh"
        return _confirm_non_model(blob, "json")
    if _GCODE_MARK_RE.search(head) or len(_GCODE_LINE_RE.findall(head[:16384])) >= 3:
        return "gcode"
    if _SCAD_RE.search(head):
        return "openscad"
    if body[:6].lower() in (b"<!doct", b"<html>"):
        return _confirm_non_model(blob, "html")
    return _confirm_non_model(blob, "mtl" if _MTL_RE.search(head) else "text")


def _only_comments(head: bytes) -> bool:
    lines = [ln.strip() for ln in head.splitlines()]
    return all(not ln or ln.startswith(b"#") for ln in lines)


def _confirm_non_model(blob: Blob, kind: str) -> str:
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
        tail = blob.data[size - tail_len :]
        if _EOCD in tail:
            return "zip"
        found = _MESH_LINE_RE.search(blob.data)
        return kind if found is None else ("stl-ascii" if found.group("stl") else "obj")
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
            found = _MESH_LINE_RE.search(data)
            if found is not None:
                return "stl-ascii" if found.group("stl") else "obj"
            # the next search starts at the last line break: a mesh line cut by the chunk
            # border is searched whole (lines longer than the overlap are not mesh lines)
            cut = data.rfind(b"\n")
            carry = data[cut:] if 0 <= cut and len(data) - cut <= _CHUNK else data[-_OVERLAP:]


def is_non_model(fmt: str) -> bool:
    """Recognised by content as not a model (a folder walk skips it; an archive lists it)."""
    return fmt in NON_MODEL


def describe(fmt: str) -> str:
    """A few words for a sniffed format name, for messages."""
    return UNSUPPORTED.get(fmt) or NON_MODEL.get(fmt) or ("zero-byte file" if fmt == "empty" else fmt)


def _sniff_zip(blob: Blob, max_members: int | None) -> str:
    """A 3MF package is recognised by its structure: a ``3D/*.model`` part, a
    ``[Content_Types].xml`` beside any ``.model`` part, or a ``_rels/.rels`` pointing at a
    model. The content-types part is not required: uploaders (and trimesh) do without it.

    A zip listing more than ``max_members`` entries is not opened here (zipfile would parse
    its whole directory first): the zip reader refuses it with ``limit:members``.
    """
    from scanner.formats.archive import zip_has_more_entries_than

    if max_members is not None and zip_has_more_entries_than(blob, max_members):
        return "zip"
    try:
        with blob.open() as fh, zipfile.ZipFile(fh) as zf:  # zipfile leaves fh open
            infos = zf.infolist()
            lower = {i.filename.lower().replace("\\", "/").lstrip("/"): i for i in infos}
            if any(n.startswith("3d/") and n.endswith(".model") for n in lower):
                return "3mf"
            if "[content_types].xml" in lower and any(n.endswith(".model") for n in lower):
                return "3mf"
            rels = lower.get("_rels/.rels")
            if rels is not None and rels.file_size <= 1 << 20 and not rels.flag_bits & 0x1:
                with zf.open(rels) as stream:
                    data = stream.read(1 << 20)
                if b"3dmanufacturing/2013/01/3dmodel" in data or re.search(
                    rb"Target\s*=\s*[\"'][^\"']*\.model[\"']", data, re.I
                ):
                    return "3mf"
    except (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError, NotImplementedError, RuntimeError):
        return "zip"  # the zip loader reports what is wrong with it
    return "zip"


_CONTAINER_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"\x1f\x8b", b"BZh")


def non_model_kind(blob: Blob) -> str | None:
    """What a folder walk may skip: the ``NON_MODEL`` name of a blob recognised by content as
    not a model, ``empty`` for a zero-byte file (nothing can hide in it), or None when it must
    be scanned (a model, a container, a format meshscan cannot read, unknown bytes)."""
    head = blob.head(HEAD_BYTES)
    if not head:
        return "empty"
    if head.startswith(_CONTAINER_MAGIC):
        return None  # archives are always opened (the scan reads their directory, not this walk)
    fmt = sniff(blob)
    return fmt if fmt in NON_MODEL else None
