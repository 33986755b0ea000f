"""Previews (issue 20, item 1): the renderer is deterministic, writes a PNG that decodes,
draws highlighted faces where they are, survives bad vertices, writes the part's size; the
scan worker renders one for an upload that needs a person, carries it beside the verdict
(never in the record) and the results store keeps it by sha256."""

from __future__ import annotations

import json
import sqlite3
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from scanner.config import Settings
from scanner.context import ScanContext, with_previews
from scanner.engines.messages import PREVIEW_KEY, decode_reply, encode_reply
from scanner.enrol import enrol
from scanner.library import SignatureLibrary
from scanner.pipeline import scan_one
from scanner.preview import BAND, HIGHLIGHT, MAX_SIDE, VIEW_SIZE, encode_png, render_preview, size_text
from scanner.store.results import ResultsStore
from scanner.verdict import CLEAR, FLAG, Verdict
from tests.conftest import REPO
from tests.unit._builders import binary_stl, soup, unit_cube

DEMO = REPO / "fixtures" / "demo"
KNOWN = "proxy-barrel-s1-001.stl"
BENIGN = "benign-cup-s1-000.stl"


def box(size: tuple[float, float, float], offset: tuple[float, float, float] = (0.0, 0.0, 0.0)):
    v, f = unit_cube()
    return v * np.asarray(size) + np.asarray(offset), f


def decode_png(data: bytes) -> np.ndarray:
    """An 8-bit RGB PNG decoded with the standard library only (every chunk's CRC checked,
    all five row filters), so the pixel checks do not trust the encoder under test."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        tag, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(tag + body) & 0xFFFFFFFF, tag
        chunks.append((tag, body))
        pos += 12 + length
    assert [t for t, _ in chunks][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    w, h, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, colour, interlace) == (8, 2, 0)
    raw = zlib.decompress(b"".join(b for t, b in chunks if t == b"IDAT"))
    stride = w * 3
    assert len(raw) == h * (stride + 1)
    out = np.zeros((h, stride), dtype=np.int64)
    for y in range(h):
        kind, line = raw[y * (stride + 1)], np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int64)
        up = out[y - 1] if y else np.zeros(stride, dtype=np.int64)
        if kind in (0, 2):  # no filter, "Up": whole rows at once
            out[y] = (line + (up if kind == 2 else 0)) % 256
            continue
        row = np.zeros(stride, dtype=np.int64)
        for x in range(stride):
            a = row[x - 3] if x >= 3 else 0
            c = up[x - 3] if x >= 3 else 0
            b = up[x]
            pred = {0: 0, 1: a, 2: b, 3: (a + b) // 2}.get(kind)
            if kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            row[x] = (line[x] + pred) % 256
        out[y] = row
    return out.reshape(h, w, 3).astype(np.uint8)


def orange(img: np.ndarray) -> np.ndarray:
    """Pixels in the highlight's hue (shaded: red well above blue)."""
    r, g, b = (img[..., i].astype(int) for i in range(3))
    return (r > b + 60) & (r > g + 20)


# --------------------------------------------------------------------------- the renderer
def test_same_mesh_same_bytes_and_a_png_that_decodes() -> None:
    v, f = box((52, 18, 9))
    first, second = render_preview(v, f), render_preview(v.copy(), f.copy())
    assert first is not None and first == second
    img = decode_png(first)
    w, h = VIEW_SIZE
    assert img.shape == (h + BAND, 3 * w, 3)
    mpl_image = pytest.importorskip("matplotlib.image")  # an independent decoder, where installed
    import io

    assert np.array_equal((mpl_image.imread(io.BytesIO(first), format="png")[..., :3] * 255).round(), img)


def test_triangle_soup_and_indexed_mesh_draw_the_same() -> None:
    v, f = box((30, 10, 5))
    assert render_preview(v, f) == render_preview(soup(v, f).reshape(-1, 3))


