"""Reader evasions (issue 11, the adversary model's packaging moves): the enrolled synthetic
proxy written so that a slicer or a common viewer still gets it, but a reader of meshscan's
did not - each was ``clear`` (exit 0) before its fix.

Every test runs the real ``meshscan scan`` on files written to tmp_path, against a library
that enrols one synthetic proxy (``signatures init`` / ``add``, as an operator would). Where
a route needs a decoy to come out ``clear``, the decoy is a plain 10 mm cube.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import tarfile
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import trimesh

from fixtures.formats import amf_bytes
from fixtures.slicer import slice_to_gcode
from scanner.formats.sniff import HEAD_BYTES
from tests.conftest import REPO
from tests.unit._builders import (
    CONTENT_TYPES,
    CORE_NS,
    ROOT_RELS,
    ascii_stl,
    binary_stl,
    mesh_object_xml,
    model_xml,
    num,
    obj_text,
    off_text,
    ply_ascii,
    ply_binary,
    soup,
    threemf_bytes,
    unit_cube,
    zip_bytes,
)

ENROLLED = REPO / "fixtures" / "demo" / "proxy-barrel-s1-000.stl"
MESHSCAN = [sys.executable, "-m", "scanner.cli"]
_PROXY = trimesh.load(ENROLLED, force="mesh", process=False)
PV, PF = np.asarray(_PROXY.vertices), np.asarray(_PROXY.faces)
_CUBE_V, CUBE_F = unit_cube()
CUBE_V = _CUBE_V * 10.0
DECOY_STL = binary_stl(soup(CUBE_V, CUBE_F))


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*MESHSCAN, *args], capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lib = tmp_path_factory.mktemp("lib") / "lib"
    assert run("signatures", "init", "--library", str(lib), "--name", "issue-11").returncode == 0
    added = run("signatures", "add", str(ENROLLED), "--library", str(lib), "--category", "barrel", "--source", "t")
    assert added.returncode == 0, added.stderr
    return lib


def scan(library: Path, path: Path) -> tuple[int, list[dict]]:
    proc = run("scan", str(path), "--library", str(library), "--format", "jsonl", "--no-model", "--jobs", "1")
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def assert_flagged(library: Path, path: Path) -> None:
    code, recs = scan(library, path)
    assert code == 1, recs
    assert any(r["verdict"] == "flag" and r["category"] == "barrel" for r in recs), recs


# ----------------------------------------------------------------------------- 3MF


def _vertices(vs: np.ndarray) -> str:
    return "".join(f'<vertex x="{num(x)}" y="{num(y)}" z="{num(z)}"/>' for x, y, z in vs)


def _triangles(fs: np.ndarray) -> str:
    return "".join(f'<triangle v1="{a}" v2="{b}" v3="{c}"/>' for a, b, c in fs)


def _mesh(vs: np.ndarray, fs: np.ndarray) -> str:
    return f"<mesh><vertices>{_vertices(vs)}</vertices><triangles>{_triangles(fs)}</triangles></mesh>"


PART = mesh_object_xml(1, PV, PF)
DECOY = mesh_object_xml(2, CUBE_V, CUBE_F)
_ALL_V = np.vstack([PV, CUBE_V])
THREEMF_ROUTES = {
    # the build names the decoy; the part is an object no build item uses (trimesh loads it)
    "unbuilt-object": model_xml(PART + DECOY, '<item objectid="2"/>'),
    # a second <triangles> block: PrusaSlicer keeps the last block, meshscan read the first
    "second-triangles-block": model_xml(
        f'<object id="1" type="model"><mesh><vertices>{_vertices(_ALL_V)}</vertices>'
        f"<triangles>{_triangles(CUBE_F + len(PV))}</triangles><triangles>{_triangles(PF)}</triangles>"
        "</mesh></object>",
        '<item objectid="1"/>',
    ),
    # a second <mesh>: PrusaSlicer keeps the last, trimesh reads both, meshscan read the first
    "second-mesh": model_xml(
        f'<object id="1" type="model">{_mesh(CUBE_V, CUBE_F)}{_mesh(PV, PF)}</object>', '<item objectid="1"/>'
    ),
    # a mesh and components in one object (trimesh reads both); meshscan read the mesh only
    "mesh-beside-components": model_xml(
        f'<object id="2" type="model">{_mesh(CUBE_V, CUBE_F)}<components><component objectid="1"/></components>'
        f"</object>{PART}",
        '<item objectid="2"/>',
    ),
    # the part's mesh wrapped in an unknown element (PrusaSlicer dispatches on names wherever
    # they sit, trimesh iterates descendants); meshscan read direct children only
    "mesh-in-a-wrapper": model_xml(
        f'{DECOY}<object id="1" type="model"><wrap>{_mesh(PV, PF)}</wrap></object>', '<item objectid="2"/>'
    ),
    "vertices-and-triangles-in-wrappers": model_xml(
        f'{DECOY}<object id="1" type="model"><mesh><vertices><g>{_vertices(PV)}</g></vertices>'
        f"<triangles><g>{_triangles(PF)}</g></triangles></mesh></object>",
        '<item objectid="2"/>',
    ),
    # the part's object in another XML namespace (trimesh matches local names)
    "object-in-another-namespace": model_xml(
        DECOY + PART.replace("<object ", '<object xmlns="http://example.com/other" ', 1), '<item objectid="2"/>'
    ),
}


@pytest.mark.parametrize("route", sorted(THREEMF_ROUTES))
def test_3mf_routes_flag(tmp_path: Path, library: Path, route: str) -> None:
    path = tmp_path / "upload.3mf"
    path.write_bytes(threemf_bytes(THREEMF_ROUTES[route]))
    assert_flagged(library, path)


def test_3mf_without_the_core_namespace_flags(tmp_path: Path, library: Path) -> None:
    """trimesh and PrusaSlicer read a model whose elements carry no (or another) namespace."""
    model = model_xml(PART, '<item objectid="1"/>').replace(f'xmlns="{CORE_NS}"', 'xmlns="http://example.com/x"')
    path = tmp_path / "upload.3mf"
    path.write_bytes(threemf_bytes(model))
    assert_flagged(library, path)


def test_3mf_unbuilt_object_in_a_referenced_part_flags(tmp_path: Path, library: Path) -> None:
    """The build uses one object of a production-extension part; the part sits beside it."""
    other = model_xml(DECOY + PART.replace('id="1"', 'id="5"'), "")
    root = model_xml("", '<item objectid="2" p:path="/3D/other.model"/>')
    path = tmp_path / "upload.3mf"
    path.write_bytes(threemf_bytes(root, {"3D/other.model": other}))
    assert_flagged(library, path)


@pytest.mark.parametrize(
    ("route", "model"),
    [
        ("object-id-twice", model_xml(PART + DECOY.replace('id="2"', 'id="1"'), '<item objectid="1"/>')),
        (
            "two-vertices-blocks",
            model_xml(
                f'<object id="1" type="model"><mesh><vertices>{_vertices(CUBE_V)}</vertices>'
                f"<vertices>{_vertices(PV)}</vertices><triangles>{_triangles(PF)}</triangles></mesh></object>",
                '<item objectid="1"/>',
            ),
        ),
    ],
)
def test_3mf_ambiguous_objects_are_unscannable(tmp_path: Path, library: Path, route: str, model: str) -> None:
    """Readers disagree on which object or vertex block counts (PrusaSlicer refuses a repeated
    id and keeps the last vertices block): reading one of them would leave the other unread."""
    path = tmp_path / "upload.3mf"
    path.write_bytes(threemf_bytes(model))
    code, recs = scan(library, path)
    assert code == 2, recs
    assert {r["reason"] for r in recs} == {"corrupt"}, recs


# ----------------------------------------------------------------------------- text formats


def _ply_ascii() -> bytes:
    return ply_ascii(PV, PF)


TEXT_ROUTES = {
    # trimesh accepts any first line holding "ply"; meshscan sniffed these as text (not a model)
    "ply-upper-case-magic.ply": lambda: b"PLY" + _ply_ascii()[3:],
    "ply-magic-with-blanks.ply": lambda: b" ply \n" + _ply_ascii()[4:],
    "ply-byte-order-mark.ply": lambda: b"\xef\xbb\xbf" + ply_binary(PV, PF),
    # trimesh decodes a UTF-8 byte order mark away before the OFF keyword
    "off-byte-order-mark.off": lambda: b"\xef\xbb\xbf" + off_text(PV, PF),
    # meshscan's OFF reader ends lines at a bare \r, but its sniffer ended comments only at \n
    "off-cr-line-ends-after-a-comment.off": lambda: (b"# exported\n" + off_text(PV, PF)).replace(b"\n", b"\r"),
    # PrusaSlicer's and OrcaSlicer's OBJ parser end a line at a bare \r (classic Mac files)
    "obj-cr-line-ends.obj": lambda: (b"# exported\n" + obj_text(PV, PF)).replace(b"\n", b"\r"),
}


@pytest.mark.parametrize("name", sorted(TEXT_ROUTES))
def test_text_mesh_variants_beside_a_decoy_flag(tmp_path: Path, library: Path, name: str) -> None:
    """Each variant was sniffed as text, so inside an archive it was listed as not a model and
    the decoy beside it made the upload ``clear``."""
    path = tmp_path / "upload.zip"
    path.write_bytes(zip_bytes({"cube.stl": DECOY_STL, name: TEXT_ROUTES[name]()}))
    code, recs = scan(library, path)
    assert code == 1, recs
    by_member = {r["member"]: r for r in recs}
    assert by_member[name]["verdict"] == "flag", recs


# ----------------------------------------------------------------------------- containers


def _tar(name: str, data: bytes, end_marker: bool = True) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    out = buf.getvalue()
    if not end_marker:
        out = out.rstrip(b"\0")
        out += b"\0" * (-len(out) % 512)
    return out


PART_STL = ENROLLED.read_bytes()
TAR_ROUTES = {
    # `tar --ignore-zeros` reads a second archive after the first one's end marker
    "concatenated-archives": lambda: _tar("cube.stl", DECOY_STL) + _tar("part.stl", PART_STL),
    # GNU tar "Skipping to next header" past a damaged block, then extracts the part
    "damaged-block-between-members": lambda: (
        _tar("cube.stl", DECOY_STL, end_marker=False) + b"garbage!" * 64 + _tar("part.stl", PART_STL)
    ),
    # the part's bytes appended after the end marker (a tail nothing reads as a tar member)
    "part-after-the-end-marker": lambda: _tar("cube.stl", DECOY_STL) + PART_STL,
}


@pytest.mark.parametrize("route", sorted(TAR_ROUTES))
def test_tar_bytes_past_where_tarfile_stops_are_never_clear(tmp_path: Path, library: Path, route: str) -> None:
    """tarfile stops at the first zero block and, silently, at a header it cannot parse; the
    bytes after it were never read, and the decoy before them made the upload ``clear``."""
    path = tmp_path / "upload.tar"
    path.write_bytes(TAR_ROUTES[route]())
    code, recs = scan(library, path)
    assert code == 2, recs
    [err] = [r for r in recs if r["verdict"] == "unscannable"]
    assert err["reason"] == "corrupt" and "not zero padding" in err["detail"], recs


def test_tar_end_marker_and_zero_padding_are_still_clean(tmp_path: Path, library: Path) -> None:
    path = tmp_path / "upload.tar"
    path.write_bytes(_tar("cube.stl", DECOY_STL) + bytes(20480))
    code, recs = scan(library, path)
    assert code == 0, recs
    assert [r["verdict"] for r in recs] == ["clear"], recs


def test_zip_entry_named_like_a_folder_but_holding_the_part_flags(tmp_path: Path, library: Path) -> None:
    """A name ending in ``/`` is a directory to ``is_dir()``, but zipfile (and anything that
    reads by entry) returns its bytes: they were skipped unread."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("cube.stl", DECOY_STL)
        zf.writestr("models/", PART_STL)
        zf.writestr("empty-folder/", b"")
    path = tmp_path / "upload.zip"
    path.write_bytes(buf.getvalue())
    code, recs = scan(library, path)
    assert code == 1, recs
    by_member = {r["member"]: r for r in recs}
    assert by_member["models/"]["verdict"] == "flag", recs
    assert "empty-folder/" not in by_member, recs


