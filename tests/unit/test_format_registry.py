"""The format registry is built from what the format modules declare, and stays consistent:
every name a sniffer answers is read or declared unreadable, the README's format table is
the one the declarations render, adding a format is one new file, and the package's modules
import each other without a cycle. Also: the one exact decimal reader agrees bit for bit
with numpy's parser."""

from __future__ import annotations

import ast
import random
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from scanner.formats import CONTAINERS, FORMATS, LOADERS
from scanner.formats._text import parse_lines, parse_numbers
from scanner.formats.base import Format, Sniffer
from scanner.formats.registry import SNIFFERS, _collect, format_modules, format_table
from scanner.formats.sniff import NON_MODEL, UNSUPPORTED

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "scanner" / "formats"


def test_every_sniffed_name_has_a_reader_or_is_declared_unreadable() -> None:
    readable = set(LOADERS) | set(CONTAINERS)
    declared = readable | set(UNSUPPORTED) | set(NON_MODEL)
    for sniffer in SNIFFERS:
        stray = sniffer.names - declared
        assert not stray, f"{sniffer.test.__module__}.{sniffer.test.__name__} answers {sorted(stray)}, read by nothing"
    answered = set().union(*(s.names for s in SNIFFERS))
    assert readable <= answered, f"read but never sniffed: {sorted(readable - answered)}"
    assert not readable & (set(UNSUPPORTED) | set(NON_MODEL)), "a name both read and declared unreadable"


def test_sniffers_run_in_one_strict_order_and_every_format_module_declares() -> None:
    priorities = [s.priority for s in SNIFFERS]
    assert priorities == sorted(set(priorities))
    modules = {m.__name__.rsplit(".", 1)[1] for m in format_modules()}
    assert {"stl", "obj", "ply", "off", "threemf", "archive", "others"} <= modules
    assert {f.name for f in FORMATS} == set(LOADERS) | set(CONTAINERS)


def test_the_readme_format_table_is_the_rendered_one() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("| format | notes |")
    end = readme.index("\n\n", start)
    assert readme[start : end + 1] == format_table()
    titles = [line.split(" | ")[0].lstrip("| ") for line in format_table().splitlines()[2:]]
    assert titles[:6] == ["STL binary", "STL ASCII", "OBJ", "PLY", "OFF", "3MF"]
    assert {"AMF", "glTF, GLB", "G-code", "zip, tar", "gzip, bzip2", "xz"} <= set(titles)


def _dummy_loader(blob, ctx):  # pragma: no cover - never called
    raise AssertionError


def _dummy_test(probe):  # pragma: no cover - never called
    return None


class _Module:
    def __init__(self, formats: tuple[Format, ...], sniffers: tuple[Sniffer, ...]) -> None:
        self.FORMATS, self.SNIFFERS = formats, sniffers


def test_conflicting_declarations_fail_at_import_rather_than_answer_wrongly() -> None:
    one = _Module((Format("x", "X", 1, loader=_dummy_loader),), (Sniffer(5, _dummy_test, frozenset({"x"})),))
    same_name = _Module((Format("x", "X2", 2, loader=_dummy_loader),), ())
    same_priority = _Module((), (Sniffer(5, _dummy_test, frozenset({"x"})),))
    with pytest.raises(ValueError, match="more than once: x"):
        _collect([one, same_name])
    with pytest.raises(ValueError, match=r"share a priority.*\[5\]"):
        _collect([one, same_priority])
    with pytest.raises(TypeError, match="exactly one of loader and container"):
        Format("y", "Y", 3)


_PLUGIN = '''
"""A made-up format, for the registry test: bytes starting with MESHSCAN-TEST are one triangle."""

import numpy as np

from scanner.formats.base import Format, Sniffer, build_mesh


def _load(blob, ctx):
    return build_mesh(np.eye(3), None, blob, "testtri", ctx)


def _sniff(probe):
    return "testtri" if probe.head.startswith(b"MESHSCAN-TEST") else None


FORMATS = (Format("testtri", "Test triangle", 45, "one triangle", loader=_load),)
SNIFFERS = (Sniffer(150, _sniff, frozenset({"testtri"})),)
'''


