"""STL, binary and ASCII: valid variants and one broken file per failure reason."""

from __future__ import annotations

import time

import numpy as np
import pytest
from _builders import ascii_stl, binary_stl, peak_bytes, soup, tetra, unit_cube, write

import scanner
from scanner.config import Limits
from scanner.errors import UnreadableInput


def cube_tris() -> np.ndarray:
    return soup(*unit_cube())


def reference_hash() -> str:
    return scanner.Mesh(vertices=cube_tris().reshape(-1, 3)).geometry_hash


def reason_of(path, limits: Limits | None = None) -> str:
    with pytest.raises(UnreadableInput) as info:
        scanner.load(path, limits)
    return info.value.reason


# ----------------------------------------------------------------------------- binary


def test_binary_stl(tmp_path):
    path = write(tmp_path, "cube.stl", binary_stl(cube_tris()))
    mesh = scanner.load(path)
    assert mesh.format == "stl-binary"
    assert mesh.triangle_count == 12
    np.testing.assert_array_equal(mesh.triangles, cube_tris().astype(np.float32))
    assert mesh.geometry_hash == reference_hash()
    assert mesh.source == str(path)


def test_binary_stl_whose_header_starts_with_solid_is_binary(tmp_path):
    data = binary_stl(cube_tris(), header=b"solid cube exported by a CAD program")
    assert data.startswith(b"solid")
    mesh = scanner.load(write(tmp_path, "cube.stl", data))
    assert mesh.format == "stl-binary"
    assert mesh.triangle_count == 12
    assert mesh.geometry_hash == reference_hash()


def test_binary_stl_with_header_solid_and_facet_words_is_binary(tmp_path):
    data = binary_stl(cube_tris(), header=b"solid part facet normal outer loop endsolid")
    mesh = scanner.load(write(tmp_path, "cube.stl", data))
    assert mesh.format == "stl-binary"
    assert mesh.geometry_hash == reference_hash()


def test_binary_stl_zero_count_with_whole_records_is_read(tmp_path):
    """Some exporters leave the count at zero; the records that are there are the mesh."""
    mesh = scanner.load(write(tmp_path, "cube.stl", binary_stl(cube_tris(), count=0)))
    assert mesh.triangle_count == 12


def test_binary_stl_count_exceeds_size_is_truncated(tmp_path):
    data = binary_stl(cube_tris(), count=13)
    assert reason_of(write(tmp_path, "cut.stl", data)) == "truncated"


def test_binary_stl_cut_inside_a_record_is_truncated(tmp_path):
    data = binary_stl(cube_tris())[:-30]
    assert reason_of(write(tmp_path, "cut.stl", data)) == "truncated"


def test_binary_stl_with_records_past_the_count_is_corrupt(tmp_path):
    """Triangles past the declared count (``benign.stl + hidden records``): reading the
    declared triangles alone missed the rest, and a ``clear`` claims the whole upload was read."""
    data = binary_stl(cube_tris()) + binary_stl(soup(*tetra((5.0, 0.0, 0.0))))[84:]
    path = write(tmp_path, "two.stl", data)
    with pytest.raises(UnreadableInput) as info:
        scanner.load(path)
    assert info.value.reason == "corrupt"
    assert "200 bytes follow the 12 declared triangles" in info.value.detail


@pytest.mark.parametrize(
    "tail", [b"\n", b"\r\n", b"\xff" * 49, bytes(4), bytes(4096)], ids=["lf", "crlf", "49-bytes", "pad4", "zeros4k"]
)
def test_binary_stl_with_a_short_or_zero_tail_is_read(tmp_path, tail):
    """Less than one 50-byte record cannot hold a triangle, and zeros are padding."""
    mesh = scanner.load(write(tmp_path, "cube.stl", binary_stl(cube_tris()) + tail))
    assert mesh.geometry_hash == reference_hash()


def test_binary_stl_with_one_record_of_tail_is_corrupt(tmp_path):
    data = binary_stl(cube_tris()) + binary_stl(soup(*tetra((5.0, 0.0, 0.0))))[84:134]
    assert reason_of(write(tmp_path, "tail.stl", data)) == "corrupt"


def test_binary_stl_with_nan_is_non_finite(tmp_path):
    tris = cube_tris().astype(np.float32)
    tris[3, 1, 2] = np.nan
    assert reason_of(write(tmp_path, "nan.stl", binary_stl(tris))) == "non-finite"


