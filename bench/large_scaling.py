"""What limits ``--jobs 2`` on large files (issue 18, item 3): meshscan next to peers that show
what this machine allows two processes, from one run.

    python bench/large_scaling.py [--large 6] [--large-triangles 500000] [--rounds 2]

For the bench's large set (``bench/throughput.py``'s, generated once into
``bench/out/throughput2``), each tool runs with one process and with two at once, and the row
gives the scaling (wall of one / wall of two), beside CPU seconds (user, system), peak RSS and
minor page faults of its processes, and the machine's load average before it started:

- ``meshscan scan --jobs 1`` / ``--jobs 2``: the real command (process start, library, forked
  workers);
- ``meshscan describe in-process``: the same per-file work (load, surface, bodies,
  descriptor rows, patch codes, classifier row) in one plain Python process over all files,
  or two processes each taking every other file - meshscan's compute without its engine;
- ``trimesh.load + numpy pass``: a peer that reads each file with trimesh and makes a few
  memory-bound passes over it (float64 corners, cross-product areas, a sort of a 64-bit key per
  corner) - what two processes of plain numpy work get from this machine's cores and memory;
- ``CPU only`` and ``memory only``: synthetic work of the same shape (per file) that needs
  only a core (an array in cache) or only memory bandwidth (passes over 200 MB arrays): which
  of the two the machine is short of when the others do not scale;
- ``own sessions: ...``: the same with each process in a session of its own. Under the
  kernel's autogroup scheduling the CPU is shared between sessions first, so on a machine
  that another session keeps busy, two processes of one session (a ``--jobs 2`` scan) get one
  session's share; here each gets its own.

On a shared machine the other work moves between runs: compare the scalings within one round.
Every child runs with one BLAS/OpenMP thread (as meshscan's workers do).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.throughput import make_set  # noqa: E402 - after the path is set

ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

DESCRIBE = """
import sys
from scanner.loading import load
from scanner.shape import Shape
for f in sys.argv[1:]:
    shape = Shape.of(load(f), 1000)
    shape.descriptor, shape.patch_codes, shape.classifier_row, shape.body_rows
"""

NUMPY_PASS = """
import sys, numpy as np, trimesh
for f in sys.argv[1:]:
    m = trimesh.load(f, force="mesh", process=False)
    t = np.asarray(m.triangles, dtype=np.float64)
    area = 0.5 * np.linalg.norm(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]), axis=1)
    key = np.ascontiguousarray(t.reshape(-1, 3).astype(np.float32)).view(np.uint32).astype(np.uint64)
    np.sort((key[:, 0] << np.uint64(32)) ^ (key[:, 1] * np.uint64(0x9E3779B97F4A7C15)) ^ key[:, 2])
    float(area.sum())
"""

IN_CACHE = """
import sys, numpy as np
x = np.linspace(0.0, 1.0, 8192)
for f in sys.argv[1:]:
    for _ in range(6000):
        np.sin(x, out=x)
"""
"""CPU only: the same amount of work per file on an array that stays in the core's cache."""

STREAM = """
import sys, numpy as np
a, b = np.ones(25_000_000), np.ones(25_000_000)
for f in sys.argv[1:]:
    for _ in range(20):
        np.add(a, b, out=a)
"""
"""Memory only: passes over two 200 MB arrays (no cache holds them), per file."""


SESSIONS = "own sessions: "
"""Tools whose processes each start a session of their own. Why: with the kernel's autogroup
scheduling (``/proc/sys/kernel/sched_autogroup_enabled``), CPU time is shared fairly between
sessions first, so on a machine another session keeps busy, two processes of one session get
one session's share - no more than one process alone."""


