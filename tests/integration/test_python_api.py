"""The public Python API, used as a platform's upload pipeline would use it (issue 13, item 1):
load once, scan paths and bytes, hash at the edge and look up elsewhere, isolate a scan, and
never get a silent clean without a library."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import trimesh

import scanner
from tests.conftest import REPO

DEMO = REPO / "fixtures" / "demo"
ENROLLED = DEMO / "proxy-barrel-s1-000.stl"  # in the shipped library
BENIGN = DEMO / "benign-cup-s1-000.stl"


@pytest.fixture(scope="module")
def matcher_only() -> scanner.Scanner:
    return scanner.Scanner(model=None)


def test_public_names_are_listed() -> None:
    for name in ("Scanner", "scan", "Signals", "Verdict", "Match", "load", "NoLibraryError"):
        assert name in scanner.__all__ and getattr(scanner, name) is not None


def test_scan_paths_and_bytes(matcher_only: scanner.Scanner, tmp_path: Path) -> None:
    (flagged,) = matcher_only.scan(ENROLLED)
    assert flagged.verdict == "flag" and flagged.matches and flagged.path == str(ENROLLED)
    assert flagged.library_version == matcher_only.library_version
    (clear,) = matcher_only.scan(BENIGN.read_bytes(), name="uploads/42/cup.stl")
    assert clear.verdict == "clear" and clear.path == "uploads/42/cup.stl"
    # an archive from bytes: one verdict per member, the rotated known part flags
    moved = trimesh.load(ENROLLED, force="mesh")
    moved.apply_transform(trimesh.transformations.rotation_matrix(1.1, [1, 0, 1]))
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("part.obj", trimesh.exchange.obj.export_obj(moved))
        zf.write(BENIGN, "cup.stl")
    verdicts = matcher_only.scan(archive.read_bytes(), name="a.zip")
    assert {v.member: v.verdict for v in verdicts} == {"part.obj": "flag", "cup.stl": "clear"}
    json.dumps([v.to_dict() for v in verdicts])  # records serialise as the CLI's


def test_hash_then_lookup_matches_without_the_file(matcher_only: scanner.Scanner, tmp_path: Path) -> None:
    moved = trimesh.load(ENROLLED, force="mesh")
    moved.apply_transform(trimesh.transformations.rotation_matrix(0.4, [0, 1, 1]))
    moved.apply_scale(3.0)
    upload = tmp_path / "u.ply"
    moved.export(upload)
    (signals,) = matcher_only.hash(upload)
    wire = json.loads(json.dumps(signals.to_dict()))  # what an edge service would send
    assert set(wire) >= {"sha256", "geometry_hash", "descriptor_version", "rows", "row_bodies"}
    matches = matcher_only.lookup(scanner.Signals.from_dict(wire))
    (scanned,) = matcher_only.scan(upload)
    assert matches and {m.signature_id for m in matches} == {m.signature_id for m in scanned.matches}
    (benign,) = matcher_only.hash(BENIGN)
    assert matcher_only.lookup(benign) == []


def test_isolated_scan_gives_the_same_verdicts(matcher_only: scanner.Scanner) -> None:
    isolated = scanner.Scanner(model=None, isolated=True)
    for path in (ENROLLED, BENIGN):
        (a,) = matcher_only.scan(path)
        (b,) = isolated.scan(path)
        assert (a.verdict, [m.signature_id for m in a.matches]) == (b.verdict, [m.signature_id for m in b.matches])


def test_no_library_is_an_error_never_a_clean(tmp_path: Path) -> None:
    with pytest.raises(scanner.NoLibraryError):
        scanner.Scanner(library=None)
    from scanner.library import SignatureLibrary

    empty = SignatureLibrary.create(tmp_path / "empty")
    empty.save()
    with pytest.raises(scanner.NoLibraryError):
        scanner.Scanner(library=tmp_path / "empty", model=None)


def test_one_off_scan_says_it_used_the_demo_library() -> None:
    (v,) = scanner.scan(ENROLLED)
    assert v.verdict == "flag" and "shipped DEMO library" in v.explanation
    assert v.model_version is not None  # the shipped model is loaded too


def test_hash_reads_like_scan_and_skips_what_scan_calls_unscannable(matcher_only: scanner.Scanner,
                                                                     tmp_path: Path) -> None:  # fmt: skip
    """The same sha256 as scan, for URLs too; a mesh with no surface is skipped by hash and
    enrolment alike (scan calls it unscannable), instead of raising."""
    import fsspec

    with fsspec.open("memory://api-test/part.stl", "wb") as fh:
        fh.write(ENROLLED.read_bytes())
    (signals,) = matcher_only.hash("memory://api-test/part.stl")
    (scanned,) = matcher_only.scan("memory://api-test/part.stl")
    assert signals.sha256 == scanned.sha256 is not None
    flat = tmp_path / "flat.obj"  # collinear triangles only: no surface
    flat.write_text("v 0 0 0\nv 1 0 0\nv 2 0 0\nv 3 0 0\nf 1 2 3\nf 2 3 4\n")
    assert matcher_only.hash(flat) == []
    (record,) = matcher_only.scan(flat)
    assert (record.verdict, record.reason) == ("unscannable", "empty")
    from scanner.enrol import enrol
    from scanner.library import SignatureLibrary

    (result,) = enrol(SignatureLibrary.create(tmp_path / "lib"), flat, "barrel", "t")
    assert result.status == "unreadable:empty"
