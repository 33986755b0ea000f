"""The component classifier: a calibrated tree ensemble, persisted without pickle.

Model folder (format ``meshscan-model`` 1), every file plain data:

``model.json``
    format, versions (descriptor, shape features, scikit-learn, numpy), estimator
    parameters, class names, column names, the training labels and design groups (one per
    row; salted hashes since models are shared - see :func:`is_hashed` - while a model saved
    before that holds the names and still loads), the review threshold with how it was
    calibrated, the training-set sha256 and the ``model_version`` (derived from the content).
``features.npy``
    float64 (N, D) training rows, read with ``allow_pickle=False``.
``probes.npy`` / ``probe_proba.npy``
    a few training rows and the probabilities the model gave them when it was trained.
``weights.npy`` (optional)
    float64 (N,) sample weight per training row, written only when the rows were weighted
    (``meshscan train --base``: the base model's rows and the platform's own, each source
    with its weight); absent means every row weighs 1. Covered by ``training_sha256``.

``model.json`` may also hold ``operating_points``: ``{name: threshold}`` for the targets of
:data:`OPERATING_POINT_TARGETS` that training reached (``fr-1pct``, ``recall-95``, ...), so
``--review-threshold fr-1pct`` picks one by name; a model without them still loads.

Loading never deserialises an estimator: the model is **refit** from the stored rows with
fixed seeds on one thread (well under two seconds), and the probe rows must then score as
they did at training time. A different scikit-learn that fits differently, a tampered row
or a model trained on other features is refused with the reason, never silently used.

``forest_nodes.npy`` / ``forest_scaler.npy`` / ``forest_sigmoid.npy`` (optional)
    the fitted forest as plain float64 arrays, with their digest in ``model.json``'s
    ``forest_cache`` (see :mod:`scanner.classify.forest_cache`). When they verify and score
    the probe rows as at training, loading uses them and skips the refit (and scikit-learn);
    otherwise the model is refit as above. ``ComponentModel.fitted_by`` says which.
"""

from __future__ import annotations

import functools
import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scanner.classify import forest_cache
from scanner.errors import MeshscanError
from scanner.library import CATEGORIES
from scanner.util import sha256_chunks, utc_now

FORMAT = "meshscan-model"
FORMAT_VERSION = 1
BENIGN = "benign"
LABELS = (*CATEGORIES, BENIGN)
PROBE_TOLERANCE = 1e-6
"""Largest difference between a refit probe probability and the stored one."""

DEFAULT_PARAMS: dict[str, Any] = {
    "n_estimators": 60,
    "max_features": "sqrt",
    "min_samples_leaf": 5,
    "class_weight": "balanced",
    "calibration": "sigmoid",
    "calibration_folds": 3,
    "random_state": 0,
}
"""ExtraTrees inside CalibratedClassifierCV (sigmoid). Compared on the generated sets with a
random forest, gradient boosting and logistic regression: as accurate as any, the fastest to
refit (the model is refit at every load). Leaves of at least 5 rows give smoother, less
overconfident probabilities for shapes unlike any training file, and smaller trees."""


OPERATING_POINT_TARGETS: tuple[tuple[str, str, float], ...] = (
    ("fr-0.1pct", "false_review", 0.001),
    ("fr-1pct", "false_review", 0.01),
    ("fr-5pct", "false_review", 0.05),
    ("recall-90", "recall", 0.90),
    ("recall-95", "recall", 0.95),
    ("recall-99", "recall", 0.99),
)
"""Named operating points (name, kind, target): ``fr-*`` keep the share of benign files sent
to review at most the target, ``recall-*`` send at least the target share of component
files to review. Training records the threshold of each one it reaches in ``model.json``."""

GROUP_HASH_PREFIX = "g-"
_GROUP_HASH = re.compile(r"g-[0-9a-f]{32}")


class ModelError(MeshscanError):
    """A model that cannot be used, with the reason in words."""


def is_hashed(groups: list[str] | np.ndarray) -> bool:
    """Whether every design group is a salted hash (``g-`` + 32 hex digits, as
    :func:`scanner.classify.train.salted_groups` writes them) rather than a name."""
    return len(groups) > 0 and all(_GROUP_HASH.fullmatch(str(g)) for g in groups)


