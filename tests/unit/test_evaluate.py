"""The classifier's evaluation figures (scanner/classify/evaluate.py) on cases small enough to
work out by hand, and the named operating points a model records."""

from __future__ import annotations

import numpy as np
import pytest

from scanner.classify.evaluate import (
    evaluation,
    needed_files,
    operating_threshold,
    operating_thresholds,
    threshold_table,
)
from scanner.classify.model import ComponentModel, ModelError
from scanner.report.stats import wilson_interval

CLASSES = ["barrel", "accessory", "benign"]
# six files: P(barrel), P(accessory), P(benign); the review score is 1 - P(benign)
PROBA = np.array(
    [
        [0.90, 0.05, 0.05],  # barrel, predicted barrel, score 0.95
        [0.20, 0.70, 0.10],  # barrel, predicted accessory, score 0.90
        [0.10, 0.30, 0.60],  # barrel, predicted benign, score 0.40
        [0.05, 0.80, 0.15],  # accessory, predicted accessory, score 0.85
        [0.30, 0.10, 0.60],  # benign, predicted benign, score 0.40
        [0.02, 0.02, 0.96],  # benign, predicted benign, score 0.04
    ]
)
LABELS = ["barrel", "barrel", "barrel", "accessory", "benign", "benign"]


def test_figures_of_a_hand_computed_case() -> None:
    ev = evaluation(PROBA, CLASSES, LABELS, threshold=0.5)
    # categories in the fixed order (barrel before accessory before benign)
    assert ev["classes"] == ["barrel", "accessory", "benign"]
    assert ev["confusion_matrix"] == [[1, 1, 1], [0, 1, 0], [0, 0, 2]]
    barrel, accessory, benign = (ev["per_class"][c] for c in ev["classes"])
    assert (barrel["precision"]["k"], barrel["precision"]["n"]) == (1, 1)
    assert (barrel["recall"]["k"], barrel["recall"]["n"]) == (1, 3)
    assert barrel["f1"] == pytest.approx(2 * 1 * (1 / 3) / (1 + 1 / 3))
    assert (accessory["precision"]["k"], accessory["precision"]["n"]) == (1, 2)
    assert (benign["precision"]["k"], benign["precision"]["n"]) == (2, 3)
    assert ev["accuracy"] == pytest.approx(4 / 6)
    # review score 0.95, 0.90, 0.40, 0.85 (components) and 0.40, 0.04 (benign)
    at = ev["at_threshold"]
    assert (at["component_recall"]["k"], at["component_recall"]["n"]) == (3, 4)
    assert (at["false_review_rate"]["k"], at["false_review_rate"]["n"]) == (0, 2)
    assert at["component_recall"]["ci95"] == pytest.approx(list(wilson_interval(3, 4)))
    lo, hi = at["component_recall"]["ci95"]
    assert lo < 0.75 < hi
    brier = np.mean([(1 - 0.95) ** 2, (1 - 0.90) ** 2, (1 - 0.40) ** 2, (1 - 0.85) ** 2, 0.40**2, 0.04**2])
    assert ev["brier"]["review_score"] == pytest.approx(brier)
    onehot = np.array([[1, 0, 0]] * 3 + [[0, 1, 0]] + [[0, 0, 1]] * 2)
    assert ev["brier"]["multiclass"] == pytest.approx(((PROBA - onehot) ** 2).sum(axis=1).mean())


def test_threshold_table_counts_and_operating_points() -> None:
    scores = np.array([0.95, 0.90, 0.40, 0.85, 0.40, 0.04])
    is_benign = np.array([False, False, False, False, True, True])
    rows = {r["threshold"]: r for r in threshold_table(scores, is_benign)}
    assert (rows[0.4]["components_reviewed"], rows[0.4]["benign_reviewed"]) == (4, 1)
    assert (rows[0.41]["components_reviewed"], rows[0.41]["benign_reviewed"]) == (3, 0)
    assert (rows[0.9]["components_reviewed"], rows[0.91]["components_reviewed"]) == (2, 1)
    # the lowest threshold (at least 0.30) with no false review; the highest keeping 3/4 or all 4
    assert operating_threshold("false_review", 0.01, scores[~is_benign], scores[is_benign]) == 0.41
    assert operating_threshold("recall", 0.75, scores[~is_benign], scores[is_benign]) == 0.85
    assert operating_threshold("recall", 0.99, scores[~is_benign], scores[is_benign]) == 0.40
    points = operating_thresholds(scores, is_benign)
    assert points == {"fr-0.1pct": 0.41, "fr-1pct": 0.41, "fr-5pct": 0.41, "recall-90": 0.4, "recall-95": 0.4,
                      "recall-99": 0.4}  # fmt: skip
    only_components = operating_thresholds(scores[~is_benign], is_benign[~is_benign])
    assert set(only_components) == {"recall-90", "recall-95", "recall-99"}  # no benign file: no false-review point


def test_operating_points_say_when_there_are_too_few_files() -> None:
    assert needed_files("false_review", 0.001) == 3000
    assert needed_files("false_review", 0.01) == 300
    assert needed_files("recall", 0.95) == 60
    ev = evaluation(PROBA, CLASSES, LABELS, threshold=0.5)
    fr = next(p for p in ev["operating_points"] if p["name"] == "fr-0.1pct")
    assert not fr["supported"] and fr["files"] == 2 and fr["files_needed"] == 3000
    assert fr["note"] == "not enough benign files to support this target (needs at least 3000, has 2)"
    many = np.concatenate([np.full(3000, 0.01), np.full(10, 0.95)])
    points = evaluation(
        np.column_stack([many, 1 - many]), ["barrel", "benign"], ["benign"] * 3000 + ["barrel"] * 10, threshold=0.5
    )["operating_points"]
    fr = next(p for p in points if p["name"] == "fr-0.1pct")
    assert fr["supported"] and fr["threshold"] == 0.3 and fr["false_review_rate"]["k"] == 0


def test_a_model_without_operating_points_names_none() -> None:
    model = ComponentModel()
    model.meta = {"model_version": "model-x"}
    assert model.operating_points == {}
    with pytest.raises(ModelError, match="trained before operating points were recorded"):
        model.operating_point("fr-1pct")
    model.meta["operating_points"] = {"fr-1pct": 0.7, "recall-95": 0.4}
    assert model.operating_point("fr-1pct") == 0.7
    with pytest.raises(ModelError, match=r"no operating point 'fr-2pct' \(recorded: fr-1pct, recall-95\)"):
        model.operating_point("fr-2pct")


def test_weighted_rows_change_the_fit_and_are_part_of_the_digest() -> None:
    from scanner.classify.model import training_sha256

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 4))
    labels = ["barrel"] * 30 + ["accessory"] * 30 + ["benign"] * 60
    groups = [f"g{i // 2}" for i in range(120)]
    weights = np.where(np.arange(120) % 3 == 0, 4.0, 1.0)
    plain = ComponentModel({"n_estimators": 10}).fit(x, labels, groups)
    weighted = ComponentModel({"n_estimators": 10}).fit(x, labels, groups, weights)
    assert not np.allclose(plain.predict_proba(x), weighted.predict_proba(x))
    assert training_sha256(x, labels, groups) != training_sha256(x, labels, groups, weights)
    with pytest.raises(ModelError, match="one positive number per training row"):
        ComponentModel().fit(x, labels, groups, -weights)
