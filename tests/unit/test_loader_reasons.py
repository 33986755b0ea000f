"""Reasons that tell the truth (issue 12, item 9): a file holding facets is never ``empty``,
and no malformed input reaches the catch-all in ``read_blob`` (every loader failure is an
:class:`UnreadableInput` with a specific reason raised by the loader itself)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from _builders import ascii_stl, binary_stl, obj_text, off_text, ply_ascii, ply_binary, soup, tetra, unit_cube, write
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import scanner
from scanner.config import Limits
from scanner.errors import REASON_CODES, UnreadableInput
from scanner.formats import LOADERS
from scanner.formats.base import LoadContext
from scanner.formats.blob import BytesBlob
from scanner.mesh import Mesh

CUBE_V, CUBE_F = unit_cube()
CUBE_SOUP = soup(CUBE_V, CUBE_F)
CUBE_HASH = Mesh(vertices=CUBE_SOUP.reshape(-1, 3)).geometry_hash


def reason_of(path) -> tuple[str, str]:
    with pytest.raises(UnreadableInput) as info:
        scanner.load(path)
    return info.value.reason, info.value.detail


# ----------------------------------------------------------------------------- one-line ASCII STL


def test_one_line_ascii_stl_is_read(tmp_path):
    one_line = b" ".join(ascii_stl(CUBE_SOUP).split())
    assert b"\n" not in one_line
    mesh = scanner.load(write(tmp_path, "one.stl", one_line))
    assert mesh.format == "stl-ascii"
    assert mesh.triangle_count == 12
    assert mesh.geometry_hash == CUBE_HASH


def test_the_issue_example_is_one_facet(tmp_path):
    text = b"solid x facet normal 0 0 0 outer loop vertex 0 0 0 vertex 1 0 0 vertex 0 1 0 endloop endfacet endsolid"
    mesh = scanner.load(write(tmp_path, "x.stl", text))
    assert mesh.triangle_count == 1
    np.testing.assert_array_equal(mesh.triangles[0], [[0, 0, 0], [1, 0, 0], [0, 1, 0]])


def test_one_facet_per_line_and_crlf(tmp_path):
    lines = ascii_stl(CUBE_SOUP, eol="\r\n").split(b"\r\n")
    facets, current = [lines[0]], []
    for line in lines[1:]:
        current.append(line.strip())
        if line.strip() == b"endfacet":
            facets.append(b" ".join(current))
            current = []
    text = b"\r\n".join(facets + current)
    mesh = scanner.load(write(tmp_path, "per-facet.stl", text))
    assert mesh.geometry_hash == CUBE_HASH


def test_one_line_solids_are_groups_and_names_skip_keywords(tmp_path):
    v, f = tetra()
    first = b" ".join(ascii_stl(soup(v, f), name="my vertex art").split())
    second = b" ".join(ascii_stl(soup(v, f) + 5.0, name="two").split())
    mesh = scanner.load(write(tmp_path, "two.stl", first + b" " + second))
    assert mesh.triangle_count == 8
    assert mesh.group_names == ["my vertex art", "two"]
    np.testing.assert_array_equal(mesh.groups, [0] * 4 + [1] * 4)


def test_one_line_stl_cut_inside_a_vertex_is_truncated(tmp_path):
    text = b" ".join(ascii_stl(CUBE_SOUP).split())
    cut = text[: text.rindex(b"vertex") + len(b"vertex 1")]
    assert reason_of(write(tmp_path, "cut.stl", cut))[0] == "truncated"


def test_one_line_stl_with_a_word_for_a_number_is_corrupt(tmp_path):
    text = b" ".join(ascii_stl(CUBE_SOUP).split()).replace(b"vertex 0.0", b"vertex zero", 1)
    assert reason_of(write(tmp_path, "bad.stl", text))[0] == "corrupt"


def test_stl_with_no_facet_at_all_is_still_empty(tmp_path):
    assert reason_of(write(tmp_path, "e.stl", b"solid nothing here\nendsolid nothing here\n"))[0] == "empty"


def test_many_empty_solids_are_quick_and_empty(tmp_path):
    # 400,000 solid lines once cost a source read each (15 s for 2M); now whole-array tests
    reason, _ = reason_of(write(tmp_path, "solids.stl", b"solid a\n" * 400_000))
    assert reason == "empty"


def test_many_solids_keep_one_group_each_and_the_first_names(tmp_path):
    v, f = tetra()
    blocks = [ascii_stl(soup(v, f) + 3.0 * i, name=f"s{i}") for i in range(1200)]
    mesh = scanner.load(write(tmp_path, "many.stl", b"".join(blocks)))
    assert mesh.triangle_count == 4 * 1200
    np.testing.assert_array_equal(mesh.groups, np.repeat(np.arange(1200), 4))
    assert mesh.group_names == [f"s{i}" for i in range(1000)]


# ----------------------------------------------------------------------------- former catch-all cases


def test_coff_with_no_vertices_is_bad_index(tmp_path):
    reason, detail = reason_of(write(tmp_path, "c.off", b"COFF\n0 1 0\n3 0 1 2\n"))
    assert reason == "bad-index"
    assert "Error" not in detail  # not a Python exception's name from the catch-all


@pytest.mark.parametrize("writer", [ply_ascii, ply_binary])
def test_ply_property_declared_twice_is_corrupt(tmp_path, writer):
    data = writer(CUBE_V, CUBE_F).replace(b"property float y\n", b"property float x\n", 1)
    reason, detail = reason_of(write(tmp_path, "d.ply", data))
    assert reason == "corrupt"
    assert "'x' declared twice" in detail


def test_ply_element_declared_twice_is_corrupt(tmp_path):
    data = ply_ascii(CUBE_V, CUBE_F).replace(b"end_header\n", b"element face 0\nend_header\n")
    reason, detail = reason_of(write(tmp_path, "d.ply", data))
    assert (reason, detail) == ("corrupt", "a PLY element declared twice")


def test_binary_ply_face_without_a_list_is_corrupt(tmp_path):
    data = ply_binary(CUBE_V, CUBE_F).replace(b"property list uchar int vertex_indices", b"property int vertex_indices")
    reason, detail = reason_of(write(tmp_path, "s.ply", data))
    assert reason == "corrupt"
    assert "vertex_indices list" in detail


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (b"OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 4e71\n", "bad-index"),  # past int64: not cast to garbage
        (b"OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 inf\n", "corrupt"),
        (b"OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n1e30 0 1 2\n", "corrupt"),
        (b"OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n0\n", "empty"),
    ],
)
def test_off_huge_or_non_integer_values(tmp_path, text, reason):
    assert reason_of(write(tmp_path, "v.off", text))[0] == reason


def test_obj_face_line_without_corners_is_empty(tmp_path):
    assert reason_of(write(tmp_path, "f.obj", obj_text(CUBE_V, CUBE_F[:0]) + b"f \n"))[0] == "empty"


# ----------------------------------------------------------------------------- fuzzing

SEEDS = {
    "stl-binary": binary_stl(CUBE_SOUP),
    "stl-ascii": ascii_stl(CUBE_SOUP),
    "stl-ascii-one-line": b" ".join(ascii_stl(CUBE_SOUP).split()),
    "obj": obj_text(CUBE_V, CUBE_F) + b"g a\nf 1 2 3 4\no b\nf -1 -2 -3\nf 1/1/1 2//2 3/3\n",
    "off": off_text(CUBE_V, CUBE_F),
    "ply": ply_ascii(CUBE_V, CUBE_F),
    "ply-binary-le": ply_binary(CUBE_V, CUBE_F, "<"),
    "ply-binary-be": ply_binary(CUBE_V, CUBE_F, ">"),
}
LOADER_OF = {"stl-ascii-one-line": "stl-ascii", "ply-binary-le": "ply", "ply-binary-be": "ply"}
INSERTS = [b"nan", b"inf", b"-", b"1e400", b"99999999999999999999", b"\r", b"\x00", b"vertex", b"solid ", b"endsolid"]
INSERTS += [b"element face 3\n", b"property float x\n", b"property list uchar int vertex_indices\n", b"g ", b"0\n"]


@st.composite
def mutated(draw) -> tuple[str, bytes]:
    """A valid file of some format, then one to four edits: truncate, flip a byte, insert
    whitespace/digits or a keyword, duplicate or delete a line, swap two bytes."""
    name = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[name])
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, max(len(data) - 1, 0)))
        op = draw(st.integers(0, 6))
        if op == 0:
            del data[i:]
        elif op == 1 and data:
            data[i] = draw(st.integers(0, 255))
        elif op == 2:
            data[i:i] = draw(st.binary(min_size=1, max_size=5))
        elif op == 3:
            lines = bytes(data).split(b"\n")
            j = draw(st.integers(0, len(lines) - 1))
            lines.insert(j, lines[j])
            data = bytearray(b"\n".join(lines))
        elif op == 4:
            del data[i : i + draw(st.integers(1, 20))]
        elif op == 5:
            data[i:i] = draw(st.sampled_from(INSERTS))
        elif data:
            j = draw(st.integers(0, len(data) - 1))
            data[i], data[j] = data[j], data[i]
    return LOADER_OF.get(name, name), bytes(data)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_files_fail_with_a_specific_reason(case):
    """Loaders are called directly, without ``read_blob``'s catch-all: anything but a Mesh or
    an UnreadableInput (IndexError, ValueError, a RuntimeWarning turned error) fails here."""
    fmt, data = case
    ctx = LoadContext(Limits(max_triangles=10_000, max_vertices=10_000))
    try:
        with np.errstate(all="raise"):  # an invalid cast or overflow is a bug, not a result
            mesh = LOADERS[fmt](BytesBlob("fuzz", data), ctx)
    except UnreadableInput as err:
        assert err.reason in REASON_CODES
        return
    except FloatingPointError:
        pytest.fail(f"floating-point error reading a mutated {fmt}: {data[:200]!r}")
    assert mesh.triangle_count > 0


@pytest.mark.parametrize(
    ("fmt", "data"),
    [
        ("obj", b"v 0 0 0\nv 1 0 0\nv 0 1 1e"),
        ("obj", b"v 0 0 0\nv 1 0 0\nv 0 1 -2.5E"),
        ("off", b"OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 1e"),
        (
            "ply",
            b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
            b"element face 1\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n0 1 1e",
        ),
    ],
)
def test_a_number_ending_in_its_e_at_the_end_of_the_file(fmt: str, data: bytes) -> None:
    """Found by the fuzz test above: a last token ending in ``e`` (an empty exponent) read its
    exponent's first byte past the buffer's end (IndexError, reported as ``corrupt:
    IndexError``); it is a number that is not one, with the loader's own reason."""
    with pytest.raises(UnreadableInput) as caught:
        LOADERS[fmt](BytesBlob("t", data), LoadContext(Limits()))
    assert caught.value.reason in REASON_CODES
    assert "IndexError" not in str(caught.value)


