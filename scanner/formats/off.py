"""OFF (Object File Format): ``[ST][C][N][4]OFF`` header (counts may share its line), then
vertex lines (extra columns such as colours ignored) and face lines ``k i1 .. ik [colour]``.
``#`` starts a comment anywhere."""

from __future__ import annotations

import re

import numpy as np

from scanner.errors import CORRUPT, EMPTY, TRUNCATED, UnreadableInput
from scanner.formats._text import fan_triangulate, parse_numbers, tokens_per_line
from scanner.formats.base import LoadContext, build_mesh
from scanner.formats.blob import Blob
from scanner.mesh import Mesh

_HEADER_RE = re.compile(rb"\A(?:\s*#[^\n]*\n)*\s*(?:ST)?C?N?4?n?OFF")  # comments may come first
_COMMENT_RE = re.compile(rb"#[^\r\n]*")


def load_off(blob: Blob, ctx: LoadContext) -> Mesh:
    data = blob.read()
    m = _HEADER_RE.match(data)
    if m is None:
        raise UnreadableInput(CORRUPT, "no OFF header")
    body = _COMMENT_RE.sub(b"", data[m.end() :])
    lines = [ln for ln in body.splitlines() if ln.strip()]
    if not lines:
        raise UnreadableInput(TRUNCATED, "OFF without counts")
    # counts: the first three numbers after the header (on its line or the next ones)
    counts_tokens: list[bytes] = []
    used = 0
    while len(counts_tokens) < 3 and used < len(lines):
        counts_tokens += lines[used].split()
        used += 1
    try:
        nv, nf = int(counts_tokens[0]), int(counts_tokens[1])
    except (IndexError, ValueError):
        raise UnreadableInput(CORRUPT, "OFF counts are not integers") from None
    if nv < 0 or nf < 0:
        raise UnreadableInput(CORRUPT, "negative OFF counts")
    ctx.check_vertices(nv)
    ctx.check_triangles(nf)
    if nf == 0:
        raise UnreadableInput(EMPTY, "OFF with no faces")
    vlines = lines[used : used + nv]
    flines = lines[used + nv : used + nv + nf]
    if len(vlines) < nv or len(flines) < nf:
        raise UnreadableInput(TRUNCATED, f"OFF declares {nv} vertices and {nf} faces; fewer are present")
    vjoined = b"\n".join(vlines)
    vcounts = tokens_per_line(vjoined, nv)
    if np.any(vcounts < 3):
        raise UnreadableInput(CORRUPT, "an OFF vertex line with fewer than three coordinates")
    vvalues = parse_numbers(vjoined, np.float64, "vertex coordinate")
    voff = np.concatenate([[0], np.cumsum(vcounts)[:-1]])
    vertices = vvalues[voff[:, None] + np.arange(3)]
    fjoined = b"\n".join(flines)
    ftok = tokens_per_line(fjoined, nf)
    fvalues = parse_numbers(fjoined, np.float64, "face value")
    foff = np.concatenate([[0], np.cumsum(ftok)[:-1]])
    k = fvalues[foff].astype(np.int64)
    if np.any(k < 0) or np.any(k + 1 > ftok):
        raise UnreadableInput(CORRUPT, "an OFF face line shorter than its corner count")
    take = np.repeat(foff + 1, k) + (np.arange(k.sum()) - np.repeat(np.cumsum(k) - k, k))
    idx = fvalues[take]
    if np.any(idx != np.round(idx)):
        raise UnreadableInput(CORRUPT, "non-integer face index")
    tris, _ = fan_triangulate(idx.astype(np.int64), k)
    if len(tris) == 0:
        raise UnreadableInput(EMPTY, "OFF faces have fewer than three corners")
    return build_mesh(vertices, tris, blob, "off", ctx)


loaders = {"off": load_off}
