"""Batch throughput: files/s and MB/s of the whole scan pipeline (issue 6, item 5).

    python bench/throughput.py [--small 2000] [--large 20] [--large-triangles 500000] [--skip-dask]
                               [--db-cost [--postgres URL]] [--describe-triangles 1310720]
                               [--engines-only] [--rounds N] [--dask-workers N] [--stages N [--stages-only]]

Prints one table from one run, for (a) many small files (1-5k triangles, binary STL) and
(b) a few large ones (>= 500k triangles): meshscan ``scan --jobs 1``, ``--jobs 2`` and
``--engine dask`` (LocalCluster, 2 workers), each as a real ``meshscan`` process scanning the
folder against the shipped library, next to a one-process baseline that loads each file with
``trimesh.load`` and computes meshscan's descriptor from it. Inputs are abstract shapes
(perturbed spheres), generated once into ``bench/out/throughput2``. Times include process
start-up, which matters for small runs: compare ratios within one run. Beside wall time, each
cell has the CPU seconds its processes used (user + system, children included): on a machine
shared with other work, files per CPU-second is the per-core figure the wall time hides.

The large set has one more row, ``--jobs 1`` with the two-thread describe helper off
(:mod:`scanner.parallel`), and a line with ``--jobs 2``'s speed relative to it: the command is
pinned to one core of this process's affinity (the helper runs only where a core is idle), so
the scaling of ``--jobs 2`` over a serial ``--jobs 1`` shows in the same run as the plain
``--jobs 1`` row (whose worker describes a large mesh on two threads where a core is idle).
(Its parent shares that core; for a few large files it waits almost all the time.)

``--db-cost`` adds ``scan --jobs 1 --db`` rows for both results backends, each into a fresh
database: a SQLite file, and a PostgreSQL database (``--postgres URL`` of a server whose user
may create databases; without it, a throwaway local server is started as the tests do, from
Debian's binaries). Compare them with the ``--jobs 1`` row, which records nothing.

``--engines-only`` leaves out the one-process peers (meshscan's engines alone: ``--jobs 1``,
``--jobs 2``, ``--engine dask``), and ``--rounds N`` runs every tool N times, interleaved (round
1 of each tool, then round 2, ...), printing every round's row: on a shared machine the load
moves between runs, so compare within a round; with more than one round each target is also
judged on the median of its rounds' figures (a line of its own after the rounds).
``--dask-workers N`` sets the Dask ``LocalCluster``'s worker count (default 2).

``--describe-triangles N`` adds a second table: one N-triangle mesh (the issue's 1.31M is an
icosphere of 8 subdivisions, 1,310,720 triangles) read and described in this process, stage
by stage (wall and CPU seconds of each), beside the read floor and trimesh's convex hull,
after one small mesh went through the same steps (imports and caches) and with one BLAS
thread and the allocator settings of a scan worker. The stages and the whole describe run on
one thread (a ``--jobs 2`` worker's); one more row describes a fresh copy on two threads
(``Shape.prefetch``: a ``--jobs 1`` worker's, ``serve``'s with one worker, the API's).

``--stages N`` adds where a small file's CPU goes: N files of the small set scanned in this
process stage by stage (read, surface, geometry hash, bodies, descriptor rows, each matching
step, patch codes, classifier features and model, verdict, JSON reply, jsonl record), each
stage forced in the order a clear file computes it, with one BLAS thread and the worker's
allocator settings; beside it ``scan_one`` on the same files and the whole ``scan --jobs 1``
command (start-up and the parent's side are the difference). ``--stages-only`` prints only
that table.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def blob_stl(path: Path, triangles: int, rng: np.random.Generator) -> None:
    import trimesh

    sub = max(1, int(round(np.log(max(triangles, 20) / 20) / np.log(4))))
    while 20 * 4**sub < triangles:  # at least the triangles asked for (the set's label says so), then cut
        sub += 1
    s = trimesh.creation.icosphere(subdivisions=sub)
    k = rng.uniform(1, 4, 3)
    v = s.vertices * (1 + 0.2 * np.sin(k[0] * s.vertices[:, :1]) * np.cos(k[1] * s.vertices[:, 1:2]))
    v = v * rng.uniform(0.5, 3.0, 3)
    faces = s.faces[: min(len(s.faces), triangles)] if triangles < len(s.faces) else s.faces
    tri = v[faces].astype(np.float32)
    rec = np.zeros(len(tri), dtype=[("n", "<f4", 3), ("v", "<f4", 9), ("a", "<u2")])
    rec["v"] = tri.reshape(-1, 9)
    path.write_bytes(b"\0" * 80 + np.uint32(len(tri)).tobytes() + rec.tobytes())


def make_set(folder: Path, count: int, lo: int, hi: int, seed: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if len(list(folder.glob("*.stl"))) == count:
        return folder
    rng = np.random.default_rng(seed)
    for i in range(count):
        blob_stl(folder / f"blob-{i:05d}.stl", int(rng.integers(lo, hi + 1)), rng)
    return folder


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def deployed_bytecode(workdir: Path) -> None:
    """Run every process of the bench with cached bytecode, as an installed meshscan runs.

    Why: this project's development environment sets PYTHONDONTWRITEBYTECODE, so a ``meshscan``
    started from a source tree whose ``__pycache__`` is stale compiles every module it imports
    at each start (measured: 99 modules, 0.18 s of CPU per process - about 1.3% of a 2,000-file
    ``--jobs 1`` run, and again in each Dask worker), where the peers' packages come with their
    bytecode from pip. As ``bench/startup.py``: bytecode goes to ``WORKDIR/pycache``
    (PYTHONPYCACHEPREFIX, nothing written next to the sources), written by an untimed warm-up
    run of each engine."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str((workdir / "pycache").resolve())


