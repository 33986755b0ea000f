"""Simple shapes in real files must not flag each other (issue 11, item 4), on the public corpus:
the real-parts false flags that the second stage removed (plain-solid rows unmatchable on
either side, and an upload row nearer a generic shape than the signature is no evidence),
each checked both ways - the enrolment rule alone would match (so the test can fail), the
scan clears."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scanner.enrol import enrol
from scanner.features import describe
from scanner.features.reference import row_thresholds
from scanner.library import SignatureLibrary
from scanner.loading import iter_meshes
from scanner.pipeline import ScanContext, scan_one
from scanner.verdict import CLEAR

PAIRS = [
    # (uploaded, enrolled): what the upload's matching bodies are
    ("trimesh/box.STL", "trimesh/kinematic.tar.gz"),  # thin plates ~ plane-cut pieces of a plate-like member
    ("trimesh/pyramids.3mf", "trimesh/cube_and_sphere_same_name.3mf"),  # small cubes ~ a cube body
    ("trimesh/20mm-xyz-cube.stl", "trimesh/off.zip"),  # an embossed calibration cube ~ plain boxes
]


@pytest.mark.parametrize(("uploaded", "enrolled"), PAIRS)
def test_simple_bodies_of_a_real_file_do_not_flag_another(corpus: Path, tmp_path: Path, uploaded: str,
                                                          enrolled: str) -> None:  # fmt: skip
    lib = SignatureLibrary.create(tmp_path / "lib", name="t")
    assert all(r.status == "added" for r in enrol(lib, corpus / enrolled, "other_component", "test"))
    (read,) = list(iter_meshes(corpus / uploaded))
    vectors, _ = describe(read.mesh).rows()
    # under the enrolment rule alone (0.5 x distance to the look-alikes; the pose floor only
    # lifts it) some row of the upload is within a signature row's threshold: these files did
    # match before the second stage, which is what makes this a test of it
    signature = np.asarray(lib.vectors, dtype=np.float64)
    before = row_thresholds(signature, 0.08)
    d = np.sqrt(((vectors[:, None, :].astype(np.float64) - signature[None, :, :]) ** 2).sum(axis=2))
    assert (d <= before[None, :]).any(), "the pair must match by the enrolment rule alone to test the second stage"
    (verdict,) = scan_one(corpus / uploaded, ScanContext(library=lib, model=None))
    assert verdict.verdict == CLEAR, verdict.explanation
