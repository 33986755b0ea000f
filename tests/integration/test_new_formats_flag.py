"""A known part exported to a newly read format still flags against the shipped demo library:
AMF (plain and zipped), GLB, an xz-compressed STL, and G-code sliced from it by the test slicer
(PrusaSlicer-style feature comments and a bare file, 0.2 mm layers). Run through the real
command (``python -m scanner.cli scan``), classifier off, so only signature matching flags.

Measured over all six enrolled proxies (layer heights 0.1/0.2/0.3 mm, with and without arcs,
both flavours): 64 of 72 sliced files flag; at 0.2 mm without arcs all 12 do (this test).
"""

from __future__ import annotations

import json
import lzma
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh

from fixtures.formats import amf_bytes, glb_bytes, gltf_parts, zipped_amf
from fixtures.slicer import SliceOptions, slice_to_gcode
from tests.conftest import REPO

DEMO = REPO / "fixtures" / "demo"
ENROLLED = sorted(DEMO.glob("proxy-*-000.*"))


def scan(*paths: Path) -> tuple[int, list[dict], str]:
    proc = subprocess.run(
        [sys.executable, "-m", "scanner.cli", "scan", *map(str, paths), "--no-model", "--format", "jsonl",
         "--jobs", "2"],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )  # fmt: skip
    return proc.returncode, [json.loads(line) for line in proc.stdout.splitlines()], proc.stderr


def moved(path: Path) -> trimesh.Trimesh:
    """The enrolled proxy turned about Z and moved (no exact hash can match; Z stays up)."""
    tm = trimesh.load(path, force="mesh")
    tm.apply_transform(trimesh.transformations.rotation_matrix(0.7, [0, 0, 1]))
    tm.apply_translation(-tm.bounds[0] + [20.0, 20.0, 0.0])
    return tm


@pytest.mark.timeout(900)
def test_exports_to_the_new_formats_flag(tmp_path: Path) -> None:
    assert len(ENROLLED) == 6
    for i, path in enumerate(ENROLLED):
        tm = moved(path)
        stem = path.stem
        if i < 3:
            (tmp_path / f"{stem}.amf").write_bytes(amf_bytes(tm.vertices, tm.faces))
            (tmp_path / f"{stem}.zip").write_bytes(zipped_amf("part.amf", amf_bytes(tm.vertices, tm.faces, "inch")))
            (tmp_path / f"{stem}.glb").write_bytes(glb_bytes(*gltf_parts(tm.vertices, tm.faces)))
            (tmp_path / f"{stem}.stl.xz").write_bytes(lzma.compress(trimesh.exchange.stl.export_stl(tm)))
        for flavour in ("prusa", "bare"):
            gcode = slice_to_gcode(tm.vertices, tm.faces, SliceOptions(layer_height=0.2, flavour=flavour))
            (tmp_path / f"{stem}-{flavour}.gcode").write_bytes(gcode)
    files = sorted(tmp_path.iterdir())
    code, records, err = scan(*files)
    assert len(records) == len(files), err
    formats = {r["format"] for r in records}
    assert {"amf", "glb", "stl-binary", "gcode"} <= formats
    missed = [(r["path"], r["verdict"], r["explanation"]) for r in records if r["verdict"] != "flag"]
    assert not missed, missed
    assert code == 1
    for r in records:
        assert r["matches"][0]["kind"] == "near-duplicate"
        assert r["matches"][0]["distance"] <= r["matches"][0]["threshold"]


def test_an_inch_amf_is_scaled_like_the_millimetre_one(tmp_path: Path) -> None:
    """Units matter to shape only by scale: the inch file is 25.4 times the size."""
    from scanner.formats import BytesBlob, LoadContext, read_blob

    tm = moved(ENROLLED[0])
    [mm] = read_blob(BytesBlob("a", amf_bytes(tm.vertices, tm.faces)), LoadContext())
    [inch] = read_blob(BytesBlob("b", amf_bytes(tm.vertices, tm.faces, "inch")), LoadContext())
    assert np.allclose(np.asarray(inch.mesh.vertices), np.asarray(mm.mesh.vertices) * 25.4)