# ----------------------------------------------------------------------------- the real command


def test_inspect_reads_a_one_line_stl(tmp_path):
    path = write(tmp_path, "one.stl", b" ".join(ascii_stl(CUBE_SOUP).split()))
    proc = subprocess.run(
        [sys.executable, "-m", "scanner.cli", "inspect", "--json", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert '"triangles": 12' in proc.stdout


def test_scan_reports_coff_without_vertices_as_bad_index(tmp_path):
    path = write(tmp_path, "c.off", b"COFF\n0 1 0\n3 0 1 2\n")
    proc = subprocess.run(
        [sys.executable, "-m", "scanner.cli", "scan", "--jobs", "1", "--no-model", "--format", "jsonl", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    record = json.loads(proc.stdout.splitlines()[0])
    assert (record["verdict"], record["reason"]) == ("unscannable", "bad-index")


def test_ascii_ply_vertex_without_x_y_z_on_longer_lines_is_corrupt(tmp_path):
    # one declared property that is not a coordinate, three values a line: the reader's strided
    # path (lines longer than declared) once indexed with an empty float array and crashed
    xyz = b"property float x\nproperty float y\nproperty float z\n"
    data = ply_ascii(CUBE_V, CUBE_F).replace(xyz, b"property float w\n")
    assert b"property float w\n" in data
    reason, detail = reason_of(write(tmp_path, "w.ply", data))
    assert (reason, detail) == ("corrupt", "PLY vertex element lacks x, y, z")