def test_zip_entry_left_out_of_the_directory_is_never_clear(tmp_path: Path, library: Path) -> None:
    """A local entry holding the part, before a zip whose directory lists only the decoy:
    Java's ZipInputStream extracts both; zipfile saw only the decoy."""
    hidden = io.BytesIO()
    with zipfile.ZipFile(hidden, "w") as zf:
        zf.writestr("part.stl", PART_STL)
    local_only = hidden.getvalue()[: hidden.getvalue().find(b"PK\x01\x02")]
    path = tmp_path / "upload.zip"
    path.write_bytes(local_only + zip_bytes({"cube.stl": DECOY_STL}))
    code, recs = scan(library, path)
    assert code == 2, recs
    [err] = [r for r in recs if r["verdict"] == "unscannable"]
    assert err["reason"] == "corrupt" and "not in the zip's directory" in err["detail"], recs


def test_zip_entry_longer_in_its_local_header_than_in_the_directory_is_never_clear(
    tmp_path: Path, library: Path
) -> None:
    """A stored OBJ whose local header declares the decoy's lines and the part's after them,
    and whose directory entry declares the decoy's alone: Java's ZipInputStream extracts the
    whole OBJ (both bodies), zipfile read the decoy's bytes only."""
    decoy, part = obj_text(CUBE_V, CUBE_F), obj_text(PV, PF)
    part_v = b"".join(line + b"\n" for line in part.splitlines() if line.startswith(b"v "))
    part_f = b"".join(
        b"f " + b" ".join(str(int(t) + len(CUBE_V)).encode() for t in line.split()[1:]) + b"\n"
        for line in part.splitlines()
        if line.startswith(b"f ")
    )
    whole = decoy + part_v + part_f
    raw = zip_bytes({"upload.obj": decoy}, compression=zipfile.ZIP_STORED)
    cd = raw.find(b"PK\x01\x02")
    local, directory = bytearray(raw[:cd]), bytearray(raw[cd:])
    struct.pack_into("<III", local, 14, zlib.crc32(whole), len(whole), len(whole))
    data = bytes(local) + whole[len(decoy) :]
    struct.pack_into("<I", directory, directory.rfind(b"PK\x05\x06") + 16, len(data))
    path = tmp_path / "upload.zip"
    path.write_bytes(data + bytes(directory))
    code, recs = scan(library, path)
    assert code == 2, recs
    [err] = [r for r in recs if r["verdict"] == "unscannable"]
    assert err["reason"] == "corrupt" and "disagree on its size" in err["detail"], recs


