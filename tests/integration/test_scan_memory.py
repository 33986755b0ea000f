"""No memory amplification in a whole scan (issue 12, item 8): the real `meshscan scan`
command, in a child process, peaks at a small multiple of the decoded triangle array above
the same command scanning a tiny file. Loading alone is covered by
tests/unit/test_loader_memory.py; this covers what comes after (hashes, hygiene, bodies,
descriptors), where a 2M-corner polygon used to cost 1 GB.

The peak is the whole process tree's: ``/usr/bin/time``-style accounting is not portable, so
the scan runs with ``--jobs 1`` under a tiny Python wrapper that reads the worker's VmHWM
through ``ru_maxrss`` of its own children (the wrapper itself stays small, so the carried-over
high-water mark it passes on is the interpreter's, not pytest's).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss in KiB is Linux's")

REPO = Path(__file__).resolve().parents[2]
WRAPPER = r"""
import json, resource, subprocess, sys
proc = subprocess.run([sys.executable, "-m", "scanner.cli", "scan", sys.argv[1], "--jobs", "1", "--no-model",
                       "--format", "jsonl"], capture_output=True, text=True)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps({"code": proc.returncode, "peak": peak, "out": proc.stdout, "err": proc.stderr}))
"""
AMPLIFICATION = 5
"""Peak above the tiny-file scan, in units of the decoded (F, 3, 3) float32 triangle array."""


def peak_of(path: Path) -> tuple[int, list[dict]]:
    proc = subprocess.run([sys.executable, "-c", WRAPPER, str(path)], capture_output=True, text=True, timeout=600,
                          cwd=REPO)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["code"] in (0, 1), report["err"]
    return report["peak"], [json.loads(line) for line in report["out"].splitlines()]


def test_scan_of_a_huge_polygon_stays_a_small_multiple_of_its_triangles(tmp_path: Path) -> None:
    corners, ring = 2_000_000, 200_000  # one polygon winding ten times round a ring of vertices
    angle = np.arange(ring) * (2 * np.pi / ring)
    text = "".join(f"v {np.cos(a):.6f} {np.sin(a):.6f} 0\n" for a in angle)
    text += "f " + " ".join(str(i % ring + 1) for i in range(corners)) + "\n"
    big = tmp_path / "polygon.obj"
    big.write_text(text)
    tiny = tmp_path / "tiny.obj"
    tiny.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 2 3\nf 1 2 4\nf 1 3 4\nf 2 3 4\n")
    base, _ = peak_of(tiny)
    peak, (record,) = peak_of(big)
    assert record["triangles"] == corners - 2 and record["verdict"] in ("clear", "unscannable")
    decoded = record["triangles"] * 9 * 4
    assert peak - base <= AMPLIFICATION * decoded, (peak - base) / decoded