def run_meshscan(folder: Path, *extra: str, one_core: bool = False) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one ``meshscan scan`` of the folder. ``one_core``: the
    command (and so its workers, which inherit it) may run on one core of this process's
    affinity only, which is what :func:`scanner.parallel.spare_cores` reads: a ``--jobs 1``
    worker then leaves no core idle and describes a large mesh on one thread (serial)."""
    cmd = [sys.executable, "-m", "scanner.cli", "scan", str(folder), "--format", "jsonl", "--out", "/dev/null", *extra]
    preexec = None
    if one_core:
        core = min(os.sched_getaffinity(0))
        preexec = lambda: os.sched_setaffinity(0, {core})  # noqa: E731 - a bench helper
    t, cpu = time.perf_counter(), _children_cpu()
    proc = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=preexec)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{cmd} failed: {proc.stderr[-2000:]}")
    return time.perf_counter() - t, _children_cpu() - cpu


PEERS = {
    "raw read (numpy.fromfile)": "    np.fromfile(f, dtype=np.uint8)\n",
    "trimesh.load": "    trimesh.load(f, force='mesh')\n",
    "trimesh.load + area, volume, hull, 2k samples": (
        "    m = trimesh.load(f, force='mesh')\n"
        "    m.area, m.volume, m.convex_hull, trimesh.sample.sample_surface(m, 2000, seed=0)\n"
    ),
    "trimesh.load + meshscan descriptor": (
        "    m = trimesh.load(f, force='mesh')\n    describe_triangles(np.asarray(m.triangles, dtype=np.float32))\n"
    ),
}
SERIAL = "meshscan --jobs 1, serial (one core)"
"""The large set's ``--jobs 1`` with the describe helper off: the command pinned to one core
(``run_meshscan(one_core=True)``), so its worker sees no idle core (:mod:`scanner.parallel`)."""
BASELINE = "trimesh.load + area, volume, hull, 2k samples"
"""The issue's reference peer: what a trimesh-based scanner does per file at the least."""


