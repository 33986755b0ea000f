"""Wavefront OBJ: ``v`` positions (extra colour or weight columns ignored), ``f`` polygons
(``v``, ``v/vt``, ``v//vn``, ``v/vt/vn``; 1-based or negative = relative to the vertices so
far), fan-triangulated; ``o`` and ``g`` lines start groups that become bodies.

Lines are gathered by regular expression and parsed in bulk; only files that use negative
indices pay for the positions of their lines.
"""

from __future__ import annotations

import re

import numpy as np

from scanner.errors import BAD_INDEX, CORRUPT, EMPTY, UnreadableInput
from scanner.formats._text import fan_triangulate, parse_numbers, tokens_per_line
from scanner.formats.base import LoadContext, build_mesh
from scanner.formats.blob import Blob
from scanner.mesh import Mesh

_V_RE = re.compile(rb"^[ \t]*v[ \t]+([^\r\n]*)", re.M)
_FOG_RE = re.compile(rb"^[ \t]*([fog])\b[ \t]*([^\r\n]*)", re.M)
_SLASH_RE = re.compile(rb"/[^ \t\n]*")
_COMMENT_RE = re.compile(rb"#[^\n]*")
_CONTINUATION_RE = re.compile(rb"\\\r?\n")


def _vertices(data: bytes, ctx: LoadContext) -> tuple[np.ndarray, list[int] | None]:
    lines = _V_RE.findall(data)
    ctx.check_vertices(len(lines))
    if not lines:
        return np.zeros((0, 3)), None
    joined = b"\n".join(lines)
    if b"#" in joined:
        joined = _COMMENT_RE.sub(b"", joined)
    counts = tokens_per_line(joined, len(lines))
    values = parse_numbers(joined, np.float64, "vertex coordinate")
    if np.any(counts < 3):
        raise UnreadableInput(CORRUPT, "a 'v' line with fewer than three coordinates")
    if np.all(counts == counts[0]):
        return values.reshape(-1, counts[0])[:, :3], None
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return values[offsets[:, None] + np.arange(3)], None


def load_obj(blob: Blob, ctx: LoadContext) -> Mesh:
    data = blob.read()
    if b"\\\n" in data or b"\\\r\n" in data:  # line continuations
        data = _CONTINUATION_RE.sub(b" ", data)
    vertices, _ = _vertices(data, ctx)
    items = _FOG_RE.findall(data)
    if not items:
        raise UnreadableInput(EMPTY, "OBJ with no faces")
    kinds = np.frombuffer(b"".join(k for k, _ in items), dtype=np.uint8)
    is_face = kinds == ord("f")
    face_lines = [rest for (k, rest) in items if k == b"f"]
    if not face_lines:
        raise UnreadableInput(EMPTY, "OBJ with no faces")
    joined = _SLASH_RE.sub(b"", b"\n".join(face_lines))
    if b"#" in joined:
        joined = _COMMENT_RE.sub(b"", joined)
    counts = tokens_per_line(joined, len(face_lines))
    indices = parse_numbers(joined, np.int64, "face index")
    if len(indices) != counts.sum():
        raise UnreadableInput(CORRUPT, "malformed face line")
    ctx.check_triangles(int(np.maximum(counts - 2, 0).sum()))
    if np.any(indices == 0):
        raise UnreadableInput(BAD_INDEX, "face index 0 (OBJ indices start at 1)")
    if np.any(indices < 0):
        indices = _resolve_negative(data, indices, counts)
    else:
        indices = indices - 1
    # groups: each o/g line starts a group named by it; faces before any are group 0
    group_of_line = np.cumsum(~is_face)
    names = ["default"] + [rest.strip().decode("utf-8", "replace") for (k, rest) in items if k != b"f"]
    name_ids: dict[str, int] = {}
    line_group = np.array([name_ids.setdefault(n, len(name_ids)) for n in names], dtype=np.int32)
    face_group = line_group[group_of_line[is_face]]
    tris, poly = fan_triangulate(indices, counts)
    if len(tris) == 0:
        raise UnreadableInput(EMPTY, "OBJ with no polygon of three or more corners")
    groups = face_group[poly]
    return build_mesh(vertices, tris, blob, "obj", ctx, groups, list(name_ids))


def _resolve_negative(data: bytes, indices: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Negative indices count back from the vertices defined before their face line."""
    v_pos = np.fromiter((m.start() for m in _V_RE.finditer(data)), dtype=np.int64)
    f_pos = np.fromiter((m.start() for m in _FOG_RE.finditer(data) if m.group(1) == b"f"), dtype=np.int64)
    seen = np.searchsorted(v_pos, f_pos)  # vertices defined before each face line
    seen_per_index = np.repeat(seen, counts)
    return np.where(indices < 0, seen_per_index + indices, indices - 1)


loaders = {"obj": load_obj}
