"""How well a model's scores separate components from benign files: the figures behind
``meshscan evaluate`` and the report of ``meshscan train``.

Everything here works on scores already computed (a model's probabilities on labelled
files, or out-of-fold probabilities from cross-validation), so the same figures describe the
shipped model on a platform's files, a platform's own model, and the two side by side.

- per-category precision, recall and F1 (scikit-learn's ``precision_recall_fscore_support``),
  the confusion matrix, the Brier score of the review score and the multi-class one;
- the review rates at the model's threshold - share of component files sent to review, share
  of benign files sent to review (false reviews) - as counts with Wilson 95% intervals
  (:mod:`scanner.report.stats`): on a few hundred files a rate without its interval misleads;
- the threshold table (every threshold of :data:`THRESHOLD_GRID` with the counts it sends
  to review), from which the operating points are read;
- the operating points of :data:`~scanner.classify.model.OPERATING_POINT_TARGETS`, each with
  the rates it achieves and whether there are enough files to claim the target at all: a
  false-review rate of at most ``p`` is only supported by at least ``3 / p`` benign files
  (the "rule of three": with no false review among ``n`` files, the 95% upper bound on the
  rate is about ``3 / n``), and a recall of at least ``r`` by ``3 / (1 - r)`` component files.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from scanner.classify.model import BENIGN, LABELS, OPERATING_POINT_TARGETS
from scanner.report.stats import proportion

EVALUATION_FORMAT = "meshscan-evaluation"
EVALUATION_VERSION = 1
THRESHOLD_GRID = np.round(np.arange(0.01, 0.991, 0.01), 2)
"""The thresholds of the threshold table and the operating points (two decimals, as printed)."""
TABLE_ROWS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99)
"""Thresholds the text table shows (JSON holds the whole grid), plus the model's own."""


def component_score(proba: np.ndarray, classes: list[str]) -> np.ndarray:
    """Probability per row that the file is a component of any category, 1 - P(benign): what
    the review threshold is compared with. (A file split between two component categories
    is no less likely to be a component than one that is sure of its category.)"""
    return 1.0 - proba[:, classes.index(BENIGN)]


def pick_threshold(benign_scores: np.ndarray, target: float) -> float:
    """The lowest threshold (on a 0.01 grid, at least 0.30) sending at most ``target`` of
    these benign files to review."""
    for t in np.round(np.arange(0.30, 0.991, 0.01), 2):
        if np.mean(benign_scores >= t) <= target:
            return float(t)
    return 0.99


def operating_threshold(kind: str, target: float, component: np.ndarray, benign: np.ndarray) -> float | None:
    """The threshold meeting one target, or None when no threshold of the grid does.

    ``false_review``: the lowest threshold sending at most ``target`` of the benign scores to
    review (the rule ``meshscan train`` calibrates with, so ``fr-1pct`` is its default);
    ``recall``: the highest threshold sending at least ``target`` of the component scores."""
    if kind == "false_review":
        if len(benign) == 0:
            return None
        t = pick_threshold(benign, target)
        return t if np.mean(benign >= t) <= target else None
    if len(component) == 0:
        return None
    for t in THRESHOLD_GRID[::-1]:
        if np.mean(component >= t) >= target:
            return float(t)
    return None


def operating_thresholds(scores: np.ndarray, is_benign: np.ndarray) -> dict[str, float]:
    """``{name: threshold}`` for every named target these scores reach (what a model records)."""
    component, benign = scores[~is_benign], scores[is_benign]
    found = {
        name: operating_threshold(kind, target, component, benign) for name, kind, target in OPERATING_POINT_TARGETS
    }
    return {name: t for name, t in found.items() if t is not None}


def needed_files(kind: str, target: float) -> int:
    """Files needed to support a target at all (rule of three; see the module docstring)."""
    return math.ceil(3.0 / (target if kind == "false_review" else 1.0 - target) - 1e-9)


def _rates(scores: np.ndarray, is_benign: np.ndarray, threshold: float) -> dict[str, Any]:
    reviewed = scores >= threshold
    comp, ben = reviewed[~is_benign], reviewed[is_benign]
    return {
        "threshold": float(threshold),
        "component_recall": proportion(int(comp.sum()), len(comp)).to_dict(),
        "false_review_rate": proportion(int(ben.sum()), len(ben)).to_dict(),
    }


def threshold_table(scores: np.ndarray, is_benign: np.ndarray) -> list[dict[str, Any]]:
    """One row per threshold of the grid: components and benign files sent to review (counts and shares)."""
    comp, ben = scores[~is_benign], scores[is_benign]
    rows = []
    for t in THRESHOLD_GRID:
        kc, kb = int((comp >= t).sum()), int((ben >= t).sum())
        rows.append({
            "threshold": float(t),
            "components_reviewed": kc, "components": len(comp),
            "component_share": kc / len(comp) if len(comp) else None,
            "benign_reviewed": kb, "benign": len(ben),
            "benign_share": kb / len(ben) if len(ben) else None,
        })  # fmt: skip
    return rows