def run_peer(folder: Path, body: str) -> tuple[float, float]:
    """One process looping over the folder: what a one-process trimesh scanner would do."""
    code = (
        "import sys, glob, time, numpy as np, trimesh\n"
        "from scanner.features import describe_triangles\n"
        "for f in sorted(glob.glob(sys.argv[1] + '/*.stl')):\n" + body
    )
    t, cpu = time.perf_counter(), _children_cpu()
    subprocess.run([sys.executable, "-c", code, str(folder)], check=True, capture_output=True, cwd=REPO)
    return time.perf_counter() - t, _children_cpu() - cpu


def _timed(fn):  # noqa: ANN001, ANN202 - a bench helper
    t, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return value, time.perf_counter() - t, time.process_time() - cpu


LARGE_SCALING = 1.7
"""Issue 18 item 3: ``--jobs 2`` over a serial ``--jobs 1`` on the large set (wall time)."""
DESCRIBE_SECONDS = 1.0
"""Issue 18 item 3: describing a 1M-triangle mesh (wall time, this process)."""
SMALL_PER_CORE = 150.0
"""Issue 18 item 1: ``scan --jobs 1`` on the small set, files per CPU-second (per core)."""
DASK_SHARE = 0.9
"""Issue 18 item 2: the Dask engine's speed over ``--jobs 2``'s in the same round (within 10%)."""


def describe_table(path: Path) -> None:
    """Describe one large mesh in this process: each stage of meshscan's compute, beside the
    floor (reading the bytes) and a peer (trimesh's convex hull of the same mesh)."""
    import trimesh
    from threadpoolctl import threadpool_limits

    from scanner import parallel
    from scanner.classify.shape import shape_features
    from scanner.engines.worker import keep_freed_memory
    from scanner.features import describe
    from scanner.features.patches import mesh_patch_codes
    from scanner.loading import load
    from scanner.shape import Shape

    parallel.configure(False)  # every stage and the first describe serially, as a --jobs 2 worker
    threadpool_limits(limits=1)  # one BLAS thread, as in a scan worker (scanner/engines/worker.py)
    keep_freed_memory()  # and its allocator settings (a forked scan worker's)
    warm = path.with_name("describe-warm-up.stl")  # imports and caches once, as a scan worker has them
    blob_stl(warm, 2000, np.random.default_rng(4))
    shape = Shape.of(load(warm), 1000)
    shape.descriptor, shape.patch_codes, shape.classifier_row, trimesh.load(str(warm), force="mesh").convex_hull
    rows = []
    _, s, c = _timed(lambda: np.fromfile(path, dtype=np.uint8))
    rows.append(("read floor (numpy.fromfile)", s, c))
    mesh, s, c = _timed(lambda: load(path))
    rows.append(("meshscan load", s, c))
    surface, s, c = _timed(lambda: mesh.surface())
    rows.append(("  surface (degenerate, repeated triangles)", s, c))
    _, s, c = _timed(lambda: surface.geometry_hash)
    rows.append(("  geometry hash", s, c))
    _, s, c = _timed(lambda: surface.welded_faces)
    rows.append(("  weld (corners to shared vertices)", s, c))
    _, s, c = _timed(lambda: surface.sorted_edges)
    rows.append(("  sorted edges (patch codes, edge statistics)", s, c))
    _, s, c = _timed(lambda: surface.body_count)
    rows.append(("  bodies (connected components)", s, c))
    _, s, c = _timed(lambda: describe(surface))
    rows.append(("  descriptor rows (whole, bodies, wall test)", s, c))
    _, s, c = _timed(lambda: mesh_patch_codes(surface))
    rows.append(("  local patch codes", s, c))
    _, s, c = _timed(lambda: shape_features(surface))
    rows.append(("  classifier shape features", s, c))
    fresh = load(path)
    every = lambda sh: (sh.descriptor, sh.patch_codes, sh.classifier_row, sh.body_rows)  # noqa: E731 - what a scan reads
    _, s, c = _timed(lambda: every(Shape.of(fresh, 1000)))
    rows.append(("meshscan describe (all of the above after load)", s, c))
    parallel.configure(True)  # a lone worker beside an idle core (--jobs 1, one-worker serve, the API)
    fresh = load(path)
    two = lambda sh: (sh.prefetch(), every(sh))  # noqa: E731 - what a --jobs 1 scan of a clear file reads
    _, s, c = _timed(lambda: two(Shape.of(fresh, 1000)))
    rows.append(("meshscan describe, two threads (--jobs 1, serve, API)", s, c))
    parallel.configure(False)
    tm = trimesh.load(str(path), force="mesh")
    _, s, c = _timed(lambda: tm.convex_hull)
    rows.append(("trimesh convex hull alone", s, c))
    print()
    print(f"describe one {mesh.triangle_count:,}-triangle mesh ({path.name}), in one process:")
    print()
    floor = rows[0][2]
    print(f"| {'stage':50s} | {'seconds':>8s} | {'CPU s':>7s} | {'x read floor (CPU)':>18s} |")
    print("|" + "|".join("-" * w for w in (52, 10, 9, 20)) + "|")
    for name, secs, cpu in rows:
        print(f"| {name:50s} | {secs:8.3f} | {cpu:7.3f} | {cpu / max(floor, 1e-9):17.0f}x |", flush=True)
    two_threads, serial = rows[-2][1], rows[-3][1]
    if mesh.triangle_count <= 1_000_000:
        met = "met" if min(two_threads, serial) <= DESCRIBE_SECONDS else "not met"
        print(f"\ndescribe target (<= {DESCRIBE_SECONDS:g} s for up to 1M triangles): {met} "
              f"(two threads {two_threads:.3f} s, serial {serial:.3f} s)")  # fmt: skip


