"""The matcher's second stage: a near-duplicate hit stands only when the upload's row is nearer
the signature than any generic reference shape (a grid of plain solids and plane-cut pieces),
and never when the row is a plain solid itself (issue 11, item 4: simple shapes must not flag
each other)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from scanner.enrol import enrol
from scanner.features import describe
from scanner.features.reference import PLAIN_SOLID, nearest_generic_distance, nearest_reference_distance
from scanner.library import SignatureLibrary
from scanner.matching import Matcher
from scanner.mesh import Mesh
from scanner.pipeline import ScanContext, scan_one
from scanner.verdict import CLEAR, FLAG

DEMO = Path(__file__).resolve().parents[2] / "fixtures" / "demo"


def _export(meshes: list[trimesh.Trimesh], path: Path) -> Path:
    trimesh.util.concatenate(meshes).export(path)
    return path


def _row(tm: trimesh.Trimesh) -> np.ndarray:
    return describe(Mesh(vertices=np.asarray(tm.vertices), faces=np.asarray(tm.faces))).rows()[0][:1]


@pytest.fixture
def cube_signature(tmp_path: Path) -> SignatureLibrary:
    """A known file that is a cube beside a sphere: its cube body holds most of its surface, so
    by share alone it is matchable on its own."""
    cube = trimesh.creation.box(extents=(40, 40, 40))
    ball = trimesh.creation.icosphere(subdivisions=3, radius=14)
    ball.apply_translation((80, 0, 0))
    lib = SignatureLibrary.create(tmp_path / "lib", name="t")
    (result,) = enrol(lib, _export([cube, ball], tmp_path / "known.stl"), "other_component", "test")
    assert result.status == "added"
    return lib


def test_plain_solids_sit_near_the_generic_set_and_far_from_the_threshold_set() -> None:
    """Why the generic set exists: a cube is within sampling noise of it (a plain solid: no
    evidence), a 1:31:60 plate and a thin disc within a little more, while the threshold set
    (random look-alikes) leaves all three two to five times further away."""
    shapes = [
        trimesh.creation.box(extents=(4, 4, 4)),
        trimesh.creation.box(extents=(0.12, 3.75, 7.25)),
        trimesh.creation.cylinder(radius=10, height=0.8, sections=48),
    ]
    rows = np.concatenate([_row(s) for s in shapes])
    generic, threshold_set = nearest_generic_distance(rows), nearest_reference_distance(rows)
    assert generic[0] < PLAIN_SOLID, generic
    assert (generic < 0.025).all(), generic
    assert (threshold_set > 2 * generic).all(), (generic, threshold_set)


def _pyramids_and_cubes(path: Path) -> Path:
    """Three small cubes among pyramids (a real corpus file has this shape)."""
    parts = []
    for i in range(3):
        cube = trimesh.creation.box(extents=(4, 4, 4))
        cube.apply_translation((i * 10, 50, 0))
        parts.append(cube)
    for i in range(6):
        pyramid = trimesh.creation.cone(radius=20, height=30, sections=4)
        pyramid.apply_translation((i * 60, 0, 0))
        parts.append(pyramid)
    return _export(parts, path)


def test_a_signature_body_that_is_a_plain_solid_matches_exact_copies_only(cube_signature) -> None:
    """Signature side: the cube body of the known file gets threshold 0 at enrolment (and so
    does any plane-cut piece that is a plain box), while its sphere-and-cube whole keeps one."""
    rows, thresholds = np.asarray(cube_signature.rows), np.asarray(cube_signature.thresholds)
    assert thresholds[(rows[:, 1] == 0)].max() == 0.0  # body 0: the cube, most of the surface
    assert thresholds[rows[:, 1] == -1][0] > 0.0


def test_small_cubes_in_an_unrelated_file_do_not_flag_a_known_cube_body(cube_signature, tmp_path: Path) -> None:
    """Upload side: in a library enrolled before the signature-side rule (the cube body's
    threshold as it was, 0.03), the upload's cube bodies are 0.006 from it - the first stage
    matches - but a plain solid is no evidence at any distance."""
    body = np.flatnonzero(np.asarray(cube_signature.rows)[:, 1] == 0)
    cube_signature.thresholds[body] = 0.03
    upload = _pyramids_and_cubes(tmp_path / "pyramids.stl")
    cube = trimesh.creation.box(extents=(4, 4, 4))
    hits = Matcher.build(cube_signature).descriptors.query(_row(cube), k=5, radius=0.08)
    assert any(h.distance <= h.threshold for h in hits), "the test needs a first-stage hit to veto"
    (verdict,) = scan_one(upload, ScanContext(library=cube_signature, model=None))
    assert verdict.verdict == CLEAR, verdict.explanation


def test_a_known_part_among_plain_solids_still_flags(tmp_path: Path) -> None:
    """The veto is per row: a known proxy, rotated and set among a plate and cubes (which are
    vetoed as plain solids), still flags on its own body."""
    proxy = sorted(DEMO.glob("proxy-*.stl"))[0]
    lib = SignatureLibrary.create(tmp_path / "lib", name="t")
    enrol(lib, proxy, "other_component", "test")
    known = trimesh.load(proxy, force="mesh")
    known.apply_transform(trimesh.transformations.rotation_matrix(0.7, (1, 2, 3)))
    size = float(known.extents.max())
    decoys = [trimesh.creation.box(extents=(10 * size, 8 * size, 0.1 * size))]
    decoys[0].apply_translation((0, 0, -5 * size))
    for i in range(3):
        decoys.append(trimesh.creation.box(extents=(size, size, size)))
        decoys[-1].apply_translation(((i + 2) * 3 * size, 0, 0))
    upload = _export([known, *decoys], tmp_path / "copy.stl")
    (verdict,) = scan_one(upload, ScanContext(library=lib, model=None))
    assert verdict.verdict == FLAG, verdict.explanation
    assert verdict.matches[0].body is not None  # found on its body, not on the whole file


def test_a_proxy_copy_is_nearer_its_signature_than_any_generic_shape(tmp_path: Path) -> None:
    """The other side: a rotated copy of each demo proxy passes the second stage with margin."""
    lib = SignatureLibrary.create(tmp_path / "lib", name="t")
    proxies = sorted(DEMO.glob("proxy-*.stl"))[:6]
    assert proxies
    for p in proxies:
        enrol(lib, p, "other_component", "test")
        tm = trimesh.load(p, force="mesh")
        tm.apply_transform(trimesh.transformations.rotation_matrix(1.1, (0, 1, 1)))
        tm.apply_scale(3.0)
        (verdict,) = scan_one(_export([tm], tmp_path / f"copy-{p.stem}.stl"), ScanContext(library=lib, model=None))
        assert verdict.verdict == FLAG, (p.name, verdict.explanation)
