"""A known part put where every reader of a format steps over - a zip's comment or the bytes
after its end record, a gzip header's extra field or comment, the bytes after a PNG's end - is
read like a member and flags (scanner/formats/_hidden.py). Text, images and unknown bytes there
give nothing: a zip whose comment names a commit is as clear as before.

Each upload holds a benign demo file and an enrolled demo proxy (byte for byte, as ``dd`` would
get it back), scanned by the real command against the shipped demo library, classifier off.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.test_composition_evasions import scan  # the CLI, the demo library, no model

DEMO = REPO / "fixtures" / "demo"
PROXY = (DEMO / "proxy-barrel-s1-000.stl").read_bytes()  # enrolled, binary STL
BENIGN = (DEMO / "benign-cup-s1-000.stl").read_bytes()


def _zip(path: Path, members: dict[str, bytes], comment: bytes = b"", after: bytes = b"") -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        zf.comment = comment
    with open(path, "ab") as fh:
        fh.write(after)
    return path


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _gzip(path: Path, data: bytes, extra: bytes | None = None, comment: bytes | None = None) -> Path:
    flags = (0x04 if extra is not None else 0) | (0x10 if comment is not None else 0)
    head = b"\x1f\x8b\x08" + bytes([flags]) + b"\0\0\0\0\0\xff"
    if extra is not None:
        head += struct.pack("<H", len(extra)) + extra
    if comment is not None:
        head += comment + b"\0"
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = deflate.compress(data) + deflate.flush()
    path.write_bytes(head + body + struct.pack("<II", zlib.crc32(data), len(data)))
    return path


def _two_members(path: Path) -> Path:
    """A gzip stream of two members (gzip reads them as one): the part in the second's header."""
    first = _gzip(path.with_suffix(".1"), BENIGN[:1000]).read_bytes()
    second = _gzip(path.with_suffix(".2"), BENIGN[1000:], extra=b"MS" + struct.pack("<H", len(PROXY)) + PROXY)
    path.write_bytes(first + second.read_bytes())
    return path


def _pax_tar(path: Path, comment: str) -> Path:
    """A tar whose member carries a pax ``comment`` record (tar steps over it)."""
    import io
    import tarfile

    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("cup.stl")
        info.size, info.pax_headers = len(BENIGN), {"comment": comment}
        tf.addfile(info, io.BytesIO(BENIGN))
    return path


def _png(after: bytes = b"") -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0\0\0\0"))
        + chunk(b"IEND", b"")
        + after
    )


def _hidden_flags(*paths: Path) -> tuple[int, dict[tuple[str, str | None], dict]]:
    code, verdicts, _ = scan(*map(str, paths))
    return code, {(Path(v["path"]).name, v["member"]): v for v in verdicts}


@pytest.mark.parametrize(
    ("name", "member"),
    [("comment.zip", "#comment"), ("after-end.zip", "#after-end"), ("extra.stl.gz", "#extra-4d53"),
     ("comment.stl.gz", "#comment"), ("texture.zip", "texture.png/#after-end"), ("comment.3mf", "#comment"),
     ("second.stl.gz", "#extra-4d53-2"), ("pax.tar", "cup.stl#pax-comment")],
)  # fmt: skip
def test_a_part_where_readers_step_over_flags(tmp_path: Path, name: str, member: str) -> None:
    ascii_proxy = (DEMO / "proxy-slide_or_cylinder-s1-000.obj").read_bytes()  # enrolled; OBJ text, no zero byte
    assert b"\0" not in ascii_proxy
    made = {
        "comment.zip": lambda p: _zip(p, {"cup.stl": BENIGN}, comment=PROXY[:65535]),
        "after-end.zip": lambda p: _zip(p, {"cup.stl": BENIGN}, after=PROXY),
        "extra.stl.gz": lambda p: _gzip(p, BENIGN, extra=b"MS" + struct.pack("<H", len(PROXY)) + PROXY),
        "comment.stl.gz": lambda p: _gzip(p, BENIGN, comment=ascii_proxy),
        "texture.zip": lambda p: _zip(p, {"cup.stl": BENIGN, "texture.png": _png(PROXY)}),
        "comment.3mf": lambda p: _zip(p, _members(DEMO / "benign-block-s1-001.3mf"), comment=PROXY[:65535]),
        "second.stl.gz": lambda p: _two_members(p),
        "pax.tar": lambda p: _pax_tar(p, ascii_proxy.decode()),
    }[name](tmp_path / name)
    code, by = _hidden_flags(made)
    assert code == 1
    assert by[(name, member)]["verdict"] == "flag"
    assert all(v["verdict"] != "flag" for k, v in by.items() if k[1] != member)  # the benign cup stays clear


