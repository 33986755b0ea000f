"""Wavefront OBJ: ``v`` positions (extra colour or weight columns ignored), ``f`` polygons
(``v``, ``v/vt``, ``v//vn``, ``v/vt/vn``; 1-based or negative = relative to the vertices so
far), fan-triangulated; ``o`` and ``g`` lines start groups that become bodies.

Lines are classified in bulk with numpy rather than matched one by one: a million-face file
has millions of lines, and a regular expression plus a Python object per line cost seconds.
Each line's statement is read from its first bytes; the ``v`` lines and the ``f`` lines are
then copied out as two blocks of text and parsed by :func:`scanner.formats._text.parse_lines`.
The classification reproduces, byte for byte, what these patterns match::

    ^[ \\t]*v[ \\t]+([^\\r\\n]*)          a vertex: ``v`` then a space or tab
    ^[ \\t]*([fog])\\b[ \\t]*([^\\r\\n]*)   a face / object / group: the letter then a non-word byte

(multi-line mode; a line ends at ``\\n``, and what a line holds is cut at its first ``\\r``).
"""

from __future__ import annotations

import re

import numpy as np

from scanner.errors import BAD_INDEX, CORRUPT, EMPTY, UnreadableInput
from scanner.formats._text import fan_triangulate, parse_lines, parse_numbers, tokens_per_line
from scanner.formats.base import LoadContext, build_mesh
from scanner.formats.blob import Blob
from scanner.mesh import Mesh

_SLASH_RE = re.compile(rb"/[^ \t\n]*")
_COMMENT_RE = re.compile(rb"#[^\n]*")
_CONTINUATION_RE = re.compile(rb"\\\r?\n")
_CR_TAIL_RE = re.compile(rb"\r[^\n]*")
_BLANKS_RE = re.compile(rb"[ \t]*")

_WORD = np.zeros(256, dtype=bool)  # what regex \b sees as word bytes (ASCII, for bytes patterns)
_WORD[[ord(c) for c in "0123456789_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"]] = True
_INDENT_STEPS = 8  # leading blanks skipped in bulk, one byte a step; deeper indents line by line
_FEW_RUNS = 4096  # at most this many blocks of consecutive lines: copy block by block


def load_obj(blob: Blob, ctx: LoadContext) -> Mesh:
    data = blob.read()
    if b"\\" in data and (b"\\\n" in data or b"\\\r\n" in data):  # continuations (a rare byte first: fast)
        data = _CONTINUATION_RE.sub(b" ", data)
    if b"\r" in data and data.count(b"\r") != data.count(b"\r\n"):
        # a bare \r ends what a line holds, as [^\r\n]* did; \r before \n is just a space
        data = _CR_TAIL_RE.sub(b"", data)
    lines = _Lines(data)
    is_v = lines.is_v
    is_group = lines.is_fog & (lines.first != ord("f"))
    is_face = lines.is_fog & ~is_group
    n_vertices, n_faces = int(is_v.sum()), int(is_face.sum())
    ctx.check_vertices(n_vertices)
    vertex_text, face_text = lines.text(is_v), lines.text(is_face)
    names = ["default"] + [lines.rest(i).strip().decode("utf-8", "replace") for i in np.flatnonzero(is_group)]
    del lines, data  # the texts are all that is needed from here on
    vertices = _vertices(vertex_text, n_vertices)
    del vertex_text
    if n_faces == 0:
        raise UnreadableInput(EMPTY, "OBJ with no faces")
    indices, counts = _face_indices(face_text, n_faces)
    del face_text
    ctx.check_triangles(int(np.maximum(counts - 2, 0).sum()))
    if np.any(indices == 0):
        raise UnreadableInput(BAD_INDEX, "face index 0 (OBJ indices start at 1)")
    if np.any(indices < 0):
        # negative indices count back from the vertices defined before their face line
        seen = np.cumsum(is_v)[is_face]
        indices = np.where(indices < 0, np.repeat(seen, counts) + indices, indices - 1)
    else:
        indices = indices - 1
    # groups: each o/g line starts a group named by it; faces before any are group 0
    name_ids: dict[str, int] = {}
    line_group = np.array([name_ids.setdefault(n, len(name_ids)) for n in names], dtype=np.int32)
    face_group = line_group[np.cumsum(is_group)[is_face]]
    tris, poly = fan_triangulate(indices, counts)
    if len(tris) == 0:
        raise UnreadableInput(EMPTY, "OBJ with no polygon of three or more corners")
    groups = face_group[poly]
    return build_mesh(vertices, tris, blob, "obj", ctx, groups, list(name_ids))


