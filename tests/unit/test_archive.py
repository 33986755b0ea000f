"""Archives (zip, gzip, bzip2, tar), content sniffing, and the limits that guard them."""

from __future__ import annotations

import bz2
import gc
import io
import tarfile
import time
import warnings
import zipfile

import numpy as np
import pytest
from _builders import (
    ascii_stl,
    binary_stl,
    gzip_bytes,
    obj_text,
    peak_bytes,
    set_zip_flag_bits,
    soup,
    tetra,
    unit_cube,
    write,
    zip_bytes,
)

import scanner
from scanner.config import Limits
from scanner.errors import REASON_CODES, UnreadableInput

CUBE_V, CUBE_F = unit_cube()
CUBE_STL = binary_stl(soup(CUBE_V, CUBE_F))
CUBE_HASH = scanner.Mesh(vertices=soup(CUBE_V, CUBE_F).reshape(-1, 3)).geometry_hash
TET_V, TET_F = tetra((5.0, 0.0, 0.0))
TET_STL = ascii_stl(soup(TET_V, TET_F))


def reason_of(path, limits: Limits | None = None) -> str:
    with pytest.raises(UnreadableInput) as info:
        scanner.load(path, limits)
    assert info.value.reason in REASON_CODES
    return info.value.reason


def results(path, limits: Limits | None = None) -> list:
    out = list(scanner.iter_meshes(path, limits))
    for r in out:
        assert (r.mesh is None) != (r.error is None), "each result carries a mesh or an error"
    return out


# ----------------------------------------------------------------------------- readable


def test_zip_of_stl(tmp_path):
    path = write(tmp_path, "a.zip", zip_bytes({"parts/cube.stl": CUBE_STL}))
    [r] = results(path)
    assert r.member == "parts/cube.stl"
    assert r.mesh.format == "stl-binary"
    assert r.mesh.member == "parts/cube.stl"
    assert r.mesh.source == str(path)
    assert r.mesh.geometry_hash == CUBE_HASH
    assert scanner.load(path).geometry_hash == CUBE_HASH


def test_zip_of_two_meshes_loads_both_as_bodies(tmp_path):
    path = write(tmp_path, "a.zip", zip_bytes({"cube.stl": CUBE_STL, "tet.stl": TET_STL}))
    assert [r.member for r in results(path)] == ["cube.stl", "tet.stl"]
    mesh = scanner.load(path)
    assert mesh.triangle_count == 16
    assert mesh.body_count == 2


def test_stored_zip(tmp_path):
    path = write(tmp_path, "a.zip", zip_bytes({"cube.stl": CUBE_STL}, compression=zipfile.ZIP_STORED))
    assert scanner.load(path).geometry_hash == CUBE_HASH


def test_zip_in_zip(tmp_path):
    inner = zip_bytes({"cube.stl": CUBE_STL})
    path = write(tmp_path, "outer.zip", zip_bytes({"inner.zip": inner, "tet.stl": TET_STL}))
    rs = results(path)
    assert [r.member for r in rs] == ["inner.zip/cube.stl", "tet.stl"]
    assert rs[0].mesh.geometry_hash == CUBE_HASH
    assert rs[0].mesh.member == "inner.zip/cube.stl"


def test_gzipped_stl(tmp_path):
    path = write(tmp_path, "cube.stl.gz", gzip_bytes(CUBE_STL))
    [r] = results(path)
    assert r.member == "cube.stl"
    assert r.mesh.geometry_hash == CUBE_HASH


def test_gzipped_ascii_stl_whatever_its_name(tmp_path):
    path = write(tmp_path, "upload.bin", gzip_bytes(TET_STL))
    assert scanner.load(path).triangle_count == 4


def test_bzip2_obj(tmp_path):
    path = write(tmp_path, "cube.obj.bz2", bz2.compress(obj_text(CUBE_V, CUBE_F)))
    assert scanner.load(path).geometry_hash == CUBE_HASH