def test_adding_a_format_is_one_new_file(tmp_path: Path) -> None:
    """A copy of the package with one more module reads the new format - in a zip too -
    and lists it in the README table; nothing else was edited."""
    shutil.copytree(ROOT / "scanner", tmp_path / "scanner", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "scanner" / "formats" / "testtri.py").write_text(_PLUGIN, encoding="utf-8")
    script = textwrap.dedent(
        """
        import io, zipfile
        from scanner.formats import BytesBlob, LoadContext, read_blob
        from scanner.formats.registry import format_table
        data = b"MESHSCAN-TEST and anything after"
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("inner.bin", data)
        for name, blob in (("plain", data), ("zipped", buf.getvalue())):
            [r] = read_blob(BytesBlob(name, blob), LoadContext())
            print(name, r.member, r.format, r.mesh.triangle_count)
        print([line for line in format_table().splitlines() if "Test" in line])
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)}, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "plain None testtri 1",
        "zipped inner.bin testtri 1",
        "['| Test triangle | one triangle |']",
    ]


def _imports(path: Path) -> set[str]:
    """Modules of the package that ``path`` imports (anywhere in it, function-local too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("scanner.formats"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("scanner.formats")}
    return found


def test_no_module_of_the_package_imports_the_package_and_there_is_no_cycle() -> None:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.glob("*.py"):
        if path.name == "__init__.py":
            continue
        imported = _imports(path)
        assert "scanner.formats" not in imported, f"{path.name} imports the package __init__"
        graph[path.stem] = {m.rsplit(".", 1)[1] for m in imported}
    graph["registry"] |= {m.__name__.rsplit(".", 1)[1] for m in format_modules()}  # imported by name
    done: set[str] = set()

    def visit(node: str, trail: tuple[str, ...]) -> None:
        assert node not in trail, "import cycle: " + " -> ".join((*trail, node))
        if node not in done:
            for nxt in graph.get(node, ()):
                visit(nxt, (*trail, node))
            done.add(node)

    for node in graph:
        visit(node, ())


def _token(rng: random.Random, integer: bool) -> str:
    if integer:
        return rng.choice(["-", ""]) + str(rng.randrange(10 ** rng.randrange(1, 18)))
    pick = rng.random()
    if pick < 0.25:
        return repr(rng.uniform(-1e3, 1e3))
    if pick < 0.5:
        return f"{rng.uniform(-10, 10):.{rng.randrange(0, 12)}f}"
    if pick < 0.75:
        return f"{rng.uniform(-1e5, 1e5):.{rng.randrange(0, 10)}{rng.choice('eE')}}"
    return rng.choice(["-0", "0.", "-.5", ".5", "1e22", "1e23", "1e-22", "9007199254740993", "1e+05", "1e-0005"])


_ODD = ["-", "+5", "5-", "1.2.3", "1e5e5", ".", "e5", "1e", "1e+", "nan", "-inf", "12345678", "-12345678", "1.5E-3"]


@pytest.mark.parametrize("integer", [False, True], ids=["float", "integer"])
def test_the_exact_decimal_reader_agrees_with_numpy_bit_for_bit(integer: bool) -> None:
    """Every value the fast path gives is the one ``np.fromstring`` gives (or it declines)."""
    rng = random.Random(17)
    dtype = np.int64 if integer else np.float64
    fast = 0
    for _ in range(1500):
        tokens = [_token(rng, integer) for _ in range(rng.randrange(1, 30))]
        if rng.random() < 0.3:
            tokens.insert(rng.randrange(len(tokens) + 1), rng.choice(_ODD))
        text = (" ".join(tokens) + "\n").encode()
        got = parse_lines(text, 1, dtype)
        if got is None:
            continue
        fast += 1
        assert got[0].tolist() == [len(tokens)]
        assert got[1].tobytes() == parse_numbers(text, dtype).tobytes(), tokens
    assert fast > 1000
