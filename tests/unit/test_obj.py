"""Wavefront OBJ: polygons, index forms, groups, continuations, and broken files."""

from __future__ import annotations

import numpy as np
import pytest
from _builders import obj_text, soup, tetra, unit_cube, write

import scanner
from scanner.config import Limits
from scanner.errors import UnreadableInput


def mesh_hash(vertices, faces) -> str:
    return scanner.Mesh(vertices=soup(vertices, faces).reshape(-1, 3)).geometry_hash


def reason_of(path, limits: Limits | None = None) -> str:
    with pytest.raises(UnreadableInput) as info:
        scanner.load(path, limits)
    return info.value.reason


CUBE_V, CUBE_F = unit_cube()
CUBE_HASH = mesh_hash(CUBE_V, CUBE_F)

# the unit cube as six quads, outward-wound; fan triangulation of each quad (a, b, c, d)
# gives (a, b, c) and (a, c, d)
CUBE_QUADS = [[1, 4, 3, 2], [5, 6, 7, 8], [1, 2, 6, 5], [3, 4, 8, 7], [2, 3, 7, 6], [1, 5, 8, 4]]
CUBE_V_TEXT = "".join(f"v {x} {y} {z}\n" for x, y, z in CUBE_V)


def fan(quads: list[list[int]]) -> np.ndarray:
    return np.array([t for q in quads for t in ([q[0], q[1], q[2]], [q[0], q[2], q[3]])]) - 1


def test_triangles(tmp_path):
    mesh = scanner.load(write(tmp_path, "cube.obj", obj_text(CUBE_V, CUBE_F)))
    assert mesh.format == "obj"
    assert mesh.triangle_count == 12
    assert mesh.geometry_hash == CUBE_HASH
    assert mesh.is_watertight


def test_quads_are_fan_triangulated(tmp_path):
    text = CUBE_V_TEXT + "".join("f " + " ".join(map(str, q)) + "\n" for q in CUBE_QUADS)
    mesh = scanner.load(write(tmp_path, "quads.obj", text.encode()))
    assert mesh.triangle_count == 12
    np.testing.assert_array_equal(mesh.faces, fan(CUBE_QUADS))
    assert mesh.geometry_hash == CUBE_HASH
    assert mesh.volume == pytest.approx(1.0)


def test_polygon_fan(tmp_path):
    # a regular pentagon in the z=0 plane: 5 corners -> 3 triangles (1,2,3) (1,3,4) (1,4,5)
    angles = np.arange(5) * 2 * np.pi / 5
    text = "".join(f"v {float(np.cos(a))!r} {float(np.sin(a))!r} 0\n" for a in angles) + "f 1 2 3 4 5\n"
    mesh = scanner.load(write(tmp_path, "pent.obj", text.encode()))
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [0, 2, 3], [0, 3, 4]])
    assert mesh.area == pytest.approx(2.5 * np.sin(2 * np.pi / 5), rel=1e-6)


def test_negative_indices(tmp_path):
    # each face is written right after its own vertices and refers back to them
    v, f = tetra()
    lines = []
    for face in f:
        for i in face:
            lines.append("v " + " ".join(repr(float(c)) for c in v[i]))
        lines.append("f -3 -2 -1")
    mesh = scanner.load(write(tmp_path, "neg.obj", ("\n".join(lines) + "\n").encode()))
    assert mesh.triangle_count == 4
    assert mesh.geometry_hash == mesh_hash(v, f)


def test_negative_and_positive_indices_mixed(tmp_path):
    text = CUBE_V_TEXT + "".join(f"f {a + 1} {b - 8} {c + 1}\n" for a, b, c in CUBE_F)
    mesh = scanner.load(write(tmp_path, "mix.obj", text.encode()))
    assert mesh.geometry_hash == CUBE_HASH


def test_vertex_colours_are_ignored(tmp_path):
    text = "".join(f"v {x} {y} {z} 0.5 0.25 1.0\n" for x, y, z in CUBE_V)
    text += "".join(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in CUBE_F)
    mesh = scanner.load(write(tmp_path, "colour.obj", text.encode()))
    assert mesh.geometry_hash == CUBE_HASH