def test_binary_stl_with_inf_is_non_finite(tmp_path):
    tris = cube_tris().astype(np.float32)
    tris[0, 0, 0] = -np.inf
    assert reason_of(write(tmp_path, "inf.stl", binary_stl(tris))) == "non-finite"


def test_binary_stl_with_no_triangles_is_empty(tmp_path):
    data = binary_stl(np.zeros((0, 3, 3)))
    assert len(data) == 84
    assert reason_of(write(tmp_path, "empty.stl", data)) == "empty"


def test_huge_declared_count_fails_fast_without_allocating(tmp_path):
    """10**9 declared triangles (50 GB of records) in a 684-byte file: refused from the header."""
    data = binary_stl(cube_tris(), count=10**9)
    path = write(tmp_path, "liar.stl", data)
    start = time.perf_counter()
    reason = reason_of(path)
    elapsed = time.perf_counter() - start
    assert reason in ("truncated", "limit:triangles")
    assert elapsed < 1.0
    # above the default triangle limit, the limit is named before anything else
    assert Limits().max_triangles < 10**9
    assert reason == "limit:triangles"
    assert peak_bytes(lambda: scanner.load(path)) < 50 * 2**20
    # and with the limit raised past the declared count, the size check still refuses it
    big = Limits(max_triangles=2 * 10**9)
    assert reason_of(path, big) == "truncated"
    assert peak_bytes(lambda: scanner.load(path, big)) < 50 * 2**20


def test_declared_count_within_limit_but_past_the_end_is_truncated(tmp_path):
    data = binary_stl(cube_tris(), count=1000)
    assert reason_of(write(tmp_path, "liar.stl", data), Limits(max_triangles=10_000)) == "truncated"


def test_triangle_limit(tmp_path):
    path = write(tmp_path, "cube.stl", binary_stl(cube_tris()))
    assert reason_of(path, Limits(max_triangles=5)) == "limit:triangles"
    assert scanner.load(path, Limits(max_triangles=12)).triangle_count == 12


def test_byte_limit(tmp_path):
    path = write(tmp_path, "cube.stl", binary_stl(cube_tris()))
    assert reason_of(path, Limits(max_file_bytes=100)) == "limit:bytes"


# ----------------------------------------------------------------------------- ASCII


def test_ascii_stl(tmp_path):
    mesh = scanner.load(write(tmp_path, "cube.stl", ascii_stl(cube_tris())))
    assert mesh.format == "stl-ascii"
    assert mesh.triangle_count == 12
    assert mesh.geometry_hash == reference_hash()


@pytest.mark.parametrize(
    "variant",
    [
        {"sep": "\t"},
        {"sep": "   "},
        {"sep": " \t "},
        {"eol": "\r\n"},
        {"upper": True},
        {"endsolid": False},
        {"sep": "\t", "eol": "\r\n", "upper": True, "endsolid": False},
    ],
    ids=["tabs", "spaces", "mixed-ws", "crlf", "upper", "no-endsolid", "all"],
)
def test_ascii_stl_variants(tmp_path, variant):
    mesh = scanner.load(write(tmp_path, "cube.stl", ascii_stl(cube_tris(), **variant)))
    assert mesh.format == "stl-ascii"
    assert mesh.triangle_count == 12
    assert mesh.geometry_hash == reference_hash()


def test_ascii_stl_exponent_notation(tmp_path):
    text = ascii_stl(cube_tris()).replace(b"vertex 1.0 ", b"vertex 1.0E+00 ").replace(b" 0.0\n", b" 0e0\n")
    mesh = scanner.load(write(tmp_path, "cube.stl", text))
    assert mesh.geometry_hash == reference_hash()


def test_ascii_stl_two_solids_are_two_bodies(tmp_path):
    v, f = tetra()
    a = ascii_stl(soup(v, f), name="first")
    b = ascii_stl(soup(v + [5.0, 0.0, 0.0], f), name="second")
    mesh = scanner.load(write(tmp_path, "two.stl", a + b))
    assert mesh.triangle_count == 8
    assert mesh.body_count == 2
    assert [b.triangle_count for b in mesh.bodies()] == [4, 4]


