"""Peak memory and time of the text loaders on inputs built to amplify memory (issue 12, item 8).

    python bench/loader_memory.py                 # all inputs, meshscan and trimesh, 1 run each
    python bench/loader_memory.py --repeat 3      # median of 3 runs per cell
    python bench/loader_memory.py --only-tools meshscan --only-files obj-polygon-2M
    python bench/loader_memory.py --small         # inputs a tenth the size (a smoke run)

Inputs (generated once, deterministically, into ``--workdir``; abstract geometry only):

    obj-polygon-2M     one ``f`` line with 2,000,000 corners over 100,000 vertices on a
                       circle (~15 MiB): a fan of ~2M triangles
    obj-groups-600k    600,000 ``g``/``o`` lines, each followed by one triangle
    stl-ascii-1M       a closed ~1M-triangle torus as ASCII STL (bench/load.py's shape)
    stl-solids-300k    300,000 ``solid`` blocks of one facet each
    ply-ascii-1M       the same torus as ASCII PLY
    off-1M             the same torus as OFF

Each load runs in a fresh Python process (``--child``) that imports its library, times the
load call, and reports its own peak RSS. Peak RSS is ``VmHWM`` from /proc/self/status:
``getrusage(...).ru_maxrss`` of a child carries the parent's high-water mark over fork/vfork +
exec on Linux (see bench/load.py), so it would report at least this script's peak.

Columns: ``s`` the load call's wall time (median); ``peak MiB`` the child's peak RSS;
``Δ MiB`` that minus an import-only child of the same tool (what the load itself cost);
``Δ/file`` Δ over the file size (the issue's target for meshscan: <= 10); ``× trimesh``
meshscan's time and Δ over trimesh's on the same file, measured in the same run (< 1:
meshscan is faster / smaller). ``result`` is the triangle count or the reason the file was
refused.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import child_result, lumpy_torus, peak_rss_mib, print_table, write_stl_ascii  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_WORKDIR = REPO / "bench" / "out" / "loader_memory"
GEN_VERSION = 1
MiB = 1 << 20
TOOLS = ("meshscan", "trimesh")
CHUNK = 50_000


# --------------------------------------------------------------------------- inputs
def write_obj_polygon(path: Path, corners: int) -> None:
    """One polygon of ``corners`` corners cycling over corners // 20 vertices on a circle."""
    nv = max(corners // 20, 3)
    angle = np.arange(nv) * (2 * np.pi / nv)
    with open(path, "w", encoding="ascii", newline="\n") as fh:
        fh.write("# one polygon, many corners\n")
        v = np.stack([np.cos(angle), np.sin(angle), np.zeros(nv)], axis=1) * 50.0
        fh.write(("v %.6f %.6f %.6f\n" * nv) % tuple(v.ravel().tolist()))
        fh.write("f")
        for s in range(0, corners, CHUNK):
            idx = np.arange(s, min(corners, s + CHUNK)) % nv + 1
            fh.write((" %d" * len(idx)) % tuple(idx.tolist()))
        fh.write("\n")


def write_obj_groups(path: Path, groups: int) -> None:
    """``groups`` one-triangle groups (``g`` and ``o`` alternately), all on three vertices."""
    with open(path, "w", encoding="ascii", newline="\n") as fh:
        fh.write("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
        for s in range(0, groups, CHUNK):
            n = min(groups, s + CHUNK) - s
            fh.write("".join(f"{'go'[i % 2]} part{i}\nf 1 2 3\n" for i in range(s, s + n)))


def write_stl_solids(path: Path, solids: int) -> None:
    """``solids`` ASCII STL solids of one facet each."""
    facet = (
        "solid s%d\n facet normal 0 0 1\n  outer loop\n   vertex %d 0 0\n   vertex %d 1 0\n"
        "   vertex %d 0 1\n  endloop\n endfacet\nendsolid s%d\n"
    )
    with open(path, "w", encoding="ascii", newline="\n") as fh:
        for s in range(0, solids, CHUNK):
            n = min(solids, s + CHUNK) - s
            fh.write("".join(facet % (i, i, i, i, i) for i in range(s, s + n)))


def _write_rows(fh, fmt: str, rows: np.ndarray) -> None:
    for s in range(0, len(rows), CHUNK):
        part = rows[s : s + CHUNK]
        fh.write((fmt * len(part)) % tuple(part.ravel().tolist()))


def write_ply_ascii(path: Path, verts: np.ndarray, faces: np.ndarray) -> None:
    with open(path, "w", encoding="ascii", newline="\n") as fh:
        fh.write(
            "ply\nformat ascii 1.0\ncomment meshscan bench: synthetic lumpy torus\n"
            f"element vertex {len(verts)}\nproperty float x\nproperty float y\nproperty float z\n"
            f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n"
        )
        _write_rows(fh, "%.9g %.9g %.9g\n", verts.astype(np.float64))
        _write_rows(fh, "3 %d %d %d\n", faces)


def write_off(path: Path, verts: np.ndarray, faces: np.ndarray) -> None:
    with open(path, "w", encoding="ascii", newline="\n") as fh:
        fh.write(f"OFF\n{len(verts)} {len(faces)} 0\n")
        _write_rows(fh, "%.9g %.9g %.9g\n", verts.astype(np.float64))
        _write_rows(fh, "3 %d %d %d\n", faces)


@dataclass
class Input:
    key: str
    path: Path
    size_mib: float = 0.0


def prepare_inputs(workdir: Path, scale: float) -> list[Input]:
    workdir.mkdir(parents=True, exist_ok=True)
    n = int(1_000_000 * scale)
    torus: list = []

    def shape():
        if not torus:
            torus.append(lumpy_torus(n))
        return torus[0]

    def suffix(k: int) -> str:
        return f"{k / 1e6:g}M" if k >= 1_000_000 else f"{k / 1e3:g}k"

    plan = [
        (f"obj-polygon-{suffix(2 * n)}", "obj", lambda p: write_obj_polygon(p, 2 * n)),
        (f"obj-groups-{suffix(6 * n // 10)}", "obj", lambda p: write_obj_groups(p, 6 * n // 10)),
        (f"stl-ascii-{suffix(n)}", "stl", lambda p: write_stl_ascii(p, *shape())),
        (f"stl-solids-{suffix(3 * n // 10)}", "stl", lambda p: write_stl_solids(p, 3 * n // 10)),
        (f"ply-ascii-{suffix(n)}", "ply", lambda p: write_ply_ascii(p, *shape())),
        (f"off-{suffix(n)}", "off", lambda p: write_off(p, *shape())),
    ]
    out = []
    for key, ext, write in plan:
        path = workdir / f"{key}-v{GEN_VERSION}.{ext}"
        if not path.exists():
            t0 = time.perf_counter()
            tmp = path.with_name(path.name + ".part")
            write(tmp)
            tmp.replace(path)
            log(f"wrote {path} ({path.stat().st_size / MiB:.1f} MiB) in {time.perf_counter() - t0:.1f}s")
        out.append(Input(key, path, path.stat().st_size / MiB))
    return out


# --------------------------------------------------------------------------- child
def child(tool: str, path: str | None) -> None:
    if tool == "meshscan":
        sys.path.insert(0, str(REPO))
        from scanner.errors import UnreadableInput
        from scanner.loading import load

        def run():
            try:
                return load(path).triangle_count
            except UnreadableInput as err:
                return err.reason
    else:
        import trimesh

        def run():
            try:
                m = trimesh.load(path)
            except Exception as exc:  # noqa: BLE001 - a peer's failure is a result here
                return f"{type(exc).__name__}"
            if hasattr(m, "geometry"):
                return sum(len(g.faces) for g in m.geometry.values())
            return len(m.faces)

    out: dict = {}
    if path is not None:
        t0 = time.perf_counter()
        out["result"] = run()
        out["seconds"] = time.perf_counter() - t0
    out["peak_mib"] = peak_rss_mib()
    print("BENCH-RESULT " + json.dumps(out), flush=True)


def run_child(tool: str, path: Path | None, timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", tool]
    if path is not None:
        cmd += ["--child-path", str(path)]
    return child_result(cmd, timeout)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Cell:
    inp: Input
    tool: str
    runs: list[dict] = field(default_factory=list)

    def median(self, key: str) -> float | None:
        values = [r[key] for r in self.runs if key in r and "error" not in r]
        return statistics.median(values) if values else None

    def result(self) -> str:
        for r in self.runs:
            if "error" in r:
                return r["error"]
        return str(self.runs[0].get("result", "-")) if self.runs else "-"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--small", action="store_true", help="inputs a tenth the size")
    ap.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    ap.add_argument("--only-files", type=lambda s: s.split(","), default=None)
    ap.add_argument("--only-tools", type=lambda s: s.split(","), default=None)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--child", choices=TOOLS, help=argparse.SUPPRESS)
    ap.add_argument("--child-path", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, args.child_path)
        return 0

    inputs = prepare_inputs(args.workdir, 0.1 if args.small else 1.0)
    if args.only_files:
        inputs = [i for i in inputs if i.key in args.only_files]
    tools = [t for t in TOOLS if not args.only_tools or t in args.only_tools]
    baseline = {}
    for tool in tools:
        peaks = [run_child(tool, None, args.timeout).get("peak_mib") for _ in range(3)]
        peaks = [p for p in peaks if p is not None]
        baseline[tool] = statistics.median(peaks) if peaks else 0.0
    log("import-only peak MiB: " + ", ".join(f"{t} {v:.0f}" for t, v in baseline.items()))
    cells = [Cell(inp, tool) for inp in inputs for tool in tools]
    for r in range(args.repeat):
        for cell in cells:
            res = run_child(cell.tool, cell.inp.path, args.timeout)
            cell.runs.append(res)
            shown = res.get("error") or f"{res['seconds']:.2f}s {res['peak_mib']:.0f} MiB -> {res['result']}"
            log(f"[{r + 1}/{args.repeat}] {cell.inp.key:<18} {cell.tool:<9} {shown}")

    by = {(c.inp.key, c.tool): c for c in cells}
    rows = []
    for c in cells:
        s, peak = c.median("seconds"), c.median("peak_mib")
        delta = None if peak is None else peak - baseline[c.tool]
        peer = by.get((c.inp.key, "trimesh")) if c.tool == "meshscan" else None
        ps = peer.median("seconds") if peer else None
        pd = peer.median("peak_mib") - baseline["trimesh"] if peer and peer.median("peak_mib") else None
        rows.append(
            [
                f"{c.inp.key} ({c.inp.size_mib:.1f} MiB)",
                c.tool,
                "-" if s is None else f"{s:.2f}",
                "-" if peak is None else f"{peak:.0f}",
                "-" if delta is None else f"{delta:.0f}",
                "-" if delta is None else f"{delta / c.inp.size_mib:.1f}",
                "-" if s is None or not ps else f"{s / ps:.2f}",
                "-" if delta is None or not pd or pd <= 0 else f"{max(delta, 0) / pd:.2f}",
                c.result(),
            ]
        )
    headers = ["file", "tool", "s", "peak MiB", "Δ MiB", "Δ/file", "s × trimesh", "Δ × trimesh", "result"]
    title = f"loader memory: median of {args.repeat} run(s), each in a fresh process (numpy {np.__version__})"
    print_table(title, headers, rows, right={2, 3, 4, 5, 6, 7})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
