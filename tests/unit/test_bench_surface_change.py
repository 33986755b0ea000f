"""bench/evasion.py's information column: how much a copy changed the surface itself.

Why: "decimation, densified" copies lose 5-15% of their area and up to 37% of their volume
(the tool collapses features), which the recall table alone does not show; the bench prints
each such row's area and volume change beside the table, and the missed copies' own change.
"""

from __future__ import annotations

import math

import trimesh

from bench.evasion import Outcome, Row, _surface_change, print_surface_change
from fixtures.evasions import Evasion


def _write(tm: trimesh.Trimesh, path) -> str:  # noqa: ANN001 - a pathlib.Path
    tm.export(path)
    return str(path)


def test_a_moved_copy_changes_nothing_and_a_stretched_one_is_measured(tmp_path):
    cube = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    moved = cube.copy()
    moved.apply_translation((5.0, -3.0, 2.0))
    area, volume = _surface_change(_write(moved, tmp_path / "moved.stl"), (6.0, 1.0))
    assert abs(area) < 1e-6 and abs(volume) < 1e-6
    stretched = cube.copy()
    stretched.apply_scale((2.0, 1.0, 1.0))  # area 2 + 4 x 2 = 10, volume 2
    area, volume = _surface_change(_write(stretched, tmp_path / "stretched.stl"), (6.0, 1.0))
    assert math.isclose(area, 10.0 / 6.0 - 1.0, rel_tol=1e-5)
    assert math.isclose(volume, 1.0, rel_tol=1e-5)


def test_unreadable_upload_gives_nan(tmp_path):
    bad = tmp_path / "bad.stl"
    bad.write_bytes(b"not a mesh at all")
    area, volume = _surface_change(str(bad), (6.0, 1.0))
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
