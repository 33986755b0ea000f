"""PLY: ascii, binary little and big endian, extra properties, polygons, and broken files."""

from __future__ import annotations

import numpy as np
import pytest
from _builders import peak_bytes, ply_ascii, ply_binary, soup, unit_cube, write

import scanner
from scanner.config import Limits
from scanner.errors import UnreadableInput

CUBE_V, CUBE_F = unit_cube()
CUBE_HASH = scanner.Mesh(vertices=soup(CUBE_V, CUBE_F).reshape(-1, 3)).geometry_hash
CUBE_QUADS = np.array([[0, 3, 2, 1], [4, 5, 6, 7], [0, 1, 5, 4], [2, 3, 7, 6], [1, 2, 6, 5], [0, 4, 7, 3]])


def reason_of(path, limits: Limits | None = None) -> str:
    with pytest.raises(UnreadableInput) as info:
        scanner.load(path, limits)
    return info.value.reason


def test_three_encodings_give_one_hash(tmp_path):
    texts = {
        "a.ply": ply_ascii(CUBE_V, CUBE_F),
        "le.ply": ply_binary(CUBE_V, CUBE_F, "<"),
        "be.ply": ply_binary(CUBE_V, CUBE_F, ">"),
    }
    assert texts["le.ply"] != texts["be.ply"]
    meshes = {name: scanner.load(write(tmp_path, name, data)) for name, data in texts.items()}
    assert meshes["a.ply"].format == "ply-ascii"
    assert meshes["le.ply"].format == meshes["be.ply"].format == "ply-binary"
    for mesh in meshes.values():
        assert mesh.triangle_count == 12
        assert mesh.geometry_hash == CUBE_HASH
        np.testing.assert_array_equal(mesh.faces, CUBE_F)


EXTRA_HEADER = """ply
format {fmt} 1.0
comment made by hand
obj_info abstract box
element vertex 8
property double x
property double y
property double z
property float nx
property float ny
property float nz
property uchar red
property uchar green
property uchar blue
property uchar alpha
element face 6
property uchar flags
property list uchar uint vertex_indices
property float quality
element edge 1
property int vertex1
property int vertex2
end_header
"""


def extra_ply(fmt: str) -> bytes:
    """The cube as quads, with normals/colours on vertices, a scalar before and after the
    face list, and an extra element after the faces."""
    head = EXTRA_HEADER.format(fmt=fmt).encode()
    if fmt == "ascii":
        body = "".join(f"{x!r} {y!r} {z!r} 0 0 1 255 128 0 255\n" for x, y, z in CUBE_V.tolist())
        body += "".join("7 4 " + " ".join(map(str, q)) + " 0.5\n" for q in CUBE_QUADS)
        body += "0 1\n"
        return head + body.encode()
    order = "<" if fmt == "binary_little_endian" else ">"
    vdt = np.dtype([("x", "f8"), ("y", "f8"), ("z", "f8"), ("n", "f4", (3,)), ("rgba", "u1", (4,))]).newbyteorder(order)
    v = np.zeros(8, vdt)
    v["x"], v["y"], v["z"] = CUBE_V.T
    v["rgba"] = [255, 128, 0, 255]
    fdt = np.dtype([("flags", "u1"), ("n", "u1"), ("idx", "u4", (4,)), ("q", "f4")]).newbyteorder(order)
    f = np.zeros(6, fdt)
    f["flags"], f["n"], f["idx"], f["q"] = 7, 4, CUBE_QUADS, 0.5
    e = np.array([0, 1], dtype=order + "i4")
    return head + v.tobytes() + f.tobytes() + e.tobytes()


@pytest.mark.parametrize("fmt", ["ascii", "binary_little_endian", "binary_big_endian"])
def test_extra_properties_and_quads(tmp_path, fmt):
    mesh = scanner.load(write(tmp_path, "extra.ply", extra_ply(fmt)))
    assert mesh.triangle_count == 12
    assert mesh.geometry_hash == CUBE_HASH
    assert mesh.volume == pytest.approx(1.0)


