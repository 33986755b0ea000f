"""The library change detection ``watch`` and ``serve --reload-library`` share
(:mod:`scanner.library_change`): a swap to another folder is a change even when its manifest
has the same mtime, size and inode; a bad library and a transient failure are told apart; and
``serve``'s poll uses it - it sees such a swap and retries a transient failure."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from scanner.api import Scanner
from scanner.library import LibraryError, SignatureLibrary
from scanner.library_change import ChangeDetector, LibraryUnavailable, library_stamp, load_library
from scanner.serve.reload import LibraryHolder
from tests.unit.test_watch_reload import library, point

log = logging.getLogger("test")


def twin(source: Path, folder: Path) -> None:
    """``folder``: a copy of the library ``source`` whose manifest is the same file (hard link):
    the same mtime, size and inode - only the folder differs."""
    folder.mkdir()
    for item in source.iterdir():
        os.link(item, folder / item.name)


def test_a_swap_to_a_folder_with_the_same_manifest_stat_is_a_change(tmp_path: Path) -> None:
    library(tmp_path / "v1", "ms-a")
    twin(tmp_path / "v1", tmp_path / "v2")
    link = tmp_path / "subscribed"
    point(link, tmp_path / "v1")
    changes = ChangeDetector(link, log)
    before = changes.pending()
    assert before is not None and before[0] == str((tmp_path / "v1").resolve())
    changes.seen(before)
    assert changes.pending() is None
    point(link, tmp_path / "v2")
    after = changes.pending()
    assert after is not None and after[1:] == before[1:]  # the manifest's stat alone cannot tell
    assert after[0] == str((tmp_path / "v2").resolve())
    assert load_library(link, after).path == (tmp_path / "v2").resolve()
    os.unlink(link)
    assert library_stamp(link) is None and changes.pending() is None


def test_a_bad_library_is_not_transient_and_an_oserror_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    library(tmp_path / "lib", "ms-a")
    (tmp_path / "lib" / "rows.npy").write_bytes(b"not the checksummed rows")
    with pytest.raises(LibraryError) as exc:
        load_library(tmp_path / "lib")
    assert not isinstance(exc.value, LibraryUnavailable) and "failed verification" in str(exc.value)

    def unreadable(path: Path, *args: object) -> SignatureLibrary:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(SignatureLibrary, "load", unreadable)
    with pytest.raises(LibraryUnavailable, match="Permission denied"):
        load_library(tmp_path / "lib")


def wait_until(condition, seconds: float = 20.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_serve_polls_with_the_shared_detection_and_retries_a_transient_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = library(tmp_path / "v1", "ms-a")
    link = tmp_path / "subscribed"
    point(link, tmp_path / "v1")
    holder = LibraryHolder(Scanner(library=SignatureLibrary.load(link)), 1, link, poll_seconds=0.05)
    try:
        holder.start()
        twin(tmp_path / "v1", tmp_path / "v1-twin")
        point(link, tmp_path / "v1-twin")  # same manifest stat, other folder: seen, nothing to swap
        wait_until(lambda: holder.attempts == 1)
        assert holder.last.trigger == "manifest changed" and holder.last.ok and not holder.last.swapped
        assert holder.current.scanner.library_version == first.library_version

        second = library(tmp_path / "v2", "ms-a", "ms-b")
        real_load, calls = SignatureLibrary.load, []

        def flaky(path: Path, *args: object) -> SignatureLibrary:
            calls.append(time.monotonic())
            if len(calls) <= 2:  # pruned under it, twice
                raise FileNotFoundError(2, "No such file or directory", str(path / "rows.npy"))
            return real_load(path, *args)

        monkeypatch.setattr(SignatureLibrary, "load", flaky)
        point(link, tmp_path / "v2")
        wait_until(lambda: holder.current.scanner.library_version == second.library_version)
        assert len(calls) == 3 and holder.attempts == 4
        assert min(b - a for a, b in zip(calls, calls[1:], strict=False)) >= 0.95  # once a second
        assert "last" in holder.status()["library_reload"]
        assert "transient" not in holder.status()["library_reload"]["last"]
    finally:
        holder.close()
