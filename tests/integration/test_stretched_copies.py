"""Stretched copies (issue 11, "stretch") through the real command: an enrolled demo proxy
scaled 1.2x along one oblique axis - in the mesh itself or by a 3MF build transform - still
flags, and where the plain descriptor no longer matches the verdict says it was found as a
stretched copy; stretched far past the tolerated factor, the same part is not flagged.

Scanned by ``python -m scanner.cli scan`` against the shipped demo library with the classifier
off, so only signature matching can flag. Recall over random axes and proxies is measured by
``bench/evasion.py`` ("non-uniform scale" rows), not asserted here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh

from fixtures.evasions import threemf_with_transform
from tests.integration.test_composition_evasions import DEMO, scan

PROXIES = [
    "proxy-barrel-s1-000.stl",
    "proxy-bolt_or_breech_block-s1-000.stl",
    "proxy-other_component-s1-000.stl",
    "proxy-slide_or_cylinder-s1-000.obj",
]


def stretch(axis: tuple[float, float, float], factor: float) -> np.ndarray:
    """4x4 transform: ``factor`` along the unit vector ``axis``, then a rotation."""
    a = np.asarray(axis, dtype=float)
    a /= np.linalg.norm(a)
    m = np.eye(4)
    m[:3, :3] = np.eye(3) + (factor - 1.0) * np.outer(a, a)
    return trimesh.transformations.rotation_matrix(0.6, [0.2, 1.0, -0.4]) @ m


def stretched_file(tmp_path: Path, name: str, factor: float) -> str:
    tm = trimesh.load(DEMO / name, force="mesh")
    tm.apply_transform(stretch((1.0, 0.5, 0.3), factor))
    path = tmp_path / f"{Path(name).stem}-x{factor:g}.stl"
    tm.export(path)
    return str(path)


def test_copies_stretched_along_an_oblique_axis_flag(tmp_path: Path) -> None:
    files = [stretched_file(tmp_path, name, 1.2) for name in PROXIES]
    code, records, err = scan(*files)
    assert [r["verdict"] for r in records] == ["flag"] * len(files), (err, [r["explanation"] for r in records])
    kinds = [r["matches"][0]["kind"] for r in records]
    assert "stretched" in kinds, kinds  # at least one is found only with the stretch undone
    for r in records:
        if r["matches"][0]["kind"] == "stretched":
            best = r["matches"][0]
            assert best["distance"] <= best["threshold"] and best["body"] is None
            assert "stretched copy of known file " + best["signature_id"] in r["explanation"]
    assert code == 1


def test_a_3mf_build_transform_that_stretches_flags(tmp_path: Path) -> None:
    tm = trimesh.load(DEMO / PROXIES[1], force="mesh")
    path = tmp_path / "copy.3mf"
    path.write_bytes(threemf_with_transform(tm, stretch((0.3, -0.2, 1.0), 1.2)))
    code, records, err = scan(str(path))
    assert records[0]["verdict"] == "flag", (err, records[0]["explanation"])
    assert code == 1


def test_stretched_far_past_the_tolerance_is_not_a_copy(tmp_path: Path) -> None:
    """Whitening alone cannot tell 3x from 1.2x; the plain bands of the rule can. (At 2.5x along
    this oblique axis the other_component proxy's inertia ratios need a stretch of log 0.274
    with the area-weighted inertia.1 and log 0.245 with the density-weighted inertia.2, both at
    the rule's bound of 0.25; at 3x, 0.30.)"""
    files = [stretched_file(tmp_path, name, 3.0) for name in PROXIES]
    code, records, err = scan(*files)
    assert not any(m["kind"] == "stretched" for r in records for m in r["matches"]), err