def run_processes(commands: list[list[str]], new_session: bool = False) -> dict[str, float]:
    """Start every command at once; wall time until all ended and their summed rusage.
    ``new_session``: each in a session of its own (its own scheduler autogroup)."""
    env = dict(os.environ, **ONE_THREAD, PYTHONPATH=str(REPO))
    start = time.perf_counter()
    errors = [tempfile.TemporaryFile() for _ in commands]  # a file, not a pipe: no child blocks on it
    procs = [subprocess.Popen(c, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=e, start_new_session=new_session)
             for c, e in zip(commands, errors, strict=True)]  # fmt: skip
    out = {"user": 0.0, "sys": 0.0, "rss": 0.0, "minflt": 0.0}
    for p, err in zip(procs, errors, strict=True):
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode not in (0, 1):
            err.seek(0)
            raise SystemExit(f"{p.args} failed: {err.read().decode(errors='replace')[-2000:]}")
        out["user"] += usage.ru_utime
        out["sys"] += usage.ru_stime
        out["rss"] = max(out["rss"], usage.ru_maxrss / 1024.0)  # kB -> MB: the largest process
        out["minflt"] += usage.ru_minflt
    out["wall"] = time.perf_counter() - start
    return out


def tools(folder: Path, files: list[str]) -> dict[str, tuple[list[list[str]], list[list[str]]]]:
    """Each tool as (one process, two processes) command lists."""
    scan = [sys.executable, "-m", "scanner.cli", "scan", str(folder), "--format", "jsonl", "--out", "/dev/null"]
    py = [sys.executable, "-c"]
    return {
        "meshscan scan (--jobs 1 / --jobs 2)": ([[*scan, "--jobs", "1"]], [[*scan, "--jobs", "2"]]),
        "meshscan describe in-process": ([[*py, DESCRIBE, *files]], [[*py, DESCRIBE, *files[k::2]] for k in (0, 1)]),
        "trimesh.load + numpy pass": ([[*py, NUMPY_PASS, *files]], [[*py, NUMPY_PASS, *files[k::2]] for k in (0, 1)]),
        "CPU only (numpy in cache)": ([[*py, IN_CACHE, *files]], [[*py, IN_CACHE, *files[k::2]] for k in (0, 1)]),
        SESSIONS + "CPU only": ([[*py, IN_CACHE, *files]], [[*py, IN_CACHE, *files[k::2]] for k in (0, 1)]),
        SESSIONS + "meshscan describe": ([[*py, DESCRIBE, *files]], [[*py, DESCRIBE, *files[k::2]] for k in (0, 1)]),
        "memory only (200 MB array passes)": ([[*py, STREAM, *files]], [[*py, STREAM, *files[k::2]] for k in (0, 1)]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--large", type=int, default=6)
    ap.add_argument("--large-triangles", type=int, default=500_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=REPO / "bench" / "out" / "throughput2")
    args = ap.parse_args()
    folder = make_set(args.workdir / f"large-{args.large}", args.large, args.large_triangles, args.large_triangles, 2)
    files = [str(f) for f in sorted(folder.glob("*.stl"))]
    autogroup = Path("/proc/sys/kernel/sched_autogroup_enabled")
    autogroup_on = autogroup.exists() and autogroup.read_text().strip() == "1"
    print(f"{len(files)} files of {args.large_triangles:,} triangles, {os.cpu_count()} cores, "
          f"autogroup scheduling {'on' if autogroup_on else 'off'}; "
          "'x2' = wall of one process / wall of two (the scaling); CPU = user + system of all processes")  # fmt: skip
    print()
    print(f"| {'round':5s} | {'tool':36s} | {'procs':5s} | {'load 1m':7s} | {'wall s':>7s} | {'x2':>5s} "
          f"| {'user s':>7s} | {'sys s':>6s} | {'peak RSS MB':>11s} | {'minor faults':>12s} |")  # fmt: skip
    print("|" + "|".join("-" * w for w in (7, 38, 7, 9, 9, 7, 9, 8, 13, 14)) + "|")
    for round_ in range(1, args.rounds + 1):
        for name, (one, two) in tools(folder, files).items():
            rows = []
            for label, commands in (("1", one), ("2", two)):
                load = os.getloadavg()[0]
                rows.append((label, load, run_processes(commands, name.startswith(SESSIONS))))
            for label, load, r in rows:
                ratio = f"{rows[0][2]['wall'] / r['wall']:5.2f}" if label == "2" else f"{'':5s}"
                print(f"| {round_:5d} | {name:36s} | {label:5s} | {load:7.2f} | {r['wall']:7.2f} | {ratio} "
                      f"| {r['user']:7.2f} | {r['sys']:6.2f} | {r['rss']:11.0f} | {r['minflt']:12.0f} |",
                      flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
