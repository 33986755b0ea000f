"""xz streams are decompressed within the upload's limits and read again; damage has a reason."""

from __future__ import annotations

import lzma

from _builders import binary_stl, soup, unit_cube, zip_bytes

from scanner.config import Limits
from scanner.formats import BytesBlob, LoadContext, read_blob

STL = binary_stl(soup(*unit_cube()))


def read(name: str, data: bytes, limits: Limits | None = None) -> list:
    return list(read_blob(BytesBlob(name, data), LoadContext(limits or Limits())))


def test_xz_stream_is_read_as_its_content_named_without_the_suffix() -> None:
    [r] = read("dir/part.stl.xz", lzma.compress(STL))
    assert (r.member, r.format, r.mesh.triangle_count) == ("part.stl", "stl-binary", 12)


def test_legacy_lzma_alone_is_not_mistaken_for_xz() -> None:
    [r] = read("part.lzma", lzma.compress(STL, format=lzma.FORMAT_ALONE))
    assert r.mesh is None and r.error.reason == "unsupported-format"


def test_xz_in_a_zip_in_an_xz() -> None:
    inner = zip_bytes({"a.stl.xz": lzma.compress(STL)})
    [r] = read("upload.xz", lzma.compress(inner))
    assert r.member == "upload/a.stl.xz/a.stl" and r.mesh.triangle_count == 12


def test_truncated_and_corrupt_xz_have_reasons() -> None:
    data = lzma.compress(STL * 20)
    [r] = read("a.xz", data[: len(data) // 2])
    assert r.error.reason == "truncated"
    damaged = data[:40] + bytes(b ^ 0x5A for b in data[40:80]) + data[80:]
    [r] = read("a.xz", damaged)
    assert r.error.reason == "corrupt"


def test_xz_bomb_stops_at_the_ratio_and_the_byte_limits() -> None:
    bomb = lzma.compress(b"\x00" * (64 << 20))
    [r] = read("bomb.xz", bomb)
    assert r.error.reason == "limit:ratio"
    [r] = read("bomb.xz", bomb, Limits(max_ratio=1e9, max_file_bytes=1 << 20))
    assert r.error.reason == "limit:bytes"


def test_xz_nesting_is_depth_limited() -> None:
    data = STL
    for _ in range(6):
        data = lzma.compress(data)
    [r] = read("deep.xz", data, Limits(max_depth=4, max_ratio=1e9))
    assert r.error.reason == "limit:depth"


def test_bytes_after_the_last_xz_stream_are_corrupt_not_dropped() -> None:
    """``lzma.LZMAFile`` dropped a tail that was not a stream: a model appended raw to a small
    benign stream was never read."""
    [r] = read("a.xz", lzma.compress(b"benign text") + STL)
    assert r.mesh is None and r.error.reason == "corrupt"
    assert "not a xz stream" in r.error.detail


def test_xz_streams_and_zero_padding_are_all_read() -> None:
    two = lzma.compress(STL[:50]) + b"\0" * 8 + lzma.compress(STL[50:]) + b"\0" * 4
    [r] = read("a.stl.xz", two)
    assert r.format == "stl-binary" and r.mesh.triangle_count == 12