STAGES = ("read (open, parse, sha256)", "surface (degenerate, repeated triangles)", "geometry hash",
          "bodies (weld + connected components)", "descriptor rows (whole, bodies, walls)",
          "match: exact, allowlist, descriptor index", "match: stretched (affine row when asked)",
          "patch codes", "match: local patches", "classifier shape features", "classifier model",
          "decision + verdict", "JSON reply (encode + decode)", "record (jsonl line)")  # fmt: skip


def _stage_times(path: str, context) -> list[float]:  # noqa: ANN001 - a bench helper
    """CPU seconds of each of :data:`STAGES` for one file, in the order a clear file's scan
    computes them (every stage forced: a file that flags would stop earlier)."""
    import io

    from scanner.engines.messages import decode_reply, encode_reply
    from scanner.loading import open_upload
    from scanner.pipeline import Identity, _Judged, _verdict
    from scanner.policy import Case, decide
    from scanner.shape import Shape
    from scanner.sinks.output import JsonlWriter
    from scanner.util import utc_now

    clock, out = time.process_time, []

    def lap(fn):  # noqa: ANN001, ANN202
        t = clock()
        value = fn()
        out.append(clock() - t)
        return value

    upload = lap(lambda: (lambda u: (u, u.sha256, next(iter(u.members()))))(open_upload(path, context.settings.limits)))
    upload, sha, result = upload
    mesh = result.mesh
    surface = lap(mesh.surface)
    gh = lap(lambda: mesh.geometry_hash)
    lap(lambda: surface.body_count)
    shape = Shape(surface, context.settings.limits.max_bodies)
    lap(lambda: shape.descriptor)
    case = Case(sha, gh, shape, context)
    matcher, match = context.matcher, context.settings.match
    near = lambda: matcher.near(*shape.rows, k=match.neighbours, radius=match.distance_threshold)  # noqa: E731
    found = lap(lambda: (case.exact, case.allowed, near())[2])
    stretched = lambda: matcher.stretched(shape.whole, lambda: shape.affine, lambda: shape.affine_head)  # noqa: E731
    case.__dict__["near"] = lap(lambda: found or stretched())  # as Case.near
    lap(lambda: shape.patch_codes)
    lap(lambda: case.local)
    lap(lambda: (shape.classifier_row, shape.body_rows))
    lap(lambda: case.assessments)
    identity = Identity(gh, mesh.triangle_count, surface.body_count)
    verdicts = lap(lambda: [_verdict(path, sha, _Judged(result, utc_now(), decide(case), identity), context)])
    verdicts = lap(lambda: decode_reply(encode_reply(0, verdicts))[1])
    sink = JsonlWriter(io.StringIO())
    lap(lambda: [sink.write(v) for v in verdicts])
    return out


