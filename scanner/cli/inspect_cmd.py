"""``meshscan inspect FILE...``: what meshscan reads in each file, per file and per body."""

from __future__ import annotations

import sys
from typing import Any

import click

from scanner.cli.exitcodes import ExitCode, exit_with
from scanner.cli.options import config_options, settings_from


@click.command("inspect")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file (or archive member) per line.")
@click.option("--no-bodies", is_flag=True, help="Skip the per-body breakdown (faster on huge files).")
@config_options
def inspect_cmd(files: tuple[str, ...], as_json: bool, no_bodies: bool, config_path: str | None, **kw: Any) -> None:
    """Report format, size, topology and hashes of FILES (and of each body in them).

    Exit code 2 if any file or archive member could not be read (each such file is listed
    with its reason code); 3 if inspecting could not start (bad config or arguments).
    """
    import json

    from scanner.inspect import inspect_path

    settings = settings_from(config_path, kw)
    records = []
    for path in files:
        records.extend(inspect_path(path, settings.limits, bodies=not no_bodies))
    if as_json:
        out = sys.stdout
        for rec in records:
            out.write(json.dumps(rec, sort_keys=False) + "\n")
    else:
        _print_table(records)
    exit_with(ExitCode.INCOMPLETE if any(is_failure(r) for r in records) else ExitCode.OK)


def is_failure(rec: dict) -> bool:
    """An unreadable file or member; companions inside an archive recognised as not a model
    (textures, materials, notes) are listed but are not errors (the scan's rule, Verdict.is_error)."""
    if not rec.get("error"):
        return False
    return not (rec.get("member") and rec.get("reason") == "not-a-model")


def _print_table(records: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from scanner.sinks.output import terminal_safe

    console = Console()
    table = Table(show_lines=False)
    for col in ("file", "format", "triangles", "vertices", "bodies", "extents", "volume", "watertight", "euler",
                "geometry hash"):  # fmt: skip
        table.add_column(col, overflow="fold")
    for rec in records:
        name = terminal_safe(rec["path"] + (f" :: {rec['member']}" if rec.get("member") else ""))
        if rec.get("error"):
            unreadable = Text(f"unreadable: {rec['reason']}", style="red")
            table.add_row(Text(name), Text(rec.get("format") or "?"), unreadable, Text(terminal_safe(rec["detail"])))
            continue
        table.add_row(*map(Text, _row(name, rec)))
        for body in rec.get("body_list", []):
            table.add_row(*map(Text, _row(f"  body {body['body']}", body, fmt="")))
    console.print(table)


def _row(name: str, rec: dict, fmt: str | None = None) -> list[str]:
    ext = " x ".join(f"{x:.4g}" for x in rec["extents"])
    return [
        name,
        rec.get("format", "") if fmt is None else fmt,
        str(rec["triangles"]),
        str(rec["vertices"]),
        str(rec.get("bodies", "")),
        ext,
        f"{rec['volume']:.4g}",
        "yes" if rec["watertight"] else "no",
        str(rec["euler_number"]),
        rec["geometry_hash"][:16],
    ]
