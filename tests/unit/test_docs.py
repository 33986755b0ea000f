"""Every command the CLI offers is documented in the README (as sqlite-utils' test_docs)."""

from __future__ import annotations

import pytest

from scanner.cli import cli
from tests.conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_command_is_in_the_readme_command_list(name: str) -> None:
    commands = README.split("## Commands", 1)[1].split("\n## ", 1)[0]
    assert f"`meshscan {name}" in commands, f"meshscan {name} is missing from the README's Commands list"


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_command_has_help(name: str) -> None:
    assert (cli.commands[name].help or "").strip(), f"meshscan {name} has no help text"
