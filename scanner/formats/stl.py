"""STL, binary and ASCII.

Binary: an 80-byte header, a uint32 triangle count, then 50-byte records (normal, three
corners, attribute word). The declared count is checked against the file size *before*
anything is allocated. Records are read in chunks small enough to stay in the CPU cache;
each record's 36 corner bytes are copied as one block into the float32 corner array and the
chunk is checked for NaN/inf while it is still in cache. Peak memory is the triangle array
plus one small buffer, and the load takes about half the time of reading the whole file.

ASCII: only the ``vertex`` lines carry geometry, and reading their numbers is the cost
(``np.fromstring``: ~300 ns a number; a 1M-triangle file has 9M). A closed mesh writes each
vertex about six times, always as the same text, so lines are deduplicated *as text* first:

1. the file is streamed in cache-sized chunks (never held whole): ``vertex`` keywords (any
   case) are found from their ``x`` with numpy, each vertex line is copied into a
   fixed-width row, blanked after its line end, and hashed; rows with equal hashes are
   merged within the chunk, then over the file;
2. every row is compared byte for byte with the first row of its hash group, so a hash
   collision (easy to craft: the input is untrusted) costs time, never a coordinate;
3. only the distinct rows are parsed - plain decimals by an exact vectorised reader
   (:func:`scanner.formats._text.decimals`), anything else by ``np.fromstring`` - and the values scattered back.

Keywords are matched case-insensitively; any whitespace, CRLF (or CR) line ends and a
missing ``endsolid`` are accepted. ``vertex`` counts only as the first word of its line, so
a solid named ``my vertex art`` is not read as a vertex. Each vertex line must hold exactly
three numbers. Several ``solid`` blocks become groups (bodies).
"""

from __future__ import annotations

import bisect
import re
import struct
import warnings
from typing import BinaryIO

import numpy as np

from scanner.arrays import unique_sorted
from scanner.errors import CORRUPT, EMPTY, IO_ERROR, TRUNCATED, UnreadableInput
from scanner.formats._probe import Probe, looks_text, non_model_magic
from scanner.formats._text import decimals as _decimals
from scanner.formats._text import group_hashes as _group
from scanner.formats._text import mix64 as _mix
from scanner.formats._text import parse_numbers
from scanner.formats._text import verify_groups as _verified
from scanner.formats.base import Format, LoadContext, Sniffer, build_mesh
from scanner.formats.blob import Blob
from scanner.mesh import Mesh

STL_HEADER_BYTES = 80
STL_COUNT_BYTES = 4
STL_RECORD_BYTES = 50
STL_PREAMBLE = STL_HEADER_BYTES + STL_COUNT_BYTES

RECORD_DTYPE = np.dtype([("normal", "<f4", (3,)), ("corners", "<f4", (9,)), ("attr", "<u2")])
assert RECORD_DTYPE.itemsize == STL_RECORD_BYTES
# 16k records: an 800 KB read buffer and 576 KB of corners, in cache between copy and check
CHUNK_RECORDS = 1 << 14
_CORNER_BYTES = np.dtype((np.void, 36))  # one record's 9 float32 corners, copied as one block
_CORNERS_OFFSET = 12  # after the normal


# Bytes after the declared triangles that are read past without being refused. A tail shorter
# than one record cannot hold a triangle, so it hides no geometry; exporters that pad a few
# bytes (a trailing newline, an alignment word) stay readable. A tail of any length that is
# all zero is padding too (it would read as degenerate triangles at the origin). Anything
# else is refused: `benign.stl + proxy.stl` read as the benign part alone came out `clear`.
# None of the corpus's binary STLs has a tail at all.
STL_TAIL_ALLOWANCE = STL_RECORD_BYTES - 1


def _check_tail(fh: BinaryIO, extra: int, count: int) -> None:
    """Raise ``corrupt`` when more than :data:`STL_TAIL_ALLOWANCE` bytes that are not all zero
    follow the declared triangles: a ``clear`` claims the whole upload was read."""
    if extra <= STL_TAIL_ALLOWANCE:
        return
    left = extra
    while left > 0:
        chunk = fh.read(min(left, 1 << 20))
        if not chunk:
            return
        if chunk.count(0) != len(chunk):
            raise UnreadableInput(CORRUPT, f"{extra} bytes follow the {count} declared triangles and are not padding")
        left -= len(chunk)


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
        # Copying 36-byte blocks is one memcpy per record; the structured ["corners"] field
        # is copied float by float (and took 3-4x the time of reading the file).
        dst = corners.view(_CORNER_BYTES).reshape(count)
        buf = bytearray(STL_RECORD_BYTES * min(count, CHUNK_RECORDS))
        finite = True
        done = 0
        while done < count:
            n = min(CHUNK_RECORDS, count - done)
            view = memoryview(buf)[: n * STL_RECORD_BYTES]
            if fh.readinto(view) != len(view):
                raise UnreadableInput(TRUNCATED, "file ended inside the triangle records")
            dst[done : done + n] = np.ndarray(
                (n,), _CORNER_BYTES, buffer=buf, offset=_CORNERS_OFFSET, strides=(STL_RECORD_BYTES,)
            )
            if finite:  # while the chunk is in cache; max/min propagate NaN, which compares False
                block = corners[done : done + n]
                finite = bool(block.max() < np.inf and block.min() > -np.inf)
            done += n
        _check_tail(fh, size - STL_PREAMBLE - count * STL_RECORD_BYTES, count)
    # finite=False only skips the shortcut: build_mesh then finds and reports the NaN/inf
    return build_mesh(corners.reshape(-1, 3), None, blob, "stl-binary", ctx, known_finite=finite)


