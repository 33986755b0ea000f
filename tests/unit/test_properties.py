"""Property tests: any mesh written in any format reads back to the same geometry hash."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from _builders import ascii_stl, binary_stl, obj_text, off_text, ply_ascii, ply_binary, soup
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import scanner

# every finite float32 value, including -0.0, subnormals and the largest magnitudes
coordinates = st.floats(width=32, allow_nan=False, allow_infinity=False)


@st.composite
def meshes(draw) -> tuple[np.ndarray, np.ndarray]:
    n_vertices = draw(st.integers(3, 12))
    vertices = draw(hnp.arrays(np.float32, (n_vertices, 3), elements=coordinates))
    n_faces = draw(st.integers(1, 16))
    faces = draw(hnp.arrays(np.int64, (n_faces, 3), elements=st.integers(0, n_vertices - 1)))
    return vertices, faces


WRITERS = {
    "stl-binary": lambda v, f: binary_stl(soup(v, f)),
    "stl-ascii": lambda v, f: ascii_stl(soup(v, f)),
    "obj": obj_text,
    "ply-ascii": ply_ascii,
    "ply-binary-le": lambda v, f: ply_binary(v, f, "<"),
    "ply-binary-be": lambda v, f: ply_binary(v, f, ">"),
    "off": off_text,
}


@settings(max_examples=30, deadline=None)
@given(meshes())
def test_every_format_reads_back_to_the_same_hash(mesh):
    vertices, faces = mesh
    expected = scanner.Mesh(vertices=soup(vertices, faces).reshape(-1, 3)).geometry_hash
    with tempfile.TemporaryDirectory() as tmp:
        for name, writer in WRITERS.items():
            path = Path(tmp) / f"mesh.{name}"
            path.write_bytes(writer(vertices, faces))
            loaded = scanner.load(path)
            assert loaded.triangle_count == len(faces), name
            np.testing.assert_array_equal(loaded.triangles.astype(np.float32), soup(vertices, faces), err_msg=name)
            assert loaded.geometry_hash == expected, name


@settings(max_examples=30, deadline=None)
@given(meshes(), st.randoms(use_true_random=False))
def test_hash_ignores_triangle_order_corner_rotation_and_winding(mesh, rnd):
    vertices, faces = mesh
    expected = scanner.Mesh(vertices=soup(vertices, faces).reshape(-1, 3)).geometry_hash
    order = list(range(len(faces)))
    rnd.shuffle(order)
    faces = np.array([np.roll(f, rnd.randrange(3))[:: rnd.choice((1, -1))] for f in faces[order]])
    assert scanner.Mesh(vertices=vertices.astype(np.float64), faces=faces).geometry_hash == expected


# ----------------------------------------------------------------------------- damaged files


def _seeds() -> dict[str, bytes]:
    from _builders import gzip_bytes, mesh_object_xml, model_xml, threemf_bytes, unit_cube, zip_bytes

    v, f = unit_cube()
    component = '<object id="2"><components><component objectid="1" transform="1 0 0 0 1 0 0 0 1 3 0 0"/>'
    component += "</components></object>"
    seeds = {name: writer(v, f) for name, writer in WRITERS.items()}
    seeds["3mf"] = threemf_bytes(
        model_xml(mesh_object_xml(1, v, f) + component, '<item objectid="2"/><item objectid="1"/>')
    )
    seeds["zip"] = zip_bytes({"a.stl": seeds["stl-binary"], "b.obj": seeds["obj"]})
    seeds["gzip"] = gzip_bytes(seeds["stl-ascii"])
    return seeds


SEEDS = _seeds()
TOKENS = [b"-", b"0", b" ", b"\n", b"nan", b"9999999999", b"\x00", b"#", b"/", b"\xff\xff\xff\xff", b"-1"]
edits = st.one_of(
    st.tuples(st.just("cut"), st.floats(0, 1)),
    st.tuples(st.just("set"), st.floats(0, 1), st.integers(0, 255)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.sampled_from(TOKENS)),
    st.tuples(st.just("delete"), st.floats(0, 1), st.integers(1, 60)),
)


def damage(data: bytes, steps: list[tuple]) -> bytes:
    out = bytearray(data)
    for step in steps:
        at = min(int(step[1] * len(out)), max(len(out) - 1, 0))
        if step[0] == "cut":
            del out[at:]
        elif step[0] == "set" and out:
            out[at] = step[2]
        elif step[0] == "insert":
            out[at:at] = step[2]
        elif step[0] == "delete":
            del out[at : at + step[2]]
    return bytes(out)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(SEEDS)), st.lists(edits, min_size=1, max_size=4))
def test_damaged_files_load_or_raise_unreadable_input(name, steps):
    """Never a traceback: any damage gives a usable mesh or a reason code."""
    from scanner.errors import REASON_CODES, UnreadableInput

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "upload"
        path.write_bytes(damage(SEEDS[name], steps))
        try:
            mesh = scanner.load(path)
        except UnreadableInput as err:
            assert err.reason in REASON_CODES
            return
        assert mesh.triangle_count > 0
        assert np.isfinite(mesh.triangles.astype(np.float32)).all()
        assert len(mesh.geometry_hash) == 64
        mesh.summary()
