"""``meshscan scan PATH...``: match uploads against a signature library."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from scanner.cli.exitcodes import CommandError, exit_with
from scanner.cli.flags import SCAN
from scanner.cli.options import context_from_options, started, uses
from scanner.util import is_url


@click.command("scan")
@click.argument("paths", nargs=-1, required=False, type=click.Path())
@uses(*SCAN)
def scan_cmd(paths: tuple[str, ...], files_from: str | None, fmt: str | None, out_path: str | None, force: bool,
             append: bool, show_all: bool, only_flagged: bool, list_skipped: bool, together: bool,
             **options: Any) -> None:  # fmt: skip
    """Scan files, folders (recursively) and archives (member by member).

    Exit code 0: everything read, nothing flagged; 1: something flagged or sent to review
    (even if other files could not be read); 2: nothing flagged, but some upload could not be
    scanned (or quarantined); 3: the scanner could not run (a library, model or config that
    fails verification or cannot be loaded, bad arguments).

    PATHs may be omitted when --files-from lists them. --out never truncates earlier results
    unless told (--force), and --append adds to them.
    """
    from scanner.batch import WalkStats
    from scanner.run import ScanRun

    one_blas_thread_from_the_start()
    if files_from is not None:
        paths = (*paths, *read_files_from(files_from))
    elif not paths:
        raise click.UsageError("give PATH... to scan, or --files-from FILE")
    if together:
        _check_together(options, paths)
    run_settings = _run_settings(options)
    check_out_options(out_path, fmt, force, append)
    # before the library loads: a refused --out costs nothing
    out, had_content = open_out(out_path, fmt or "jsonl", force, append) if out_path else (sys.stdout, False)
    exclude = options.pop("exclude")
    try:
        context = context_from_options(options)
        walk = WalkStats(on_skip=_echo_skipped if list_skipped else None)
        with started(ScanRun(context, run_settings, _Echo(), walk)) as run:
            fmt = fmt or ("table" if out.isatty() else "jsonl")
            progress = _progress(table_or_not_terminal=fmt == "table" or not out.isatty())
            writer = _writer(out, fmt, had_content, show_all, paths, progress)
            try:
                _scan(run, paths, exclude, writer, only_flagged, progress, together)
            finally:
                writer.close()
    finally:
        if out_path:
            out.close()
    click.echo(_summary_line(run), err=True)
    exit_with(run.summary.exit_code)


def one_blas_thread_from_the_start() -> None:
    """Start OpenBLAS (numpy's and scipy's) with one thread in this process, unless the
    environment says otherwise or numpy is already loaded (then it is too late to matter).

    Why: a scan's parent does no matrix work of its own - its workers scan, and each limits
    itself to one BLAS thread (:func:`scanner.engines.worker.one_blas_thread`). Started with
    a thread per core, each OpenBLAS spins up its threads when it loads (busy-waiting for
    work that never comes, CPU taken from the imports), and the one-thread limit in every
    forked worker starts them again there, since a fork keeps none: measured on a one-file
    scan, about 80 ms of CPU in the parent and 35 ms in each worker before its first file.
    Children inherit the setting, as the guarded children already get it
    (:data:`scanner.engines.worker.SINGLE_THREAD_ENV`)."""
    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _run_settings(options: dict[str, Any]) -> Any:
    """The run's settings from the options (popped), after their usage errors."""
    from scanner.run import RunSettings

    move_to, copy_to = options.pop("move_to"), options.pop("copy_to")
    db, resume = options.pop("db_path"), options.pop("resume")
    engine, scheduler = options.pop("engine"), options.pop("scheduler")
    if move_to and copy_to:
        raise click.UsageError("use --move or --copy, not both")
    if resume and not db:
        raise click.UsageError("--resume needs --db")
    if scheduler and engine != "dask":
        raise click.UsageError("--scheduler goes with --engine dask")
    return RunSettings(engine=engine, jobs=options.pop("jobs"), scheduler=scheduler, library=options.get("library"),
                       db=db, resume=resume, quarantine=move_to or copy_to, move=bool(move_to),
                       previews=not options.pop("no_previews"))  # fmt: skip


