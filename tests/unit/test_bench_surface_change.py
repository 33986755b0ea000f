"""bench/evasion.py's information column: how much a copy changed the surface itself.

Why: "decimation, densified" copies lose 5-15% of their area and up to 37% of their volume
(the tool collapses features), which the recall table alone does not show; the bench prints
each such row's area and volume change beside the table, and the missed copies' own change.
"""

from __future__ import annotations

import math

import numpy as np
import trimesh

import scanner
from bench.evasion import Outcome, Row, _area_volume, _surface_change, print_surface_change
from fixtures.evasions import Evasion


def _enrolled(tm: trimesh.Trimesh, tmp_path) -> tuple[float, float, float]:  # noqa: ANN001
    path = tmp_path / "enrolled.stl"
    tm.export(path)
    return _area_volume([scanner.load(path)])


def test_a_moved_and_rescaled_copy_changes_nothing(tmp_path):
    box = trimesh.creation.box(extents=(3.0, 1.0, 2.0))
    enrolled = _enrolled(box, tmp_path)
    assert math.isclose(enrolled[0], 22.0, rel_tol=1e-6) and math.isclose(enrolled[1], 6.0, rel_tol=1e-6)
    copy = box.copy()
    copy.apply_transform(trimesh.transformations.random_rotation_matrix(rand=np.array([0.2, 0.5, 0.7])))
    copy.apply_scale(37.0)  # the same part in other units
    copy.apply_translation((5.0, -3.0, 2.0))
    copy.export(tmp_path / "copy.stl")
    area, volume = _surface_change(str(tmp_path / "copy.stl"), enrolled)
    assert abs(area) < 1e-4 and abs(volume) < 1e-4


def test_a_damaged_copy_shows_its_lost_volume(tmp_path):
    box = trimesh.creation.box(extents=(2.0, 2.0, 2.0))
    enrolled = _enrolled(box, tmp_path)
    notch = trimesh.creation.box(
        extents=(2.0, 2.0, 4.0), transform=trimesh.transformations.translation_matrix((1, 1, 0))
    )
    damaged = trimesh.boolean.difference([box, notch], engine="manifold")  # a quarter of the volume gone
    damaged.export(tmp_path / "damaged.stl")
    area, volume = _surface_change(str(tmp_path / "damaged.stl"), enrolled)
    # the outline (and so the diameter) is kept: the changes are the quarter of the volume lost and
    # the area of 24 going to 22 (6 outer faces' worth removed, 4 inner ones added)
    assert math.isclose(volume, -0.25, abs_tol=1e-4)
    assert math.isclose(area, 22.0 / 24.0 - 1.0, abs_tol=1e-4)


def test_unreadable_upload_gives_nan(tmp_path):
    bad = tmp_path / "bad.stl"
    bad.write_bytes(b"not a mesh at all")
    area, volume = _surface_change(str(bad), (6.0, 1.0, 0.5))
    assert math.isnan(area) and math.isnan(volume)


def _row(changes: list[tuple[float, float, bool]]) -> Row:
    row = Row(Evasion("decimation, densified", "to 50%", 90, lambda tm, rng: None))
    for area, volume, caught in changes:
        row.outcomes.append(Outcome(caught, caught, 0, 0, 0.0, area_change=area, volume_change=volume))
    return row


def test_rows_that_change_the_surface_are_printed_with_their_missed_copies(capsys):
    damaged = _row([(-0.12, -0.37, False), (-0.04, -0.05, False), (0.0, 0.0, True)])
    retessellated = _row([(0.0, 0.0, True), (1e-6, -1e-6, True)])
    print_surface_change([damaged, retessellated])
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("| decimation")]
    assert len(lines) == 1  # the re-tessellated row changed nothing, so it is not listed
    assert "4.0% / 12.0%" in lines[0]  # median / largest |area change|
    assert "8.0% / 21.0% (2)" in lines[0]  # the two missed copies' median area / volume change
    assert damaged.to_dict()["surface_change"]["volume_change"] == (0.05, 0.37)


def test_nothing_is_printed_when_no_copy_changed(capsys):
    print_surface_change([_row([(0.0, 0.0, True)])])
    assert capsys.readouterr().out == ""