def test_a_png_hiding_a_part_is_not_skipped_by_a_folder_walk(tmp_path: Path) -> None:
    (tmp_path / "texture.png").write_bytes(_png(PROXY))
    (tmp_path / "plain.png").write_bytes(_png())
    (tmp_path / "noted.png").write_bytes(_png(b"a note some tool left after the image end, " * 4))
    code, verdicts, err = scan(str(tmp_path))
    assert code == 1
    assert [(Path(v["path"]).name, v["member"], v["verdict"]) for v in verdicts][0] == (
        "texture.png", "#after-end", "flag")  # fmt: skip
    assert "2 skipped (not a model by content)" in err  # the plain image and the one with a note


def test_text_and_unknown_bytes_there_give_nothing(tmp_path: Path) -> None:
    uploads = [
        _zip(tmp_path / "github.zip", {"cup.stl": BENIGN}, comment=b"4f1c2e9d0a7b3c5e6f8091a2b3c4d5e6f7089a1b"),
        _zip(tmp_path / "noise.zip", {"cup.stl": BENIGN}, after=bytes(range(256)) * 4),
        _gzip(tmp_path / "named.stl.gz", BENIGN, extra=b"AB" + struct.pack("<H", 100) + b"x" * 100,
              comment=b"exported by some tool, version 1.2.3, on a Tuesday afternoon"),
    ]  # fmt: skip
    code, verdicts, err = scan(*map(str, uploads))
    assert code == 0, err
    expected = [("github.zip", "cup.stl"), ("noise.zip", "cup.stl"), ("named.stl.gz", "named.stl")]
    assert [(Path(v["path"]).name, v["member"], v["verdict"]) for v in verdicts] == [(*e, "clear") for e in expected]


def _image(kind: str, after: bytes = b"", **options: object) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    image = Image.fromarray((np.random.default_rng(0).random((48, 64, 3)) * 255).astype("uint8"))
    out = io.BytesIO()
    image.save(out, kind, **options)
    return out.getvalue() + after


@pytest.mark.parametrize(
    ("kind", "options"),
    [("JPEG", {}), ("JPEG", {"progressive": True}), ("JPEG", {"exif": b"Exif\0\0" + b"\xff\xd9" * 8}),
     ("GIF", {"comment": b"a comment block"}), ("WEBP", {})],
    ids=["jpeg", "jpeg-progressive", "jpeg-exif", "gif", "webp"],
)  # fmt: skip
def test_a_part_after_an_image_end_flags_and_a_plain_image_is_still_skipped(tmp_path: Path, kind, options) -> None:  # noqa: ANN001
    (tmp_path / "photo.img").write_bytes(_image(kind, PROXY, **options))
    (tmp_path / "plain.img").write_bytes(_image(kind, **options))  # an end marker inside EXIF is not the end
    code, verdicts, err = scan(str(tmp_path))
    assert code == 1, err
    assert [(Path(v["path"]).name, v["member"], v["verdict"]) for v in verdicts][0] == (
        "photo.img",
        "#after-end",
        "flag",
    )
    assert "1 skipped (not a model by content)" in err


def test_a_bmp_with_bytes_past_its_size_is_not_an_image_and_not_clear(tmp_path: Path) -> None:
    (tmp_path / "photo.bmp").write_bytes(_image("BMP", PROXY))
    code, verdicts, _ = scan(str(tmp_path))
    assert code == 2 and [(v["verdict"], v["reason"]) for v in verdicts] == [("unscannable", "unsupported-format")]
