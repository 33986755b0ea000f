"""Solidity (enclosed volume over convex hull volume): what tells a convex stock shape - a pin, a
block, a disc - from a part (``scanner.matching.CONVEX_SOLIDITY``)."""

from __future__ import annotations

import numpy as np
import trimesh

from scanner.features.solidity import solidity
from scanner.matching import CONVEX_SOLIDITY
from scanner.mesh import Mesh
from scanner.shape import Shape


def _corners(tm: trimesh.Trimesh) -> np.ndarray:
    return np.asarray(tm.triangles, dtype=np.float32)


def test_convex_solids_are_convex_and_parts_are_not() -> None:
    pin = trimesh.creation.cylinder(radius=1.0, height=5.0, sections=12)
    box = trimesh.creation.box(extents=(3.0, 1.0, 0.2))
    tube = trimesh.creation.annulus(r_min=0.8, r_max=1.0, height=6.0)
    ell = trimesh.boolean.union([trimesh.creation.box(extents=(4, 1, 1)),
                                 trimesh.creation.box(extents=(1, 4, 1)).apply_translation((1.5, 1.5, 0))],
                                engine="manifold")  # fmt: skip
    for convex in (pin, box, trimesh.creation.icosphere(subdivisions=2)):
        assert solidity(_corners(convex)) >= CONVEX_SOLIDITY
    for part in (tube, ell):
        assert solidity(_corners(part)) < 0.9


def test_the_same_solidity_whatever_the_pose_and_units() -> None:
    tube = trimesh.creation.annulus(r_min=0.5, r_max=1.0, height=3.0)
    first = solidity(_corners(tube))
    moved = tube.copy()
    moved.apply_transform(trimesh.transformations.random_rotation_matrix(np.random.default_rng(1).random(3)))
    moved.apply_scale(37.0)
    assert abs(solidity(_corners(moved)) - first) < 1e-4
    assert abs(first - (1.0 - 0.25)) < 0.05  # a tube encloses 1 - (r/R)^2 of its hull


def test_no_solidity_for_flat_or_tiny_surfaces() -> None:
    flat = np.asarray([[[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[1, 0, 0], [1, 1, 0], [0, 1, 0]]] * 3, dtype=np.float32)
    assert solidity(flat) is None
    assert solidity(flat[:2]) is None


def test_an_open_surface_is_never_called_convex() -> None:
    """A box with one face missing encloses nothing well defined: far below 1, never convex."""
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    opened = _corners(box)[2:]
    value = solidity(opened)
    assert value is None or value < CONVEX_SOLIDITY


def test_a_shape_reads_the_solidity_of_the_row_asked_for() -> None:
    """Body rows read their own body; the whole-file row the whole surface; the loose-triangle
    and wall-free rows have none."""
    pin = trimesh.creation.cylinder(radius=1.0, height=5.0, sections=12)
    tube = trimesh.creation.annulus(r_min=0.8, r_max=1.0, height=6.0).apply_translation((10.0, 0, 0))
    both = np.concatenate([_corners(pin), _corners(tube)])
    shape = Shape(Mesh(both.reshape(-1, 3)).surface(), max_bodies=64)
    labels = shape.surface.body_labels()
    first = int(labels[0])  # the pin's triangles come first
    values = {b: shape.solidity(b) for b in (0, 1)}
    assert values[first] >= CONVEX_SOLIDITY and values[1 - first] < 0.9
    assert shape.solidity(-1) < 0.5  # two bodies ten units apart fill little of their hull
    assert shape.solidity(-2) is None and shape.solidity(-3) is None