class _Unseekable(io.RawIOBase):
    """A write-only stream: zipfile then writes data descriptors, as streaming zippers do."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:
        self.data += bytes(b)
        return len(b)


def test_zip_with_data_descriptors_and_a_stored_zip_inside_is_read(tmp_path: Path, library: Path) -> None:
    """What the directory check must not refuse: descriptors after the data, and the local
    headers of a zip stored (uncompressed) inside a member."""
    inner = zip_bytes({"part.stl": PART_STL}, compression=zipfile.ZIP_STORED)
    stream = _Unseekable()
    with zipfile.ZipFile(stream, "w") as zf:
        zf.writestr("cube.stl", DECOY_STL)
        zf.writestr(zipfile.ZipInfo("inner.zip"), inner, compress_type=zipfile.ZIP_STORED)
    assert zipfile.ZipFile(io.BytesIO(bytes(stream.data))).infolist()[0].flag_bits & 0x8
    path = tmp_path / "upload.zip"
    path.write_bytes(bytes(stream.data))
    code, recs = scan(library, path)
    assert code == 1, recs
    assert {r["member"]: r["verdict"] for r in recs} == {"cube.stl": "clear", "inner.zip/part.stl": "flag"}, recs


# ----------------------------------------------------------------------------- 3MF packages


def _zip_entries(entries: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns of a duplicate name
        with zipfile.ZipFile(buf, "w") as zf:
            for name, data in entries:
                zf.writestr(name, data)
    return buf.getvalue()


PART_MODEL = model_xml(PART, '<item objectid="1"/>').encode()
DECOY_MODEL = model_xml(DECOY, '<item objectid="2"/>').encode()
OPC = [("[Content_Types].xml", CONTENT_TYPES.encode()), ("_rels/.rels", ROOT_RELS.encode())]
PACKAGE_ROUTES = {
    # two entries of one name: zipfile opens the last (the decoy), PrusaSlicer walks both
    "model-entry-twice": [*OPC, ("3D/3dmodel.model", PART_MODEL), ("3D/3dmodel.model", DECOY_MODEL)],
    # names equal but for case: trimesh read the part, meshscan the decoy and neither other
    "model-names-differing-in-case": [*OPC, ("3D/3DModel.model", PART_MODEL), ("3D/3dmodel.model", DECOY_MODEL)],
    # a member named like an OPC relationships part was skipped by its name
    "mesh-named-like-a-rels-part": [*OPC, ("3D/3dmodel.model", DECOY_MODEL), ("Metadata/part.rels", PART_STL)],
}


@pytest.mark.parametrize("route", sorted(PACKAGE_ROUTES))
def test_3mf_package_entries_are_all_read(tmp_path: Path, library: Path, route: str) -> None:
    path = tmp_path / "upload.3mf"
    path.write_bytes(_zip_entries(PACKAGE_ROUTES[route]))
    assert_flagged(library, path)


# ----------------------------------------------------------------------------- G-code heads


@pytest.mark.parametrize("name", ["upload.obj", "upload.stl"])
def test_mesh_lines_after_a_long_gcode_head_flag(tmp_path: Path, library: Path, name: str) -> None:
    """G-code (a sliced decoy) longer than the sniffed head, then the part as OBJ or ASCII STL
    lines: trimesh and PrusaSlicer read the ``.obj`` (G-code lines are unknown statements to
    them), while meshscan sniffed G-code from the head and read the decoy's toolpaths alone."""
    gcode = slice_to_gcode(CUBE_V, CUBE_F) * 3
    assert len(gcode) > HEAD_BYTES
    mesh = obj_text(PV, PF) if name.endswith(".obj") else ascii_stl(soup(PV, PF))
    path = tmp_path / name
    path.write_bytes(gcode + mesh)
    assert_flagged(library, path)


