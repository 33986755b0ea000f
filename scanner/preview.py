"""Previews: a small PNG of a mesh for a human reviewer, rendered with numpy alone.

Why its own renderer: a reviewer who sees a picture of the part decides without opening the
file in another program, and the worker that scanned the upload already holds the triangles,
so the picture is drawn there (under the same time and memory limits) and only the PNG is
kept - never the geometry. It must be deterministic (the same mesh gives the same bytes),
cheap next to the scan itself, and need nothing beyond numpy, so the base install has it.

What it draws: three orthographic views side by side (front, side, and a top iso view),
each shaded flat with a Lambert light and outlined where the depth jumps, with an optional
set of faces (the body that matched) in another colour, and a band under them giving the
bounding box extents ("52.0 × 18.0 × 9.00 mm"). The part is turned so that its longest
extent runs across the front view and its shortest away from it (a proper rotation, never a
mirror), which shows the largest silhouette whatever the file's up axis.

How: a z-buffer scanline rasteriser vectorised over (triangle, row) and (triangle, pixel)
pairs: each triangle's span of pixel centres on each row it crosses is expanded into pixels
and depth-tested with ``np.minimum.at``; a triangle too small to cover a pixel centre is
drawn as one pixel at its centroid, so dense meshes leave no holes. Past
:data:`MAX_TRIANGLES` the triangles are sampled in proportion to their area (seeded, so
deterministic); the pairs of one view are capped (:func:`pair_budget`), so a hostile mesh of
huge overlapping triangles costs bounded time too.

The PNG is written with zlib and struct (not Pillow, even when installed): the bytes then
depend on nothing but numpy and zlib.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

VIEW_SIZE = (160, 144)
"""Width and height of one view in pixels (three views side by side: 480 px wide)."""
BAND = 16
"""Height of the text band under the views."""
MAX_SIDE = 1024
"""Largest width or height of one view: the image's size is bounded whatever is asked."""
MAX_TRIANGLES = 200_000
"""Triangles drawn; a larger mesh is sampled in proportion to triangle area (measured in
``bench/preview.py``: a 1M-triangle mesh then costs about 0.4 CPU seconds, 1.4 drawn whole)."""
PAIRS_PER_PIXEL = 32
"""(triangle, row) and (triangle, pixel) pairs drawn in one view, per pixel of the view,
besides four per triangle: a closed surface covers its silhouette about twice (front and
back), a detailed part a few times more, so only a mesh of many huge overlapping triangles
gets past this - and the triangles after that point are left out: bounded work whatever the
triangles."""


def pair_budget(w: int, h: int, triangles: int) -> int:
    """Most pairs drawn in one view of (w, h) pixels of ``triangles`` triangles."""
    return PAIRS_PER_PIXEL * w * h + 4 * triangles


_CHUNK = 1 << 18
"""Rows drawn at once (their pixels are a small multiple): bounds the temporaries to tens of MB."""

BACKGROUND = (247, 247, 245)
BASE = (150, 168, 190)
HIGHLIGHT = (236, 112, 36)
INK = (40, 40, 40)
OUTLINE = 0.45
"""Brightness kept on outline pixels (depth discontinuities and the silhouette)."""
_LIGHT = np.array([-0.45, 0.6, -0.66])
"""Towards the light, in camera coordinates (right, up, forward): upper left, near the eye."""

VIEWS = (("front", (0.0, 1.0, 0.0)), ("side", (-1.0, 0.0, 0.0)), ("iso", (-1.0, 1.0, -0.8)))
"""Each view's name and viewing direction (from the eye into the scene) in the turned frame,
where x is the longest extent, z the middle one (up) and y the shortest (depth)."""


