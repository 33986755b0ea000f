"""The signature rows of the enrolled surface after quadric decimation (scanner/decimation.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

import scanner
from scanner.decimation import DECIMATED_ROWS, DECIMATED_THRESHOLD, REMESHED_ROWS, decimated_surfaces
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
    """Its decimated rows, and its remeshed-then-decimated ones, each thresholded no wider than
    the whole row nor ``DECIMATED_THRESHOLD``."""
    bodies = frame_library.rows[:, 1].tolist()
    whole = bodies.index(-1)
    for row in [*DECIMATED_ROWS.values(), *REMESHED_ROWS.values()]:
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


BARREL = DEMO / "proxy-barrel-s1-000.stl"
BOLT = DEMO / "proxy-bolt_or_breech_block-s1-000.stl"


def _densified_then_decimated(path: Path, out: Path, seed: int) -> Path:
    """The uploader's route past the rows above: the file re-tessellated finely and evenly
    first (``fixtures.evasions.densify``: trimesh's ``subdivide_to_size`` to ~10k triangles by
    area, not the enrolment's widths by diagonal), then decimated by the tool's defaults, which
    bevels its edges; then turned and rescaled."""
    from fixtures.evasions import as_trimesh, decimate, densify

    copy = decimate(densify(as_trimesh(scanner.load(path))), 0.5)
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    trimesh.Trimesh(np.asarray(copy.vertices) @ q.T * 2.5, copy.faces, process=False).export(out)
    return out


def test_remeshed_surfaces_skip_a_width_past_the_triangle_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    import scanner.decimation as decimation

    mesh = scanner.load(BARREL)
    widths = [share for share, _ in decimation.remeshed_surfaces(mesh)]
    assert widths == list(REMESHED_ROWS)
    monkeypatch.setattr(decimation, "MAX_REMESHED", 40_000)  # the finest width needs ~70k here, the next ~20k
    assert [share for share, _ in decimation.remeshed_surfaces(mesh)] == widths[1:]


@pytest.mark.parametrize("path", [BARREL, BOLT], ids=["barrel", "bolt"])
def test_a_densified_then_decimated_copy_is_flagged_by_a_remeshed_row(path: Path, tmp_path: Path) -> None:
    """Without the remeshed rows both copies were cleared (their thresholds set to 0 below)."""
    lib = _library(tmp_path / "lib", path)
    upload = _densified_then_decimated(path, tmp_path / "copy.stl", seed=3)
    (verdict,) = scan_one(str(upload), ScanContext(library=lib, model=None))
    assert verdict.verdict == "flag", verdict.explanation
    without = SignatureLibrary.load(tmp_path / "lib")
    thresholds = np.array(without.thresholds)
    thresholds[np.isin(without.rows[:, 1], list(REMESHED_ROWS.values()))] = 0.0
    without.thresholds = thresholds
    (before,) = scan_one(str(upload), ScanContext(library=without, model=None))
    assert before.verdict == "clear", before.explanation


def test_other_designs_remeshed_and_decimated_are_not_taken_in(tmp_path: Path) -> None:
    """A bevelled copy looks more like other bevelled shapes: the other barrel and bolt designs of
    the demo set, densified and decimated the same way, stay clear of these signatures."""
    designs = {
        BARREL: ("proxy-barrel-s1-001.stl", "proxy-barrel-s1-002.obj"),
        BOLT: ("proxy-bolt_or_breech_block-s1-001.obj", "proxy-bolt_or_breech_block-s1-002.3mf"),
    }
    for path, others in designs.items():
        context = ScanContext(library=_library(tmp_path / path.stem, path), model=None)
        for other in others:
            upload = _densified_then_decimated(DEMO / other, tmp_path / f"{other}.stl", seed=7)
            (verdict,) = scan_one(str(upload), context)
            assert verdict.verdict != "flag", (other, verdict.explanation)


def test_a_bevelled_boxy_part_does_not_take_in_plain_boxes(tmp_path: Path) -> None:
    """The bolt proxy bevelled by the tool is nearly a box: its remeshed rows are held to half
    their distance from plain solids of any proportions, so a plain box of another shape's
    proportions (a decoy beside a benign part) stays clear of them."""
    from scanner.decimation import plain_solids
    from scanner.features.reference import ALPHA

    lib = _library(tmp_path / "lib", BOLT)
    remeshed = np.isin(lib.rows[:, 1], list(REMESHED_ROWS.values()))
    rows = np.asarray(lib.vectors[remeshed], dtype=np.float64)
    nearest = np.sqrt(((rows[:, None, :] - plain_solids()[None, :, :]) ** 2).sum(axis=2)).min(axis=1)
    assert (lib.thresholds[remeshed] <= ALPHA * nearest + 1e-6).all()
    box = trimesh.creation.box(extents=(3.0, 2.2, 1.3))  # not on the grid's proportions
    box.export(tmp_path / "box.stl")
    (verdict,) = scan_one(str(tmp_path / "box.stl"), ScanContext(library=lib, model=None))
    assert verdict.verdict != "flag", verdict.explanation
