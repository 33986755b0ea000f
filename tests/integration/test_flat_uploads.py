"""A surface in one plane encloses nothing a printer could build: its descriptor rows are no
evidence (``scanner.policy.FLAT``). Among 10,000 proxy signatures a one-triangle test file of
the public corpus sat 0.008 from a thin frame proxy's whole-file row and flagged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import trimesh

from scanner.policy import flat

PLATE = "v 0 0 0\nv 3 0.2 0\nv 1 2 0\nv 2.5 2.4 0\nf 1 2 3\nf 2 4 3\n"
TURNED = "v 0 0 5\nv 0.2 3 5\nv 2 1 5\nv 2.4 2.5 5\nf 1 2 3\nf 2 4 3\n"  # the same plate, turned and moved


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scanner.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def test_a_flat_upload_near_a_signature_is_clear_and_says_why(tmp_path: Path) -> None:
    (tmp_path / "plate.obj").write_text(PLATE)
    (tmp_path / "turned.obj").write_text(TURNED)
    assert _cli("signatures", "init", "--library", "lib", cwd=tmp_path).returncode == 0
    added = _cli("signatures", "add", "plate.obj", "--library", "lib", "--category", "frame_or_receiver",
                 "--source", "test", cwd=tmp_path)  # fmt: skip
    assert added.returncode == 0, added.stderr
    scan = _cli("scan", "turned.obj", "--library", "lib", "--no-model", "--format", "json", cwd=tmp_path)
    (result,) = json.loads(scan.stdout)
    assert scan.returncode == 0 and result["verdict"] == "clear"
    assert (
        "lies in one plane" in result["explanation"]
        and "1 signature(s) within their threshold" in result["explanation"]
    )
    # the same bytes still match exactly: flatness only discounts descriptor evidence
    exact = _cli("scan", "plate.obj", "--library", "lib", "--no-model", "--format", "json", cwd=tmp_path)
    assert json.loads(exact.stdout)[0]["verdict"] == "flag"


def test_flat_is_one_plane_not_thin() -> None:
    plate = trimesh.creation.box(extents=(100.0, 60.0, 0.1))  # a 1:1000 plate is thin, not flat
    assert not flat(np.asarray(plate.triangles, dtype=np.float32))
    square = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 1, 0], [0, 1, 0]], dtype=np.float32)
    tilted = square @ trimesh.transformations.random_rotation_matrix(np.random.default_rng(1).random(3))[:3, :3].T
    assert flat(tilted.astype(np.float32))
    assert flat(np.zeros((3, 3), dtype=np.float32))  # one triangle
