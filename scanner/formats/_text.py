"""Vectorised helpers for line-oriented text formats (OBJ, PLY ascii, OFF).

Parsing numbers token by token in Python costs about a microsecond each; these helpers hand
whole blocks of lines to numpy's C parser and count tokens per line on the raw bytes, so a
million-face file parses in well under a second.
"""

from __future__ import annotations

import warnings

import numpy as np

from scanner.errors import CORRUPT, UnreadableInput

_WS = np.zeros(256, dtype=bool)
_WS[[ord(c) for c in " \t\r\n\v\f"]] = True


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
    """How many whitespace-separated tokens each ``\\n``-separated line of ``joined`` has."""
    if n_lines == 0:
        return np.zeros(0, dtype=np.int64)
    raw = np.frombuffer(joined, dtype=np.uint8)
    is_ws = _WS[raw]
    starts = ~is_ws
    starts[1:] &= is_ws[:-1]
    line_of = np.cumsum(raw == 10)
    return np.bincount(line_of[starts], minlength=n_lines)[:n_lines]


def fan_triangulate(indices: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Polygons (flat ``indices``, ``counts`` per polygon) to triangles by fans.

    Returns (triangles (T, 3), polygon number of each triangle). Polygons of fewer than three
    corners are dropped, as every major loader does.
    """
    counts = np.asarray(counts, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    if len(counts) and np.all(counts == 3):
        return indices.reshape(-1, 3), np.arange(len(counts))
    per = np.maximum(counts - 2, 0)
    poly = np.repeat(np.arange(len(counts)), per)
    if len(poly) == 0:
        return np.zeros((0, 3), dtype=indices.dtype), poly
    within = np.arange(len(poly)) - np.repeat(np.cumsum(per) - per, per) + 1
    first = offsets[poly]
    tris = np.stack([indices[first], indices[first + within], indices[first + within + 1]], axis=1)
    return tris, poly
