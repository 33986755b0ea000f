"""Wavefront OBJ: ``v`` positions (extra colour or weight columns ignored), ``f`` polygons
(``v``, ``v/vt``, ``v//vn``, ``v/vt/vn``; 1-based or negative = relative to the vertices so
far), fan-triangulated; ``o`` and ``g`` lines start groups, named by the rest of their line
(lines with the same name are one group; faces before any are group ``default``).
``l`` (polyline) and ``p`` (point) elements hold no surface: they are ignored, neither errors
nor faces, and their indices are not checked; like every other statement.

Groups are kept compactly whatever their number: one int32 per triangle, and the names of
the first :data:`MAX_GROUP_NAMES` groups only (600,000 one-triangle groups once cost
400 MB as Python strings). Group names are compared as bytes in bulk with numpy.

Lines are classified in bulk with numpy rather than matched one by one: a million-face file
has millions of lines, and a regular expression plus a Python object per line cost seconds.
Each line's statement is read from its first bytes; the ``v`` lines and the ``f`` lines are
then copied out as two blocks of text and parsed by :func:`scanner.formats._text.parse_lines`.
The classification reproduces, byte for byte, what these patterns match::

    ^[ \\t]*v[ \\t]+([^\\r\\n]*)          a vertex: ``v`` then a space or tab
    ^[ \\t]*([fog])\\b[ \\t]*([^\\r\\n]*)   a face / object / group: the letter then a non-word byte

(multi-line mode; a line ends at ``\\n``, and what a line holds is cut at its first ``\\r``;
a file with a bare ``\\r`` - not before ``\\n`` - has every ``\\r`` read as a line end first).
"""

from __future__ import annotations

import re

import numpy as np

from scanner.errors import BAD_INDEX, CORRUPT, EMPTY, UnreadableInput
from scanner.formats._probe import HEAD_BYTES, MESH_LINE_NAMES, Probe, mesh_line_kind
from scanner.formats._text import (
    fan_count,
    fan_triangulate,
    group_hashes,
    mix64,
    parse_lines,
    parse_numbers,
    tokens_per_line,
    verify_groups,
)
from scanner.formats.base import Format, LoadContext, Sniffer, build_mesh
from scanner.formats.blob import Blob
from scanner.mesh import Mesh

_SLASH_RE = re.compile(rb"/[^ \t\n]*")
_COMMENT_RE = re.compile(rb"#[^\n]*")
_CONTINUATION_RE = re.compile(rb"\\\r?\n")
_BLANKS_RE = re.compile(rb"[ \t]*")

_WORD = np.zeros(256, dtype=bool)  # what regex \b sees as word bytes (ASCII, for bytes patterns)
_WORD[[ord(c) for c in "0123456789_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"]] = True
_INDENT_STEPS = 8  # leading blanks skipped in bulk, one byte a step; deeper indents line by line
_FEW_RUNS = 4096  # at most this many blocks of consecutive lines: copy block by block
MAX_GROUP_NAMES = 1000  # names kept (of the groups first declared); ids are kept for every group
_NAME_ROW = 32  # group names shorter than this are compared as fixed-width rows; longer ones (each
# costing the file at least this many bytes) one by one
_PAD = _NAME_ROW + 8  # bytes after the end of the buffer, so a name row can be read at any offset


