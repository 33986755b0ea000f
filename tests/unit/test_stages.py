"""The stages of one scan hand values down (issue 17, item 3): the upload is opened once with
its hash and members; each mesh's descriptor is computed at most once and only when a rule
needs it; the policy is an ordered tuple of rules whose first decision wins; the verdict is
built from that decision. Real files from the demo fixtures, scanned by the real ``scan_one``."""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import scanner.shape
from scanner.classify.model import load_model
from scanner.config import Limits, Settings
from scanner.enrol import enrol
from scanner.errors import IO_ERROR, LIMIT_BODIES, UnreadableInput
from scanner.library import AllowEntry, SignatureLibrary
from scanner.loading import iter_meshes, load, open_upload
from scanner.pipeline import ScanContext, scan_one
from scanner.policy import RULES, Case, Decision, clear, decide
from scanner.shape import Shape
from scanner.util import utc_now
from scanner.verdict import CLEAR, FLAG, REVIEW, UNSCANNABLE
from tests.conftest import REPO
from tests.unit._builders import binary_stl, soup, unit_cube

DEMO = REPO / "fixtures" / "demo"
KNOWN = "proxy-barrel-s1-001.stl"
BENIGN = "benign-cup-s1-000.stl"


@pytest.fixture
def uploads(tmp_path: Path) -> Path:
    up = tmp_path / "up"
    up.mkdir()
    for name in (KNOWN, BENIGN):
        shutil.copy(DEMO / name, up / name)
    return up


