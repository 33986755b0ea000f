"""``meshscan train``: fit, cross-validate and save a component model from labelled files.

Real labelled data belongs to the platforms; this is the pipeline a platform runs on its
own files. Steps:

1. read ``LABELS.csv`` (``path,category[,group]``; paths relative to the CSV; categories of
   DESIGN.md plus ``benign``; ``group`` names the design a file is a variant of - without
   it every file is its own design);
2. load and describe every file (an unreadable file is reported and left out);
3. grouped cross-validation (no design straddles folds): out-of-fold probabilities give the
   report - per-class precision and recall, confusion matrix, Brier score - and the review
   threshold: the lowest one whose false-review rate on the benign rows is within target;
4. fit on everything and save (no pickle: see :mod:`scanner.classify.model`), with
   ``report.json`` and ``report.txt`` beside the model.

Design groups are often uploader or case ids, and a model folder is meant to be shared: the
model stores them only as salted hashes (:func:`salted_groups`), with a fresh random salt per
training run that is never written anywhere, so a hash cannot be linked to an id by hashing
guesses. Only the local training record (``--local-report``, outside the model folder) keeps
the name-to-hash mapping and the paths of the files that were left out.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scanner.classify.evaluate import (
    component_score,
    operating_points,
    operating_points_text,
    operating_thresholds,
    pick_threshold,
)
from scanner.classify.features import feature_row
from scanner.classify.model import (
    BENIGN,
    GROUP_HASH_PREFIX,
    LABELS,
    ComponentModel,
    ModelError,
    ThresholdInfo,
    group_splits,
)

DEFAULT_FALSE_REVIEW_TARGET = 0.01
"""Target share of benign files sent to review, used to pick the threshold (the issue's
ceiling is 2%; half of it leaves room for benign files unlike the training ones)."""


@dataclass
class LabelledSet:
    paths: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)


def read_labels(csv_path: str | os.PathLike[str]) -> LabelledSet:
    """Rows of a labels file; paths resolved against the file's folder."""
    root = Path(csv_path).resolve().parent
    out = LabelledSet()
    try:
        with open(csv_path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = [h.strip().lower() for h in next(reader, [])]
            if header[:2] != ["path", "category"]:
                raise ModelError(f"{csv_path}: the first columns must be 'path,category' (got {header[:2]})")
            has_group = len(header) > 2 and header[2] == "group"
            for line, row in enumerate(reader, start=2):
                if not row or not "".join(row).strip():
                    continue
                if len(row) < 2:
                    raise ModelError(f"{csv_path}:{line}: expected path,category")
                path, category = row[0].strip(), row[1].strip()
                if category not in LABELS:
                    raise ModelError(f"{csv_path}:{line}: unknown category {category!r}; one of: {', '.join(LABELS)}")
                out.paths.append(str(root / path))
                out.labels.append(category)
                group = row[2].strip() if has_group and len(row) > 2 and row[2].strip() else path
                out.groups.append(group)
    except OSError as exc:
        raise ModelError(f"cannot read {csv_path}: {exc.strerror}") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ModelError(f"{csv_path} is not a readable CSV file: {exc}") from None
    if not out.paths:
        raise ModelError(f"{csv_path} lists no files")
    return out


def compute_features(
    data: LabelledSet, progress: Callable[[int, int], None] | None = None
) -> tuple[np.ndarray, LabelledSet, list[tuple[str, str]]]:
    """Feature rows of the readable files; returns (rows, the kept subset, [(path, reason)])."""
    from scanner.errors import UnreadableInput
    from scanner.loading import load

    rows, kept, skipped = [], LabelledSet(), []
    for i, (path, label, group) in enumerate(zip(data.paths, data.labels, data.groups, strict=True)):
        try:
            rows.append(feature_row(load(path)))
        except UnreadableInput as err:
            skipped.append((path, err.reason))
        except (ValueError, FloatingPointError) as exc:
            skipped.append((path, f"cannot describe: {exc}"))
        else:
            kept.paths.append(path)
            kept.labels.append(label)
            kept.groups.append(group)
        if progress:
            progress(i + 1, len(data.paths))
    if not rows:
        raise ModelError("no labelled file could be read")
    return np.stack(rows), kept, skipped


def salted_groups(groups: list[str], salt: bytes | None = None) -> tuple[list[str], dict[str, str]]:
    """Each design group as ``g-`` + HMAC-SHA256(salt, name), truncated to 128 bits; returns the
    hashed list and the name-to-hash mapping.

    The model only needs groups as equality classes (calibration folds never split a design),
    which hashes preserve. The salt is random per call unless given (tests) and is not returned:
    without it nobody, including us, can test a guessed id against a shared model."""
    key = secrets.token_bytes(32) if salt is None else salt
    mapping = {
        name: GROUP_HASH_PREFIX + hmac.new(key, name.encode("utf-8"), hashlib.sha256).hexdigest()[:32]
        for name in dict.fromkeys(groups)
    }
    return [mapping[g] for g in groups], mapping


def out_of_fold(x: np.ndarray, labels: list[str], groups: list[str], params: dict[str, Any] | None = None,
                folds: int = 5) -> tuple[np.ndarray, list[str]]:  # fmt: skip
    """Out-of-fold calibrated probabilities under grouped K-fold; returns (proba, classes).

    Classes missing from a training fold get probability 0 in that fold's predictions."""
    classes = [c for c in LABELS if c in set(labels)]
    proba = np.zeros((len(x), len(classes)))
    garr = np.asarray(groups, dtype=str)
    lab = np.asarray(labels)
    for train, test in group_splits(garr, folds):
        m = ComponentModel(params).fit(x[train], lab[train].tolist(), garr[train].tolist())
        p = m.predict_proba(x[test])
        for j, c in enumerate(m.classes_):
            proba[test, classes.index(c)] = p[:, j]
    return proba, classes


def evaluate(proba: np.ndarray, classes: list[str], labels: list[str], threshold: float) -> dict[str, Any]:
    """Per-class precision/recall, confusion matrix, Brier score, and review rates at ``threshold``."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    y = np.array([classes.index(c) for c in labels])
    pred = proba.argmax(axis=1)
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=range(len(classes)), zero_division=0)
    onehot = np.eye(len(classes))[y]
    brier = float(((proba - onehot) ** 2).sum(axis=1).mean())
    per_class_brier = ((proba - onehot) ** 2).mean(axis=0)
    comp = component_score(proba, classes)
    is_benign = np.array([c == BENIGN for c in labels])
    reviewed = comp >= threshold
    return {
        "classes": classes,
        "per_class": {
            c: {
                "precision": float(p[i]),
                "recall": float(r[i]),
                "f1": float(f[i]),
                "support": int(s[i]),
                "brier": float(per_class_brier[i]),
            }  # fmt: skip
            for i, c in enumerate(classes)
        },
        "confusion_matrix": confusion_matrix(y, pred, labels=range(len(classes))).tolist(),
        "accuracy": float((pred == y).mean()),
        "brier": brier,
        "threshold": threshold,
        "component_recall_at_threshold": float(reviewed[~is_benign].mean()) if (~is_benign).any() else None,
        "false_review_rate_at_threshold": float(reviewed[is_benign].mean()) if is_benign.any() else None,
    }


def report_text(report: dict[str, Any]) -> str:
    """The report as a plain-text table (also what ``meshscan train`` prints)."""
    classes = report["classes"]
    lines = [
        f"grouped {report.get('folds', '?')}-fold cross-validation, {report.get('rows', '?')} files in "
        f"{report.get('groups', '?')} design groups (out-of-fold predictions)",
        "",
        f"{'category':24s} {'precision':>9s} {'recall':>7s} {'f1':>6s} {'brier':>6s} {'support':>8s}",
    ]
    for c in classes:
        m = report["per_class"][c]
        lines.append(f"{c:24s} {m['precision']:9.3f} {m['recall']:7.3f} {m['f1']:6.3f} {m['brier']:6.3f} "
                     f"{m['support']:8d}")  # fmt: skip
    lines += ["", f"accuracy {report['accuracy']:.3f}; multi-class Brier score {report['brier']:.4f}", ""]
    short = [c[:8] for c in classes]
    lines.append("confusion matrix (rows: true, columns: predicted)")
    lines.append(" " * 24 + " ".join(f"{s:>8s}" for s in short))
    for c, row in zip(classes, report["confusion_matrix"], strict=True):
        lines.append(f"{c:24s}" + " ".join(f"{v:8d}" for v in row))
    lines.append("")
    t = report["threshold"]
    if report.get("component_recall_at_threshold") is not None:
        lines.append(f"at review threshold {t:.2f}: {report['component_recall_at_threshold']:.1%} of component "
                     f"files sent to review")  # fmt: skip
    if report.get("false_review_rate_at_threshold") is not None:
        lines.append(f"at review threshold {t:.2f}: {report['false_review_rate_at_threshold']:.1%} of benign "
                     f"files sent to review")  # fmt: skip
    if report.get("operating_points"):
        lines += ["", *operating_points_text(report["operating_points"])]
    return "\n".join(lines) + "\n"


def train(labels_csv: str | os.PathLike[str], out: str | os.PathLike[str], *, folds: int = 5,
          target: float = DEFAULT_FALSE_REVIEW_TARGET, threshold: float | None = None,
          params: dict[str, Any] | None = None, name: str = "", description: str = "",
          progress: Callable[[int, int], None] | None = None,
          local_report: str | os.PathLike[str] | None = None) -> tuple[ComponentModel, dict[str, Any]]:  # fmt: skip
    """Train and save a model; returns it with its cross-validation report."""
    data = read_labels(labels_csv)
    x, kept, skipped = compute_features(data, progress)
    return fit_and_save(x, kept, out, folds=folds, target=target, threshold=threshold, params=params, name=name,
                        description=description, skipped=skipped, local_report=local_report)  # fmt: skip


def fit_and_save(x: np.ndarray, data: LabelledSet, out: str | os.PathLike[str], *, folds: int = 5,
                 target: float = DEFAULT_FALSE_REVIEW_TARGET, threshold: float | None = None,
                 params: dict[str, Any] | None = None, name: str = "", description: str = "",
                 skipped: list[tuple[str, str]] | None = None, calibration: str | None = None,
                 local_report: str | os.PathLike[str] | None = None
                 ) -> tuple[ComponentModel, dict[str, Any]]:  # fmt: skip
    """Cross-validate, pick the threshold, fit on everything, save model + report.

    The model and everything in its folder see design groups only as salted hashes and no
    file path; ``local_report`` (a file outside the folder, for the trainer's own records)
    gets the group names with their hashes, the files used and the files left out."""
    if BENIGN not in data.labels:
        raise ModelError("the labels need benign files: they are what the review threshold is calibrated on")
    groups, mapping = salted_groups(data.groups)
    root = Path(out)
    check_local_record(local_report, root)
    proba, classes = out_of_fold(x, data.labels, groups, params, folds)
    is_benign = np.array([c == BENIGN for c in data.labels])
    benign = component_score(proba, classes)[is_benign]
    if threshold is None:
        threshold = pick_threshold(benign, target)
        how = (
            f"lowest threshold sending at most {target:.1%} of the {len(benign)} benign training files to review "
            f"in grouped {folds}-fold cross-validation (out-of-fold: {np.mean(benign >= threshold):.1%})"
        )
    else:
        how = calibration or f"set by hand ({threshold:.2f})"
    report = evaluate(proba, classes, data.labels, threshold)
    report.update(
        folds=folds, rows=len(x), groups=len(mapping), threshold_calibration=how,
        skipped=[{"reason": r} for _, r in (skipped or [])],
        operating_points=operating_points(component_score(proba, classes), is_benign),
    )  # fmt: skip
    model = ComponentModel(params).fit(x, data.labels, groups)
    points = operating_thresholds(component_score(proba, classes), is_benign)
    model.save(root, ThresholdInfo(threshold, how), name=name, description=description,
               extra={"group_ids": "salted-hmac-sha256", "operating_points": points})  # fmt: skip
    report["model_version"] = model.version
    (root / "report.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    (root / "report.txt").write_text(report_text(report), encoding="utf-8")
    if local_report is not None:
        write_local_record(local_report, model, root, mapping, data, skipped)
    return model, report


def check_local_record(local_report: str | os.PathLike[str] | None, root: Path) -> None:
    """Refuse a local training record inside the model folder (before any work is done)."""
    if local_report is not None and Path(local_report).resolve().is_relative_to(root.resolve()):
        raise ModelError(f"the local training record {local_report} must be outside the model folder {root}: "
                         "it names the design groups the shared model only holds as salted hashes")  # fmt: skip


def write_local_record(local_report: str | os.PathLike[str], model: ComponentModel, root: Path,
                       mapping: dict[str, str], data: LabelledSet,
                       skipped: list[tuple[str, str]] | None) -> None:  # fmt: skip
    """The trainer's own record, outside the shared folder: group names with their hashes,
    the files used and the files left out."""
    record = {
        "model_version": model.version,
        "model_folder": str(root.resolve()),
        "group_hashes": mapping,
        "files": [{"path": p, "category": c, "group": g} for p, c, g in zip(data.paths, data.labels, data.groups,
                                                                               strict=True)],
        "skipped": [{"path": p, "reason": r} for p, r in (skipped or [])],
    }  # fmt: skip
    try:
        Path(local_report).parent.mkdir(parents=True, exist_ok=True)
        Path(local_report).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ModelError(f"wrote model {model.version} to {root}, but not the local training record "
                         f"{local_report}: {exc.strerror}") from None  # fmt: skip