def stages_table(folder: Path, count: int) -> None:
    """Where a small file's CPU time goes, stage by stage, in this process (the worker's
    part of ``scan --jobs 1``), beside the one-process total of ``scan_one`` on the same
    files and the whole ``scan --jobs 1`` command: what is left is process start-up (imports,
    library and model load) and the parent's side (IPC, ordering, writing)."""
    from scanner.config import Settings
    from scanner.context import ContextSpec, settings_json
    from scanner.engines.messages import decode_reply, encode_reply
    from scanner.engines.worker import keep_freed_memory, one_blas_thread, warm_up
    from scanner.pipeline import scan_one

    files = [str(f) for f in sorted(folder.glob("*.stl"))[:count]]
    context = ContextSpec(None, settings_json(Settings()), "shipped").load()
    warm_up(context)
    one_blas_thread()  # as a scan worker runs (scanner/engines/worker.py)
    keep_freed_memory()
    _stage_times(files[0], context)  # first-use caches (the stretch index), as a worker has them
    totals = np.zeros(len(STAGES))
    for f in files:
        totals += _stage_times(f, context)
    t = time.process_time()
    for f in files:
        decode_reply(encode_reply(0, scan_one(f, context)))
    one = time.process_time() - t
    _, cli = run_meshscan(folder, "--jobs", "1")
    n_cli = len(list(folder.glob("*.stl")))
    print()
    print(f"where a small file's CPU goes ({len(files)} files of {folder.name}, ms of CPU per file):")
    print()
    print(f"| {'stage':48s} | {'ms/file':>8s} | {'share':>6s} |")
    print("|" + "|".join("-" * w for w in (50, 10, 8)) + "|")
    for name, secs in zip(STAGES, totals, strict=True):
        print(f"| {name:48s} | {1000 * secs / len(files):8.2f} | {secs / totals.sum():6.1%} |")
    print(f"| {'sum of the stages':48s} | {1000 * totals.sum() / len(files):8.2f} | {1:6.1%} |")
    print(f"| {'scan_one + JSON reply, one process':48s} | {1000 * one / len(files):8.2f} | {'':6s} |")
    print(f"| {'meshscan scan --jobs 1 (whole command)':48s} | {1000 * cli / n_cli:8.2f} | {'':6s} |")
    print(f"files per CPU-second: one process {len(files) / one:.1f}, whole command {n_cli / cli:.1f}", flush=True)


class DbTargets:
    """A fresh results database per run: SQLite files, or databases on one PostgreSQL server."""

    def __init__(self, workdir: Path, postgres: str | None) -> None:
        self.workdir, self.url, self.server, self.n = workdir, postgres, None, 0

    def sqlite(self) -> str:
        self.n += 1
        path = self.workdir / f"db-cost-{self.n}.sqlite"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return str(path)

    def postgresql(self) -> str:
        import psycopg

        if self.url is None:
            from tests.postgres_server import PostgresServer, find_bindir

            bindir = find_bindir()
            if bindir is None:
                raise SystemExit("--db-cost: no PostgreSQL binaries; give --postgres URL")
            self.server = PostgresServer(bindir)
            self.server.start()
            self.url = self.server.url + "/postgres"
        self.n += 1
        name = f"meshscan_db_cost_{self.n}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url.rsplit("/", 1)[0] + "/" + name

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()