def test_sliced_part_with_a_decoy_zip_appended_is_never_clear(tmp_path: Path, library: Path) -> None:
    """The part sliced to G-code with a zip of a decoy appended: a printer runs the part's
    toolpaths, unzip finds the decoy. Read as the zip alone (as an image with a zip appended
    is) the upload would be the decoy and ``clear``; the zip's binary bytes make the file no
    text, so it is ``unknown`` - unscannable, never either reading alone."""
    path = tmp_path / "upload.gcode"
    path.write_bytes(slice_to_gcode(PV, PF) + zip_bytes({"cube.stl": DECOY_STL}))
    code, recs = scan(library, path)
    assert code == 2, recs
    assert [(r["verdict"], r["format"], r["reason"]) for r in recs] == [
        ("unscannable", "unknown", "unsupported-format")
    ], recs


def test_sliced_decoy_alone_is_still_gcode(tmp_path: Path, library: Path) -> None:
    path = tmp_path / "upload.gcode"
    path.write_bytes(slice_to_gcode(CUBE_V, CUBE_F) * 3)
    code, recs = scan(library, path)
    assert code == 0, recs
    assert [(r["verdict"], r["format"]) for r in recs] == [("clear", "gcode")], recs


# ----------------------------------------------------------------------------- AMF


def _amf_vertices(vs: np.ndarray) -> str:
    return "".join(f"<vertex><coordinates><x>{x}</x><y>{y}</y><z>{z}</z></coordinates></vertex>" for x, y, z in vs)