def render_preview(
    vertices: np.ndarray,
    faces: np.ndarray | None = None,
    highlight: np.ndarray | None = None,
    *,
    units: str = "mm",
    view_size: tuple[int, int] = VIEW_SIZE,
    max_triangles: int = MAX_TRIANGLES,
) -> bytes | None:
    """The PNG bytes of a mesh's preview, or None when nothing can be drawn (no finite
    triangle with area).

    ``vertices``: (V, 3) floats with ``faces`` (F, 3) indices, or with ``faces=None`` the
    corners of each triangle in turn ((3F, 3) or (F, 3, 3)). ``highlight``: a boolean mask
    over the faces (or their indices) drawn in :data:`HIGHLIGHT`. Triangles with a
    non-finite corner or a bad index are left out; ``units`` names the coordinates' unit in
    the size text."""
    corners, marked, area = _triangles(vertices, faces, highlight)
    if corners is None:
        return None
    drawn, marked, drawn_area = _budget(corners, marked, area, max(1, int(max_triangles)))
    frame = _frame(drawn, drawn_area)
    lo, hi = _bounds(corners, frame)  # of every triangle: the size is exact
    extents = hi - lo
    turn = _turn(extents)
    drawn = _rotated(turn @ frame, drawn) - (turn @ ((lo + hi) / 2))[None, :, None]
    w, h = (max(16, min(MAX_SIDE, int(s))) for s in view_size)
    cams = [_rotated(_camera(direction), drawn) for _, direction in VIEWS]
    scale = min(_fit(cam, w, h) for cam in cams)  # one scale: the views keep the part's proportions
    image = np.concatenate([_view(cam, marked, scale, w, h) for cam in cams], axis=1)
    band = np.empty((BAND, image.shape[1], 3), dtype=np.uint8)
    band[:] = BACKGROUND
    _text(band, size_text(extents, units), (BAND - 7) // 2, 6)
    for i, (name, _) in enumerate(VIEWS):
        _text(image, name, 4, i * w + 4, colour=(120, 120, 120))
    return encode_png(np.concatenate([image, band], axis=0))


def size_text(extents: np.ndarray, units: str) -> str:
    """The bounding box extents, largest first, as the band shows them."""
    return " × ".join(_number(float(x)) for x in sorted(extents, reverse=True)) + f" {units}"


def _number(x: float) -> str:
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 0.01:
        return f"{x:.2f}"
    return f"{x:.1e}"


def _triangles(
    vertices: np.ndarray, faces: np.ndarray | None, highlight: np.ndarray | None
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """The drawable triangles as (corner, axis, face) float64 coordinates - each of the nine
    rows contiguous, so per-corner arithmetic runs over long arrays - and their highlight
    mask and doubled area. Dropped: bad indices, non-finite corners, zero area."""
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    finite = np.isfinite(v[:, 0] + v[:, 1] + v[:, 2])  # inf - inf is nan: one test for all three
    vt = np.ascontiguousarray(v.T)
    if faces is None:
        n = len(v) // 3
        corners = vt[:, : 3 * n].reshape(3, n, 3).transpose(2, 0, 1)  # (corner, axis, face)
        ok = finite[0 : 3 * n : 3] & finite[1 : 3 * n : 3] & finite[2 : 3 * n : 3]
    else:
        f = np.asarray(faces).reshape(-1, 3).astype(np.int64, copy=False)
        n = len(f)
        ok = ((f >= 0) & (f < len(v))).all(axis=1)
        f = np.where(ok[:, None], f, 0)
        ok &= finite[f[:, 0]] & finite[f[:, 1]] & finite[f[:, 2]]
        corners = np.stack([vt[:, f[:, k]] for k in range(3)])
    marked = _mask(highlight, n)
    area = np.where(ok, _doubled_area(corners), 0.0)
    keep = area > 0
    if not keep.any():
        return None, marked[:0], area[:0]
    if keep.all():
        return np.ascontiguousarray(corners), marked, area
    return np.ascontiguousarray(corners[:, :, keep]), marked[keep], area[keep]


def _mask(highlight: np.ndarray | None, n: int) -> np.ndarray:
    """The highlighted faces as a boolean mask (given as a mask or as face indices)."""
    marked = np.zeros(n, dtype=bool)
    if highlight is not None:
        hl = np.asarray(highlight)
        if hl.dtype == bool and hl.shape == (n,):
            marked = hl.copy()
        elif hl.size and hl.dtype != bool:
            idx = hl.astype(np.int64).ravel()
            marked[idx[(idx >= 0) & (idx < n)]] = True
    return marked


def _doubled_area(c: np.ndarray) -> np.ndarray:
    """Twice each triangle's area, from (corner, axis, face) coordinates."""
    with np.errstate(over="ignore", invalid="ignore"):  # corners of dropped faces may be nan
        e1, e2 = c[1] - c[0], c[2] - c[0]
        nx = e1[1] * e2[2] - e1[2] * e2[1]
        ny = e1[2] * e2[0] - e1[0] * e2[2]
        nz = e1[0] * e2[1] - e1[1] * e2[0]
        area = np.sqrt(nx * nx + ny * ny + nz * nz)
    return np.where(np.isfinite(area), area, 0.0)


def _frame(corners: np.ndarray, area: np.ndarray) -> np.ndarray:
    """Rows: the axes to draw the part along - the file's, or the part's principal axes when
    its box is clearly smaller there (a part turned off the axes, as an uploader may turn it).

    Why the comparison: a part modelled on the axes (an L-bracket) has principal axes on the
    diagonal, and drawn along them it would look tilted; a part turned by some angle has a
    much larger box in the file's axes than along its own. The principal axes are those of
    the surface's exact second moment (a triangle's is area/12 times the sum of its corners'
    outer products plus that of their sum), with signs fixed by the centroids' third moment,
    so the same part is drawn the same way whatever its turn."""
    centroids = corners.sum(axis=0) / 3
    weight = area / area.sum()
    mean = centroids @ weight
    rel = corners - mean[None, :, None]
    total = rel.sum(axis=0)
    second = sum((rel[k] * weight) @ rel[k].T for k in range(3)) + (total * weight) @ total.T
    _, vectors = np.linalg.eigh(second / 12)
    axes = vectors.T[::-1].copy()  # largest spread first
    along = axes @ (centroids - mean[:, None])
    axes[(along * along * along) @ weight < 0] *= -1
    if np.linalg.det(axes) < 0:
        axes[2] *= -1
    pad = 1e-3 * float(np.ptp(corners, axis=(0, 2)).max())

    def volume(lo: np.ndarray, hi: np.ndarray) -> float:
        return float(np.prod(hi - lo + pad))

    identity = np.eye(3)
    return axes if volume(*_bounds(corners, axes)) < 0.85 * volume(*_bounds(corners, identity)) else identity


def _bounds(corners: np.ndarray, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest coordinates of the triangles along the rows of ``frame``, in chunks
    (no turned copy of a large mesh)."""
    if np.array_equal(frame, np.eye(3)):
        return corners.min(axis=(0, 2)), corners.max(axis=(0, 2))
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    for start in range(0, corners.shape[2], 1 << 18):
        part = _rotated(frame, corners[:, :, start : start + (1 << 18)])
        lo, hi = np.minimum(lo, part.min(axis=(0, 2))), np.maximum(hi, part.max(axis=(0, 2)))
    return lo, hi


def _rotated(rows: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """(corner, axis, face) coordinates along the rows of a 3x3 matrix: one BLAS product per
    corner (a broadcast ``matmul`` over the corners is several times slower)."""
    return np.stack([rows @ corners[k] for k in range(3)])


def _turn(extents: np.ndarray) -> np.ndarray:
    """Rows: the longest extent on x, the middle one on z (up) and the shortest on y (depth);
    an odd permutation is made proper by flipping the depth axis."""
    longest, shortest = int(np.argmax(extents)), int(np.argmin(extents))
    if longest == shortest:  # a cube: keep the axes
        return np.eye(3)
    turn = np.eye(3)[[longest, shortest, 3 - longest - shortest]]  # new x, y, z
    if np.linalg.det(turn) < 0:
        turn[1] *= -1
    return turn


def _budget(
    corners: np.ndarray, marked: np.ndarray, area: np.ndarray, limit: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """At most ``limit`` triangles (with their marks and areas), drawn in proportion to their
    area without replacement (Efraimidis-Spirakis keys, fixed seed): big faces that carry the
    shape survive, the fine tessellation of small ones thins out where it cannot be seen."""
    n = corners.shape[2]
    if n <= limit:
        return corners, marked, area
    keys = np.log(np.random.default_rng(0).random(n)) / area
    chosen = np.sort(np.argpartition(keys, n - limit)[n - limit :])
    return np.ascontiguousarray(corners[:, :, chosen]), marked[chosen], area[chosen]


def _camera(direction: tuple[float, float, float]) -> np.ndarray:
    """Rows: right, up, forward (into the scene) for an eye looking along ``direction``."""
    f = np.asarray(direction, dtype=np.float64)
    f /= np.linalg.norm(f)
    r = np.cross(f, [0.0, 0.0, 1.0])
    r /= np.linalg.norm(r)
    return np.stack([r, np.cross(r, f), f])


_MARGIN = 6


def _fit(cam: np.ndarray, w: int, h: int) -> float:
    """Pixels per unit that fit this view's extent into the panel."""
    span = np.maximum(cam.max(axis=(0, 2)) - cam.min(axis=(0, 2)), 1e-12)
    return float(min((w - 2 * _MARGIN) / span[0], (h - 2 * _MARGIN - 8) / span[1]))


def _view(cam: np.ndarray, marked: np.ndarray, scale: float, w: int, h: int) -> np.ndarray:
    """One shaded, outlined view of (w, h) pixels from camera coordinates (corner, axis, face)."""
    lo, hi = cam.min(axis=(0, 2)), cam.max(axis=(0, 2))
    centre, span = (lo + hi) / 2, np.maximum(hi - lo, 1e-12)
    sx = (cam[:, 0] - centre[0]) * scale + w / 2
    sy = (h + 8) / 2 - (cam[:, 1] - centre[1]) * scale  # image rows grow downwards; room for the label
    depth = (cam[:, 2] - lo[2]) / span[2]  # 0 near .. 1 far
    zbuf, face = rasterise(sx, sy, depth, w, h)
    img = np.empty((h, w, 3), dtype=np.float64)
    img[:] = BACKGROUND
    hit = face >= 0
    seen, where = np.unique(face[hit], return_inverse=True)  # shade only the faces that show
    img[hit] = _colours(cam[:, :, seen], marked[seen])[where]
    img[_outline(zbuf, hit)] *= OUTLINE
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _outline(zbuf: np.ndarray, hit: np.ndarray, jump: float = 0.04) -> np.ndarray:
    """Drawn pixels next to the background or to a depth jump (a step in the part)."""
    z = np.where(hit, zbuf, 2.0)  # background: farther than anything drawn (depths are 0..1)
    pad = np.pad(z, 1, constant_values=2.0)
    out = np.zeros_like(hit)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        other = pad[dy : dy + z.shape[0], dx : dx + z.shape[1]]
        out |= hit & (other - z > jump)
    return out


def _colours(cam: np.ndarray, marked: np.ndarray) -> np.ndarray:
    """(F, 3) RGB of faces: their colour, lit by a Lambert light on the side facing the eye."""
    e1, e2 = cam[1] - cam[0], cam[2] - cam[0]
    normal = np.stack([e1[1] * e2[2] - e1[2] * e2[1], e1[2] * e2[0] - e1[0] * e2[2], e1[0] * e2[1] - e1[1] * e2[0]])
    normal /= np.maximum(np.sqrt((normal * normal).sum(axis=0)), 1e-300)
    normal *= np.where(normal[2] > 0, -1.0, 1.0)  # facing the eye (windings are not trusted)
    shade = 0.35 + 0.65 * np.clip((_LIGHT / np.linalg.norm(_LIGHT)) @ normal, 0.0, 1.0)
    return np.where(marked[:, None], np.array(HIGHLIGHT), np.array(BASE)) * shade[:, None]


@dataclass(frozen=True)
class _Spans:
    """Per triangle: its pixel-space corners, first pixel row and row count, whether it is
    drawn as one pixel at its centroid, and its depth plane (a*px + b*py + c, clamped to the
    triangle's own depth range so that a sliver's ill-conditioned plane cannot jump forward)."""

    x: np.ndarray
    y: np.ndarray
    row0: np.ndarray
    rows: np.ndarray
    tiny: np.ndarray
    plane: np.ndarray
    zmin: np.ndarray
    zmax: np.ndarray
    mean_depth: np.ndarray


def rasterise(x: np.ndarray, y: np.ndarray, depth: np.ndarray, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Z-buffer of triangles given as (3, F) pixel coordinates and depths (nearer smaller):
    the nearest depth and the face index at each pixel centre (-1: background).

    Scanline spans, vectorised: every (triangle, pixel row) pair gets the span of pixel
    centres the triangle covers on that row, and only those pixels are depth-tested, so a long
    thin sliver costs its pixels, not its bounding box. Work is capped by :func:`pair_budget`
    (rows and pixels together): past it the remaining triangles are left out."""
    spans = _spans(x, y, depth, w, h)
    zbuf = np.full(w * h, np.inf)
    face = np.full(w * h, -1, dtype=np.int64)
    budget = pair_budget(w, h, len(spans.rows))
    todo = np.flatnonzero(spans.rows)
    ends = np.cumsum(spans.rows[todo])
    start = 0
    while start < len(todo) and budget > 0:
        done = int(ends[start - 1]) if start else 0
        stop = max(int(np.searchsorted(ends, done + _CHUNK, side="right")), start + 1)
        budget -= _draw_rows(todo[start:stop], spans, w, zbuf, face)
        start = stop
    return _filled(zbuf.reshape(h, w), face.reshape(h, w))


def _filled(zbuf: np.ndarray, face: np.ndarray, jump: float = 0.04) -> tuple[np.ndarray, np.ndarray]:
    """Single pixels behind three or four of their neighbours (background, or the far side of
    the part showing through) take the nearest of them: the pinholes a sampled (or cracked)
    surface leaves between its triangles, never a hole of the part, which would be larger
    than a pixel."""
    h, w = face.shape
    pad_z = np.pad(zbuf, 1, constant_values=np.inf)
    pad_f = np.pad(face, 1, constant_values=-1)
    near_z, near_f = np.full((h, w), np.inf), np.full((h, w), -1, dtype=np.int64)
    drawn = np.zeros((h, w), dtype=np.int64)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        z, f = pad_z[dy : dy + h, dx : dx + w], pad_f[dy : dy + h, dx : dx + w]
        drawn += (f >= 0) & (z + jump < zbuf)
        closer = z < near_z
        near_z, near_f = np.where(closer, z, near_z), np.where(closer, f, near_f)
    hole = drawn >= 3
    return np.where(hole, near_z, zbuf), np.where(hole, near_f, face)


def _spans(x: np.ndarray, y: np.ndarray, depth: np.ndarray, w: int, h: int) -> _Spans:
    """The rows each triangle covers (pixel centres between its lowest and highest corner), or
    - covering no pixel centre and smaller than a pixel and a half - the one pixel under its
    centroid, so that a dense mesh leaves no holes."""
    ylo, yhi = y.min(axis=0), y.max(axis=0)
    row0 = np.ceil(ylo - 0.5).clip(0, h)
    rows = (np.floor(yhi - 0.5).clip(-1, h - 1) - row0 + 1).astype(np.int64)
    cx, cy = (x[0] + x[1] + x[2]) / 3, (y[0] + y[1] + y[2]) / 3
    xlo, xhi = x.min(axis=0), x.max(axis=0)
    no_centre = (rows <= 0) | (np.floor(xhi - 0.5) < np.ceil(xlo - 0.5))
    small = (xhi - xlo < 1.5) & (yhi - ylo < 1.5)  # not a long sliver seen edge-on
    tiny = no_centre & small & (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)
    area2 = (x[1] - x[0]) * (y[2] - y[0]) - (x[2] - x[0]) * (y[1] - y[0])
    inv = 1.0 / np.where(area2 == 0, 1.0, area2)
    dz1, dz2 = depth[1] - depth[0], depth[2] - depth[0]
    a = (dz1 * (y[2] - y[0]) - dz2 * (y[1] - y[0])) * inv
    b = ((x[1] - x[0]) * dz2 - (x[2] - x[0]) * dz1) * inv
    plane = np.stack([a, b, depth[0] - a * x[0] - b * y[0]], axis=1)
    return _Spans(
        x=np.ascontiguousarray(x.T),
        y=np.ascontiguousarray(y.T),
        row0=np.where(tiny, np.floor(cy), row0).astype(np.int64),
        rows=np.where(tiny, 1, np.maximum(rows, 0)),
        tiny=tiny,
        plane=plane,
        zmin=depth.min(axis=0),
        zmax=depth.max(axis=0),
        mean_depth=(depth[0] + depth[1] + depth[2]) / 3,
    )


def _draw_rows(tri: np.ndarray, s: _Spans, w: int, zbuf: np.ndarray, face: np.ndarray) -> int:
    """Draw the rows of triangles ``tri``; the (row + pixel) pairs it cost."""
    n = s.rows[tri]
    t = np.repeat(tri, n)
    row = s.row0[t] + np.arange(len(t)) - np.repeat(np.cumsum(n) - n, n)
    yc = row + 0.5
    xs, ys = s.x[t], s.y[t]  # (R, 3)
    left, right = np.full(len(t), np.inf), np.full(len(t), -np.inf)
    for i, j in ((0, 1), (1, 2), (2, 0)):
        ya, yb, xa, xb = ys[:, i], ys[:, j], xs[:, i], xs[:, j]
        crosses = (np.minimum(ya, yb) <= yc) & (yc <= np.maximum(ya, yb)) & (ya != yb)
        at = xa + (yc - ya) * (xb - xa) / np.where(crosses, yb - ya, 1.0)
        left = np.where(crosses, np.minimum(left, at), left)
        right = np.where(crosses, np.maximum(right, at), right)
    tiny = s.tiny[t]
    centre = xs.sum(axis=1) / 3
    first = np.where(tiny, np.floor(centre), np.ceil(left - 0.5).clip(0, w)).astype(np.int64)
    last = np.where(tiny, np.floor(centre), np.floor(right - 0.5).clip(-1, w - 1)).astype(np.int64)
    count = np.maximum(last - first + 1, 0)
    p = np.repeat(np.arange(len(t)), count)
    px = first[p] + np.arange(len(p)) - np.repeat(np.cumsum(count) - count, count)
    tp = t[p]
    plane = s.plane[tp]
    d = np.clip(plane[:, 0] * (px + 0.5) + plane[:, 1] * yc[p] + plane[:, 2], s.zmin[tp], s.zmax[tp])
    d = np.where(tiny[p], s.mean_depth[tp], d)
    pix = row[p] * w + px
    np.minimum.at(zbuf, pix, d)
    won = d <= zbuf[pix]
    face[pix[won]] = tp[won]
    return len(t) + len(p)


# --------------------------------------------------------------------------- text and PNG
_GLYPHS = {
    "0": (" ### ", "#   #", "#  ##", "# # #", "##  #", "#   #", " ### "),
    "1": ("  #  ", " ##  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "),
    "2": (" ### ", "#   #", "    #", "   # ", "  #  ", " #   ", "#####"),
    "3": ("#####", "   # ", "  #  ", "   # ", "    #", "#   #", " ### "),
    "4": ("   # ", "  ## ", " # # ", "#  # ", "#####", "   # ", "   # "),
    "5": ("#####", "#    ", "#### ", "    #", "    #", "#   #", " ### "),
    "6": ("  ## ", " #   ", "#    ", "#### ", "#   #", "#   #", " ### "),
    "7": ("#####", "    #", "   # ", "  #  ", " #   ", " #   ", " #   "),
    "8": (" ### ", "#   #", "#   #", " ### ", "#   #", "#   #", " ### "),
    "9": (" ### ", "#   #", "#   #", " ####", "    #", "   # ", " ##  "),
    ".": ("     ", "     ", "     ", "     ", "     ", " ##  ", " ##  "),
    "-": ("     ", "     ", "     ", "#####", "     ", "     ", "     "),
    "+": ("     ", "  #  ", "  #  ", "#####", "  #  ", "  #  ", "     "),
    "×": ("     ", "#   #", " # # ", "  #  ", " # # ", "#   #", "     "),
    "c": ("     ", "     ", " ####", "#    ", "#    ", "#    ", " ####"),
    "d": ("    #", "    #", " ## #", "#  ##", "#   #", "#   #", " ####"),
    "e": ("     ", "     ", " ### ", "#   #", "#####", "#    ", " ### "),
    "f": ("  ## ", " #  #", " #   ", "###  ", " #   ", " #   ", " #   "),
    "i": ("  #  ", "     ", " ##  ", "  #  ", "  #  ", "  #  ", " ### "),
    "m": ("     ", "     ", "## # ", "# # #", "# # #", "#   #", "#   #"),
    "n": ("     ", "     ", "# ## ", "##  #", "#   #", "#   #", "#   #"),
    "o": ("     ", "     ", " ### ", "#   #", "#   #", "#   #", " ### "),
    "r": ("     ", "     ", "# ## ", "##  #", "#    ", "#    ", "#    "),
    "s": ("     ", "     ", " ####", "#    ", " ### ", "    #", "#### "),
    "t": (" #   ", " #   ", "###  ", " #   ", " #   ", " #  #", "  ## "),
    "u": ("     ", "     ", "#   #", "#   #", "#   #", "#  ##", " ## #"),
}
"""A 5x7 bitmap font for what previews write: numbers, the size's units and the view names.
Built in, so the text looks the same everywhere and needs no font file (others: a blank)."""
_FONT = {ch: np.array([[c == "#" for c in row] for row in rows]) for ch, rows in _GLYPHS.items()}
_FONT["x"] = _FONT["×"]


def _text(image: np.ndarray, text: str, top: int, left: int, colour: tuple[int, int, int] = INK) -> None:
    """Write ``text`` into ``image`` (clipped at its right edge), 6 px per character."""
    h, w = image.shape[:2]
    for i, ch in enumerate(text):
        x = left + 6 * i
        glyph = _FONT.get(ch)
        if x + 5 > w or top + 7 > h:
            return
        if glyph is not None:
            image[top : top + 7, x : x + 5][glyph] = colour


def encode_png(rgb: np.ndarray) -> bytes:
    """An 8-bit RGB PNG of an (h, w, 3) uint8 array: signature, IHDR, one IDAT, IEND.

    Each row gets the "Up" filter (the difference from the row above), which keeps the flat
    shading and the background small once deflated."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w, _ = rgb.shape
    rows = rgb.reshape(h, w * 3)
    up = rows.copy()
    up[1:] -= rows[:-1]  # uint8 arithmetic wraps modulo 256, as PNG's filter does
    raw = np.empty((h, w * 3 + 1), dtype=np.uint8)
    raw[:, 0] = 2
    raw[:, 1:] = up

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
        + chunk(b"IEND", b"")
    )