def test_tar_gz_of_meshes(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in {"a/cube.stl": CUBE_STL, "a/tet.stl": TET_STL}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    path = write(tmp_path, "meshes.tar.gz", gzip_bytes(buf.getvalue()))
    rs = results(path)
    assert [r.member for r in rs] == ["meshes.tar/a/cube.stl", "meshes.tar/a/tet.stl"]
    assert scanner.load(path).triangle_count == 16


def test_stl_named_zip_is_read_as_zip(tmp_path):
    path = write(tmp_path, "model.stl", zip_bytes({"cube.stl": CUBE_STL}))
    assert scanner.load(path).geometry_hash == CUBE_HASH


def test_stl_named_obj_is_read_as_obj(tmp_path):
    mesh = scanner.load(write(tmp_path, "model.stl", obj_text(CUBE_V, CUBE_F)))
    assert mesh.format == "obj"
    assert mesh.geometry_hash == CUBE_HASH


def test_stl_named_jpeg_is_not_a_model(tmp_path):
    jpeg = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + bytes(range(256)) * 4
    assert reason_of(write(tmp_path, "model.stl", jpeg)) == "not-a-model"


def test_binary_stl_with_a_jpeg_magic_header_is_read_as_stl(tmp_path):
    """The 80-byte header of a binary STL is the uploader's to fill: a JPEG's magic there does
    not make the file an image (which a folder walk would skip) when the size says STL."""
    stl = bytearray(binary_stl(soup(CUBE_V, CUBE_F)))
    stl[:4] = b"\xff\xd8\xff\xe0"
    mesh = scanner.load(write(tmp_path, "photo.jpg", bytes(stl)))
    assert mesh.format == "stl-binary" and mesh.geometry_hash == CUBE_HASH


def test_non_mesh_members_are_results_not_silence(tmp_path):
    path = write(tmp_path, "a.zip", zip_bytes({"readme.txt": b"hello there\n", "cube.stl": CUBE_STL}))
    rs = results(path)
    assert [r.member for r in rs] == ["readme.txt", "cube.stl"]
    assert rs[0].error.reason == "not-a-model"
    assert scanner.load(path).geometry_hash == CUBE_HASH  # the companion is not a mesh


def test_directory_entries_are_not_members(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("dir/", b"")
        zf.writestr("dir/cube.stl", CUBE_STL)
    [r] = results(write(tmp_path, "d.zip", buf.getvalue()))
    assert r.member == "dir/cube.stl"


# ----------------------------------------------------------------------------- unreadable


def test_empty_file(tmp_path):
    assert reason_of(write(tmp_path, "e.stl", b"")) == "empty"


@pytest.mark.parametrize(
    "data",
    [zip_bytes({}), gzip_bytes(b""), bz2.compress(b"")],
    ids=["zip", "gzip", "bzip2"],
)
def test_empty_archive_is_a_result(tmp_path, data):
    path = write(tmp_path, "e.bin", data)
    rs = results(path)
    assert len(rs) == 1
    assert rs[0].error.reason == "empty"
    assert reason_of(path) == "empty"


def test_missing_file_is_io_error(tmp_path):
    assert reason_of(tmp_path / "nope.stl") == "io-error"


def test_truncated_zip(tmp_path):
    data = zip_bytes({"cube.stl": CUBE_STL})
    assert reason_of(write(tmp_path, "cut.zip", data[: len(data) // 2])) in ("truncated", "corrupt")


def test_truncated_gzip(tmp_path):
    data = gzip_bytes(CUBE_STL)
    assert reason_of(write(tmp_path, "cut.stl.gz", data[:-20])) == "truncated"


def test_truncated_bzip2(tmp_path):
    data = bz2.compress(CUBE_STL)
    assert reason_of(write(tmp_path, "cut.stl.bz2", data[:-20])) == "truncated"


@pytest.mark.parametrize("compress", [bz2.compress, gzip_bytes], ids=["bzip2", "gzip"])
def test_bytes_after_the_last_stream_are_corrupt_not_dropped(tmp_path, compress):
    """BZ2File ignored a tail that was not another stream (gzip refuses one): a raw model
    appended to a small benign stream was never read, and the upload came out clear."""
    data = compress(b"benign notes") + CUBE_STL
    assert reason_of(write(tmp_path, "notes.txt.bz2", data)) == "corrupt"


def test_bzip2_streams_and_zero_padding_are_all_read(tmp_path):
    data = bz2.compress(CUBE_STL[:40]) + bz2.compress(CUBE_STL[40:]) + bytes(16)
    assert scanner.load(write(tmp_path, "cube.stl.bz2", data)).geometry_hash == CUBE_HASH


def test_bzip2_bomb_is_limit_ratio(tmp_path):
    assert reason_of(write(tmp_path, "bomb.bz2", bz2.compress(bytes(20 * 2**20)))) == "limit:ratio"


def test_corrupt_member_data(tmp_path):
    data = bytearray(zip_bytes({"cube.stl": CUBE_STL}))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        info = zf.getinfo("cube.stl")
    start = info.header_offset + 30 + len("cube.stl")
    data[start + 5 : start + 25] = b"\xff" * 20  # damage the deflate stream
    assert reason_of(write(tmp_path, "bad.zip", bytes(data))) == "corrupt"


def test_encrypted_member(tmp_path):
    data = set_zip_flag_bits(zip_bytes({"cube.stl": CUBE_STL, "tet.stl": TET_STL}), "cube.stl", 0x1)
    path = write(tmp_path, "locked.zip", data)
    rs = results(path)
    assert rs[0].member == "cube.stl"
    assert rs[0].error.reason == "encrypted"
    assert rs[1].mesh.triangle_count == 4
    # load() does not hand back the readable part as if it were the whole upload
    assert reason_of(path) == "encrypted"


@pytest.mark.parametrize("name", ["../evil.stl", "/abs.stl", "a/../../evil.stl", "C:/evil.stl", "..\\evil.stl"])
def test_unsafe_member_path(tmp_path, name):
    path = write(tmp_path, "slip.zip", zip_bytes({name: CUBE_STL}))
    [r] = results(path)
    assert r.error.reason == "unsafe-path"
    assert reason_of(path) == "unsafe-path"


def test_unsafe_tar_member(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("../evil.stl")
        info.size = len(CUBE_STL)
        tf.addfile(info, io.BytesIO(CUBE_STL))
        link = tarfile.TarInfo("link.stl")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tf.addfile(link)
    rs = results(write(tmp_path, "slip.tar", buf.getvalue()))
    assert [r.error.reason for r in rs] == ["unsafe-path", "unsafe-path"]


def test_zip_bomb_is_limit_ratio(tmp_path):
    bomb = zip_bytes({"zeros.stl": bytes(50 * 2**20)})
    assert len(bomb) < 200_000
    path = write(tmp_path, "bomb.zip", bomb)
    start = time.perf_counter()
    assert reason_of(path) == "limit:ratio"
    assert time.perf_counter() - start < 5.0
    # the member is abandoned after a small budget, not inflated to 50 MB first
    assert peak_bytes(lambda: scanner.load(path)) < 40 * 2**20


def test_gzip_bomb_is_limit_ratio(tmp_path):
    assert reason_of(write(tmp_path, "bomb.gz", gzip_bytes(bytes(20 * 2**20)))) == "limit:ratio"


def test_member_over_byte_limit(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()  # incompressible
    path = write(tmp_path, "big.zip", zip_bytes({"cube.stl": CUBE_STL + noise}))
    assert reason_of(path, Limits(max_file_bytes=len(CUBE_STL) + 1000)) == "limit:bytes"


def test_total_uncompressed_limit(tmp_path):
    path = write(tmp_path, "a.zip", zip_bytes({f"c{i}.stl": CUBE_STL for i in range(5)}))
    limits = Limits(max_uncompressed_bytes=3 * len(CUBE_STL))
    rs = results(path, limits)
    assert [r.mesh is not None for r in rs[:3]] == [True, True, True]
    assert rs[-1].error.reason == "limit:bytes"
    assert reason_of(path, limits) == "limit:bytes"


def test_nesting_depth(tmp_path):
    data = CUBE_STL
    for level in range(3):
        data = zip_bytes({f"level{level}.zip" if level else "cube.stl": data})
    path = write(tmp_path, "deep.zip", data)  # zip > zip > zip > stl: the stl is at depth 3
    assert scanner.load(path, Limits(max_depth=3)).geometry_hash == CUBE_HASH
    assert reason_of(path, Limits(max_depth=2)) == "limit:depth"
    [r] = results(path, Limits(max_depth=2))
    assert r.error.reason == "limit:depth"
    assert r.member == "level2.zip/level1.zip"


def test_member_count(tmp_path):
    path = write(tmp_path, "many.zip", zip_bytes({f"c{i}.stl": CUBE_STL for i in range(5)}))
    assert scanner.load(path, Limits(max_members=5)).triangle_count == 60
    rs = results(path, Limits(max_members=3))
    assert rs[-1].error.reason == "limit:members"
    assert reason_of(path, Limits(max_members=3)) == "limit:members"


def test_member_count_includes_nested_archives(tmp_path):
    inner = zip_bytes({f"c{i}.stl": CUBE_STL for i in range(3)})
    path = write(tmp_path, "n.zip", zip_bytes({"a.zip": inner, "b.zip": inner}))
    assert reason_of(path, Limits(max_members=5)) == "limit:members"


def test_file_byte_limit(tmp_path):
    path = write(tmp_path, "a.zip", zip_bytes({"cube.stl": CUBE_STL}))
    assert reason_of(path, Limits(max_file_bytes=100)) == "limit:bytes"


def test_every_member_gets_a_result(tmp_path):
    members = {
        "good.stl": CUBE_STL,
        "cut.stl": CUBE_STL[:-7],
        "nan.obj": b"v nan 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n",
        "photo.jpg": b"\xff\xd8\xff\xe0" + bytes(100),
        "empty.stl": b"",
    }
    rs = results(write(tmp_path, "mixed.zip", zip_bytes(members)))
    assert [r.member for r in rs] == list(members)
    assert [r.error.reason if r.error else "ok" for r in rs] == [
        "ok",
        "truncated",
        "non-finite",
        "not-a-model",
        "empty",
    ]


def many_entries_zip(n: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for i in range(n):
            zf.writestr(zipfile.ZipInfo(f"{i}.txt"), b"")
    return buf.getvalue()


def test_member_limit_is_checked_before_the_directory_is_parsed(tmp_path):
    """zipfile builds an object per directory entry, uncapped: 20,000 entries must be refused
    from the end record, without that cost."""
    path = write(tmp_path, "many.zip", many_entries_zip(20_000))
    limits = Limits(max_members=10)
    assert reason_of(path, limits) == "limit:members"
    assert peak_bytes(lambda: scanner.load(path, limits)) < 2 * 2**20


def test_member_limit_when_the_end_record_understates_the_count(tmp_path):
    data = bytearray(many_entries_zip(2_000))
    eocd = data.rfind(b"PK\x05\x06")
    data[eocd + 8 : eocd + 12] = (1).to_bytes(2, "little") * 2  # "1 entry" (this disk, total)
    path = write(tmp_path, "liar.zip", bytes(data))
    assert reason_of(path, Limits(max_members=10)) == "limit:members"
    assert peak_bytes(lambda: scanner.load(path, Limits(max_members=10))) < 2 * 2**20


def test_zip64_end_record_is_understood(tmp_path, monkeypatch):
    """Archivers write a zip64 end record past 65,535 entries; make zipfile write one for 3."""
    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 2)
    data = zip_bytes({f"c{i}.stl": CUBE_STL for i in range(3)})
    monkeypatch.undo()
    assert b"PK\x06\x06" in data and b"PK\x06\x07" in data
    path = write(tmp_path, "z64.zip", data)
    assert scanner.load(path).triangle_count == 36
    assert reason_of(path, Limits(max_members=2)) == "limit:members"


def test_archives_close_their_files(tmp_path):
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as tf:
        info = tarfile.TarInfo("cube.stl")
        info.size = len(CUBE_STL)
        tf.addfile(info, io.BytesIO(CUBE_STL))
    paths = [
        write(tmp_path, "a.zip", zip_bytes({"cube.stl": CUBE_STL})),
        write(tmp_path, "a.stl.gz", gzip_bytes(CUBE_STL)),
        write(tmp_path, "a.stl.bz2", bz2.compress(CUBE_STL)),
        write(tmp_path, "a.tar", tar.getvalue()),
        write(tmp_path, "bad.tar", b"\x00" * 300 + b"ustar" + b"\x00" * 300),
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for path in paths:
            list(scanner.iter_meshes(path))
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_directory_pointing_before_the_file_start_is_corrupt(tmp_path):
    """A damaged end record shifts every member's offset below zero (zipfile then seeks to a
    negative position)."""
    data = bytearray(zip_bytes({"cube.stl": CUBE_STL}))
    eocd = data.rfind(b"PK\x05\x06")
    offset = int.from_bytes(data[eocd + 16 : eocd + 20], "little")
    data[eocd + 16 : eocd + 20] = (offset + 1000).to_bytes(4, "little")
    rs = results(write(tmp_path, "shifted.zip", bytes(data)))
    assert [r.error.reason for r in rs] == ["corrupt"]


def test_impossible_zip_version_is_corrupt(tmp_path):
    data = bytearray(zip_bytes({"cube.stl": CUBE_STL}))
    cd = data.rfind(b"PK\x01\x02")
    data[cd + 6 : cd + 8] = (194).to_bytes(2, "little")  # "needs zip 19.4 to extract"
    rs = results(write(tmp_path, "future.zip", bytes(data)))
    assert [r.error.reason for r in rs] == ["corrupt"]
