"""Which bodies the classifier scores alone (scanner.classify.bodies), and that a body's row is
the row it would get uploaded alone: what keeps decoys from lowering its score."""

from __future__ import annotations

import numpy as np
import trimesh

from fixtures.generate import PROXIES
from scanner.classify.bodies import MIN_AREA_RATIO, MIN_SCORED_TRIANGLES, share_words
from scanner.classify.features import feature_row
from scanner.mesh import Mesh
from scanner.shape import Shape


def mesh_of(*parts: trimesh.Trimesh) -> Mesh:
    return Mesh(vertices=np.concatenate([np.asarray(p.triangles, dtype=np.float32) for p in parts]).reshape(-1, 3))


def apart(m: trimesh.Trimesh, x: float) -> trimesh.Trimesh:
    m = m.copy()
    m.apply_translation([x - m.bounds[0][0], 0.0, 0.0])
    return m


def test_a_body_scores_with_the_row_it_has_alone() -> None:
    part = PROXIES["barrel"](np.random.default_rng(5))
    box = trimesh.creation.box(extents=part.extents * 1.5)
    upload = mesh_of(part, apart(box, 100.0), apart(box, 200.0))
    rows = Shape.of(upload, 1000).body_rows
    assert [r.body for r in rows] == [1, 2, 0]  # largest first; the part is smaller than each decoy
    mine = next(r for r in rows if r.body == 0)
    alone = Shape.of(mesh_of(part), 1000)
    assert np.array_equal(mine.row, feature_row(alone.surface, alone.whole))
    assert mine.triangles == len(part.faces)
    assert abs(mine.share - part.area / (part.area + 2 * box.area)) < 1e-3
    assert abs(mine.relative - part.area / box.area) < 1e-3


def test_small_and_simple_bodies_are_not_scored_alone() -> None:
    big = trimesh.creation.cylinder(radius=10.0, height=40.0, sections=24)
    small = trimesh.creation.cylinder(radius=1.0, height=2.0, sections=24)  # a pin, far under 5% of the area
    tetra = trimesh.Trimesh(vertices=[[0, 0, 0], [30, 0, 0], [0, 30, 0], [0, 0, 30]], faces=[[0, 2, 1], [0, 1, 3],
                            [0, 3, 2], [1, 2, 3]])  # fmt: skip
    upload = mesh_of(big, apart(small, 100.0), apart(tetra, 200.0))
    shape = Shape.of(upload, 1000)
    assert shape.bodies == 3
    rows = shape.body_rows
    assert [r.body for r in rows] == [0]  # only the cylinder: the pin is too small, the tetrahedron too simple
    assert small.area < MIN_AREA_RATIO * big.area and len(tetra.faces) < MIN_SCORED_TRIANGLES
    assert tetra.area > MIN_AREA_RATIO * big.area  # excluded for its triangles, not its size


def test_one_body_files_are_not_described_for_it() -> None:
    shape = Shape.of(mesh_of(trimesh.creation.box(extents=(1, 2, 3))), 1000)
    assert shape.body_rows == []
    assert "descriptor" not in shape.__dict__  # no per-body work for a single body


def test_share_words() -> None:
    assert share_words(0.12) == "12%" and share_words(0.008) == "0.8%" and share_words(0.0004) == "<0.1%"
