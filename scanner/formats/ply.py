"""PLY (Stanford polygon format): ascii, binary_little_endian and binary_big_endian.

The header declares elements and their properties; scalar-only elements become one numpy
structured dtype read with ``np.frombuffer``. The ``face`` element's vertex-index list is
read with a fixed-size fast path when every face has the same corner count (the usual
case), verified on every record, and walked record by record otherwise.

A ``tristrips`` element (the classic Stanford scans, cow.ply and igea.ply, store their surface
so) holds triangle strips in the same kind of list: ``-1`` (or an unsigned list's largest
value) ends one strip and starts the next, every record starts a strip too, and every second
triangle of a strip has its first two corners swapped so that all keep one winding. Triangles
with a repeated corner (the degenerate joins strippers use to turn corners) are dropped. A file
may hold faces, strips, or both.
"""

from __future__ import annotations

import re
import struct
from array import array
from dataclasses import dataclass, field

import numpy as np

from scanner.errors import BAD_INDEX, CORRUPT, EMPTY, TRUNCATED, UnreadableInput
from scanner.formats._probe import Probe
from scanner.formats._text import (
    as_integers,
    fan_count,
    fan_triangulate,
    list_items,
    parse_lines,
    parse_numbers,
    record_blocks,
    tokens_per_line,
)
from scanner.formats.base import Format, LoadContext, Sniffer, build_mesh
from scanner.formats.blob import Blob
from scanner.mesh import Mesh

MAX_HEADER_BYTES = 1 << 16
_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip
_FACE_LISTS = ("vertex_indices", "vertex_index")
_SURFACES = ("face", "tristrips")  # elements whose list property holds the surface


@dataclass
class _Property:
    name: str
    dtype: str
    count_dtype: str | None = None  # set for list properties


@dataclass
class _Element:
    name: str
    count: int
    props: list[_Property] = field(default_factory=list)


def _parse_header(head: bytes) -> tuple[str, list[_Element], int]:
    end = re.search(rb"end_header[ \t]*\r?\n", head[:MAX_HEADER_BYTES])
    if end is None:
        if re.search(rb"end_header\s*\Z", head):
            end_at = len(head)
        else:
            raise UnreadableInput(TRUNCATED, "PLY header has no end_header")
    else:
        end_at = end.end()
    fmt = ""
    elements: list[_Element] = []
    for raw in head[:end_at].decode("ascii", "replace").splitlines()[1:]:
        words = raw.split()
        if not words or words[0] in ("comment", "obj_info", "end_header"):
            continue
        try:
            if words[0] == "format":
                fmt = words[1]
            elif words[0] == "element":
                elements.append(_Element(words[1], int(words[2])))
            elif words[0] == "property" and words[1] == "list":
                if _TYPES[words[2]][0] == "f":
                    raise UnreadableInput(CORRUPT, f"PLY list count of type {words[2]!r} (not an integer)")
                elements[-1].props.append(_Property(words[4], _TYPES[words[3]], _TYPES[words[2]]))
            elif words[0] == "property":
                elements[-1].props.append(_Property(words[2], _TYPES[words[1]]))
            else:
                raise UnreadableInput(CORRUPT, f"unknown PLY header line {raw[:60]!r}")
        except (IndexError, KeyError, ValueError):
            raise UnreadableInput(CORRUPT, f"bad PLY header line {raw[:60]!r}") from None
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise UnreadableInput(CORRUPT, f"unknown PLY format {fmt!r}")
    if any(e.count < 0 for e in elements):
        raise UnreadableInput(CORRUPT, "negative element count")
    names = [e.name for e in elements]
    if len(set(names)) != len(names):
        raise UnreadableInput(CORRUPT, "a PLY element declared twice")
    for e in elements:
        props = [p.name for p in e.props]
        if len(set(props)) != len(props):
            twice = next(p for p in props if props.count(p) > 1)
            raise UnreadableInput(CORRUPT, f"PLY property {twice!r} declared twice in element {e.name!r}")
    return fmt, elements, end_at


