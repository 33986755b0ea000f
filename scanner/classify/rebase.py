"""``meshscan train LABELS.csv --base shipped|DIR``: train on a base model's stored rows plus a
platform's own labelled files.

A platform has many benign files and few components: a model trained on its files alone
sees too few components to generalise, while the base model (the shipped demo, or the
platform's previous model) has never seen the platform's benign files. A model folder keeps
its training rows, labels and design groups (that is how it is refit at load), so the new
model is fitted on both: every base row weighted ``base_weight`` (times its own stored weight
when the base itself was trained on a base), every own row ``own_weight``.

Whether that helped is measured on the platform's files only, held out: grouped K-fold over
the platform's designs, each fold's model trained on all base rows plus the other folds'
own rows, scored on the fold. The base model scores the same files directly (it never saw
them). Both get the figures of :mod:`scanner.classify.evaluate`, side by side. The review
threshold and the operating points come from the new model's out-of-fold scores on the
platform's own files: its benign files are the ones false reviews are counted on.

A base computed with other features (another descriptor or shape-feature version) cannot be
combined: its rows mean something else. It is refused, naming both versions.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from scanner.classify.evaluate import (
    comparison,
    comparison_text,
    component_score,
    evaluation,
    evaluation_text,
    needed_files,
    operating_thresholds,
    pick_threshold,
)
from scanner.classify.model import BENIGN, LABELS, ComponentModel, ModelError, ThresholdInfo, group_splits
from scanner.classify.train import (
    DEFAULT_FALSE_REVIEW_TARGET,
    LabelledSet,
    check_local_record,
    compute_features,
    read_labels,
    salted_groups,
    write_local_record,
)


def load_base(source: str) -> ComponentModel:
    """The base model: ``"shipped"`` or a model folder; refused when its rows were computed
    with other features than this scanner computes (they could not be mixed with new rows)."""
    from scanner.classify.features import descriptor_version, feature_version
    from scanner.classify.model import load_model, shipped_model_path

    root = shipped_model_path() if source == "shipped" else Path(source)
    try:
        meta = json.loads((root / "model.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        meta = None  # load_model says what is wrong with it
    if isinstance(meta, dict) and (
        meta.get("feature_version") != feature_version() or meta.get("descriptor_version") != descriptor_version()
    ):
        raise ModelError(
            f"[base-version-mismatch] cannot train on base model {source}: its rows were computed with features "
            f"{meta.get('feature_version')!r}, this scanner computes {feature_version()!r}; retrain the base first "
            "(the shipped one: python -m fixtures.demo_model) or train without --base"
        )
    return load_model(None if source == "shipped" else source)


def _weights(base: ComponentModel, base_weight: float, own_rows: int, own_weight: float) -> np.ndarray:
    stored = base.weights_ if base.weights_ is not None else np.ones(len(base.x_))
    return np.concatenate([stored * base_weight, np.full(own_rows, own_weight)])


def own_out_of_fold(base: ComponentModel, x: np.ndarray, data: LabelledSet, groups: list[str],
                    base_groups: list[str], weights: np.ndarray, folds: int
                    ) -> tuple[np.ndarray, list[str]]:  # fmt: skip
    """Out-of-fold probabilities on the own files (columns: the classes of base and own
    labels): each fold's model is trained on every base row plus the other folds' own rows."""
    nb = len(base.x_)
    classes = [c for c in LABELS if c in set(base.labels_) | set(data.labels)]
    proba = np.zeros((len(x), len(classes)))
    own_groups = np.asarray(groups, dtype=str)
    for train, test in group_splits(own_groups, folds):
        rows = np.concatenate([np.arange(nb), nb + train])
        all_x = np.concatenate([base.x_, x])
        all_labels = [*base.labels_, *data.labels]
        all_groups = [*base_groups, *groups]
        m = ComponentModel(base.params).fit(all_x[rows], [all_labels[i] for i in rows],
                                            [all_groups[i] for i in rows], weights[rows])  # fmt: skip
        p = m.predict_proba(x[test])
        for j, c in enumerate(m.classes_):
            proba[test, classes.index(c)] = p[:, j]
    return proba, classes


def train_on_base(labels_csv: str | os.PathLike[str], out: str | os.PathLike[str], base: ComponentModel, *,
                  base_weight: float = 1.0, own_weight: float = 1.0, folds: int = 5,
                  target: float = DEFAULT_FALSE_REVIEW_TARGET, threshold: float | None = None, name: str = "",
                  progress: Callable[[int, int], None] | None = None,
                  local_report: str | os.PathLike[str] | None = None
                  ) -> tuple[ComponentModel, dict[str, Any]]:  # fmt: skip
    """Train base rows + own files, compare with the base on the own files' held-out folds,
    save the model with ``report.json``/``report.txt``; returns the model and the report."""
    root = Path(out)
    check_local_record(local_report, root)
    if not (base_weight > 0 and own_weight > 0):
        raise ModelError("--base-weight and --own-weight must be positive")
    data = read_labels(labels_csv)
    x, kept, skipped = compute_features(data, progress)
    if BENIGN not in kept.labels:
        raise ModelError("the labels need benign files: the review threshold is calibrated on your benign files")
    if len(set(kept.groups)) < 2:
        raise ModelError("need at least two design groups among your files to compare on held-out folds")
    hashed, mapping = salted_groups([f"base:{g}" for g in base.groups_] + [f"own:{g}" for g in kept.groups])
    base_groups, own_groups = hashed[: len(base.x_)], hashed[len(base.x_) :]
    weights = _weights(base, base_weight, len(x), own_weight)
    new_proba, new_classes = own_out_of_fold(base, x, kept, own_groups, base_groups, weights, folds)
    is_benign = np.array([c == BENIGN for c in kept.labels])
    scores = component_score(new_proba, new_classes)
    if threshold is None:
        threshold = pick_threshold(scores[is_benign], target)
        how = (f"lowest threshold sending at most {target:.1%} of your {int(is_benign.sum())} benign files to review "
               f"in grouped {folds}-fold cross-validation over your files, each fold trained on the base model's "
               f"rows plus the other folds (out-of-fold: {np.mean(scores[is_benign] >= threshold):.1%})")  # fmt: skip
        if is_benign.sum() < needed_files("false_review", target):
            how += (f"; not enough benign files to support this target (needs at least "
                    f"{needed_files('false_review', target)}, has {int(is_benign.sum())})")  # fmt: skip
    else:
        how = f"set by hand ({threshold:.2f})"
    base_eval = evaluation(base.predict_proba(x), list(base.classes_), kept.labels, base.review_threshold)
    new_eval = evaluation(new_proba, new_classes, kept.labels, threshold)
    model = ComponentModel(base.params).fit(np.concatenate([base.x_, x]), [*base.labels_, *kept.labels],
                                            hashed, weights)  # fmt: skip
    source = {"model_version": base.version, "name": base.meta.get("name", ""), "rows": len(base.x_),
              "weight": base_weight}  # fmt: skip
    model.save(root, ThresholdInfo(threshold, how), name=name,
               description=f"trained on the {len(base.x_)} rows of base model {base.version} (weight {base_weight:g}) "
                           f"plus {len(x)} own labelled files (weight {own_weight:g})",
               extra={"group_ids": "salted-hmac-sha256", "operating_points": operating_thresholds(scores, is_benign),
                      "base": source, "own_rows": len(x), "own_weight": own_weight})  # fmt: skip
    report = {
        "kind": "train-on-base", "model_version": model.version, "base": source, "own_rows": len(x),
        "own_weight": own_weight, "own_groups": len(set(kept.groups)), "folds": folds, "threshold": threshold,
        "threshold_calibration": how, "skipped": [{"reason": r} for _, r in skipped],
        "comparison": comparison(base_eval, new_eval), "evaluation": {"base": base_eval, "new": new_eval},
    }  # fmt: skip
    (root / "report.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    (root / "report.txt").write_text(base_report_text(report), encoding="utf-8")
    if local_report is not None:
        own_mapping = {g: mapping[f"own:{g}"] for g in dict.fromkeys(kept.groups)}
        write_local_record(local_report, model, root, own_mapping, kept, skipped)
    return model, report


def base_report_text(report: dict[str, Any]) -> str:
    """The comparison, then the new model's full evaluation (what ``train --base`` prints)."""
    base = report["base"]
    head = (f"base model {base['model_version']} ({base['rows']} rows, weight {base['weight']:g}) plus "
            f"{report['own_rows']} own files (weight {report['own_weight']:g}); compared on your files, "
            f"grouped {report['folds']}-fold over {report['own_groups']} designs (new model: out-of-fold)")  # fmt: skip
    new = evaluation_text(report["evaluation"]["new"], "new model, out-of-fold on your files")
    return f"{head}\n\n{comparison_text(report['comparison'])}\n{new}\nreview threshold " \
           f"{report['threshold']:.2f}: {report['threshold_calibration']}\n"  # fmt: skip
