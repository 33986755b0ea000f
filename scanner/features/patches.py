"""Patch codes: find the unchanged surface of a known part inside a cut, fused or padded copy.

Every global descriptor sees the whole of what it describes, so a part cut in half, fused to
a plate, spread over pieces placed apart or over archive members is a different whole. But
such edits leave most of the part's *triangles* exactly as they were: a plane cut or a
boolean union re-triangulates only the faces it crosses, and moving a piece moves its
triangles rigidly. A triangle together with its three edge-neighbours (six points) is a
small rigid patch; its shape up to rigid motion, mirror and uniform scale is a handful of
distance ratios. This module turns each such patch into a 64-bit code:

- the 12 distances of the patch (3 sides; per edge, the far corner of the neighbour across
  it to both ends of the edge and to the triangle's own opposite corner) divided by the
  triangle's perimeter, on a log scale in steps of ``STEP`` (0.4%), plus whether each pair of
  neighbours folds the same way (the sign of the fold relative to the triangle's own plane;
  products of signs, so the winding does not matter), canonicalised over the six symmetries
  of the triangle (rotations and reflections of its corner order) and hashed;
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
from dataclasses import dataclass

import numpy as np

from scanner.mesh import Mesh, _splitmix

PATCH_VERSION = "pc1"
STEP = 1.0 / 256.0
"""Quantisation of log2(distance / perimeter): 0.27% per step. Float32 coordinates move a
ratio by ~1e-7, so about 1 in 3,000 values straddles a step boundary after a rotation or
rescale (the code of that patch then differs; coverage loses that patch only)."""
SIZE_STEPS = 4
"""Size of a patch in quarter octaves of its perimeter: matches must agree on one shift
(plus or minus one step, for patches near a step boundary)."""
NO_NEIGHBOUR = 1 << 20
"""Stands for the three distances of an edge that has no single neighbour (an open boundary
or a non-manifold edge shared by three or more triangles)."""

_H1 = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class PatchCodes:
    """The patch codes of one surface: one row per non-degenerate triangle."""

    codes: np.ndarray  # (n,) uint64
    sizes: np.ndarray  # (n,) int16, quarter octaves of the perimeter
    weights: np.ndarray  # (n,) float64, triangle area

    def __len__(self) -> int:
        return len(self.codes)


def _neighbours(faces: np.ndarray) -> np.ndarray:
    """(F, 3) the far corner (a welded vertex id) of the one triangle across each edge
    (edge k joins corners k and k+1), or -1 where the edge is open or non-manifold."""
    n = len(faces)
    a = faces
    b = np.roll(faces, -1, axis=1)
    lo, hi = np.minimum(a, b).ravel(), np.maximum(a, b).ravel()
    far = np.roll(faces, -2, axis=1).ravel()
    key = lo.astype(np.int64) * (int(faces.max(initial=0)) + 1) + hi
    order = np.argsort(key, kind="stable")
    ks = key[order]
    start = np.ones(len(ks), dtype=bool)
    start[1:] = ks[1:] != ks[:-1]
    run = np.cumsum(start) - 1
    counts = np.bincount(run)
    out = np.full(3 * n, -1, dtype=np.int64)
    pair = counts[run] == 2
    idx = np.flatnonzero(pair & start)  # first of each manifold pair
    first, second = order[idx], order[idx + 1]
    out[first] = far[second]
    out[second] = far[first]
    return out.reshape(n, 3)


def _code_columns(p: np.ndarray, faces: np.ndarray, nb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per triangle, per corner rotation k (edge k = corners k, k+1; opposite corner k+2):
    the quantised (side, far-to-start, far-to-end, far-to-opposite) of edge k, and the fold
    sign of edge k. Returns (F, 3, 4) int64 and (F, 3) int8."""
    t = p[faces]  # (F, 3, 3) float64
    u = t
    v = np.roll(t, -1, axis=1)
    o = np.roll(t, -2, axis=1)
    side = np.linalg.norm(v - u, axis=2)  # (F, 3)
    perim = side.sum(axis=1)
    has = nb >= 0
    d = p[np.where(has, nb, 0)]  # (F, 3, 3)
    du = np.linalg.norm(d - u, axis=2)
    dv = np.linalg.norm(d - v, axis=2)
    do = np.linalg.norm(d - o, axis=2)
    normal = np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])
    fold = np.einsum("fkc,fc->fk", d - u, normal)
    scale = np.maximum(np.abs(normal).max(axis=1), 1e-300)[:, None] * perim[:, None]
    sign = np.where(np.abs(fold) <= 1e-5 * scale, 0, np.sign(fold)).astype(np.int8)
    sign[~has] = 0
    with np.errstate(divide="ignore"):
        q = np.stack([side, du, dv, do], axis=2) / perim[:, None, None]
        q = np.rint(np.log2(np.maximum(q, 1e-12)) / STEP).astype(np.int64)
    q[..., 1:][~has] = NO_NEIGHBOUR
    return q, sign


