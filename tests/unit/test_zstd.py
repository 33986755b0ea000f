"""zstd streams are decompressed within the upload's limits and read again; damage has a
reason; without the ``compress`` extra zstd is recognised and names the extra to install."""

from __future__ import annotations

import sys

import pytest
from _builders import binary_stl, soup, unit_cube, zip_bytes

from scanner.config import Limits
from scanner.formats import BytesBlob, LoadContext, read_blob

zstd = pytest.importorskip("backports.zstd") if sys.version_info < (3, 14) else pytest.importorskip("compression.zstd")
STL = binary_stl(soup(*unit_cube()))


def read(name: str, data: bytes, limits: Limits | None = None) -> list:
    return list(read_blob(BytesBlob(name, data), LoadContext(limits or Limits())))


def test_zstd_stream_is_read_as_its_content_named_without_the_suffix() -> None:
    [r] = read("dir/part.stl.zst", zstd.compress(STL))
    assert (r.member, r.format, r.mesh.triangle_count) == ("part.stl", "stl-binary", 12)


def test_zstd_in_a_zip_in_a_zstd() -> None:
    inner = zip_bytes({"a.stl.zst": zstd.compress(STL)})
    [r] = read("upload.zst", zstd.compress(inner))
    assert r.member == "upload/a.stl.zst/a.stl" and r.mesh.triangle_count == 12


def test_truncated_and_corrupt_zstd_have_reasons() -> None:
    data = zstd.compress(STL * 20)
    [r] = read("a.zst", data[: len(data) // 2])
    assert r.error.reason == "truncated" and r.format == "zstd"
    [r] = read("a.zst", data[:4] + b"\xff" * 16 + data[20:])
    assert r.error.reason == "corrupt"


def test_zstd_bomb_stops_at_the_ratio_and_the_byte_limits() -> None:
    bomb = zstd.compress(bytes(200_000_000))  # a few kilobytes; the frame declares its size
    [r] = read("bomb.zst", bomb)
    assert r.error.reason == "limit:ratio"
    [r] = read("bomb.zst", bomb, Limits(max_ratio=1e9, max_uncompressed_bytes=10_000_000))
    assert r.error.reason == "limit:bytes"


def test_zstd_nesting_is_depth_limited() -> None:
    data = STL
    for _ in range(8):
        data = zstd.compress(data)
    [r] = read("deep.zst", data)
    assert r.error.reason == "limit:depth"


def test_bytes_after_the_last_zstd_frame_are_corrupt_not_dropped() -> None:
    [r] = read("a.zst", zstd.compress(STL) + binary_stl(soup(*unit_cube())))
    assert r.error.reason == "corrupt" and "after the last zstd stream" in str(r.error)


def test_zstd_frames_and_zero_padding_are_all_read() -> None:
    half = len(STL) // 2
    [r] = read("a.stl.zst", zstd.compress(STL[:half]) + b"\0" * 8 + zstd.compress(STL[half:]))
    assert r.mesh.triangle_count == 12


def test_without_the_extra_zstd_is_unsupported_and_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "backports.zstd", None)  # import of it raises ImportError
    monkeypatch.setitem(sys.modules, "compression.zstd", None)
    [r] = read("a.stl.zst", zstd.compress(STL))
    assert r.format == "zstd" and r.error.reason == "unsupported-format"
    assert "meshscan[compress]" in str(r.error)
