"""The wheel a plain `pip install .` builds holds every package and data file meshscan
imports or reads: the README's first command installs that way, and a package left out of
pyproject.toml's explicit list is simply missing from the install (three were, unnoticed,
because the tests ran from an editable install)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from tests.conftest import REPO


def package_folders() -> set[str]:
    found = {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / "scanner").rglob("__init__.py")
        if "__pycache__" not in init.parts and "_shipped" not in init.parts
    }
    return found | {"scanner._shipped"}


def test_pyproject_lists_every_package() -> None:
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"])
    assert listed == package_folders()


def test_the_wheel_holds_every_module_template_and_shipped_file(tmp_path: Path) -> None:
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q"]  # isolated: pyproject.toml's setuptools
    proc = subprocess.run([*pip, str(REPO), "-w", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    [wheel] = tmp_path.glob("meshscan-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {
        p.relative_to(REPO).as_posix()
        for p in (REPO / "scanner").rglob("*.py")
        if "__pycache__" not in p.parts and "_shipped" not in p.parts
    }
    assert modules - names == set()
    templates = {p.relative_to(REPO).as_posix() for p in (REPO / "scanner").rglob("templates/*.html")}
    assert templates and templates - names == set()
    shipped = {
        "scanner/_shipped/" + p.relative_to(REPO / "signatures").as_posix()
        for p in (REPO / "signatures").rglob("*")
        if p.is_file() and p.suffix in (".json", ".npy") and "__pycache__" not in p.parts
    }
    assert shipped and shipped - names == set()