def load_ply(blob: Blob, ctx: LoadContext) -> Mesh:
    data = blob.read()
    fmt, elements, offset = _parse_header(data)
    by_name = {e.name: e for e in elements}
    vertex = by_name.get("vertex")
    surfaces = [by_name[name] for name in _SURFACES if name in by_name and by_name[name].count]
    if vertex is None or not surfaces:
        raise UnreadableInput(EMPTY, "PLY with no faces")
    ctx.check_vertices(vertex.count)
    if "face" in by_name:
        ctx.check_triangles(by_name["face"].count)
    read = _read_ascii if fmt == "ascii" else _read_binary
    arrays = read(data, offset, elements, "<" if fmt == "binary_little_endian" else ">")
    vertices = _xyz(arrays["vertex"])
    parts = []
    if "face" in arrays:
        parts.append(_face_triangles(*arrays["face"], len(vertices), ctx))
    if "tristrips" in arrays:
        strips = by_name["tristrips"]
        list_type = np.dtype(strips.props[_face_list(strips)].dtype)
        marker = int(np.iinfo(list_type).max) if list_type.kind == "u" else -1
        parts.append(_strip_triangles(*arrays["tristrips"], len(vertices), ctx, marker))
    tris = parts[0] if len(parts) == 1 else np.concatenate(parts)
    if len(tris) == 0:
        raise UnreadableInput(EMPTY, "PLY faces have fewer than three corners")
    return build_mesh(vertices, tris, blob, "ply-" + ("ascii" if fmt == "ascii" else "binary"), ctx)


def _xyz(v: np.ndarray | dict) -> np.ndarray:
    """The (N, 3) float64 vertex coordinates: one strided pass over the records when x, y, z
    are adjacent fields of one type (the usual layout), column by column otherwise."""
    try:
        fields = v.dtype.fields if isinstance(v, np.ndarray) else None
        if fields and all(k in fields for k in "xyz"):
            (tx, ox), (ty, oy), (tz, oz) = (fields[k][:2] for k in "xyz")
            if tx == ty == tz and oy == ox + tx.itemsize and oz == oy + tx.itemsize:
                view = np.ndarray((len(v), 3), tx, v.data, ox, (v.dtype.itemsize, tx.itemsize))
                return view.astype(np.float64)
        out = np.empty((len(v["x"]), 3), dtype=np.float64)
        for j, k in enumerate("xyz"):
            out[:, j] = v[k]
        return out
    except (KeyError, ValueError):
        raise UnreadableInput(CORRUPT, "PLY vertex element lacks x, y, z") from None


def _face_triangles(indices: np.ndarray, counts: np.ndarray, n_vertices: int, ctx: LoadContext) -> np.ndarray:
    """Polygons of the ``face`` element, fan-triangulated. ``counts`` may be a read-only
    broadcast of one count (the fixed-size fast path: every face has that many corners)."""
    if len(counts) and counts.strides == (0,) and int(counts[0]) == 3:  # triangles already
        ctx.check_triangles(len(counts))
        return _checked_indices(indices, n_vertices).reshape(-1, 3)
    ctx.check_triangles(fan_count(counts))  # before the triangles are made
    return fan_triangulate(_checked_indices(indices, n_vertices), counts)[0]


def _checked_indices(indices: np.ndarray, n_vertices: int) -> np.ndarray:
    """Face indices as int32 when they fit (half the memory of int64), or ``bad-index``."""
    if indices.dtype == np.int32:
        pass  # as stored: build_mesh checks the range
    elif len(indices) and 0 <= indices.min() and indices.max() < n_vertices:
        indices = indices.astype(np.int32, copy=False)  # in range: half the memory (limits < 2**31)
    elif len(indices):
        bad = int(indices.min()) if indices.min() < 0 else int(indices.max())
        raise UnreadableInput(BAD_INDEX, f"face index {bad} outside 0..{n_vertices - 1}")
    return indices


