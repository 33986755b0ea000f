"""The shipped demo library and model are found by a process that imports ``scanner`` from a
source tree - a Dask worker or guarded child started inside a clone, where the working directory
comes first on ``sys.path`` - although ``scanner._shipped`` exists only as an install mapping."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

PROBE = """
import importlib.util, json, sys
tree = sys.argv[1]
sys.path.insert(0, tree)
# An editable install maps scanner._shipped through its own finder whatever tree `scanner` came
# from; a clone beside a regular install has no such finder, so drop it to stand for that case.
sys.meta_path = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
import scanner
from scanner.classify.model import load_model, shipped_model_path
from scanner.library import SignatureLibrary, shipped_library_path

lib = SignatureLibrary.load(shipped_library_path())
model = load_model(None)
print(json.dumps({
    "scanner": scanner.__file__,
    "shipped_importable": importlib.util.find_spec("scanner._shipped") is not None,
    "library": str(shipped_library_path()),
    "model": str(shipped_model_path()),
    "signatures": len(lib.signatures),
    "model_version": model.version,
}))
"""


def test_a_source_tree_without_the_install_mapping_finds_the_shipped_library(tmp_path: Path) -> None:
    tree = tmp_path / "clone"
    junk = shutil.ignore_patterns("_shipped", "__pycache__")
    shutil.copytree(REPO / "scanner", tree / "scanner", ignore=junk)
    shutil.copytree(REPO / "signatures", tree / "signatures", ignore=junk)
    assert not (tree / "scanner" / "_shipped").exists()

    out = subprocess.run([sys.executable, "-I", "-c", PROBE, str(tree)], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert Path(found["scanner"]).resolve().is_relative_to(tree.resolve())  # the tree, not an install
    assert found["shipped_importable"] is False  # the condition under test holds
    assert Path(found["library"]).resolve() == (tree / "signatures").resolve()
    assert Path(found["model"]).resolve() == (tree / "signatures" / "model").resolve()
    assert found["signatures"] == len(json.loads((REPO / "signatures" / "signatures.json").read_text()))
    assert found["model_version"]
