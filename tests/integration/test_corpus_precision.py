"""Simple shapes in real files must not flag each other (issue 11, item 4), on the public corpus:
the real-parts false flags that the matcher's second stage removed, each checked both ways -
the first stage alone matches (so the test can fail), the scan clears."""

from __future__ import annotations

from pathlib import Path

import pytest

from scanner.enrol import enrol
from scanner.features import describe
from scanner.library import SignatureLibrary
from scanner.loading import iter_meshes
from scanner.matching import Matcher
from scanner.pipeline import ScanContext, scan_one
from scanner.verdict import CLEAR

PAIRS = [
    # (uploaded, enrolled): what the upload's matching bodies are
    ("trimesh/box.STL", "trimesh/kinematic.tar.gz"),  # thin plates ~ plane-cut pieces of a plate-like member
    ("trimesh/pyramids.3mf", "trimesh/cube_and_sphere_same_name.3mf"),  # small cubes ~ a cube body
]


@pytest.mark.parametrize(("uploaded", "enrolled"), PAIRS)
def test_simple_bodies_of_a_real_file_do_not_flag_another(corpus: Path, tmp_path: Path, uploaded: str,
                                                          enrolled: str) -> None:  # fmt: skip
    lib = SignatureLibrary.create(tmp_path / "lib", name="t")
    assert all(r.status == "added" for r in enrol(lib, corpus / enrolled, "other_component", "test"))
    matcher = Matcher.build(lib)
    (read,) = list(iter_meshes(corpus / uploaded))
    vectors, _ = describe(read.mesh).rows()
    first_stage = [h for h in matcher.descriptors.query(vectors, k=5, radius=0.08) if h.distance <= h.threshold]
    assert first_stage, "the first stage must match for this pair to test the second"
    (verdict,) = scan_one(corpus / uploaded, ScanContext(library=lib, model=None))
    assert verdict.verdict == CLEAR, verdict.explanation