# ----------------------------------------------------------------------------- ASCII

_CHUNK_BYTES = 1 << 20  # text scanned per step: its temporaries stay in L2/L3
# Bytes kept before each chunk: the x of "vertex" may be in the chunk and its v and indent
# before it. Indents of up to this many blanks are checked with numpy; longer ones (each
# line then costs >= 256 bytes of file) one by one.
_BEFORE = 256
# Rows are kept in two widths: the narrowest that holds the first chunk's vertex lines (the
# cost per row grows with it), and _ROW_MAX for later lines that do not fit. Lines longer
# still (rare) are read one by one.
_ROW_WIDTHS = tuple(range(16, 129, 8))
_ROW_MAX = _ROW_WIDTHS[-1]
_PARSE_BATCH = 1 << 15  # rows parsed per step: temporaries of ~1 MB
_AFTER = _ROW_MAX + 8  # bytes kept after each chunk: the rows that start in it


def _table(chars: bytes) -> np.ndarray:
    out = np.zeros(256, dtype=bool)
    out[list(chars)] = True
    return out


_IS_SPACE_TAB = _table(b" \t")  # what must follow ``vertex`` (the old ``vertex[ \t]+``), precede ``solid``
_IS_INDENT = _table(b" \t\x0b\x0c")  # what may stand before ``vertex`` on its line
_IS_BREAK = _table(b"\r\n")
_IS_WS = _table(b" \t\n\x0b\x0c\r")  # C isspace: what np.fromstring's sep=" " skips
_IS_WORD = _table(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")  # re's \w (bytes)
_TRAILING = b" \t\r\n\x00\x1a"


def _word(text: bytes) -> int:
    return int.from_bytes(text, "little")


_LOWER8 = _word(b"\x20" * 8)  # | 0x20 folds exactly A-Z onto a-z for the letters compared
_VERTEX, _SIX = _word(b"vertex"), (1 << 48) - 1
_SOLID, _FIVE = _word(b"solid"), (1 << 40) - 1
_ENDSOLID = _word(b"endsolid")
_LINE_RE = re.compile(rb"[^\r\n]*")


class _Source:
    """Any byte range of the blob, for the few steps that look outside the chunk being
    scanned (solid names, the end of each solid, very long lines or indents)."""

    def __init__(self, blob: Blob) -> None:
        self._blob = blob
        self._fh: BinaryIO | None = None

    def read(self, a: int, b: int) -> bytes:
        if b <= a:
            return b""
        if self._fh is None:
            self._fh = self._blob.open()
        try:
            self._fh.seek(a)
            return self._fh.read(b - a)
        except OSError as exc:
            raise UnreadableInput(IO_ERROR, f"cannot read: {exc.strerror}") from None

    def line(self, a: int, b: int, sep: bytes = b"\n") -> bytes:
        """``[a, b)`` up to the first byte of ``sep`` (at most ``b``)."""
        out = []
        while a < b:
            piece = self.read(a, min(b, a + 65536))
            if not piece:
                break
            end = min((at for at in (piece.find(bytes([s])) for s in sep) if at >= 0), default=-1)
            if end >= 0:
                out.append(piece[:end])
                break
            out.append(piece)
            a += len(piece)
        return b"".join(out)

    def last_non(self, a: int, b: int, chars: bytes) -> int:
        """The end of ``[a, b)`` with trailing bytes of ``chars`` dropped."""
        while b > a:
            piece = self.read(max(a, b - 4096), b)
            kept = piece.rstrip(chars)
            if kept:
                return b - len(piece) + len(kept)
            b -= len(piece)
        return a

    def rfind(self, needle: bytes, a: int, b: int) -> int:
        """``data.rfind(needle, a, b)`` for a one-byte needle."""
        while b > a:
            lo = max(a, b - 65536)
            at = self.read(lo, b).rfind(needle)
            if at >= 0:
                return lo + at
            b = lo
        return -1

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()


class _Rows:
    """Vertex lines of one fixed row width, deduplicated as text.

    Each line is kept as the ``width`` bytes after its keyword, blanked from its line end
    on (uint64 words), and hashed. Rows are grouped by hash twice: within each chunk as it
    is scanned (neighbouring facets share corners, so this keeps ~1/5 of the rows, and its
    checks run while the chunk is in cache), then the chunks' distinct rows over the whole
    file. Each time every row is compared byte for byte with the first row of its hash
    group, and one that differs (a collision: easy to craft, the input is untrusted)
    becomes a group of its own - a collision costs time, never a wrong coordinate.
    """

    def __init__(self, width: int) -> None:
        self.width = width
        row = np.dtype((np.void, width))  # gathered as one block: 5x faster than 2-d fancy indexing
        keep = np.arange(width)[None, :] < np.arange(width + 1)[:, None]  # per line length
        self._keep = np.where(keep, 0xFF, 0).astype(np.uint8).view(row).reshape(-1)
        self._spaces = np.where(keep, 0, 0x20).astype(np.uint8).view(row).reshape(-1)
        self._pos: list[np.ndarray] = []
        self._local: list[np.ndarray] = []  # per chunk: each row's group among the chunk's distinct rows
        self._hashes: list[np.ndarray] = []  # per chunk: hashes of its distinct rows
        self._distinct: list[np.ndarray] = []  # per chunk: its distinct rows
        self.pos = np.zeros(0, dtype=np.int64)
        self.unique = np.zeros((0, width), dtype=np.uint8)
        self.unique_ok = np.zeros(0, dtype=bool)
        self._group = np.zeros(0, dtype=np.intp)  # of each chunk-distinct row, in ``unique``
        self.values: np.ndarray | None = np.zeros((0, 3), dtype=np.float32)

    def add(self, pos: np.ndarray, rows: np.ndarray, length: np.ndarray) -> None:
        words = rows.view(np.uint64)
        words &= self._keep[length].view(np.uint64).reshape(words.shape)
        words |= self._spaces[length].view(np.uint64).reshape(words.shape)
        h = _mix(words[:, 0])
        for j in range(1, words.shape[1]):
            h = _mix(h ^ words[:, j])
        first, group = _group(h.copy())
        distinct, group = _verified(words, first, group)
        self._pos.append(pos)
        self._local.append(group.astype(np.int32))
        self._hashes.append(h[distinct])
        self._distinct.append(np.take(words, distinct, axis=0))

    def finish(self) -> None:
        """Group the chunks' distinct rows over the whole file, verify, parse, scatter back."""
        if not self._pos:
            return
        self.pos = np.concatenate(self._pos)
        rows = np.concatenate(self._distinct)
        self._distinct = []
        first, group = _group(np.concatenate(self._hashes))
        unique, self._group = _verified(rows, first, group)
        self.unique = np.take(rows, unique, axis=0).view(np.uint8).reshape(len(unique), self.width)
        del rows
        values, self.unique_ok = _parse_rows(self.unique)
        if values is None:
            self.values = None
            return
        with np.errstate(over="ignore"):  # beyond float32 becomes inf, refused as non-finite
            values = values.astype(np.float32)
        self.values = np.empty((len(self.pos), 3), dtype=np.float32)
        done = offset = 0
        for local, hashes in zip(self._local, self._hashes, strict=True):
            rows_group = self._group[offset : offset + len(hashes)]
            np.take(values, rows_group[local], axis=0, out=self.values[done : done + len(local)])
            done += len(local)
            offset += len(hashes)

    def groups(self, lo: int, hi: int) -> np.ndarray:
        """The ``unique`` rows of the lines starting in ``[lo, hi)``."""
        a, b = np.searchsorted(self.pos, [lo, hi])
        out, done, offset = [], 0, 0
        for local, hashes in zip(self._local, self._hashes, strict=True):
            if done + len(local) > a and done < b:
                sel = local[max(0, a - done) : b - done]
                out.append(self._group[offset : offset + len(hashes)][sel])
            done += len(local)
            offset += len(hashes)
        return unique_sorted(np.concatenate(out)) if out else np.zeros(0, dtype=np.intp)

    def parses(self, lo: int, hi: int) -> bool:
        """Do the rows starting in ``[lo, hi)`` hold exactly three numbers each?"""
        g = self.groups(lo, hi)
        if not len(g):
            return True
        return bool(self.unique_ok[g].all()) and _parse(self.unique[g].tobytes(), len(g)) is not None  # the reference


def _parse_rows(rows: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """Values (n, 3) float64 of fixed-width rows, exactly as ``np.fromstring`` reads them, or
    None if some row is not three numbers; and which rows hold exactly three words.

    The word count comes first: ``np.fromstring`` reads one number per word or fails, so it
    cannot then shift numbers between lines (``1 2`` then ``3 4 5 6`` would otherwise read
    as two vertices). A row starts with the blank after the keyword and ends blank, so the
    words of the flattened rows are the rows' words.

    ``np.fromstring`` costs ~300 ns a number; the plain decimals writers emit are read by
    :func:`_decimals` (exact) instead, and only the other words (``nan``, long mantissas)
    by ``np.fromstring`` - or all of them, if they are many. Rows are taken in batches
    whose temporaries stay in cache (fresh memory costs more than the arithmetic here).
    """
    n, width = rows.shape
    values = np.empty((n, 3))
    three = np.empty(n, dtype=bool)
    slow_rows, slow_words = [], []
    step = _PARSE_BATCH
    flat = np.empty(16 + min(n, step) * width, dtype=np.uint8)  # 16 blanks first: see _decimals
    flat[:16] = 0x20
    for a in range(0, n, step):
        batch = rows[a : a + step]
        text = flat[: 16 + batch.size]
        text[16:] = batch.reshape(-1)
        blank = _IS_WS[text] if (batch < 0x20).any() else text == 0x20  # control bytes are rare
        edge = np.flatnonzero(np.diff(blank.view(np.int8))) + 1  # blank <-> word: starts and ends alternate
        starts, ends = edge[0::2], edge[1::2]
        three[a : a + step] = np.bincount((starts - 16) // width, minlength=len(batch)) == 3
        if not three[a : a + step].all():
            return None, _three_words(rows, three, a + step)
        v, ok = _decimals(text, starts, ends)
        values[a : a + step] = v.reshape(-1, 3)
        slow = np.flatnonzero(~ok)
        if len(slow):
            slow_rows.append(slow + 3 * a)
            slow_words += [text[i:j].tobytes() for i, j in zip(starts[slow].tolist(), ends[slow].tolist(), strict=True)]
            if len(slow_words) * 16 > 3 * (a + len(batch)):  # many: numpy reads everything
                three = _three_words(rows, three, a + step)
                return _parse(rows.tobytes(), n) if three.all() else None, three
    if slow_words:
        parsed = _parse(b" ".join(slow_words), len(slow_words), 1)
        if parsed is None:
            return None, three
        values.reshape(-1)[np.concatenate(slow_rows)] = parsed.reshape(-1)
    return values, three


def _three_words(rows: np.ndarray, three: np.ndarray, done: int) -> np.ndarray:
    """Finish ``three`` (rows up to ``done`` are filled in) for the error path."""
    rest = rows[done:]
    if len(rest):
        blank = _IS_WS[rest]
        starts = np.count_nonzero(blank[:, :-1] & ~blank[:, 1:], axis=1)
        three[done:] = starts == 3
    return three


def _parse(text: bytes, n: int, per_row: int = 3) -> np.ndarray | None:
    """``per_row * n`` numbers as float64 (n, per_row), or None if ``text`` is not exactly that."""
    if not n:
        return np.zeros((0, per_row))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            values = np.fromstring(text, dtype=np.float64, sep=" ")
        except (ValueError, DeprecationWarning):
            return None
    if len(values) != per_row * n:
        return None
    return values.reshape(n, per_row)


class _Scan:
    """One streaming pass over an ASCII STL: vertex lines, ``solid`` lines, ``endsolid`` words.

    The file is read in chunks into one buffer that also holds ``_BEFORE`` bytes before the
    chunk and ``_AFTER`` bytes after it (``\\n`` outside the file: a line start before it, a
    line end after it), so every test near a chunk edge sees the real neighbouring bytes,
    and the file is never held whole in memory.
    """

    def __init__(self, blob: Blob, source: _Source) -> None:
        self.source = source
        self.size = 0
        self._solid_parts: list[np.ndarray] = []  # per chunk (no Python int per solid)
        self._endsolid_parts: list[np.ndarray] = []
        self.solid_starts = np.zeros(0, dtype=np.int64)  # sorted, by finish()
        self.endsolid_at = np.zeros(0, dtype=np.int64)
        self.rows: dict[int, _Rows] = {}
        self.extra_pos: list[int] = []
        self.extra_text: list[bytes | None] = []  # None: read from the source at the end
        buf = np.full(_BEFORE + _CHUNK_BYTES + _AFTER, 0x0A, dtype=np.uint8)
        self._buf = buf
        self._u64 = np.ndarray((len(buf) - 7,), dtype="<u8", buffer=buf, strides=(1,))  # at any offset
        self._seen = np.empty(_CHUNK_BYTES, dtype=bool)
        try:
            with blob.open() as fh, np.errstate(over="ignore"):
                self._stream(fh)
        except OSError as exc:
            raise UnreadableInput(IO_ERROR, f"cannot read: {exc.strerror}") from None

    def _stream(self, fh: BinaryIO) -> None:
        buf = self._buf
        view = memoryview(buf)
        have = _fill(fh, view[_BEFORE:])  # file bytes in the buffer after the prefix
        c0 = 0
        while True:
            size = min(_CHUNK_BYTES, have)
            buf[_BEFORE + have :] = 0x0A
            self.size = c0 + have
            eof = have < _CHUNK_BYTES + _AFTER
            if size:
                self._chunk(c0, size, have, eof)
            if have <= _CHUNK_BYTES:
                return
            # keep the last _BEFORE bytes of the chunk and the bytes after it, read on
            kept = _BEFORE + have - _CHUNK_BYTES
            buf[:kept] = buf[_CHUNK_BYTES : _CHUNK_BYTES + kept]
            have = kept - _BEFORE + _fill(fh, view[kept:])
            c0 += _CHUNK_BYTES

    def _chunk(self, c0: int, size: int, have: int, eof: bool) -> None:
        buf = self._buf
        base = c0 - _BEFORE  # file position of buf[0]
        raw = buf[: _BEFORE + have].tobytes()
        text = buf[_BEFORE : _BEFORE + size]
        if raw.find(b"i", _BEFORE, _BEFORE + size) >= 0 or raw.find(b"I", _BEFORE, _BEFORE + size) >= 0:
            self._solids(text, base)
        seen = self._seen[:size]
        np.equal(text, ord("x"), out=seen)
        k = np.flatnonzero(seen)
        if raw.find(b"X", _BEFORE, _BEFORE + size) >= 0:
            np.equal(text, ord("X"), out=seen)
            k = np.union1d(k, np.flatnonzero(seen))
        if not len(k):
            return
        k += _BEFORE - 5  # where "vertex" would start
        k = k[((self._u64[k] | _LOWER8) & _SIX) == _VERTEX]
        k = k[_IS_SPACE_TAB[buf[k + 6]]]
        if not len(k):
            return
        k = k[self._first_words(k, base)]
        if not len(k):
            return
        # rows: the bytes after the keyword, up to the first \r or \n
        starts = k + 6
        cr = raw.find(b"\r", _BEFORE) >= 0
        if not self.rows:
            width = _choose_width(self._windows(_ROW_MAX)[starts].view(np.uint8).reshape(len(starts), _ROW_MAX), cr)
            self.rows = {w: _Rows(w) for w in (width, _ROW_MAX)}
        for width, rows in self.rows.items():
            window = self._windows(width)[starts].view(np.uint8).reshape(len(starts), width)
            ends = window == 0x0A
            if cr:
                ends |= window == 0x0D
            length = ends.argmax(axis=1)
            fits = ends[np.arange(len(starts)), length]
            if fits.all():
                rows.add(starts + base, window, length)
                return
            if fits.any():
                rows.add(starts[fits] + base, window[fits], length[fits])
            starts = starts[~fits]
        for at in starts.tolist():  # longer than every row width: one by one
            line = _LINE_RE.match(raw, at).group()
            self.extra_pos.append(at + base)
            self.extra_text.append(line if eof or at + len(line) < len(raw) else None)

    def _windows(self, width: int) -> np.ndarray:
        """The ``width`` bytes from each offset of the buffer, gathered with ``[starts]``."""
        return np.ndarray((len(self._buf) - width + 1,), dtype=(np.void, width), buffer=self._buf, strides=(1,))

    def _first_words(self, k: np.ndarray, base: int) -> np.ndarray:
        """Is each keyword the first word of its line (only blanks back to a line break)?

        Most files indent every vertex line alike, so the 8 bytes before the first keyword
        give a pattern (a line break, then spaces) that settles nearly all of them with one
        comparison; the others are walked back byte by byte.
        """
        before = self._u64[k - 8]
        ok = np.zeros(len(k), dtype=bool)
        head = int(before[0]).to_bytes(8, "little")
        indent = len(head) - len(head.rstrip(b" "))
        if indent < 8 and head[7 - indent] in b"\r\n":
            mask = np.uint64(((1 << (8 * (indent + 1))) - 1) << (8 * (7 - indent)))
            ok = (before & mask) == (np.uint64(_word(head)) & mask)
        todo = np.flatnonzero(~ok)
        at = k[todo] - 1
        for _ in range(_BEFORE - 8):
            if not len(todo):
                return ok
            byte = self._buf[at]
            ok[todo[_IS_BREAK[byte]]] = True
            blank = _IS_INDENT[byte]
            todo, at = todo[blank], at[blank] - 1
        for i, end in zip(todo.tolist(), (at + 1 + base).tolist(), strict=True):  # long indents
            before_keyword = self.source.last_non(0, end, b" \t\x0b\x0c")
            ok[i] = before_keyword == 0 or self.source.read(before_keyword - 1, before_keyword) in (b"\r", b"\n")
        return ok

    def _solids(self, text: np.ndarray, base: int) -> None:
        """``solid`` lines (as ``^[ \\t]*solid\\b``, any case) and ``endsolid`` words in the chunk.

        Each holds an ``i``, and the keywords and numbers of an STL hold none, so chunks
        without one (all but the first and last, usually) skip this.
        """
        buf = self._buf
        word = np.flatnonzero((text | 0x20) == ord("i")) + _BEFORE - 3  # the i of s-o-l-i-d
        word = word[((self._u64[word] | _LOWER8) & _FIVE) == _SOLID]
        if not len(word):
            return
        end = word[(self._u64[word - 3] | _LOWER8) == _ENDSOLID] - 3
        self._endsolid_parts.append(end + base)
        word = word[~_IS_WORD[buf[word + 5]]]  # \b
        at = word - 1
        todo = np.arange(len(word))
        for _ in range(_BEFORE - 8):
            if not len(todo):
                break
            blank = _IS_SPACE_TAB[buf[at]]
            line = at[~blank] + 1
            starts = line[buf[line - 1] == 0x0A]  # re.M's ^: after a \n (or the file start)
            self._solid_parts.append(starts + base)
            todo, at = todo[blank], at[blank] - 1
        for end in (at + 1 + base).tolist():  # long indents
            line = self.source.last_non(0, end, b" \t")
            if line == 0 or self.source.read(line - 1, line) == b"\n":
                self._solid_parts.append(np.array([line], dtype=np.int64))

    def finish(self) -> None:
        """Deduplicate and parse the rows, read the long lines that were left for later."""
        for rows in self.rows.values():
            rows.finish()
        self.solid_starts = np.sort(np.concatenate([self.solid_starts, *self._solid_parts]))
        self.endsolid_at = np.sort(np.concatenate([self.endsolid_at, *self._endsolid_parts]))
        self._solid_parts, self._endsolid_parts = [], []
        order = sorted(range(len(self.extra_pos)), key=self.extra_pos.__getitem__)
        self.extra_pos = [self.extra_pos[i] for i in order]
        self.extra_text = [
            self.extra_text[i] if self.extra_text[i] is not None else self.source.line(p, self.size, b"\r\n")
            for i, p in zip(order, self.extra_pos, strict=True)
        ]


def _fill(fh: BinaryIO, view: memoryview) -> int:
    """Read into ``view`` until it is full or the file ends; the number of bytes read."""
    done = 0
    while done < len(view):
        got = fh.readinto(view[done:])
        if not got:
            break
        done += got
    return done


def _choose_width(rows: np.ndarray, cr: bool) -> int:
    """The narrowest row width that holds these (the first chunk's) vertex lines."""
    ends = rows == 0x0A
    if cr:
        ends |= rows == 0x0D
    fits = ends.any(axis=1)
    longest = int(ends[fits].argmax(axis=1).max()) if fits.any() else 0
    return next((w for w in _ROW_WIDTHS if longest + 8 < w), _ROW_MAX)  # 8 bytes to spare


def _parse_lines(texts: list[bytes]) -> np.ndarray | None:
    if any(len(t.split()) != 3 for t in texts):
        return None
    return _parse(b" ".join(texts), len(texts))


class _VertexLines:
    """Every vertex line: where it starts (in file order) and, if all parse, the values."""

    def __init__(self, scan: _Scan) -> None:
        scan.finish()
        self.scan = scan
        parts = sorted(scan.rows.values(), key=lambda r: -len(r.pos)) or [_Rows(_ROW_MAX)]  # or no vertex line
        main, others = parts[0], [r for r in parts[1:] if len(r.pos)]
        self.position, self.values = main.pos, main.values
        self.ok = self.values is not None and all(r.values is not None for r in others)
        extra_values = _parse_lines(scan.extra_text) if scan.extra_text else np.zeros((0, 3))
        self.ok = self.ok and extra_values is not None
        if others or scan.extra_pos:  # rare: lines of the other width or longer; slot them in
            pos = np.concatenate([r.pos for r in others] + [np.array(scan.extra_pos, dtype=np.int64)])
            order = np.argsort(pos, kind="stable")
            at = np.searchsorted(self.position, pos[order])
            self.position = np.insert(self.position, at, pos[order])
            if self.ok:
                with np.errstate(over="ignore"):  # beyond float32 becomes inf, refused as non-finite
                    values = np.concatenate([r.values for r in others] + [extra_values.astype(np.float32)])
                self.values = np.insert(self.values, at, values[order], axis=0)
        if not self.ok:
            self.values = None

    def parses(self, lo: int, hi: int) -> bool:
        """Do all vertex lines starting in ``[lo, hi)`` hold exactly three numbers?"""
        if not all(r.parses(lo, hi) for r in self.scan.rows.values()):
            return False
        a, b = bisect.bisect_left(self.scan.extra_pos, lo), bisect.bisect_left(self.scan.extra_pos, hi)
        return _parse_lines(self.scan.extra_text[a:b]) is not None


def _cut_short(source: _Source, a: int, b: int) -> bool:
    """Does the solid in ``[a, b)``, which holds no ``endsolid``, stop inside a facet?

    ``endsolid`` may be missing (common and harmless), but a solid whose last line is
    neither ``endsolid`` nor ends a facet was cut short. Without this check a file cut after
    ``outer loop`` or after a whole ``vertex`` triple loads with a facet silently missing, and
    one cut inside a vertex line is reported as ``corrupt`` instead of ``truncated``. Only the
    last line is read, and only for solids without ``endsolid``, so a 300 MB file pays
    nothing for it.
    """
    end = source.last_non(a, b, _TRAILING)
    newline = source.rfind(b"\n", a, end)
    if newline < 0:
        return False  # a one-line file: nothing after the solid line, or all on one line
    last = source.read(newline + 1, end).strip().lower()
    return not (last.startswith(b"endsolid") or last.endswith(b"endfacet"))


MAX_SOLID_NAMES = 1000  # names kept (of the first solids that hold facets); every facet keeps its solid


def load_ascii(blob: Blob, ctx: LoadContext) -> Mesh:
    source = _Source(blob)
    try:
        return _load_ascii(blob, ctx, source)
    finally:
        source.close()


def _load_ascii(blob: Blob, ctx: LoadContext, source: _Source) -> Mesh:
    scan = _Scan(blob, source)
    lines = _VertexLines(scan)
    if not len(lines.position):
        return _load_tokens(blob, ctx, source, scan.size)  # no vertex line: all on a few lines?
    starts = scan.solid_starts if len(scan.solid_starts) else np.zeros(1, dtype=np.int64)
    starts[0] = 0
    ends = np.append(starts[1:], scan.size)
    counts = np.diff(np.searchsorted(lines.position, np.append(starts, scan.size)))
    # The checks go in file order, solid by solid (cut short, a bad vertex line, a partial
    # triangle, the triangle limit): the first problem is the one reported. Whole-array
    # tests find the first solid with a partial triangle or past the limit; only solids
    # before it that may be cut short (no ``endsolid``) or may hold a bad line are visited.
    at = np.searchsorted(scan.endsolid_at, starts)
    closed = at < len(scan.endsolid_at)
    closed[closed] = scan.endsolid_at[at[closed]] + 8 <= ends[closed]
    visit = ~closed & (counts > 0)
    visit[-1] = not closed[-1]
    if not lines.ok:
        visit |= counts > 0
    hard = np.flatnonzero((counts % 3 != 0) | (np.cumsum(counts // 3) > ctx.limits.max_triangles))
    stop = int(hard[0]) if len(hard) else len(starts)
    for i in np.flatnonzero(visit[: stop + 1]).tolist():
        a, b = int(starts[i]), int(ends[i])
        if not closed[i] and _cut_short(source, a, b):
            raise UnreadableInput(TRUNCATED, "the file ends inside a facet")
        if not lines.ok and not lines.parses(a, b):
            raise UnreadableInput(CORRUPT, "a vertex line does not hold exactly three numbers")
    if stop < len(starts):
        if counts[stop] % 3:
            raise UnreadableInput(CORRUPT, f"{counts[stop]} vertices is not a whole number of triangles")
        ctx.check_triangles(int(counts.sum() // 3))
    if lines.values is None:  # pragma: no cover - parses() finds the line in its solid above
        raise UnreadableInput(CORRUPT, "a vertex line does not hold exactly three numbers")
    full = np.flatnonzero(counts)
    group_ids = None
    if len(full) > 1:
        group_ids = np.repeat(np.arange(len(full), dtype=np.int32), counts[full] // 3)
    names = [_solid_name(source, int(starts[i]), int(ends[i])) for i in full[:MAX_SOLID_NAMES].tolist()]
    return build_mesh(lines.values, None, blob, "stl-ascii", ctx, group_ids, names)


def _solid_name(source: _Source, a: int, b: int) -> str:
    """What follows ``solid`` on the solid's first line (at most 256 bytes of it)."""
    return source.line(a, min(b, a + 256 + 16)).strip()[5:].strip()[:256].decode("utf-8", "replace")


# ----------------------------------------------------------------------------- one-line ASCII

_TOKEN_PIECE = 1 << 20
_KEYWORDS = {b"solid": 0, b"facet": 1, b"vertex": 2, b"endsolid": 3, b"endfacet": 4}
_NAME_TOKENS = 64  # tokens of a solid's name kept


def _load_tokens(blob: Blob, ctx: LoadContext, source: _Source, size: int) -> Mesh:
    """An ASCII STL whose ``vertex`` keywords never start a line (all on one line, or each
    facet on one): read as whitespace-separated tokens, as trimesh and numpy-stl do.

    A vertex is ``vertex`` and the three tokens after it, when it follows a ``facet`` of its
    solid (so a solid named ``my vertex art`` has no vertex in its name). The file is read
    in pieces of about a MiB; a token cut by a piece's end, and a vertex whose numbers are
    in the next piece, are carried over, so memory is a few times a piece plus the corners.
    """
    corners: list[np.ndarray] = []
    solid_of: list[np.ndarray] = []
    names: list[str] = []
    name: list[bytes] | None = None
    solid, in_name, naming, last_kind = -1, True, True, -1
    carry: list[bytes] = []
    tail = b""
    total = 0
    for lo in range(0, size, _TOKEN_PIECE):
        piece = tail + source.read(lo, min(size, lo + _TOKEN_PIECE))
        tail = b""
        if lo + _TOKEN_PIECE < size and piece and not piece[-1:].isspace():  # a token may go on
            cut = max(piece.rfind(c) for c in (b" ", b"\t", b"\n", b"\r", b"\x0b", b"\x0c")) + 1
            if len(piece) - cut > 4 * _TOKEN_PIECE:
                raise UnreadableInput(CORRUPT, "a token of more than 4 MiB")
            piece, tail = piece[:cut], piece[cut:]
        toks = carry + piece.split()
        carry = []
        vertex_at: list[int] = []
        vertex_solid: list[int] = []
        for i, tok in enumerate(toks):
            kind = _KEYWORDS.get(tok.lower()) if len(tok) <= 8 else None
            if kind is None or (kind == 2 and in_name):
                if naming and name is not None and len(name) < _NAME_TOKENS:
                    name.append(tok)  # a word of the solid's name
                continue
            last_kind = kind
            if kind == 0:
                solid += 1
                in_name = naming = True
                if name is not None:
                    names.append(b" ".join(name)[:256].decode("utf-8", "replace"))
                name = [] if len(names) < MAX_SOLID_NAMES else None
            elif kind == 1:
                in_name = naming = False
            elif kind == 2:
                vertex_at.append(i)
                vertex_solid.append(max(solid, 0))
            elif kind == 3:  # the words after ``endsolid`` repeat the name: no vertex there
                in_name, naming = True, False
        if vertex_at and vertex_at[-1] + 3 >= len(toks):  # its numbers are (maybe) in the next piece
            if lo + _TOKEN_PIECE >= size:
                raise UnreadableInput(TRUNCATED, "the file ends inside a vertex")
            carry = toks[vertex_at[-1] :]
            vertex_at.pop()
            vertex_solid.pop()
            in_name = False  # the carried vertex is read again, after its facet
        if not vertex_at:
            continue
        words = [toks[i + k] for i in vertex_at for k in (1, 2, 3)]
        values = parse_numbers(b" ".join(words), np.float64, "vertex coordinate")
        if len(values) != len(words):
            raise UnreadableInput(CORRUPT, "a vertex without three numbers")
        with np.errstate(over="ignore"):  # beyond float32 becomes inf, refused as non-finite
            corners.append(values.astype(np.float32))
        solid_of.append(np.array(vertex_solid, dtype=np.int32))
        total += len(vertex_at)
        ctx.check_triangles(total // 3)
    if name is not None:
        names.append(b" ".join(name)[:256].decode("utf-8", "replace"))
    if not total:
        raise UnreadableInput(EMPTY, "ASCII STL with no facets")
    of = np.concatenate(solid_of)
    per_solid = np.bincount(of)
    if np.any(per_solid % 3):
        if last_kind not in (3, 4):
            raise UnreadableInput(TRUNCATED, "the file ends inside a facet")
        bad = int(per_solid[np.flatnonzero(per_solid % 3)[0]])
        raise UnreadableInput(CORRUPT, f"{bad} vertices is not a whole number of triangles")
    used, group_ids = np.unique(of[::3], return_inverse=True)
    names = [names[i] for i in used[:MAX_SOLID_NAMES].tolist() if i < len(names)]
    values = np.concatenate(corners).reshape(-1, 3)
    return build_mesh(values, None, blob, "stl-ascii", ctx, group_ids.astype(np.int32), names)


# ----------------------------------------------------------------------------- sniffing

_ASCII_RE = re.compile(rb"\A\s*solid", re.I)


def _binary_size(p: Probe) -> int | None:
    """The size a binary STL with the count in this head would have (None: too short)."""
    if p.blob.size < STL_PREAMBLE:
        return None
    (count,) = struct.unpack("<I", p.head[STL_HEADER_BYTES:STL_PREAMBLE])
    return STL_PREAMBLE + STL_RECORD_BYTES * count


def _sniff(p: Probe) -> str | None:
    """The binary/ASCII question - the classic trap is a binary STL whose 80-byte header
    starts with ``solid``. ASCII when it starts with ``solid`` and is text, unless the size
    is exactly a binary STL's and no facet is written; binary when the size is exactly that
    of its declared triangle count, whatever the header says (a PNG's magic, say)."""
    binary_size = _binary_size(p)
    if _ASCII_RE.match(p.head) and looks_text(p.head[:4096]):
        text_like = re.search(rb"facet|endsolid", p.head[:4096], re.I) is not None
        if text_like or binary_size != p.blob.size:
            return "stl-ascii"
    return "stl-binary" if binary_size == p.blob.size else None


def _sniff_records(p: Probe) -> str | None:
    """A truncated or padded binary STL (the loader says which): binary content whose first
    records hold ordinary float32 numbers. Runs after binary model formats' magic numbers;
    an image's magic (zero padding after it is no evidence of triangles) needs non-zero ones."""
    if _binary_size(p) is None or p.looks_text:
        return None
    return "stl-binary" if _plausible_records(p.head, non_model_magic(p.head, p.blob.size) is not None) else None


def _plausible_records(head: bytes, need_nonzero: bool) -> bool:
    """Do the first complete records hold finite, ordinary float32 numbers?"""
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


FORMATS = (
    Format(
        "stl-binary",
        "STL binary",
        10,
        "declared triangle count checked against the file size before allocation; a header starting with "
        "`solid` (or with an image's magic) is still binary when the size says so",
        loader=load_binary,
    ),
    Format(
        "stl-ascii",
        "STL ASCII",
        11,
        "any whitespace, CRLF, upper/lower case, missing `endsolid`; several `solid` blocks are kept as names "
        "(bodies come from the geometry); all tokens on one line is read",
        loader=load_ascii,
    ),
)
SNIFFERS = (
    Sniffer(400, _sniff, frozenset({"stl-binary", "stl-ascii"})),
    Sniffer(420, _sniff_records, frozenset({"stl-binary"})),
)
