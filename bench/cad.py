"""Which CAD kernel reads STEP/IGES for ``meshscan[cad]``: OpenCASCADE (``cadquery-ocp-novtk``)
or gmsh - measured (issue 16, item 3).

    python bench/cad.py                    # install both from the package registry, full ladder
    python bench/cad.py --wheels DIR       # install from wheels already downloaded into DIR
    python bench/cad.py --quick            # smaller ladder, one repeat

**Choice: OpenCASCADE** (``cadquery-ocp-novtk``). gmsh's wheel is 3.6x smaller and
installs faster (both well under a minute, from the registry too: 7 s measured for OCP), and
imports in 0.05 s instead of 0.6-1.8 s; but OpenCASCADE's tessellation (``BRepMesh``: the
triangles a CAD system exports as STL) is 1.8-11x faster than gmsh's surface mesher on the
plates and about 60x on the deep assembly (gmsh builds well-shaped finite elements meshscan
does not need, 3-8x more of them), so the import, paid once per CAD file, is repaid from
mid-sized parts on. (The ratio shrinks on faces with hundreds of holes: 40 s for 576.)
Robustness does not decide: gmsh reads CAD files *through* OpenCASCADE, and both died on the
same junk IGES (segfault) and looped on the same overflowing IGES and huge-count STEP; gmsh
also segfaulted on the NaN STEP, which OpenCASCADE reported cleanly. Either needs the guarded
child process (:mod:`scanner.formats.cad`). Last, gmsh is GPL-2.0+, meshscan Apache-2.0
(OCP: Apache-2.0 over OpenCASCADE's LGPL-2.1 with exception), and gmsh keeps global state per
process. The table of the run on this machine is in the README ("STEP and IGES: why
OpenCASCADE").

Each library is installed into its own fresh venv under ``--workdir`` (timed: ``install s``;
size: the venv's growth), so neither sees the other's copy of OpenCASCADE. Every measurement
runs in a fresh process of that venv's Python under an address-space cap (4 GiB) and a
wall-clock limit (``--timeout``), like meshscan's guarded reader:

* ``import s``: importing what reading needs (median of ``--repeat``);
* per file, ``read+mesh s``: reading the file and tessellating every face with a linear
  deflection of 0.1 % of the bounding-box diagonal and about 0.25 rad (OpenCASCADE:
  ``BRepMesh_IncrementalMesh``; gmsh: ``importShapes`` + ``mesh.generate(2)`` with
  ``MeshSizeFromCurvature`` 26 per turn and the same minimum size), median of ``--repeat``,
  import excluded; ``triangles``; and the outcome: ``ok``, ``error`` (the library refused the
  file with an exception or empty result: a clean reason), ``crash`` (the process died on a
  signal), ``hang`` (killed at the time limit: ``--timeout`` for the plates, ``--hostile-timeout``
  for the small hostile files) or ``memory`` (past the cap).

Inputs, written by ``fixtures/cad.py``: holed plates (a grid of n x n round through-holes, a
size ladder with true cylinders) as STEP and IGES, and hostile files: truncated (60 % of the
bytes), garbage entities (every fifth entity's parameters replaced by junk and dangling
references), NaN/overflowing coordinates, a face bounded by the same loop 200 000 times
(huge counts), and an assembly nested 300 levels deep. ``gmsh/ocp`` is the ratio of the two
libraries' read+mesh times on one file (> 1: OpenCASCADE is faster).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_WORKDIR = REPO / "bench" / "out" / "cad"
LIBS = {"ocp": "cadquery-ocp-novtk", "gmsh": "gmsh"}
MEMORY_CAP = 4 << 30

_IMPORT = {
    "ocp": "from OCP.STEPControl import STEPControl_Reader\nfrom OCP.IGESControl import IGESControl_Reader\n"
    "from OCP.BRepMesh import BRepMesh_IncrementalMesh",
    "gmsh": "import gmsh",
}
_READ = {
    "ocp": """
