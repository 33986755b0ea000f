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


def test_architecture_section_names_only_modules_that_exist() -> None:
    """The README's architecture map must match the code: every module or package it names exists."""
    import re

    from tests.conftest import REPO

    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`(scanner/[\w/.]+)`", section))
    assert len(named) > 20
    missing = sorted(p for p in named if not (REPO / p).exists())
    assert missing == []
    engines = {p.stem for p in (REPO / "scanner" / "engines").glob("*.py")}
    assert {"worker", "parent", "local", "guarded", "dask_engine", "base"} <= engines
