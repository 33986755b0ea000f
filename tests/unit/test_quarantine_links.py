"""Quarantine never follows links planted in the quarantine folder: both ``quarantine`` (scan
--move/--copy) and ``quarantine_once`` (watch) write only inside it, a link on a file name is a
taken name, and a link (or a file) on a folder name is skipped for ``name.1``."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from scanner.sinks.quarantine import QuarantineError, quarantine, quarantine_once
from scanner.verdict import Verdict

DATA = b"solid proxy\nendsolid\n"
SHA = hashlib.sha256(DATA).hexdigest()


def verdicts(path: Path) -> list[Verdict]:
    return [Verdict(path=str(path), member=None, verdict="flag", sha256=SHA, category="barrel")]


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    """(upload root, quarantine, the upload up/user/part.stl, a folder outside both)."""
    root, dest, outside = tmp_path / "up", tmp_path / "q", tmp_path / "elsewhere"
    (root / "user").mkdir(parents=True)
    dest.mkdir()
    outside.mkdir()
    src = root / "user" / "part.stl"
    src.write_bytes(DATA)
    return root, dest, src, outside


def everything(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def move(kind: str, src: Path, root: Path, dest: Path, action: str = "id-1") -> Path:
    if kind == "scan":
        return quarantine(src, root, dest, verdicts(src), move=True)
    return quarantine_once(src, root, dest, verdicts(src), action, SHA)


KINDS = ["scan", "watch"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_folder_link_is_skipped_for_a_free_folder_name(kind: str, tree) -> None:  # noqa: ANN001
    root, dest, src, outside = tree
    (dest / "user").symlink_to(outside, target_is_directory=True)
    target = move(kind, src, root, dest)
    assert target == dest / "user.1" / "part.stl" and target.read_bytes() == DATA and not src.exists()
    side = json.loads((dest / "user.1" / "part.stl.meshscan.json").read_text())
    assert side["verdicts"][0]["verdict"] == "flag"
    assert everything(outside) == [] and (dest / "user").is_symlink()


@pytest.mark.parametrize("kind", KINDS)
def test_a_dangling_file_link_is_a_taken_name(kind: str, tree) -> None:  # noqa: ANN001
    root, dest, src, outside = tree
    (dest / "user").mkdir()
    (dest / "user" / "part.stl").symlink_to(outside / "created-by-us.stl")
    target = move(kind, src, root, dest)
    assert target == dest / "user" / "part.stl.1" and target.read_bytes() == DATA and not src.exists()
    assert (dest / "user" / "part.stl.1.meshscan.json").is_file()
    assert everything(outside) == [] and os.readlink(dest / "user" / "part.stl") == str(outside / "created-by-us.stl")


@pytest.mark.parametrize("kind", KINDS)
def test_links_on_the_sidecar_name_or_to_a_file_are_taken_names(kind: str, tree) -> None:  # noqa: ANN001
    root, dest, src, outside = tree
    victim = outside / "victim.json"
    victim.write_text("keep")
    (dest / "user").mkdir()
    (dest / "user" / "part.stl.meshscan.json").symlink_to(victim)  # sidecar name: a live link
    (dest / "user" / "part.stl.1").symlink_to(victim)  # file name: a live link
    target = move(kind, src, root, dest)
    assert target == dest / "user" / "part.stl.2" and target.read_bytes() == DATA
    assert victim.read_text() == "keep" and everything(outside) == ["victim.json"]


@pytest.mark.parametrize("kind", KINDS)
def test_nested_links_and_files_on_folder_names(kind: str, tmp_path: Path) -> None:
    root, dest, outside = tmp_path / "up", tmp_path / "q", tmp_path / "elsewhere"
    (root / "a" / "b").mkdir(parents=True)
    src = root / "a" / "b" / "part.stl"
    src.write_bytes(DATA)
    outside.mkdir()
    dest.mkdir()
    (dest / "a").symlink_to(outside, target_is_directory=True)
    (dest / "a.1").symlink_to(tmp_path / "nowhere")  # dangling folder link
    (dest / "a.2").mkdir()
    (dest / "a.2" / "b").write_bytes(b"a file where a folder would go")
    target = move(kind, src, root, dest)
    assert target == dest / "a.2" / "b.1" / "part.stl" and target.read_bytes() == DATA
    assert everything(outside) == [] and not (tmp_path / "nowhere").exists()


def test_a_replay_finds_its_reservation_behind_a_skipped_folder_link(tree, monkeypatch) -> None:  # noqa: ANN001
    """Interrupted after reserving (the sidecar is written) in ``user.1``: the replay walks the
    same way, finds the reservation and finishes the move once."""
    root, dest, src, outside = tree
    (dest / "user").symlink_to(outside, target_is_directory=True)

    class Crash(BaseException):
        pass

    real_link = os.link

    def link(a, b, **kw):  # noqa: ANN001, ANN003, ANN202
        if str(a) == str(src):
            raise Crash
        return real_link(a, b, **kw)

    monkeypatch.setattr(os, "link", link)
    with pytest.raises(Crash):
        quarantine_once(src, root, dest, verdicts(src), "id-1", SHA)
    monkeypatch.undo()
    assert everything(dest / "user.1") == ["part.stl.meshscan.json"]
    target = quarantine_once(src, root, dest, verdicts(src), "id-1", SHA)
    assert target == dest / "user.1" / "part.stl" and not src.exists()
    assert everything(dest / "user.1") == ["part.stl", "part.stl.meshscan.json"] and everything(outside) == []
    assert quarantine_once(src, root, dest, verdicts(src), "id-1", SHA) == target  # and again: a no-op


def test_a_fifo_on_the_sidecar_name_is_not_read(tree) -> None:  # noqa: ANN001
    """Looking for an earlier reservation never opens anything but a regular file (a FIFO
    would block the daemon)."""
    root, dest, src, _ = tree
    (dest / "user").mkdir()
    os.mkfifo(dest / "user" / "part.stl.meshscan.json")
    target = quarantine_once(src, root, dest, verdicts(src), "id-1", SHA)
    assert target == dest / "user" / "part.stl.1" and target.read_bytes() == DATA


@pytest.mark.parametrize("kind", KINDS)
def test_a_symlinked_quarantine_root_is_the_operators_choice(kind: str, tree, tmp_path: Path) -> None:  # noqa: ANN001
    root, _, src, _ = tree
    real = tmp_path / "real-q"
    real.mkdir()
    (tmp_path / "q-link").symlink_to(real, target_is_directory=True)
    target = move(kind, src, root, tmp_path / "q-link")
    assert target == tmp_path / "q-link" / "user" / "part.stl"
    assert (real / "user" / "part.stl").read_bytes() == DATA and (real / "user" / "part.stl.meshscan.json").exists()


def test_a_dangling_quarantine_root_is_a_clear_error(tree, tmp_path: Path) -> None:  # noqa: ANN001
    root, _, src, _ = tree
    (tmp_path / "q-dangling").symlink_to(tmp_path / "gone")
    with pytest.raises(QuarantineError, match="cannot open the quarantine folder"):
        quarantine(src, root, tmp_path / "q-dangling", verdicts(src), move=True)
    assert src.read_bytes() == DATA and not (tmp_path / "gone").exists()


def test_copy_mode_through_a_planted_link_leaves_the_original(tree) -> None:  # noqa: ANN001
    root, dest, src, outside = tree
    (dest / "user").symlink_to(outside, target_is_directory=True)
    target = quarantine(src, root, dest, verdicts(src), move=False)
    assert target == dest / "user.1" / "part.stl" and target.read_bytes() == DATA and src.read_bytes() == DATA
    assert everything(outside) == []
