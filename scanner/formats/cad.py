"""STEP (ISO 10303-21) and IGES: CAD exchange files, tessellated through the optional ``cad``
extra (OpenCASCADE, from the ``cadquery-ocp-novtk`` wheel).

Design files travel as STEP/IGES beside (or instead of) their STLs, so a part enrolled from
its STL must still match when uploaded as its CAD original. A CAD file holds exact surfaces
(planes, cylinders, B-splines), not triangles: the model's every solid, shell and face -
assemblies flattened with their placements, which OCCT's ``TransferRoots`` does - is
tessellated with a *linear deflection relative to the part's size* (:data:`LINEAR_DEFLECTION`
of its bounding-box diagonal, so a 5 mm pin and a 500 mm frame are meshed alike and the
descriptor sees the same shape) and an angular deflection (:data:`ANGULAR_DEFLECTION`), into
one mesh through :func:`~scanner.formats.base.build_mesh` and its triangle/vertex limits.

**Always in a child process.** OCCT is a large C++ library that can crash (a segfault on a
malformed entity) or loop on hostile input (``bench/cad.py`` has files that do both).
``scan``, ``watch`` and ``serve`` already run every upload in a guarded worker, but
``inspect``, ``signatures add``, ``hash`` and the Python API with ``isolated=False`` read
in-process, where a segfault would end the command.
So the reader always runs as ``python -m scanner.formats._cad_child`` (a fresh interpreter:
OCCT's state is never forked) under the upload's wall-clock limit (``limit:time``, the child
is killed) and address-space cap (``limit:memory``); a child that dies is ``worker-crashed``;
it dies with its parent (``PR_SET_PDEATHSIG``), so a scan worker killed for its own time
limit leaves no orphan. Only the child imports OCCT; it answers in JSON and a binary STL
file, never pickle. Cost: OCCT's import, about 1.5-2.5 s per CAD file on this machine.

**What is never trusted.** The upload is copied alone into a private temporary folder before
OCCT sees it, so a reference to another file resolves to nothing; external references are
detected while copying (STEP ``DOCUMENT_FILE``, ``EXTERNALLY_DEFINED_REPRESENTATION`` and
``EXTERNALLY_DEFINED_ITEM`` entities - not the externally defined fonts and styles of
drawing annotations, which name no geometry - and IGES entity 416) and make the upload
``unsupported-format``: a part whose geometry lives in files that were not uploaded cannot
be judged complete, and is never ``clear``. A STEP file without its ``END-ISO-10303-21;``
trailer or an IGES file without its terminate (``T``) line is ``truncated``; a file OCCT
cannot parse or transfer, or one with a face that cannot be tessellated, is ``corrupt`` (a
partial mesh could hide the rest).

Why OCCT and not gmsh: measured by ``bench/cad.py`` (table in the README, "STEP and IGES:
why OpenCASCADE"): OCCT tessellates 1.8-11x faster than gmsh's surface mesher, which builds
finite-element-quality meshes meshscan does not need; gmsh reads CAD through OCCT anyway
(same crashes and loops on hostile files), and is GPL-2.0+ where meshscan is Apache-2.0.

Without the extra, STEP and IGES are still recognised and reported ``unsupported-format``
with the install hint, like zstd without ``meshscan[compress]``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from scanner.errors import (
    CORRUPT,
    LIMIT_TIME,
    TRUNCATED,
    UNSUPPORTED_FORMAT,
    WORKER_CRASHED,
    UnreadableInput,
)
from scanner.formats._probe import Probe
from scanner.formats.base import Format, LoadContext, Sniffer, build_mesh
from scanner.formats.blob import Blob
from scanner.mesh import Mesh

INSTALL_HINT = "reading it needs the optional extra (pip install 'meshscan[cad]')"
LINEAR_DEFLECTION = 1e-3
"""Largest distance between the exact surface and its triangles, as a fraction of the
bounding-box diagonal (0.1 %)."""
ANGULAR_DEFLECTION = 0.25
"""Largest angle (radians, about 14 degrees) between neighbouring triangles on a curved face:
a cylinder gets about 26 sides, like the 24-32 of a typical STL export."""
CHILD_MODULE = "scanner.formats._cad_child"
FAULT_INJECTION_ENV = "MESHSCAN_CAD_FAULT_INJECT"
"""Testing hook, read by the child: ``crash:NAME`` aborts and ``hang:NAME`` sleeps forever on
an upload whose base name is NAME, so the crash and time-limit paths are tested without an
input that really crashes OCCT."""

_IGES_RE = re.compile(rb"\A[^\r\n]{72}S[ 0-9]{7}\r?\n")
_STEP_EXTERNAL = re.compile(rb"\b(?:DOCUMENT_FILE|EXTERNALLY_DEFINED_(?:REPRESENTATION|ITEM))\s*\(", re.I)
_IGES_EXTERNAL = re.compile(rb"(?m)^ {5}416[^\r\n]{64}D[ 0-9]{7}\r?$")
_STEP_END = re.compile(rb"END-ISO-10303-21\s*;\s*\Z")
_IGES_END = re.compile(rb"[^\r\n]{72}T[ 0-9]{7}\s*\Z")
_CHUNK = 1 << 20
_OVERLAP = 256
_TAIL = 4096
_STL_RECORD = np.dtype([("normal", "<f4", (3,)), ("v", "<f4", (3, 3)), ("attr", "<u2")])
_TITLES = {"step": "STEP (ISO 10303-21)", "iges": "IGES"}


def cad_available() -> bool:
    """Is the ``cad`` extra (OCCT's Python bindings) installed? Checked without importing it:
    only the child process ever loads OCCT."""
    return importlib.util.find_spec("OCP") is not None


def _copy_and_check(blob: Blob, fmt: str, dest: Path) -> None:
    """Copy the upload to ``dest`` in chunks, refusing external references and truncation."""
    external = _STEP_EXTERNAL if fmt == "step" else _IGES_EXTERNAL
    carry = b""
    with blob.open() as src, open(dest, "wb") as out:
        while chunk := src.read(_CHUNK):
            out.write(chunk)
            data = carry + chunk
            found = external.search(data)
            if found:
                what = found.group(0).decode("ascii", "replace").rstrip(" (")[:40]
                raise UnreadableInput(
                    UNSUPPORTED_FORMAT,
                    f"{_TITLES[fmt]} referring to other files ({what}): external references are never followed",
                )
            carry = data[-max(_OVERLAP, _TAIL) :]
    end = _STEP_END if fmt == "step" else _IGES_END
    if not end.search(carry[-_TAIL:]):
        trailer = "END-ISO-10303-21;" if fmt == "step" else "terminate (T) line"
        raise UnreadableInput(TRUNCATED, f"{_TITLES[fmt]} ends before its {trailer}")


def _run_child(fmt: str, path: Path, out: Path, name: str, ctx: LoadContext) -> dict:
    """Run the OCCT reader in a child under the upload's limits; its JSON answer."""
    limits = ctx.limits
    task = {
        "format": fmt,
        "path": str(path),
        "out": str(out),
        "name": os.path.basename(name),
        "max_triangles": limits.max_triangles,
        "memory_bytes": limits.max_memory_bytes,
        "seconds": limits.max_seconds,
        "parent": os.getpid(),
        "linear": LINEAR_DEFLECTION,
        "angular": ANGULAR_DEFLECTION,
    }
    try:
        proc = subprocess.run(
            [sys.executable, "-m", CHILD_MODULE, json.dumps(task)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            timeout=limits.max_seconds, cwd=path.parent,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise UnreadableInput(LIMIT_TIME, f"CAD reader gave no result within {limits.max_seconds:g} s") from None
    except OSError as exc:
        raise UnreadableInput(WORKER_CRASHED, f"cannot start the CAD reader: {exc}") from None
    lines = proc.stdout.decode("utf-8", "replace").strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else None
    except ValueError:
        answer = None
    if proc.returncode != 0 or not isinstance(answer, dict):
        raise UnreadableInput(WORKER_CRASHED, f"the CAD reader died (exit code {proc.returncode})")
    return answer


def _stl_vertices(path: Path) -> np.ndarray:
    """The triangle soup of the binary STL the child wrote (``(3n, 3)`` float32)."""
    data = path.read_bytes()
    if len(data) < 84:
        raise UnreadableInput(CORRUPT, "the CAD reader wrote no triangles")
    n = int(np.frombuffer(data, "<u4", 1, 80)[0])
    if len(data) != 84 + 50 * n:
        raise UnreadableInput(CORRUPT, "the CAD reader's output is inconsistent")
    return np.frombuffer(data, _STL_RECORD, n, 84)["v"].reshape(-1, 3)


def load_cad(blob: Blob, ctx: LoadContext, fmt: str) -> Mesh:
    """Read a STEP or IGES upload: tessellated in a guarded child, one mesh."""
    if not cad_available():
        raise UnreadableInput(UNSUPPORTED_FORMAT, f"{_TITLES[fmt]}: {INSTALL_HINT}")
    tmp = Path(tempfile.mkdtemp(prefix="meshscan-cad-"))
    try:
        src = tmp / ("upload.step" if fmt == "step" else "upload.igs")
        _copy_and_check(blob, fmt, src)
        answer = _run_child(fmt, src, tmp / "mesh.stl", blob.name, ctx)
        if "reason" in answer:
            raise UnreadableInput(str(answer["reason"]), str(answer.get("detail", "")))
        vertices = _stl_vertices(tmp / "mesh.stl")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return build_mesh(vertices, None, blob, fmt, ctx)


def load_step(blob: Blob, ctx: LoadContext) -> Mesh:
    return load_cad(blob, ctx, "step")


def load_iges(blob: Blob, ctx: LoadContext) -> Mesh:
    return load_cad(blob, ctx, "iges")


def _sniff(p: Probe) -> str | None:
    """STEP by its ``ISO-10303-21`` header; IGES by its first line's column-73 ``S``."""
    body = p.body
    if body.startswith(b"ISO-10303-21"):
        return "step"
    head = p.head.removeprefix(b"\xef\xbb\xbf")  # an IGES start line may begin with blanks
    return "iges" if _IGES_RE.match(head) or _IGES_RE.match(body) else None


_NOTES = (
    "with `meshscan[cad]` (OpenCASCADE): every solid, shell and face, assemblies flattened with their "
    "placements, tessellated to 0.1 % of the bounding-box diagonal (and 0.25 rad) in a child process "
    "under the time and memory limits (`worker-crashed` if OCCT dies); references to other files are "
    "never followed (`unsupported-format`), a missing trailer is `truncated`, a face that cannot be "
    "tessellated `corrupt`; without the extra recognised (`ISO-10303-21` header, IGES column-73 `S`) "
    "and reported `unsupported-format`"
)
FORMATS = (
    Format("step", "STEP, IGES", 57, _NOTES, loader=load_step),
    Format("iges", "STEP, IGES", 58, loader=load_iges),
)
SNIFFERS = (Sniffer(702, _sniff, frozenset({"step", "iges"})),)