def print_round(label: str, files: list[Path], results: dict[str, tuple[float, float]]) -> None:
    """One table row per tool of one round; ratios against that round's own runs."""
    mb = sum(f.stat().st_size for f in files) / 1e6
    one = results["meshscan --jobs 1"][0]
    base, base_cpu = results.get(BASELINE, (float("nan"), float("nan")))
    for name, (secs, cpu) in results.items():
        peer = f"{base / secs:6.2f}x" if BASELINE in results else f"{'-':>7s}"
        peer_cpu = f"{base_cpu / cpu:9.2f}x" if BASELINE in results else f"{'-':>10s}"
        print(f"| {label:26s} | {name:46s} | {secs:8.2f} | {len(files) / secs:8.1f} | {mb / secs:7.1f} "
              f"| {peer} | {one / secs:7.2f}x | {cpu:7.2f} | {len(files) / cpu:11.1f} | {peer_cpu} |",
              flush=True)  # fmt: skip


def target_figures(
    n_files: int, results: dict[str, tuple[float, float]], *, small: bool
) -> list[tuple[str, float, str, float]]:
    """Issue 18's targets for one round: (what, figure, unit, target), each judged ``>=``."""
    two = results["meshscan --jobs 2"][0]
    out = []
    if small:
        out.append(("--jobs 1 files per CPU-second", n_files / results["meshscan --jobs 1"][1], "", SMALL_PER_CORE))
    if SERIAL in results:
        out.append(("--jobs 2 vs serial --jobs 1 (wall)", results[SERIAL][0] / two, "x", LARGE_SCALING))
    for name, (secs, _cpu) in results.items():
        if name.startswith("meshscan --engine dask"):
            out.append(("Dask vs --jobs 2 (speed, wall)", two / secs, "x", DASK_SHARE))
    return out


def print_targets(label: str, figures: list[tuple[str, float, str, float]]) -> None:
    """Each target beside the figure it is judged on."""
    for what, value, unit, target in figures:
        shown = f"{value:.1f}" if not unit else f"{value:.2f}{unit}"
        met = "met" if value >= target else "not met"
        print(f"| {label:26s} | {what:46s} | {shown:>8s} | target >= {target:g}{unit}: {met} |", flush=True)


