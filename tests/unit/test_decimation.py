"""The signature rows of the enrolled surface after quadric decimation (scanner/decimation.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

import scanner
from scanner.decimation import DECIMATED_ROWS, DECIMATED_THRESHOLD, decimated_surfaces
from scanner.enrol import enrol
from scanner.library import SignatureLibrary
from scanner.pipeline import ScanContext, scan_one
from tests.conftest import REPO

fast_simplification = pytest.importorskip("fast_simplification")

DEMO = REPO / "fixtures" / "demo"
FRAME = DEMO / "proxy-frame_or_receiver-s1-000.3mf"
"""A coarse box composition (48 triangles): decimation to 50% already takes corners off it, and
without the decimated rows none of its decimated copies flagged."""
ACCESSORY = DEMO / "proxy-accessory-s1-000.3mf"
"""A 212-triangle composition: its copies decimated to 25% and 10% were cleared without them."""


def _library(folder: Path, path: Path) -> SignatureLibrary:
    lib = SignatureLibrary.create(folder)
    (result,) = enrol(lib, path, "other_component", "test")
    assert result.status == "added"
    lib.save(folder)
    return SignatureLibrary.load(folder)


def _decimated_copy(path: Path, keep: float, out: Path, seed: int) -> Path:
    """The file as an uploader decimates it (trimesh's ``simplify_quadric_decimation`` calls
    fast-simplification with these defaults), then turned and rescaled."""
    mesh = scanner.load(path)
    v, f = fast_simplification.simplify(
        np.asarray(mesh.welded_vertices, dtype=np.float64),
        np.asarray(mesh.welded_faces, dtype=np.int64),
        target_reduction=1.0 - keep,
    )
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    trimesh.Trimesh(np.asarray(v) @ q.T * 2.5, f, process=False).export(out)
    return out


@pytest.fixture(scope="module")
def frame_library(tmp_path_factory: pytest.TempPathFactory) -> SignatureLibrary:
    return _library(tmp_path_factory.mktemp("frame"), FRAME)


def test_a_signature_stores_its_decimated_surfaces(frame_library: SignatureLibrary) -> None:
    bodies = frame_library.rows[:, 1].tolist()
    whole = bodies.index(-1)
    for row in DECIMATED_ROWS.values():
        assert bodies.count(row) == 1
        at = bodies.index(row)
        assert 0 < frame_library.thresholds[at] <= min(frame_library.thresholds[whole], DECIMATED_THRESHOLD)
    # the 10% row is another shape than the file's own (why it is stored): past the whole row's threshold
    coarse = bodies.index(DECIMATED_ROWS[0.1])
    distance = np.linalg.norm(frame_library.vectors[coarse] - frame_library.vectors[whole])
    assert distance > frame_library.thresholds[whole]


@pytest.mark.parametrize("keep", [0.5, 0.25, 0.1])
def test_a_decimated_copy_is_flagged(frame_library: SignatureLibrary, tmp_path: Path, keep: float) -> None:
    upload = _decimated_copy(FRAME, keep, tmp_path / f"frame-{keep}.stl", seed=3)
    (verdict,) = scan_one(str(upload), ScanContext(library=frame_library, model=None))
    assert verdict.verdict == "flag", verdict.explanation
    assert verdict.matches[0].signature_id == frame_library.signatures[0].id


@pytest.mark.parametrize("keep", [0.25, 0.1])
def test_a_decimated_copy_of_a_finer_proxy_is_flagged(tmp_path: Path, keep: float) -> None:
    lib = _library(tmp_path / "lib", ACCESSORY)
    upload = _decimated_copy(ACCESSORY, keep, tmp_path / f"accessory-{keep}.obj", seed=5)
    (verdict,) = scan_one(str(upload), ScanContext(library=lib, model=None))
    assert verdict.verdict == "flag", verdict.explanation


def test_other_designs_and_their_decimated_copies_are_not_taken_in(
    frame_library: SignatureLibrary, tmp_path: Path
) -> None:
    """Decimation simplifies shapes towards each other: the other frame designs of the demo set,
    as published and decimated the same way, stay clear of this frame's decimated rows."""
    context = ScanContext(library=frame_library, model=None)
    for other in ("proxy-frame_or_receiver-s1-001.stl", "proxy-frame_or_receiver-s1-002.stl"):
        uploads = [DEMO / other]
        for keep in DECIMATED_ROWS:
            uploads.append(_decimated_copy(DEMO / other, keep, tmp_path / f"{keep}-{other}", seed=7))
        for upload in uploads:
            (verdict,) = scan_one(str(upload), context)
            assert verdict.verdict != "flag", (upload.name, verdict.explanation)


def test_a_budget_the_tool_cannot_reach_adds_no_second_identical_row() -> None:
    """A cube of 12 triangles cannot lose any without losing its volume's sides: the tool stops,
    and a surface equal to the file (or to the previous budget's) is not stored again."""
    box = trimesh.creation.box(extents=(1.0, 2.0, 3.0))
    mesh = scanner.Mesh(vertices=np.asarray(box.vertices), faces=np.asarray(box.faces))
    surfaces = decimated_surfaces(mesh)
    sizes = [(s.triangle_count, len(s.welded_vertices)) for _, s in surfaces]
    assert len(sizes) == len(set(sizes))
    assert all(count < 12 for count, _ in sizes)
