"""The child process that reads one STEP or IGES file with OpenCASCADE (see
:mod:`scanner.formats.cad`, which runs it).

    python -m scanner.formats._cad_child TASK_JSON

It caps its own address space and wall-clock time, dies with its parent, reads and transfers
the file, tessellates every face with a deflection relative to the bounding-box diagonal,
checks the triangle limit, and writes the triangles as a binary STL to the task's ``out``.
Its answer is one JSON line on stdout (OCCT's own messages are sent to /dev/null):
``{"triangles": n, ...}`` or ``{"reason": code, "detail": text}``. Anything else - no answer,
a signal, a non-zero exit - is the parent's ``worker-crashed``.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time

from scanner.errors import (
    CORRUPT,
    EMPTY,
    LIMIT_MEMORY,
    LIMIT_TRIANGLES,
    NON_FINITE,
    UNSUPPORTED_FORMAT,
    UnreadableInput,
)

_FAULT_ENV = "MESHSCAN_CAD_FAULT_INJECT"  # scanner.formats.cad.FAULT_INJECTION_ENV


def _confine(task: dict) -> None:
    """Die with the parent, and within the upload's time and memory."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != task["parent"]:  # the parent died before prctl took effect
        os._exit(1)
    signal.alarm(int(math.ceil(task["seconds"])) + 2)  # default action: terminate
    if task.get("memory_bytes"):
        import resource

        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        cap = task["memory_bytes"] if hard == resource.RLIM_INFINITY else min(hard, task["memory_bytes"])
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


def _inject_fault(name: str) -> None:
    fault = os.environ.get(_FAULT_ENV, "")
    if fault == f"crash:{name}":
        os.abort()
    if fault == f"hang:{name}":
        time.sleep(3600)


def read_shape(fmt: str, path: str):  # noqa: ANN201 - an OCCT TopoDS_Shape
    """The file's whole model as one shape (every root transferred, assemblies flattened)."""
    from OCP.IFSelect import IFSelect_RetDone
    from OCP.IGESControl import IGESControl_Reader
    from OCP.STEPControl import STEPControl_Reader

    reader = STEPControl_Reader() if fmt == "step" else IGESControl_Reader()
    status = reader.ReadFile(path)
    if status != IFSelect_RetDone:
        raise UnreadableInput(CORRUPT, f"OpenCASCADE cannot parse it ({status.name})")
    roots = reader.NbRootsForTransfer()
    if roots == 0:
        raise UnreadableInput(EMPTY, "no shape in the file")
    done = reader.TransferRoots()
    if done < roots:
        raise UnreadableInput(CORRUPT, f"only {done} of {roots} root entities could be transferred")
    shape = reader.OneShape()
    if shape.IsNull():
        raise UnreadableInput(EMPTY, "no shape in the file")
    return shape


def diagonal(shape) -> float:  # noqa: ANN001
    """The bounding-box diagonal (refusing NaN, infinite and empty boxes)."""
    from OCP.Bnd import Bnd_Box
    from OCP.BRepBndLib import BRepBndLib

    box = Bnd_Box()
    BRepBndLib.Add_s(shape, box, False)
    if box.IsVoid():
        raise UnreadableInput(EMPTY, "the shape has no extent")
    lo, hi = box.CornerMin(), box.CornerMax()
    coords = (lo.X(), lo.Y(), lo.Z(), hi.X(), hi.Y(), hi.Z())
    if not all(math.isfinite(c) and abs(c) < 1e30 for c in coords):
        raise UnreadableInput(NON_FINITE, "NaN, infinite or absurd coordinates in the shape")
    diag = hi.Distance(lo)
    if not diag > 0:
        raise UnreadableInput(EMPTY, "the shape has no extent")
    return diag


