"""The import graph of ``scanner``: no cycle, and no import from a lower floor to a higher one.

Every module under ``scanner/`` is parsed (not imported) and each import statement - module
level or inside a function, absolute or relative - becomes an edge. Imports under
``if TYPE_CHECKING:`` are left out: they never run. A module importing its own package's
``__init__`` (``from scanner import __version__`` in ``scanner.pipeline``) counts as a cycle:
the package is still initialising when its module runs.

The floors, lowest first (a module may import its own floor or a lower one, never a higher):
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

FLOORS: tuple[tuple[str, ...], ...] = (
    # 0 - what everything may name: reason codes, the version; the Wilson interval (pure arithmetic, used by
    # reports and by the classifier's evaluation); the helper thread of a large mesh's describe; the
    # optional compiled kernels (numpy-free C, loaded by name)
    (
        "scanner._version",
        "scanner.errors",
        "scanner.exitcode",
        "scanner.util",
        "scanner.arrays",
        "scanner.kernels",
        "scanner.parallel",
        "scanner.report.stats",
    ),
    # 1 - settings and the verdict record
    ("scanner.config", "scanner.verdict"),
    # 2 - reading uploads: geometry, formats, sources, loading, listing
    (
        "scanner.mesh",
        "scanner.formats",
        "scanner.sources",
        "scanner.loading",
        "scanner.inspect",
        "scanner.batch",
        "scanner.store",
    ),  # fmt: skip
    # 3 - describing a mesh: descriptors, the vector index (and its approximate shortlist), and its preview
    # picture (numpy only)
    ("scanner.features", "scanner.index", "scanner.ann", "scanner.preview", "scanner.patch_index"),
    # 4 - what uploads are compared with: the library (its reference shapes, its change detection), matching, the
    # classifier; one mesh's shape values (descriptor rows, classifier row), computed once; and
    # sharing libraries (signed bundles, subscriptions, ThreatExchange signals)
    (
        "scanner.library",
        "scanner.library_columns",
        "scanner.library_integrity",
        "scanner.library_change",
        "scanner.features.reference",
        "scanner.subdivision",
        "scanner.decimation",
        "scanner.enrol",
        "scanner.matching",
        "scanner.classify",
        "scanner.shape",
        "scanner.exchange",
    ),  # fmt: skip
    # 5 - one scan: its context, the policy's ordered rules and scan_one
    ("scanner.context", "scanner.policy", "scanner.pipeline"),
    # 6 - where scans run: worker protocol, local pool, guarded child, Dask
    ("scanner.engines",),
    # 7 - where results go: outputs, the results store, quarantine, webhooks, reports
    ("scanner.sinks", "scanner.report"),
    # 8 - a scan run: engine + results store + quarantine -> summary -> exit code
    ("scanner.run",),
    # 9 - services over it: the Python API, review, the daemon, the HTTP server
    ("scanner.api", "scanner.review", "scanner.review.claims", "scanner.review.web", "scanner.watch", "scanner.serve"),
    # 10 - the command line: parse, call a service, print
    ("scanner.cli",),
    # 11 - the package root: the public API, re-exported lazily
    ("scanner",),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted((REPO / "scanner").rglob("*.py"))}


def floor(module: str) -> int:
    """The floor of the longest prefix of ``module`` named in FLOORS."""
    best, level = -1, -1
    for i, names in enumerate(FLOORS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, level = len(name), i
    assert level >= 0, f"{module} has no floor: add it to FLOORS"
    return level


def _runtime_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Import statements that run: all of them but those under ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _known(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> set[str]:
    """The scanner modules ``module`` imports (a name imported from a package resolves to its
    submodule when there is one, else to the package's ``__init__``)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        for target in targets:
            known = _known(target) if target.split(".")[0] == "scanner" else None
            if known is not None and known != module:
                out.add(known)
    return out


GRAPH = {module: imports_of(module) for module in MODULES}


def _is_ancestor(package: str, module: str) -> bool:
    return module.startswith(package + ".")


def test_no_module_imports_its_own_package_init() -> None:
    # a __main__ is run, never imported, and its package is initialised before it: exempt
    bad = sorted(
        f"{m} -> {t}"
        for m, targets in GRAPH.items()
        for t in targets
        if _is_ancestor(t, m) and not m.endswith(".__main__")
    )
    assert not bad, "modules importing their own package's __init__ (a cycle):\n" + "\n".join(bad)


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            strong(v)
    return found


def test_no_import_cycle() -> None:
    cycles = _cycles()
    detail = [" <-> ".join(c) + "\n   edges: " + ", ".join(
        f"{a} -> {b}" for a in c for b in sorted(GRAPH[a]) if b in c) for c in cycles]  # fmt: skip
    assert not cycles, "import cycles:\n" + "\n".join(detail)


def test_no_upward_import() -> None:
    upward = sorted(
        f"{m} (floor {floor(m)}) -> {t} (floor {floor(t)})"
        for m, targets in GRAPH.items()
        for t in targets
        if floor(t) > floor(m)
    )
    assert not upward, "imports from a lower floor to a higher one:\n" + "\n".join(upward)


def test_every_module_has_a_floor() -> None:
    for module in MODULES:
        floor(module)


def test_the_graph_sees_function_local_and_relative_imports(tmp_path: Path) -> None:
    """The parser itself: a function-local import and a relative import are edges; an import
    under TYPE_CHECKING is not (so this test can fail for the reasons it claims to check)."""
    tree = ast.parse(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import scanner.cli\n"
        "def f():\n    from . import verdict\n    import scanner.errors\n"
    )
    names = [ast.unparse(n) for n in _runtime_nodes(tree)]
    assert names == ["from typing import TYPE_CHECKING", "from . import verdict", "import scanner.errors"]
    assert "scanner.verdict" in GRAPH["scanner.pipeline"]  # module level
    assert "scanner.matching" in GRAPH["scanner.context"]  # function-local
