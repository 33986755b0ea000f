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
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib.resources import files

import numpy as np

from scanner.library import LibraryError

ALPHA = 0.5


class ReferenceSetMismatch(LibraryError):
    """The shipped reference set does not fit this scanner: a broken install, never a user's fault.
    A :class:`LibraryError`, so every command that refuses a bad library refuses this the same way."""


@lru_cache(maxsize=1)
def benign_reference() -> np.ndarray:
    """The shipped benign reference descriptors, (R, D) float32."""
    from scanner.features.version import DESCRIPTOR_VERSION

    root = files("scanner.data")
    meta = json.loads(root.joinpath("benign_reference.json").read_text("utf-8"))
    if meta.get("descriptor_version") != DESCRIPTOR_VERSION:
        raise ReferenceSetMismatch(
            f"benign reference set is for descriptor {meta.get('descriptor_version')!r}, not {DESCRIPTOR_VERSION!r}: "
            "rebuild it with 'python -m fixtures.reference'"
        )
    with root.joinpath("benign_reference.npy").open("rb") as fh:
        return np.load(fh, allow_pickle=False)


def nearest_reference_distance(vectors: np.ndarray) -> np.ndarray:
    ref = benign_reference().astype(np.float64)  # float64: |q|^2 + |r|^2 - 2qr cancels badly in float32
    q = np.asarray(vectors, dtype=np.float64)
    d2 = (q**2).sum(axis=1)[:, None] - 2.0 * q @ ref.T + (ref**2).sum(axis=1)[None, :]
    return np.sqrt(np.maximum(d2.min(axis=1), 0.0))


def row_thresholds(vectors: np.ndarray, global_threshold: float, benign: np.ndarray | None = None) -> np.ndarray:
    """Per-row thresholds for new signature rows (float32); ``benign``: the rows' distances to
    the reference set, when the caller has them already."""
    benign = nearest_reference_distance(vectors) if benign is None else benign
    return np.minimum(global_threshold, ALPHA * benign).astype(np.float32)
