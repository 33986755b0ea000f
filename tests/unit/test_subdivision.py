"""The signature row of the enrolled surface after one level of Loop subdivision."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

import scanner
from scanner.enrol import enrol
from scanner.library import SignatureLibrary
from scanner.mesh import Mesh
from scanner.pipeline import ScanContext, scan_one
from scanner.subdivision import SUBDIVIDED_ROW, SUBDIVIDED_THRESHOLD, subdivided_surface
from tests.conftest import REPO

PROXY = REPO / "fixtures" / "demo" / "proxy-other_component-s1-001.stl"


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> SignatureLibrary:
    folder = tmp_path_factory.mktemp("lib")
    lib = SignatureLibrary.create(folder)
    (result,) = enrol(lib, PROXY, "other_component", "test")
    assert result.status == "added"
    lib.save(folder)
    return SignatureLibrary.load(folder)


def _loop_copy(path: Path, out: Path, seed: int) -> Path:
    """The file as an uploader's tool subdivides it (trimesh's Loop), turned and rescaled."""
    mesh = scanner.load(path)
    v, f = trimesh.remesh.subdivide_loop(np.asarray(mesh.welded_vertices, dtype=np.float64), mesh.welded_faces)
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    trimesh.Trimesh(np.asarray(v) @ q.T * 3.0, f, process=False).export(out)
    return out


def test_a_signature_stores_its_subdivided_surface(library: SignatureLibrary) -> None:
    bodies = library.rows[:, 1].tolist()
    assert bodies.count(SUBDIVIDED_ROW) == 1
    smooth = bodies.index(SUBDIVIDED_ROW)
    whole = bodies.index(-1)
    assert 0 < library.thresholds[smooth] <= min(library.thresholds[whole], SUBDIVIDED_THRESHOLD)
    # it is another shape than the file's own (the reason for the row): farther than any threshold
    assert np.linalg.norm(library.vectors[smooth] - library.vectors[whole]) > library.thresholds[whole]


def test_a_loop_subdivided_copy_is_flagged(library: SignatureLibrary, tmp_path: Path) -> None:
    context = ScanContext(library=library, model=None)
    for seed in (1, 2):
        (verdict,) = scan_one(str(_loop_copy(PROXY, tmp_path / f"smooth{seed}.stl", seed)), context)
        assert verdict.verdict == "flag", verdict.explanation
        assert verdict.matches[0].signature_id == library.signatures[0].id


def test_another_design_is_not_taken_in_by_the_subdivided_row(tmp_path: Path) -> None:
    """Subdivision rounds shapes into each other: two demo accessory proxies (different designs)
    are 0.11 apart, but the first one's subdivided surface is 0.039 from the second."""
    lib = SignatureLibrary.create(tmp_path / "lib")
    (result,) = enrol(lib, REPO / "fixtures" / "demo" / "proxy-accessory-s1-000.3mf", "accessory", "test")
    assert result.status == "added"
    context = ScanContext(library=lib, model=None)
    (verdict,) = scan_one(str(REPO / "fixtures" / "demo" / "proxy-accessory-s1-002.stl"), context)
    assert verdict.verdict != "flag", verdict.explanation


def test_a_subdivided_plain_solid_is_held_to_the_subdivided_solids(tmp_path: Path) -> None:
    """An octahedron is far from every benign reference (its whole row gets a threshold), and
    so is its subdivided blob - but that blob is near a subdivided sphere: its row must not take
    in ball-like bodies (a corpus file's were 0.017 from one, against 0.024 before)."""
    vertices = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=np.float64)
    faces = [[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]]
    octahedron = tmp_path / "octa.stl"
    trimesh.Trimesh(vertices * 15.0, faces, process=False).export(octahedron)
    lib = SignatureLibrary.create(tmp_path / "lib")
    enrol(lib, octahedron, "other_component", "test")
    (smooth,) = np.flatnonzero(lib.rows[:, 1] == SUBDIVIDED_ROW)
    (whole,) = np.flatnonzero(lib.rows[:, 1] == -1)
    assert lib.thresholds[whole] > 0.02
    assert lib.thresholds[smooth] < 0.012


def test_a_surface_that_cannot_be_subdivided_gets_no_row() -> None:
    # three triangles on one edge: no Loop rule for it
    fan = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0], [1, 0, 0], [0, -1, 0], [0, 0, 0], [1, 0, 0], [0, 0, 1]])
    assert subdivided_surface(Mesh(vertices=fan.astype(np.float64))) is None