def _strip_triangles(
    indices: np.ndarray, counts: np.ndarray, n_vertices: int, ctx: LoadContext, marker: int = -1
) -> np.ndarray:
    """Triangles of the ``tristrips`` element (see the module docstring), in strip order.

    A strip of k corners makes at most k - 2 triangles, so the triangle limit is checked on
    that bound before anything the size of the triangles is allocated; every index must be a
    vertex or the restart marker."""
    ctx.check_triangles(fan_count(counts))
    idx = np.asarray(indices, dtype=np.int64)
    if marker != -1:  # an unsigned list's largest value is its restart marker
        idx = np.where(idx == marker, -1, idx)
    if len(idx) and (idx.min() < -1 or idx.max() >= n_vertices):
        bad = int(idx.min()) if idx.min() < -1 else int(idx.max())
        raise UnreadableInput(BAD_INDEX, f"triangle strip index {bad} outside 0..{n_vertices - 1} (or -1)")
    n = len(idx)
    if n < 3:
        return np.zeros((0, 3), np.int32)
    restart = idx < 0
    begin = np.zeros(n, np.int64)  # where the strip holding each position begins
    record_starts = np.cumsum(counts) - counts
    begin[record_starts[record_starts < n]] = record_starts[record_starts < n]
    after = np.flatnonzero(restart[:-1]) + 1
    begin[after] = after
    np.maximum.accumulate(begin, out=begin)
    i = np.flatnonzero((begin[2:] == begin[:-2]) & ~restart[2:])  # a, b, c all in one strip
    odd = ((i - begin[i]) & 1).astype(bool)
    tris = np.stack([np.where(odd, idx[i + 1], idx[i]), np.where(odd, idx[i], idx[i + 1]), idx[i + 2]], axis=1)
    keep = (tris[:, 0] != tris[:, 1]) & (tris[:, 1] != tris[:, 2]) & (tris[:, 0] != tris[:, 2])
    return tris[keep].astype(np.int32)


def _face_list(el: _Element) -> int:
    names = [p.name for p in el.props if p.count_dtype]
    for wanted in _FACE_LISTS:
        if wanted in names:
            return [p.name for p in el.props].index(wanted)
    raise UnreadableInput(CORRUPT, "PLY face element has no vertex_indices list")


def _read_binary(data: bytes, offset: int, elements: list[_Element], order: str) -> dict:
    out: dict = {}
    for el in elements:
        if el.name in _SURFACES:
            _face_list(el)  # a face element without its list is refused, not read as scalars
        if all(p.count_dtype is None for p in el.props):
            dt = np.dtype([(p.name or f"_{i}", order + p.dtype) for i, p in enumerate(el.props)])
            need = dt.itemsize * el.count
            if offset + need > len(data):
                raise UnreadableInput(TRUNCATED, f"PLY {el.name} data ends early")
            out[el.name] = np.frombuffer(data, dt, el.count, offset)
            offset += need
            continue
        offset, value = _binary_list_element(data, offset, el, order)
        out[el.name] = value
    if "vertex" not in out or not any(name in out for name in _SURFACES):
        raise UnreadableInput(EMPTY, "PLY without vertex and face data")
    return out