def _amf_volume(fs: np.ndarray) -> str:
    return (
        "<volume>"
        + "".join(f"<triangle><v1>{a}</v1><v2>{b}</v2><v3>{c}</v3></triangle>" for a, b, c in fs)
        + "</volume>"
    )


def _amf_object(oid: int, vs: np.ndarray, fs: np.ndarray) -> str:
    return f'<object id="{oid}"><mesh><vertices>{_amf_vertices(vs)}</vertices>{_amf_volume(fs)}</mesh></object>'


AMF_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n<amf unit="millimeter">'
AMF_ROUTES = {
    # a constellation places the decoy only; PrusaSlicer gives the unplaced part a default instance
    "object-no-constellation-places": _amf_object(1, PV, PF)
    + _amf_object(2, CUBE_V, CUBE_F)
    + '<constellation id="9"><instance objectid="2"><deltax>0</deltax><deltay>0</deltay></instance></constellation>',
    # a second mesh in one object: PrusaSlicer collects vertices across an object's meshes
    "second-mesh-in-an-object": f'<object id="1"><mesh><vertices>{_amf_vertices(CUBE_V)}</vertices>'
    f"{_amf_volume(CUBE_F)}</mesh><mesh><vertices>{_amf_vertices(PV)}</vertices>"
    f"{_amf_volume(PF + len(CUBE_V))}</mesh></object>",
}


