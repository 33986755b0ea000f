"""Nothing unread reads as clean, and folder walks decide by content (issue 12, items 1-3).

Every test runs the real ``meshscan`` command on files written to tmp_path, against a library
that enrols one synthetic proxy (built with ``signatures init`` / ``add``, as an operator
would): an upload holding only formats meshscan cannot read exits 2; a 3MF is recognised by
its structure; a renamed, hidden or dot-folder copy of the enrolled part is flagged; what a
walk skips is counted and can be listed.
"""

from __future__ import annotations

import io
import json
import lzma
import os
import shutil
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import trimesh

from tests.conftest import REPO
from tests.unit._builders import mesh_object_xml, model_xml, zip_bytes

DEMO = REPO / "fixtures" / "demo"
ENROLLED = DEMO / "proxy-barrel-s1-000.stl"
MESHSCAN = [sys.executable, "-m", "scanner.cli"]
README = b"# My upload\n\nPrint at 0.2 mm layers. Licence: CC-BY 4.0.\n"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*MESHSCAN, *args], capture_output=True, text=True, timeout=240)


def records(proc: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lib = tmp_path_factory.mktemp("lib") / "lib"
    assert run("signatures", "init", "--library", str(lib), "--name", "issue-12").returncode == 0
    added = run("signatures", "add", str(ENROLLED), "--library", str(lib), "--category", "barrel", "--source", "t")
    assert added.returncode == 0, added.stderr
    return lib


def scan(library: Path, *args: str) -> subprocess.CompletedProcess:
    proc = run("scan", *args, "--library", str(library), "--format", "jsonl", "--no-model", "--jobs", "1")
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def png_bytes() -> bytes:
    """A real (2x2, grey) PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + bytes([120, 200]) for _ in range(2))
    ihdr = struct.pack(">IIBBBBB", 2, 2, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def appledouble_bytes() -> bytes:
    """What macOS writes as ``._name`` / ``__MACOSX/._name``: magic 0x00051607, version 2."""
    head = struct.pack(">II16sH", 0x00051607, 0x00020000, b"Mac OS X        ", 1)
    entry = struct.pack(">III", 9, 50, 32)  # one Finder-info entry
    body = head + entry
    return body + b"\x00" * (50 - len(body)) + b"ATTR" + b"com.apple.quarantine\x00" + b"\x00" * 4000


def enrolled_3mf_model() -> str:
    m = trimesh.load(ENROLLED, force="mesh", process=False)
    return model_xml(mesh_object_xml(1, np.asarray(m.vertices), np.asarray(m.faces)), '<item objectid="1"/>')


def by_member(proc: subprocess.CompletedProcess) -> dict:
    return {r["member"]: r for r in records(proc)}


# ----------------------------------------------------------------------------- item 1: archives


def test_zip_of_an_unreadable_gltf_and_a_readme_is_an_error(tmp_path: Path, library: Path) -> None:
    # a glTF whose buffer is an external file: meshscan never follows the reference
    gltf = trimesh.exchange.gltf.export_gltf(trimesh.creation.box())["model.gltf"]
    (tmp_path / "upload.zip").write_bytes(zip_bytes({"part.gltf": gltf, "README.md": README}))
    proc = scan(library, str(tmp_path / "upload.zip"))
    assert proc.returncode == 2, proc.stderr
    recs = by_member(proc)
    assert recs["part.gltf"]["verdict"] == "unscannable" and recs["part.gltf"]["reason"] == "unsupported-format"
    assert recs["part.gltf"]["format"] == "gltf"
    assert recs["README.md"]["reason"] == "not-a-model"  # listed, but not what makes it an error


def test_zip_of_a_zstd_compressed_stl_is_an_error(tmp_path: Path, library: Path) -> None:
    zstd_frame = b"\x28\xb5\x2f\xfd" + lzma.compress(ENROLLED.read_bytes())  # zstd magic, no zstd frame
    (tmp_path / "upload.zip").write_bytes(zip_bytes({"part.stl.zst": zstd_frame}))
    proc = scan(library, str(tmp_path / "upload.zip"))
    assert proc.returncode == 2
    [rec] = records(proc)
    # read with meshscan[compress] (corrupt: not a valid frame), recognised without it
    from scanner.errors import UnreadableInput
    from scanner.formats.zstd import zstd_module

    try:
        zstd_module()
        expected = "corrupt"
    except UnreadableInput:
        expected = "unsupported-format"
    assert rec["reason"] == expected and rec["format"] == "zstd"


@pytest.mark.parametrize(
    ("name", "data", "fmt"),
    [
        ("part.dxf", b"0\nSECTION\n2\nENTITIES\n0\nENDSEC\n0\nEOF\n", "dxf"),
        ("part.wrl", b"#VRML V2.0 utf8\nShape { geometry Box { } }\n", "vrml"),
        ("part.fbx", b"Kaydara FBX Binary  \x00\x1a\x00\xe8\x1c\x00\x00" + bytes(200), "fbx"),
        (
            "part.dae",
            b'<?xml version="1.0"?>\n<COLLADA xmlns="http://www.collada.org/2005/11/COLLADASchema"/>',
            "collada",
        ),
        ("part.bin", bytes(range(256)) * 3, "unknown"),
    ],
)
def test_model_formats_meshscan_cannot_read_are_errors_in_archives(
    tmp_path: Path, library: Path, name: str, data: bytes, fmt: str
) -> None:
    (tmp_path / "upload.zip").write_bytes(zip_bytes({name: data, "notes.txt": README}))
    proc = scan(library, str(tmp_path / "upload.zip"))
    assert proc.returncode == 2
    rec = by_member(proc)[name]
    assert (rec["reason"], rec["format"]) == ("unsupported-format", fmt)


def test_archive_with_nothing_but_non_models_is_never_clean(tmp_path: Path, library: Path) -> None:
    (tmp_path / "upload.zip").write_bytes(zip_bytes({"README.md": README, "photo.png": png_bytes()}))
    proc = scan(library, str(tmp_path / "upload.zip"))
    assert proc.returncode == 2
    recs = by_member(proc)
    assert {recs["README.md"]["reason"], recs["photo.png"]["reason"]} == {"not-a-model"}
    assert recs[None]["verdict"] == "unscannable" and recs[None]["reason"] == "not-a-model"  # the upload itself


def test_appledouble_members_are_metadata_not_errors(tmp_path: Path, library: Path) -> None:
    members = {"part.stl": ENROLLED.read_bytes(), "__MACOSX/._part.stl": appledouble_bytes(), "README.md": README}
    (tmp_path / "upload.zip").write_bytes(zip_bytes(members))
    proc = scan(library, str(tmp_path / "upload.zip"))
    assert proc.returncode == 1, proc.stderr  # flagged, and nothing else is an error
    recs = by_member(proc)
    assert recs["part.stl"]["verdict"] == "flag"
    assert recs["__MACOSX/._part.stl"]["reason"] == "not-a-model"
    assert recs["__MACOSX/._part.stl"]["format"] == "appledouble"


# ----------------------------------------------------------------------------- item 2: 3MF by structure


def test_3mf_without_content_types_is_read_as_3mf(tmp_path: Path, library: Path) -> None:
    (tmp_path / "upload.zip").write_bytes(zip_bytes({"3D/3dmodel.model": enrolled_3mf_model().encode()}))
    proc = scan(library, str(tmp_path / "upload.zip"))
    assert proc.returncode == 1, proc.stderr
    [rec] = records(proc)
    assert rec["verdict"] == "flag" and rec["format"] == "3mf" and rec["member"] is None


def test_bare_3mf_model_xml_is_read(tmp_path: Path, library: Path) -> None:
    (tmp_path / "part.model").write_text(enrolled_3mf_model())
    (tmp_path / "upload.zip").write_bytes(zip_bytes({"part.model": enrolled_3mf_model().encode()}))
    proc = scan(library, str(tmp_path / "part.model"), str(tmp_path / "upload.zip"))
    assert proc.returncode == 1, proc.stderr
    recs = records(proc)
    assert [(r["verdict"], r["format"]) for r in recs] == [("flag", "3mf-model")] * 2


def test_a_3mf_package_cannot_hide_another_member(tmp_path: Path, library: Path) -> None:
    benign = trimesh.load(DEMO / "benign-pipe-s1-000.obj", force="mesh", process=False)
    model = model_xml(mesh_object_xml(1, benign.vertices, benign.faces), '<item objectid="1"/>')
    members = {"3D/3dmodel.model": model.encode(), "Metadata/thumbnail.png": png_bytes(),
               "Metadata/extra.stl": ENROLLED.read_bytes()}  # fmt: skip
    (tmp_path / "print.3mf").write_bytes(zip_bytes(members))
    proc = scan(library, str(tmp_path / "print.3mf"))
    assert proc.returncode == 1, proc.stderr
    recs = by_member(proc)
    assert recs["Metadata/extra.stl"]["verdict"] == "flag"
    assert recs[None]["format"] == "3mf" and recs[None]["verdict"] != "unscannable"
    assert "Metadata/thumbnail.png" not in recs  # the package's own thumbnail is not listed


# ----------------------------------------------------------------------------- item 3: folder walks


def test_renamed_hidden_and_dot_folder_copies_are_flagged(tmp_path: Path, library: Path) -> None:
    up = tmp_path / "uploads"
    (up / ".git").mkdir(parents=True)
    (up / "__pycache__").mkdir()
    for dest in ("part.json", ".hidden.stl", ".git/p.stl", "__pycache__/x.pyc", "notes.md"):
        shutil.copy(ENROLLED, up / dest)
    proc = scan(library, str(up))
    assert proc.returncode == 1, proc.stderr
    flagged = {Path(r["path"]).relative_to(up).as_posix() for r in records(proc) if r["verdict"] == "flag"}
    assert flagged == {"part.json", ".hidden.stl", ".git/p.stl", "__pycache__/x.pyc", "notes.md"}
    assert "5 file(s)" in proc.stderr and "skipped" not in proc.stderr


def test_non_models_are_skipped_counted_and_listed(tmp_path: Path, library: Path) -> None:
    up = tmp_path / "uploads"
    up.mkdir()
    (up / "README.md").write_bytes(README)
    (up / "model.stl").write_bytes(png_bytes())  # a picture, whatever its name
    (up / "._part.stl").write_bytes(appledouble_bytes())
    proc = scan(library, str(up))
    assert proc.returncode == 0, proc.stderr
    assert records(proc) == [] and "0 file(s)" in proc.stderr and "3 skipped (not a model by content)" in proc.stderr
    assert str(up / "README.md") not in proc.stderr  # named only on request
    listed = scan(library, str(up), "--list-skipped")
    assert f"skipped {up / 'README.md'}: not a model (text)" in listed.stderr
    assert f"skipped {up / 'model.stl'}: not a model (PNG image)" in listed.stderr
    assert f"skipped {up / '._part.stl'}: not a model (AppleDouble" in listed.stderr


def test_a_mesh_behind_prose_or_a_picture_is_not_skipped(tmp_path: Path, library: Path) -> None:
    """A head that reads as prose (or a PNG) is not enough: the whole file is checked."""
    m = trimesh.load(ENROLLED, force="mesh", process=False)
    obj = "".join(f"v {x!r} {y!r} {z!r}\n" for x, y, z in m.vertices.tolist())
    obj += "".join(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in m.faces.tolist())
    up = tmp_path / "uploads"
    up.mkdir()
    prose = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit.\n" * 2000).encode()
    (up / "notes.txt").write_bytes(prose + obj.encode())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("part.stl", ENROLLED.read_bytes())
    (up / "photo.png").write_bytes(png_bytes() + buf.getvalue())  # a zip appended to a picture
    proc = scan(library, str(up))
    assert proc.returncode == 1, proc.stderr
    flagged = {Path(r["path"]).name for r in records(proc) if r["verdict"] == "flag"}
    assert flagged == {"notes.txt", "photo.png"} and "skipped" not in proc.stderr


def test_exclude_is_counted_and_listed(tmp_path: Path, library: Path) -> None:
    up = tmp_path / "uploads"
    (up / "vendor").mkdir(parents=True)
    shutil.copy(ENROLLED, up / "a.stl")
    shutil.copy(ENROLLED, up / "vendor" / "b.stl")
    shutil.copy(ENROLLED, up / "c.stl")
    proc = scan(library, str(up), "--exclude", "vendor", "--exclude", "c.*", "--list-skipped")
    assert proc.returncode == 1
    assert [Path(r["path"]).name for r in records(proc)] == ["a.stl"]
    assert "2 excluded (--exclude)" in proc.stderr
    assert f"skipped {up / 'vendor' / 'b.stl'}: excluded (--exclude vendor)" in proc.stderr


def test_fixtures_folder_gives_the_readme_result() -> None:
    """The generator's .py files and labels.csv are skipped by content, not by name
    (the shipped library and model of this checkout, named, whatever is installed)."""
    shipped = REPO / "signatures"
    proc = run("scan", str(REPO / "fixtures"), "--library", str(shipped), "--model", str(shipped / "model"),
               "--format", "jsonl", "--jobs", "2")  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "6 flagged, 12 review, 45 clear, 0 unscannable" in proc.stderr  # conftest.DEMO_PROXIES_CLEARED
    assert "skipped (not a model by content)" in proc.stderr


def test_watch_once_judges_by_content_like_scan(tmp_path: Path, library: Path) -> None:
    up = tmp_path / "uploads"
    (up / ".git").mkdir(parents=True)
    shutil.copy(ENROLLED, up / "part.json")
    shutil.copy(ENROLLED, up / ".hidden.stl")
    shutil.copy(ENROLLED, up / ".git" / "p.stl")
    (up / "README.md").write_bytes(README)
    shutil.copy(ENROLLED, up / "skip-me.stl")
    old = time.time() - 7200  # a dot-file is a temporary name to watch: scanned once left alone (--stale-partial)
    os.utime(up / ".hidden.stl", (old, old))
    proc = run("watch", str(up), "--once", "--state", str(tmp_path / "state.db"), "--library", str(library),
               "--no-model", "--jobs", "1", "--settle", "0", "--exclude", "skip-me.*")  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    lines = [json.loads(x) for x in (proc.stdout + proc.stderr).splitlines() if x.startswith("{")]
    flagged = {
        Path(x["path"]).relative_to(up).as_posix() for x in lines if x.get("verdict") == "flag" and "msg" not in x
    }
    assert flagged == {"part.json", ".hidden.stl", ".git/p.stl"}
    skipped = {Path(x["path"]).name: x["why"] for x in lines if x.get("msg") == "skipped"}
    assert skipped == {"README.md": "not a model (text)", "skip-me.stl": "excluded (--exclude skip-me.*)"}
    [stopped] = [x for x in lines if x.get("msg") == "stopped"]
    assert stopped["skipped"] == 2 and stopped["files"] == 3