def group_splits(groups: np.ndarray, n_splits: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """GroupKFold splits: every variant of one design lands in the same fold.

    GroupKFold breaks ties between equal-sized groups by their sorted order, which for salted
    hashes would make the folds (and so the model) depend on the random salt: hashed groups are
    numbered by first appearance instead, so a retrain on the same rows gives the same folds.
    Groups stored as names (older models) keep the order they were trained with."""
    from sklearn.model_selection import GroupKFold

    if is_hashed(groups):
        _, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
        groups = np.argsort(np.argsort(first))[inverse]
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise ModelError("need at least two design groups to cross-validate")
    k = min(n_splits, n_groups)
    return list(GroupKFold(n_splits=k).split(np.zeros(len(groups)), groups=groups))


@functools.cache
def _weighted_pipeline_class() -> type:
    """Built on first use: scikit-learn is imported only when a model is fitted."""
    from sklearn.pipeline import Pipeline

    class WeightedPipeline(Pipeline):
        """A Pipeline whose ``fit`` takes ``sample_weight`` and hands it to the forest, so that
        CalibratedClassifierCV weights the trees as well as the calibration (a plain Pipeline
        does not declare ``sample_weight`` and would weight the calibration only)."""

        def fit(self, X: Any, y: Any = None, sample_weight: Any = None, **params: Any) -> Any:  # noqa: N803
            if sample_weight is not None:
                params["trees__sample_weight"] = sample_weight
            return super().fit(X, y, **params)

    return WeightedPipeline


def build_estimator(params: dict[str, Any], splits: list[tuple[np.ndarray, np.ndarray]]) -> Any:
    """Scaling + ExtraTrees, calibrated by CalibratedClassifierCV on grouped folds.

    ``ensemble=False``: one forest fitted on all rows, with the calibration map learnt from
    out-of-fold predictions - one forest to evaluate per scan instead of one per fold."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import ExtraTreesClassifier
    from sklearn.preprocessing import StandardScaler

    forest = ExtraTreesClassifier(
        n_estimators=int(params["n_estimators"]),
        max_features=params["max_features"],
        min_samples_leaf=int(params["min_samples_leaf"]),
        class_weight=params["class_weight"],
        random_state=int(params["random_state"]),
        n_jobs=1,
    )
    pipe = _weighted_pipeline_class()([("scale", StandardScaler()), ("trees", forest)])
    return CalibratedClassifierCV(pipe, method=params["calibration"], cv=splits, ensemble=False)


def training_sha256(x: np.ndarray, labels: list[str], groups: list[str], weights: np.ndarray | None = None) -> str:
    """The digest of the training rows, labels, groups and (when weighted) sample weights; an
    unweighted model's digest is the one models had before weights existed."""
    chunks = [
        b"meshscan-training-v1",
        np.ascontiguousarray(x, dtype="<f8").tobytes(),
        json.dumps([labels, groups]).encode(),
    ]
    if weights is not None:
        chunks += [b"weights", np.ascontiguousarray(weights, dtype="<f8").tobytes()]
    return sha256_chunks(chunks)


@dataclass
class ThresholdInfo:
    value: float
    how: str
    """How the value was calibrated, with the figure it gives, in words."""


class ComponentModel:
    """Scores a feature row with calibrated probabilities of each category and ``benign``."""

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        self.params = {**DEFAULT_PARAMS, **(params or {})}
        self.meta: dict[str, Any] = {}
        self.path: Path | None = None
        self.source: str | None = None
        """How the model was asked for: a folder, or ``"shipped"`` (so that Dask workers on other
        machines load their own installed copy)."""
        self.fitted_by: str = "fit"
        """``"fit"`` (fitted or refit here) or ``"cache"`` (loaded from the verified forest arrays)."""
        self._fast: _FastForest | None = None
        self._estimator: Any = None
        self._deferred: tuple[np.ndarray, list[str], list[str], np.ndarray | None] | None = None

    @property
    def estimator_(self) -> Any:
        """The fitted scikit-learn estimator. A model loaded from its forest cache has none until
        something asks (training on top of it, saving it): it is then refit from the rows."""
        if self._estimator is None and self._deferred is not None:
            rows, self._deferred = self._deferred, None
            self.fit(*rows)
        if self._estimator is None:
            raise AttributeError("estimator_")
        return self._estimator

    @estimator_.setter
    def estimator_(self, value: Any) -> None:
        self._estimator = value

    # ------------------------------------------------------------------ fitting
    def fit(self, x: np.ndarray, labels: list[str], groups: list[str], weights: np.ndarray | None = None
            ) -> ComponentModel:  # fmt: skip
        """Fit on rows, labels and design groups; ``weights`` (one per row, positive) weight the
        trees and the calibration (None: every row weighs 1)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or len(x) != len(labels) or len(labels) != len(groups):
            raise ModelError("features, labels and groups must have one row each")
        if weights is not None:
            weights = np.asarray(weights, dtype=np.float64)
            if weights.shape != (len(x),) or not np.isfinite(weights).all() or (weights <= 0).any():
                raise ModelError("sample weights must be one positive number per training row")
        if not np.isfinite(x).all():
            raise ModelError("training features contain NaN or infinity")
        unknown = sorted(set(labels) - set(LABELS))
        if unknown:
            raise ModelError(f"unknown categor{'y' if len(unknown) == 1 else 'ies'} {unknown}; one of: {LABELS}")
        present = [c for c in LABELS if c in set(labels)]
        if BENIGN not in present or len(present) < 2:
            raise ModelError("training needs benign rows and at least one component category")
        self.classes_ = present
        index = {c: i for i, c in enumerate(present)}
        y = np.array([index[c] for c in labels], dtype=np.int64)
        garr = np.asarray(groups, dtype=str)
        splits = group_splits(garr, int(self.params["calibration_folds"]))
        fit_args = {} if weights is None else {"sample_weight": weights}
        self.estimator_ = build_estimator(self.params, splits).fit(x, y, **fit_args)
        self.x_, self.labels_, self.groups_, self.weights_ = x, list(labels), list(groups), weights
        benign = x[y == index[BENIGN]]
        self.benign_median_ = np.median(benign, axis=0)
        self._fast = _FastForest.build(self.estimator_, x)
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(N, C) probabilities, columns in ``classes_`` order."""
        if self._fast is None and not hasattr(self, "estimator_"):
            raise ModelError("model is not fitted")
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        return self._fast.predict_proba(x) if self._fast is not None else self.estimator_.predict_proba(x)

    @property
    def components(self) -> list[str]:
        return [c for c in self.classes_ if c != BENIGN]

    @property
    def review_threshold(self) -> float:
        return float(self.meta.get("review_threshold", 0.5))

    @property
    def operating_points(self) -> dict[str, float]:
        """Named review thresholds recorded at training (empty for a model saved before them)."""
        points = self.meta.get("operating_points")
        if not isinstance(points, dict):
            return {}
        return {str(k): float(v) for k, v in points.items() if isinstance(v, int | float) and not isinstance(v, bool)}

    def operating_point(self, name: str) -> float:
        """The threshold of a named operating point, or ModelError naming the ones there are."""
        points = self.operating_points
        if name in points:
            return points[name]
        known = ", ".join(sorted(points)) if points else "none: it was trained before operating points were recorded"
        raise ModelError(f"model {self.version} has no operating point {name!r} (recorded: {known})")

    @property
    def version(self) -> str:
        return str(self.meta.get("model_version", "unsaved"))

    # ------------------------------------------------------------------ persistence
    def _probe_rows(self) -> np.ndarray:
        """A few training rows per class, deterministic, to check a refit against."""
        y = np.asarray(self.labels_)
        picks = []
        for c in self.classes_:
            rows = np.flatnonzero(y == c)
            picks.extend(rows[:: max(1, len(rows) // 2)][:2].tolist())
        return self.x_[sorted(picks)]

    def save(self, path: str | os.PathLike[str], threshold: ThresholdInfo, name: str = "", description: str = "",
             extra: dict[str, Any] | None = None) -> None:  # fmt: skip
        from sklearn import __version__ as sk_version

        from scanner.classify.features import column_names, descriptor_version, feature_version

        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        probes = self._probe_rows()
        reference = self.estimator_.predict_proba(probes)  # scikit-learn's own answer, not the fast path
        arrays = {"features.npy": self.x_, "probes.npy": probes, "probe_proba.npy": reference}
        if self.weights_ is not None:
            arrays["weights.npy"] = self.weights_
        blobs = {}
        for fname, arr in arrays.items():
            buf = io.BytesIO()
            np.save(buf, np.ascontiguousarray(arr, dtype=np.float64), allow_pickle=False)
            blobs[fname] = buf.getvalue()
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": name,
            "description": description,
            "created": utc_now(),
            "descriptor_version": descriptor_version(),
            "feature_version": feature_version(),
            "sklearn_version": sk_version,
            "numpy_version": np.__version__,
            "params": self.params,
            "classes": self.classes_,
            "columns": column_names(),
            "review_threshold": float(threshold.value),
            "threshold_calibration": threshold.how,
            "training_sha256": training_sha256(self.x_, self.labels_, self.groups_, self.weights_),
            "rows_per_class": {c: int(sum(lab == c for lab in self.labels_)) for c in self.classes_},
            "labels": self.labels_,
            "groups": self.groups_,
            **(extra or {}),
        }
        identity = json.dumps({k: v for k, v in meta.items() if k != "created"}, sort_keys=True).encode()
        content = sha256_chunks([*(blobs[fname] for fname in sorted(blobs)), identity])
        meta["model_version"] = "model-" + content[:12]
        if self.weights_ is None:
            (root / "weights.npy").unlink(missing_ok=True)  # a stale one would not match the digest
        for fname, data in blobs.items():
            (root / fname).write_bytes(data)
        forest_cache.remove(root)  # an older model's cache must not outlive it
        if self._fast is not None:  # after model_version: the cache is derived, not identity
            meta[forest_cache.ENTRY] = forest_cache.write(root, self._fast.arrays(), meta)
        (root / "model.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        self.meta, self.path = meta, root

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ComponentModel:
        """Refit a saved model from its stored rows and check it against its probes (or take its
        forest from the verified cache, without scikit-learn: see the module docstring)."""
        from scanner.classify.features import descriptor_version, feature_version

        root = Path(path)
        try:
            meta = json.loads((root / "model.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelError(f"{root} is not a meshscan model folder (no model.json)") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"cannot read {root / 'model.json'}: {exc}") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ModelError(f"{root / 'model.json'} is not a meshscan model")
        if meta.get("format_version") != FORMAT_VERSION:
            raise ModelError(f"model format version {meta.get('format_version')!r} is not supported")
        if meta.get("descriptor_version") != descriptor_version() or meta.get("feature_version") != feature_version():
            raise ModelError(
                f"model {root} was trained on features {meta.get('feature_version')!r}, but this scanner computes "
                f"{feature_version()!r}: retrain it with 'meshscan train' (the shipped demo model: "
                "'python -m fixtures.demo_model')"
            )
        try:
            arrays = {
                n: np.load(root / n, allow_pickle=False) for n in ("features.npy", "probes.npy", "probe_proba.npy")
            }
            weights = np.load(root / "weights.npy", allow_pickle=False) if (root / "weights.npy").exists() else None
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot read the model's arrays in {root}: {exc}") from None
        x = arrays["features.npy"]
        if weights is not None and (weights.dtype != np.float64 or weights.shape != (len(x),)):
            raise ModelError(f"model {root} is inconsistent: weights.npy does not hold one weight per row")
        labels, groups = meta.get("labels"), meta.get("groups")
        if (
            x.dtype != np.float64 or x.ndim != 2 or not isinstance(labels, list) or not isinstance(groups, list)
            or len(labels) != len(x) or len(groups) != len(x) or x.shape[1] != len(meta.get("columns", []))
        ):  # fmt: skip
            raise ModelError(f"model {root} is inconsistent: rows, labels and groups do not match")
        if training_sha256(x, labels, groups, weights) != meta.get("training_sha256"):
            raise ModelError(f"model {root} failed verification: its training rows do not match training_sha256")
        model = cls(meta.get("params"))
        want = arrays["probe_proba.npy"]
        if model._from_cache(root, meta, (x, labels, groups, weights), arrays["probes.npy"], want):
            model.meta, model.path = meta, root
            return model
        try:
            model.fit(x, labels, groups, weights)
        except ValueError as exc:
            raise ModelError(f"cannot refit model {root}: {exc}") from None
        if list(model.classes_) != list(meta.get("classes", [])):
            raise ModelError(f"model {root} is inconsistent: classes {meta.get('classes')} vs {model.classes_}")
        got = model.estimator_.predict_proba(arrays["probes.npy"])
        diff = float(np.abs(got - want).max()) if got.shape == want.shape else float("inf")
        if not diff <= PROBE_TOLERANCE:
            from sklearn import __version__ as sk_version

            raise ModelError(
                f"model {root} does not reproduce its probe scores after refitting (max difference {diff:.3g}): it "
                f"was trained with scikit-learn {meta.get('sklearn_version')}, this is {sk_version}; retrain it"
            )
        model.meta, model.path = meta, root
        return model

    def _from_cache(self, root: Path, meta: dict[str, Any], rows: tuple[Any, ...], probes: np.ndarray,
                    want: np.ndarray) -> bool:  # fmt: skip
        """Take the forest from the folder's verified cache if it scores the probe rows as
        scikit-learn did at training (within :data:`PROBE_TOLERANCE`); False: refit instead."""
        x, labels, _, _ = rows
        classes = meta.get("classes")
        if classes != [c for c in LABELS if c in set(labels)]:  # as fit() orders them
            return False
        arrays = forest_cache.read(root, meta, x.shape[1])
        if arrays is None:
            return False
        fast = _FastForest.from_arrays(arrays)
        got = fast.predict_proba(np.atleast_2d(probes))
        if got.shape != want.shape or not float(np.abs(got - want).max(initial=0.0)) <= PROBE_TOLERANCE:
            return False
        y = np.asarray(labels)
        self.classes_ = list(classes)
        self.x_, self.labels_, self.groups_, self.weights_ = rows
        self.benign_median_ = np.median(x[y == BENIGN], axis=0)
        self._fast, self._deferred, self.fitted_by = fast, rows, "cache"
        return True


class _FastForest:
    """The fitted scaler + forest + sigmoid calibration evaluated with a few numpy gathers.

    scikit-learn pays about 0.15 ms of Python per tree per call, which for one row is most
    of a scan's budget; walking all trees at once costs a fraction of that. It reproduces
    scikit-learn's arithmetic (float32 split comparisons, per-tree normalised leaf values,
    averaged, one-vs-rest sigmoids, renormalised) and is only used after it has been checked
    to agree with scikit-learn on a spread of training rows (and the probe rows are checked
    against scikit-learn's own scores at every load)."""

    AGREEMENT = 1e-9

    def __init__(self, estimator: Any) -> None:
        cal = estimator.calibrated_classifiers_[0]
        pipe = cal.estimator
        scaler, forest = pipe.named_steps["scale"], pipe.named_steps["trees"]
        self.mean = np.asarray(scaler.mean_, dtype=np.float64)
        self.scale = np.asarray(scaler.scale_, dtype=np.float64)
        trees = [t.tree_ for t in forest.estimators_]
        width = max(t.node_count for t in trees)
        n_classes = forest.n_classes_
        self.left = np.full((len(trees), width), -1, dtype=np.int64)
        self.right = np.full((len(trees), width), -1, dtype=np.int64)
        self.feature = np.zeros((len(trees), width), dtype=np.int64)
        self.threshold = np.zeros((len(trees), width), dtype=np.float64)
        self.value = np.zeros((len(trees), width, n_classes), dtype=np.float64)
        for i, t in enumerate(trees):
            n = t.node_count
            self.left[i, :n], self.right[i, :n] = t.children_left, t.children_right
            self.feature[i, :n] = np.maximum(t.feature, 0)
            self.threshold[i, :n] = t.threshold
            v = t.value[:, 0, :n_classes]
            total = v.sum(axis=1, keepdims=True)
            self.value[i, :n] = v / np.where(total == 0, 1.0, total)
        self.depth = max(t.max_depth for t in trees)
        self.a = np.array([c.a_ for c in cal.calibrators], dtype=np.float64)
        self.b = np.array([c.b_ for c in cal.calibrators], dtype=np.float64)
        self.n_classes = n_classes

    _FIELDS = ("left", "right", "feature", "threshold", "value", "mean", "scale", "a", "b", "depth", "n_classes")

    def arrays(self) -> dict[str, Any]:
        """What :mod:`scanner.classify.forest_cache` stores."""
        return {name: getattr(self, name) for name in self._FIELDS}

    @classmethod
    def from_arrays(cls, arrays: dict[str, Any]) -> _FastForest:
        """The forest from verified cached arrays (no scikit-learn)."""
        fast = cls.__new__(cls)
        for name in cls._FIELDS:
            setattr(fast, name, arrays[name])
        return fast

    @classmethod
    def build(cls, estimator: Any, x: np.ndarray) -> _FastForest | None:
        try:
            cal = estimator.calibrated_classifiers_[0]
            if len(estimator.calibrated_classifiers_) != 1 or cal.method != "sigmoid" or len(cal.classes) < 3:
                return None
            fast = cls(estimator)
        except (AttributeError, KeyError, IndexError):  # another scikit-learn layout: use its own predict
            return None
        check = x[:: max(1, len(x) // 256)]  # a spread of training rows is plenty, and cheap
        if not np.allclose(fast.predict_proba(check), estimator.predict_proba(check), rtol=0, atol=cls.AGREEMENT):
            return None
        return fast

    def _walk_tables(self) -> tuple[np.ndarray, ...] | None:
        """Flat tables for :meth:`_leaf_values`, made once per process (not cached on disk):
        each node's two children as flat indices into the (trees x nodes) arrays, a leaf being
        its own child on both sides; with its feature and threshold, flat. None where some
        node has one child only (not scikit-learn's trees): then the table walk is not used."""
        walk = self.__dict__.get("_walk")
        if walk is None:
            n_trees, width = self.left.shape
            base = np.arange(0, n_trees * width, width, dtype=np.int64)[:, None]
            leaf = self.left < 0
            if not np.array_equal(leaf, self.right < 0):
                walk = ()
            else:
                own = base + np.arange(width, dtype=np.int64)
                left = np.where(leaf, own, self.left + base).reshape(-1)
                right = np.where(leaf, own, self.right + base).reshape(-1)
                walk = (left, right, self.feature.reshape(-1), self.threshold.reshape(-1), base.reshape(1, -1))
            self.__dict__["_walk"] = walk
        return walk or None

    def _leaf_values(self, z: np.ndarray) -> np.ndarray:
        """(rows, trees, classes): the value of the leaf each row reaches in each tree.

        Walked on flat tables (:meth:`_walk_tables`): per level, five gathers and one choice
        for every (row, tree), where the 2-D fancy indexing walk made nine calls and tested for
        finished trees (a finished tree's node is a leaf, which leads to itself here, so
        ``depth`` levels reach the same leaves). The same leaves, so the same values: 0.11 ->
        0.06 ms for a file's one row (60 trees of depth up to 22)."""
        n_rows, n_trees = len(z), len(self.left)
        walk = self._walk_tables()
        if walk is None:
            trees = np.arange(n_trees)[None, :]
            rows = np.arange(n_rows)[:, None]
            node = np.zeros((n_rows, n_trees), dtype=np.int64)
            for _ in range(self.depth):
                left = self.left[trees, node]
                inner = left >= 0
                if not inner.any():
                    break
                go_left = z[rows, self.feature[trees, node]] <= self.threshold[trees, node]
                node = np.where(inner, np.where(go_left, left, self.right[trees, node]), node)
            return self.value[trees, node]
        go_left, go_right, feature, threshold, roots = walk
        flat_z = z.reshape(-1)
        node = np.repeat(roots, n_rows, axis=0)
        row_start = np.arange(0, z.size, z.shape[1], dtype=np.int64)[:, None] if n_rows > 1 else None
        for _ in range(self.depth):
            at = feature.take(node)
            if row_start is not None:
                at += row_start
            node = np.where(flat_z.take(at) <= threshold.take(node), go_left.take(node), go_right.take(node))
        return self.value.reshape(-1, self.value.shape[-1]).take(node, axis=0)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        z = ((x - self.mean) / self.scale).astype(np.float32).astype(np.float64)
        forest = self._leaf_values(z).mean(axis=1)
        proba = 1.0 / (1.0 + np.exp(self.a * forest + self.b))
        total = proba.sum(axis=1, keepdims=True)
        proba = np.divide(proba, total, out=np.full_like(proba, 1.0 / self.n_classes), where=total != 0)
        proba[(proba > 1.0) & (proba <= 1.0 + 1e-5)] = 1.0
        return proba


def shipped_model_path() -> Path:
    """The demo model that ships with meshscan (``signatures/model/`` in the source tree):
    inside the shipped library, so found the same way in an install or a source tree."""
    from scanner.library import shipped_library_path

    return shipped_library_path() / "model"


def load_model(path: str | os.PathLike[str] | None = None) -> ComponentModel:
    """Load a model folder, or the shipped demo model when ``path`` is None."""
    model = ComponentModel.load(shipped_model_path() if path is None else path)
    model.source = "shipped" if path is None else os.fspath(path)
    return model
