"""Binary G-code (.bgcode) reads as the G-code it holds, in every compression and encoding the
format documents; sliced 3MF projects read their plate G-code; firmware's spellings of a
command (glued words, line numbers, checksums) read as the spaced command does; hostile
binary G-code gives a reason code."""

from __future__ import annotations

import hashlib
import struct
import sys
import zipfile
import zlib

import numpy as np
import pytest
import trimesh

from fixtures.bgcode import COMPRESSIONS, ENCODINGS, BgcodeOptions, meatpack, to_bgcode
from fixtures.slicer import slice_to_gcode
from scanner.config import Limits
from scanner.formats import BytesBlob, LoadContext, read_blob
from scanner.formats.bgcode import meatpack_decode


@pytest.fixture(scope="module")
def sliced() -> bytes:
    tm = trimesh.creation.annulus(r_min=4, r_max=10, height=4)
    tm.apply_translation([20, 20, 2])
    return slice_to_gcode(tm.vertices, tm.faces)


def results(name: str, data: bytes, limits: Limits | None = None) -> list:
    return list(read_blob(BytesBlob(name, data), LoadContext(limits or Limits())))


def geometry(result) -> tuple[np.ndarray, np.ndarray]:
    assert result.mesh is not None, result.error
    return np.asarray(result.mesh.vertices), np.asarray(result.mesh.faces)


def same_mesh(a, b) -> bool:
    (va, fa), (vb, fb) = geometry(a), geometry(b)
    return va.shape == vb.shape and np.array_equal(fa, fb) and np.allclose(va, vb)


@pytest.mark.parametrize("compression", list(COMPRESSIONS))
@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_every_compression_and_encoding_rebuilds_the_same_part(sliced: bytes, compression: str, encoding: str) -> None:
    if encoding == "meatpack":  # plain MeatPack drops comment lines, feature types with them
        sliced = b"\n".join(line for line in sliced.splitlines() if not line.startswith(b";")) + b"\n"
    [text] = results("part.gcode", sliced)
    data = to_bgcode(sliced, BgcodeOptions(compression=compression, encoding=encoding, block_lines=5_000))
    [binary] = results("part.bgcode", data)
    assert binary.format == "bgcode"
    assert same_mesh(binary, text)


@pytest.mark.parametrize("no_spaces", [False, True])
@pytest.mark.parametrize("keep_comments", [False, True])
def test_meatpack_decodes_to_the_commands(sliced: bytes, no_spaces: bool, keep_comments: bool) -> None:
    decoded = meatpack_decode(meatpack(sliced, keep_comments, no_spaces)).splitlines()
    commands = [line.split(b";")[0].strip() for line in sliced.splitlines() if not line.startswith(b";")]
    commands = [c for c in commands if len(c) >= 2]
    got = [line for line in decoded if line and not line.startswith(b";")]
    assert [c.replace(b" ", b"") if no_spaces and c[:1] == b"G" else c for c in commands] == got
    assert any(line.startswith(b";TYPE:") for line in decoded) == keep_comments


def test_glued_words_line_numbers_and_checksums_read_as_the_spaced_command(sliced: bytes) -> None:
    """Marlin reads ``N7 G1X10Y5E.2*71``; an uploader who writes every line that way must not
    turn the part into an empty file."""
    lines = []
    for n, line in enumerate(sliced.splitlines()):
        if line[:1] in (b"G", b"M"):
            glued = line.replace(b" ", b"")
            lines.append(b"N%d %s*%d" % (n, glued, 7))
        else:
            lines.append(line)
    [plain] = results("a.gcode", sliced)
    [firmware] = results("b.gcode", b"\n".join(lines) + b"\n")
    assert same_mesh(firmware, plain)


def _mutate_block_crc(data: bytes) -> bytes:
    corrupt = bytearray(data)
    corrupt[-10] ^= 0x55  # inside the last G-code block's data
    return bytes(corrupt)


