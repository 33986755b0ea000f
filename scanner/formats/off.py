"""OFF (Object File Format): ``[ST][C][N][4]OFF`` header (counts may share its line), then
vertex lines (extra columns such as colours ignored) and face lines ``k i1 .. ik [colour]``.
``#`` starts a comment anywhere."""

from __future__ import annotations

import re

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

_LEAD = rb"\A(?:\xef\xbb\xbf)?(?:\s*#[^\r\n]*(?:\r\n?|\n))*\s*"
"""What may come before the keyword: a UTF-8 byte order mark (trimesh decodes it away), then
comment lines ended by ``\n``, ``\r\n`` or a bare ``\r``."""
_HEADER_RE = re.compile(_LEAD + rb"(?:ST)?C?N?4?n?OFF")  # comments may come first
_COMMENT_RE = re.compile(rb"#[^\r\n]*")
# the counts: the first three tokens after the header, on its line or the next ones
_COUNTS_RE = re.compile(rb"\s*(\S+)\s+(\S+)(?:\s+(\S+))?")


def load_off(blob: Blob, ctx: LoadContext) -> Mesh:
    """Read an OFF file. Lines are never split into objects: the counts are matched at the
    start, then the vertex and face blocks are located (:func:`record_blocks`) and each is
    parsed as one block of text, so memory follows the numbers, not the number of lines."""
    data = blob.read()
    m = _HEADER_RE.match(data)
    if m is None:
        raise UnreadableInput(CORRUPT, "no OFF header")
    body = data[m.end() :]
    del data
    if b"#" in body:
        body = _COMMENT_RE.sub(b"", body)
    if b"\r" in body and body.count(b"\r") != body.count(b"\r\n"):
        body = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n")  # a bare \r ends a line
    counts = _COUNTS_RE.match(body)
    if counts is None:
        if body.strip():
            raise UnreadableInput(CORRUPT, "OFF counts are not integers")
        raise UnreadableInput(TRUNCATED, "OFF without counts")
    try:
        nv, nf = int(counts.group(1)), int(counts.group(2))
    except ValueError:
        raise UnreadableInput(CORRUPT, "OFF counts are not integers") from None
    if nv < 0 or nf < 0:
        raise UnreadableInput(CORRUPT, "negative OFF counts")
    ctx.check_vertices(nv)
    ctx.check_triangles(nf)
    if nf == 0:
        raise UnreadableInput(EMPTY, "OFF with no faces")
    after = body.find(b"\n", counts.end())  # vertices start on the line after the counts
    blocks = record_blocks(body, len(body) if after < 0 else after + 1, [nv, nf])
    if len(blocks) < 2:
        raise UnreadableInput(TRUNCATED, f"OFF declares {nv} vertices and {nf} faces; fewer are present")
    vertices = _vertices(body[blocks[0][0] : blocks[0][1]], nv)
    k, idx = _faces(body[blocks[1][0] : blocks[1][1]], nf)
    del body
    ctx.check_triangles(fan_count(k))  # before the triangles are made
    if len(idx) and 0 <= idx.min() and idx.max() < len(vertices):
        idx = idx.astype(np.int32)  # in range: half the memory (limits < 2**31)
    elif len(idx):
        bad = int(idx.min()) if idx.min() < 0 else int(idx.max())
        raise UnreadableInput(BAD_INDEX, f"face index {bad} outside 0..{len(vertices) - 1}")
    tris, _ = fan_triangulate(idx, k)
    if len(tris) == 0:
        raise UnreadableInput(EMPTY, "OFF faces have fewer than three corners")
    return build_mesh(vertices, tris, blob, "off", ctx)


def _block(text: bytes, count: int, dtype: type, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, tokens per record, first value of each record) of ``count`` non-blank lines."""
    n_lines = text.count(b"\n") + 1
    parsed = parse_lines(text, n_lines, dtype)
    if parsed is None:
        parsed = tokens_per_line(text, n_lines), parse_numbers(text, np.float64, what)
    tok, values = parsed
    if len(tok) != count:
        tok = tok[tok > 0]
    return values, tok, np.cumsum(tok) - tok


def _vertices(text: bytes, nv: int) -> np.ndarray:
    """Each vertex line's first three numbers (colours and other columns ignored)."""
    if nv == 0:
        return np.zeros((0, 3))
    values, tok, starts = _block(text, nv, np.float64, "vertex coordinate")
    if tok.min() < 3:
        raise UnreadableInput(CORRUPT, "an OFF vertex line with fewer than three coordinates")
    if tok.max() == 3:
        return values.reshape(-1, 3)
    return values[starts[:, None] + np.arange(3)]


def _faces(text: bytes, nf: int) -> tuple[np.ndarray, np.ndarray]:
    """(corner count of each face, all faces' corner indices) of the face lines."""
    values, tok, starts = _block(text, nf, np.int64, "face value")
    k = as_integers(values[starts], "corner count")
    if np.any(k < 0) or np.any(k > tok - 1):
        raise UnreadableInput(CORRUPT, "an OFF face line shorter than its corner count")
    return k, as_integers(list_items(values, starts + 1, k), "face index")


# OFF may open with comment lines before its header keyword (trimesh and meshlab read those)
_SNIFF_RE = re.compile(_LEAD + rb"(?:ST)?C?N?4?n?OFF(?:\s|\Z|[0-9])")


def _sniff(p: Probe) -> str | None:
    return "off" if p.looks_text and _SNIFF_RE.match(p.head) else None


FORMATS = (
    Format(
        "off", "OFF", 40, "`OFF`, `COFF`, `NOFF`, …; counts on the header line or the next; comments", loader=load_off
    ),
)
SNIFFERS = (Sniffer(310, _sniff, frozenset({"off"})),)
