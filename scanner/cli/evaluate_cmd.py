"""``meshscan evaluate LABELS.csv [--model DIR]``: how a model does on a platform's own
labelled files (see scanner/classify/evaluate.py for the figures and why each has its
interval), so comparing the shipped model with one's own needs no Python."""

from __future__ import annotations

import importlib.util
import json
from typing import TYPE_CHECKING, Any

import click

from scanner.cli.exitcodes import CommandError

if TYPE_CHECKING:  # numpy is imported when a command runs: --version and --help stay fast
    import numpy as np


@click.command("evaluate")
@click.argument("labels", type=click.Path(dir_okay=False))
@click.option("--model", "model_dir", type=click.Path(file_okay=False), default=None,
              help="Model folder to evaluate (default: the shipped demo model).")  # fmt: skip
@click.option("--review-threshold", default=None, metavar="P|NAME",
              help="Evaluate at this threshold or named operating point (default: the model's own).")  # fmt: skip
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: tables; json: every figure, for scripts (keys: README, 'Evaluating a model').")  # fmt: skip
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Also draw the threshold curve as a PNG here (needs the report extra: matplotlib).")  # fmt: skip
def evaluate_cmd(labels: str, model_dir: str | None, review_threshold: str | None, fmt: str,
                 plot_path: str | None) -> None:  # fmt: skip
    """Evaluate a classifier model on LABELS.csv (path,category[,group], as `meshscan train` reads).

    Prints per-category precision, recall and F1, the confusion matrix, the Brier score, the
    share of component files and of benign files (false reviews) sent to review at the review
    threshold - each rate with its Wilson 95% interval - the threshold table and the operating
    points (thresholds for false reviews <= 0.1%, 1%, 5% and component recall >= 90%, 95%, 99%,
    with whether there are enough files to claim each). Files that cannot be read are listed
    with their reason and left out of every rate.
    """
    from scanner.classify.evaluate import evaluation, evaluation_text
    from scanner.classify.model import ModelError, load_model
    from scanner.classify.train import read_labels

    if plot_path is not None and not _have("matplotlib"):
        raise CommandError("[missing-dependency] --plot needs matplotlib: pip install 'meshscan[report]'")
    try:
        model = load_model(model_dir)
        threshold = _threshold(model, review_threshold)
        data = read_labels(labels)
        proba, kept, skipped = scored_as_scanned(model, data)
    except ModelError as exc:
        raise CommandError(str(exc)) from None
    ev = evaluation(proba, list(model.classes_), kept.labels, threshold)
    report: dict[str, Any] = {
        "format": ev["format"],
        "format_version": ev["format_version"],
        "model": {"version": model.version, "source": model.source, "name": model.meta.get("name", ""),
                  "review_threshold": model.review_threshold, "operating_points": model.operating_points},
        "files_listed": len(data.paths),
        "files_skipped": len(skipped),
        "skipped": [{"path": p, "reason": r} for p, r in skipped],
        **ev,
    }  # fmt: skip
    if fmt == "json":
        click.echo(json.dumps(report, indent=1))
    else:
        title = (f"model {model.version} ({model.source}) on {ev['files']} labelled files"
                 + (f" ({len(skipped)} left out: unreadable)" if skipped else ""))  # fmt: skip
        click.echo(evaluation_text(ev, title), nl=False)
    _report_skipped(skipped)
    if plot_path is not None:
        _plot(ev, threshold, plot_path, model.version)


def scored_as_scanned(model: Any, data: Any) -> tuple[np.ndarray, Any, list[tuple[str, str]]]:
    """Each readable file's class probabilities as ``meshscan scan`` scores it: the whole
    file and every body scored alone (:mod:`scanner.classify.bodies`), the highest-scoring
    row kept (the whole file on a tie, as :attr:`scanner.policy.Case.top` decides), so a
    model is evaluated on the scores a scan's review threshold is compared with."""
    import numpy as np

    from scanner.classify.model import BENIGN
    from scanner.classify.train import LabelledSet
    from scanner.config import Limits
    from scanner.errors import UnreadableInput
    from scanner.loading import load
    from scanner.shape import Shape

    rows, spans, kept, skipped = [], [], LabelledSet(), []
    for path, label, group in zip(data.paths, data.labels, data.groups, strict=True):
        try:
            shape = Shape.of(load(path), Limits().max_bodies)
            file_rows = [shape.classifier_row, *(b.row for b in shape.body_rows)]
        except UnreadableInput as err:
            skipped.append((path, err.reason))
            continue
        except (ValueError, FloatingPointError) as exc:
            skipped.append((path, f"cannot describe: {exc}"))
            continue
        spans.append((len(rows), len(rows) + len(file_rows)))
        rows.extend(file_rows)
        kept.paths.append(path)
        kept.labels.append(label)
        kept.groups.append(group)
    if not rows:
        return np.zeros((0, len(model.classes_))), kept, skipped
    proba = model.predict_proba(np.stack(rows))
    benign = list(model.classes_).index(BENIGN)
    component = np.delete(proba, benign, axis=1).max(axis=1)
    top = [start + int(np.argmax(component[start:end])) for start, end in spans]
    return proba[top], kept, skipped


def _have(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or blocked package is as good as missing
        return False


def _threshold(model: Any, given: str | None) -> float:
    """The threshold to evaluate at: the model's, a number, or a named operating point."""
    from scanner.classify.model import ModelError

    if given is None:
        return model.review_threshold
    try:
        value = float(given)
    except ValueError:
        try:
            return model.operating_point(given)
        except ModelError as exc:
            raise click.UsageError(f"[unknown-operating-point] --review-threshold {given}: {exc}") from None
    if not 0 < value <= 1:
        raise click.UsageError(f"--review-threshold must be a probability in (0, 1] or a name, got {given}")
    return value


def _report_skipped(skipped: list[tuple[str, str]]) -> None:
    from scanner.sinks.output import terminal_safe

    for path, reason in skipped:
        click.echo(f"meshscan: left out {terminal_safe(path)}: {terminal_safe(reason)}", err=True)
    if skipped:
        click.echo(f"meshscan: {len(skipped)} file(s) could not be read and are not in any rate", err=True)


def _plot(ev: dict[str, Any], threshold: float, path: str, version: str) -> None:
    from scanner.report.plots import save_png, threshold_plot

    try:
        save_png(threshold_plot(ev["threshold_table"], threshold, f"Review threshold: model {version}"), path)
    except OSError as exc:
        raise CommandError(f"cannot write the plot {path}: {exc.strerror}") from None
    click.echo(f"meshscan: wrote the threshold curve to {path}", err=True)