def test_ascii_stl_solids_are_names_not_bodies(tmp_path):
    """Declared solids are kept as names; bodies follow the welded geometry (one solid block
    per triangle must not split a part into undescribed pieces)."""
    v, f = tetra()
    a = ascii_stl(soup(v, f), name="first")
    b = ascii_stl(soup(v + [1.0, 0.0, 0.0], f), name="second")  # shares the corner (1, 0, 0)
    mesh = scanner.load(write(tmp_path, "two.stl", a + b))
    assert mesh.body_count == 1
    assert mesh.group_names == ["first", "second"]
    apart = scanner.load(write(tmp_path, "apart.stl", a + ascii_stl(soup(v + [5.0, 0.0, 0.0], f), name="b")))
    assert apart.body_count == 2


@pytest.mark.parametrize(
    "cut_after",
    [
        b"vertex 1.0 0.0 0.",  # inside a number
        b"vertex 1.0 0.0",  # inside a vertex line
        b"outer loop",  # before any vertex of the facet
        b"endloop",  # after the three vertices, before endfacet
        b"facet normal 0",  # a facet started
    ],
)
def test_ascii_stl_cut_mid_facet_is_truncated(tmp_path, cut_after):
    text = ascii_stl(cube_tris())
    # cut in the 7th facet, well past the first
    start = 0
    for _ in range(7):
        start = text.index(b"facet normal", start) + 1
    end = text.index(cut_after, start) + len(cut_after)
    assert reason_of(write(tmp_path, "cut.stl", text[:end])) == "truncated"


def test_ascii_stl_bad_number_is_corrupt(tmp_path):
    text = ascii_stl(cube_tris()).replace(b"vertex 1.0 ", b"vertex 1.0x ", 1)
    assert reason_of(write(tmp_path, "bad.stl", text)) == "corrupt"


def test_ascii_stl_vertex_with_two_numbers_is_corrupt(tmp_path):
    text = ascii_stl(cube_tris())
    line_start = text.index(b"vertex")
    line_end = text.index(b"\n", line_start)
    line = text[line_start:line_end]
    broken = line.rsplit(b" ", 1)[0]
    assert reason_of(write(tmp_path, "bad.stl", text.replace(line, broken, 1))) == "corrupt"


@pytest.mark.parametrize("bad", [b"nan", b"inf", b"-inf", b"1e999"])
def test_ascii_stl_non_finite(tmp_path, bad):
    text = ascii_stl(cube_tris()).replace(b"vertex 1.0 ", b"vertex " + bad + b" ", 1)
    assert reason_of(write(tmp_path, "nan.stl", text)) == "non-finite"


def test_ascii_stl_beyond_float32_is_non_finite(tmp_path):
    """1e39 is finite as float64 but not as float32, the precision of every hash and STL."""
    text = ascii_stl(cube_tris()).replace(b"vertex 1.0 ", b"vertex 1e39 ", 1)
    assert reason_of(write(tmp_path, "big.stl", text)) == "non-finite"


def test_ascii_stl_without_facets_is_empty(tmp_path):
    assert reason_of(write(tmp_path, "e.stl", b"solid nothing\nendsolid nothing\n")) == "empty"


def test_ascii_stl_triangle_limit(tmp_path):
    path = write(tmp_path, "cube.stl", ascii_stl(cube_tris()))
    assert reason_of(path, Limits(max_triangles=5)) == "limit:triangles"


def test_solid_name_containing_vertex_is_not_a_vertex_line(tmp_path):
    path = write(tmp_path, "named.stl", ascii_stl(cube_tris(), name="my vertex art"))
    assert scanner.load(path).triangle_count == 12


def test_each_vertex_line_holds_exactly_three_numbers(tmp_path):
    text = ascii_stl(cube_tris()).decode()
    first = text.index("vertex")
    line_end = text.index("\n", first)
    second_end = text.index("\n", line_end + 1)
    # move one number from the first vertex line to the second: the total stays right
    lines = text[first:second_end].split("\n")
    a, b = lines[0].rsplit(" ", 1)
    broken = text[:first] + a + "\n" + lines[1] + " " + b + text[second_end:]
    with pytest.raises(UnreadableInput) as err:
        scanner.load(write(tmp_path, "shifted.stl", broken.encode()))
    assert err.value.reason == "corrupt"