def tessellate(shape, task: dict) -> dict:  # noqa: ANN001
    """Mesh every face; the counts. Faces left without triangles make the file ``corrupt``."""
    from OCP.BRep import BRep_Tool
    from OCP.BRepMesh import BRepMesh_IncrementalMesh
    from OCP.TopAbs import TopAbs_FACE
    from OCP.TopExp import TopExp_Explorer
    from OCP.TopLoc import TopLoc_Location
    from OCP.TopoDS import TopoDS

    diag = diagonal(shape)
    mesher = BRepMesh_IncrementalMesh(shape, task["linear"] * diag, False, task["angular"], False)
    if not mesher.IsDone():
        raise UnreadableInput(CORRUPT, "OpenCASCADE could not tessellate the shape")
    faces = bare = triangles = 0
    explorer = TopExp_Explorer(shape, TopAbs_FACE)
    while explorer.More():
        faces += 1
        tri = BRep_Tool.Triangulation_s(_face(TopoDS, explorer.Current()), TopLoc_Location())
        if tri is None or tri.NbTriangles() == 0:
            bare += 1
        else:
            triangles += tri.NbTriangles()
        if triangles > task["max_triangles"]:
            raise UnreadableInput(LIMIT_TRIANGLES, f"more than {task['max_triangles']} triangles")
        explorer.Next()
    if faces == 0:
        raise UnreadableInput(EMPTY, "no faces in the shape")
    if bare:
        raise UnreadableInput(CORRUPT, f"{bare} of {faces} faces could not be tessellated")
    return {"triangles": triangles, "faces": faces, "diagonal": diag}


def _face(topods, shape):  # noqa: ANN001, ANN202 - the downcast's name differs between OCP releases
    cast = getattr(topods, "Face_s", None) or topods.Face
    return cast(shape)


def write_stl(shape, out: str) -> None:  # noqa: ANN001
    from OCP.StlAPI import StlAPI_Writer

    writer = StlAPI_Writer()
    writer.ASCIIMode = False
    if not writer.Write(shape, out):
        raise UnreadableInput(CORRUPT, "OpenCASCADE could not write the triangles")


def load_occt() -> None:
    """Import OpenCASCADE's libraries up front: failing to map them is the memory cap's doing
    (``limit:memory``) or a broken install, never the file's fault."""
    try:
        import OCP.BRepMesh  # noqa: F401
        import OCP.IGESControl  # noqa: F401
        import OCP.STEPControl  # noqa: F401
        import OCP.StlAPI  # noqa: F401
    except MemoryError:
        raise UnreadableInput(LIMIT_MEMORY, "the memory cap is too small to load OpenCASCADE") from None
    except ImportError as exc:
        if "map" in str(exc) or "memory" in str(exc).lower():
            raise UnreadableInput(LIMIT_MEMORY, "the memory cap is too small to load OpenCASCADE") from None
        raise UnreadableInput(UNSUPPORTED_FORMAT, f"OpenCASCADE cannot be loaded ({exc})") from None


def run(task: dict) -> dict:
    """Read, tessellate and write; the answer (never raising)."""
    try:
        _inject_fault(task["name"])
        load_occt()
        shape = read_shape(task["format"], task["path"])
        answer = tessellate(shape, task)
        write_stl(shape, task["out"])
        return answer
    except UnreadableInput as err:
        return {"reason": err.reason, "detail": err.detail}
    except MemoryError:
        return {"reason": LIMIT_MEMORY, "detail": "memory cap reached in the CAD reader"}
    except Exception as exc:  # noqa: BLE001 - OCCT's exceptions (Standard_Failure, ...) say the file is bad
        name = type(exc).__name__
        if "OutOfMemory" in name or "OutOfMemory" in str(exc):
            return {"reason": LIMIT_MEMORY, "detail": "memory cap reached in the CAD reader"}
        return {"reason": CORRUPT, "detail": f"OpenCASCADE: {name}: {exc}"[:300]}


def main() -> None:
    task = json.loads(sys.argv[1])
    _confine(task)
    answer_to = os.fdopen(os.dup(1), "w")  # OCCT prints to stdout: only the answer goes there
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    answer = run(task)
    answer_to.write(json.dumps(answer) + "\n")
    answer_to.flush()


if __name__ == "__main__":
    main()
