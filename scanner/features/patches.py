"""Patch codes: find the unchanged surface of a known part inside a cut, fused or padded copy.

Every global descriptor sees the whole of what it describes, so a part cut in half, fused to
a plate, spread over pieces placed apart or over archive members is a different whole. But
such edits leave most of the part's *triangles* exactly as they were: a plane cut or a
boolean union re-triangulates only the faces it crosses, and moving a piece moves its
triangles rigidly. A triangle together with its three edge-neighbours is a small rigid
patch; its shape up to rigid motion, mirror and uniform scale is a handful of ratios. This
module gives every triangle two 64-bit codes (the kind in the lowest bit, ``RING``/``FOLD``):

- per edge, values that do not depend on which end comes first - the side over the
  perimeter and, for a *ring* code, the far corner of the neighbour across it to both ends
  (smaller first) and to the triangle's opposite corner, or, for a *fold* code, the angle of
  the neighbour's plane across it - quantised (log steps of ``STEP``, 0.27%; angles in
  ``ANGLE_STEP``) with the side the neighbour folds to, relative to the triangle's own folds
  (:func:`_fold_sides`); the triangle's code hashes its three edge hashes as a sorted triple,
  so no corner order, winding or mirror changes it;
- a coarse size: log2 of the perimeter in steps of 1/``SIZE_STEPS``, so the matches between
  an upload and a signature must agree on one scale (a copy is scaled as a whole);
- a weight: the triangle's area (float64).

A signature keeps the codes of its surface (never coordinates: a code is a hash of ratios,
the size one number per triangle, no positions, no adjacency between codes; nothing about
where a patch sits can be recovered) minus the codes that benign references also produce
(generic patches: cube corners, default cylinders, flat fans). An upload *covers* a signature
by the area share of the signature's distinctive patches whose codes it contains at one
consistent scale shift; a copy cut to 70% covers about 70% minus the band along the cut, a
fused or decoyed copy nearly all of it.

What it does not survive: anything that moves vertices (noise, re-meshing, subdivision,
decimation, non-uniform stretch) - those are the global descriptor's job.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from scanner import kernels
from scanner.mesh import Mesh, _splitmix, two_face_edges

PATCH_VERSION = "pc2"
"""pc1: ring codes only (never shipped); pc2: ring and fold codes."""
STEP = 1.0 / 256.0
"""Quantisation of log2(distance / perimeter): 0.27% per step. Float32 coordinates move a
ratio by ~1e-7, so about 1 in 3,000 values straddles a step boundary after a rotation or
rescale (the code of that patch then differs; coverage loses that patch only)."""
ANGLE_STEP = np.deg2rad(0.25)
"""Quantisation of a fold angle (fold codes)."""
SIZE_STEPS = 4
"""Size of a patch in quarter octaves of its perimeter: matches must agree on one shift
(plus or minus one step, for patches near a step boundary)."""
NO_NEIGHBOUR = 1 << 20
"""Stands for the values of an edge that has no single neighbour (an open boundary or a
non-manifold edge shared by three or more triangles)."""
RING, FOLD = 0, 1
"""The two kinds of code, told apart by a code's lowest bit: a *ring* code reads the far
corners of the three neighbours (12 distances: very specific, but any change to a neighbour
changes it); a *fold* code reads the triangle's own sides and the angle of the surface
across each edge (a neighbour cut or re-triangulated in its own plane leaves it unchanged,
so it survives next to a cut or a fused plate; less specific, so it is counted apart)."""
KINDS = (RING, FOLD)
_CHUNK = 1 << 16
"""Triangles coded at a time: the float temporaries stay a few tens of MB for any mesh (at
1 << 17 the one-row-per-corner code took a 2M-triangle scan's peak past 5x its decoded
triangles; at 1 << 16 the patch codes' own peak halves, 109 -> 60 MB, at no measured cost in
time: 0.54 s either way for 1.3M triangles)."""

_H1 = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class PatchCodes:
    """The patch codes of one surface: one ring and one fold code per non-degenerate triangle."""

    codes: np.ndarray  # (n,) uint64, lowest bit = kind
    sizes: np.ndarray  # (n,) int16, quarter octaves of the perimeter
    weights: np.ndarray  # (n,) float64, triangle area

    def __len__(self) -> int:
        return len(self.codes)


def _neighbours(faces: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """(3, F) the far corner (a welded vertex id) of the one triangle across each edge (row k:
    the edge joining corners k and k+1), or -1 where the edge is open or non-manifold.
    ``first`` and ``second``: the two places of each edge shared by exactly two faces
    (:attr:`scanner.mesh.Mesh.two_face_edges`: edge e of the concatenation is face e mod F's
    edge e // F).

    Speed: edge e of the concatenation is element e of the flat (3, F) answer, and its own far
    corner is element e of the faces' columns 2, 0, 1 end to end, so each pair of edges is
    two flat scatters, no division into face and edge numbers."""
    n_faces = len(faces)
    # vertex ids fit int32 below 2**31 vertices: half the memory of the two 3F-long arrays here
    ids = np.int32 if n_faces and int(faces.max()) < np.iinfo(np.int32).max else np.int64
    out = np.full(3 * n_faces, -1, dtype=ids)
    if not len(first):
        return out.reshape(3, n_faces)
    own_far = np.concatenate([faces[:, 2], faces[:, 0], faces[:, 1]]).astype(ids, copy=False)
    out[first] = own_far[second]
    out[second] = own_far[first]
    return out.reshape(3, n_faces)


def _q(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.rint(np.log2(np.maximum(x, 1e-12)) / STEP).astype(np.int64)


def _edge_hashes(columns: list[np.ndarray], salt: int) -> np.ndarray:
    """One 64-bit hash per (edge, triangle) of equally shaped (3, F) int64 columns."""
    h = np.full(columns[0].shape, _H1 + np.uint64(salt), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for c in columns:
            h = _splitmix(h ^ c.astype(np.uint64))
    return h


def _triangle_hash(edges: np.ndarray, kind: int) -> np.ndarray:
    """A triangle's code from its three edge hashes (rows of a (3, F) array), whatever their
    order: the sorted triple hashed (invariant to the six symmetries of the corner order), kind
    in the lowest bit. The triple is sorted by a three-element min/max network (the same values
    as ``np.sort``, several times faster on 3-wide rows)."""
    x0, x1, x2 = edges
    a, b = np.minimum(x0, x1), np.maximum(x0, x1)
    low, c = np.minimum(a, x2), np.maximum(a, x2)
    h = np.full(len(x0), _H1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for e in (low, np.minimum(b, c), np.maximum(b, c)):
            h = _splitmix(h ^ e)
    return (h & ~np.uint64(1)) | np.uint64(kind)


def _fold_sides(raw: np.ndarray, angle: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Which side each neighbour folds to, relative to the triangle's own folds, so that a
    flipped winding (every sign flipped) changes nothing: signs are multiplied by the sign of
    the signed sum of the quantised folds, or where that sum is exactly zero (a step: one fold
    up, one down) by the sign of the fold at the edge with the smallest hash among those that
    fold - an edge that is the same whatever the corner order. (3, F) arrays, edge by row."""
    # row by row (reductions along a 3-row axis are slow): the same integer sum, and the
    # first smallest hash's fold as ``argmin`` picks it (a later row only on a strictly smaller hash)
    signed = raw * np.where(angle == NO_NEIGHBOUR, 0, angle)
    total = np.sign(signed[0] + signed[1] + signed[2])
    folding = np.where(raw != 0, edges, np.iinfo(np.uint64).max)
    second = folding[1] < folding[0]
    third = folding[2] < np.minimum(folding[0], folding[1])
    tie = np.where(third, raw[2], np.where(second, raw[1], raw[0]))
    norm = np.where(total != 0, total, np.where(tie != 0, tie, 1))
    return raw * norm[None, :]


def _with_side(edges: np.ndarray, sign: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return _splitmix(edges ^ (sign + 2).astype(np.uint64))


_NEXT, _AFTER = [1, 2, 0], [2, 0, 1]
"""Row orders that turn corner k into corner k + 1 and k + 2 (``np.roll`` by -1 and -2)."""


def _chunk_codes(columns: tuple[np.ndarray, ...], faces: np.ndarray, nb: np.ndarray) -> tuple[np.ndarray, ...]:
    """Ring codes, fold codes, sizes and areas of one chunk of triangles.

    Each edge is described by values that do not depend on which of its ends comes first
    (a reflection of the corner order swaps them), and the triangle's code hashes its three
    edges as a sorted triple, so no corner order, winding or mirror changes it. The side of
    the triangle a neighbour folds to is signed relative to the sum of the three folds, so a
    flipped winding (which flips every fold) gives the same code.

    ``columns``: the vertices' x, y and z as three contiguous arrays; ``faces`` and ``nb``:
    (3, n), corner k (edge k, from corner k to k + 1) of every triangle in row k, so every
    per-corner value is a contiguous row and element-wise arithmetic runs on whole rows."""
    ux, uy, uz = (np.take(c, faces) for c in columns)  # u = corner k (take: c[faces], gathered faster)
    vx, vy, vz = (a[_NEXT] for a in (ux, uy, uz))  # v = corner k + 1
    ox, oy, oz = (a[_AFTER] for a in (ux, uy, uz))  # o = corner k + 2
    ex, ey, ez = vx - ux, vy - uy, vz - uz
    side = np.sqrt(ex * ex + ey * ey + ez * ez)
    perim = side[0] + side[1] + side[2]  # side.sum over the three edges, in the same order
    # the triangle's normal from its first two edges (rows 0 and 2 of e hold v0 - u0, u0 - u2)
    ax, ay, az, bx, by, bz = ex[0], ey[0], ez[0], -ex[2], -ey[2], -ez[2]
    nx, ny, nz = ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx
    double = np.sqrt(nx * nx + ny * ny + nz * nz)
    area = 0.5 * double
    inv = 1.0 / np.maximum(double, 1e-300)
    nx, ny, nz = (nx * inv)[None, :], (ny * inv)[None, :], (nz * inv)[None, :]
    has = nb >= 0
    far = np.where(has, nb, 0)
    dx, dy, dz = (np.take(c, far) for c in columns)
    scale = perim[None, :]

    def dist(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        return np.sqrt(x * x + y * y + z * z)

    pux, puy, puz = dx - ux, dy - uy, dz - uz
    du = dist(pux, puy, puz) / scale
    dv = dist(dx - vx, dy - vy, dz - vz) / scale
    do = dist(dx - ox, dy - oy, dz - oz) / scale
    # the angle of the neighbour's plane across the edge, seen from the triangle's inside:
    # h = (d - u) and w = (u - o), each without its component along the edge
    inv_side = 1.0 / np.maximum(side, 1e-300)
    tx, ty, tz = ex * inv_side, ey * inv_side, ez * inv_side
    along = pux * tx + puy * ty + puz * tz
    hx, hy, hz = pux - along * tx, puy - along * ty, puz - along * tz
    qx, qy, qz = ux - ox, uy - oy, uz - oz
    along = qx * tx + qy * ty + qz * tz
    wx, wy, wz = qx - along * tx, qy - along * ty, qz - along * tz
    up = hx * nx + hy * ny + hz * nz
    out = (hx * wx + hy * wy + hz * wz) / np.maximum(dist(wx, wy, wz), 1e-300)
    theta = np.where(has, np.arctan2(up, out), 0.0)
    q_side = _q(side / scale)
    lo, hi = _q(np.minimum(du, dv)), _q(np.maximum(du, dv))
    q_do = _q(do)
    angle = np.rint(np.abs(theta) / ANGLE_STEP).astype(np.int64)
    for col in (lo, hi, q_do, angle):
        col[~has] = NO_NEIGHBOUR
    ring_edges = _edge_hashes([q_side, lo, hi, q_do], 1)
    fold_edges = _edge_hashes([q_side, angle], 2)
    sign = _fold_sides(np.where(angle > 0, np.sign(theta), 0).astype(np.int64), angle, ring_edges)
    ring = _triangle_hash(_with_side(ring_edges, sign), RING)
    fold = _triangle_hash(_with_side(fold_edges, sign), FOLD)
    sizes = _sizes(perim)
    return ring, fold, sizes, area


def _sizes(perim: np.ndarray) -> np.ndarray:
    """Each triangle's coarse size: quarter octaves of its perimeter (both paths' numpy code)."""
    return np.floor(np.log2(np.maximum(perim, 1e-300)) * SIZE_STEPS).astype(np.int16)


def _compiled_chunk(
    compiled: object, columns: tuple[np.ndarray, ...], faces: np.ndarray, nb: np.ndarray, wide: bool, lo: int, n: int
) -> tuple[np.ndarray, ...] | None:
    """:func:`_chunk_codes` of triangles ``lo .. lo + n`` with the compiled kernels
    (:mod:`scanner.kernels`), the same bits: the float32 geometry in C, numpy's log2 and
    arctan2, the quantisation and hashes in C. The codes of triangles with no area
    (dropped by :func:`patch_codes`) are left unspecified. None where the kernels leave it
    to the numpy code (a vertex id out of range, a ratio or angle that is not finite)."""
    ratios = np.empty((12, n), dtype=np.float32)
    up, out = np.empty((3, n), dtype=np.float32), np.empty((3, n), dtype=np.float32)
    perim, area = np.empty(n, dtype=np.float32), np.empty(n, dtype=np.float32)
    if not compiled.geometry(*columns, faces, nb, wide, lo, n, ratios, up, out, perim, area):
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log2(ratios, out=ratios)
        atan = np.arctan2(up, out, out=up)
        sizes = _sizes(perim)
    ring, fold = np.empty(n, dtype=np.uint64), np.empty(n, dtype=np.uint64)
    if not compiled.codes(logs, atan, area, nb, wide, lo, float(ANGLE_STEP), ring, fold):
        return None
    return ring, fold, sizes, area


def patch_codes(
    vertices: np.ndarray,
    faces: np.ndarray,
    sorted_edges: tuple[np.ndarray, np.ndarray],
    pairs: tuple[np.ndarray, np.ndarray] | None = None,
    each: Callable[[Callable[[int], tuple], list[int]], list[tuple]] | None = None,
) -> PatchCodes:
    """Ring and fold codes of a welded surface: float vertices (V, 3), faces (F, 3) into them,
    and its sorted edges (key, position) as :attr:`scanner.mesh.Mesh.sorted_edges` gives them;
    ``pairs``: their edges shared by two faces when the caller has them
    (:attr:`scanner.mesh.Mesh.two_face_edges`, which the classifier reads too); ``each``: how
    the blocks of triangles are coded, ``each(fn, starts) == [fn(s) for s in starts]`` (the
    default; :func:`scanner.parallel.shared_map` shares them between two threads: every
    block's codes are its own triangles', so the same arrays come out)."""
    faces = np.asarray(faces, dtype=np.int64)
    if len(faces) == 0:
        return PatchCodes(np.zeros(0, np.uint64), np.zeros(0, np.int16), np.zeros(0))
    nb = _neighbours(faces, *(pairs if pairs is not None else two_face_edges(*sorted_edges)[:2]))
    vertices = np.asarray(vertices)
    columns = tuple(np.ascontiguousarray(vertices[:, c]) for c in range(3))

    # corner-major faces one chunk at a time: a whole transposed copy beside the faces raised a
    # 2M-triangle scan's peak past 5x its decoded triangles (tests/integration/test_scan_memory.py)
    # two threads code half-size blocks: two blocks' temporaries at once take what one took
    # (every triangle's codes are its own, so the block size changes no value)
    size = _CHUNK if each is None else _CHUNK // 2

    compiled = kernels.patches if columns[0].dtype == np.float32 else None
    if compiled is not None:
        wide = nb.dtype == np.int64
        nb_flat, faces_flat = np.ascontiguousarray(nb), np.ascontiguousarray(faces)

    def block(lo: int) -> tuple:
        if compiled is not None:
            got = _compiled_chunk(compiled, columns, faces_flat, nb_flat, wide, lo, min(size, len(faces) - lo))
            if got is not None:
                return got
        return _chunk_codes(columns, np.ascontiguousarray(faces[lo : lo + size].T), nb[:, lo : lo + size])

    starts = list(range(0, len(faces), size))
    parts = [block(lo) for lo in starts] if each is None else each(block, starts)
    ring, fold, sizes, area = (np.concatenate(c) for c in zip(*parts, strict=True))
    keep = area > 0
    ring, fold, sizes, area = ring[keep], fold[keep], sizes[keep], area[keep]
    return PatchCodes(np.concatenate([ring, fold]), np.concatenate([sizes, sizes]), np.concatenate([area, area]))


MAX_SIGNATURE_PATCHES = 1024
"""Distinct patch codes of each kind kept per signature: those with the smallest code values (a bottom-k
sketch: the codes are hashes, so this is a uniform random subset, and a copy that keeps half
of the part keeps about half of the sketch). Bounds a library's size per signature."""
MIN_MATCHED = 8
"""Distinct distinctive patches of one kind a signature must have reproduced at one scale.
Over 300 generated benign look-alikes x 24 proxy signatures no file reached 8 of either kind
(the fold codes' worst file covered 29% of a proxy's surface with fewer distinct codes: one
cylinder facet repeated, hence distinct codes, not triangles); among public-corpus meshes of
different models the most shared was 36 ring codes, at < 1% of the signature's area (cube
corners and pyramid faces; see ``MIN_SHARE``)."""
MIN_SHARE = 0.05
"""Share of the signature's distinctive surface (by area, per kind) an upload must reproduce
at one scale. With ``MIN_MATCHED`` it let no false match through in ``bench/evasion.py``
(7,200 and 100,000 benign pairs, the real corpus) while catching 92% of plate-fused and 88%
of half-kept proxies."""


def mesh_patch_codes(mesh: Mesh, each: Callable | None = None) -> PatchCodes:
    """Patch codes of a mesh's surface (degenerate and repeated triangles removed, welded):
    the whole upload at once, every body and every archive member joined the same way
    (``each``: as :func:`patch_codes` has it)."""
    surface = mesh.surface()
    key, position, _ = surface.sorted_edges
    return patch_codes(
        surface.welded_vertices, surface.welded_faces, (key, position), surface.two_face_edges[:2], each=each
    )


@dataclass(frozen=True)
class SignaturePatches:
    """What a library stores per signature: distinct codes (sorted), their sizes and their
    share of the signature's area. No coordinates, no adjacency."""

    codes: np.ndarray  # (k,) uint64, sorted
    sizes: np.ndarray  # (k,) int16
    shares: np.ndarray  # (k,) float32, sum <= 1 (the rest of the area is generic)

    def __len__(self) -> int:
        return len(self.codes)


def signature_patches(mesh: Mesh, generic: np.ndarray | None = None) -> SignaturePatches:
    """The distinctive patch sketch of a signature: each distinct (code, size) with the share
    of the surface it covers (per kind: each kind's shares sum to at most 1), minus codes
    benign references also produce (``generic``, sorted uint64; defaults to the shipped
    codebook), at most ``MAX_SIGNATURE_PATCHES`` of each kind (the smallest codes)."""
    pc = mesh_patch_codes(mesh)
    generic = generic_codes() if generic is None else generic
    total = float(pc.weights.sum()) / len(KINDS)  # every triangle has one code of each kind
    if not len(pc) or total <= 0:
        return SignaturePatches(np.zeros(0, np.uint64), np.zeros(0, np.int16), np.zeros(0, np.float32))
    keys = np.rec.fromarrays([pc.codes, pc.sizes], names="c,s")
    uniq, inverse = np.unique(keys, return_inverse=True)  # sorted by code, then size
    share = np.bincount(inverse.ravel(), weights=pc.weights, minlength=len(uniq)) / total
    codes, sizes = np.asarray(uniq["c"], np.uint64), np.asarray(uniq["s"], np.int16)
    distinctive = ~_member(codes, generic)
    codes, sizes, share = codes[distinctive], sizes[distinctive], share[distinctive]
    kind = (codes & np.uint64(1)).astype(np.int64)
    keep = np.concatenate([np.flatnonzero(kind == k)[:MAX_SIGNATURE_PATCHES] for k in KINDS])
    keep.sort()
    return SignaturePatches(codes[keep], sizes[keep], share[keep].astype(np.float32))


def _member(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    if not len(sorted_set):
        return np.zeros(len(values), dtype=bool)
    at = np.searchsorted(sorted_set, values)
    return sorted_set[np.minimum(at, len(sorted_set) - 1)] == values


GENERIC_FILE = "generic_patches.npy"


@functools.lru_cache(maxsize=1)
def generic_codes() -> np.ndarray:
    """The shipped codebook of patch codes that generated benign look-alikes produce (sorted
    uint64; rebuilt by ``python -m fixtures.reference``). Codes only: a hash says nothing of
    the shape it came from."""
    from importlib.resources import files

    with files("scanner.data").joinpath(GENERIC_FILE).open("rb") as fh:
        codes = np.load(fh, allow_pickle=False)
    if codes.dtype != np.uint64 or codes.ndim != 1:
        raise ValueError(f"{GENERIC_FILE}: not a sorted uint64 codebook")
    return codes
