"""Every file of the public corpus (real meshes from public projects, MANIFEST.tsv) either loads
with the triangle count trimesh gives it, or raises UnreadableInput; none crashes or hangs.

Where meshscan legitimately differs from ``trimesh.load(path, force='mesh')`` the file is
named in KNOWN_DIFFERENCES with the reason, and the test checks it differs in exactly that way.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import corpus_root  # tests/conftest.py: the same lookup as the `corpus` fixture

import scanner
from scanner.errors import UnreadableInput

KNOWN_DIFFERENCES: dict[str, str] = {
    "trimesh/pbr_cubes_emissive_spec_gloss.zip": "glTF whose buffer is an external .bin, and PNG textures; "
    "meshscan never follows a glTF's external references",
    "trimesh/scenes.zip": "3DXML, DXF and .pts members are not read; meshscan counts only its STL member",
}
# members of the KNOWN_DIFFERENCES archives that meshscan does read (all others: unsupported-format,
# or not-a-model for those recognised as no model at all: textures, manifests, a point list)
READ_MEMBERS: dict[str, list[str]] = {"trimesh/scenes.zip": ["torus_low_resolution.stl"]}
NOT_MODELS = (".png", ".pts", "manifest.xml", "materialdef_0.3drep", "materialdef_3.3drep")


def manifest_rows() -> list:
    root = corpus_root()
    if root is None:
        return [pytest.param(None, id="corpus-absent")]
    with open(root / "public" / "MANIFEST.tsv", newline="", encoding="utf-8") as fh:
        return [pytest.param(row, id=row["path"]) for row in csv.DictReader(fh, delimiter="\t")]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("row", manifest_rows())
def test_corpus_file(corpus: Path, row: dict) -> None:
    path = corpus / row["path"]
    assert sha256(path) == row["sha256"], "the corpus file is not the one the manifest describes"
    expected = int(row["triangles"]) if row["triangles"] else None

    if row["path"] in KNOWN_DIFFERENCES:
        check_known_difference(path, row["path"], expected)
        return

    try:
        mesh = scanner.load(path)
    except UnreadableInput as err:
        # trimesh could not read it either, or read it as nothing at all
        assert not expected, f"meshscan refuses a file trimesh reads as {expected} triangles: {err}"
        if row["load_error"]:  # the MTL material libraries: recognised as not a model
            assert err.reason == "not-a-model"
        else:
            assert err.reason == "empty", err
        return
    assert expected, f"meshscan reads {mesh.triangle_count} triangles where trimesh found none"
    assert mesh.triangle_count == expected
    assert len(mesh.geometry_hash) == 64


def check_known_difference(path: Path, name: str, expected: int | None) -> None:
    readable = READ_MEMBERS.get(name, [])
    results = list(scanner.iter_meshes(path))
    assert results, "every archive member is a result"
    for r in results:
        if r.mesh is not None:
            assert r.member in readable
        elif r.member.lower().endswith(NOT_MODELS):
            assert r.error.reason == "not-a-model", (r.member, r.error)
        else:
            assert r.error.reason == "unsupported-format", (r.member, r.error)
    assert sorted(r.member for r in results if r.mesh is not None) == sorted(readable)
    # a model format meshscan cannot read is never ignored: the upload does not load as its readable part
    with pytest.raises(UnreadableInput) as info:
        scanner.load(path)
    assert info.value.reason == "unsupported-format"
    if not readable:
        return
    # the members meshscan reads hold what trimesh itself finds in them, and less than the whole
    import trimesh

    with zipfile.ZipFile(path) as zf:
        want = 0
        for member in readable:
            ext = member.rsplit(".", 1)[-1]
            loaded = trimesh.load(io.BytesIO(zf.read(member)), file_type=ext, force="mesh", process=False)
            want += len(loaded.faces)
    meshes = [r.mesh for r in results if r.mesh is not None]
    assert sum(m.triangle_count for m in meshes) == want
    assert expected is None or want < expected


# ----------------------------------------------------------------------------- the CLI


def meshscan_command() -> list[str]:
    script = Path(sys.executable).parent / ("meshscan.exe" if os.name == "nt" else "meshscan")
    if script.exists():
        return [str(script)]
    found = shutil.which("meshscan")
    assert found, "the meshscan console script is not installed (pip install -e .)"
    return [found]


CLI_FILES = ["trimesh/unit_cube.STL", "trimesh/fuze.ply", "trimesh/box.obj", "trimesh/fuze.zip"]


def manifest(corpus: Path) -> dict[str, dict]:
    with open(corpus / "MANIFEST.tsv", newline="", encoding="utf-8") as fh:
        return {row["path"]: row for row in csv.DictReader(fh, delimiter="\t")}


def run_inspect(corpus: Path, files: list[str]) -> tuple[int, list[dict]]:
    proc = subprocess.run(
        [*meshscan_command(), "inspect", "--json", *[str(corpus / f) for f in files]],
        capture_output=True,
        text=True,
        timeout=120,
    )
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, records


@pytest.mark.timeout(120)
def test_cli_inspect_json(corpus: Path) -> None:
    rows = manifest(corpus)
    code, records = run_inspect(corpus, CLI_FILES)
    assert code == 0
    by_path: dict[str, list[dict]] = {}
    for rec in records:
        by_path.setdefault(rec["path"], []).append(rec)
    assert sorted(by_path) == sorted(str(corpus / f) for f in CLI_FILES)
    for name in CLI_FILES:
        recs = by_path[str(corpus / name)]
        for rec in recs:  # only non-mesh companions inside an archive (textures, materials) fail
            assert not rec.get("error") or (rec["member"] and rec["reason"] == "not-a-model"), rec
        meshes = [r for r in recs if "triangles" in r]
        assert sum(r["triangles"] for r in meshes) == int(rows[name]["triangles"])
        for rec in meshes:
            assert rec["sha256"] == rows[name]["sha256"]
            assert len(rec["geometry_hash"]) == 64


@pytest.mark.timeout(120)
def test_cli_inspect_exit_2_when_a_file_is_unreadable(corpus: Path) -> None:
    files = ["trimesh/unit_cube.STL", "trimesh/box.mtl", "trimesh/fuze.ply"]
    code, records = run_inspect(corpus, files)
    assert code == 2
    by_path = {rec["path"]: rec for rec in records}
    assert sorted(by_path) == sorted(str(corpus / f) for f in files)  # the readable ones are still reported
    bad = by_path[str(corpus / "trimesh/box.mtl")]
    assert bad["error"] and bad["reason"] == "not-a-model"
    assert by_path[str(corpus / "trimesh/unit_cube.STL")]["triangles"] == 12
