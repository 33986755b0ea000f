"""The fast STL and PLY readers give exactly the triangles trimesh gives for the same files.

The loaders take shortcuts for speed (ASCII STL lines deduplicated as text, PLY face lists
copied as byte blocks, x/y/z read in one strided pass): every shortcut must give the same
numbers as the plain reading. trimesh (``process=False``: no merging or reordering) is the
reference; triangles are compared as float32, the precision meshscan keeps for geometry
(an ASCII coordinate is read to float64 by both, then rounded once to float32).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scanner.loading import load

trimesh = pytest.importorskip("trimesh")


def _tri_trimesh(path: Path) -> np.ndarray | None:
    got = trimesh.load(path, process=False, force="mesh")
    if not isinstance(got, trimesh.Trimesh) or not len(got.faces):
        return None
    return np.asarray(got.triangles, dtype=np.float32)


def _tri_meshscan(path: Path) -> np.ndarray:
    return np.asarray(load(path).triangles, dtype=np.float32)


def _torus(nu: int = 24, nv: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """An abstract closed torus grid with irregular (seeded) coordinates."""
    rng = np.random.default_rng(7)
    u = np.linspace(0, 2 * np.pi, nu, endpoint=False)[:, None]
    v = np.linspace(0, 2 * np.pi, nv, endpoint=False)[None, :]
    r = 0.3 + 0.01 * rng.standard_normal((nu, nv))
    pts = np.stack([(1 + r * np.cos(v)) * np.cos(u), (1 + r * np.cos(v)) * np.sin(u), r * np.sin(v)], -1)
    verts = (pts.reshape(-1, 3) * 37.5).astype(np.float32)
    i, j = np.arange(nu)[:, None], np.arange(nv)[None, :]
    a, b = i * nv + j, ((i + 1) % nu) * nv + j
    c, d = ((i + 1) % nu) * nv + (j + 1) % nv, i * nv + (j + 1) % nv
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return verts, faces


def _write_ascii_stl(path: Path, tri: np.ndarray, crlf: bool = False) -> None:
    nl = "\r\n" if crlf else "\n"
    lines = ["solid parity"]
    for t in tri.astype(np.float64):
        lines += ["  facet normal 0 0 1", "    outer loop"]
        lines += [f"      vertex {x:.9g} {y:.9g} {z:.9g}" for x, y, z in t]
        lines += ["    endloop", "  endfacet"]
    path.write_text(nl.join([*lines, "endsolid parity", ""]), encoding="ascii", newline="")


def _write_ply(path: Path, verts: np.ndarray, faces: np.ndarray, order: str = "<", extra: bool = False) -> None:
    """Binary PLY; ``extra`` adds a property before x and a per-face scalar after the list."""
    fmt = "binary_little_endian" if order == "<" else "binary_big_endian"
    vprops = (["property uchar flag"] if extra else []) + [f"property float {k}" for k in "xyz"]
    fprops = ["property list uchar int vertex_indices"] + (["property float quality"] if extra else [])
    head = ["ply", f"format {fmt} 1.0", f"element vertex {len(verts)}", *vprops, f"element face {len(faces)}"]
    head += [*fprops, "end_header", ""]
    vfields = ([("flag", "u1")] if extra else []) + [(k, order + "f4") for k in "xyz"]
    vrec = np.zeros(len(verts), np.dtype(vfields))
    for j, k in enumerate("xyz"):
        vrec[k] = verts[:, j]
    ffields = [("n", "u1"), ("i", order + "i4", (3,))] + ([("q", order + "f4")] if extra else [])
    frec = np.zeros(len(faces), np.dtype(ffields))
    frec["n"], frec["i"] = 3, faces
    path.write_bytes("\n".join(head).encode() + vrec.tobytes() + frec.tobytes())


@pytest.mark.parametrize("crlf", [False, True])
def test_ascii_stl_matches_trimesh(tmp_path: Path, crlf: bool) -> None:
    verts, faces = _torus()
    path = tmp_path / "t.stl"
    _write_ascii_stl(path, verts[faces], crlf)
    ours = _tri_meshscan(path)
    assert ours.shape == (len(faces), 3, 3)
    np.testing.assert_array_equal(ours, _tri_trimesh(path))
    np.testing.assert_array_equal(ours, verts[faces])  # %.9g of float32 reads back exactly


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("extra", [False, True])
def test_binary_ply_matches_trimesh(tmp_path: Path, order: str, extra: bool) -> None:
    verts, faces = _torus()
    path = tmp_path / "t.ply"
    _write_ply(path, verts, faces, order, extra)
    mesh = load(path)
    np.testing.assert_array_equal(mesh.vertices, verts.astype(np.float64))
    np.testing.assert_array_equal(mesh.faces, faces)
    np.testing.assert_array_equal(_tri_meshscan(path), _tri_trimesh(path))


def test_binary_ply_with_mixed_polygons_matches_fan_triangulation(tmp_path: Path) -> None:
    """Variable-length face lists (a quad among triangles) take the record-by-record path.
    (trimesh's binary PLY reader refuses such a file, "PLY is unexpected length": the fan the
    other loaders make is the reference here.)"""
    verts, faces = _torus(6, 4)
    quad = np.array([faces[0, 0], faces[0, 1], faces[0, 2], faces[1, 2]])
    body = b"".join(
        np.array([len(f)], "u1").tobytes() + np.asarray(f, "<i4").tobytes() for f in [quad, *faces[2:].tolist()]
    )
    head = (
        f"ply\nformat binary_little_endian 1.0\nelement vertex {len(verts)}\nproperty float x\nproperty float y\n"
        f"property float z\nelement face {len(faces) - 1}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    path = tmp_path / "mixed.ply"
    path.write_bytes(head.encode() + verts.astype("<f4").tobytes() + body)
    mesh = load(path)
    want = np.concatenate([[quad[[0, 1, 2]], quad[[0, 2, 3]]], faces[2:]])
    np.testing.assert_array_equal(mesh.faces, want)
    np.testing.assert_array_equal(mesh.vertices, verts.astype(np.float64))


def _corpus_files(corpus: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in (corpus / "trimesh").iterdir() if p.suffix.lower() in suffixes)


def _ply_faces_declared(path: Path) -> int | None:
    head = path.read_bytes()[:65536].split(b"end_header")[0].decode("latin-1").split()
    at = [i for i in range(len(head) - 2) if head[i] == "element" and head[i + 1] == "face"]
    return int(head[at[0] + 2]) if at else None


def test_corpus_stl_files_match_trimesh(corpus: Path) -> None:
    """Every corpus STL (binary and ASCII) both read gives the same triangles, in order."""
    compared = []
    for path in _corpus_files(corpus, (".stl",)):
        try:
            ours, theirs = _tri_meshscan(path), _tri_trimesh(path)
        except Exception:  # noqa: BLE001 - unreadable to one of them (meshscan: a reason code)
            continue
        if theirs is None:
            continue
        np.testing.assert_array_equal(ours, theirs, err_msg=str(path))
        compared.append(path.name)
    assert len(compared) >= 10, compared


def test_corpus_ply_files_match_trimesh(corpus: Path) -> None:
    """Every corpus PLY both read as a mesh with the same vertex count (trimesh splits vertices
    at texture seams): the same vertices, in order; and the same
    triangles where every face is a triangle (quads are split along another diagonal by
    trimesh, so their triangles differ while the surface is the same)."""
    compared = []
    for path in _corpus_files(corpus, (".ply",)):
        try:
            mesh = load(path)
            theirs = trimesh.load(path, process=False, force="mesh")
        except Exception:  # noqa: BLE001 - point clouds, missing textures: nothing to compare
            continue
        if (
            not isinstance(theirs, trimesh.Trimesh)
            or not len(theirs.faces)
            or len(theirs.vertices) != len(mesh.vertices)
        ):
            continue  # trimesh split vertices at texture seams (UV), or read no surface
        np.testing.assert_array_equal(mesh.vertices.astype(np.float32), theirs.vertices.astype(np.float32))
        if _ply_faces_declared(path) == mesh.triangle_count:
            np.testing.assert_array_equal(mesh.faces, theirs.faces, err_msg=str(path))
            compared.append(path.name)
    assert len(compared) >= 5, compared
