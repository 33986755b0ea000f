"""quarantine_once: the daemon's move, replayed after a crash at every step, never doubles."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path

import pytest

from scanner.sinks import quarantine as Q
from scanner.sinks.quarantine import ContentChanged, QuarantineError, SourceGone, quarantine_once
from scanner.verdict import Verdict

DATA = b"solid proxy\nendsolid\n"
SHA = hashlib.sha256(DATA).hexdigest()


def verdicts(path: Path) -> list[Verdict]:
    return [Verdict(path=str(path), member=None, verdict="flag", sha256=SHA, category="barrel")]


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path, Path]:
    root, dest = tmp_path / "up", tmp_path / "q"
    (root / "user").mkdir(parents=True)
    src = root / "user" / "part.stl"
    src.write_bytes(DATA)
    return root, dest, src


def files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_moves_keeping_relative_path_with_sidecar_and_replay_is_a_no_op(tree: tuple[Path, Path, Path]) -> None:
    root, dest, src = tree
    target = quarantine_once(src, root, dest, verdicts(src), "id-1", SHA)
    assert target == dest / "user" / "part.stl" and target.read_bytes() == DATA and not src.exists()
    side = json.loads((dest / "user" / "part.stl.meshscan.json").read_text())
    assert side["action_id"] == "id-1" and side["verdicts"][0]["verdict"] == "flag" and side["sha256"] == SHA
    assert quarantine_once(src, root, dest, verdicts(src), "id-1", SHA) == target  # replay: already done
    assert files(dest) == ["user/part.stl", "user/part.stl.meshscan.json"]


def test_never_overwrites_and_another_action_gets_another_name(tree: tuple[Path, Path, Path]) -> None:
    root, dest, src = tree
    (dest / "user").mkdir(parents=True)
    (dest / "user" / "part.stl").write_bytes(b"someone else's")
    target = quarantine_once(src, root, dest, verdicts(src), "id-1", SHA)
    assert target.name == "part.stl.1" and (dest / "user" / "part.stl").read_bytes() == b"someone else's"
    src.write_bytes(DATA)  # the same content uploaded again later is a new upload: quarantined again
    assert quarantine_once(src, root, dest, verdicts(src), "id-2", SHA).name == "part.stl.2"


@pytest.mark.parametrize("crash_after", ["sidecar", "link", "copy"])
def test_replay_after_a_crash_at_each_step_finishes_the_move_once(
    tree: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch, crash_after: str
) -> None:
    root, dest, src = tree

    class Crash(BaseException):
        pass

    real_link, real_unlink = os.link, os.unlink

    def link(a, b, **kw):  # noqa: ANN001, ANN003, ANN202
        if str(a) == str(src):
            if crash_after == "sidecar":
                raise Crash
            if crash_after == "copy":
                raise OSError(errno.EXDEV, "cross-device")
        return real_link(a, b, **kw)

    def unlink(p, **kw):  # noqa: ANN001, ANN003, ANN202
        if str(p) == str(src) and crash_after in ("link", "copy"):
            raise Crash
        return real_unlink(p, **kw)

    monkeypatch.setattr(os, "link", link)
    monkeypatch.setattr(os, "unlink", unlink)
    with pytest.raises(Crash):
        quarantine_once(src, root, dest, verdicts(src), "id-1", SHA)
    monkeypatch.undo()
    assert src.exists()
    target = quarantine_once(src, root, dest, verdicts(src), "id-1", SHA)
    assert target == dest / "user" / "part.stl" and target.read_bytes() == DATA and not src.exists()
    assert files(dest) == ["user/part.stl", "user/part.stl.meshscan.json"]


def test_across_filesystems_copy_is_durable_and_complete(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs a second filesystem (/dev/shm)")
    root = tmp_path / "up"
    root.mkdir()
    src = root / "big.stl"
    src.write_bytes(DATA * 1000)
    digest = hashlib.sha256(DATA * 1000).hexdigest()
    dest = Path(os.environ.get("TMPDIR_SHM", shm)) / f"meshscan-test-{os.getpid()}-{tmp_path.name}"
    try:
        target = quarantine_once(src, root, dest, verdicts(src), "id-x", digest)
        assert target.read_bytes() == DATA * 1000 and not src.exists()
        assert files(dest) == ["big.stl", "big.stl.meshscan.json"]
    finally:
        import shutil

        shutil.rmtree(dest, ignore_errors=True)


def test_refuses_symlinks_and_paths_resolving_out_of_the_tree(tmp_path: Path) -> None:
    root, dest = tmp_path / "up", tmp_path / "q"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.stl").write_bytes(DATA)
    root.mkdir()
    (root / "link.stl").symlink_to(outside / "secret.stl")
    (root / "escape").symlink_to(outside, target_is_directory=True)
    with pytest.raises(QuarantineError, match="symbolic link"):
        quarantine_once(root / "link.stl", root, dest, [], "a", SHA)
    with pytest.raises(QuarantineError, match="outside the watched folder"):
        quarantine_once(root / "escape" / "secret.stl", root, dest, [], "b", SHA)
    assert (outside / "secret.stl").read_bytes() == DATA and not dest.exists()


def test_changed_or_vanished_content_is_not_moved(tree: tuple[Path, Path, Path]) -> None:
    root, dest, src = tree
    src.write_bytes(b"new content")
    with pytest.raises(ContentChanged):
        quarantine_once(src, root, dest, verdicts(src), "id-1", SHA)
    assert src.read_bytes() == b"new content" and files(dest) == []
    src.unlink()
    with pytest.raises(SourceGone):
        quarantine_once(src, root, dest, verdicts(src), "id-1", SHA)


def test_scan_mode_quarantine_is_unchanged(tree: tuple[Path, Path, Path]) -> None:
    root, dest, src = tree
    target = Q.quarantine(src, root, dest, verdicts(src), move=False)
    assert target.read_bytes() == DATA and src.exists()
    assert "action_id" not in json.loads(Path(str(target) + ".meshscan.json").read_text())