@pytest.fixture
def library(tmp_path: Path) -> SignatureLibrary:
    lib = SignatureLibrary.create(tmp_path / "lib")
    (result,) = enrol(lib, DEMO / KNOWN, "barrel", "test")
    assert result.status == "added"
    return lib


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How often the shape stage described a mesh, described its whole surface alone and
    built a classifier row."""
    calls = {"describe": 0, "describe_triangles": 0, "feature_row": 0}

    def counting(name: str, fn: Callable) -> Callable:
        def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            calls[name] += 1
            return fn(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(scanner.shape, "describe", counting("describe", scanner.shape.describe))
    monkeypatch.setattr(scanner.shape, "feature_row", counting("feature_row", scanner.shape.feature_row))
    whole_only = counting("describe_triangles", scanner.shape.describe_triangles)
    monkeypatch.setattr(scanner.shape, "describe_triangles", whole_only)
    return calls


# ----------------------------------------------------------------------------- loading


def test_an_opened_upload_carries_its_hash_and_members(tmp_path: Path) -> None:
    data = (DEMO / KNOWN).read_bytes()
    archive = tmp_path / "two.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.stl", data)
        zf.writestr("b/c.stl", (DEMO / BENIGN).read_bytes())
    upload = open_upload(archive)
    assert upload.sha256 == hashlib.sha256(archive.read_bytes()).hexdigest()
    members = [(r.member, r.format, r.mesh.triangle_count) for r in upload.members()]
    assert [m for m, _, _ in members] == ["a.stl", "b/c.stl"]
    # iter_meshes is the same reader, not a copy of it
    assert [(r.member, r.format, r.mesh.triangle_count) for r in iter_meshes(archive)] == members
    assert members[0][2] == load(DEMO / KNOWN).triangle_count


def test_an_upload_that_cannot_be_opened_raises_and_iter_meshes_says_why(tmp_path: Path) -> None:
    with pytest.raises(UnreadableInput) as caught:
        open_upload(tmp_path / "missing.stl")
    assert caught.value.reason == IO_ERROR
    (result,) = iter_meshes(tmp_path / "missing.stl")
    assert result.mesh is None and result.error is not None and result.error.reason == IO_ERROR


# ----------------------------------------------------------------------------- shape


def test_a_shape_computes_each_value_once(counted: dict[str, int]) -> None:
    shape = Shape.of(load(DEMO / KNOWN), Limits().max_bodies)
    rows = shape.rows
    assert shape.rows is rows and shape.descriptor is shape.descriptor
    assert shape.whole is shape.descriptor.whole  # the classifier reuses matching's vector
    assert shape.classifier_row is shape.classifier_row
    assert counted == {"describe": 1, "describe_triangles": 0, "feature_row": 1}


def test_a_scan_describes_a_mesh_once_for_matching_and_the_classifier(
    uploads: Path, library: SignatureLibrary, counted: dict[str, int]
) -> None:
    context = ScanContext(library=library, model=load_model())
    (v,) = scan_one(uploads / BENIGN, context)
    assert v.verdict in (CLEAR, REVIEW) and v.scores and v.distance_threshold is not None
    assert counted == {"describe": 1, "describe_triangles": 0, "feature_row": 1}


def test_with_an_empty_library_the_classifier_describes_only_the_whole_surface(
    uploads: Path, tmp_path: Path, counted: dict[str, int]
) -> None:
    context = ScanContext(library=SignatureLibrary.create(tmp_path / "empty"), model=load_model())
    (v,) = scan_one(uploads / BENIGN, context)
    assert "the signature library is empty" in v.explanation and v.distance_threshold is None and v.scores
    assert counted == {"describe": 0, "describe_triangles": 1, "feature_row": 1}


def test_an_exact_or_allowlisted_file_is_never_described(
    uploads: Path, library: SignatureLibrary, counted: dict[str, int]
) -> None:
    (v,) = scan_one(uploads / KNOWN, ScanContext(library=library))
    assert v.verdict == FLAG and v.matches[0].kind == "sha256"
    library.allow(AllowEntry(None, load(uploads / BENIGN).geometry_hash, utc_now(), note="a cup"))
    (v,) = scan_one(uploads / BENIGN, ScanContext(library=library))
    assert (v.verdict, v.explanation) == (CLEAR, "on the allowlist of known-benign files (a cup)")
    assert v.distance_threshold is None and not v.scores
    assert counted == {"describe": 0, "describe_triangles": 0, "feature_row": 0}


# ----------------------------------------------------------------------------- policy


def test_the_rules_run_in_the_documented_order() -> None:
    names = [rule.__name__ for rule in RULES]
    assert names == ["exact_match", "allowlisted", "near_duplicate", "local_patches", "classifier_review", "clear"]


def test_an_exact_match_beats_an_allowlist_entry(uploads: Path, library: SignatureLibrary) -> None:
    # a merged or mistaken entry naming the known file itself (allow() refuses it; a library
    # merged from elsewhere may still hold one)
    library.allowlist.append(AllowEntry(hashlib.sha256((uploads / KNOWN).read_bytes()).hexdigest(), None, utc_now()))
    (v,) = scan_one(uploads / KNOWN, ScanContext(library=library))
    assert v.verdict == FLAG and v.category == "barrel"
    assert v.explanation.endswith(
        "; it is also on the allowlist, but an exact signature match wins over an allowlist entry"
    )


def test_the_first_rule_that_decides_wins(library: SignatureLibrary) -> None:
    mesh = load(DEMO / KNOWN)
    case = Case(None, mesh.geometry_hash, Shape.of(mesh, 10), ScanContext(library=library))
    assert decide(case).verdict == FLAG  # the geometry hash is enrolled
    assert decide(case, (lambda c: None, clear)).verdict == CLEAR
    assert decide(case, (lambda c: Decision(REVIEW, "stop"), clear)) == Decision(REVIEW, "stop")


# ----------------------------------------------------------------------------- verdict


def test_a_mesh_that_cannot_be_described_keeps_what_was_measured(tmp_path: Path, library: SignatureLibrary) -> None:
    """limit:bodies is raised by the descriptor, after the identity was measured and matching
    began: the unscannable record carries the hash, the size and the cap in force."""
    cubes = np.concatenate([soup(*unit_cube((3.0 * i, 0.0, 0.0))) for i in range(3)])
    path = tmp_path / "three.stl"
    path.write_bytes(binary_stl(cubes))
    settings = Settings(limits=Limits(max_bodies=2))
    (v,) = scan_one(path, ScanContext(settings=settings, library=library))
    assert (v.verdict, v.reason) == (UNSCANNABLE, LIMIT_BODIES)
    assert v.explanation.startswith(f"could not be read ({LIMIT_BODIES}): ")
    assert (v.triangles, v.bodies) == (36, 3) and v.geometry_hash
    assert v.distance_threshold == settings.match.distance_threshold
    assert not v.matches and not v.scores and v.category is None
