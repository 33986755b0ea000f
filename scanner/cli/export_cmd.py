"""``meshscan export DB``: dump a results database as the records ``scan`` writes.

A database written by ``scan --db`` (or ``watch --state``) holds every verdict; a pipeline
that wants them as a file - to load elsewhere, to diff two runs, to hand to a spreadsheet -
gets exactly what ``scan --format jsonl|csv`` would have printed, through the same writers
(so the same JSON Schema and the same formula-neutralised CSV cells)."""

from __future__ import annotations

import sys

import click

from scanner.cli.exitcodes import CommandError
from scanner.cli.scan_cmd import check_out_options, open_out


@click.command("export")
@click.argument("db_path", metavar="DB", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True,
              help="JSON lines (one verdict record per line) or CSV (the columns of 'scan --format csv').")  # fmt: skip
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="Write here instead of stdout (a non-empty file is refused: see --force and --append).")  # fmt: skip
@click.option("--force", is_flag=True, help="With --out: overwrite a non-empty file.")
@click.option("--append", is_flag=True, help="With --out: append to the file (csv keeps one header).")
@click.option("--verdict", "verdicts", multiple=True, type=click.Choice(["flag", "review", "clear", "unscannable"]),
              help="Only records with this verdict (repeatable).")  # fmt: skip
def export_cmd(db_path: str, fmt: str, out_path: str | None, force: bool, append: bool,
               verdicts: tuple[str, ...]) -> None:  # fmt: skip
    """Dump the verdicts recorded in a results database (from 'scan --db' or 'watch --state')
    as JSON lines or CSV, ordered by path and archive member.

    The database is opened read-only. Exit code 0: written; 3: the database cannot be read or
    the output cannot be written.
    """
    from scanner.sinks.output import CsvWriter, JsonlWriter
    from scanner.store.backend import DB_ERRORS, display_name
    from scanner.store.results import NotAResultsDB, ResultsStore

    check_out_options(out_path, fmt, force, append)
    try:
        db = ResultsStore.open_readonly(db_path)
    except NotAResultsDB as exc:
        raise CommandError(f"[{exc.reason}] {exc}") from None
    out, had_content = open_out(out_path, fmt, force, append) if out_path else (sys.stdout, False)
    writer = CsvWriter(out, header=not had_content) if fmt == "csv" else JsonlWriter(out)
    written = 0
    try:
        for verdict in db.verdicts(verdicts):
            writer.write(verdict)
            written += 1
    except (*DB_ERRORS, ValueError, TypeError) as exc:
        where = display_name(db_path)
        raise CommandError(f"[not-a-results-database] {where}: a record cannot be read ({exc})") from None
    finally:
        writer.close()
        if out_path:
            out.close()
        db.conn.close()
    click.echo(f"meshscan: exported {written} record(s) from {display_name(db_path)}", err=True)
