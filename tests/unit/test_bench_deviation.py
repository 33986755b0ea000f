"""bench/evasion.py's surface deviation: did a re-tessellating tool keep the part's shape?

Why: the three "decimation, densified" rows miss because fast-simplification's default setting
moves the copies' surfaces (measured: every missed copy beyond 1% of the diagonal, every copy
within it flagged); the bench prints, for rows whose copy stays in the part's frame, how far
each copy moved and the recall on each side of :data:`bench.evasion.FAITHFUL`.
"""

from __future__ import annotations

import math

import numpy as np
import trimesh

import scanner
from bench.evasion import FAITHFUL, Outcome, Row, _enrolled_samples, _surface_deviation, print_deviation
from fixtures.evasions import EVASIONS, Evasion, decimate_to_budget, densify


def _part(tmp_path) -> tuple[trimesh.Trimesh, tuple]:  # noqa: ANN001
    tube = trimesh.creation.annulus(r_min=0.6, r_max=1.0, height=3.0, sections=24)
    tube.export(tmp_path / "part.stl")
    return tube, _enrolled_samples(scanner.load(tmp_path / "part.stl"))


def test_a_re_tessellated_copy_stays_within_the_floor(tmp_path):
    tube, enrolled = _part(tmp_path)
    v, f = trimesh.remesh.subdivide(tube.vertices, tube.faces)
    trimesh.Trimesh(v, f, process=False).export(tmp_path / "copy.stl")
    deviation, triangles = _surface_deviation(str(tmp_path / "copy.stl"), enrolled)
    assert triangles == 4 * len(tube.faces)
    assert deviation < 1e-3  # the same surface, finer: nothing moved


def test_a_moved_wall_reads_as_the_distance_it_moved(tmp_path):
    tube, enrolled = _part(tmp_path)
    diag = enrolled[1]
    v = np.asarray(tube.vertices).copy()
    v[v[:, 2] > 0, 2] += 0.05 * diag  # one end pulled out by 5% of the diagonal
    trimesh.Trimesh(v, tube.faces, process=False).export(tmp_path / "copy.stl")
    deviation, _ = _surface_deviation(str(tmp_path / "copy.stl"), enrolled)
    assert 0.03 < deviation < 0.06


def test_unreadable_upload_gives_nan(tmp_path):
    _, enrolled = _part(tmp_path)
    (tmp_path / "bad.stl").write_bytes(b"not a mesh")
    deviation, triangles = _surface_deviation(str(tmp_path / "bad.stl"), enrolled)
    assert math.isnan(deviation) and triangles == 0


def test_the_shape_keeping_decimator_reaches_its_budget_and_keeps_the_shape(tmp_path):
    tube, enrolled = _part(tmp_path)
    dense = densify(tube, 4000)
    kept = decimate_to_budget(dense, 0.25)
    assert len(kept.faces) <= 0.25 * len(dense.faces) * 1.01
    kept.export(tmp_path / "copy.stl")
    deviation, _ = _surface_deviation(str(tmp_path / "copy.stl"), enrolled)
    assert deviation < FAITHFUL


def test_re_tessellation_rows_are_measured_and_moved_copies_are_not():
    same = {e.key for e in EVASIONS if e.same_frame}
    assert "decimation, densified [to 50%]" in same and "midpoint subdivision [1 level]" in same
    moved = ("rotation", "uniform scale", "split", "decimation, coarse, other units")
    assert not any(k.startswith(moved) for k in same)


def test_the_table_splits_recall_at_the_faithful_line(capsys):
    row = Row(Evasion("decimation, densified", "to 50%", 90, make=lambda tm, rng: None, same_frame=True))
    for deviation, caught in ((0.004, True), (0.006, True), (0.03, False), (0.05, True)):
        row.outcomes.append(Outcome(caught, caught, 0, 0, 0.01, deviation=deviation, triangles=100))
    print_deviation([row])
    out = capsys.readouterr().out
    assert "| decimation, densified | to 50% | 100 | 1.80% / 5.00% | 2 of 4 | 100% | 50% of 2 |" in out