@pytest.mark.parametrize("order", ["<", ">"])
def test_binary_mixed_polygon_sizes(tmp_path, order):
    """A triangle among quads takes the record-by-record path; same cube either way."""
    faces = [list(q) for q in CUBE_QUADS[:5]] + [[0, 4, 7], [0, 7, 3]]
    head = (
        f"ply\nformat binary_{'little' if order == '<' else 'big'}_endian 1.0\nelement vertex 8\n"
        "property float x\nproperty float y\nproperty float z\n"
        f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n"
    ).encode()
    body = np.asarray(CUBE_V, dtype=order + "f4").tobytes()
    for face in faces:
        body += bytes([len(face)]) + np.asarray(face, dtype=order + "i4").tobytes()
    mesh = scanner.load(write(tmp_path, "mixed.ply", head + body))
    assert mesh.triangle_count == 12
    assert mesh.geometry_hash == CUBE_HASH


def test_crlf_header(tmp_path):
    data = ply_ascii(CUBE_V, CUBE_F).replace(b"\n", b"\r\n")
    assert scanner.load(write(tmp_path, "crlf.ply", data)).geometry_hash == CUBE_HASH


def test_vertex_index_list_name(tmp_path):
    data = ply_ascii(CUBE_V, CUBE_F).replace(b"vertex_indices", b"vertex_index")
    assert scanner.load(write(tmp_path, "vi.ply", data)).geometry_hash == CUBE_HASH


def test_ply_named_stl_is_read_as_ply(tmp_path):
    assert scanner.load(write(tmp_path, "cube.stl", ply_binary(CUBE_V, CUBE_F))).format == "ply-binary"


# ----------------------------------------------------------------------------- broken


@pytest.mark.parametrize("cut", [1, 13, 40, 120])
def test_binary_cut_short_is_truncated(tmp_path, cut):
    data = ply_binary(CUBE_V, CUBE_F)
    assert reason_of(write(tmp_path, "cut.ply", data[:-cut])) == "truncated"


def test_binary_mixed_polygons_cut_short_is_truncated(tmp_path):
    data = extra_ply("binary_little_endian")
    data = data.replace(b"element edge 1\nproperty int vertex1\nproperty int vertex2\n", b"")[:-8]
    assert reason_of(write(tmp_path, "cut.ply", data[:-10])) == "truncated"


def test_ascii_missing_lines_is_truncated(tmp_path):
    data = ply_ascii(CUBE_V, CUBE_F)
    lines = data.splitlines(keepends=True)
    assert reason_of(write(tmp_path, "cut.ply", b"".join(lines[:-3]))) == "truncated"


def test_header_without_end_is_truncated(tmp_path):
    data = ply_ascii(CUBE_V, CUBE_F)
    assert reason_of(write(tmp_path, "cut.ply", data[: data.index(b"end_header")])) == "truncated"


@pytest.mark.parametrize(
    "old, new",
    [
        (b"format ascii 1.0", b"format ebcdic 1.0"),
        (b"property float x", b"property float128 x"),
        (b"element vertex 8", b"element vertex eight"),
        (b"element vertex 8", b"element vertex -8"),
        (b"property float y\n", b"property float y\nbanana split\n"),
        (b"property list uchar int vertex_indices", b"property list uchar int corners"),
        (b"property float x\n", b""),
    ],
    ids=["format", "type", "count", "negative-count", "keyword", "no-index-list", "no-x"],
)
def test_bad_header_is_corrupt(tmp_path, old, new):
    data = ply_ascii(CUBE_V, CUBE_F)
    assert old in data
    assert reason_of(write(tmp_path, "bad.ply", data.replace(old, new, 1))) == "corrupt"


def test_bad_number_is_corrupt(tmp_path):
    data = ply_ascii(CUBE_V, CUBE_F).replace(b"\n1.0 1.0 1.0\n", b"\n1.0 one 1.0\n")
    assert reason_of(write(tmp_path, "bad.ply", data)) == "corrupt"


def test_ascii_face_shorter_than_its_count_is_corrupt(tmp_path):
    data = ply_ascii(CUBE_V, CUBE_F).replace(b"\n3 0 2 1\n", b"\n3 0 2\n")
    assert reason_of(write(tmp_path, "bad.ply", data)) == "corrupt"