from OCP.Bnd import Bnd_Box
from OCP.BRepBndLib import BRepBndLib
from OCP.BRep import BRep_Tool
from OCP.TopAbs import TopAbs_FACE
from OCP.TopExp import TopExp_Explorer
from OCP.TopLoc import TopLoc_Location
from OCP.TopoDS import TopoDS
from OCP.IFSelect import IFSelect_RetDone
r = STEPControl_Reader() if PATH.endswith('.step') else IGESControl_Reader()
if r.ReadFile(PATH) != IFSelect_RetDone: raise ValueError('not read')
r.TransferRoots()
shape = r.OneShape()
box = Bnd_Box(); BRepBndLib.Add_s(shape, box, False)
if box.IsVoid(): raise ValueError('empty')
diag = box.CornerMax().Distance(box.CornerMin())
if not 0 < diag < 1e30: raise ValueError('bad extent')
BRepMesh_IncrementalMesh(shape, 1e-3 * diag, False, 0.25, False)
face = getattr(TopoDS, 'Face_s', None) or TopoDS.Face
n, ex = 0, TopExp_Explorer(shape, TopAbs_FACE)
while ex.More():
    t = BRep_Tool.Triangulation_s(face(ex.Current()), TopLoc_Location())
    n += 0 if t is None else t.NbTriangles()
    ex.Next()
""",
    "gmsh": """
gmsh.initialize(readConfigFiles=False)
gmsh.option.setNumber('General.Terminal', 0)
gmsh.model.occ.importShapes(PATH)
gmsh.model.occ.synchronize()
x0, y0, z0, x1, y1, z1 = gmsh.model.getBoundingBox(-1, -1)
diag = ((x1 - x0) ** 2 + (y1 - y0) ** 2 + (z1 - z0) ** 2) ** 0.5
if not 0 < diag < 1e30: raise ValueError('bad extent')
gmsh.option.setNumber('Mesh.MeshSizeFromCurvature', 26)
gmsh.option.setNumber('Mesh.MeshSizeMin', 1e-3 * diag)
gmsh.option.setNumber('Mesh.MeshSizeMax', diag / 10)
gmsh.model.mesh.generate(2)
n = sum(len(tags) for tags in gmsh.model.mesh.getElementsByType(2)[:1])
gmsh.finalize()
""",
}
_CHILD = """
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))
t0 = time.perf_counter()
{imports}
t1 = time.perf_counter()
PATH = sys.argv[1]
if PATH == '-':
    print(json.dumps({{"import": t1 - t0}})); sys.exit(0)
try:
{read}
except MemoryError:
    print(json.dumps({{"outcome": "memory"}})); sys.exit(0)
except Exception as exc:
    print(json.dumps({{"outcome": "error", "detail": type(exc).__name__ + ": " + str(exc)[:80]}})); sys.exit(0)
