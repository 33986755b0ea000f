"""The ``meshscan`` command: one click group; each command lives in its own module and
imports heavy libraries only when it runs, so ``--help`` and ``--version`` stay fast.

Exit codes come from one table (scanner/cli/exitcodes.py, and the README's "Exit codes"):
0 clean, 1 something flagged or sent to review (wins over 2), 2 some uploads could not be
scanned, 3 the scanner could not run.
"""

from __future__ import annotations

import click

from scanner._version import __version__
from scanner.cli.evaluate_cmd import evaluate_cmd
from scanner.cli.exitcodes import ExitCodeGroup
from scanner.cli.export_cmd import export_cmd
from scanner.cli.inspect_cmd import inspect_cmd
from scanner.cli.report_cmd import report_cmd
from scanner.cli.review_cmd import review_cmd
from scanner.cli.scan_cmd import scan_cmd
from scanner.cli.serve_cmd import serve_cmd
from scanner.cli.signatures_cmd import allowlist_group, signatures_group
from scanner.cli.survey_cmd import survey_cmd
from scanner.cli.train_cmd import train_cmd
from scanner.cli.watch_cmd import watch_cmd
from scanner.cli.watch_health_cmd import watch_health_cmd


@click.group(cls=ExitCodeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="meshscan")
def cli() -> None:
    """meshscan: find 3D-printable blueprints of essential firearm components in uploaded
    model files (STL, OBJ, PLY, OFF, 3MF and archives), for human review.

    meshscan flags, quarantines and queues files for people to decide; it never deletes.
    """


cli.add_command(scan_cmd)
cli.add_command(inspect_cmd)
cli.add_command(signatures_group)
cli.add_command(allowlist_group)
cli.add_command(train_cmd)
cli.add_command(evaluate_cmd)
cli.add_command(watch_cmd)
cli.add_command(watch_health_cmd)
cli.add_command(review_cmd)
cli.add_command(report_cmd)
cli.add_command(export_cmd)
cli.add_command(survey_cmd)
cli.add_command(serve_cmd)


def main() -> None:
    cli(prog_name="meshscan")