def _canonical(q: np.ndarray, sign: np.ndarray) -> np.ndarray:
    """The smallest of the six corner orders (3 rotations x 2 directions) of each triangle's
    (3 edges x 4 values) code, as (F, 15) int64: the 12 values then 3 relative fold signs."""
    f = len(q)
    variants = []
    for rot in range(3):
        order = [(rot + k) % 3 for k in range(3)]
        fwd = q[:, order]  # edges in order
        s = sign[:, order]
        variants.append((fwd, s))
        # reversed direction: edge order reverses and each edge's ends swap
        rev_edges = [order[0], order[2], order[1]]
        rev = q[:, rev_edges][:, :, [0, 2, 1, 3]]
        variants.append((rev, sign[:, rev_edges]))
    best = None
    for edges, s in variants:
        rel = np.stack([s[:, 0] * s[:, 1], s[:, 1] * s[:, 2], s[:, 2] * s[:, 0]], axis=1).astype(np.int64)
        row = np.concatenate([edges.reshape(f, 12), rel], axis=1)
        if best is None:
            best = row
        else:
            # lexicographic minimum, row by row
            diff = row != best
            first = np.argmax(diff, axis=1)
            pick = diff.any(axis=1) & (row[np.arange(f), first] < best[np.arange(f), first])
            best = np.where(pick[:, None], row, best)
    assert best is not None
    return best


def _hash_rows(rows: np.ndarray) -> np.ndarray:
    h = np.full(len(rows), _H1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for c in range(rows.shape[1]):
            h = _splitmix(h ^ rows[:, c].astype(np.uint64))
    return h


def patch_codes(vertices: np.ndarray, faces: np.ndarray) -> PatchCodes:
    """Patch codes of a welded surface (float vertices (V, 3), faces (F, 3) into them)."""
    if len(faces) == 0:
        return PatchCodes(np.zeros(0, np.uint64), np.zeros(0, np.int16), np.zeros(0))
    p = np.asarray(vertices, dtype=np.float64)
    nb = _neighbours(np.asarray(faces, dtype=np.int64))
    q, sign = _code_columns(p, faces, nb)
    codes = _hash_rows(_canonical(q, sign))
    t = p[faces]
    area = 0.5 * np.linalg.norm(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]), axis=1)
    perim = np.linalg.norm(t - np.roll(t, -1, axis=1), axis=2).sum(axis=1)
    sizes = np.floor(np.log2(np.maximum(perim, 1e-300)) * SIZE_STEPS).astype(np.int16)
    keep = area > 0
    return PatchCodes(codes[keep], sizes[keep], area[keep])


MAX_SIGNATURE_PATCHES = 1024
"""Distinct patch codes kept per signature: those with the smallest code values (a bottom-k
sketch: the codes are hashes, so this is a uniform random subset, and a copy that keeps half
of the part keeps about half of the sketch). Bounds a library's size per signature."""
MIN_MATCHED = 8
"""Distinct signature patches an upload must reproduce at one scale. Calibrated on 300
generated benign look-alikes x 24 proxy signatures (at most 2 matched) and the public corpus
(designs that are not the same model: at most 36 matched, all of them at < 1% of the
signature's area - cube corners and pyramid faces; see ``MIN_SHARE``)."""
MIN_SHARE = 0.05
"""Share of the signature's distinctive surface (by area) an upload must reproduce at one
scale. Generated benign files reach at most 0.7% of a proxy's; copies cut to 50% keep a
median 21%, fused or split ones more (``bench/patches.py``)."""


def mesh_patch_codes(mesh: Mesh) -> PatchCodes:
    """Patch codes of a mesh's surface (degenerate and repeated triangles removed, welded):
    the whole upload at once, every body and every archive member joined the same way."""
    surface = mesh.surface()
    return patch_codes(surface.welded_vertices, surface.welded_faces)


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
    of the surface it covers, minus codes benign references also produce (``generic``, sorted
    uint64; defaults to the shipped codebook), at most ``MAX_SIGNATURE_PATCHES``."""
    pc = mesh_patch_codes(mesh)
    generic = generic_codes() if generic is None else generic
    total = float(pc.weights.sum())
    if not len(pc) or total <= 0:
        return SignaturePatches(np.zeros(0, np.uint64), np.zeros(0, np.int16), np.zeros(0, np.float32))
    keys = np.rec.fromarrays([pc.codes, pc.sizes], names="c,s")
    uniq, inverse = np.unique(keys, return_inverse=True)
    share = np.bincount(inverse.ravel(), weights=pc.weights, minlength=len(uniq)) / total
    codes, sizes = np.asarray(uniq["c"], np.uint64), np.asarray(uniq["s"], np.int16)
    distinctive = ~_member(codes, generic)
    codes, sizes, share = codes[distinctive], sizes[distinctive], share[distinctive]
    order = np.argsort(codes, kind="stable")[:MAX_SIGNATURE_PATCHES]
    return SignaturePatches(codes[order], sizes[order], share[order].astype(np.float32))


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
