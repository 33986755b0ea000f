"""Content sniffing: models meshscan reads, model formats it cannot read (errors), and content
recognised as no model (listed in archives, skipped by folder walks) - by bytes, never names."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import pytest
from _builders import binary_stl, mesh_object_xml, model_xml, soup, unit_cube, zip_bytes

import scanner
from scanner.batch import excluded_by, skip_reason
from scanner.formats import BytesBlob, FileBlob
from scanner.formats.sniff import NON_MODEL, UNSUPPORTED, sniff

CUBE_V, CUBE_F = unit_cube()
CUBE_STL = binary_stl(soup(CUBE_V, CUBE_F))
CUBE_OBJ = b"".join(b"v %g %g %g\n" % tuple(v) for v in CUBE_V) + b"".join(
    b"f %d %d %d\n" % tuple(f + 1) for f in CUBE_F
)
PROSE = b"The quick brown fox jumps over the lazy dog; version 2.0 release notes follow.\n"

UNSUPPORTED_SAMPLES = {
    "json-mesh": b'{"metadata": {}, "vertices": [0, 0, 0, 1, 0, 0], "faces": [0, 1, 2]}',
    "rar": b"Rar!\x1a\x07\x01\x00" + bytes(40),
    "fbx": b"Kaydara FBX Binary  \x00\x1a\x00" + bytes(100),
    "collada": b'<?xml version="1.0"?>\n<!-- exported -->\n<COLLADA version="1.4.1"/>',
    "vrml": b"#VRML V2.0 utf8\nShape { geometry Box { } }\n",
    "x3d": b'<?xml version="1.0"?>\n<!DOCTYPE X3D PUBLIC "x" "y">\n<X3D profile="Immersive"/>',
    "3dxml": b'<?xml version="1.0"?>\n<Model_3dxml xmlns="http://www.3ds.com/xsd/3DXML"/>',
    "dxf": b"  0\nSECTION\n  2\nHEADER\n  0\nENDSEC\n  0\nEOF\n",
    "dwg": b"AC1032" + bytes(100),
    "blend": b"BLENDER-v300" + bytes(100),
    "openscad": b"difference() {\n  cube([10, 10, 10]);\n  cylinder(h=20, r=2);\n}\n",
    "unknown": bytes(range(256)) * 2,
}
_3DS = b"MM" + struct.pack("<I", 64) + bytes(58)
UNSUPPORTED_SAMPLES["3ds"] = _3DS

NON_MODEL_SAMPLES = {
    "text": PROSE * 3,
    "json": b'{"name": "bracket", "licence": "CC-BY"}\n',
    "xml": b'<?xml version="1.0"?>\n<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>',
    "html": b"<!DOCTYPE html>\n<html><body>hi</body></html>\n",
    "svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
    "mtl": b"newmtl red\nKd 1 0 0\nmap_Kd red.png\n",
    "png": b"\x89PNG\r\n\x1a\n" + bytes(range(1, 200)),
    "jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(range(1, 200)),
    "gif": b"GIF89a" + bytes(range(1, 100)),
    "webp": b"RIFF\x20\x00\x00\x00WEBPVP8 " + bytes(range(1, 100)),
    "tiff": b"II*\x00" + bytes(range(1, 100)),
    "pdf": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< >>\nendobj\n",
    "appledouble": b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(4000),
}


@pytest.mark.parametrize(("fmt", "data"), UNSUPPORTED_SAMPLES.items(), ids=list(UNSUPPORTED_SAMPLES))
def test_model_formats_meshscan_cannot_read(fmt: str, data: bytes) -> None:
    assert fmt in UNSUPPORTED
    assert sniff(BytesBlob("whatever.txt", data)) == fmt
    [r] = scanner.formats.read_blob(BytesBlob("x", data), scanner.formats.LoadContext())
    assert r.error.reason == "unsupported-format" and r.format == fmt


@pytest.mark.parametrize(("fmt", "data"), NON_MODEL_SAMPLES.items(), ids=list(NON_MODEL_SAMPLES))
def test_content_that_is_no_model(fmt: str, data: bytes, tmp_path: Path) -> None:
    assert fmt in NON_MODEL
    assert sniff(BytesBlob("part.stl", data)) == fmt
    path = tmp_path / "part.stl"
    path.write_bytes(data)
    assert skip_reason(str(path)).startswith("not a model")
    [r] = scanner.iter_meshes(path)
    assert r.error.reason == "not-a-model" and r.member is None  # a whole upload: an error (Verdict.is_error)


@pytest.mark.parametrize(
    "text",
    [
        b"v 2.0 release notes\n",
        b"f = open(path)\nv = f.read()\n",
        b"x,y,z\n1,2,3\n",
        b"# Title\n\nSome words.\n" * 9000,
    ],
)
def test_prose_and_code_are_not_obj(text: bytes) -> None:
    assert sniff(BytesBlob("a", text)) == "text"
    assert sniff(BytesBlob("a", PROSE + text)) == "text"


def test_mesh_lines_anywhere_make_a_mesh_even_across_chunk_borders(tmp_path: Path) -> None:
    for pad in (0, 1, 7, 40):
        prose = PROSE * ((1 << 20) // len(PROSE)) + b"x" * pad  # an OBJ line cut by the 1 MiB chunk border
        path = tmp_path / f"notes{pad}.txt"
        path.write_bytes(prose + b"\n" + CUBE_OBJ + PROSE * 1000)
        assert sniff(FileBlob(path, 1 << 30)) == "obj", pad
        assert skip_reason(str(path)) is None
    solid = PROSE * 2000 + b"  facet normal 0 0 1\n    outer loop\n      vertex 0 0 0\n"
    assert sniff(BytesBlob("a", solid)) == "stl-ascii"


def test_image_with_an_appended_zip_is_a_zip() -> None:
    data = NON_MODEL_SAMPLES["png"] + zip_bytes({"part.stl": CUBE_STL})
    assert sniff(BytesBlob("photo.png", data)) == "zip"
    [r] = scanner.formats.read_blob(BytesBlob("photo.png", data), scanner.formats.LoadContext())
    assert r.mesh is not None and r.member == "part.stl"


def test_zero_padding_after_an_image_magic_is_no_stl() -> None:
    assert sniff(BytesBlob("a", b"\x89PNG\r\n\x1a\n" + bytes(300))) == "png"


def test_3mf_by_structure() -> None:
    model = model_xml(mesh_object_xml(1, CUBE_V, CUBE_F), '<item objectid="1"/>').encode()
    assert sniff(BytesBlob("a.zip", zip_bytes({"3D/3dmodel.model": model}))) == "3mf"
    rels = (
        b'<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        b'<Relationship Target="/parts/body.model" Id="r0" Type="x"/></Relationships>'
    )
    blob = BytesBlob("a.zip", zip_bytes({"_rels/.rels": rels, "parts/body.model": model}))
    assert sniff(blob) == "3mf"
    [r] = scanner.formats.read_blob(blob, scanner.formats.LoadContext())
    assert r.mesh is not None and r.mesh.triangle_count == len(CUBE_F)
    assert sniff(BytesBlob("x", model)) == "3mf-model"
    assert sniff(BytesBlob("a.zip", zip_bytes({"readme.txt": b"hi"}))) == "zip"


def test_unreferenced_model_part_of_a_3mf_is_scanned() -> None:
    model = model_xml(mesh_object_xml(1, CUBE_V, CUBE_F), '<item objectid="1"/>').encode()
    data = zip_bytes({"3D/3dmodel.model": model, "3D/spare.model": model})
    rs = list(scanner.formats.read_blob(BytesBlob("a.3mf", data), scanner.formats.LoadContext()))
    assert [(r.member, r.format) for r in rs] == [(None, "3mf"), ("3D/spare.model", "3mf-model")]
    assert all(r.mesh is not None for r in rs)


def test_excluded_by_matches_path_name_and_folders() -> None:
    assert excluded_by("a/b/c.stl", ["*.stl"]) == "*.stl"
    assert excluded_by("a/b/c.stl", ["b"]) == "b"
    assert excluded_by("a/b/c.stl", ["a/b"]) == "a/b"
    assert excluded_by("a/b/c.stl", ["a/*"]) == "a/*"
    assert excluded_by("a/b/c.stl", ["c.obj", "x"]) is None
    assert excluded_by("a/b/c.stl", []) is None


def test_skip_reason_never_opens_what_is_not_a_regular_file(tmp_path: Path) -> None:
    import os

    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    assert skip_reason(str(tmp_path / "pipe")) is None  # scanned (and reported), never sniffed here
    assert skip_reason(str(tmp_path / "link")) is None
    (tmp_path / "empty").write_bytes(b"")
    assert skip_reason(str(tmp_path / "empty")) == "not a model (zero-byte file)"
    (tmp_path / "part.txt").write_bytes(CUBE_STL)
    assert skip_reason(str(tmp_path / "part.txt")) is None


def test_a_zip_member_named_like_a_3mf_part_does_not_make_an_archive_a_3mf_silently() -> None:
    """A package that is a 3MF by structure still reports its other members."""
    model = model_xml(mesh_object_xml(1, CUBE_V, CUBE_F), '<item objectid="1"/>').encode()
    data = zip_bytes({"3D/3dmodel.model": model, "hidden/part.stl": CUBE_STL, "README.txt": PROSE})
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert "[Content_Types].xml" not in zf.namelist()
    rs = list(scanner.formats.read_blob(BytesBlob("a.zip", data), scanner.formats.LoadContext()))
    assert [(r.member, r.mesh is not None) for r in rs] == [(None, True), ("hidden/part.stl", True)]


def test_utf16_text_is_text_and_a_utf16_obj_is_not_skipped() -> None:
    assert sniff(BytesBlob("readme.txt", ("\ufeff" + "Hello, world.\n" * 50).encode("utf-16-le"))) == "text"
    obj = ("\ufeff" + "# cube\n" + CUBE_OBJ.decode()).encode("utf-16-le")
    assert sniff(BytesBlob("part.obj", obj)) == "unknown"  # a mesh meshscan does not read as UTF-16: an error
