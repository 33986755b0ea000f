"""G-code reading speed: a ~100 MB arc-heavy G-code file and its binary G-code (issue 16).

    python bench/gcode.py                 # ~100 MB text G-code with arcs, and its .bgcode
    python bench/gcode.py --megabytes 20  # a smaller run
    python bench/gcode.py --workdir DIR   # where the generated inputs are cached (default bench/out/)

The input is a synthetic proxy (fixtures/demo) scaled up and sliced by the test slicer
(fixtures/slicer.py) with arcs (``G2``/``G3``), perimeters and infill at a fine layer height,
until the file holds about ``--megabytes``; the binary G-code is the same text written as
PrusaSlicer writes it by default (heatshrink 12/4, MeatPack, CRC32; fixtures/bgcode.py).

Rows: ``meshscan`` reads and rebuilds the printed solid (``scanner.load``); the peers are
the floors no G-code reader can beat in Python: ``raw read`` (the bytes), ``lines`` (iterating
the file's lines, doing nothing with them) and, for the binary file, ``decode`` (meshscan's
block decoding alone, without the rebuild). Wall and CPU seconds are both shown: the machine
is shared, and CPU time is the steadier one. The target is a 100 MB file in <= 30 s.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for scanner and fixtures when run from a checkout
DEFAULT_WORKDIR = ROOT / "bench" / "out"
TARGET_SECONDS_PER_100MB = 30.0


def make_inputs(workdir: Path, megabytes: float) -> tuple[Path, Path]:
    """The text and binary G-code files (generated once, cached by size)."""
    import trimesh

    from fixtures.bgcode import to_bgcode
    from fixtures.slicer import SliceOptions, slice_to_gcode

    workdir.mkdir(parents=True, exist_ok=True)
    text_path = workdir / f"arcs-{megabytes:g}MB.gcode"
    binary_path = text_path.with_suffix(".bgcode")
    if not text_path.exists():
        mesh = trimesh.load(ROOT / "fixtures" / "demo" / "proxy-barrel-s1-000.stl")
        scale, data = 1.0, b""
        while len(data) < megabytes * 1e6 * 0.95:
            scale *= max(1.05, (megabytes * 1e6 / max(len(data), 1)) ** 0.5) if data else 2.0
            part = mesh.copy()
            part.apply_scale(scale)
            data = slice_to_gcode(part.vertices, part.faces, SliceOptions(arcs=True, layer_height=0.1))
        text_path.write_bytes(data)
    if not binary_path.exists():
        binary_path.write_bytes(to_bgcode(text_path.read_bytes()))
    return text_path, binary_path


def timed(fn) -> tuple[float, float, object]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--megabytes", type=float, default=100.0)
    ap.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    args = ap.parse_args(argv)

    import scanner
    from scanner.formats.bgcode import read_gcode_text

    text_path, binary_path = make_inputs(args.workdir, args.megabytes)
    table = Table(title="G-code reading (one run each; ratios within this run)")
    for col in ("file", "MB", "tool", "wall s", "cpu s", "× raw read", "× lines", "triangles"):
        table.add_column(col, justify="left" if col in ("file", "tool") else "right")
    verdicts = []
    for path in (text_path, binary_path):
        size = path.stat().st_size / 1e6
        raw = timed(path.read_bytes)
        lines = timed(lambda p=path: sum(1 for _ in p.open("rb")))
        rows = [("raw read", raw, None), ("lines", lines, None)]
        if path.suffix == ".bgcode":
            rows.append(("decode", timed(lambda p=path: read_gcode_text(p.read_bytes(), 1 << 34)), None))
        load = timed(lambda p=path: scanner.load(str(p)))
        rows.append(("meshscan", load, len(load[2].faces)))
        for tool, (wall, cpu, _), tris in rows:
            table.add_row(path.name, f"{size:.1f}", tool, f"{wall:.2f}", f"{cpu:.2f}", f"{wall / raw[0]:.0f}",
                          f"{wall / lines[0]:.1f}", f"{tris:,}" if tris else "")  # fmt: skip
        per_100 = load[0] * 100 / size
        verdicts.append(f"{path.name}: {per_100:.1f} s per 100 MB (wall) — "
                        f"{'PASS' if per_100 <= TARGET_SECONDS_PER_100MB else 'MISS'} (target <= 30 s)")  # fmt: skip
    console = Console(width=140)
    console.print(table)
    for line in verdicts:
        console.print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
