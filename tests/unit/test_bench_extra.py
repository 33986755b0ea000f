"""bench/evasion.py's ``--extra-benign`` folders scanned against a library of real parts: each
readable file counts once, an unreadable one not at all, and a flagged file that holds a body
identical to the matched signature's file is reported as such (the issue: it "may match")."""

from __future__ import annotations

import shutil
from pathlib import Path

import scanner
from bench.evasion import _body_shapes, _extra_scan
from scanner.api import Scanner
from tests.conftest import REPO

DEMO = REPO / "fixtures" / "demo"


def test_files_are_counted_once_and_identical_bodies_reported(tmp_path: Path) -> None:
    folder = tmp_path / "extra"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(DEMO / "proxy-barrel-s1-000.stl", folder / "sub" / "copy.stl")  # enrolled in the demo library
    shutil.copy(DEMO / "benign-cup-s1-000.stl", folder / "cup.stl")
    (folder / "notes.stl").write_bytes(b"not a mesh at all")  # unscannable: left out of the count
    context = Scanner(model=None)._context
    sig = next(s.id for s in context.library.signatures if s.name == "proxy-barrel-s1-000.stl")
    owners = {sig: _body_shapes(scanner.load(DEMO / "proxy-barrel-s1-000.stl"))}
    run = _extra_scan(folder, context, "demo", owners)
    assert run["scanned"] == 2 and run["files_flagged"] == 1
    assert run["identical_body"] == 1 and run["details"] == ["sub/copy.stl ~ proxy-barrel-s1-000.stl (identical body)"]
    assert run["pairs"] == 2 * len(context.library)


def test_a_flag_on_another_file_is_not_an_identical_body(tmp_path: Path) -> None:
    shutil.copy(DEMO / "proxy-barrel-s1-000.stl", tmp_path / "copy.stl")
    context = Scanner(model=None)._context
    run = _extra_scan(tmp_path, context, "demo", {})  # no signature's file known: nothing to compare
    assert (
        run["files_flagged"] == 1
        and run["identical_body"] == 0
        and run["details"] == ["copy.stl ~ proxy-barrel-s1-000.stl"]
    )