print(json.dumps({{"outcome": "ok" if n else "error", "seconds": time.perf_counter() - t1, "triangles": n}}))
"""


def child_script(lib: str) -> str:
    read = "\n".join("    " + line for line in _READ[lib].strip().splitlines())
    return _CHILD.format(cap=MEMORY_CAP, imports=_IMPORT[lib], read=read)


# --------------------------------------------------------------------------- inputs
def make_inputs(workdir: Path, ladder: list[int]) -> list[Path]:
    from fixtures.cad import holed_plate, hostile_iges, hostile_step, iges_bytes, nested_assembly, step_bytes

    out = workdir / "inputs"
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    plates = {}
    for n in ladder:
        shape = holed_plate(n)
        plates[n] = (step_bytes(shape), iges_bytes(shape))
        for suffix, data in zip((".step", ".igs"), plates[n], strict=True):
            path = out / f"plate-{n * n}-holes{suffix}"
            path.write_bytes(data)
            files.append(path)
    small_step, small_iges = plates[ladder[0]]
    hostile = hostile_step(small_step, nested_assembly(300)) | hostile_iges(small_iges)
    for name, data in hostile.items():
        (out / name).write_bytes(data)
        files.append(out / name)
    return files


# --------------------------------------------------------------------------- measuring
def install(lib: str, workdir: Path, wheels: Path | None) -> tuple[Path, float, float]:
    """A fresh venv holding ``lib`` only: its python, install seconds, installed MiB."""
    venv = workdir / f"venv-{lib}"
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    before = _du(venv)
    source = ["--no-index", "--find-links", str(wheels)] if wheels else []
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                    *source, LIBS[lib]], check=True)  # fmt: skip
    seconds = time.perf_counter() - t0
    return venv / "bin" / "python", seconds, (_du(venv) - before) / (1 << 20)


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def run_child(python: Path, lib: str, arg: str, timeout: float) -> dict:
    try:
        proc = subprocess.run([str(python), "-c", child_script(lib), arg], capture_output=True, timeout=timeout,
                              text=True)  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"outcome": "hang"}
    if proc.returncode < 0:
        return {"outcome": "crash", "detail": f"signal {-proc.returncode}"}
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"outcome": "crash", "detail": f"exit {proc.returncode}: {proc.stderr.strip()[-80:]}"}


def measure(python: Path, lib: str, files: list[Path], repeat: int, timeout: float,
            hostile_timeout: float) -> tuple[float, dict]:  # fmt: skip
    imports = [run_child(python, lib, "-", timeout).get("import", float("nan")) for _ in range(repeat)]
    results = {}
    for path in files:
        plate = "plate" in path.name
        limit = timeout if plate else hostile_timeout
        runs = [run_child(python, lib, str(path), limit) for _ in range(repeat if plate else 1)]
        best = runs[-1]
        ok = [r["seconds"] for r in runs if r.get("outcome") == "ok"]
        if ok:
            best = dict(best, seconds=statistics.median(ok))
        results[path.name] = best
    return statistics.median(imports), results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wheels", type=Path, help="install from wheels in this folder (no index)")
    ap.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    ap.add_argument("--quick", action="store_true", help="plates of 1, 16 and 144 holes (full: and 576), one run each")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per read of a plate")
    ap.add_argument("--hostile-timeout", type=float, default=30.0, help="seconds per read of a hostile file")
    args = ap.parse_args()
    repeat = 1 if args.quick else args.repeat
    files = make_inputs(args.workdir, [1, 4, 12] if args.quick else [1, 4, 12, 24])
    meta, results = {}, {}
    for lib in LIBS:
        python, seconds, mib = install(lib, args.workdir, args.wheels)
        imported, results[lib] = measure(python, lib, files, repeat, args.timeout, args.hostile_timeout)
        meta[lib] = (seconds, mib, imported)
    print(f"{'library':8} {'package':20} {'install s':>9} {'size MiB':>9} {'import s':>9}")
    for lib, (seconds, mib, imported) in meta.items():
        print(f"{lib:8} {LIBS[lib]:20} {seconds:9.1f} {mib:9.0f} {imported:9.2f}")
    o, g = meta["ocp"], meta["gmsh"]
    print(f"ratios ocp/gmsh: install {o[0] / g[0]:.2f}, size {o[1] / g[1]:.2f}, import {o[2] / g[2]:.2f}\n")
    print(f"{'file':22} {'KiB':>7} | {'ocp':>7} {'s':>7} {'tris':>8} | {'gmsh':>7} {'s':>7} {'tris':>8} | gmsh/ocp")
    for path in files:
        row = [f"{path.name:22} {path.stat().st_size / 1024:7.0f}"]
        for lib in LIBS:
            r = results[lib][path.name]
            s = f"{r['seconds']:7.2f}" if "seconds" in r else f"{'-':>7}"
            row.append(f"{r['outcome']:>7} {s} {r.get('triangles', '-'):>8}")
        ratio = "-"
        if "seconds" in results["ocp"][path.name] and "seconds" in results["gmsh"][path.name]:
            ratio = f"{results['gmsh'][path.name]['seconds'] / results['ocp'][path.name]['seconds']:.1f}"
        print(" | ".join(row) + f" | {ratio:>8}")
    for lib in LIBS:
        for name, r in results[lib].items():
            if r["outcome"] not in ("ok",) and r.get("detail"):
                print(f"  {lib} {name}: {r['outcome']}: {r['detail']}")


if __name__ == "__main__":
    main()