def median_figures(rounds: list[list[tuple[str, float, str, float]]]) -> list[tuple[str, float, str, float]]:
    """Each target's median over the rounds (each round's figure pairs tools run back to back,
    so the median of those is the run's figure on a machine whose load moves between rounds)."""
    return [(what, float(np.median([r[i][1] for r in rounds])), unit, target)
            for i, (what, _v, unit, target) in enumerate(rounds[0])]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=2000)
    ap.add_argument("--large", type=int, default=20)
    ap.add_argument("--large-triangles", type=int, default=500_000)
    ap.add_argument("--skip-dask", action="store_true")
    ap.add_argument("--workdir", type=Path, default=REPO / "bench" / "out" / "throughput2")
    ap.add_argument("--db-cost", action="store_true", help="add --db rows for SQLite and PostgreSQL")
    ap.add_argument("--postgres", default=None, help="a server URL for --db-cost (default: start one)")
    ap.add_argument("--describe-triangles", type=int, default=0, help="add the one-large-mesh describe table")
    ap.add_argument("--engines-only", action="store_true", help="meshscan's engines only, no one-process peers")
    ap.add_argument("--rounds", type=int, default=1, help="run every tool this many times, interleaved")
    ap.add_argument("--dask-workers", type=int, default=2, help="workers of the Dask LocalCluster")
    ap.add_argument("--stages", type=int, default=0, help="add the per-stage CPU table of this many small files")
    ap.add_argument("--stages-only", action="store_true", help="only the per-stage table (no engines, no peers)")
    args = ap.parse_args()
    deployed_bytecode(args.workdir)
    sets = {
        f"{args.small} small (1-5k tri)": make_set(args.workdir / f"small-{args.small}", args.small, 1000, 5000, 1),
        f"{args.large} large (>= {args.large_triangles // 1000}k tri)": make_set(
            args.workdir / f"large-{args.large}", args.large, args.large_triangles, args.large_triangles, 2
        ),
    }
    tools = [
        ("meshscan --jobs 1", lambda f: run_meshscan(f, "--jobs", "1")),
        ("meshscan --jobs 2", lambda f: run_meshscan(f, "--jobs", "2")),
    ]
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        # the large set only: a --jobs 1 worker with the two-thread describe helper off
        tools.append((SERIAL, lambda f: run_meshscan(f, "--jobs", "1", one_core=True)))
    if not args.skip_dask:
        dask_jobs = str(args.dask_workers)
        tools.append((f"meshscan --engine dask ({dask_jobs} workers)",
                      lambda f: run_meshscan(f, "--engine", "dask", "--jobs", dask_jobs)))  # fmt: skip
    targets = DbTargets(args.workdir, args.postgres)
    if args.db_cost:
        for backend in ("sqlite", "postgresql"):
            new_db = getattr(targets, backend)
            tools.append((f"meshscan --jobs 1 --db {backend}", lambda f, new_db=new_db: run_meshscan(
                f, "--jobs", "1", "--db", new_db())))  # fmt: skip
    for name, body in {} if args.engines_only else PEERS.items():
        tools.append((name, lambda f, body=body: run_peer(f, body)))
    warm_up = make_set(args.workdir / "small-warm-up", 3, 1000, 5000, 9)
    for name, fn in tools:  # untimed: each kind of process writes its bytecode once
        if name.startswith("meshscan") and "--db" not in name:
            fn(warm_up)
    print("bench/throughput.py: wall time of one run per cell, including process start-up;")
    print(f"'x peer' is the speed relative to '{BASELINE}' in the same run (round);")
    print("'CPU s' counts every process of the cell (user + system), 'files/CPU-s' is per core;")
    print("'x jobs 1' relative to 'meshscan --jobs 1' (the scaling of --jobs 2 and of Dask's workers).")
    print()
    print(f"| {'set':26s} | {'tool':46s} | {'seconds':>8s} | {'files/s':>8s} | {'MB/s':>7s} | {'x peer':>7s} "
          f"| {'x jobs 1':>8s} | {'CPU s':>7s} | {'files/CPU-s':>11s} | {'x peer CPU':>10s} |")  # fmt: skip
    print("|" + "|".join("-" * w for w in (28, 48, 10, 10, 9, 9, 10, 9, 13, 12)) + "|")
    for label, folder in {} if args.stages_only else sets.items():
        files = sorted(folder.glob("*.stl"))
        if not files:  # --small 0 or --large 0: that set is skipped
            continue
        per_round = []
        for round_ in range(1, args.rounds + 1):
            name_of = label if args.rounds == 1 else f"{label}, round {round_}"
            wanted = [(name, fn) for name, fn in tools if name != SERIAL or folder.name.startswith("large")]
            results = dict((name, fn(folder)) for name, fn in wanted)
            print_round(name_of, files, results)
            per_round.append(target_figures(len(files), results, small=folder.name.startswith("small")))
            print_targets(name_of, per_round[-1])
        if args.rounds > 1:
            print_targets(f"{label}, median of {args.rounds} rounds", median_figures(per_round))
    targets.close()
    if args.stages and args.small:
        stages_table(sets[f"{args.small} small (1-5k tri)"], args.stages)
    if args.describe_triangles:
        big = args.workdir / f"describe-{args.describe_triangles}.stl"
        if not big.exists():
            blob_stl(big, args.describe_triangles, np.random.default_rng(3))
        describe_table(big)


if __name__ == "__main__":
    main()
