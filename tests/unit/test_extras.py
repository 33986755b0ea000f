"""Install as documented: every extra the README or an error message names exists, each extra
holds what its code imports, and ``[all]`` holds every user-facing extra."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.conftest import REPO

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
EXTRAS: dict[str, list[str]] = PROJECT["optional-dependencies"]
USER_FACING = ("report", "watch", "dask", "serve", "fixtures", "share", "compress", "postgres", "cad", "ann")
TOOLS = ("pytest", "pytest-timeout", "hypothesis", "ruff", "jsonschema", "schemathesis", "psutil", "playwright",
         "httpx", "httpx2")  # fmt: skip
MENTION = re.compile(r"meshscan\[([a-z0-9_,-]+)\]")

# import name -> distribution, where they differ; and what a listed distribution brings along
# (compression.zstd is the standard library from Python 3.14, backports.zstd before it)
DISTRIBUTION = {"sklearn": "scikit-learn", "stl": "numpy-stl", "distributed": "dask",
                "fast_simplification": "fast-simplification", "python_multipart": "python-multipart",
                "prometheus_client": "prometheus-client", "faiss": "faiss-cpu",
                "backports": "backports-zstd", "compression": "backports-zstd",
                "OCP": "cadquery-ocp-novtk"}  # fmt: skip
BROUGHT_BY = {"pydantic": "fastapi", "starlette": "fastapi", "threadpoolctl": "scikit-learn"}
# which extra a folder's (or module's) imports belong to
AREAS = {"scanner/report": "report", "scanner/watch": "watch", "scanner/serve": "serve", "scanner/review/web": "serve",
         "scanner/engines/dask_engine.py": "dask", "scanner/sources.py": "dask", "fixtures": "fixtures",
         "scanner/exchange/keys.py": "share", "scanner/exchange/fetch.py": "share",
         "scanner/exchange/tx.py": "threatexchange", "scanner/ann.py": "ann",
         "scanner/formats/zstd.py": "compress", "scanner/formats/sevenzip.py": "compress",
         "scanner/store/postgres.py": "postgres", "scanner/formats/_cad_child.py": "cad"}  # fmt: skip


def names(requirements: list[str]) -> set[str]:
    """Distribution names, normalised (PEP 503), with their own extras: ``dask[distributed]``."""
    out = set()
    for text in requirements:
        req = Requirement(text)
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        out.add(name + (f"[{','.join(sorted(req.extras))}]" if req.extras else ""))
    return out


def bare(requirements: list[str]) -> set[str]:
    return {n.split("[")[0] for n in names(requirements)}


def mentioned_extras() -> set[str]:
    texts = [(REPO / "README.md").read_text(encoding="utf-8")]
    texts += [p.read_text(encoding="utf-8") for p in (REPO / "scanner").rglob("*.py")]
    return {extra for text in texts for group in MENTION.findall(text) for extra in group.split(",")}


def third_party_imports(path: Path) -> set[str]:
    """Top-level modules a file imports anywhere (module level or lazily inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m not in ("scanner", "fixtures", "tests")}


def test_the_readme_and_error_messages_name_only_extras_that_exist() -> None:
    mentioned = mentioned_extras()
    assert {"all", *USER_FACING} <= mentioned  # the quick start names each, and [all]
    assert mentioned <= set(EXTRAS), f"named but not defined: {sorted(mentioned - set(EXTRAS))}"


def test_all_holds_every_user_facing_extra_and_no_tools() -> None:
    everything = names(EXTRAS["all"])
    for extra in USER_FACING:
        missing = names(EXTRAS[extra]) - everything
        assert not missing, f"[all] lacks [{extra}]'s {sorted(missing)}"
    assert not bare(EXTRAS["all"]) & set(TOOLS)


def test_the_test_extra_can_run_every_command() -> None:
    assert not names(EXTRAS["all"]) - names(EXTRAS["test"])


def test_fixtures_extra_has_what_trimesh_needs_to_write_3mf() -> None:
    assert {"lxml", "networkx", "manifold3d"} <= bare(EXTRAS["fixtures"])


@pytest.mark.parametrize("area", sorted(AREAS))
def test_each_extra_holds_what_its_code_imports(area: str) -> None:
    root = REPO / area
    files = [root] if root.is_file() else sorted(root.rglob("*.py"))
    assert files
    provided = bare(PROJECT["dependencies"]) | bare(EXTRAS[AREAS[area]])
    imported = set().union(*(third_party_imports(f) for f in files))
    missing = set()
    for module in imported:
        dist = DISTRIBUTION.get(module, module).replace("_", "-").lower()
        if dist not in provided and BROUGHT_BY.get(module) not in provided:
            missing.add(dist)
    assert not missing, f"{area} imports {sorted(missing)}, which neither the core nor [{AREAS[area]}] installs"