def operating_points(scores: np.ndarray, is_benign: np.ndarray) -> list[dict[str, Any]]:
    """Each named target with its threshold, the rates it achieves and whether the data supports it."""
    component, benign = scores[~is_benign], scores[is_benign]
    out = []
    for name, kind, target in OPERATING_POINT_TARGETS:
        t = operating_threshold(kind, target, component, benign)
        have = len(benign) if kind == "false_review" else len(component)
        need = needed_files(kind, target)
        files = "benign" if kind == "false_review" else "component"
        point: dict[str, Any] = {"name": name, "kind": kind, "target": target, "threshold": t,
                                 "reached": t is not None, "files": have, "files_needed": need,
                                 "supported": t is not None and have >= need}  # fmt: skip
        if t is not None:
            point.update({k: v for k, v in _rates(scores, is_benign, t).items() if k != "threshold"})
        if have == 0:
            point["note"] = f"no {files} files to measure this target on"
        elif have < need:
            point["note"] = f"not enough {files} files to support this target (needs at least {need}, has {have})"
        elif t is None:
            point["note"] = "no threshold reaches this target on these files"
        else:
            point["note"] = ""
        out.append(point)
    return out


def evaluation(proba: np.ndarray, classes: list[str], labels: list[str], threshold: float) -> dict[str, Any]:
    """Every figure of ``meshscan evaluate`` for probabilities ``proba`` (columns ``classes``)
    of files whose true categories are ``labels``, at review threshold ``threshold``.

    The JSON keys are stable (README, "Classifier and review threshold"); categories a file
    is labelled with but the model does not know count as always mispredicted."""
    from sklearn.metrics import brier_score_loss, confusion_matrix, precision_recall_fscore_support

    names = [c for c in LABELS if c in set(classes) | set(labels)]
    full = np.zeros((len(proba), len(names)))
    for j, c in enumerate(classes):
        full[:, names.index(c)] = proba[:, j]
    predicted = [names[i] for i in full.argmax(axis=1)]
    _, _, f, s = precision_recall_fscore_support(labels, predicted, labels=names, zero_division=0)
    matrix = confusion_matrix(labels, predicted, labels=names)
    scores = component_score(full, names)
    is_benign = np.array([c == BENIGN for c in labels])
    per_class = {}
    for i, c in enumerate(names):  # precision and recall as counts, for their intervals
        tp = int(matrix[i, i])
        per_class[c] = {
            "support": int(s[i]),
            "predicted": int(matrix[:, i].sum()),
            "precision": proportion(tp, int(matrix[:, i].sum())).to_dict(),
            "recall": proportion(tp, int(s[i])).to_dict(),
            "f1": float(f[i]),
        }
    single = len(set(labels)) == 1
    # scikit-learn takes the probability columns in sorted label order
    multiclass_brier = 0.0 if single else brier_score_loss(labels, full[:, np.argsort(names)], labels=sorted(names))
    return {
        "format": EVALUATION_FORMAT,
        "format_version": EVALUATION_VERSION,
        "files": len(labels),
        "classes": names,
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
        "accuracy": float(np.mean(np.asarray(predicted) == np.asarray(labels))),
        "brier": {
            # 0/1 "is a component" against the review score: what the threshold acts on
            "review_score": float(brier_score_loss((~is_benign).astype(int), scores, pos_label=1)),
            "multiclass": None if single else float(multiclass_brier),
        },
        "at_threshold": _rates(scores, is_benign, threshold),
        "operating_points": operating_points(scores, is_benign),
        "threshold_table": threshold_table(scores, is_benign),
    }


def _rate(p: dict[str, Any]) -> str:
    if not p["n"]:
        return "n/a (no files)"
    lo, hi = p["ci95"]
    return f"{p['estimate']:.1%} ({p['k']}/{p['n']}; 95% CI {lo:.1%}-{hi:.1%})"


