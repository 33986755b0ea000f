"""``meshscan scan PATH...``: match uploads against a signature library."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

import click

from scanner.cli.exitcodes import CommandError, ExitCode, exit_with
from scanner.cli.options import config_options, library_option, model_options, settings_from


@click.command("scan")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@library_option
@click.option("--format", "fmt", type=click.Choice(["table", "jsonl", "csv", "json"]), default=None,
              help="Output format (default: table on a terminal, jsonl otherwise).")  # fmt: skip
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None, help="Write results here.")
@click.option("--only-flagged", is_flag=True, help="Output only flagged and review results.")
@click.option("--exclude", "exclude", multiple=True, metavar="GLOB",
              help="In folder walks, do not scan files whose path (relative to the folder), name or folder "
              "matches GLOB (repeatable; counted in the summary).")  # fmt: skip
@click.option("--list-skipped", is_flag=True,
              help="Name on stderr each file a folder walk skipped (not a model, or --exclude).")  # fmt: skip
@click.option("--move", "move_to", type=click.Path(file_okay=False), default=None,
              help="Move flagged files into this quarantine folder.")  # fmt: skip
@click.option("--copy", "copy_to", type=click.Path(file_okay=False), default=None,
              help="Copy flagged files into this quarantine folder.")  # fmt: skip
@click.option("--threshold", type=float, default=None, help="Near-duplicate distance threshold (overrides config).")
@model_options
@click.option("--db", "db_path", type=click.Path(dir_okay=False), default=None,
              help="Record every verdict in this SQLite results database (for --resume, report, review).")  # fmt: skip
@click.option("--resume", is_flag=True, help="With --db: skip files unchanged since their recorded scan.")
@click.option("--engine", type=click.Choice(["local", "dask"]), default="local", show_default=True,
              help="local: isolated worker processes on this machine; dask: a Dask cluster.")  # fmt: skip
@click.option("--scheduler", default=None, help="Dask scheduler address (default: start a LocalCluster).")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Worker processes (default: all cores). Each file is scanned in a worker under the time and "
              "memory limits.")  # fmt: skip
@config_options
def scan_cmd(paths: tuple[str, ...], library: str | None, fmt: str | None, out_path: str | None, only_flagged: bool,
             exclude: tuple[str, ...], list_skipped: bool,
             move_to: str | None, copy_to: str | None, threshold: float | None, model_dir: str | None,
             no_model: bool, review_threshold: float | None, db_path: str | None,
             resume: bool, engine: str, scheduler: str | None, jobs: int | None, config_path: str | None,
             **kw: Any) -> None:  # fmt: skip
    """Scan files, folders (recursively) and archives (member by member).

    Exit code 0: everything read, nothing flagged; 1: something flagged or sent to review
    (even if other files could not be read); 2: nothing flagged, but some upload could not be
    scanned (or quarantined); 3: the scanner could not run (a library, model or config that
    fails verification or cannot be loaded, bad arguments).
    """
    from scanner.batch import WalkStats, iter_uploads
    from scanner.cli.options import build_scan_context
    from scanner.runner import RunStats, scan_uploads
    from scanner.sinks.output import WRITERS, terminal_safe
    from scanner.workers import IsolatedPool

    if move_to and copy_to:
        raise click.UsageError("use --move or --copy, not both")
    if resume and not db_path:
        raise click.UsageError("--resume needs --db")
    if scheduler and engine != "dask":
        raise click.UsageError("--scheduler goes with --engine dask")
    kw["match.distance_threshold"] = threshold
    kw["classify.review_threshold"] = review_threshold
    context = build_scan_context(library, settings_from(config_path, kw), model_dir, no_model)
    settings = context.settings
    db = _open_db(db_path) if db_path else None
    try:
        out = open(out_path, "w", encoding="utf-8", newline="") if out_path else sys.stdout  # noqa: SIM115
    except OSError as exc:
        raise CommandError(f"[io-error] cannot write the results to {out_path}: {exc.strerror}") from None
    fmt = fmt or ("table" if out.isatty() else "jsonl")
    writer = WRITERS[fmt](out)
    counts = {"flag": 0, "review": 0, "clear": 0, "unscannable": 0}
    errors = files = 0
    stats = WalkStats(on_skip=_echo_skipped if list_skipped else None)
    limits = settings.limits
    if engine == "dask":
        try:
            from scanner.dask_engine import DaskEngine
        except ImportError:
            raise CommandError("--engine dask needs Dask: pip install 'meshscan[dask]'") from None
        pool = DaskEngine(context, library, scheduler, jobs or os.cpu_count() or 1)
    else:
        pool = IsolatedPool(context, jobs or os.cpu_count() or 1, limits.max_seconds, limits.max_memory_bytes)
    run = RunStats()
    engine_cm = pool if engine == "dask" else contextlib.nullcontext()
    progress = _progress(out_is_terminal=out.isatty())
    try:
        with engine_cm, progress:
            total = None
            if not progress.disable and not any("://" in p for p in paths):
                total = sum(1 for _ in iter_uploads(paths, WalkStats(), exclude))  # a cheap second walk, for the ETA
            task = progress.add_task("scanning", total=total)
            for upload, verdicts in scan_uploads(iter_uploads(paths, stats, exclude), pool, context, db, resume, run):
                files += 1
                progress.update(task, advance=1, description=f"scanning ({counts['flag']} flagged)")
                for v in verdicts:
                    counts[v.verdict] += 1
                    errors += v.is_error
                    if not only_flagged or v.needs_attention:
                        writer.write(v)
                dest = move_to or copy_to
                if dest and any(v.needs_attention for v in verdicts):
                    errors += not _quarantine(upload, dest, verdicts, bool(move_to))
    finally:
        writer.close()
        if out_path:
            out.close()
        if db is not None:
            db.close()
    skipped = f"; {stats.skipped} skipped (not a model by content)" if stats.skipped else ""
    skipped += f"; {stats.excluded} excluded (--exclude)" if stats.excluded else ""
    if run.unchanged:
        skipped += f"; {run.unchanged} unchanged file(s) skipped (--resume)"
    if run.copied:
        skipped += f"; {run.copied} duplicate(s) by content not rescanned"
    click.echo(
        f"meshscan: {files} file(s), {sum(counts.values())} result(s): {counts['flag']} flagged, "
        f"{counts['review']} review, {counts['clear']} clear, {counts['unscannable']} unscannable{skipped} "
        f"[library {terminal_safe(context.library_version)}, model {terminal_safe(context.model_version)}]",
        err=True,
    )
    exit_with(ExitCode.for_run(found=bool(counts["flag"] or counts["review"]), incomplete=bool(errors)))


def _open_db(path: str) -> Any:
    """The results database, or a fatal error before anything is scanned."""
    import sqlite3

    from scanner.sinks.resultsdb import ResultsDB

    try:
        return ResultsDB(path)
    except (sqlite3.Error, OSError) as exc:
        raise CommandError(f"[io-error] cannot use {path} as a results database: {exc}") from None


def _echo_skipped(path: str, why: str) -> None:
    from scanner.sinks.output import terminal_safe

    click.echo(f"meshscan: skipped {terminal_safe(path)}: {terminal_safe(why)}", err=True)


def _quarantine(upload, dest: str, verdicts: list, move: bool) -> bool:  # noqa: ANN001
    """Quarantine one upload; False (and a message) when it could not be done."""
    from scanner.sinks.output import terminal_safe as safe
    from scanner.sinks.quarantine import QuarantineError, quarantine

    if "://" in upload.path:
        click.echo(f"meshscan: not quarantining remote {safe(upload.path)}: quarantine works on local files", err=True)
        return False
    try:
        target = quarantine(upload.path, upload.root, dest, verdicts, move=move)
    except (QuarantineError, OSError) as exc:
        click.echo(f"meshscan: could not quarantine {safe(upload.path)}: {safe(exc)}", err=True)
        return False
    click.echo(f"meshscan: quarantined {safe(upload.path)} -> {safe(target)}", err=True)
    return True


def _progress(out_is_terminal: bool):  # noqa: ANN202 - rich.progress.Progress
    """A progress bar with rate and ETA on stderr when stderr is a terminal (and the results
    are not being drawn on the same terminal as a table); otherwise silent."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task) -> Text:  # noqa: ANN001
            return Text(f"{task.speed:.1f} files/s" if task.speed else "")

    console = Console(stderr=True)
    enabled = console.is_terminal and not out_is_terminal
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
        transient=True,
    )
