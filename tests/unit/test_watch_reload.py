"""The watch daemon's library check (:class:`scanner.watch.reload.LibraryWatch`): a changed
library is loaded through the folder its path resolves to, a rewrite with the same content is
not a change, a library that cannot be used is refused once (not every second), and a path
that is gone for a moment keeps the running library."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from scanner import library_change
from scanner.features import DESCRIPTOR_SIZE
from scanner.library import Signature, SignatureLibrary
from scanner.watch.reload import LibraryWatch, Refusal


def library(folder: Path, *ids: str) -> SignatureLibrary:
    lib = SignatureLibrary.create(folder, name="reload")
    for n, sid in enumerate(ids):
        sig = Signature(sid, "barrel", "test", "2026-01-01T00:00:00+00:00", geometry_hash=f"{n:064x}")
        lib.add(sig, np.full((1, DESCRIPTOR_SIZE), n, dtype=np.float32), [-1], np.zeros(1, dtype=np.float32))
    lib.save(folder)
    return lib


def point(link: Path, folder: Path) -> None:
    """Swap ``link`` to ``folder`` with one rename, as ``signatures update`` does."""
    tmp = link.parent / f".{link.name}.tmp"
    os.symlink(folder, tmp)
    os.replace(tmp, link)


def test_a_swapped_symlink_is_loaded_once_and_a_bad_library_refused_once(tmp_path: Path) -> None:
    first = library(tmp_path / "v1", "ms-a")
    link = tmp_path / "subscribed"
    point(link, tmp_path / "v1")
    watch = LibraryWatch(link, first.library_version)
    assert watch.check() is None  # the start-up look: the version running
    assert watch.check() is None

    second = library(tmp_path / "v2", "ms-a", "ms-b")
    point(link, tmp_path / "v2")
    found = watch.check()
    assert isinstance(found, SignatureLibrary) and found.library_version == second.library_version
    assert found.path == (tmp_path / "v2").resolve() and [s.id for s in found.signatures] == ["ms-a", "ms-b"]
    watch.accepted(found.library_version)
    assert watch.check() is None

    library(tmp_path / "empty")
    point(link, tmp_path / "empty")
    refused = watch.check()
    assert isinstance(refused, Refusal) and "holds no signatures" in refused.error
    assert watch.check() is None  # said once; looked at again when it changes

    broken = library(tmp_path / "broken", "ms-c")
    (tmp_path / "broken" / "rows.npy").write_bytes(b"not the checksummed rows")
    point(link, tmp_path / "broken")
    refused = watch.check()
    assert isinstance(refused, Refusal) and "failed verification" in refused.error
    assert refused.library_version == broken.library_version

    os.unlink(link)
    assert watch.check() is None  # gone: keep scanning with the running library
    point(link, tmp_path / "v2")
    assert watch.check() is None  # back, holding the version running


def test_a_folder_rewritten_in_place_is_a_change_only_when_its_content_is(tmp_path: Path) -> None:
    lib = library(tmp_path / "lib", "ms-a")
    watch = LibraryWatch(tmp_path / "lib", lib.library_version)
    assert watch.check() is None
    SignatureLibrary.load(tmp_path / "lib").save()  # same records: same version
    assert watch.check() is None
    library(tmp_path / "lib", "ms-a", "ms-b")
    found = watch.check()
    assert isinstance(found, SignatureLibrary) and len(found) == 2


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_transient_load_failure_is_retried_once_a_second_and_logged_sparingly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    first = library(tmp_path / "v1", "ms-a")
    link = tmp_path / "subscribed"
    point(link, tmp_path / "v1")
    watch = LibraryWatch(link, first.library_version)
    watch.changes.clock = clock = Clock()
    assert watch.check() is None

    second = library(tmp_path / "v2", "ms-a", "ms-b")
    point(link, tmp_path / "v2")
    real_load, calls = SignatureLibrary.load, []

    def flaky(path: Path, *args: object) -> SignatureLibrary:
        calls.append(path)
        if len(calls) <= 5:
            raise PermissionError(13, "Permission denied", str(path / "rows.npy"))
        return real_load(path, *args)

    monkeypatch.setattr(library_change, "LOG_EVERY", 2)
    monkeypatch.setattr(SignatureLibrary, "load", flaky)
    caplog.set_level(logging.INFO, logger="meshscan.watch")
    for attempt in range(1, 6):
        assert watch.check() is None  # not refused: the running library stays, tried again
        assert len(calls) == attempt and watch.changes.failures == attempt
        assert watch.check() is None and len(calls) == attempt  # not before a second has passed
        clock.now += 1.0
    found = watch.check()
    assert isinstance(found, SignatureLibrary) and found.library_version == second.library_version
    assert watch.changes.failures == 0 and watch.check() is None and len(calls) == 6
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [w.split("failure ")[1].split(";")[0] for w in warnings] == ["1", "2", "4"]
    assert all("Permission denied" in w for w in warnings)
    assert any("loaded after 5 transient failure(s)" in r.getMessage() for r in caplog.records)


def test_a_folder_pruned_during_the_load_is_not_refused_and_the_new_one_is_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = library(tmp_path / "v1", "ms-a")
    link = tmp_path / "subscribed"
    point(link, tmp_path / "v1")
    watch = LibraryWatch(link, first.library_version)
    watch.changes.clock = clock = Clock()
    assert watch.check() is None
    library(tmp_path / "v2", "ms-a", "ms-b")
    third = library(tmp_path / "v3", "ms-a", "ms-b", "ms-c")
    point(link, tmp_path / "v2")
    real_load = SignatureLibrary.load

    def racing(path: Path, *args: object) -> SignatureLibrary:
        if Path(path).name == "v2":  # another update swaps to v3 and prunes v2 meanwhile
            point(link, tmp_path / "v3")
            shutil.rmtree(tmp_path / "v2")
        return real_load(path, *args)

    monkeypatch.setattr(SignatureLibrary, "load", racing)
    assert watch.check() is None and watch.changes.failures == 1
    clock.now += 1.0
    found = watch.check()
    assert isinstance(found, SignatureLibrary) and found.library_version == third.library_version