@pytest.mark.parametrize("route", sorted(AMF_ROUTES))
def test_amf_routes_flag(tmp_path: Path, library: Path, route: str) -> None:
    path = tmp_path / "upload.amf"
    path.write_bytes((AMF_HEAD + AMF_ROUTES[route] + "</amf>").encode())
    assert_flagged(library, path)


# ----------------------------------------------------------------------------- glTF


def _glb_with_part_outside_the_default_scene(second_scene: bool) -> bytes:
    scene = trimesh.Scene()
    scene.add_geometry(trimesh.Trimesh(CUBE_V, CUBE_F, process=False), node_name="cube", geom_name="cube")
    scene.add_geometry(trimesh.Trimesh(PV, PF, process=False), node_name="part", geom_name="part")
    glb = scene.export(file_type="glb")
    json_len = struct.unpack_from("<I", glb, 12)[0]
    doc, binary_chunk = json.loads(glb[20 : 20 + json_len]), glb[20 + json_len :]
    part = next(i for i, node in enumerate(doc["nodes"]) if node.get("name") == "part")
    doc["scenes"][0]["nodes"] = [i for i in doc["scenes"][0]["nodes"] if i != part]
    if second_scene:
        doc["scenes"].append({"nodes": [part]})
    text = json.dumps(doc).encode()
    text += b" " * (-len(text) % 4)
    body = struct.pack("<II", len(text), 0x4E4F534A) + text + binary_chunk
    return b"glTF" + struct.pack("<II", 2, 12 + len(body)) + body


@pytest.mark.parametrize("second_scene", [False, True], ids=["node-in-no-scene", "node-in-another-scene"])
def test_glb_mesh_outside_the_default_scene_flags(tmp_path: Path, library: Path, second_scene: bool) -> None:
    """The default scene holds the decoy; the part's node is in no scene, or another one.
    trimesh loads every mesh of the file; meshscan walked the default scene alone."""
    path = tmp_path / "upload.glb"
    path.write_bytes(_glb_with_part_outside_the_default_scene(second_scene))
    assert_flagged(library, path)


# ----------------------------------------------------------------------------- a zip behind a mesh

_SPHERE = trimesh.creation.icosphere(subdivisions=4, radius=10.0)
SPHERE_V, SPHERE_F = np.asarray(_SPHERE.vertices), np.asarray(_SPHERE.faces)
MESH_WRITERS = {
    "upload.obj": lambda: obj_text(SPHERE_V, SPHERE_F),
    "upload.stl": lambda: ascii_stl(soup(SPHERE_V, SPHERE_F)),
    "upload.off": lambda: off_text(SPHERE_V, SPHERE_F),
    "upload.ply": lambda: ply_binary(SPHERE_V, SPHERE_F),
}


