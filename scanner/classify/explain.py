"""Why a file scored as it did, in a moderator's words.

Attribution by occlusion: for the category that scored highest, each feature group (one
shape feature, or one descriptor family) is replaced by its typical value among the benign
training files, and the drop in that category's probability is that group's share of the
score. The three groups with the largest drop are phrased with the file's own values
("elongated (length/width 12.4)"), so two files never get the same words unless they have
the same shape. One batched prediction per explained file; deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scanner.classify.features import FeatureGroup, feature_groups
from scanner.classify.model import BENIGN, ComponentModel
from scanner.classify.shape import FEATURES, phrase


@dataclass(frozen=True)
class Reason:
    group: str
    drop: float
    """How much the category's probability falls when this group looks benign."""
    words: str


@dataclass(frozen=True)
class Assessment:
    scores: dict[str, float]
    """Every class (components and ``benign``) -> calibrated probability."""
    category: str
    """The component category with the highest probability."""
    category_probability: float
    probability: float
    """That the file is a component of any category, 1 - P(benign): compared with the review
    threshold."""


def assess(model: ComponentModel, row: np.ndarray) -> Assessment:
    return assess_rows(model, row[None, :])[0]


def assess_rows(model: ComponentModel, rows: np.ndarray) -> list[Assessment]:
    """One :class:`Assessment` per row, from one batched prediction (a file's bodies)."""
    out = []
    for proba in model.predict_proba(rows):
        scores = {c: round(float(p), 4) for c, p in zip(model.classes_, proba, strict=True)}
        comps = [(float(p), c) for c, p in zip(model.classes_, proba, strict=True) if c != BENIGN]
        p, c = max(comps, key=lambda t: (t[0], -model.classes_.index(t[1])))
        out.append(Assessment(scores, c, p, 1.0 - float(proba[model.classes_.index(BENIGN)])))
    return out


def _words(group: FeatureGroup, row: np.ndarray, typical: np.ndarray) -> str:
    if group.shape_index is None:
        return f"{group.label}"
    col = group.columns[0]
    return phrase(FEATURES[group.shape_index], float(row[col]), bool(row[col] > typical[col]))


def reasons(model: ComponentModel, row: np.ndarray, category: str | None = None, top: int = 3) -> list[Reason]:
    """Why the file scored as a component (or, given ``category``, as that category): the
    ``top`` shape features whose benign-typical value lowers that probability most (largest
    first; features that move it by less than 0.0001 are ranked by how far the file is from
    the benign-typical value instead), plus the descriptor family that moved it most when that
    family outweighs every shape feature."""
    groups = feature_groups()
    typical = model.benign_median_
    variants = np.repeat(row[None, :], len(groups) + 1, axis=0)
    for i, g in enumerate(groups, start=1):
        cols = list(g.columns)
        variants[i, cols] = typical[cols]
    p = model.predict_proba(variants)
    proba = p[:, model.classes_.index(category)] if category else 1.0 - p[:, model.classes_.index(BENIGN)]
    drops = proba[0] - proba[1:]
    spread = np.abs(row - typical) / (np.abs(typical) + 1e-6)

    def rank(i: int) -> tuple[float, float, int]:
        moved = drops[i] if drops[i] > 1e-4 else 0.0
        return (-moved, -float(spread[groups[i].columns[0]]), i)

    shape = sorted((i for i, g in enumerate(groups) if g.shape_index is not None), key=rank)[:top]
    out = [Reason(groups[i].name, float(drops[i]), _words(groups[i], row, typical)) for i in shape]
    families = [i for i, g in enumerate(groups) if g.shape_index is None]
    if families:
        best = max(families, key=lambda i: (drops[i], -i))
        if drops[best] > 1e-4 and drops[best] > max((drops[i] for i in shape), default=0.0):
            out.append(Reason(groups[best].name, float(drops[best]), f"{groups[best].label} unlike benign files"))
    return out


def explanation(a: Assessment, why: list[Reason], threshold: float) -> str:
    """The classifier's part of a review explanation: score, threshold and the reasons."""
    because = "; ".join(r.words for r in why)
    return (
        f"the classifier gives {a.probability:.2f} that it is a component (review threshold {threshold:.2f}), "
        f"most likely {a.category.replace('_', ' ')} ({a.category_probability:.2f}), mostly because: {because}"
    )