def _binary_list_element(data: bytes, offset: int, el: _Element, order: str) -> tuple[int, object]:
    """Read an element with list properties; returns (new offset, (indices, counts)) for faces."""
    face_at = _face_list(el) if el.name in _SURFACES else -1
    if el.count == 0:
        return offset, (np.zeros(0, np.int64), np.zeros(0, np.int64))
    # Every record holds at least each list's count and each scalar: a declared count that
    # cannot fit in the bytes left is refused here, before it sizes any allocation (without
    # this, 'element x 2000000000' in a tiny file allocated 16 GB for the per-record counts).
    min_record = sum(np.dtype(p.count_dtype or p.dtype).itemsize for p in el.props)
    if offset + min_record * el.count > len(data):
        raise UnreadableInput(TRUNCATED, f"PLY {el.name} declares {el.count} records; the file is too short")
    # Fast path: every list has the length of the first record's lists.
    fields, pos = [], offset
    for i, p in enumerate(el.props):
        if p.count_dtype:
            cdt = np.dtype(order + p.count_dtype)
            if pos + cdt.itemsize > len(data):
                raise UnreadableInput(TRUNCATED, f"PLY {el.name} data ends early")
            n = int(np.frombuffer(data, cdt, 1, pos)[0])
            pos += cdt.itemsize + n * np.dtype(p.dtype).itemsize
            if n < 0 or pos > len(data):
                raise UnreadableInput(TRUNCATED, f"PLY {el.name} list of {n} items: the file is too short")
            fields += [(f"_n{i}", order + p.count_dtype), (f"_l{i}", order + p.dtype, (n,))]
        else:
            pos += np.dtype(p.dtype).itemsize
            fields.append((f"_s{i}", order + p.dtype))
    dt = np.dtype(fields)
    if offset + dt.itemsize * el.count <= len(data):
        rec = np.frombuffer(data, dt, el.count, offset)
        lens = [
            (f"_n{i}", dt[f"_l{i}"].shape[0] if dt[f"_l{i}"].shape else 1)
            for i, p in enumerate(el.props)
            if p.count_dtype
        ]
        if all(np.all(rec[name] == n) for name, n in lens):
            new_offset = offset + dt.itemsize * el.count
            if face_at < 0:
                return new_offset, rec
            flat = _fixed_lists(data, offset, dt, f"_l{face_at}", el.count)
            n = len(flat) // el.count
            small = flat.dtype.kind == "i" and flat.dtype.itemsize <= 4 or flat.dtype.itemsize < 4
            flat = flat.astype(np.int32 if small else np.int64, copy=False)
            return new_offset, (flat, np.broadcast_to(np.int64(n), (el.count,)))
    # Slow path: walk each record, noting where each face's list starts and its length (no
    # per-record arrays: a million small numpy arrays cost ~100 bytes each); gathered at the end.
    at, counts = array("q"), array("q")
    for _ in range(el.count):
        for i, p in enumerate(el.props):
            if p.count_dtype:
                cdt = np.dtype(order + p.count_dtype)
                if offset + cdt.itemsize > len(data):
                    raise UnreadableInput(TRUNCATED, f"PLY {el.name} data ends early")
                n = _unpack(cdt, data, offset)
                offset += cdt.itemsize
                idt = np.dtype(order + p.dtype)
                if n < 0 or offset + n * idt.itemsize > len(data):
                    raise UnreadableInput(TRUNCATED, f"PLY {el.name} data ends early")
                if i == face_at:
                    at.append(offset)
                    counts.append(n)
                offset += n * idt.itemsize
            else:
                offset += np.dtype(p.dtype).itemsize
    if face_at < 0:
        return offset, None
    idt = np.dtype(order + el.props[face_at].dtype)
    n = np.frombuffer(counts, dtype=np.int64) if len(counts) else np.zeros(0, np.int64)
    starts = np.frombuffer(at, dtype=np.int64) if len(at) else np.zeros(0, np.int64)
    raw = list_items(np.frombuffer(data, np.uint8), starts, n * idt.itemsize)
    return offset, (raw.view(idt).astype(np.int64), n.copy())


def _fixed_lists(data: bytes, offset: int, dt: np.dtype, name: str, count: int) -> np.ndarray:
    """The list field ``name`` of ``count`` fixed-size records of ``dt``, flat, in its stored
    type. Each record's list is copied as one block of bytes (a memcpy per record); the
    subarray field read as numbers is copied element by element, unaligned (3-4x slower)."""
    sub, at = dt.fields[name][:2]
    item = sub.base
    n = sub.shape[0] if sub.shape else 1
    out = np.empty(count * n, dtype=item)
    if n:
        block = np.dtype((np.void, n * item.itemsize))
        out.view(block)[...] = np.ndarray((count,), block, data, offset + at, (dt.itemsize,))
    return out


def _unpack(dtype: np.dtype, data: bytes, offset: int) -> int:
    """One integer of ``dtype`` at ``offset`` (struct: ~10x faster than a numpy scalar read)."""
    code = {1: "b", 2: "h", 4: "i", 8: "q"}[dtype.itemsize]
    code = code.upper() if dtype.kind == "u" else code
    return struct.unpack_from(("<" if dtype.byteorder in "<=|" else ">") + code, data, offset)[0]


def _read_ascii(data: bytes, offset: int, elements: list[_Element], order: str) -> dict:
    """ASCII PLY is read a line per record (as every writer emits it), so records with more
    values than the header declares - common in the wild - still parse. Blank lines are
    skipped. Only the vertex and face blocks are parsed, each as one block of text; where the
    blocks lie is found piece by piece (:func:`record_blocks`), with no object per line."""
    if b"\r" in data and data.count(b"\r", offset) != data.count(b"\r\n", offset):
        data, offset = data[offset:].replace(b"\r\n", b"\n").replace(b"\r", b"\n"), 0  # bare \r ends lines
    wanted = [i for i, e in enumerate(elements) if e.name == "vertex" or e.name in _SURFACES]
    blocks = record_blocks(data, offset, [e.count for e in elements[: max(wanted, default=-1) + 1]])
    out: dict = {}
    for i in wanted:
        el = elements[i]
        if i >= len(blocks):
            raise UnreadableInput(TRUNCATED, f"PLY {el.name} data ends early")
        text = data[blocks[i][0] : blocks[i][1]]
        if el.name == "vertex":
            out["vertex"] = _ascii_vertices(text, el)
        else:
            out[el.name] = _ascii_faces(text, el)
    if "vertex" not in out:
        raise UnreadableInput(EMPTY, "PLY without vertex data")
    if not any(name in out for name in _SURFACES):
        raise UnreadableInput(EMPTY, "PLY without face data")
    return out


