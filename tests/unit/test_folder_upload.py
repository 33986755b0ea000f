"""A local folder read as one upload (scanner/formats/folder.py): its identity, its limits, and
that nothing outside it is read."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from scanner.config import Limits
from scanner.errors import IO_ERROR, LIMIT_BYTES, UNSAFE_PATH, UnreadableInput
from scanner.formats.folder import FolderBlob
from scanner.loading import iter_meshes, open_upload
from tests.conftest import REPO

DEMO = REPO / "fixtures" / "demo"


def _project(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    shutil.copy(DEMO / "benign-cup-s1-000.stl", root / "b.stl")
    shutil.copy(DEMO / "benign-block-s1-001.3mf", root / "sub" / "a.3mf")
    return root


def test_the_manifest_names_the_files_wherever_the_folder_lies(tmp_path: Path) -> None:
    one = _project(tmp_path / "one")
    two = tmp_path / "elsewhere" / "two"
    shutil.copytree(one, two)
    first = open_upload(one).sha256
    assert first is not None and len(first) == 64
    assert open_upload(two).sha256 == first  # same files, same names
    (two / "sub" / "a.3mf").rename(two / "sub" / "c.3mf")
    assert open_upload(two).sha256 != first  # a renamed member is another upload
    shutil.copytree(one, tmp_path / "three")
    (tmp_path / "three" / "b.stl").write_bytes((one / "b.stl").read_bytes() + b"\0")
    assert open_upload(tmp_path / "three").sha256 != first  # and so is a changed one


def test_members_are_every_file_in_order_named_under_the_folder(tmp_path: Path) -> None:
    root = _project(tmp_path / "p")
    members = [r.member for r in iter_meshes(root)]
    assert members[0] == "b.stl" and all(m.startswith("sub/a.3mf") for m in members[1:])
    assert all(r.mesh is not None for r in iter_meshes(root))


def test_the_folder_total_is_the_archive_budget(tmp_path: Path) -> None:
    root = _project(tmp_path / "p")
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    results = list(iter_meshes(root, Limits(max_uncompressed_bytes=total - 1)))
    assert results[-1].error is not None and results[-1].error.reason == LIMIT_BYTES
    assert results[-1].member is None  # the upload as a whole stops, not one member


def test_a_link_is_a_member_that_cannot_be_read(tmp_path: Path) -> None:
    root = _project(tmp_path / "p")
    outside = tmp_path / "outside.stl"
    shutil.copy(DEMO / "benign-cup-s1-000.stl", outside)
    (root / "z.stl").symlink_to(outside)
    link = {r.member: r for r in iter_meshes(root)}["z.stl"]  # a folder's files before its subfolders'
    assert link.mesh is None and link.error.reason == UNSAFE_PATH


def test_a_folder_blob_has_no_bytes_of_its_own(tmp_path: Path) -> None:
    blob = FolderBlob(str(tmp_path))
    assert blob.head(100) == b"" and blob.size == 0
    with pytest.raises(Exception, match="no bytes of its own"):
        blob.open()


def test_a_subfolder_that_cannot_be_listed_stops_the_upload(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _project(tmp_path / "p")
    real_scandir = os.scandir

    def scandir(path):  # noqa: ANN001, ANN202 - as os.walk calls it
        if os.fspath(path).endswith("sub"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)  # root reads everything: a refused listing is simulated
    results = list(iter_meshes(root))
    assert results[-1].member is None and results[-1].error.reason == IO_ERROR
    assert "cannot list sub" in results[-1].error.detail


def test_a_file_swapped_for_a_link_after_the_walk_is_not_read(tmp_path: Path) -> None:
    from scanner.formats.folder import _FolderFile

    root = _project(tmp_path / "p")
    member = _FolderFile(str(root / "b.stl"), 1 << 30)  # seen as a regular file
    (root / "b.stl").unlink()
    (root / "b.stl").symlink_to(DEMO / "benign-cup-s1-000.stl")
    with pytest.raises(UnreadableInput) as err:
        member.open()
    assert err.value.reason == UNSAFE_PATH


def test_a_file_over_the_limit_is_named_by_its_size_not_hashed(tmp_path: Path) -> None:
    root = _project(tmp_path / "p")
    (root / "huge.bin").write_bytes(b"\1" * 5000)
    upload = open_upload(root, Limits(max_file_bytes=4096))
    first = upload.sha256
    (root / "huge.bin").write_bytes(b"\2" * 5000)  # same size, other bytes: never read
    assert open_upload(root, Limits(max_file_bytes=4096)).sha256 == first
    assert open_upload(root).sha256 != first  # under the default limit it is hashed
    huge = {r.member: r for r in iter_meshes(root, Limits(max_file_bytes=4096))}["huge.bin"]
    assert huge.error.reason == LIMIT_BYTES
