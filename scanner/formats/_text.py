"""Vectorised helpers for line-oriented text formats (OBJ, PLY ascii, OFF).

Parsing numbers token by token in Python costs about a microsecond each; these helpers work
on whole blocks of lines with numpy, so a million-face file parses in well under a second.

:func:`parse_numbers` hands text to numpy's C parser (``np.fromstring``), whose behaviour -
which strings count as numbers, ``nan``, ``inf``, overflow - is the reference. It still costs
about 400 ns per float, so :func:`parse_lines` first tries a faster exact path for the plain
decimals almost every writer emits (``-12``, ``0.5``, ``-3.25``) and gives up, returning
``None``, on anything else, so that the caller falls back to the reference.

Text is processed in pieces of about :data:`PIECE` bytes cut at line ends, which keeps the
per-byte and per-token temporaries small whatever the file size.
"""

from __future__ import annotations

import warnings

import numpy as np

from scanner.errors import CORRUPT, UnreadableInput
from scanner.mesh import _splitmix

PIECE = 1 << 20  # bytes of text per piece: small temporaries (0.25 to 4 MiB measured about as fast)
MAX_TOKEN = PIECE  # no number is this long: a longer token is refused rather than tokenized whole
FAN_STEP = 1 << 16  # triangles made per step of a general fan triangulation

_PAD = 16  # bytes before a piece's text: a window of 16 bytes ends at each token's end
_SLOW_SHARE = 2  # more than 1 token in this many needing numpy's parser: parse the whole text with it

# byte lanes of a little-endian uint64 word (for :func:`decimals`)
_U = np.uint64
_ZEROS = _U(0x3030303030303030)  # eight ASCII '0'
_HIGH_NIBBLES = _U(0xF0F0F0F0F0F0F0F0)
_SIXES = _U(0x0606060606060606)
_LOW7 = _U(0x7F7F7F7F7F7F7F7F)
_ONES = _U(0x0101010101010101)
_LOWER = _U(0x2020202020202020)
_RANKS = _U(0x0706050403020100)  # byte i holds i: picks a flagged byte's distance from the top
# for k token bytes at the top of a word: keep them, and fill the bytes below with '0'
_KEEP_TOP = np.array([((1 << (8 * k)) - 1) << (64 - 8 * k) for k in range(9)], dtype=_U)
_FILL_LOW = np.array([int("30" * (8 - k), 16) if k < 8 else 0 for k in range(9)], dtype=_U)
_AT_FIRST = np.array([1 << (8 * (8 - k)) if k else 0 for k in range(9)], dtype=_U)  # the token's first byte
_POW10_INT = 10 ** np.arange(17, dtype=np.int64)
_POW10 = 10.0 ** np.arange(23)  # all exact doubles
_MAX_EXACT = 2**53  # and so are all integers up to this


