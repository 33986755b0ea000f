"""STEP and IGES (scanner/formats/cad.py): recognised by their headers, read through
OpenCASCADE in a guarded child process, hostile files turned into reason codes (never a mesh
that hides part of the file, never a crash of the reading process), and without the ``cad``
extra reported ``unsupported-format`` with the install hint.

Files are written by ``fixtures/cad.py`` (synthetic plates and proxies; OpenCASCADE writers).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import trimesh

from fixtures.cad import faceted_shape, holed_plate, hostile_iges, hostile_step, iges_bytes, nested_assembly, step_bytes
from scanner.config import Limits
from scanner.errors import (
    CORRUPT,
    EMPTY,
    LIMIT_MEMORY,
    LIMIT_TIME,
    LIMIT_TRIANGLES,
    NON_FINITE,
    TRUNCATED,
    UNSUPPORTED_FORMAT,
    WORKER_CRASHED,
)
from scanner.formats import BytesBlob, FileBlob, LoadContext, read_blob, sniff
from scanner.formats import cad as cad_format

HANG_LIMIT_S = 6.0


@pytest.fixture(scope="module")
def plate() -> tuple[bytes, bytes]:
    shape = holed_plate(1)
    return step_bytes(shape), iges_bytes(shape)


@pytest.fixture(scope="module")
def hostile(plate: tuple[bytes, bytes]) -> dict[str, bytes]:
    return hostile_step(plate[0], nested_assembly(300)) | hostile_iges(plate[1])


def read(data: bytes, name: str = "upload", **limits: float) -> list:
    return list(read_blob(BytesBlob(name, data), LoadContext(Limits(**limits))))


def test_step_and_iges_are_sniffed_by_their_headers(plate: tuple[bytes, bytes]) -> None:
    step, iges = plate
    assert step.startswith(b"ISO-10303-21;")
    assert iges[:72].strip() == b""  # OpenCASCADE's start section begins with a blank line
    assert sniff(BytesBlob("a", step)) == "step"
    assert sniff(BytesBlob("b", iges)) == "iges"
    prose = b"A part exported by a CAD system".ljust(72) + b"S      1\n" + iges.split(b"\n", 1)[1]
    assert sniff(BytesBlob("c", prose)) == "iges"
    assert sniff(BytesBlob("d", b"ISO-10303-22 is another standard\n")) != "step"


def test_a_plate_reads_as_a_closed_mesh_from_step_and_iges(plate: tuple[bytes, bytes]) -> None:
    for data, fmt in zip(plate, ("step", "iges"), strict=True):
        [result] = read(data)
        assert result.error is None, result.error
        assert result.format == fmt
        summary = result.mesh.summary()
        assert summary["watertight"] and summary["euler_number"] == 0  # one through-hole
        # 100 x 100 x 5 plate minus a hole of radius 30: the tessellation is within 0.5 %
        assert summary["volume"] == pytest.approx(5 * (100 * 100 - np.pi * 30**2), rel=5e-3)


def test_without_the_extra_step_and_iges_are_unsupported_with_the_install_hint(
    plate: tuple[bytes, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cad_format, "cad_available", lambda: False)
    for data, fmt in zip(plate, ("step", "iges"), strict=True):
        [result] = read(data)
        assert (result.format, result.error.reason) == (fmt, UNSUPPORTED_FORMAT)
        assert "pip install 'meshscan[cad]'" in result.error.detail


EXPECTED = {
    "truncated.step": {TRUNCATED},
    "truncated.igs": {TRUNCATED},
    "garbage.step": {CORRUPT, EMPTY},
    "garbage.igs": {WORKER_CRASHED, CORRUPT, EMPTY},  # OpenCASCADE 8.0 segfaults on it
    "nan.step": {NON_FINITE},
    "nan.igs": {LIMIT_TIME, NON_FINITE, CORRUPT},  # OpenCASCADE 8.0 loops on it
    "huge-count.step": {LIMIT_TIME, LIMIT_MEMORY, CORRUPT},  # OpenCASCADE 8.0 loops on it
}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_hostile_files_give_a_reason_never_a_mesh(name: str, hostile: dict[str, bytes]) -> None:
    # the files OpenCASCADE 8.0 loops on get a short limit; the others a generous one (load)
    limit = HANG_LIMIT_S if LIMIT_TIME in EXPECTED[name] else 120.0
    [result] = read(hostile[name], name, max_seconds=limit)
    assert result.mesh is None
    assert result.error.reason in EXPECTED[name], (result.error.reason, result.error.detail)


def test_external_references_are_never_followed(plate: tuple[bytes, bytes], tmp_path: Path) -> None:
    """The referenced file sits right beside the upload: it is still not read, and the upload
    is an error (its geometry is not all there)."""
    step, iges = plate
    (tmp_path / "other.step").write_bytes(step)
    ref = b"#90000 = DOCUMENT_FILE('other','other.step','',#2,'','');\n"
    (tmp_path / "main.step").write_bytes(step.replace(b"DATA;\n", b"DATA;\n" + ref, 1))
    lines = iges.split(b"\n")
    d = next(i for i, line in enumerate(lines) if line[72:73] == b"D")
    lines[d] = b"     416" + lines[d][8:]  # an External Reference entity
    (tmp_path / "main.igs").write_bytes(b"\n".join(lines))
    for name in ("main.step", "main.igs"):
        [result] = read_blob(FileBlob(tmp_path / name, 1 << 30), LoadContext())
        assert result.error.reason == UNSUPPORTED_FORMAT, result.error
        assert "never followed" in result.error.detail


def test_a_deep_assembly_is_flattened_with_its_placements(hostile: dict[str, bytes]) -> None:
    [result] = read(hostile["nested-300.step"])
    assert result.error is None, result.error
    vertices = np.asarray(result.mesh.vertices)
    assert result.mesh.summary()["triangles"] == 12  # the one box, placed once
    assert vertices.min(axis=0) == pytest.approx([300.0, 0.0, 0.0], abs=1e-4)  # moved 1 along x per level
    assert vertices.max(axis=0) == pytest.approx([310.0, 20.0, 30.0], abs=1e-4)


def test_the_triangle_limit_and_the_memory_cap_hold_in_the_child() -> None:
    step = step_bytes(holed_plate(4))
    [many] = read(step, max_triangles=500)
    assert many.error.reason == LIMIT_TRIANGLES
    [small] = read(step, max_memory_bytes=300 << 20)
    assert small.error.reason == LIMIT_MEMORY


def test_a_faceted_solid_from_a_mesh_reads_back_as_that_mesh() -> None:
    tm = trimesh.creation.annulus(r_min=1.0, r_max=2.0, height=3.0, sections=16)
    [result] = read(step_bytes(faceted_shape(tm.vertices, tm.faces)))
    assert result.error is None, result.error
    assert result.mesh.summary()["triangles"] == len(tm.faces)
    assert result.mesh.summary()["volume"] == pytest.approx(tm.volume, rel=1e-6)


def test_a_step_file_inside_a_zip_is_read_as_a_member(plate: tuple[bytes, bytes]) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("parts/plate.step", plate[0])
        zf.writestr("parts/plate.igs", plate[1])
    results = read(buf.getvalue())
    assert sorted((r.member, r.format, r.error) for r in results) == [
        ("parts/plate.igs", "iges", None),
        ("parts/plate.step", "step", None),
    ]


def test_a_crashing_or_hanging_reader_in_process_is_a_reason_not_the_end(
    plate: tuple[bytes, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read in this very process (as ``inspect`` and the Python API read): the reader's
    segfault or endless loop costs its file only, and the next read works."""
    monkeypatch.setenv(cad_format.FAULT_INJECTION_ENV, "crash:bad.step")
    [crashed] = read(plate[0], "dir/bad.step")
    assert crashed.error.reason == WORKER_CRASHED
    monkeypatch.setenv(cad_format.FAULT_INJECTION_ENV, "hang:bad.step")
    [hung] = read(plate[0], "bad.step", max_seconds=3.0)
    assert hung.error.reason == LIMIT_TIME and "3 s" in hung.error.detail
    [fine] = read(plate[0], "good.step")
    assert fine.error is None