class _Lines:
    """The lines of an OBJ file (after continuations and bare ``\\r`` are dealt with), each
    classified by its statement; ``v`` and ``f`` keywords are blanked in a private copy so
    that those lines' text is just their numbers."""

    def __init__(self, data: bytes) -> None:
        n = len(data)
        self.data = data
        self.buf = buf = np.empty(n + 2, dtype=np.uint8)  # two '\n' after the end: a byte to look at
        buf[:n] = np.frombuffer(data, dtype=np.uint8)
        buf[n:] = 10
        ends = np.flatnonzero(buf[:n] == 10) + 1  # each line ends after its '\n' ...
        if len(ends) == 0 or ends[-1] != n:
            ends = np.append(ends, n)  # ... or at the end of the file
        self.starts = np.concatenate([[0], ends[:-1]])
        self.ends = ends
        if n == 0:
            self.starts = self.ends = np.zeros(0, dtype=np.int64)
        self.head = head = self._skip_blanks()  # first byte after the [ \t]* indent
        self.first = first = buf[head]
        after = buf[head + 1]
        self.is_v = (first == ord("v")) & ((after == 32) | (after == 9))
        self.is_fog = ((first == ord("f")) | (first == ord("o")) | (first == ord("g"))) & ~_WORD[after]
        buf[head[self.is_v | (self.is_fog & (first == ord("f")))]] = 32

    def _skip_blanks(self) -> np.ndarray:
        head = self.starts.copy()
        todo = np.flatnonzero(_blank(self.buf[head]))
        for _ in range(_INDENT_STEPS):
            if len(todo) == 0:
                return head
            head[todo] += 1
            todo = todo[_blank(self.buf[head[todo]])]
        for i in todo.tolist():  # deeply indented lines, rare: one at a time
            head[i] = _BLANKS_RE.match(self.data, int(head[i])).end()
        return head

    def text(self, chosen: np.ndarray) -> bytes:
        """The chosen lines, each with its line end, in one block of bytes."""
        lines = np.flatnonzero(chosen)
        if len(lines) == 0:
            return b""
        breaks = np.flatnonzero(np.diff(lines) != 1)
        run_first = lines[np.concatenate([[0], breaks + 1])]
        run_last = lines[np.concatenate([breaks, [len(lines) - 1]])]
        if len(run_first) <= _FEW_RUNS:  # files written statement by statement: a few blocks
            view = memoryview(self.buf)
            bounds = zip(self.starts[run_first].tolist(), self.ends[run_last].tolist(), strict=True)
            return b"".join([view[s:e] for s, e in bounds])
        n = len(self.data)
        return self.buf[:n][np.repeat(chosen, self.ends - self.starts)].tobytes()

    def rest(self, line: int) -> bytes:
        """What follows the statement keyword on a line."""
        return self.data[int(self.head[line]) + 1 : int(self.ends[line])]


def _blank(c: np.ndarray) -> np.ndarray:
    return (c == 32) | (c == 9)


def _vertices(text: bytes, n: int) -> np.ndarray:
    """Positions of the ``v`` lines in ``text``: each line's first three numbers."""
    if n == 0:
        return np.zeros((0, 3))
    if b"#" in text:
        text = _COMMENT_RE.sub(b"", text)
    parsed = parse_lines(text, n, np.float64)
    if parsed is None:  # a token the fast path does not read: numpy's parser, and its errors
        parsed = tokens_per_line(text, n), parse_numbers(text, np.float64, "vertex coordinate")
    counts, values = parsed
    if np.any(counts < 3):
        raise UnreadableInput(CORRUPT, "a 'v' line with fewer than three coordinates")
    if np.all(counts == counts[0]):
        return values.reshape(-1, counts[0])[:, :3]
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return values[offsets[:, None] + np.arange(3)]


def _face_indices(text: bytes, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The vertex index of every corner (1-based or negative, as written) and the corners
    of each of the ``n`` ``f`` lines in ``text``.

    A corner is its text up to the first ``/`` (``/[^ \\t\\n]*`` is dropped). Cutting tokens
    there is the same thing unless a ``\\v`` or ``\\f`` - spaces to the tokenizer, not to that
    pattern - follows a ``/``; with those, or comments, the text is rewritten by the patterns.
    """
    if b"#" not in text and (b"/" not in text or (b"\x0b" not in text and b"\x0c" not in text)):
        parsed = parse_lines(text, n, np.int64, cut_at=b"/")
        if parsed is not None:
            counts, indices = parsed
            return indices, counts
    if b"/" in text:
        text = _SLASH_RE.sub(b"", text)
    if b"#" in text:
        text = _COMMENT_RE.sub(b"", text)
    counts = tokens_per_line(text, n)
    indices = parse_numbers(text, np.int64, "face index")
    if len(indices) != counts.sum():
        raise UnreadableInput(CORRUPT, "malformed face line")
    return indices, counts


loaders = {"obj": load_obj}