@pytest.mark.parametrize("encode", [ply_ascii, ply_binary], ids=["ascii", "binary"])
@pytest.mark.parametrize("bad_index", [8, 1000, -1])
def test_index_out_of_range_is_bad_index(tmp_path, encode, bad_index):
    faces = CUBE_F.copy()
    faces[5, 1] = bad_index
    assert reason_of(write(tmp_path, "bad.ply", encode(CUBE_V, faces))) == "bad-index"


@pytest.mark.parametrize("encode", [ply_ascii, ply_binary], ids=["ascii", "binary"])
def test_nan_is_non_finite(tmp_path, encode):
    v = CUBE_V.copy()
    v[6, 2] = np.nan
    assert reason_of(write(tmp_path, "nan.ply", encode(v, CUBE_F))) == "non-finite"


@pytest.mark.parametrize("encode", [ply_ascii, ply_binary], ids=["ascii", "binary"])
def test_points_only_is_empty(tmp_path, encode):
    data = encode(CUBE_V, np.zeros((0, 3), dtype=np.int64))
    assert reason_of(write(tmp_path, "points.ply", data)) == "empty"


def test_huge_declared_list_element_is_refused_before_allocating(tmp_path):
    """An element count far beyond what the file holds must not size an allocation."""
    head = (
        b"ply\nformat binary_little_endian 1.0\n"
        b"element material 2000000000\nproperty list uchar int ids\n"
        b"element vertex 8\nproperty float x\nproperty float y\nproperty float z\n"
        b"element face 12\nproperty list uchar int vertex_indices\nend_header\n"
    )
    body = b"\x01" + b"\x00" * 20
    path = write(tmp_path, "liar.ply", head + body)
    assert reason_of(path) == "truncated"
    assert peak_bytes(lambda: scanner.load(path)) < 50 * 2**20


def test_limits(tmp_path):
    path = write(tmp_path, "cube.ply", ply_binary(CUBE_V, CUBE_F))
    assert reason_of(path, Limits(max_triangles=11)) == "limit:triangles"
    assert reason_of(path, Limits(max_vertices=7)) == "limit:vertices"
    assert scanner.load(path, Limits(max_triangles=12, max_vertices=8)).triangle_count == 12


# ----------------------------------------------------------------------------- tristrips


def strips_ply(lists: list[list[int]], binary: bool = True, list_type: str = "int", faces: str = "") -> bytes:
    """The unit cube's vertices and a ``tristrips`` element of these list records."""
    fmt = "binary_little_endian" if binary else "ascii"
    head = (
        f"ply\nformat {fmt} 1.0\nelement vertex 8\nproperty float x\nproperty float y\nproperty float z\n"
        f"{faces}element tristrips {len(lists)}\nproperty list int {list_type} vertex_indices\nend_header\n"
    ).encode()
    if not binary:
        rows = [" ".join(str(float(c)) for c in v) for v in CUBE_V]
        rows += [" ".join(map(str, [len(lst), *lst])) for lst in lists]
        return head + ("\n".join(rows) + "\n").encode()
    body = np.asarray(CUBE_V, dtype="<f4").tobytes()
    for lst in lists:
        body += np.array([len(lst)], "<i4").tobytes() + np.array(lst, "<i8").astype("<" + list_type[0] + "4").tobytes()
    return head + body


def sorted_faces(mesh) -> set[tuple[int, ...]]:
    """Triangles of a loaded mesh as vertex positions, each rotated to a canonical start
    (winding kept), so the comparison does not depend on vertex numbering."""
    v = np.round(np.asarray(mesh.vertices), 6)
    out = set()
    for f in np.asarray(mesh.faces):
        k = min(range(3), key=lambda j: tuple(v[f[j]]))
        out.add(tuple(tuple(v[f[(k + j) % 3]]) for j in range(3)))
    return out


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "ascii"])
@pytest.mark.parametrize("records", [1, 4])
def test_tristrips_read_as_the_same_surface(tmp_path, binary, records):
    from fixtures.strips import ply_tristrips, stripify

    assert max(len(s) for s in stripify(CUBE_F)) >= 5  # long enough to alternate the winding
    mesh = scanner.load(write(tmp_path, "s.ply", ply_tristrips(CUBE_V, CUBE_F, binary, records)))
    assert mesh.triangle_count == 12
    assert mesh.geometry_hash == CUBE_HASH