def test_some_vertices_coloured_some_not(tmp_path):
    text = "".join(f"v {x} {y} {z}" + (" 1 0 0\n" if i % 2 else "\n") for i, (x, y, z) in enumerate(CUBE_V))
    text += "".join(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in CUBE_F)
    mesh = scanner.load(write(tmp_path, "colour.obj", text.encode()))
    assert mesh.geometry_hash == CUBE_HASH


@pytest.mark.parametrize("form", ["{v}/{v}/{v}", "{v}//{v}", "{v}/{v}"])
def test_face_index_forms(tmp_path, form):
    text = CUBE_V_TEXT + "vt 0 0\n" * 8 + "vn 0 0 1\n" * 8
    text += "".join("f " + " ".join(form.format(v=i + 1) for i in face) + "\n" for face in CUBE_F)
    mesh = scanner.load(write(tmp_path, "forms.obj", text.encode()))
    assert mesh.geometry_hash == CUBE_HASH


def test_groups_are_kept_but_bodies_follow_welded_geometry(tmp_path):
    """Two tetrahedra sharing a corner in two declared objects: one connected surface, so one
    body (a slicer prints triangles, not names); the names stay for reports."""
    v1, f = tetra()
    v2, _ = tetra((1.0, 0.0, 0.0))  # shares (1, 0, 0)
    text = "o first\n" + "".join(f"v {x} {y} {z}\n" for x, y, z in v1)
    text += "".join(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in f)
    text += "g second\n" + "".join(f"v {x} {y} {z}\n" for x, y, z in v2)
    text += "".join(f"f {a + 5} {b + 5} {c + 5}\n" for a, b, c in f)
    mesh = scanner.load(write(tmp_path, "groups.obj", text.encode()))
    assert mesh.body_count == 1
    assert {"first", "second"} <= set(mesh.group_names)
    plain = text.replace("o first\n", "").replace("g second\n", "")
    assert scanner.load(write(tmp_path, "plain.obj", plain.encode())).geometry_hash == mesh.geometry_hash


def test_two_disjoint_objects_without_groups_are_two_bodies(tmp_path):
    v1, f = tetra()
    v2, _ = tetra((5.0, 0.0, 0.0))
    v = np.concatenate([v1, v2])
    faces = np.concatenate([f, f + 4])
    assert scanner.load(write(tmp_path, "two.obj", obj_text(v, faces))).body_count == 2


def test_line_continuation(tmp_path):
    text = CUBE_V_TEXT.replace("v 1.0 1.0 1.0\n", "v 1.0 \\\n 1.0 \\\r\n 1.0\n")
    assert "\\" in text
    lines = [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in CUBE_F]
    lines[5] = lines[5].replace(" ", " \\\n ", 2)
    text += "\n".join(lines) + "\n"
    mesh = scanner.load(write(tmp_path, "cont.obj", text.encode()))
    assert mesh.triangle_count == 12
    assert mesh.geometry_hash == CUBE_HASH


def test_comments_crlf_and_other_statements(tmp_path):
    text = "# a comment\r\nmtllib x.mtl\r\nusemtl red\r\ns off\r\n"
    text += CUBE_V_TEXT.replace("\n", " # trailing\r\n")
    text += "l 1 2\r\np 3\r\n"
    text += "".join(f"f {a + 1} {b + 1} {c + 1}\r\n" for a, b, c in CUBE_F)
    mesh = scanner.load(write(tmp_path, "misc.obj", text.encode()))
    assert mesh.geometry_hash == CUBE_HASH


def test_obj_named_stl_is_read_as_obj(tmp_path):
    mesh = scanner.load(write(tmp_path, "cube.stl", obj_text(CUBE_V, CUBE_F)))
    assert mesh.format == "obj"
    assert mesh.geometry_hash == CUBE_HASH


# ----------------------------------------------------------------------------- broken


def test_index_zero_is_bad_index(tmp_path):
    text = obj_text(CUBE_V, CUBE_F, one_based=False)  # 0-based, as some broken writers do
    assert reason_of(write(tmp_path, "zero.obj", text)) == "bad-index"


def test_index_beyond_count_is_bad_index(tmp_path):
    text = obj_text(CUBE_V, CUBE_F) + b"f 1 2 9\n"
    assert reason_of(write(tmp_path, "far.obj", text)) == "bad-index"


