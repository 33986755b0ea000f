"""SignatureLibrary: safe persistence, verification, no geometry, add/remove/merge."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import scanner
from scanner.enrol import enrol
from scanner.library import LibraryError, SignatureLibrary, open_any
from tests.conftest import REPO

DEMO = REPO / "fixtures" / "demo"


@pytest.fixture
def lib(tmp_path: Path) -> SignatureLibrary:
    lib = SignatureLibrary.create(tmp_path / "lib", name="t")
    enrol(lib, DEMO / "proxy-barrel-s1-001.stl", "barrel", "case-1", note="n")
    enrol(lib, DEMO / "proxy-accessory-s1-002.stl", "accessory", "case-2")
    lib.save()
    return lib


def test_round_trip(lib: SignatureLibrary) -> None:
    loaded = SignatureLibrary.load(lib.path)
    assert [s.id for s in loaded.signatures] == [s.id for s in lib.signatures]
    assert loaded.vectors.dtype == np.float32 and np.array_equal(loaded.vectors, lib.vectors)
    assert loaded.library_version == lib.library_version != "empty"


def test_holds_no_geometry(lib: SignatureLibrary) -> None:
    text = (lib.path / "signatures.json").read_text()
    for word in ("vertices", "faces", "triangles_data"):
        assert word not in text
    # descriptor rows are fixed-length summaries, far smaller than any mesh
    assert lib.vectors.shape[1] < 100


@pytest.mark.parametrize("name", ["signatures.json", "descriptors.npy", "rows.npy", "allowlist.json"])
def test_any_tampered_file_is_refused(lib: SignatureLibrary, name: str) -> None:
    path = lib.path / name
    data = bytearray(path.read_bytes())
    data[-2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(LibraryError, match=f"{name} does not match its checksum"):
        SignatureLibrary.load(lib.path)
    assert any(name in p for p in SignatureLibrary.verify(lib.path))


def test_pickled_array_is_refused_even_with_a_valid_checksum(lib: SignatureLibrary) -> None:
    # an object array needs pickle to load; re-sign the manifest so only allow_pickle=False stops it
    np.save(lib.path / "rows.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    manifest = json.loads((lib.path / "manifest.json").read_text())
    import hashlib

    manifest["files"]["rows.npy"] = hashlib.sha256((lib.path / "rows.npy").read_bytes()).hexdigest()
    (lib.path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(LibraryError, match="unreadable"):
        SignatureLibrary.load(lib.path)


def test_other_descriptor_version_is_refused(lib: SignatureLibrary) -> None:
    lib.descriptor_version = "ms0:other"
    lib.save()
    with pytest.raises(LibraryError, match="re-enrol"):
        SignatureLibrary.load(lib.path)


def test_not_a_library(tmp_path: Path) -> None:
    with pytest.raises(LibraryError, match="no manifest.json"):
        SignatureLibrary.load(tmp_path)


def test_duplicate_geometry_is_not_enrolled_twice(lib: SignatureLibrary) -> None:
    results = enrol(lib, DEMO / "proxy-barrel-s1-001.stl", "barrel", "again")
    assert [r.status for r in results] == ["duplicate"] and len(lib) == 2


def test_remove_keeps_rows_consistent(lib: SignatureLibrary) -> None:
    first = lib.signatures[0].id
    assert lib.remove([first, "nope"]) == [first]
    assert len(lib) == 1 and set(lib.rows[:, 0]) == {0}
    lib.save()
    assert SignatureLibrary.load(lib.path).signatures[0].category == "accessory"


def test_merge_and_export(lib: SignatureLibrary, tmp_path: Path) -> None:
    export = tmp_path / "e.json"
    export.write_text(json.dumps(lib.export_json()))
    other = SignatureLibrary.create(tmp_path / "other")
    enrol(other, DEMO / "proxy-barrel-s1-001.stl", "barrel", "dup")
    report = other.merge(open_any(export))
    assert (len(report.signatures_added), len(report.signatures_duplicate)) == (1, 1) and len(other) == 2
    np.testing.assert_allclose(other.vectors[-1], lib.vectors[-1], atol=1e-6)


def test_unknown_category(lib: SignatureLibrary) -> None:
    with pytest.raises(LibraryError, match="unknown category"):
        enrol(lib, DEMO / "proxy-bolt_or_breech_block-s1-001.obj", "spoon", "x")


def test_thresholds_are_tightened_near_benign_shapes(tmp_path: Path) -> None:
    """A plain pipe as a 'signature' sits near the benign reference pipes: its threshold is
    tightened (never past 0.8x its distance to the nearest of them, whatever its pose noise),
    while a composite part keeps more tolerance. Each row's threshold is the benign rule,
    lifted to twice its own pose noise where the benign ceiling allows."""
    import trimesh

    from scanner.config import MatchSettings
    from scanner.decimation import DECIMATED_ROWS, DECIMATED_THRESHOLD, REMESHED_ROWS
    from scanner.enrol import BENIGN_CEILING, POSE_MARGIN, pose_noise
    from scanner.features.affine import AFFINE_ROW, AFFINE_THRESHOLD
    from scanner.features.pieces import PIECE_ROW_BASE, PIECE_THRESHOLD
    from scanner.features.reference import ALPHA, PLAIN_SOLID, nearest_generic_distance, nearest_reference_distance
    from scanner.subdivision import SUBDIVIDED_ROW, SUBDIVIDED_THRESHOLD, subdivided_solids

    pipe = tmp_path / "pipe.stl"
    trimesh.creation.annulus(r_min=0.8, r_max=1.0, height=9.0, sections=48).export(pipe)
    lib = SignatureLibrary.create(tmp_path / "lib")
    (plain,) = enrol(lib, pipe, "barrel", "t")
    (composite,) = enrol(lib, DEMO / "proxy-frame_or_receiver-s1-001.stl", "frame_or_receiver", "t")
    pieces = lib.rows[:, 1] <= PIECE_ROW_BASE  # plane-cut pieces, checked below
    affine = lib.rows[:, 1] == AFFINE_ROW  # whitened rows for stretched copies, checked below
    smooth = lib.rows[:, 1] == SUBDIVIDED_ROW  # Loop-subdivided surfaces, checked below
    decimated = np.isin(lib.rows[:, 1], [*DECIMATED_ROWS.values(), *REMESHED_ROWS.values()])  # checked below
    whole = np.flatnonzero(~pieces & ~affine & ~smooth & ~decimated)  # one row per file here: each is a single body
    assert lib.rows[whole].tolist() == [[0, -1], [1, -1]]
    assert lib.rows[affine].tolist() == [[0, AFFINE_ROW], [1, AFFINE_ROW]]
    np.testing.assert_allclose(lib.thresholds[affine], np.minimum(AFFINE_THRESHOLD, lib.thresholds[whole]))
    benign = nearest_reference_distance(lib.vectors[whole])
    assert plain.threshold <= BENIGN_CEILING * benign[0] + 1e-6
    assert composite.threshold > plain.threshold
    glob = MatchSettings().distance_threshold
    noise = np.concatenate([pose_noise(scanner.load(p), lib.vectors[i : i + 1]) for i, p in
                            zip(whole, (pipe, DEMO / "proxy-frame_or_receiver-s1-001.stl"), strict=True)])  # fmt: skip
    floor = np.minimum(np.minimum(POSE_MARGIN * noise, glob), BENIGN_CEILING * benign)
    expected = np.maximum(np.minimum(glob, ALPHA * benign), floor)
    whole_plain = nearest_generic_distance(lib.vectors[whole]) < PLAIN_SOLID  # exact copies only
    np.testing.assert_allclose(lib.thresholds[whole], np.where(whole_plain, 0.0, expected), rtol=1e-5)
    # a piece is never more distinctive than its whole, nor past the piece cap or the benign rule
    assert pieces.sum() > 0
    piece_benign = nearest_reference_distance(lib.vectors[pieces])
    cap = np.minimum(PIECE_THRESHOLD, lib.thresholds[whole][lib.rows[pieces, 0]])
    expected = np.minimum(cap, ALPHA * piece_benign)
    plain_solid = nearest_generic_distance(lib.vectors[pieces]) < PLAIN_SOLID  # half a pipe is a gutter
    assert plain_solid.any()
    np.testing.assert_allclose(lib.thresholds[pieces], np.where(plain_solid, 0.0, expected), rtol=1e-5)
    # a subdivided surface is never matched more loosely than its file, nor than half its distance
    # to the benign reference set or to a subdivided plain solid
    # (only for a matchable whole: the plain pipe is a plain solid, exact copies only)
    matchable = [i for i, w in enumerate(whole) if lib.thresholds[w] > 0]
    assert whole_plain.tolist() == [True, False]
    assert lib.rows[smooth].tolist() == [[i, SUBDIVIDED_ROW] for i in matchable]
    rows = lib.vectors[smooth].astype(np.float64)
    solids = np.sqrt(((subdivided_solids()[None, :, :] - rows[:, None, :]) ** 2).sum(axis=2)).min(axis=1)
    near = np.minimum(nearest_reference_distance(lib.vectors[smooth]), solids)
    expected = np.minimum(np.minimum(lib.thresholds[whole[matchable]], SUBDIVIDED_THRESHOLD), ALPHA * near)
    np.testing.assert_allclose(lib.thresholds[smooth], expected, rtol=1e-5)
    # so is a decimated surface (and one that is a plain solid matches exact copies only)
    assert decimated.any() and set(lib.rows[decimated, 0].tolist()) == set(matchable)
    owner = lib.thresholds[whole][lib.rows[decimated, 0]]
    near = nearest_reference_distance(lib.vectors[decimated])
    expected = np.minimum(np.minimum(owner, DECIMATED_THRESHOLD), ALPHA * near)
    plain_solid = nearest_generic_distance(lib.vectors[decimated]) < PLAIN_SOLID
    np.testing.assert_allclose(lib.thresholds[decimated], np.where(plain_solid, 0.0, expected), rtol=1e-5)


def test_signatures_add_refuses_a_reference_set_of_another_descriptor_version(tmp_path, monkeypatch) -> None:
    """A broken install (reference data for another descriptor) is a clear exit 2, not a traceback."""
    from click.testing import CliRunner

    import scanner.features
    import scanner.features.version
    from scanner.cli import cli
    from scanner.features import reference

    monkeypatch.setattr(scanner.features, "DESCRIPTOR_VERSION", "ms0:other")
    monkeypatch.setattr(scanner.features.version, "DESCRIPTOR_VERSION", "ms0:other")
    lib = tmp_path / "lib"
    SignatureLibrary.create(lib, name="t").save(lib)  # a library of the (patched) running version
    reference._shipped.cache_clear()
    reference._reference64.cache_clear()
    try:
        proxy = DEMO / "proxy-barrel-s1-001.stl"
        result = CliRunner().invoke(cli, ["signatures", "add", str(proxy), "--library", str(lib),
                                          "--category", "barrel", "--source", "test"])  # fmt: skip
    finally:
        reference._shipped.cache_clear()
        reference._reference64.cache_clear()
    assert result.exit_code == 3, result.output
    assert "rebuild it with 'python -m fixtures.reference'" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_enrolling_one_by_one_copies_the_columns_a_logarithmic_number_of_times(tmp_path: Path) -> None:
    """Each add appends to a buffer that doubles when full: 2,000 signatures of 7 rows reallocate
    the descriptor column about a dozen times, not 2,000 (a library of 10,000 signatures with
    ~100 rows each copied the whole matrix per signature before), and the columns read, save and
    reload exactly as appended."""
    from scanner.features import DESCRIPTOR_SIZE
    from scanner.library import Signature

    lib = SignatureLibrary.create(tmp_path / "lib", name="t")
    rng = np.random.default_rng(0)
    want_vectors, want_rows, buffers = [], [], set()
    patches = np.zeros(3, dtype=[("code", np.uint64), ("size", np.int16), ("share", np.float32)])
    for i in range(2000):
        vectors = rng.random((7, DESCRIPTOR_SIZE), dtype=np.float32)
        bodies = [-1, 0, 1, -150, -170, -185, -5]
        sig = Signature(id=f"ms-{i:016x}", category="barrel", source="t", added="2026", geometry_hash=f"{i:064x}")
        patches["code"] = [3 * i, 3 * i + 1, 3 * i + 2]
        assert lib.add(sig, vectors, bodies, np.full(7, 0.01 * (i % 5), dtype=np.float32), patches)
        want_vectors.append(vectors)
        want_rows += [(i, b) for b in bodies]
        buffers.add(id(lib._spare["vectors"]))
    assert len(buffers) <= 12
    assert np.array_equal(lib.vectors, np.concatenate(want_vectors))
    assert lib.rows.tolist() == [list(r) for r in want_rows]
    assert len(lib.patch_codes) == 6000 and lib.patch_sigs[-1] == 1999
    lib.save()
    again = SignatureLibrary.load(tmp_path / "lib")
    assert np.array_equal(np.asarray(again.vectors), lib.vectors)
    assert np.array_equal(np.asarray(again.thresholds), lib.thresholds)
    assert sorted(np.asarray(again.patch_codes).tolist()) == list(range(6000))
