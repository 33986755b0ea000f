"""Exit codes at the command line: the one table every command follows (the codes themselves,
and a scanning run's policy, are :class:`scanner.exitcode.ExitCode`), and the only place they
are produced.

A pipeline must be able to tell "something was found" from "some uploads are broken" from
"the scanner is broken", and none of them may ever look like a clean run. clamscan's manager
decides that a found threat wins over read errors; meshscan does the same:

====  =============  ===========================================================================
code  name           meaning
====  =============  ===========================================================================
0     OK             everything was read and nothing was flagged or sent to review (other
                     commands: done as asked)
1     FOUND          something was flagged or sent to review (``review``: items wait); wins over 2
2     INCOMPLETE     nothing flagged, but some upload or item could not be scanned or processed,
                     or an action on a result (quarantine, audit-log mirror) failed
3     FATAL          the scanner could not run: a library, model or config that fails
                     verification or cannot be loaded, a usage error, any error before
                     scanning started, an internal error
130   INTERRUPTED    stopped by Ctrl-C before the run completed (128 + SIGINT, the shell's
                     convention)
====  =============  ===========================================================================

Commands end with :func:`exit_with` (a code, no message: their summary is already printed)
or raise :class:`CommandError` (a message and a code, FATAL unless said otherwise). The
``meshscan`` group (:class:`ExitCodeGroup`) turns click's usage errors (click's own code 2)
into FATAL, and an unexpected exception (Python's code 1, which would read as FOUND) into
FATAL with a one-line message.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from scanner.exitcode import ExitCode

__all__ = ["DEBUG_ENV", "CommandError", "ExitCode", "ExitCodeGroup", "exit_with"]

DEBUG_ENV = "MESHSCAN_DEBUG"
"""Set to 1 to see the traceback of an internal error (for a bug report)."""


class CommandError(click.ClickException):
    """A domain error at the CLI boundary: its message on stderr, and its exit code (FATAL
    unless the error concerns only some of the inputs, then INCOMPLETE)."""

    def __init__(self, message: str, code: ExitCode = ExitCode.FATAL) -> None:
        super().__init__(message)
        self.exit_code = int(code)

    def format_message(self) -> str:
        """Messages quote paths and names from uploads (and from libraries and databases that
        hold them): shown inert, like every table."""
        from scanner.sinks.output import terminal_safe

        return terminal_safe(self.message)


def exit_with(code: ExitCode) -> None:
    """End the command with ``code`` (nothing is printed: the command has said why)."""
    if code != ExitCode.OK:
        raise click.exceptions.Exit(int(code))


class ExitCodeGroup(click.Group):
    """The ``meshscan`` group: every way out of a command ends with a code from the table."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:  # fmt: skip
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            exc.exit_code = int(ExitCode.FATAL)
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # bad arguments: the run never started
            exc.exit_code = int(ExitCode.FATAL)
            raise
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            raise CommandError("interrupted: the run did not complete", ExitCode.INTERRUPTED) from None
        except Exception as exc:  # a bug must not exit 1 (FOUND) with a traceback
            if os.environ.get(DEBUG_ENV):
                import traceback

                traceback.print_exc(file=sys.stderr)
            raise CommandError(
                f"internal error: {type(exc).__name__}: {exc} (please report it; set {DEBUG_ENV}=1 for the traceback)"
            ) from None