def _writer(out: Any, fmt: str, had_content: bool, show_all: bool, paths: tuple[str, ...], progress: Any) -> Any:
    from scanner.sinks.output import WRITERS, CsvWriter, TableWriter

    if fmt == "csv":
        return CsvWriter(out, header=not had_content)
    if fmt != "table":
        return WRITERS[fmt](out)
    # rows and the progress bar on one terminal: rows are printed through the bar's console,
    # so they scroll above it instead of being torn by its redraws
    console = progress.console if not progress.disable and _same_terminal(out, sys.stderr) else None
    name, title = _names(paths)
    return TableWriter(out, show_clear=show_all, name=name, console=console, title=title)


def _same_terminal(a: Any, b: Any) -> bool:
    try:
        return a.isatty() and b.isatty() and os.path.samestat(os.fstat(a.fileno()), os.fstat(b.fileno()))
    except (OSError, ValueError, AttributeError):
        return False


def _names(paths: tuple[str, ...]) -> tuple[Any, str | None]:
    """How the table names a file, and the line saying relative to what: one folder (or URL
    prefix) scanned -> paths relative to it, which is what a person recognises; several PATHs
    or named files -> the paths as given (relative to one root they could collide)."""
    if len(paths) != 1 or not (is_url(paths[0]) or os.path.isdir(paths[0])):
        return None, None
    root = paths[0]
    if is_url(root):
        prefix = root.rstrip("/") + "/"
        return (lambda p: p[len(prefix) :] if p.startswith(prefix) else p), f"under {root}"

    def relative(p: str) -> str:
        rel = os.path.relpath(p, root) if not is_url(p) else p
        return p if rel.startswith(os.pardir) else rel

    return relative, f"under {root}"


def _check_together(options: dict[str, Any], paths: tuple[str, ...]) -> None:
    """``--together`` reads a folder as one upload: what works file by file does not follow."""
    urls = [p for p in paths if is_url(p)]
    if urls:
        raise click.UsageError(f"--together reads local folders; {urls[0]} is a URL")
    if options.get("move_to") or options.get("copy_to"):
        raise click.UsageError("--together reports a folder as one upload and quarantines nothing: drop "
                               "--move/--copy, or scan its files without --together to quarantine them")  # fmt: skip
    if options.get("resume"):
        raise click.UsageError("--resume skips files by size and time, which a folder read together does not "
                               "have: drop --resume with --together")  # fmt: skip
    if options.get("exclude"):
        raise click.UsageError("--exclude applies to folder walks: a folder read together is read whole")


def _scan(run: Any, paths: tuple[str, ...], exclude: tuple[str, ...], writer: Any, only_flagged: bool,
          progress: Any, together: bool = False) -> None:  # fmt: skip
    """Feed the run, write what it yields, and show progress."""
    from scanner.batch import iter_uploads

    with progress:
        total, uploads = None, iter_uploads(paths, run.summary.walk, exclude, together=together)
        if not progress.disable and not any(is_url(p) for p in paths):
            uploads = iter(listed := list(uploads))  # walked (and sniffed) once; counted for the ETA
            total = len(listed)
        task = progress.add_task("scanning", total=total)
        for _, verdicts in run.scan(uploads):
            progress.update(task, advance=1, description=f"scanning ({run.summary.counts['flag']} flagged)")
            for v in verdicts:
                if not only_flagged or v.needs_attention:
                    writer.write(v)


def _summary_line(run: Any) -> str:
    from scanner.sinks.output import terminal_safe

    summary, context = run.summary, run.context
    walk, stats, counts = summary.walk, summary.stats, summary.counts
    skipped = f"; {walk.skipped} skipped (not a model by content)" if walk.skipped else ""
    skipped += f"; {walk.excluded} excluded (--exclude)" if walk.excluded else ""
    if summary.recorded:  # --resume: counted from the results store, so the totals cover every file
        skipped += f"; {summary.recorded} unchanged file(s) skipped (--resume), counted from their recorded results"
    if stats.copied:
        skipped += f"; {stats.copied} duplicate(s) by content not rescanned"
    return (
        f"meshscan: {summary.files} file(s), {summary.results} result(s): {counts['flag']} flagged, "
        f"{counts['review']} review, {counts['clear']} clear, {counts['unscannable']} unscannable{skipped} "
        f"[library {terminal_safe(context.library_version)}, model {terminal_safe(context.model_version)}]"
    )


def check_out_options(out_path: str | None, fmt: str | None, force: bool, append: bool) -> None:
    """Usage errors of --out/--force/--append (shared with ``export``)."""
    if (force or append) and not out_path:
        raise click.UsageError("--force and --append go with --out FILE")
    if force and append:
        raise click.UsageError("use --force (overwrite) or --append, not both")
    if append and fmt in ("json", "table"):
        raise click.UsageError(f"--append works with --format jsonl or csv, not {fmt} (one document per file)")