def test_tristrip_winding_alternates_and_restarts(tmp_path):
    # strip 0 1 2 3 -> (0 1 2), (2 1 3); restart; 4 5 6 -> (4 5 6); a new record restarts too
    mesh = scanner.load(write(tmp_path, "w.ply", strips_ply([[0, 1, 2, 3, -1, 4, 5, 6], [7, 6, 5]])))
    v = CUBE_V
    want = {(0, 1, 2), (2, 1, 3), (4, 5, 6), (7, 6, 5)}
    assert sorted_faces(mesh) == sorted_faces(scanner.Mesh(vertices=v, faces=np.array(sorted(want))))


def test_degenerate_joins_are_dropped_and_faces_beside_strips_kept(tmp_path):
    # 0 1 2 2 4 4 5 6 makes (0 1 2), then (2 1 2) (2 2 4) (4 2 4) (4 4 5): degenerate joins,
    # dropped, then (5 4 6) (odd: first two swapped); the face element adds (1 3 7)
    faces = "element face 1\nproperty list uchar int vertex_indices\n"
    head, body = strips_ply([[0, 1, 2, 2, 4, 4, 5, 6]], faces=faces).split(b"end_header\n")
    face = bytes([3]) + np.array([1, 3, 7], "<i4").tobytes()
    mesh = scanner.load(write(tmp_path, "d.ply", head + b"end_header\n" + body[: 8 * 12] + face + body[8 * 12 :]))
    want = np.array([[0, 1, 2], [5, 4, 6], [1, 3, 7]])
    assert mesh.triangle_count == 3
    assert sorted_faces(mesh) == sorted_faces(scanner.Mesh(vertices=CUBE_V, faces=want))


def test_unsigned_strip_lists_restart_at_their_largest_value(tmp_path):
    mesh = scanner.load(write(tmp_path, "u.ply", strips_ply([[0, 1, 2, 2**32 - 1, 4, 5, 6]], list_type="uint")))
    assert mesh.triangle_count == 2


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "ascii"])
@pytest.mark.parametrize("bad", [8, -2, 2**31 - 1, -(2**31)])
def test_tristrip_index_out_of_range_is_bad_index(tmp_path, binary, bad):
    assert reason_of(write(tmp_path, "b.ply", strips_ply([[0, 1, 2, bad, 4]], binary))) == "bad-index"


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "ascii"])
def test_strips_of_restarts_only_are_empty(tmp_path, binary):
    assert reason_of(write(tmp_path, "e.ply", strips_ply([[-1, -1, 0, 1, -1, 2]], binary))) == "empty"


def test_huge_strip_count_is_refused_before_allocating(tmp_path):
    """One record claiming two billion indices in a file of a few bytes."""
    data = strips_ply([[0, 1, 2, 3]])
    at = data.index(b"end_header\n") + len(b"end_header\n") + 8 * 12
    data = data[:at] + np.array([2_000_000_000], "<i4").tobytes() + data[at + 4 :]
    path = write(tmp_path, "huge.ply", data)
    assert reason_of(path) == "truncated"
    assert peak_bytes(lambda: scanner.load(path)) < 50 * 2**20
    many = data.replace(b"element tristrips 1", b"element tristrips 2000000000")
    assert reason_of(write(tmp_path, "many.ply", many)) == "truncated"


def test_ascii_strip_shorter_than_its_count_is_corrupt(tmp_path):
    data = strips_ply([[0, 1, 2, 3]], binary=False).replace(b"\n4 0 1 2 3", b"\n900 0 1 2 3")
    assert reason_of(write(tmp_path, "short.ply", data)) == "corrupt"


def test_strip_triangles_count_against_the_limit(tmp_path):
    path = write(tmp_path, "l.ply", strips_ply([[0, 1, 2, 3, 4, 5, 6, 7]]))
    assert scanner.load(path, Limits(max_triangles=6)).triangle_count == 6
    assert reason_of(path, Limits(max_triangles=5)) == "limit:triangles"