def assert_two_readings_refused(library: Path, path: Path, fmt: str = "mesh+zip") -> None:
    code, recs = scan(library, path)
    assert code == 2, recs
    assert [(r["verdict"], r["format"], r["reason"]) for r in recs] == [("unscannable", fmt, "unsupported-format")], (
        recs
    )


@pytest.mark.parametrize("name", sorted(MESH_WRITERS))
def test_zip_appended_to_a_decoy_mesh_is_never_clear(tmp_path: Path, library: Path, name: str) -> None:
    """A decoy (a sphere, more than the sniffed head of text) with a zip of the part appended:
    unzip and 7-Zip extract the part (they read the directory at the end), while meshscan
    loaded the decoy and said ``clear``."""
    path = tmp_path / name
    path.write_bytes(MESH_WRITERS[name]() + zip_bytes({"part.stl": PART_STL}))
    assert_two_readings_refused(library, path)


@pytest.mark.parametrize(("name", "fmt"), [("upload.stl", "mesh+zip"), ("upload.obj", "unknown")])
def test_a_part_with_a_decoy_zip_appended_is_never_clear(tmp_path: Path, library: Path, name: str, fmt: str) -> None:
    """The other way round: the part as the mesh, a zip of a decoy appended. Read as the zip,
    the binary STL's decoy came out ``clear`` (a mesh reader and a slicer read the part); an
    OBJ with binary bytes after it is not text (``unknown``)."""
    part = (
        PART_STL
        if name.endswith(".stl")
        else trimesh.load(io.BytesIO(PART_STL), file_type="stl").export(file_type="obj").encode()
    )
    path = tmp_path / name
    path.write_bytes(part + zip_bytes({"cube.stl": DECOY_STL}))
    assert_two_readings_refused(library, path, fmt)


def test_decoy_mesh_alone_is_still_read_as_a_mesh(tmp_path: Path, library: Path) -> None:
    path = tmp_path / "upload.obj"
    path.write_bytes(MESH_WRITERS["upload.obj"]())
    code, recs = scan(library, path)
    assert code == 0, recs
    assert [(r["verdict"], r["format"]) for r in recs] == [("clear", "obj")], recs


def test_gltf_whose_keys_come_after_the_sniffed_head_flags(tmp_path: Path, library: Path) -> None:
    """A self-contained ``.gltf`` opening with a long ``extras`` object: trimesh reads it, but
    its ``asset`` key lay past the sniffed head, so it was plain JSON (not a model) and, beside
    a decoy in a zip, the upload was ``clear``."""
    scene = trimesh.Scene()
    scene.add_geometry(trimesh.Trimesh(PV, PF, process=False))
    doc = json.loads(scene.export(file_type="gltf", embed_buffers=True)["model.gltf"])
    late = json.dumps({"extras": {"notes": "n" * (HEAD_BYTES + 1000)}, **doc}).encode()
    path = tmp_path / "upload.zip"
    path.write_bytes(zip_bytes({"cube.stl": DECOY_STL, "scene.gltf": late}))
    code, recs = scan(library, path)
    assert code == 1, recs
    assert {r["member"]: r["verdict"] for r in recs} == {"cube.stl": "clear", "scene.gltf": "flag"}, recs


def test_amf_behind_a_long_xml_comment_flags(tmp_path: Path, library: Path) -> None:
    """An AMF whose root element follows a comment longer than the sniffed head: PrusaSlicer
    reads it; meshscan found no root in the head, sniffed text (not a model) and, beside a
    decoy in a zip, said ``clear``."""
    amf = amf_bytes(PV, PF)
    at = amf.index(b"<amf")
    late = amf[:at] + b"<!-- " + b"c" * (HEAD_BYTES + 1000) + b" -->\n" + amf[at:]
    path = tmp_path / "upload.zip"
    path.write_bytes(zip_bytes({"cube.stl": DECOY_STL, "part.amf": late}))
    code, recs = scan(library, path)
    assert code == 1, recs
    assert {r["member"]: r["verdict"] for r in recs} == {"cube.stl": "clear", "part.amf": "flag"}, recs
