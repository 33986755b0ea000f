"""The exit-code table (issue 12, item 4): 1 wins over 2; 3 means the scanner could not run,
whatever the way out (usage error, refused library, a bug); nothing else reads as 0 or 1."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

import scanner.cli.signatures_cmd as signatures_cmd
from scanner.cli import cli
from scanner.cli.exitcodes import ExitCode

CLI_DIR = Path(signatures_cmd.__file__).parent


@pytest.mark.parametrize(
    ("found", "incomplete", "code"),
    [(False, False, 0), (True, False, 1), (True, True, 1), (False, True, 2)],
)
def test_found_wins_over_incomplete(found: bool, incomplete: bool, code: int) -> None:
    assert ExitCode.for_run(found=found, incomplete=incomplete) == code


@pytest.mark.parametrize(
    "args",
    [
        ["scan"],  # missing PATH
        ["no-such-command"],
        ["scan", "x.stl", "--jobs", "0"],
        ["scan", "x.stl", "--format", "xml"],
        ["signatures", "list"],  # missing --library, in a nested group
        ["signatures", "frobnicate"],
        ["--no-such-option"],
    ],
)
def test_usage_errors_are_fatal(args: list[str]) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == ExitCode.FATAL == 3, result.output
    assert "Usage:" in result.output or "No such command" in result.output


def test_help_and_version_exit_0() -> None:
    assert CliRunner().invoke(cli, ["--help"]).exit_code == 0
    assert CliRunner().invoke(cli, ["scan", "--help"]).exit_code == 0
    assert CliRunner().invoke(cli, ["--version"]).exit_code == 0


def test_an_internal_error_is_fatal_not_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Python's own exit code for an uncaught exception is 1, which would read as 'flagged'."""

    def broken(path: str) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(signatures_cmd, "_load", broken)
    result = CliRunner().invoke(cli, ["signatures", "list", "--library", str(tmp_path)])
    assert result.exit_code == 3
    assert "internal error: ZeroDivisionError: a bug" in result.output and "Traceback" not in result.output


def test_an_interrupted_run_is_neither_clean_nor_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(path: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(signatures_cmd, "_load", interrupted)
    result = CliRunner().invoke(cli, ["signatures", "list", "--library", str(tmp_path)])
    assert result.exit_code == ExitCode.INTERRUPTED == 130
    assert "interrupted" in result.output


def test_a_library_that_cannot_be_loaded_is_fatal(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["signatures", "list", "--library", str(tmp_path / "nowhere")])
    assert result.exit_code == 3 and "Traceback" not in result.output


def test_exit_codes_come_from_the_table_only() -> None:
    """No command picks a number of its own: sys.exit and literal exit codes stay out of the CLI."""
    offenders = []
    for path in sorted(CLI_DIR.glob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"sys\.exit\(|ctx\.exit\(\d|Exit\(\d|exit_code\s*=\s*\d", line):
                offenders.append(f"{path.name}:{number}: {line.strip()}")
    assert offenders == []
