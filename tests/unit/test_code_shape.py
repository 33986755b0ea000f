"""The shape limits of issue 17, read from the source with ``ast``: no function under scanner/
is longer than 100 lines or takes more than 15 parameters. A function past them does several
jobs (the scan run that lived in a click command) or carries a settings wall that belongs in
one settings object; the test names each offender with its file, line and figure."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SCANNER = Path(__file__).resolve().parents[2] / "scanner"
MAX_LINES = 100
MAX_PARAMETERS = 15

Function = ast.FunctionDef | ast.AsyncFunctionDef


def functions(root: Path = SCANNER) -> list[tuple[str, Function]]:
    """Every function and method (nested ones included) of every module under ``root``, with
    the module's path relative to the repository."""
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        rel = path.relative_to(root.parent).as_posix()
        found += [(rel, node) for node in ast.walk(tree) if isinstance(node, Function)]
    return found


def length(node: Function) -> int:
    """Lines from the ``def`` (decorators not counted) to the last line of the body,
    docstring and comments included: what a reader scrolls through."""
    assert node.end_lineno is not None
    return node.end_lineno - node.lineno + 1


def parameter_count(node: Function) -> int:
    """Every declared parameter: positional-only, ordinary, keyword-only, and ``*args`` /
    ``**kwargs`` as one each (``self`` and ``cls`` included: a method with 15 more is still
    a settings wall)."""
    a = node.args
    return len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs) + (a.vararg is not None) + (a.kwarg is not None)


def test_the_walk_sees_the_package() -> None:
    """Guards the two tests below against passing on an empty walk."""
    names = {(path, node.name) for path, node in functions()}
    assert ("scanner/report/aggregate.py", "analyse") in names
    assert len(names) > 500


@pytest.mark.parametrize(
    ("source", "lines", "params"),
    [
        ("def f(a, /, b, *c, d, **e):\n    pass\n", 2, 5),
        ("class C:\n    async def m(self, x=1):\n        '''doc'''\n\n        return x\n", 4, 2),
    ],
)
def test_the_measures(source: str, lines: int, params: int) -> None:
    (node,) = [n for n in ast.walk(ast.parse(source)) if isinstance(n, Function)]
    assert (length(node), parameter_count(node)) == (lines, params)


def test_no_function_is_longer_than_100_lines() -> None:
    long = [f"{path}:{node.lineno} {node.name} ({length(node)} lines)" for path, node in functions()
            if length(node) > MAX_LINES]  # fmt: skip
    assert not long, f"functions over {MAX_LINES} lines:\n" + "\n".join(long)


def test_no_function_takes_more_than_15_parameters() -> None:
    wide = [f"{path}:{node.lineno} {node.name} ({parameter_count(node)} parameters)" for path, node in functions()
            if parameter_count(node) > MAX_PARAMETERS]  # fmt: skip
    assert not wide, f"functions over {MAX_PARAMETERS} parameters:\n" + "\n".join(wide)
