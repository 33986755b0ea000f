"""No memory amplification (issue 12, item 8): loading a text mesh file peaks at no more
than 10x the file's size above an interpreter that has loaded a tiny file of the same format.

Each load runs in its own child process, which reports its peak RSS. The peak is the
child's ``VmHWM`` (/proc/self/status): ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` would be
simpler, but Linux carries the parent's high-water mark over fork/vfork + exec into it, so
under pytest every child would report at least pytest's own peak (see bench/load.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc for VmHWM")

REPO = Path(__file__).resolve().parents[2]
AMPLIFICATION = 10  # the target: peak above baseline <= 10x the file size

CHILD = r"""
import json, sys, time
from scanner.errors import UnreadableInput
from scanner.loading import load
from scanner.config import Limits
limits = Limits(**json.loads(sys.argv[2]))
t0 = time.perf_counter()
try:
    result = load(sys.argv[1], limits).triangle_count
except UnreadableInput as err:
    result = err.reason
seconds = time.perf_counter() - t0
peak = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"result": result, "peak": peak, "seconds": seconds}))
"""


def child_load(path: Path, **limits) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), json.dumps(limits)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """A flat n x n grid of quads split into 2 (n-1)^2 triangles (abstract geometry)."""
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    vertices = np.stack([i.ravel() * 0.5, j.ravel() * 0.25, np.sin(i.ravel()) * 0.1], axis=1)
    a = (i[:-1, :-1] * n + j[:-1, :-1]).ravel()
    faces = np.concatenate([np.stack([a, a + n, a + n + 1], 1), np.stack([a, a + n + 1, a + 1], 1)])
    return vertices, faces


def rows(fmt: str, values: np.ndarray) -> bytes:
    return ((fmt * len(values)) % tuple(values.ravel().tolist())).encode()


def obj_polygon(corners: int) -> bytes:
    nv = corners // 20
    angle = np.arange(nv) * (2 * np.pi / nv)
    v = rows("v %.6f %.6f 0\n", np.stack([np.cos(angle), np.sin(angle)], axis=1))
    return v + b"f " + rows("%d ", np.arange(corners) % nv + 1) + b"\n"


def obj_groups(groups: int) -> bytes:
    return b"v 0 0 0\nv 1 0 0\nv 0 1 0\n" + "".join(f"{'go'[i % 2]} part{i}\nf 1 2 3\n" for i in range(groups)).encode()


def ply_ascii_grid(n: int) -> bytes:
    v, f = grid(n)
    head = "ply\nformat ascii 1.0\nelement vertex {}\nproperty float x\nproperty float y\nproperty float z\n"
    head += "element face {}\nproperty list uchar int vertex_indices\nend_header\n"
    return head.format(len(v), len(f)).encode() + rows("%.6g %.6g %.6g\n", v) + rows("3 %d %d %d\n", f)


def off_grid(n: int) -> bytes:
    v, f = grid(n)
    return f"OFF\n{len(v)} {len(f)} 0\n".encode() + rows("%.6g %.6g %.6g\n", v) + rows("3 %d %d %d\n", f)


def stl_solids(solids: int) -> bytes:
    one = (
        "solid s{0}\n facet normal 0 0 1\n  outer loop\n   vertex {0} 0 0\n   vertex {0} 1 0\n"
        "   vertex {0} 0 1\n  endloop\n endfacet\nendsolid s{0}\n"
    )
    return "".join(one.format(i) for i in range(solids)).encode()


TINY = {
    "obj": b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n",
    "ply": ply_ascii_grid(3),
    "off": off_grid(3),
    "stl": stl_solids(2),
}

CASES = {
    # name: (extension, builder, expected triangle count)
    "obj-polygon-1M-corners": ("obj", lambda: obj_polygon(1_000_000), 999_998),
    "obj-300k-groups": ("obj", lambda: obj_groups(300_000), 300_000),
    "ply-ascii-grid": ("ply", lambda: ply_ascii_grid(400), 2 * 399 * 399),
    "off-grid": ("off", lambda: off_grid(400), 2 * 399 * 399),
    "stl-100k-solids": ("stl", lambda: stl_solids(100_000), 100_000),
}


@pytest.fixture(scope="module")
def baselines(tmp_path_factory) -> dict[str, int]:
    """Peak RSS of a child that loads a tiny file of each format (imports, allocator warm)."""
    folder = tmp_path_factory.mktemp("tiny")
    out = {}
    for ext, data in TINY.items():
        path = folder / f"tiny.{ext}"
        path.write_bytes(data)
        peaks = [child_load(path)["peak"] for _ in range(2)]
        out[ext] = min(peaks)
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_peak_memory_is_a_small_multiple_of_the_file(tmp_path, baselines, name):
    ext, build, triangles = CASES[name]
    path = tmp_path / f"{name}.{ext}"
    path.write_bytes(build())
    size = path.stat().st_size
    got = child_load(path)
    assert got["result"] == triangles
    used = got["peak"] - baselines[ext]
    assert used <= AMPLIFICATION * size, f"{name}: {used / 2**20:.1f} MiB for a {size / 2**20:.1f} MiB file"


def test_a_polygon_over_the_triangle_limit_is_refused_before_it_is_triangulated(tmp_path, baselines):
    path = tmp_path / "polygon.obj"
    path.write_bytes(obj_polygon(1_000_000))
    size = path.stat().st_size
    got = child_load(path, max_triangles=1000)
    assert got["result"] == "limit:triangles"
    # parsing the indices is all it costs: well under the triangles' own 12 bytes each
    assert got["peak"] - baselines["obj"] <= 5 * size