def test_negative_index_before_first_vertex_is_bad_index(tmp_path):
    text = obj_text(CUBE_V, CUBE_F) + b"f -1 -2 -9\n"
    assert reason_of(write(tmp_path, "neg.obj", text)) == "bad-index"


def test_negative_index_counts_only_earlier_vertices(tmp_path):
    """``f -1 ...`` before any vertex refers to nothing, even if vertices follow."""
    text = b"f -1 -2 -3\n" + obj_text(CUBE_V, CUBE_F)
    assert reason_of(write(tmp_path, "early.obj", text)) == "bad-index"


def test_huge_index_is_bad_index(tmp_path):
    text = obj_text(CUBE_V, CUBE_F) + b"f 1 2 99999999999999999999999\n"
    assert reason_of(write(tmp_path, "huge.obj", text)) == "bad-index"


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "1e999", "1e39"])
def test_non_finite_coordinate(tmp_path, bad):
    text = CUBE_V_TEXT.replace("v 1.0 1.0 1.0", f"v 1.0 {bad} 1.0")
    text += "".join(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in CUBE_F)
    assert reason_of(write(tmp_path, "nan.obj", text.encode())) == "non-finite"


def test_non_finite_unused_vertex_is_harmless(tmp_path):
    text = "v nan nan nan\n" + "".join(f"v {x} {y} {z}\n" for x, y, z in CUBE_V)
    text += "".join(f"f {a + 2} {b + 2} {c + 2}\n" for a, b, c in CUBE_F)
    assert scanner.load(write(tmp_path, "unused.obj", text.encode())).geometry_hash == CUBE_HASH


def test_bad_number_is_corrupt(tmp_path):
    text = CUBE_V_TEXT.replace("v 1.0 1.0 1.0", "v 1.0 1,0 1.0")
    text += "".join(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in CUBE_F)
    assert reason_of(write(tmp_path, "bad.obj", text.encode())) == "corrupt"


def test_bad_face_index_is_corrupt(tmp_path):
    text = obj_text(CUBE_V, CUBE_F) + b"f 1 2 x\n"
    assert reason_of(write(tmp_path, "bad.obj", text)) == "corrupt"


def test_vertex_with_two_coordinates_is_corrupt(tmp_path):
    text = CUBE_V_TEXT.replace("v 1.0 1.0 1.0", "v 1.0 1.0")
    text += "".join(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in CUBE_F)
    assert reason_of(write(tmp_path, "short.obj", text.encode())) == "corrupt"


@pytest.mark.parametrize(
    "text",
    [b"# nothing but a comment\n", CUBE_V_TEXT.encode(), CUBE_V_TEXT.encode() + b"l 1 2 3\n", b"v 0 0 0\nf 1 1\n"],
    ids=["comment", "points", "lines", "two-corner-face"],
)
def test_no_faces_is_empty(tmp_path, text):
    assert reason_of(write(tmp_path, "e.obj", text)) == "empty"


def test_vertex_limit(tmp_path):
    path = write(tmp_path, "cube.obj", obj_text(CUBE_V, CUBE_F))
    assert reason_of(path, Limits(max_vertices=7)) == "limit:vertices"


def test_triangle_limit_counts_triangles_after_fanning(tmp_path):
    text = CUBE_V_TEXT + "".join("f " + " ".join(map(str, q)) + "\n" for q in CUBE_QUADS)
    path = write(tmp_path, "quads.obj", text.encode())
    assert reason_of(path, Limits(max_triangles=11)) == "limit:triangles"
    assert scanner.load(path, Limits(max_triangles=12)).triangle_count == 12


def test_line_and_point_elements_are_ignored_whatever_they_hold(tmp_path):
    """``l`` polylines and ``p`` points are not surfaces: not faces, not counted against the
    triangle limit, and their indices are not checked (out of range, zero, garbage, ``v/vt``)."""
    text = CUBE_V_TEXT + "l 1 2 99999\np 0\nl 1/1 2/2 -50\np x y\nl\n" + "l 1 2 3 4 5 6 7 8\n" * 1000
    text += "".join(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in CUBE_F)
    mesh = scanner.load(write(tmp_path, "lp.obj", text.encode()), Limits(max_triangles=12))
    assert mesh.triangle_count == 12
    assert mesh.geometry_hash == CUBE_HASH