def load_obj(blob: Blob, ctx: LoadContext) -> Mesh:
    data = blob.read()
    if b"\\" in data and (b"\\\n" in data or b"\\\r\n" in data):  # continuations (a rare byte first: fast)
        data = _CONTINUATION_RE.sub(b" ", data)
    if b"\r" in data and data.count(b"\r") != data.count(b"\r\n"):
        # a bare \r ends a line, as in PrusaSlicer's and OrcaSlicer's OBJ parser (classic Mac
        # line ends): cutting the rest of the line off left a CR-only file one unread line
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    lines = _Lines(data)
    is_v = lines.is_v
    is_group = lines.is_fog & (lines.first != ord("f"))
    is_face = lines.is_fog & ~is_group
    n_vertices, n_faces = int(is_v.sum()), int(is_face.sum())
    ctx.check_vertices(n_vertices)
    vertex_text, face_text = lines.text(is_v), lines.text(is_face)
    face_group, names = _groups(lines, is_group, is_face)
    seen = np.cumsum(is_v, dtype=np.int64)[is_face] if n_faces else None  # vertices before each face line
    del lines, data, is_v, is_group, is_face  # the texts are all that is needed from here on
    vertices = _vertices(vertex_text, n_vertices)
    del vertex_text
    if n_faces == 0:
        raise UnreadableInput(EMPTY, "OBJ with no faces")
    if len(face_text) // 2 - 2 * n_faces > ctx.limits.max_triangles and b"#" not in face_text:
        # so many corners could be over the limit: count them before they are parsed
        ctx.check_triangles(fan_count(tokens_per_line(face_text, n_faces)))
    indices, counts = _face_indices(face_text, n_faces)
    del face_text
    ctx.check_triangles(fan_count(counts))  # before the triangles are made
    if np.any(indices == 0):
        raise UnreadableInput(BAD_INDEX, "face index 0 (OBJ indices start at 1)")
    if len(indices) and indices.min() < 0:
        # negative indices count back from the vertices defined before their face line
        indices = np.where(indices < 0, np.repeat(seen, counts) + indices, indices - 1)
    else:
        indices -= 1
    del seen
    if len(indices) and 0 <= indices.min() and indices.max() < len(vertices):
        indices = indices.astype(np.int32)  # in range: half the memory (limits < 2**31)
    tris, groups = fan_triangulate(indices, counts, face_group)
    if len(tris) == 0:
        raise UnreadableInput(EMPTY, "OBJ with no polygon of three or more corners")
    return build_mesh(vertices, tris, blob, "obj", ctx, groups, names)


