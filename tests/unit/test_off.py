"""OFF: header forms, comments, COFF colours, polygons, and broken files."""

from __future__ import annotations

import numpy as np
import pytest
from _builders import num, off_text, soup, unit_cube, write

import scanner
from scanner.config import Limits
from scanner.errors import UnreadableInput

CUBE_V, CUBE_F = unit_cube()
CUBE_HASH = scanner.Mesh(vertices=soup(CUBE_V, CUBE_F).reshape(-1, 3)).geometry_hash


def reason_of(path, limits: Limits | None = None) -> str:
    with pytest.raises(UnreadableInput) as info:
        scanner.load(path, limits)
    return info.value.reason


@pytest.mark.parametrize("counts_on_header", [False, True], ids=["counts-next-line", "counts-on-header"])
def test_off(tmp_path, counts_on_header):
    mesh = scanner.load(write(tmp_path, "cube.off", off_text(CUBE_V, CUBE_F, counts_on_header)))
    assert mesh.format == "off"
    assert mesh.triangle_count == 12
    assert mesh.geometry_hash == CUBE_HASH
    np.testing.assert_array_equal(mesh.faces, CUBE_F)


def test_comments_and_blank_lines(tmp_path):
    lines = off_text(CUBE_V, CUBE_F).decode().splitlines()
    text = "# leading comment\n" + lines[0] + "  # header comment\n\n# counts follow\n" + lines[1] + "\n"
    text += "\n".join(ln + "   # a comment" for ln in lines[2:]) + "\n\n"
    mesh = scanner.load(write(tmp_path, "c.off", text.encode()))
    assert mesh.geometry_hash == CUBE_HASH


def test_crlf_and_tabs(tmp_path):
    data = off_text(CUBE_V, CUBE_F).replace(b" ", b"\t").replace(b"\n", b"\r\n")
    assert scanner.load(write(tmp_path, "t.off", data)).geometry_hash == CUBE_HASH


def test_coff_with_colours(tmp_path):
    text = f"COFF\n{len(CUBE_V)} {len(CUBE_F)} 0\n"
    text += "".join(" ".join(num(c) for c in p) + " 255 0 0 255\n" for p in CUBE_V)
    text += "".join("3 " + " ".join(map(str, f)) + " 0.1 0.9 0.2\n" for f in CUBE_F)
    mesh = scanner.load(write(tmp_path, "c.off", text.encode()))
    assert mesh.geometry_hash == CUBE_HASH


def test_quads(tmp_path):
    quads = [[0, 3, 2, 1], [4, 5, 6, 7], [0, 1, 5, 4], [2, 3, 7, 6], [1, 2, 6, 5], [0, 4, 7, 3]]
    text = "OFF\n8 6 12\n" + "".join(" ".join(num(c) for c in p) + "\n" for p in CUBE_V)
    text += "".join("4 " + " ".join(map(str, q)) + "\n" for q in quads)
    mesh = scanner.load(write(tmp_path, "q.off", text.encode()))
    assert mesh.triangle_count == 12
    assert mesh.geometry_hash == CUBE_HASH
    assert mesh.is_watertight and mesh.volume == pytest.approx(1.0)


def test_off_named_stl_is_read_as_off(tmp_path):
    assert scanner.load(write(tmp_path, "x.stl", off_text(CUBE_V, CUBE_F))).format == "off"


# ----------------------------------------------------------------------------- broken


@pytest.mark.parametrize("drop", [1, 5, 14])
def test_fewer_lines_than_declared_is_truncated(tmp_path, drop):
    lines = off_text(CUBE_V, CUBE_F).splitlines(keepends=True)
    assert reason_of(write(tmp_path, "cut.off", b"".join(lines[:-drop]))) == "truncated"


def test_header_only_is_truncated(tmp_path):
    assert reason_of(write(tmp_path, "h.off", b"OFF\n")) == "truncated"


def test_bad_counts_are_corrupt(tmp_path):
    data = off_text(CUBE_V, CUBE_F).replace(b"\n8 12 0\n", b"\neight 12 0\n")
    assert reason_of(write(tmp_path, "b.off", data)) == "corrupt"


def test_bad_number_is_corrupt(tmp_path):
    data = off_text(CUBE_V, CUBE_F).replace(b"\n1.0 1.0 1.0\n", b"\n1.0 1.0 x\n")
    assert reason_of(write(tmp_path, "b.off", data)) == "corrupt"


def test_face_shorter_than_its_count_is_corrupt(tmp_path):
    data = off_text(CUBE_V, CUBE_F).replace(b"\n3 0 2 1\n", b"\n3 0 2\n")
    assert reason_of(write(tmp_path, "b.off", data)) == "corrupt"


@pytest.mark.parametrize("bad_index", [8, 99, -1])
def test_index_out_of_range_is_bad_index(tmp_path, bad_index):
    faces = CUBE_F.copy()
    faces[3, 2] = bad_index
    assert reason_of(write(tmp_path, "b.off", off_text(CUBE_V, faces))) == "bad-index"


def test_nan_is_non_finite(tmp_path):
    data = off_text(CUBE_V, CUBE_F).replace(b"\n1.0 1.0 1.0\n", b"\n1.0 nan 1.0\n")
    assert reason_of(write(tmp_path, "n.off", data)) == "non-finite"


def test_no_faces_is_empty(tmp_path):
    assert reason_of(write(tmp_path, "e.off", off_text(CUBE_V, np.zeros((0, 3), dtype=int)))) == "empty"


def test_limits(tmp_path):
    path = write(tmp_path, "cube.off", off_text(CUBE_V, CUBE_F))
    assert reason_of(path, Limits(max_triangles=11)) == "limit:triangles"
    assert reason_of(path, Limits(max_vertices=7)) == "limit:vertices"