def evaluation_text(ev: dict[str, Any], title: str = "") -> str:
    """The evaluation as plain-text tables (what ``meshscan evaluate`` prints)."""
    classes = ev["classes"]
    lines = [title] if title else []
    lines += [f"{'category':24s} {'precision':>9s} {'recall':>7s} {'f1':>6s} {'support':>8s}"]
    for c in classes:
        m = ev["per_class"][c]
        prec, rec = m["precision"]["estimate"], m["recall"]["estimate"]
        lines.append(f"{c:24s} {'-' if prec is None else f'{prec:.3f}':>9s} {'-' if rec is None else f'{rec:.3f}':>7s} "
                     f"{m['f1']:6.3f} {m['support']:8d}")  # fmt: skip
    brier = ev["brier"]
    multi = "n/a" if brier["multiclass"] is None else f"{brier['multiclass']:.4f}"
    lines += ["", f"accuracy {ev['accuracy']:.3f}; Brier score {brier['review_score']:.4f} (review score), "
              f"{multi} (multi-class)", "", "confusion matrix (rows: true, columns: predicted)"]  # fmt: skip
    lines.append(" " * 24 + " ".join(f"{c[:8]:>8s}" for c in classes))
    for c, row in zip(classes, ev["confusion_matrix"], strict=True):
        lines.append(f"{c:24s}" + " ".join(f"{v:8d}" for v in row))
    at = ev["at_threshold"]
    lines += ["", f"at the review threshold {at['threshold']:.2f}:",
              f"  component files sent to review: {_rate(at['component_recall'])}",
              f"  benign files sent to review (false reviews): {_rate(at['false_review_rate'])}"]  # fmt: skip
    lines += ["", *threshold_table_text(ev, at["threshold"]), "", *operating_points_text(ev["operating_points"])]
    return "\n".join(lines) + "\n"


def _share(share: float | None, k: int, n: int, digits: int) -> str:
    return "-" if share is None else f"{share:.{digits}%} ({k}/{n})"


def threshold_table_text(ev: dict[str, Any], current: float | None = None) -> list[str]:
    """Selected rows of the threshold table (and the current threshold's)."""
    wanted = {round(t, 2) for t in TABLE_ROWS} | ({round(current, 2)} if current is not None else set())
    lines = ["review threshold -> components sent to review, benign files sent to review",
             f"{'threshold':>9s} {'components':>20s} {'benign':>20s}"]  # fmt: skip
    for row in ev["threshold_table"]:
        if round(row["threshold"], 2) not in wanted:
            continue
        comp = _share(row["component_share"], row["components_reviewed"], row["components"], 1)
        ben = _share(row["benign_share"], row["benign_reviewed"], row["benign"], 2)
        mark = " <- current" if current is not None and round(row["threshold"], 2) == round(current, 2) else ""
        lines.append(f"{row['threshold']:9.2f} {comp:>20s} {ben:>20s}{mark}")
    return lines


def operating_points_text(points: list[dict[str, Any]]) -> list[str]:
    """The operating points as lines: name, threshold, achieved rates, and the caveat."""
    lines = ["operating points (threshold for each target; rates achieved on these files)"]
    for p in points:
        goal = (f"false reviews <= {p['target']:.1%}" if p["kind"] == "false_review"
                else f"component recall >= {p['target']:.0%}")  # fmt: skip
        if p["threshold"] is None:
            lines.append(f"  {p['name']:10s} {goal:24s} not reached" + (f"; {p['note']}" if p["note"] else ""))
            continue
        lines.append(f"  {p['name']:10s} {goal:24s} threshold {p['threshold']:.2f}: recall "
                     f"{_rate(p['component_recall'])}, false reviews {_rate(p['false_review_rate'])}"
                     + (f"; {p['note']}" if p["note"] else ""))  # fmt: skip
    return lines


def comparison(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Headline figures of two evaluations on the same files, side by side (base, then new)."""

    def headline(ev: dict[str, Any]) -> dict[str, Any]:
        at = ev["at_threshold"]
        return {"threshold": at["threshold"], "component_recall": at["component_recall"],
                "false_review_rate": at["false_review_rate"], "accuracy": ev["accuracy"], "brier": ev["brier"],
                "f1": {c: m["f1"] for c, m in ev["per_class"].items()}}  # fmt: skip

    return {"base": headline(base), "new": headline(new)}


def comparison_text(cmp: dict[str, Any]) -> str:
    """The comparison as a small table."""
    b, n = cmp["base"], cmp["new"]
    rows = [
        ("review threshold", f"{b['threshold']:.2f}", f"{n['threshold']:.2f}"),
        ("component files sent to review", _rate(b["component_recall"]), _rate(n["component_recall"])),
        ("benign files sent to review", _rate(b["false_review_rate"]), _rate(n["false_review_rate"])),
        ("accuracy", f"{b['accuracy']:.3f}", f"{n['accuracy']:.3f}"),
        ("Brier (review score)", f"{b['brier']['review_score']:.4f}", f"{n['brier']['review_score']:.4f}"),
    ]
    rows += [(f"F1 {c}", f"{b['f1'].get(c, 0.0):.3f}", f"{f:.3f}") for c, f in n["f1"].items()]
    width = max(len(r[1]) for r in rows)
    lines = [f"{'':32s} {'base model':>{width}s}   new model (out-of-fold)"]
    lines += [f"{name:32s} {bv:>{width}s}   {nv}" for name, bv, nv in rows]
    return "\n".join(lines) + "\n"
