"""``meshscan survey ROOT... --sample N --seed S``: prevalence in a corpus too large to scan
whole, from a seeded uniform random sample (scanner/report/survey.py)."""

from __future__ import annotations

import json
import os
from typing import Any

import click

from scanner.cli.exitcodes import CommandError
from scanner.cli.flags import SURVEY
from scanner.cli.options import context_from_options, started, uses


@click.command("survey")
@click.argument("roots", nargs=-1, required=True, type=click.Path())
@uses(*SURVEY)
def survey_cmd(roots: tuple[str, ...], sample_size: int, seed: int, db_path: str | None, jobs: int | None,
               as_json: bool, out_path: str | None, include_paths: bool, **options: Any) -> None:  # fmt: skip
    """Scan a uniform random sample of the files under ROOT (folders or fsspec URLs) and
    estimate the prevalence of flag and review with 95% Wilson intervals, and the projected
    number of such files in the whole corpus.

    Every file is scanned exactly as `meshscan scan` scans it (same worker processes, limits,
    library and model). Exit code 0 on success, 3 when the survey cannot be made (a ROOT
    that does not exist, nothing to sample, a library or model that cannot be loaded).
    """
    from scanner.batch import WalkStats, iter_uploads
    from scanner.report.survey import run_survey
    from scanner.run import RunSettings, ScanRun

    if options["no_model"] and options["model_dir"]:
        raise click.UsageError("use --model or --no-model, not both")
    for root in roots:  # before loading anything: a typo should not cost a model load
        if "://" not in root and not os.path.lexists(root):
            raise CommandError(f"[not-found] {root}: no such file, folder or URL")
    context = context_from_options(options)
    walk = WalkStats()

    def listing():  # noqa: ANN202
        for upload in iter_uploads(roots, walk):
            if upload.path in (walk.missing or []):
                raise CommandError(f"[not-found] {upload.path}: no such file, folder or URL")
            yield upload

    settings = RunSettings(jobs=jobs, db=db_path, absolute_paths=False)
    with started(ScanRun(context, settings, walk=walk)) as run:
        result = run_survey(listing(), sample_size, seed, lambda sample: run.scan(iter(sample)))
    if result.population == 0:
        raise CommandError("[empty-source] no files to sample under " + ", ".join(roots))
    if db_path:
        _record_design(db_path, result, list(roots))
    doc = result.to_dict(include_paths=include_paths)
    doc["roots"] = len(roots)
    text = json.dumps(doc, indent=1, sort_keys=True)
    if out_path:
        with open(out_path, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    if as_json:
        click.echo(text)
    else:
        _print(doc)


def _record_design(db_path: str, result: Any, roots: list[str]) -> None:
    """The survey's design beside its verdicts, for ``meshscan report`` on the database."""
    from scanner.report.survey import META_KEY, survey_meta
    from scanner.store.backend import DB_ERRORS, display_name
    from scanner.store.results import ResultsStore

    try:
        with ResultsStore(db_path) as store:
            store.set_meta(META_KEY, json.dumps(survey_meta(result, roots)))
    except (*DB_ERRORS, OSError) as exc:
        raise CommandError(f"[io-error] cannot record the survey in {display_name(db_path)}: {exc}") from None


def _print(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"Sampled {doc['sample_size']:,} of {doc['population']:,} files "
        f"({100 * (doc['sampling_fraction'] or 0):.2f}%), seed {doc['seed']}; outcomes: "
        + ", ".join(f"{k} {v:,}" for k, v in doc["outcomes"].items())
    )
    table = Table(
        title="Prevalence among scannable files, and projected totals (95% Wilson, finite-population corrected)"
    )
    for col in ("outcome", "sampled", "prevalence", "95% interval", "projected files", "95% interval "):
        table.add_column(col, justify="left" if col == "outcome" else "right")
    for outcome in ("flag", "review"):
        p, t = doc["prevalence"][outcome], doc["projected_totals"][outcome]
        est = "n/a" if p["estimate"] is None else f"{100 * p['estimate']:.2f}%"
        table.add_row(
            outcome,
            f"{p['k']:,} / {p['n']:,}",
            est,
            f"{100 * p['ci95'][0]:.2f}–{100 * p['ci95'][1]:.2f}%",
            f"{t['estimate']:,.0f}",
            f"{t['ci95'][0]:,.0f}–{t['ci95'][1]:,.0f}",
        )
    console.print(table)