def test_highlighted_faces_are_drawn_where_they_are() -> None:
    (va, fa), (vb, fb) = box((10, 10, 10)), box((10, 10, 10), (40, 0, 0))
    v, f = np.concatenate([va, vb]), np.concatenate([fa, fb + len(va)])
    marked = np.arange(len(f)) >= len(fa)  # the box on the right
    plain, lit = decode_png(render_preview(v, f)), decode_png(render_preview(v, f, marked))
    w, h = VIEW_SIZE
    front = lit[:h, :w]
    assert not orange(plain).any()
    assert orange(front[:, w // 2 :]).sum() > 200  # the right-hand box is orange...
    assert not orange(front[:, : w // 2]).any()  # ...and the left one is not
    assert not np.array_equal(plain, lit)
    same = decode_png(render_preview(v, f, np.flatnonzero(marked)))  # indices mean the same as a mask
    assert np.array_equal(same, lit)
    assert tuple(HIGHLIGHT) != (0, 0, 0)


def test_bad_vertices_and_indices_are_left_out_not_fatal() -> None:
    v, f = box((20, 10, 5))
    bad_v = np.concatenate([v, [[np.nan, 0, 0], [np.inf, 1, 1], [-np.inf, 2, 2]]])
    bad_f = np.concatenate([f, [[8, 0, 1], [9, 10, 2], [0, 1, 99], [-1, 2, 3]]])
    assert render_preview(bad_v, bad_f) == render_preview(v, f)
    assert render_preview(np.full((9, 3), np.nan)) is None  # nothing finite
    assert render_preview(np.zeros((0, 3)), np.zeros((0, 3), dtype=int)) is None  # empty
    assert render_preview(np.zeros((3, 3))) is None  # no area


def test_the_size_band_says_the_extents() -> None:
    v, f = box((52, 18, 9))
    assert size_text(np.array([52.0, 18.0, 9.0]), "mm") == "52.0 × 18.0 × 9.00 mm"
    img = decode_png(render_preview(v, f))
    band = img[-BAND:]
    ink = (band.astype(int).sum(axis=2) < 200).sum(axis=0) > 0  # dark text columns
    assert 60 < ink.sum() < 400
    assert np.flatnonzero(ink).max() < 200  # "52.0 × 18.0 × 9.00 mm": 21 characters of 6 px


def test_a_turned_part_is_drawn_along_its_own_axes() -> None:
    """An uploader's rotation does not change the stated size or the picture much."""
    v, f = box((52, 18, 9))
    angle = np.radians(30)
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    straight, turned = decode_png(render_preview(v, f)), decode_png(render_preview(v @ rot.T, f))
    assert np.array_equal(straight[-BAND:], turned[-BAND:])  # same size text
    drawn = lambda img: img.astype(int).sum(axis=2) < 600  # noqa: E731
    assert (drawn(straight) ^ drawn(turned)).mean() < 0.02


def test_large_meshes_are_sampled_to_the_budget_and_the_image_is_bounded() -> None:
    rng = np.random.default_rng(1)
    pts = rng.normal(size=(30_000, 3))
    v = pts / np.linalg.norm(pts, axis=1, keepdims=True) * 20
    f = rng.integers(0, len(v), size=(20_000, 3))
    small = render_preview(v, f, max_triangles=1_000)
    assert small is not None and small == render_preview(v, f, max_triangles=1_000)
    assert small != render_preview(v, f)
    wide = decode_png(render_preview(*box((5, 5, 5)), view_size=(10**6, 30)))  # asked too much: capped
    assert wide.shape == (30 + BAND, 3 * MAX_SIDE, 3)


def test_encode_png_round_trips() -> None:
    img = np.random.default_rng(0).integers(0, 256, size=(7, 5, 3), dtype=np.uint8)
    assert np.array_equal(decode_png(encode_png(img)), img)


# --------------------------------------------------------------------------- in the scan
@pytest.fixture
def library(tmp_path: Path) -> SignatureLibrary:
    lib = SignatureLibrary.create(tmp_path / "lib")
    (result,) = enrol(lib, DEMO / KNOWN, "barrel", "test")
    assert result.status == "added"
    return lib


def test_the_worker_renders_only_for_what_needs_a_person(library: SignatureLibrary, tmp_path: Path) -> None:
    context = ScanContext(settings=Settings(), library=library)
    assert with_previews(context, False) is context
    on = with_previews(context, True)
    assert on.settings.previews and not context.settings.previews and on.library is library
    flagged, clear = scan_one(DEMO / KNOWN, on), scan_one(DEMO / BENIGN, on)
    assert [v.verdict for v in flagged] == [FLAG] and [v.verdict for v in clear] == [CLEAR]
    assert decode_png(flagged[0].preview).shape[2] == 3
    assert clear[0].preview is None
    assert scan_one(DEMO / KNOWN, context)[0].preview is None  # off unless asked
    record = flagged[0].to_dict()
    assert set(record) == set(Verdict.__dataclass_fields__)  # no preview key: the contract is unchanged
    assert b"PNG" not in json.dumps(record).encode()


def test_the_matched_body_is_highlighted(library: SignatureLibrary, tmp_path: Path) -> None:
    """An upload holding the known part and a loose block: the part is drawn orange."""
    from scanner.loading import load

    part = load(DEMO / KNOWN).triangles
    hi = part.reshape(-1, 3).max(axis=0)
    v, f = unit_cube()
    block = soup(v * 8 + hi + 40, f)
    path = tmp_path / "two.stl"
    path.write_bytes(binary_stl(np.concatenate([part, block]).astype(np.float32)))
    (verdict,) = scan_one(path, with_previews(ScanContext(settings=Settings(), library=library), True))
    assert verdict.verdict == FLAG and verdict.matches[0].body is not None and verdict.matches[0].body >= 0
    img = decode_png(verdict.preview)
    assert orange(img).sum() > 300
    plain = (img.astype(int).sum(axis=2) < 700) & ~orange(img)
    assert plain[: VIEW_SIZE[1]].sum() > 20  # the block is drawn, not highlighted


def test_the_preview_travels_beside_the_record_and_is_stored_by_sha256(library: SignatureLibrary,
                                                                       tmp_path: Path) -> None:  # fmt: skip
    (verdict,) = scan_one(DEMO / KNOWN, with_previews(ScanContext(settings=Settings(), library=library), True))
    wire = encode_reply(7, [verdict])
    assert PREVIEW_KEY.encode() in wire
    task, (back,) = decode_reply(wire)
    assert task == 7 and back.preview == verdict.preview and back == verdict
    assert PREVIEW_KEY not in back.to_dict()
    db = tmp_path / "r.db"
    with ResultsStore(db) as store:
        store.record(str(DEMO / KNOWN), 1, 1, [back])
        store.put_preview("f" * 64, b"\x89PNG one")
        store.put_preview("f" * 64, b"\x89PNG two")  # replaced, not added
    rows = dict(sqlite3.connect(db).execute("SELECT sha256, png FROM previews"))
    assert rows == {verdict.sha256: verdict.preview, "f" * 64: b"\x89PNG two"}
    stored = sqlite3.connect(db).execute("SELECT record FROM results").fetchone()[0]
    assert PREVIEW_KEY not in stored and set(json.loads(stored)) == set(Verdict.__dataclass_fields__)


def test_the_switch_travels_to_workers_that_load_their_own_context(library: SignatureLibrary) -> None:
    """Guarded children and Dask workers rebuild the settings from JSON: previews stay on."""
    from scanner.context import ContextSpec

    on = with_previews(ScanContext(settings=Settings(), library=library), True)
    spec = ContextSpec.from_json(ContextSpec.of(on, str(library.path)).to_json())
    assert spec.settings.previews is True
    assert ContextSpec.of(with_previews(on, False), None).settings.previews is False