def parse_numbers(text: bytes, dtype: type = np.float64, what: str = "number") -> np.ndarray:
    """All whitespace-separated numbers in ``text``; anything else is ``corrupt``."""
    if not text.strip():
        return np.zeros(0, dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            values = np.fromstring(text, dtype=dtype, sep=" ")
        except (ValueError, DeprecationWarning):
            values = None
    if values is None:
        raise UnreadableInput(CORRUPT, f"a {what} that is not a number")
    return values


def tokens_per_line(joined: bytes, n_lines: int) -> np.ndarray:
    """How many whitespace-separated tokens each ``\\n``-separated line of ``joined`` has.

    Always ``n_lines`` counts: lines past ``n_lines`` are ignored, missing ones count 0.
    Token starts are located against the newline positions (a binary search), rather than
    numbering every byte by its line, which needed an int64 per byte.
    """
    if n_lines == 0:
        return np.zeros(0, dtype=np.int64)
    counts = []
    for _, raw in _pieces(joined):
        starts, _ = token_bounds(raw)
        counts.append(_per_line(starts, np.flatnonzero(raw == 10)))
    return _fit(counts, n_lines)


def parse_lines(
    text: bytes, n_lines: int, dtype: type = np.float64, cut_at: bytes | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """``(tokens_per_line(text, n_lines), parse_numbers(text, dtype))`` in one pass, or
    ``None`` when some token is not a number that the fast path reads exactly - the caller
    then uses those two functions, so errors and oddities stay numpy's.

    ``cut_at`` (one byte, e.g. ``b"/"``) ends each token at its first such byte, dropping
    tokens that start with it: OBJ's ``v/vt/vn`` corners read as their ``v``.

    Plain decimals are read eight bytes at a time (see :func:`decimals`); the few other
    tokens (``1e-05``, ``nan``, long mantissas) go to ``np.fromstring`` themselves, so every
    value is exactly what ``parse_numbers`` would give.
    """
    integer = np.issubdtype(dtype, np.integer)
    counts, values = [], []
    for _, raw in _pieces(text):
        padded = np.empty(_PAD + len(raw), dtype=np.uint8)
        padded[:_PAD] = 32
        padded[_PAD:] = raw
        starts, ends = token_bounds(raw)
        if cut_at is not None:
            starts, ends = _cut_tokens(raw, starts, ends, cut_at[0])
        counts.append(_per_line(starts, np.flatnonzero(raw == 10)))
        piece_values = _parse_tokens(padded, starts + _PAD, ends + _PAD, integer)
        if piece_values is None:
            return None
        values.append(piece_values.astype(dtype, copy=False))
    return _fit(counts, n_lines), np.concatenate(values) if values else np.zeros(0, dtype=dtype)


def as_integers(values: np.ndarray, what: str) -> np.ndarray:
    """Float values that must be integers (counts, indices written as ``3.0``) as int64;
    NaN, inf or a fraction is ``corrupt``. Magnitudes past 2**62 are clipped there (not cast
    to garbage), so range checks afterwards report them as the bad counts or indices they are."""
    if values.dtype.kind in "iu":
        return values.astype(np.int64, copy=False)
    if not np.all(np.isfinite(values) & (values == np.round(values))):
        raise UnreadableInput(CORRUPT, f"non-integer {what}")
    return np.clip(values, -(2.0**62), 2.0**62).astype(np.int64)


def token_bounds(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) offsets of the whitespace-separated tokens of ``raw`` (uint8)."""
    space = (raw == 32) | (raw - np.uint8(9) <= 4)  # ' ' or \t \n \v \f \r (9..13)
    edge = np.diff((~space).view(np.int8), prepend=np.int8(0), append=np.int8(0))
    return np.flatnonzero(edge == 1), np.flatnonzero(edge == -1)


def fan_count(counts: np.ndarray) -> int:
    """How many triangles :func:`fan_triangulate` makes of polygons of these corner counts:
    callers check it against the triangle limit before anything that size is allocated."""
    return int(np.maximum(np.asarray(counts, dtype=np.int64) - 2, 0).sum())


def fan_triangulate(
    indices: np.ndarray, counts: np.ndarray, per_polygon: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Polygons (flat ``indices``, ``counts`` per polygon) to triangles by fans.

    Returns (triangles (T, 3) of ``indices``' dtype, ``per_polygon`` repeated for each
    triangle of its polygon, or None when not given). Polygons of fewer than three corners
    are dropped, as every major loader does.

    The triangles are written straight into their (T, 3) array, :data:`FAN_STEP` triangles
    at a time, so that the only other allocation is a small index buffer: a single polygon
    of millions of corners costs its triangle array, not several arrays of that length.
    """
    counts = np.asarray(counts, dtype=np.int64)
    per = np.maximum(counts - 2, 0)
    spread = None if per_polygon is None else np.repeat(per_polygon, per)
    if len(counts) and counts.min() == counts.max():  # all polygons alike: reshape, no index arrays
        k = int(counts[0])
        if k < 3:
            return np.zeros((0, 3), dtype=indices.dtype), spread
        if k == 3:
            return indices.reshape(-1, 3), spread
        poly = indices.reshape(-1, k)
        tris = np.empty((len(counts), max(k - 2, 0), 3), dtype=indices.dtype)
        tris[:, :, 0] = poly[:, :1]
        tris[:, :, 1] = poly[:, 1:-1]
        tris[:, :, 2] = poly[:, 2:]
        return tris.reshape(-1, 3), spread
    ends = np.cumsum(per)  # triangles up to and including each polygon
    total = int(ends[-1]) if len(ends) else 0
    tris = np.empty((total, 3), dtype=indices.dtype)
    if total == 0:
        return tris, spread
    # triangle t of polygon k uses corners first[k], first[k] + 1 + (t - ends[k] + per[k]), + 1
    shift = np.cumsum(counts) - counts + 1 - (ends - per)
    first = np.cumsum(counts) - counts
    for lo in range(0, total, FAN_STEP):
        t = np.arange(lo, min(total, lo + FAN_STEP))
        k = np.searchsorted(ends, t, side="right")
        at = t + shift[k]
        tris[lo : lo + len(t), 0] = indices[first[k]]
        tris[lo : lo + len(t), 1] = indices[at]
        at += 1
        tris[lo : lo + len(t), 2] = indices[at]
    return tris, spread


def record_blocks(text: bytes, start: int, counts: list[int]) -> list[tuple[int, int]]:
    """Where consecutive blocks of non-blank lines lie: for each ``counts[i]``, the byte range
    ``[a, b)`` of ``text`` (from ``start``) holding the next ``counts[i]`` lines that have a
    token, ``a`` the start of the first and ``b`` the end of the last (before its ``\\n``).

    The list stops at the first block the text does not hold in full. Lines are counted piece
    by piece, so memory stays small however many lines (or blank lines) the text has.
    """
    out: list[tuple[int, int]] = []
    block, have, a = 0, 0, -1
    while block < len(counts) and counts[block] == 0:
        out.append((start, start))
        block += 1
    counted = False  # the piece before ended inside a line that has a token (already counted)
    for base, raw in _pieces(text, start):
        if block >= len(counts):
            break
        starts, _ = token_bounds(raw)
        newlines = np.flatnonzero(raw == 10)
        per_line = _per_line(starts, newlines)
        if counted:
            per_line[0] = 0  # the rest of that line
        full = np.flatnonzero(per_line)  # the lines of this piece with a token
        line_start = np.concatenate([[0], newlines + 1])
        line_end = np.append(newlines, len(raw))
        used = 0
        while block < len(counts) and used < len(full):
            take = min(counts[block] - have, len(full) - used)
            if a < 0:
                a = base + int(line_start[full[used]])
            used += take
            have += take
            if have == counts[block]:
                last = int(full[used - 1])
                b = base + int(line_end[last])
                if last == len(newlines):  # the piece's last line: it may go on in the next pieces
                    b = text.find(b"\n", b)
                    b = len(text) if b < 0 else b
                out.append((a, b))
                block, have, a = block + 1, 0, -1
                while block < len(counts) and counts[block] == 0:
                    out.append((b, b))
                    block += 1
        counted = bool(per_line[-1] > 0) or (counted and len(newlines) == 0)
    return out


def list_items(values: np.ndarray, at: np.ndarray, n: np.ndarray) -> np.ndarray:
    """``values[at[i] : at[i] + n[i]]`` for every ``i``, concatenated (n >= 0)."""
    total = int(n.sum())
    if total == 0:
        return values[:0]
    if n.min() == n.max():
        return values[at[:, None] + np.arange(int(n[0]))].reshape(-1)
    take = np.repeat(at - (np.cumsum(n) - n), n)
    take += np.arange(total)
    return values[take]


mix64 = _splitmix
"""splitmix64's finaliser (one implementation: :func:`scanner.mesh._splitmix`)."""


def verify_groups(rows: np.ndarray, first: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check every row against the first row of its hash group; one that differs becomes a
    group of its own. Returns (first row of each group, group of each row)."""
    same = rows == np.take(rows, first[group], axis=0)
    if not same.all():
        differ = np.flatnonzero(~same.all(axis=1))
        group[differ] = len(first) + np.arange(len(differ))
        first = np.concatenate([first, differ])
    return first, group


def group_hashes(hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows with equal hashes: (first row of each group, group of each row). Consumes ``hashes``.

    Sorting is the cost, and numpy's SIMD ``sort`` is several times faster than ``argsort``
    or ``np.unique``: the row index is packed into the low bits of the hash and the packed
    keys are sorted (as :func:`scanner.mesh.weld` does). Truncating the hash merges a few
    more rows into a group, which the byte comparison afterwards sorts out.
    """
    n = len(hashes)
    shift = np.uint64(max(1, (n - 1).bit_length()))
    key = hashes
    key >>= shift
    key <<= shift
    key |= np.arange(n, dtype=np.uint64)
    key.sort()
    order = (key & ((np.uint64(1) << shift) - np.uint64(1))).view(np.int64)
    key >>= shift
    starts = np.empty(n, dtype=bool)
    starts[0] = True
    np.not_equal(key[1:], key[:-1], out=starts[1:])
    ids = np.cumsum(starts, out=key.view(np.int64))
    ids -= 1
    group = np.empty(n, dtype=np.intp)
    group[order] = ids
    return order[starts], group


# ----------------------------------------------------------------------------- internals


def _pieces(text: bytes, start: int = 0):
    """``(offset, uint8 view)`` of ``text[start:]`` in pieces of about PIECE bytes.

    Pieces end at a ``\\n`` where one is near; a line longer than a piece is cut at a
    whitespace byte inside it (per-line counts then add up over the cut, see :func:`_fit`),
    so no piece, and none of the per-byte temporaries made from it, is much larger than
    PIECE whatever the file. A token longer than :data:`MAX_TOKEN` is not a number: refused.
    """
    raw = np.frombuffer(text, dtype=np.uint8)
    while len(text) - start > PIECE:
        end = text.find(b"\n", start + PIECE - 1, start + 2 * PIECE) + 1
        if end == 0:  # a long line: cut after a whitespace byte
            window = raw[start + PIECE - 1 : start + PIECE - 1 + MAX_TOKEN]
            space = np.flatnonzero((window == 32) | (window - np.uint8(9) <= 4))
            if len(space) == 0:
                raise UnreadableInput(CORRUPT, f"a token of more than {MAX_TOKEN} bytes")
            end = start + PIECE + int(space[0])
        yield start, raw[start:end]
        start = end
    yield start, raw[start:]


def _per_line(starts: np.ndarray, newlines: np.ndarray) -> np.ndarray:
    """Tokens on each of the ``len(newlines) + 1`` lines: those starting before each newline."""
    cut = np.searchsorted(starts, newlines)
    return np.diff(cut, prepend=0, append=len(starts))


def _fit(piece_counts: list[np.ndarray], n_lines: int) -> np.ndarray:
    """Join per-piece line counts (each piece's last entry is the line after its final
    newline, which the next piece continues) and make them exactly ``n_lines`` long."""
    for before, after in zip(piece_counts[:-1], piece_counts[1:], strict=True):
        after[0] += before[-1]  # a line cut between pieces (0 when the piece ended at a \n)
    counts = np.concatenate([c[:-1] for c in piece_counts[:-1]] + [piece_counts[-1]])
    if len(counts) < n_lines:
        counts = np.concatenate([counts, np.zeros(n_lines - len(counts), dtype=counts.dtype)])
    return counts[:n_lines]


def _cut_tokens(raw: np.ndarray, starts: np.ndarray, ends: np.ndarray, byte: int) -> tuple[np.ndarray, np.ndarray]:
    """End every token at its first ``byte``; tokens left empty are dropped."""
    at = np.flatnonzero(raw == byte)
    if len(at) == 0:
        return starts, ends
    token = np.searchsorted(starts, at, side="right") - 1  # ``byte`` is never a space: inside a token
    first = np.ones(len(at), dtype=bool)
    first[1:] = token[1:] != token[:-1]
    ends = ends.copy()
    ends[token[first]] = at[first]
    keep = ends > starts
    return (starts, ends) if keep.all() else (starts[keep], ends[keep])


def _parse_tokens(padded: np.ndarray, starts: np.ndarray, ends: np.ndarray, integer: bool) -> np.ndarray | None:
    """Values of the tokens ``padded[starts[i]:ends[i]]`` (int64 or float64; ``padded`` has
    at least 16 bytes before the first token), exactly as ``np.fromstring`` reads them, or
    ``None`` if too many need ``np.fromstring`` or one fails there."""
    if len(starts) == 0:
        return np.zeros(0, dtype=np.int64 if integer else np.float64)
    values, ok = decimals(padded, starts, ends, integer)
    if not ok.all():
        slow = np.flatnonzero(~ok)
        if len(slow) * _SLOW_SHARE > len(starts):
            return None
        tokens = [padded[s:e].tobytes() for s, e in zip(starts[slow].tolist(), ends[slow].tolist(), strict=True)]
        # numpy reads each token on its own - except an integer's lone sign, which takes the
        # number after the spaces that follow it ("- 5" is -5, a final "-" is 0)
        if b"-" in tokens or b"+" in tokens:
            return None
        try:
            parsed = parse_numbers(b" ".join(tokens), values.dtype)
        except UnreadableInput:
            return None
        if len(parsed) != len(slow):
            return None
        values[slow] = parsed
    return values


def decimals(
    flat: np.ndarray, starts: np.ndarray, ends: np.ndarray, integer: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The tokens ``flat[starts[i]:ends[i]]`` that are plain decimals of up to 16 bytes:
    (values, ok). The one exact fast reader of numbers in text, for every text format.

    ``integer``: ``-?[0-9]+``, as int64. Otherwise ``-?[0-9]*.?[0-9]*`` with a digit, then
    optionally ``[eE][+-]?[0-9]+``, as float64.

    Values are exact where ok - bit for bit what ``np.fromstring`` (Python's correctly
    rounded strtod) returns: a mantissa of at most 2**53 and a power of ten of at most 22
    are both exact doubles, so the one IEEE multiplication or division that joins them is
    correctly rounded too (Clinger's fast path). Anything else is left to the caller.

    A token is read as the two little-endian words that end at its last byte; the bytes
    before it and its '-' and '.' become '0', leaving 16 ASCII digits that a few
    multiplications turn into an integer, 8 at a time (SWAR). ``flat`` needs at least 16
    bytes before the first token.
    """
    words = np.ndarray((len(flat) - 7,), dtype="<u8", buffer=flat, strides=(1,))  # at any offset
    with np.errstate(over="ignore"):
        length = ends - starts
        first = flat[starts]
        if integer:
            return _integers(words, ends, length, first)
        fits = length <= 16
        low, high, n_low, n_high = _token_words(words, starts, ends)
        e_low, e_high = _flag_bytes(low | _LOWER, 0x65), _flag_bytes(high | _LOWER, 0x65)  # e or E
        has_e = (e_low | e_high) != 0
        mantissa, after, ok = _significand(low, high, n_low, n_high, first, length)
        value = mantissa.astype(np.float64)
        value /= _POW10[after]
        ok &= fits & ~has_e
        if has_e.any():  # significand before the e, exponent after it
            one = ((e_low == 0) | (e_high == 0)) & ((e_low & (e_low - _U(1))) == 0)
            one &= (e_high & (e_high - _U(1))) == 0
            i = np.flatnonzero(has_e & fits & one)
            el, eh = e_low[i], e_high[i]
            at = np.where(eh != 0, ends[i] - 9 - _from_top(eh), ends[i] - 1 - _from_top(el))
            m, aft, ok_i = _significand(*_token_words(words, starts[i], at), first[i], at - starts[i])
            exp, ok_e = _exponent(words, flat, at + 1, ends[i])
            scale = exp - aft
            power = _POW10[np.minimum(np.abs(scale), 22)]
            v = m.astype(np.float64)
            value[i] = np.where(scale >= 0, v * power, v / power)
            ok[i] = ok_i & ok_e & (np.abs(scale) <= 22)
        value.view(_U)[...] |= (first == 0x2D).astype(_U) << _U(63)  # the sign (and -0.0)
    return value, ok


def _integers(
    words: np.ndarray, ends: np.ndarray, length: np.ndarray, first: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``-?[0-9]+`` of up to 16 bytes: (values as int64, ok). Indices and counts are short,
    so when every token fits one word the second is never read."""
    if len(length) and length.max() <= 8:
        negative = first == 0x2D
        low = words[ends - 8] & _KEEP_TOP[length]
        low |= _FILL_LOW[length]
        low ^= _AT_FIRST[length] * _U(0x2D ^ 0x30) * negative
        ok = _all_digits(low)
        number = _eight(low).view(np.int64)
    else:
        low, high, n_low, n_high = _token_words(words, ends - length, ends)
        negative = _unsign(low, high, n_low, n_high, first)
        ok = (length <= 16) & _all_digits(low) & _all_digits(high)
        number = (_eight(high) * _U(10**8) + _eight(low)).view(np.int64)
    ok &= length > negative  # not a lone '-'
    np.negative(number, out=number, where=negative)
    return number, ok


def _token_words(words: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, ...]:
    """The last 8 bytes of each token (low) and the 8 before (high), '0' where not the token."""
    length = ends - starts
    n_low = np.minimum(length, 8)
    n_high = np.clip(length - 8, 0, 8)
    low = words[ends - 8] & _KEEP_TOP[n_low]
    low |= _FILL_LOW[n_low]
    high = words[ends - 16] & _KEEP_TOP[n_high]
    high |= _FILL_LOW[n_high]
    return low, high, n_low, n_high


def _unsign(low: np.ndarray, high: np.ndarray, n_low: np.ndarray, n_high: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Turn each token's leading '-' into '0' (in place); which tokens had one."""
    negative = first == 0x2D
    in_high = n_high > 0
    sign = _U(0x2D ^ 0x30)
    low ^= _AT_FIRST[n_low] * sign * (negative & ~in_high)
    high ^= _AT_FIRST[n_high] * sign * (negative & in_high)
    return negative


def _significand(
    low: np.ndarray, high: np.ndarray, n_low: np.ndarray, n_high: np.ndarray, first: np.ndarray, length: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``-?[0-9]*.?[0-9]*`` with a digit: (its digits as an integer, digits after the point, ok)."""
    negative = _unsign(low, high, n_low, n_high, first)
    dot_low, dot_high = _flag_bytes(low, 0x2E), _flag_bytes(high, 0x2E)
    ok = ((dot_low == 0) | (dot_high == 0)) & ((dot_low & (dot_low - _U(1))) == 0)
    ok &= (dot_high & (dot_high - _U(1))) == 0
    low ^= (dot_low >> _U(7)) * _U(0x2E ^ 0x30)
    high ^= (dot_high >> _U(7)) * _U(0x2E ^ 0x30)
    ok &= _all_digits(low) & _all_digits(high)
    has_dot = (dot_low | dot_high) != 0
    ok &= length - negative - has_dot > 0  # a digit
    number = (_eight(high) * _U(10**8) + _eight(low)).view(np.int64)  # the point read as a '0'
    after = np.minimum(np.where(dot_high != 0, _from_top(dot_high) + 8, _from_top(dot_low)), 16)
    tail = number % _POW10_INT[after]
    mantissa = np.where(has_dot, (number - tail) // 10 + tail, number)  # that '0' dropped
    ok &= mantissa <= _MAX_EXACT
    return mantissa, after, ok


def _exponent(words: np.ndarray, flat: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, ...]:
    """``[+-]?[0-9]+`` of at most 8 bytes: (value, ok). An empty exponent (a token ending in
    its ``e``) is not ok; when that ``e`` is the buffer's last byte its exponent starts past the
    end, so the first byte is read at the last one instead (its value is never used)."""
    low, _, n_low, _ = _token_words(words, starts, ends)
    first = flat[np.minimum(starts, len(flat) - 1)]
    signed = (first == 0x2D) | (first == 0x2B)
    low ^= _AT_FIRST[n_low] * (first.astype(_U) ^ _U(0x30)) * signed
    ok = (ends - starts <= 8) & (ends - starts > signed) & _all_digits(low)
    value = _eight(low).view(np.int64)
    return np.where(first == 0x2D, -value, value), ok


def _eight(w: np.ndarray) -> np.ndarray:
    """Eight ASCII digits, the first in the lowest byte, as an integer (Lemire's SWAR)."""
    v = w - _ZEROS
    v = v * _U(10) + (v >> _U(8))
    mask = _U(0x000000FF000000FF)
    return ((v & mask) * _U(100 + (1000000 << 32)) + ((v >> _U(16)) & mask) * _U(1 + (10000 << 32))) >> _U(32)


def _all_digits(w: np.ndarray) -> np.ndarray:
    """Is every byte of each word an ASCII digit (0x30..0x39)?"""
    return ((w & _HIGH_NIBBLES) == _ZEROS) & (((w + _SIXES) & _HIGH_NIBBLES) == _ZEROS)


def _flag_bytes(w: np.ndarray, byte: int) -> np.ndarray:
    """0x80 in each byte of ``w`` equal to ``byte``, 0 in the others (exact: no carries)."""
    x = w ^ (_ONES * _U(byte))
    return ~(((x & _LOW7) + _LOW7) | x | _LOW7)


def _from_top(flags: np.ndarray) -> np.ndarray:
    """For one byte flagged 0x80 (at byte b): 7 - b, the bytes above it; 0 if none (int64)."""
    return (((flags >> _U(7)) * _RANKS) >> _U(56)).view(np.int64)
