"""The exit codes every command follows, and the one policy of a scanning run.

They live below everything (not in ``scanner.cli``) so that a scan run
(:class:`scanner.run.RunSummary`) decides its code without importing the command line; the
table and the click glue that produces them are in :mod:`scanner.cli.exitcodes`.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FOUND = 1
    INCOMPLETE = 2
    FATAL = 3
    INTERRUPTED = 130

    @classmethod
    def for_run(cls, found: bool, incomplete: bool) -> ExitCode:
        """A scanning run's code: FOUND wins over INCOMPLETE (clamscan's manager), and a run is
        OK only when everything was read and nothing needs a person."""
        if found:
            return cls.FOUND
        return cls.INCOMPLETE if incomplete else cls.OK