def open_out(out_path: str, fmt: str, force: bool, append: bool) -> tuple[Any, bool]:
    """``--out FILE`` opened without ever silently truncating it, and whether it already
    held results (an appended CSV then gets no second header); a fatal error otherwise,
    before anything is scanned."""
    from scanner.sinks.output import OutputExists, csv_header_matches, open_results_file

    try:
        if append and fmt == "csv" and os.path.isfile(out_path) and os.path.getsize(out_path) > 0:
            if not csv_header_matches(out_path):
                raise CommandError(
                    f"[out-mismatch] {out_path} is not a meshscan CSV (its header differs): not appending"
                )
        return open_results_file(out_path, force=force, append=append)
    except OutputExists:
        raise CommandError(
            f"[out-exists] {out_path} exists and is not empty: use --force to overwrite it or --append to add to it"
        ) from None
    except OSError as exc:
        raise CommandError(f"[io-error] cannot write the results to {out_path}: {exc.strerror or exc}") from None


def read_files_from(source: str) -> list[str]:
    """The paths listed in ``source`` (a file, or ``-`` for stdin): NUL-separated if the list
    holds a NUL byte (``find -print0``; every name exact), else one per line, blank lines and
    lines starting with ``#`` ignored. Names are decoded as the file system does
    (``os.fsdecode``), so undecodable names survive."""
    try:
        if source == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(source, "rb") as f:
                data = f.read()
    except OSError as exc:
        raise CommandError(f"[io-error] cannot read the path list {source}: {exc.strerror or exc}") from None
    if b"\0" in data:
        return [os.fsdecode(p) for p in data.split(b"\0") if p]
    lines = (line.rstrip(b"\r") for line in data.split(b"\n"))
    return [os.fsdecode(line) for line in lines if line.strip() and not line.startswith(b"#")]


def _echo_skipped(path: str, why: str) -> None:
    from scanner.sinks.output import terminal_safe

    click.echo(f"meshscan: skipped {terminal_safe(path)}: {terminal_safe(why)}", err=True)


class _Echo:
    """The run's messages about quarantine, on stderr."""

    def quarantined(self, upload: Any, target: str) -> None:
        from scanner.sinks.output import terminal_safe as safe

        click.echo(f"meshscan: quarantined {safe(upload.path)} -> {safe(target)}", err=True)

    def not_quarantined(self, upload: Any, why: str) -> None:
        from scanner.sinks.output import terminal_safe as safe

        if is_url(upload.path):
            click.echo(f"meshscan: not quarantining remote {safe(upload.path)}: {safe(why)}", err=True)
        else:
            click.echo(f"meshscan: could not quarantine {safe(upload.path)}: {safe(why)}", err=True)


class _NoProgress:
    """The silent stand-in for rich's Progress where no bar would be drawn, so a scan whose
    stderr is not a terminal does not import rich (about 35 ms of a one-file scan's start)."""

    disable = True
    console = None

    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def add_task(self, description: str, total: float | None = None) -> int:
        return 0

    def update(self, task: int, **changes: Any) -> None:
        pass


def _maybe_terminal() -> bool:
    """False only where rich's ``Console(stderr=True).is_terminal`` is sure to be False too:
    stderr is not a tty and neither TTY_COMPATIBLE nor FORCE_COLOR says otherwise."""
    if "TTY_COMPATIBLE" in os.environ or "FORCE_COLOR" in os.environ:
        return True
    try:
        return sys.stderr.isatty()
    except (ValueError, AttributeError):
        return False


def _progress(table_or_not_terminal: bool):  # noqa: ANN202 - rich.progress.Progress
    """A progress bar with rate and ETA on stderr when stderr is a terminal; otherwise silent.
    A table on the same terminal is printed through its console (:func:`_writer`); other
    formats drawn on a terminal get no bar (their lines would be torn by its redraws)."""
    if not (table_or_not_terminal and _maybe_terminal()):
        return _NoProgress()
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task) -> Text:  # noqa: ANN001
            return Text(f"{task.speed:.1f} files/s" if task.speed else "")

    console = Console(stderr=True)
    enabled = console.is_terminal and table_or_not_terminal
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
