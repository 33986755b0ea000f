"""STEP and IGES through the real command (``python -m scanner.cli``), classifier off.

* The STEP and IGES exports of every enrolled demo proxy - rebuilt from exact OpenCASCADE
  primitives (``fixtures.cad.curved_proxy``: true cylinders, tessellated by the reader), and
  one as a solid sewn from its STL's triangles - flag against its STL signature with the
  category it was enrolled with, beside the same proxy sliced to G-code.
* A benign STEP part is ``clear``; hostile STEP/IGES files are errors with reason codes,
  never ``clear`` and never a traceback.
* ``inspect`` reads STEP, and a CAD reader that hangs or crashes (the fault-injection hook of
  :mod:`scanner.formats.cad`) loses only its file, in ``inspect`` (which reads in-process)
  and in ``scan`` (whose workers are guarded too).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trimesh

from fixtures.cad import (
    curved_proxy,
    faceted_shape,
    holed_plate,
    hostile_iges,
    hostile_step,
    iges_bytes,
    nested_assembly,
    step_bytes,
)
from fixtures.slicer import SliceOptions, slice_to_gcode
from scanner.formats.cad import FAULT_INJECTION_ENV
from tests.conftest import REPO
from tests.integration.test_new_formats_flag import ENROLLED, moved

pytestmark = pytest.mark.timeout(900)


def meshscan(*args: str, env: dict[str, str] | None = None) -> tuple[int, list[dict], str]:
    proc = subprocess.run(
        [sys.executable, "-m", "scanner.cli", *args], capture_output=True, text=True, timeout=800, cwd=REPO,
        env=dict(os.environ, **(env or {})),
    )  # fmt: skip
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc.returncode, records, proc.stderr


def scan(*paths: Path, extra: tuple[str, ...] = (), env: dict[str, str] | None = None) -> tuple[int, list[dict], str]:
    return meshscan("scan", *map(str, paths), "--no-model", "--format", "jsonl", "--jobs", "2", *extra, env=env)


def category(path: str) -> str:
    """The category a demo proxy was enrolled with, from its name ``proxy-CATEGORY-s1-000``."""
    return Path(path).name.split("-")[1]


def test_step_and_iges_exports_of_enrolled_proxies_flag_like_their_stl(tmp_path: Path) -> None:
    assert len(ENROLLED) == 6
    for path in ENROLLED:
        shape = curved_proxy(category(path.name)).shape
        (tmp_path / f"{path.stem}.step").write_bytes(step_bytes(shape))
        (tmp_path / f"{path.stem}.igs").write_bytes(iges_bytes(shape))
    first = moved(ENROLLED[0])
    (tmp_path / f"{ENROLLED[0].stem}-faceted.stp").write_bytes(step_bytes(faceted_shape(first.vertices, first.faces)))
    gcode = slice_to_gcode(first.vertices, first.faces, SliceOptions(layer_height=0.2, flavour="prusa"))
    (tmp_path / f"{ENROLLED[0].stem}-sliced.gcode").write_bytes(gcode)
    files = sorted(tmp_path.iterdir())
    code, records, err = scan(*files)
    assert len(records) == len(files) == 14, err
    assert {r["format"] for r in records} == {"step", "iges", "gcode"}
    missed = [(r["path"], r["verdict"], r.get("reason"), r["explanation"]) for r in records if r["verdict"] != "flag"]
    assert not missed, missed
    for r in records:
        best = r["matches"][0]
        assert best["kind"] == "near-duplicate" and best["distance"] <= best["threshold"]
        assert best["category"] == category(r["path"]), r
    assert code == 1


def test_a_benign_step_part_is_clear(tmp_path: Path) -> None:
    (tmp_path / "plate.step").write_bytes(step_bytes(holed_plate(3)))
    code, records, err = scan(tmp_path / "plate.step")
    assert [(r["format"], r["verdict"]) for r in records] == [("step", "clear")], err
    assert code == 0


def test_hostile_step_and_iges_are_errors_never_clear(tmp_path: Path) -> None:
    shape = holed_plate(1)
    files = hostile_step(step_bytes(shape), nested_assembly(1)) | hostile_iges(iges_bytes(shape))
    files.pop("nested-300.step")  # a deep assembly is a good file (tests/unit/test_cad.py)
    good = step_bytes(shape)
    ref = b"#9 = EXTERNALLY_DEFINED_REPRESENTATION('/etc/passwd',(),#2);\n"
    files["external.step"] = good.replace(b"DATA;\n", b"DATA;\n" + ref, 1)
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    code, records, err = scan(*sorted(tmp_path.iterdir()), extra=("--limit-seconds", "20"))
    assert len(records) == len(files), err
    reasons = {Path(r["path"]).name: r["reason"] for r in records}
    assert all(r["verdict"] == "unscannable" for r in records), records
    assert reasons["truncated.step"] == reasons["truncated.igs"] == "truncated"
    assert reasons["nan.step"] == "non-finite"
    assert reasons["external.step"] == "unsupported-format"
    assert reasons["huge-count.step"] in {"limit:time", "limit:memory", "corrupt"}
    assert "Traceback" not in err
    assert code == 2


def test_inspect_reads_step_and_a_hanging_or_crashing_reader_loses_only_its_file(tmp_path: Path) -> None:
    shape = holed_plate(2)
    for name in ("a.step", "b.step", "c.step"):
        (tmp_path / name).write_bytes(step_bytes(shape))
    files = [str(tmp_path / n) for n in ("a.step", "b.step", "c.step")]
    code, records, err = meshscan("inspect", *files, "--json")
    assert code == 0, err
    assert [(r["format"], r["watertight"], r["euler_number"]) for r in records] == [("step", True, -6)] * 3
    for fault, reason in (("hang", "limit:time"), ("crash", "worker-crashed")):
        env = {FAULT_INJECTION_ENV: f"{fault}:b.step"}
        code, records, err = meshscan("inspect", *files, "--json", "--limit-seconds", "15", env=env)
        assert [r.get("reason") for r in records] == [None, reason, None], err
        assert code == 2 and "Traceback" not in err
        code, records, err = scan(*map(Path, files), extra=("--limit-seconds", "15"), env=env)
        assert [(Path(r["path"]).name, r["verdict"], r.get("reason")) for r in records] == [
            ("a.step", "clear", None), ("b.step", "unscannable", reason), ("c.step", "clear", None)
        ], err  # fmt: skip
        assert code == 2
        deadline = time.monotonic() + 1  # its own alarm would only end it seconds later
        while cad_children("b.step") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not cad_children("b.step")  # the killed worker's reader died with it


def cad_children(name: str) -> list[int]:
    """Live CAD reader processes working on an upload called ``name``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"scanner.formats._cad_child" in cmdline and f'"name": "{name}"'.encode() in cmdline:
            found.append(int(proc.name))
    return found


def test_a_moved_proxy_stl_and_its_faceted_step_have_one_geometry(tmp_path: Path) -> None:
    """A solid sewn from the STL's own triangles reads back as that mesh: the same triangle
    count, volume and extents (coordinates pass through STEP's decimal text, so the canonical
    hash, taken on exact float32 values, may differ: matching is by descriptor)."""
    tm: trimesh.Trimesh = moved(ENROLLED[1])
    (tmp_path / "part.stl").write_bytes(trimesh.exchange.stl.export_stl(tm))
    (tmp_path / "part.step").write_bytes(step_bytes(faceted_shape(tm.vertices, tm.faces)))
    code, records, err = meshscan("inspect", str(tmp_path / "part.stl"), str(tmp_path / "part.step"), "--json")
    assert code == 0, err
    stl, step = records
    assert (stl["triangles"], stl["volume"]) == pytest.approx((step["triangles"], step["volume"]), rel=1e-5)
    assert stl["extents"] == pytest.approx(step["extents"], rel=1e-6)