def _ascii_block(text: bytes, count: int, dtype: type) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, tokens per record, first value of each record) of ``count`` non-blank lines."""
    n_lines = text.count(b"\n") + 1
    parsed = parse_lines(text, n_lines, dtype)
    if parsed is None:
        parsed = tokens_per_line(text, n_lines), parse_numbers(text, np.float64, "PLY value")
    tok, values = parsed
    if len(tok) != count:
        tok = tok[tok > 0]
    return values, tok, np.cumsum(tok) - tok


def _ascii_vertices(text: bytes, el: _Element) -> dict:
    k = len(el.props)
    if el.count == 0:
        return {p.name: np.zeros(0) for p in el.props}
    values, tok, starts = _ascii_block(text, el.count, np.float64)
    if tok.min() < k:
        raise UnreadableInput(CORRUPT, "a PLY vertex line with too few values")
    wanted = [i for i, p in enumerate(el.props) if p.name in ("x", "y", "z")]
    if tok.max() == k:
        cols = values.reshape(-1, k)[:, wanted]
    else:
        cols = values[starts[:, None] + np.asarray(wanted, dtype=np.int64)]  # none wanted: (n, 0), refused by _xyz
    return {el.props[i].name: cols[:, j] for j, i in enumerate(wanted)}


def _ascii_faces(text: bytes, el: _Element) -> tuple[np.ndarray, np.ndarray]:
    face_at = _face_list(el)
    if any(p.count_dtype for p in el.props[:face_at]):
        raise UnreadableInput(CORRUPT, "PLY face element with a list before vertex_indices")
    if el.count == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    values, tok, starts = _ascii_block(text, el.count, np.int64)
    first = starts + face_at
    if np.any(tok <= face_at):
        raise UnreadableInput(CORRUPT, "a PLY face line with too few values")
    n = as_integers(values[first], "corner count")
    if np.any(n < 0) or np.any(n > tok - face_at - 1):
        raise UnreadableInput(CORRUPT, "a PLY face line shorter than its corner count")
    return as_integers(list_items(values, first + 1, n), "face index"), n


_MAGIC_RE = re.compile(rb"ply\r?\n")
_FORMAT_LINE_RE = re.compile(rb"^[ \t]*format[ \t]+(?:ascii|binary_little_endian|binary_big_endian)\b", re.M)
_END_LINE_RE = re.compile(rb"^[ \t]*end_header\b", re.M)
_FIRST_LINE_BYTES = 256


def _sniff(p: Probe) -> str | None:
    """``ply`` on the first line; or a first line that merely holds ``ply`` in any case (``PLY``,
    `` ply ``, a UTF-8 byte order mark before it: trimesh accepts any such line, and the loader
    skips it) followed by a ``format`` line and an ``end_header`` line. Sniffed as text, such a
    file was skipped as not a model while trimesh read its mesh."""
    head = p.head
    if _MAGIC_RE.match(head):
        return "ply"
    first = head[:_FIRST_LINE_BYTES].split(b"\n", 1)[0]
    if b"ply" not in first.lower():
        return None
    header = head[:MAX_HEADER_BYTES]
    return "ply" if _FORMAT_LINE_RE.search(header) and _END_LINE_RE.search(header) else None


FORMATS = (
    Format(
        "ply",
        "PLY",
        30,
        "ascii, binary little and big endian; polygon faces and triangle strips (`tristrips`); "
        "extra per-vertex/per-face properties ignored",
        loader=load_ply,
    ),
)
SNIFFERS = (Sniffer(300, _sniff, frozenset({"ply"})),)