def test_hostile_binary_gcode_gives_reason_codes(sliced: bytes) -> None:
    good = to_bgcode(sliced, BgcodeOptions(compression="deflate"))
    cases = {
        "crc": (_mutate_block_crc(good), "corrupt"),
        "cut": (good[:-7], "truncated"),
        "trailing": (good + b"\x07\x00", "truncated"),
        "version": (good[:4] + struct.pack("<I", 9) + good[8:], "corrupt"),
        "no-gcode": (b"GCDE" + struct.pack("<IHHHI", 1, 0, 0, 0, 3) + b"\0\0a=b", "corrupt"),
    }
    # a G-code block that declares more bytes than its data inflates to
    body = zlib.compress(b"G1 X1 Y1 E1\n")
    head = struct.pack("<HHII", 1, 1, 999, len(body)) + b"\0\0" + body
    cases["size-lie"] = (b"GCDE" + struct.pack("<IH", 1, 0) + head, "corrupt")
    unknown = struct.pack("<HHI", 42, 0, 0) + b"\0\0"
    cases["block-type"] = (b"GCDE" + struct.pack("<IH", 1, 0) + unknown, "corrupt")
    for name, (data, reason) in cases.items():
        [r] = results("x.bgcode", data)
        assert r.mesh is None and r.error is not None and r.error.reason == reason, (name, r.error)


def test_decoded_size_is_bounded_by_the_upload_budget(sliced: bytes) -> None:
    data = to_bgcode(sliced, BgcodeOptions(compression="deflate"))
    [r] = results("x.bgcode", data, Limits(max_file_bytes=len(data) + 100))
    assert r.error is not None and r.error.reason == "limit:bytes"


def test_heatshrink_without_the_extra_is_unsupported_with_a_hint(sliced: bytes, monkeypatch) -> None:
    data = to_bgcode(sliced)  # PrusaSlicer's default: heatshrink 12/4
    monkeypatch.setitem(sys.modules, "heatshrink2", None)
    [r] = results("x.bgcode", data)
    assert r.error is not None and r.error.reason == "unsupported-format"
    assert "meshscan[compress]" in r.error.detail
    [plain] = results("y.bgcode", to_bgcode(sliced, BgcodeOptions(compression="deflate")))
    assert plain.mesh is not None  # deflate needs nothing extra


_EMPTY_MODEL = (
    b'<?xml version="1.0" encoding="UTF-8"?><model unit="millimeter" '
    b'xmlns="http://schemas.microsoft.com/3dmanufacturing/core/2015/02"><resources/><build/></model>'
)


def sliced_project(plates: dict[str, bytes]) -> bytes:
    """A sliced 3MF project as Bambu Studio and OrcaSlicer write it: an empty build, the
    plates' G-code and their checksums, thumbnails and settings under ``Metadata/``."""
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("3D/3dmodel.model", _EMPTY_MODEL)
        for name, gcode in plates.items():
            z.writestr(f"Metadata/{name}.gcode", gcode)
            z.writestr(f"Metadata/{name}.gcode.md5", hashlib.md5(gcode).hexdigest())
            z.writestr(f"Metadata/{name}.png", b"\x89PNG\r\n\x1a\n" + bytes(32))
        z.writestr("Metadata/slice_info.config", b'<?xml version="1.0"?><config><plate/></config>')
    return buf.getvalue()


def test_sliced_3mf_reads_each_plate_as_its_own_result(sliced: bytes) -> None:
    [text] = results("part.gcode", sliced)
    got = results("job.gcode.3mf", sliced_project({"plate_1": sliced, "plate_2": sliced}))
    assert [r.member for r in got] == ["Metadata/plate_1.gcode", "Metadata/plate_2.gcode"]
    assert all(r.format == "gcode" and same_mesh(r, text) for r in got)


def test_an_empty_build_with_nothing_else_is_still_empty() -> None:
    [r] = results("job.gcode.3mf", sliced_project({}))
    assert r.member is None and r.error is not None and r.error.reason == "empty"


def test_an_empty_build_beside_an_unreadable_plate_reports_both(sliced: bytes) -> None:
    got = results("job.gcode.3mf", sliced_project({"plate_1": b"G1 X1 Y1 E1\nG1 Xnan Y2 E2\nG1 X3 Y3 E3\n"}))
    reasons = sorted((r.member or "", r.error.reason) for r in got if r.error is not None)
    assert reasons == [("", "empty"), ("Metadata/plate_1.gcode", "corrupt")]
    assert all(r.mesh is None for r in got)
