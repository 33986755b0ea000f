"""Start-up cost of the ``meshscan`` command (issue 18, item 5), with peers from the same run.

    python bench/startup.py                 # median of 5 runs per case
    python bench/startup.py --repeat 9
    python bench/startup.py --repo DIR      # time another checkout's scanner (e.g. a base commit)

Cases (rows), each a fresh process timed wall-clock from the parent (``time.perf_counter``
around ``subprocess.run``), so interpreter start, imports, library and model load and exit
all count:

    python -c pass           the interpreter alone (the floor)
    import numpy             ``python -c "import numpy"``
    import trimesh           ``python -c "import trimesh"``
    import scan libraries    numpy and the scipy modules every scan needs (:data:`SCAN_LIBRARIES`)
    meshscan --version       ``python -m scanner.cli --version`` (target <= 0.3 s)
    meshscan --help          ``python -m scanner.cli --help``
    meshscan scan 1 file     ``python -m scanner.cli scan SMALL.stl`` with the shipped library
                             and model (target <= 1.5 s); SMALL.stl is a 12-triangle box
                             written into the work folder

Columns: median s, min s, × python (median / ``python -c pass``'s median) and, for the
scan, the modules it imported that a ``--version`` must not (checked separately by
tests/unit/test_startup.py).

Bytecode: an installed package runs from compiled ``.pyc`` files. When the environment sets
PYTHONDONTWRITEBYTECODE (this project's dev env does), every run would compile every module
from source (~0.5 s for a scan); the children therefore run with their bytecode cached in
``--workdir/pycache`` (PYTHONPYCACHEPREFIX, nothing written next to the sources), after one
untimed warm-up run per case. ``--no-pycache`` measures the source-compiling case instead.
The machine is shared: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_WORKDIR = REPO / "bench" / "out"
BOX = [  # a unit box, 12 triangles (abstract shape)
    ((0, 0, 0), (1, 1, 0), (1, 0, 0)), ((0, 0, 0), (0, 1, 0), (1, 1, 0)),
    ((0, 0, 1), (1, 0, 1), (1, 1, 1)), ((0, 0, 1), (1, 1, 1), (0, 1, 1)),
    ((0, 0, 0), (1, 0, 0), (1, 0, 1)), ((0, 0, 0), (1, 0, 1), (0, 0, 1)),
    ((0, 1, 0), (1, 1, 1), (1, 1, 0)), ((0, 1, 0), (0, 1, 1), (1, 1, 1)),
    ((0, 0, 0), (0, 0, 1), (0, 1, 1)), ((0, 0, 0), (0, 1, 1), (0, 1, 0)),
    ((1, 0, 0), (1, 1, 0), (1, 1, 1)), ((1, 0, 0), (1, 1, 1), (1, 0, 1)),
]  # fmt: skip


SCAN_LIBRARIES = "import numpy, scipy.sparse.csgraph, scipy.special, scipy.spatial"
"""What any scan imports (bodies, descriptor, shape features): the floor under a scan's time."""


def write_box(path: Path) -> None:
    lines = ["solid box"]
    for tri in BOX:
        corners = [f"vertex {x} {y} {z}" for x, y, z in tri]
        lines += ["facet normal 0 0 0", "outer loop", *corners, "endloop", "endfacet"]
    path.write_text("\n".join([*lines, "endsolid box", ""]), encoding="ascii")


def cases(small: Path) -> list[tuple[str, list[str], float | None]]:
    py = sys.executable
    return [
        ("python -c pass", [py, "-c", "pass"], None),
        ("import numpy", [py, "-c", "import numpy"], None),
        ("import trimesh", [py, "-c", "import trimesh"], None),
        ("import scan libraries", [py, "-c", SCAN_LIBRARIES], None),
        ("meshscan --version", [py, "-m", "scanner.cli", "--version"], 0.3),
        ("meshscan --help", [py, "-m", "scanner.cli", "--help"], None),
        ("meshscan scan 1 file", [py, "-m", "scanner.cli", "scan", "--format", "json", str(small)], 1.5),
    ]


def run_once(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, timeout=300)
    elapsed = time.perf_counter() - t0
    if proc.returncode not in (0, 1):  # 1: flagged / review, still a scan
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}: {tail[0][:200]}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per case (median reported)")
    ap.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="where the small file and pycache go")
    ap.add_argument("--repo", type=Path, default=REPO, help="the checkout whose scanner is timed")
    ap.add_argument("--no-pycache", action="store_true", help="run with the environment's bytecode settings")
    args = ap.parse_args(argv)

    args.workdir.mkdir(parents=True, exist_ok=True)
    small = args.workdir / "startup-box.stl"
    write_box(small)
    env = dict(os.environ, PYTHONPATH=str(args.repo.resolve()))
    if not args.no_pycache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str((args.workdir / "pycache").resolve())
    plan = cases(small)
    for _, cmd, _ in plan:  # warm-up: page cache, and bytecode when cached
        run_once(cmd, env, args.workdir)
    times: dict[str, list[float]] = {name: [] for name, _, _ in plan}
    for _ in range(args.repeat):  # interleaved: a burst of load elsewhere hits every case alike
        for name, cmd, _ in plan:
            times[name].append(run_once(cmd, env, args.workdir))
    floor = statistics.median(times["python -c pass"])
    print(f"meshscan start-up: median of {args.repeat} runs per case, each a fresh process "
          f"(python {sys.version.split()[0]}, {os.cpu_count()} CPUs, scanner from {args.repo}, "
          f"bytecode {'as the environment says' if args.no_pycache else 'cached'})")  # fmt: skip
    print()
    print("| case | median s | min s | × python | target |")
    print("|---|---:|---:|---:|---|")
    verdicts = []
    for name, _, target in plan:
        med, low = statistics.median(times[name]), min(times[name])
        goal = "-" if target is None else f"<= {target:g} s: {'PASS' if med <= target else 'MISS'}"
        print(f"| {name} | {med:.3f} | {low:.3f} | {med / floor:.1f}x | {goal} |")
        if target is not None:
            verdicts.append(med <= target)
    print()
    print("runs (s): " + "; ".join(f"{n}: " + "/".join(f"{t:.2f}" for t in ts) for n, ts in times.items()))
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
