"""The fitted forest of a model folder, stored as plain arrays so loading needs no refit.

Refitting the calibrated forest at every load (scanner/classify/model.py) costs about a
second - most of a one-file ``meshscan scan`` - and imports scikit-learn. The fitted
forest is only numbers: per tree the node children, split features, thresholds and leaf
values, plus the scaler and the sigmoid calibration. Saving a model writes them as three
``.npy`` files (float64; read with ``allow_pickle=False``, nothing is deserialised) and
records in ``model.json`` the sha256 of their bytes bound to the model's training digest,
classes and parameters. Loading trusts the arrays only when:

1. the digest recorded in ``model.json`` matches the files and this model's binding (a
   file edited, swapped in from another model or left over from an earlier training is
   refused);
2. every array has the shape and ranges a forest over this model's columns and classes
   has (children inside the tree, features inside the row);
3. (in model.py) the forest scores the stored probe rows as scikit-learn did at training.

Anything else - no entry, a missing file, a mismatch - returns None and the model is
refit from its verified training rows exactly as before: a cache can only save time.
"""

from __future__ import annotations

import hmac
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from scanner.util import sha256_chunks

NODES_FILE = "forest_nodes.npy"
"""float64 (trees, nodes, 4 + classes): left child, right child, feature, threshold, then
each class's normalised leaf value (children -1 at a leaf, unused nodes are leaves)."""
SCALER_FILE = "forest_scaler.npy"
"""float64 (2, columns): the scaler's mean and scale."""
SIGMOID_FILE = "forest_sigmoid.npy"
"""float64 (2, classes): the one-vs-rest sigmoids' a and b."""
FILES = (NODES_FILE, SCALER_FILE, SIGMOID_FILE)
ENTRY = "forest_cache"
"""The key of the cache's entry in ``model.json`` (not part of the model's identity: the
cache is derived from the rows that are)."""


def binding(meta: dict[str, Any]) -> bytes:
    """What the cache must belong to: the training digest, the classes and the parameters."""
    keys = ("training_sha256", "classes", "params", "columns")
    return json.dumps({k: meta.get(k) for k in keys}, sort_keys=True).encode()


def _digest(blobs: dict[str, bytes], meta: dict[str, Any]) -> str:
    return sha256_chunks([b"meshscan-forest-cache-v1", *(blobs[name] for name in FILES), binding(meta)])


def write(root: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> dict[str, Any]:
    """Write the forest's arrays into the model folder; returns the ``model.json`` entry."""
    nodes = np.concatenate(
        [
            np.stack([arrays["left"], arrays["right"], arrays["feature"], arrays["threshold"]], axis=-1),
            arrays["value"],
        ],
        axis=-1,
    )
    parts = {
        NODES_FILE: nodes,
        SCALER_FILE: np.stack([arrays["mean"], arrays["scale"]]),
        SIGMOID_FILE: np.stack([arrays["a"], arrays["b"]]),
    }
    blobs = {}
    for name, arr in parts.items():
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(arr, dtype="<f8"), allow_pickle=False)
        blobs[name] = buf.getvalue()
    for name, data in blobs.items():
        (root / name).write_bytes(data)
    return {"files": list(FILES), "depth": int(arrays["depth"]), "sha256": _digest(blobs, meta)}


def remove(root: Path) -> None:
    """Remove a stale cache (a model saved without one must not keep an older model's)."""
    for name in FILES:
        (root / name).unlink(missing_ok=True)


def read(root: Path, meta: dict[str, Any], n_columns: int) -> dict[str, Any] | None:
    """The verified forest arrays of this model folder, or None (then the model is refit)."""
    entry = meta.get(ENTRY)
    classes = meta.get("classes")
    if not isinstance(entry, dict) or not isinstance(classes, list) or not isinstance(entry.get("sha256"), str):
        return None
    try:
        blobs = {name: (root / name).read_bytes() for name in FILES}  # fixed names: never a path from the json
    except OSError:
        return None
    if not hmac.compare_digest(_digest(blobs, meta), entry["sha256"]):
        return None
    try:
        nodes, scaler, sigmoid = (np.load(io.BytesIO(blobs[name]), allow_pickle=False) for name in FILES)
    except (OSError, ValueError):
        return None
    return _checked(nodes, scaler, sigmoid, entry.get("depth"), n_columns, len(classes))


def _checked(nodes: np.ndarray, scaler: np.ndarray, sigmoid: np.ndarray, depth: Any, n_columns: int,
             n_classes: int) -> dict[str, Any] | None:  # fmt: skip
    """The arrays split into the forest's parts, or None unless every shape and index fits."""
    arrays = (nodes, scaler, sigmoid)
    if any(a.dtype != np.float64 for a in arrays) or not all(np.isfinite(a).all() for a in (scaler, sigmoid)):
        return None
    if nodes.ndim != 3 or nodes.shape[2] != 4 + n_classes or nodes.shape[0] < 1 or nodes.shape[1] < 1:
        return None
    if scaler.shape != (2, n_columns) or sigmoid.shape != (2, n_classes) or not (scaler[1] > 0).all():
        return None
    width = nodes.shape[1]
    if not isinstance(depth, int) or isinstance(depth, bool) or not 0 <= depth <= width:
        return None
    ints = nodes[:, :, :3]
    if not np.array_equal(ints, np.round(ints)):
        return None
    left, right, feature = (nodes[:, :, i].astype(np.int64) for i in range(3))
    if left.min() < -1 or right.min() < -1 or max(left.max(), right.max()) >= width:
        return None
    if ((left < 0) != (right < 0)).any() or feature.min() < 0 or feature.max() >= n_columns:
        return None
    if np.isnan(nodes[:, :, 3:]).any():
        return None
    return {
        "left": left, "right": right, "feature": feature, "threshold": nodes[:, :, 3].copy(),
        "value": nodes[:, :, 4:].copy(), "mean": scaler[0].copy(), "scale": scaler[1].copy(),
        "a": sigmoid[0].copy(), "b": sigmoid[1].copy(), "depth": depth, "n_classes": n_classes,
    }  # fmt: skip
