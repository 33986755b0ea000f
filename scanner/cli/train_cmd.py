"""``meshscan train LABELS.csv --out MODEL``: a platform trains the component classifier on
its own labelled files (see scanner/classify/train.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from scanner.cli.exitcodes import CommandError


@click.command("train")
@click.argument("labels", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Model folder to write.")
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True,
              help="Grouped cross-validation folds for the report and the threshold.")  # fmt: skip
@click.option("--false-review-target", type=click.FloatRange(0, 1), default=None,
              help="Share of benign files the review threshold may send to review (default 1%).")  # fmt: skip
@click.option("--review-threshold", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Fix the review threshold instead of calibrating it.")  # fmt: skip
@click.option("--name", default="", help="A name stored with the model.")
@click.option("--local-report", type=click.Path(dir_okay=False), default=None,
              help="Where to keep the training record that names the design groups and files (default: "
                   "OUT.training-local.json beside the model folder; never inside it).")  # fmt: skip
@click.option("--base", default=None, metavar="shipped|DIR",
              help="Also train on this model's stored rows (the shipped demo model, or a model folder) and "
                   "compare the new model with it on your files' held-out folds.")  # fmt: skip
@click.option("--base-weight", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True,
              help="With --base: sample weight of each base row.")  # fmt: skip
@click.option("--own-weight", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True,
              help="With --base: sample weight of each of your files.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of tables.")
def train_cmd(labels: str, out_dir: str, folds: int, false_review_target: float | None,
              review_threshold: float | None, name: str, local_report: str | None, base: str | None,
              base_weight: float, own_weight: float, as_json: bool) -> None:  # fmt: skip
    """Train a calibrated component classifier from LABELS.csv (path,category[,group]).

    Paths are relative to the CSV; categories are the six of `meshscan signatures` plus
    `benign`; `group` names the design a file is a variant of (variants never straddle
    cross-validation folds). Prints and saves (report.json, report.txt in the model folder)
    per-class precision and recall, the confusion matrix and the Brier score. The model is
    stored as feature rows and parameters, never as a pickle.

    The model folder is meant to be shared: it holds design groups only as salted hashes (the
    salt is random and never saved) and no file names or paths. The names, with their hashes,
    and the files left out go to the local report outside the folder (--local-report).

    With --base, the model is trained on the base model's rows plus your files (each source
    with its --base-weight / --own-weight), and the report compares it with the base on your
    files, held out by grouped cross-validation. The operating points (thresholds for false
    reviews <= 0.1%, 1%, 5% and component recall >= 90%, 95%, 99%) are recorded in the model
    for --review-threshold NAME.
    """
    import json

    from rich.console import Console
    from rich.progress import Progress

    from scanner.classify.model import ModelError
    from scanner.classify.train import DEFAULT_FALSE_REVIEW_TARGET, train
    from scanner.sinks.output import terminal_safe

    console = Console(stderr=True)
    record = local_report or str(out_dir).rstrip("/\\") + ".training-local.json"
    try:
        with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
            task = progress.add_task("describing", total=None)

            def tick(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            target = DEFAULT_FALSE_REVIEW_TARGET if false_review_target is None else false_review_target
            if base is None:
                model, report = train(labels, out_dir, folds=folds, target=target, threshold=review_threshold,
                                      name=name, progress=tick, local_report=record)  # fmt: skip
            else:
                from scanner.classify.rebase import load_base, train_on_base

                model, report = train_on_base(labels, out_dir, load_base(base), base_weight=base_weight,
                                              own_weight=own_weight, folds=folds, target=target,
                                              threshold=review_threshold, name=name, progress=tick,
                                              local_report=record)  # fmt: skip
    except ModelError as exc:
        raise CommandError(str(exc)) from None
    for item in json.loads(Path(record).read_text(encoding="utf-8"))["skipped"]:
        click.echo(f"meshscan: left out {terminal_safe(item['path'])}: {terminal_safe(item['reason'])}", err=True)
    if as_json:
        click.echo(json.dumps(report, indent=1))
    elif base is not None:
        from scanner.classify.rebase import base_report_text

        click.echo(base_report_text(report), nl=False)
    else:
        _print_report(report)
    click.echo(f"meshscan: wrote model {model.version} to {out_dir} (report.txt, report.json beside it); design "
               f"group names and file paths kept locally in {record}", err=True)  # fmt: skip


def _print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    classes = report["classes"]
    table = Table(title=f"grouped {report['folds']}-fold cross-validation: {report['rows']} files, "
                        f"{report['groups']} designs")  # fmt: skip
    for col in ("category", "precision", "recall", "f1", "Brier", "support"):
        table.add_column(col, justify="left" if col == "category" else "right")
    for c in classes:
        m = report["per_class"][c]
        table.add_row(c, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", f"{m['brier']:.3f}",
                      str(m["support"]))  # fmt: skip
    console.print(table)
    conf = Table(title="confusion matrix (rows: true, columns: predicted)")
    conf.add_column("")
    for c in classes:
        conf.add_column(c[:10], justify="right")
    for c, row in zip(classes, report["confusion_matrix"], strict=True):
        conf.add_row(c, *(str(v) for v in row))
    console.print(conf)
    console.print(f"accuracy {report['accuracy']:.3f}; multi-class Brier score {report['brier']:.4f}")
    t = report["threshold"]
    console.print(f"review threshold {t:.2f} ({report['threshold_calibration']})")
    if report.get("component_recall_at_threshold") is not None:
        console.print(f"  component files sent to review (out-of-fold): {report['component_recall_at_threshold']:.1%}")
    if report.get("false_review_rate_at_threshold") is not None:
        console.print(f"  benign files sent to review (out-of-fold): {report['false_review_rate_at_threshold']:.1%}")
    from scanner.classify.evaluate import operating_points_text

    click.echo("\n".join(operating_points_text(report["operating_points"])))
