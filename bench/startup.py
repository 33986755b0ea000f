"""Start-up cost of the ``meshscan`` command (issue 18, item 5), with peers from the same run.

    python bench/startup.py                 # median of 5 runs per case
    python bench/startup.py --repeat 9
    python bench/startup.py --repo DIR      # time another checkout's scanner (e.g. a base commit)
    python bench/startup.py --base DIR      # and add DIR's --version and scan rows, interleaved

Cases (rows), each a fresh process timed wall-clock from the parent (``time.perf_counter``
around ``subprocess.run``), so interpreter start, imports, library and model load and exit
all count:

    python -c pass           the interpreter alone (the floor)
    import numpy             ``python -c "import numpy"``
    import trimesh           ``python -c "import trimesh"``
    import scan libraries    numpy and the scipy modules every scan needs (:data:`SCAN_LIBRARIES`),
                             with one OpenBLAS thread, as a scan's parent loads them
    meshscan --version       ``python -m scanner.cli --version`` (target <= 0.3 s)
    meshscan --help          ``python -m scanner.cli --help``
    meshscan scan 1 file     ``python -m scanner.cli scan SMALL.stl`` with the shipped library
                             and model (target <= 1.5 s); SMALL.stl is a 12-triangle box
                             written into the work folder

Columns: median s (wall), min s, × python (median / ``python -c pass``'s median), cpu s
(median user + system time of the process and every child it waited for - the scan's forked
workers included - from ``getrusage(RUSAGE_CHILDREN)``; on a loaded machine wall time waits
for a core, CPU time does not) and the target. ``--base DIR`` adds rows for another checkout
(``[base]``), timed in the same interleaved rounds, so a before/after comparison shares the
machine's load. What a scan or ``--version`` must not import is checked by
tests/unit/test_startup.py, not here.

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
import resource
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


Case = tuple[str, list[str], float | None, dict[str, str]]


def cases(small: Path, env: dict[str, str], base_env: dict[str, str] | None) -> list[Case]:
    py = sys.executable
    scan = [py, "-m", "scanner.cli", "scan", "--format", "json", str(small)]
    version = [py, "-m", "scanner.cli", "--version"]
    plan: list[Case] = [
        ("python -c pass", [py, "-c", "pass"], None, env),
        ("import numpy", [py, "-c", "import numpy"], None, env),
        ("import trimesh", [py, "-c", "import trimesh"], None, env),
        ("import scan libraries", [py, "-c", SCAN_LIBRARIES], None, dict(env, OPENBLAS_NUM_THREADS="1")),
        ("meshscan --version", version, 0.3, env),
        ("meshscan --help", [py, "-m", "scanner.cli", "--help"], None, env),
        ("meshscan scan 1 file", scan, 1.5, env),
    ]
    if base_env is not None:
        plan += [
            ("meshscan --version [base]", version, None, base_env),
            ("meshscan scan 1 file [base]", scan, None, base_env),
        ]
    return plan


def run_once(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(wall s, CPU s) of one fresh process, its waited-for children included."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, timeout=300)
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode not in (0, 1):  # 1: flagged / review, still a scan
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}: {tail[0][:200]}")
    return elapsed, cpu


def environment(repo: Path, workdir: Path, no_pycache: bool) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(repo.resolve()))
    if not no_pycache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str((workdir / "pycache").resolve())
    return env


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per case (median reported)")
    ap.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="where the small file and pycache go")
    ap.add_argument("--repo", type=Path, default=REPO, help="the checkout whose scanner is timed")
    ap.add_argument("--base", type=Path, help="another checkout to time alongside ([base] rows)")
    ap.add_argument("--no-pycache", action="store_true", help="run with the environment's bytecode settings")
    args = ap.parse_args(argv)

    args.workdir.mkdir(parents=True, exist_ok=True)
    small = args.workdir / "startup-box.stl"
    write_box(small)
    env = environment(args.repo, args.workdir, args.no_pycache)
    base_env = environment(args.base, args.workdir, args.no_pycache) if args.base else None
    plan = cases(small, env, base_env)
    for _, cmd, _, case_env in plan:  # warm-up: page cache, and bytecode when cached
        run_once(cmd, case_env, args.workdir)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name, *_ in plan}
    for _ in range(args.repeat):  # interleaved: a burst of load elsewhere hits every case alike
        for name, cmd, _, case_env in plan:
            times[name].append(run_once(cmd, case_env, args.workdir))
    floor = statistics.median(wall for wall, _ in times["python -c pass"])
    load = os.getloadavg()[0]
    print(f"meshscan start-up: median of {args.repeat} runs per case, each a fresh process "
          f"(python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load:.1f} at the end, "
          f"scanner from {args.repo}{f', base {args.base}' if args.base else ''}, "
          f"bytecode {'as the environment says' if args.no_pycache else 'cached'})")  # fmt: skip
    print()
    print("| case | median s | min s | × python | cpu s | target |")
    print("|---|---:|---:|---:|---:|---|")
    verdicts = []
    for name, _, target, _ in plan:
        walls = [wall for wall, _ in times[name]]
        med, low, cpu = statistics.median(walls), min(walls), statistics.median(c for _, c in times[name])
        goal = "-" if target is None else f"<= {target:g} s: {'PASS' if med <= target else 'MISS'}"
        print(f"| {name} | {med:.3f} | {low:.3f} | {med / floor:.1f}x | {cpu:.3f} | {goal} |")
        if target is not None:
            verdicts.append(med <= target)
    print()
    runs = "; ".join(f"{n}: " + "/".join(f"{wall:.2f}" for wall, _ in ts) for n, ts in times.items())
    print("runs (wall s): " + runs)
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
