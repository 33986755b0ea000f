"""Per-signature thresholds from a benign reference set: how distinctive is a shape?

A global distance threshold treats every signature alike, but a signature of a plain tube
sits next to every plumbing pipe, while a complex part has no benign neighbour for miles.
So each descriptor row of a signature gets its own threshold at enrolment:

    threshold = min(global threshold, ALPHA x distance to the nearest benign reference)

With ALPHA = 0.5, an upload that matches the signature is closer to it than to any benign
reference shape. The reference set is descriptors (no geometry) of generated benign
look-alikes - pipes, fittings, handles, brackets, enclosures, profiles, toys, generic
objects - shipped in ``scanner/data/`` and rebuilt by ``python -m fixtures.reference``
whenever the descriptor version changes (a test checks they agree).

The same file holds a wider *generic* set after the threshold rows: a grid of plain solids
(boxes from cubes to 1:64 plates, cylinders from discs to rods, tubes, cones, prisms,
pyramids, spheres, ellipsoids, tori) and plane-cut pieces of every shape. It does not set
thresholds - a signature that is a composition of boxes and tubes sits near many plain
solids, and shrinking its threshold for that cost 8-21 points of recall on noisy and
decimated copies in ``bench/evasion.py`` - but the matcher asks it about each *upload* row that
hit a signature: a row nearer a plain solid than the signature is no evidence
(:data:`CONFIRM_RATIO`). That is what keeps a thin plate, a cube or a disc
in a real file from flagging an enrolled plate, cube or washer.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib.resources import files

import numpy as np

from scanner.library import LibraryError

ALPHA = 0.5

PLAIN_SOLID = 0.02
"""A descriptor row this close to a generic reference shape *is* a plain solid: a copy of a
cube or a thin plate lands this far from the reference's own (sampling noise: a rotated copy of
a file lands at p95 0.016 from itself, ``SAMPLING_NOISE`` in :mod:`scanner.enrol`). Such a row
is no evidence on either side: an upload row that is one never confirms a hit (a cube in a real
file flagged an enrolled cube body at 0.006), and a signature row that is one matches only
exact copies (a plain washer in a real assembly was matched by a lobed disc at 0.042)."""


CONFIRM_RATIO = 1.0
"""A near-duplicate hit stands only when the upload's row is nearer the signature than
``CONFIRM_RATIO`` x its distance to the nearest generic reference shape
(:func:`nearest_generic_distance`): an upload body that is a plain plate, cube or disc is
closer to a plain solid than to any signature, so it cannot flag one however generic that
signature's own body is. (Enrolment bounds the other side: a signature row's threshold is at
most ``ALPHA`` x its own distance to the reference.) Measured with ``bench/evasion.py`` (seed 0):
at 1.0 every evasion row kept its recall and the benign false pairs went from 1 to 0 of 7,200;
0.6 cost recall (Loop subdivision 17% -> 4%, noise 0.5% on dense meshes 29% -> 21%) and removed
no further real-corpus false flag."""


def confirms(distance: float, generic: float) -> bool:
    """Does a near-duplicate hit at ``distance`` stand, for an upload row at ``generic`` from
    the nearest generic reference shape?"""
    return generic >= PLAIN_SOLID and distance < CONFIRM_RATIO * generic


class ReferenceSetMismatch(LibraryError):
    """The shipped reference set does not fit this scanner: a broken install, never a user's fault.
    A :class:`LibraryError`, so every command that refuses a bad library refuses this the same way."""


@lru_cache(maxsize=1)
def _shipped() -> tuple[np.ndarray, int]:
    """The shipped reference descriptors, (R, D) float32, and how many leading rows are the
    threshold set (the rest is the generic set; older data had only the threshold set)."""
    from scanner.features.version import DESCRIPTOR_VERSION

    root = files("scanner.data")
    meta = json.loads(root.joinpath("benign_reference.json").read_text("utf-8"))
    if meta.get("descriptor_version") != DESCRIPTOR_VERSION:
        raise ReferenceSetMismatch(
            f"benign reference set is for descriptor {meta.get('descriptor_version')!r}, not {DESCRIPTOR_VERSION!r}: "
            "rebuild it with 'python -m fixtures.reference'"
        )
    with root.joinpath("benign_reference.npy").open("rb") as fh:
        matrix = np.load(fh, allow_pickle=False)
    return matrix, int(meta.get("threshold_rows", len(matrix)))


def benign_reference() -> np.ndarray:
    """The threshold set: descriptors of generated benign look-alikes and random plain solids."""
    matrix, n = _shipped()
    return matrix[:n]


@lru_cache(maxsize=2)
def _reference64(generic: bool) -> tuple[np.ndarray, np.ndarray]:
    """A reference set in float64 (|q|^2 + |r|^2 - 2qr cancels badly in float32) and its squared
    norms, converted once per process: matching consults the generic set for every candidate."""
    matrix, n = _shipped()
    ref = (matrix if generic else matrix[:n]).astype(np.float64)
    return ref, (ref**2).sum(axis=1)


def _nearest(vectors: np.ndarray, generic: bool) -> np.ndarray:
    ref, norms = _reference64(generic)
    return nearest_distance(vectors, ref, norms)


def nearest_distance(vectors: np.ndarray, ref: np.ndarray, norms: np.ndarray | None = None) -> np.ndarray:
    """Each row's Euclidean distance (float64) to the nearest row of ``ref``; ``norms``: the
    squared norms of ``ref``'s rows, when the caller keeps them."""
    ref = np.asarray(ref, dtype=np.float64)
    norms = (ref**2).sum(axis=1) if norms is None else norms
    q = np.asarray(vectors, dtype=np.float64)
    d2 = (q**2).sum(axis=1)[:, None] - 2.0 * q @ ref.T + norms[None, :]
    return np.sqrt(np.maximum(d2.min(axis=1), 0.0))


def nearest_reference_distance(vectors: np.ndarray) -> np.ndarray:
    """Each row's distance to the nearest shape of the threshold set (sets thresholds)."""
    return _nearest(vectors, generic=False)


def nearest_generic_distance(vectors: np.ndarray) -> np.ndarray:
    """Each row's distance to the nearest shape of the whole reference: the threshold set, a
    grid of plain solids from cubes to thin plates and discs, and plane-cut pieces of all of
    them (the matcher's confirmation, :func:`confirms`)."""
    return _nearest(vectors, generic=True)


def row_thresholds(vectors: np.ndarray, global_threshold: float, benign: np.ndarray | None = None) -> np.ndarray:
    """Per-row thresholds for new signature rows (float32); ``benign``: the rows' distances to
    the reference set, when the caller has them already."""
    benign = nearest_reference_distance(vectors) if benign is None else benign
    return np.minimum(global_threshold, ALPHA * benign).astype(np.float32)