def _groups(lines: _Lines, is_group: np.ndarray, is_face: np.ndarray) -> tuple[np.ndarray | None, list[str]]:
    """(group id of each face line (int32), names of the first MAX_GROUP_NAMES groups).

    Group 0 is ``default`` (faces before any ``o``/``g`` line); the others are numbered in
    the order their names first appear. Names are the stripped rest of the line, compared
    as bytes: short ones as fixed-width rows grouped by hash (every row then compared byte for byte with
    its group's first), longer ones in a dict.
    """
    at = np.flatnonzero(is_group)
    if len(at) == 0:
        return None, ["default"]
    n_groups = len(at)
    a, b = lines.name_spans(at)
    del at
    length = b - a
    short = np.flatnonzero(length < _NAME_ROW).astype(a.dtype)
    width = min(_NAME_ROW, 8 * (int(length[short].max(initial=7)) // 8 + 1))  # room for the length byte
    rows = lines.windows(width)[a[short]].view(np.uint8).reshape(len(short), width)
    rows[np.arange(width) >= length[short, None]] = 0
    rows[:, -1] = length[short]
    default = np.zeros((1, width), dtype=np.uint8)
    default[0, :7] = np.frombuffer(b"default", np.uint8)
    default[0, -1] = 7
    words = np.concatenate([default, rows]).view(np.uint64)  # width // 8 words a row
    del rows
    with np.errstate(over="ignore"):
        h = mix64(words[:, 0])
        for j in range(1, words.shape[1]):
            h = mix64(h ^ words[:, j])
    first, inverse = verify_groups(words, *group_hashes(h))  # equal rows: one name
    del words, h
    # group lines (and 'default', line -1) by name: each name's first line, each line's name
    name_of = np.empty(n_groups + 1, dtype=np.int32)
    name_of[0] = inverse[0]
    name_of[short + 1] = inverse[1:]
    first_line = np.concatenate([[-1], short])[first]
    del short, first, inverse
    long_names: dict[bytes, int] = {}  # each long name costs the file >= _NAME_ROW bytes
    long_first: list[int] = []
    for i in np.flatnonzero(length >= _NAME_ROW).tolist():
        name = lines.data[int(a[i]) : int(b[i])]
        if name not in long_names:
            long_names[name] = len(first_line) + len(long_first)
            long_first.append(i)
        name_of[i + 1] = long_names[name]
    del long_names
    first_line = np.concatenate([first_line, np.array(long_first, dtype=np.int64)])
    order = np.argsort(first_line, kind="stable")  # names numbered by first appearance
    rank = np.empty(len(order), dtype=np.int32)
    rank[order] = np.arange(len(order), dtype=np.int32)
    line_group = rank[name_of]
    face_group = line_group[np.cumsum(is_group, dtype=np.int32)[is_face]]
    names = [
        "default" if line < 0 else lines.data[int(a[line]) : int(b[line])].decode("utf-8", "replace")
        for line in first_line[order[:MAX_GROUP_NAMES]].tolist()
    ]
    return face_group, names


class _Lines:
    """The lines of an OBJ file (after continuations and bare ``\\r`` are dealt with), each
    classified by its statement; ``v`` and ``f`` keywords are blanked in a private copy so
    that those lines' text is just their numbers."""

    def __init__(self, data: bytes) -> None:
        n = len(data)
        self.data = data
        self.buf = buf = np.empty(n + _PAD, dtype=np.uint8)  # '\n' after the end: a byte to look at
        buf[:n] = np.frombuffer(data, dtype=np.uint8)
        buf[n:] = 10
        offset = np.int32 if n < 2**31 - _PAD else np.int64  # 12 bytes a line, not 24
        ends = np.flatnonzero(buf[:n] == 10).astype(offset) + 1  # each line ends after its '\n' ...
        if len(ends) == 0 or ends[-1] != n:
            ends = np.append(ends, offset(n))  # ... or at the end of the file
        self.starts = np.concatenate([np.zeros(1, offset), ends[:-1]])
        self.ends = ends
        if n == 0:
            self.starts = self.ends = np.zeros(0, dtype=offset)
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

    def name_spans(self, lines: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``[a, b)`` of what follows the keyword on each of these lines, stripped of
        whitespace (as ``bytes.strip``)."""
        a = self.head[lines] + 1
        b = self.ends[lines]
        n = len(self.data)
        for step in range(2 * _INDENT_STEPS):  # a few bytes at either end, in bulk
            lead = (a < b) & _space(self.buf[np.minimum(a, n)])
            trail = (b > a) & _space(self.buf[b - 1])
            if not (lead.any() or trail.any()):
                return a, b
            if step == 2 * _INDENT_STEPS - 1:
                break
            a += lead
            b -= trail
        rare = (a < b) & (_space(self.buf[np.minimum(a, n)]) | _space(self.buf[b - 1]))
        for i in np.flatnonzero(rare).tolist():
            name = self.data[a[i] : b[i]]  # rare: many blanks around a name
            kept = name.lstrip()
            a[i] += len(name) - len(kept)
            b[i] = a[i] + len(kept.rstrip())
        return a, b

    def windows(self, width: int) -> np.ndarray:
        """The ``width`` bytes from each offset of the file, gathered with ``[offsets]``."""
        return np.ndarray((len(self.buf) - width + 1,), dtype=(np.void, width), buffer=self.buf, strides=(1,))


def _blank(c: np.ndarray) -> np.ndarray:
    return (c == 32) | (c == 9)


def _space(c: np.ndarray) -> np.ndarray:
    """What ``bytes.strip`` removes: space and \t \n \v \f \r."""
    return (c == 32) | (c - np.uint8(9) <= 4)


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


_OBJ_WORD_RE = re.compile(rb"^[ \t]*(?:mtllib|usemtl)[ \t]", re.M)


def _sniff_mesh_lines(p: Probe) -> str | None:
    """Text with a line only a mesh holds in its head: an OBJ ``v``/``f`` line, or an ASCII
    STL ``vertex`` line (an STL without its ``solid`` line) - the first such line decides."""
    return mesh_line_kind(p.head)


def _sniff_words(p: Probe) -> str | None:
    """Text with OBJ's material statements (an OBJ whose geometry starts later)."""
    return "obj" if _OBJ_WORD_RE.search(p.head) else None


def _sniff_comments(p: Probe) -> str | None:
    """A short text of nothing but ``#`` comments: a comment-only OBJ (exporters write
    these), which loads as empty."""
    if p.blob.size > HEAD_BYTES:
        return None
    lines = (ln.strip() for ln in p.head.splitlines())
    return "obj" if all(not ln or ln.startswith(b"#") for ln in lines) else None


FORMATS = (
    Format(
        "obj",
        "OBJ",
        20,
        "polygons fan-triangulated; negative (relative) indices; `v` with colours; `o`/`g` groups kept as names "
        "(bodies come from the geometry); `\\` line continuations",
        loader=load_obj,
    ),
)
SNIFFERS = (
    Sniffer(710, _sniff_mesh_lines, MESH_LINE_NAMES),
    Sniffer(720, _sniff_words, frozenset({"obj"})),
    Sniffer(730, _sniff_comments, frozenset({"obj"})),
)
