"""7z archives: members read through the archive limits, encrypted archives are
``encrypted``, damage has a reason; without ``py7zr`` 7z is recognised and names the extra.
RAR stays recognised and ``unsupported-format``."""

from __future__ import annotations

import io
import sys

import pytest
from _builders import binary_stl, soup, unit_cube

from scanner.config import Limits
from scanner.formats import BytesBlob, LoadContext, read_blob

py7zr = pytest.importorskip("py7zr")
STL = binary_stl(soup(*unit_cube()))


def read(name: str, data: bytes, limits: Limits | None = None) -> list:
    return list(read_blob(BytesBlob(name, data), LoadContext(limits or Limits())))


def seven_zip(members: dict[str, bytes], password: str | None = None, header_encryption: bool = False) -> bytes:
    buf = io.BytesIO()
    with py7zr.SevenZipFile(buf, "w", password=password, header_encryption=header_encryption) as archive:
        for name, data in members.items():
            archive.writestr(data, name)
    return buf.getvalue()


def test_members_are_read_and_listed() -> None:
    results = read("up.7z", seven_zip({"parts/a.stl": STL, "notes.txt": b"printed in PETG, 0.2 mm layers\n"}))
    by_member = {r.member: r for r in results}
    assert by_member["parts/a.stl"].mesh.triangle_count == 12
    assert by_member["notes.txt"].error.reason == "not-a-model"


def test_7z_in_a_7z() -> None:
    [r] = read("outer.7z", seven_zip({"inner.7z": seven_zip({"a.stl": STL})}))
    assert r.member == "inner.7z/a.stl" and r.mesh.triangle_count == 12


@pytest.mark.parametrize("header_encryption", [False, True], ids=["members", "header"])
def test_encrypted_archive_is_encrypted(header_encryption: bool) -> None:
    [r] = read("secret.7z", seven_zip({"a.stl": STL}, "pw", header_encryption))
    assert r.format == "7z" and r.error.reason == "encrypted"


def test_bomb_stops_at_the_ratio_and_the_byte_limits() -> None:
    bomb = seven_zip({"a.stl": bytes(100_000_000)})
    [r] = read("bomb.7z", bomb)
    assert r.error.reason == "limit:ratio"
    [r] = read("bomb.7z", bomb, Limits(max_ratio=1e9, max_uncompressed_bytes=10_000_000))
    assert r.error.reason == "limit:bytes"


def test_member_count_and_nesting_are_limited() -> None:
    [r] = read("many.7z", seven_zip({f"{i}.stl": STL for i in range(20)}), Limits(max_members=5))
    assert r.error.reason == "limit:members"
    data = seven_zip({"a.stl": STL})
    for _ in range(8):
        data = seven_zip({"n.7z": data})
    [r] = read("deep.7z", data)
    assert r.error.reason == "limit:depth"


def test_damage_has_reasons() -> None:
    data = seven_zip({"a.stl": STL * 30})
    [r] = read("cut.7z", data[: len(data) // 2])
    assert r.error.reason in ("truncated", "corrupt") and r.format == "7z"
    [r] = read("bad.7z", data[:40] + bytes(b ^ 0x5A for b in data[40:200]) + data[200:])
    assert r.error.reason == "corrupt"
    [r] = read("empty.7z", seven_zip({}))
    assert r.error.reason == "empty"


def test_bytes_after_the_archive_are_corrupt_not_dropped() -> None:
    """py7zr never reads past the header: a model appended to a benign archive must not pass."""
    benign = seven_zip({"notes.txt": b"nothing to see\n"})
    [r] = read("a.7z", benign + STL)
    assert r.error.reason == "corrupt" and "after the end of the 7z archive" in str(r.error)
    padded = read("b.7z", benign + bytes(64))  # zero padding is no payload
    assert "notes.txt" in {x.member for x in padded}
    assert {x.error.reason for x in padded} == {"not-a-model"}


def test_without_py7zr_7z_is_unsupported_and_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "py7zr", None)
    [r] = read("a.7z", seven_zip({"a.stl": STL}))
    assert r.format == "7z" and r.error.reason == "unsupported-format"
    assert "meshscan[compress]" in str(r.error)


def test_rar_is_recognised_and_unsupported() -> None:
    [r] = read("a.rar", b"Rar!\x1a\x07\x01\x00" + bytes(64))
    assert r.format == "rar" and r.error.reason == "unsupported-format"
