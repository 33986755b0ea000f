"""A small local upload is read once: its verdict and its sha256 come from the same bytes.

Why: a file was opened up to four times (format sniff, appended-zip test, triangles, sha256),
so one rewritten between reads - the watch daemon scans folders others write to - could be
judged by one content and recorded under the other's hash. Larger files, and anything that is
not a regular file, are still read lazily (never held whole)."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from scanner import sources
from scanner.errors import LIMIT_BYTES, UnreadableInput
from scanner.formats.blob import BytesBlob, FileBlob
from scanner.loading import open_upload


def _stl(path: Path, triangles: int, seed: int) -> bytes:
    from bench.throughput import blob_stl

    blob_stl(path, triangles, np.random.default_rng(seed))
    return path.read_bytes()


def test_a_file_rewritten_after_opening_is_judged_and_hashed_as_opened(tmp_path: Path) -> None:
    path = tmp_path / "part.stl"
    first = _stl(path, 1200, 1)
    upload = open_upload(path)
    assert isinstance(upload.blob, BytesBlob)
    meshes = [r.mesh for r in upload.members()]
    second = _stl(path, 2400, 2)  # rewritten between the parse and the hash
    assert first != second
    assert upload.sha256 == hashlib.sha256(first).hexdigest()
    assert [m.triangle_count for m in meshes] == [1200]
    assert [r.mesh.triangle_count for r in upload.members()] == [1200]  # read again: the same bytes


def test_larger_files_are_streamed_not_held(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "part.stl"
    data = _stl(path, 1200, 3)
    monkeypatch.setattr(sources, "READ_WHOLE_BYTES", len(data) - 1)
    upload = open_upload(path)
    assert isinstance(upload.blob, FileBlob)
    assert upload.sha256 == hashlib.sha256(data).hexdigest()
    assert [r.mesh.triangle_count for r in upload.members()] == [1200]
    monkeypatch.setattr(sources, "READ_WHOLE_BYTES", len(data))
    assert isinstance(open_upload(path).blob, BytesBlob)


def test_the_size_limit_holds_either_way(tmp_path: Path) -> None:
    from scanner.config import Limits

    path = tmp_path / "part.stl"
    data = _stl(path, 1200, 4)
    with pytest.raises(UnreadableInput) as err:
        open_upload(path, Limits(max_file_bytes=len(data) - 1))
    assert err.value.reason == LIMIT_BYTES
    assert isinstance(open_upload(path, Limits(max_file_bytes=len(data))).blob, BytesBlob)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this system")
def test_a_named_pipe_is_not_read_at_opening(tmp_path: Path) -> None:
    """A pipe's stat size says nothing of what it holds: reading it whole could block forever,
    so it is left to the lazy reader (and the scan's time limit), as before."""
    fifo = tmp_path / "pipe.stl"
    os.mkfifo(fifo)
    done: list[object] = []
    opener = threading.Thread(target=lambda: done.append(open_upload(fifo).blob), daemon=True)
    opener.start()
    opener.join(10)
    assert done and isinstance(done[0], FileBlob) and not done[0].regular


def test_a_known_part_flags_read_once_or_streamed_and_swapping_it_out_after_opening_does_not_clear_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An enrolled proxy flags whether its bytes are read once or streamed, with the same
    verdict; and an uploader who swaps a benign file in once the scan has opened the part gets
    the part's verdict under the part's hash, not a clear under either."""
    from scanner.config import Settings
    from scanner.context import ContextSpec, settings_json
    from scanner.pipeline import scan_one
    from tests.conftest import REPO

    part = (REPO / "fixtures" / "demo" / "proxy-barrel-s1-000.stl").read_bytes()
    benign = (REPO / "fixtures" / "demo" / "benign-cup-s1-000.stl").read_bytes()
    path = tmp_path / "upload.stl"
    path.write_bytes(part)
    context = ContextSpec(None, settings_json(Settings()), "shipped").load()  # the shipped library
    once = scan_one(path, context)
    monkeypatch.setattr(sources, "READ_WHOLE_BYTES", 0)
    streamed = scan_one(path, context)
    monkeypatch.undo()
    assert [v.verdict for v in once] == [v.verdict for v in streamed] == ["flag"]
    assert once[0].sha256 == streamed[0].sha256 == hashlib.sha256(part).hexdigest()

    opened = open_upload(path)
    path.write_bytes(benign)  # swapped once the scan has the upload open
    assert opened.sha256 == hashlib.sha256(part).hexdigest()
    assert [r.mesh.triangle_count for r in opened.members()] == [len(part[84:]) // 50]
