"""STL, binary and ASCII.

Binary: an 80-byte header, a uint32 triangle count, then 50-byte records (normal, three
corners, attribute word). The declared count is checked against the file size *before*
anything is allocated, and records are copied into the float32 corner array in chunks, so
peak memory is the triangle array plus one small buffer (numpy-stl's named sizes, trimesh's
structured dtype; not their whole-file reads).

ASCII: only the ``vertex`` lines carry geometry. They are pulled out with one regular
expression and parsed by numpy in C, which is what makes a 300 MB file take seconds, not
minutes. Keywords are matched case-insensitively; any whitespace, CRLF line ends and a
missing ``endsolid`` are accepted. Several ``solid`` blocks become groups (bodies).
"""

from __future__ import annotations

import re
import struct
import warnings

import numpy as np

from scanner.errors import CORRUPT, EMPTY, TRUNCATED, UnreadableInput
from scanner.formats.base import LoadContext, build_mesh
from scanner.formats.blob import Blob
from scanner.formats.sniff import STL_HEADER_BYTES, STL_PREAMBLE, STL_RECORD_BYTES
from scanner.mesh import Mesh

RECORD_DTYPE = np.dtype([("normal", "<f4", (3,)), ("corners", "<f4", (9,)), ("attr", "<u2")])
assert RECORD_DTYPE.itemsize == STL_RECORD_BYTES
CHUNK_RECORDS = 1 << 16


def load_binary(blob: Blob, ctx: LoadContext) -> Mesh:
    size = blob.size
    if size < STL_PREAMBLE:
        raise UnreadableInput(TRUNCATED, f"{size} bytes is shorter than the {STL_PREAMBLE}-byte preamble")
    with blob.open() as fh:
        preamble = fh.read(STL_PREAMBLE)
        (count,) = struct.unpack("<I", preamble[STL_HEADER_BYTES:])
        available = (size - STL_PREAMBLE) // STL_RECORD_BYTES
        if count == 0 and available > 0 and (size - STL_PREAMBLE) % STL_RECORD_BYTES == 0:
            count = available  # some exporters leave the count at zero
        ctx.check_triangles(count)
        if available < count:
            raise UnreadableInput(TRUNCATED, f"header declares {count} triangles, file holds {available}")
        if count == 0:
            raise UnreadableInput(EMPTY, "binary STL with no triangles")
        corners = np.empty((count, 9), dtype=np.float32)
        buf = bytearray(STL_RECORD_BYTES * min(count, CHUNK_RECORDS))
        done = 0
        while done < count:
            n = min(CHUNK_RECORDS, count - done)
            view = memoryview(buf)[: n * STL_RECORD_BYTES]
            got = fh.readinto(view)
            if got != len(view):
                raise UnreadableInput(TRUNCATED, "file ended inside the triangle records")
            corners[done : done + n] = np.frombuffer(view, dtype=RECORD_DTYPE)["corners"]
            done += n
    return build_mesh(corners.reshape(-1, 3), None, blob, "stl-binary", ctx)


_SOLID_RE = re.compile(rb"^[ \t]*solid\b", re.M | re.I)
_VERTEX_RE = re.compile(rb"[vV][eE][rR][tT][eE][xX][ \t]+([^\r\n]*)")
_ENDSOLID_RE = re.compile(rb"endsolid", re.I)


def _cut_short(data: bytes, a: int, b: int) -> bool:
    """Does the solid in ``data[a:b]`` stop inside a facet?

    ``endsolid`` may be missing (common and harmless), but a solid whose last line is
    neither ``endsolid`` nor ends a facet was cut short. Without this check a file cut after
    ``outer loop`` or after a whole ``vertex`` triple loads with a facet silently missing, and
    one cut inside a vertex line is reported as ``corrupt`` instead of ``truncated``. Only the
    last line is looked at in the usual case, so a 300 MB file pays nothing for it.
    """
    end = b
    while end > a and data[end - 1] in _TRAILING:
        end -= 1
    newline = data.rfind(b"\n", a, end)
    if newline < 0:
        return False  # a one-line file: nothing after the solid line, or all on one line
    last = data[newline + 1 : end].strip().lower()
    if last.startswith(b"endsolid") or last.endswith(b"endfacet"):
        return False
    return _ENDSOLID_RE.search(data, a, b) is None  # rare: lines after endsolid


_TRAILING = frozenset(b" \t\r\n\x00\x1a")


def _parse_vertices(chunk: bytes) -> np.ndarray:
    lines = _VERTEX_RE.findall(chunk)
    if not lines:
        return np.zeros((0, 3), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            values = np.fromstring(b" ".join(lines), dtype=np.float64, sep=" ")
        except (ValueError, DeprecationWarning) as exc:
            raise UnreadableInput(CORRUPT, f"unparseable vertex line: {exc}") from None
    if len(values) != 3 * len(lines):
        raise UnreadableInput(CORRUPT, "a vertex line does not hold exactly three numbers")
    with np.errstate(over="ignore"):  # beyond float32 becomes inf, refused as non-finite
        return values.astype(np.float32).reshape(-1, 3)


def load_ascii(blob: Blob, ctx: LoadContext) -> Mesh:
    data = blob.read()
    starts = [m.start() for m in _SOLID_RE.finditer(data)] or [0]
    starts[0] = 0
    parts, groups, names = [], [], []
    for index, (a, b) in enumerate(zip(starts, starts[1:] + [len(data)], strict=True)):
        if _cut_short(data, a, b):
            raise UnreadableInput(TRUNCATED, "the file ends inside a facet")
        verts = _parse_vertices(data[a:b] if len(starts) > 1 else data)
        if len(verts) % 3:
            raise UnreadableInput(CORRUPT, f"{len(verts)} vertices is not a whole number of triangles")
        ctx.check_triangles(sum(len(p) for p in parts) // 3 + len(verts) // 3)
        if len(verts):
            parts.append(verts)
            groups.append(np.full(len(verts) // 3, index, dtype=np.int32))
            line = data[a : data.find(b"\n", a) if data.find(b"\n", a) >= 0 else b]
            names.append(line.strip()[5:].strip().decode("utf-8", "replace"))
    if not parts:
        raise UnreadableInput(EMPTY, "ASCII STL with no facets")
    vertices = parts[0] if len(parts) == 1 else np.concatenate(parts)
    group_ids = np.concatenate(groups) if len(groups) > 1 else None
    return build_mesh(vertices, None, blob, "stl-ascii", ctx, group_ids, names)


loaders = {"stl-binary": load_binary, "stl-ascii": load_ascii}
