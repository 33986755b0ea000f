"""The ANN shortlist (scanner/ann.py) behind NearDuplicateIndex: same matches as exact search,
a stored index trusted only when the manifest vouches for it, added rows matchable at once,
and a library that reopens memory-mapped."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("faiss", reason="meshscan[ann] (faiss-cpu) not installed")

from scanner import ann  # noqa: E402
from scanner.index import NearDuplicateIndex  # noqa: E402
from scanner.library import ANN_FILE, Signature, SignatureLibrary  # noqa: E402
from scanner.matching import Matcher  # noqa: E402

WIDTH = 76
PER = 5  # rows per signature: the whole file and four pieces close to it


def synthetic(n_sig: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Clustered rows (signatures on a 12-dimensional manifold, pieces near their signature),
    per-row thresholds 0.01-0.08 as enrolment sets them, and rows of [signature, body]."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(12, WIDTH)).astype(np.float32)
    centres = np.clip(0.6 + 0.05 * rng.normal(size=(n_sig, 12)).astype(np.float32) @ basis, 0, 1)
    vectors = np.repeat(centres, PER, axis=0) + rng.normal(scale=0.004, size=(n_sig * PER, WIDTH)).astype(np.float32)
    thresholds = rng.uniform(0.01, 0.08, n_sig * PER).astype(np.float32)
    bodies = np.tile(np.array([-1, -101, -102, -103, -104]), n_sig)
    rows = np.column_stack([np.repeat(np.arange(n_sig), PER), bodies]).astype(np.int64)
    return vectors.astype(np.float32), thresholds, rows, rng.integers(0, n_sig * PER, 300)


def near_queries(vectors: np.ndarray, picks: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=(len(picks), WIDTH))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    return vectors[picks] + direction * rng.uniform(0, 0.08, (len(picks), 1))


def hit_keys(index: NearDuplicateIndex, queries: np.ndarray) -> list[tuple[int, int, int, float]]:
    return [(h.query_row, h.signature, h.body, round(h.distance, 9)) for h in index.query(queries, k=5, radius=0.08)]


def exact_and_approx(seed: int) -> tuple[NearDuplicateIndex, NearDuplicateIndex, np.ndarray]:
    """The same 3,000 synthetic signatures indexed exactly and through an ANN shortlist, and
    queries near some of their rows."""
    vectors, thresholds, rows, picks = synthetic(3000, seed=seed)
    indexes = []
    for shortlist in (None, ann.AnnShortlist.build(vectors)):
        index = NearDuplicateIndex()
        index.add(vectors, rows[:, 0], rows[:, 1], thresholds)
        indexes.append(index.build(ann=shortlist))
    return indexes[0], indexes[1], near_queries(vectors, picks, seed=seed + 1)


def test_ann_with_rerank_returns_the_exact_matches() -> None:
    exact, approx, queries = exact_and_approx(seed=7)
    want = hit_keys(exact, queries)
    assert len({h[0] for h in want}) > 200  # most queries match something: the test has teeth
    assert hit_keys(approx, queries) == want


def test_rows_after_the_shortlist_are_searched_exactly() -> None:
    """A signature added after the ANN index was built is matchable at once (exact delta)."""
    vectors, thresholds, rows, _ = synthetic(2000, seed=3)
    shortlist = ann.AnnShortlist.build(vectors[:-PER])
    index = NearDuplicateIndex()
    index.add(vectors, rows[:, 0], rows[:, 1], thresholds)
    index.build(ann=shortlist)
    assert shortlist.rows == len(vectors) - PER
    hits = index.query(vectors[-PER:][:1].astype(np.float64), k=5, radius=0.08)
    assert (hits[0].signature, hits[0].body, hits[0].distance) == (1999, -1, 0.0)
    shortlist.add(vectors[-PER:])  # and once appended to the ANN index itself
    assert shortlist.rows == len(vectors)
    assert int(shortlist.search(vectors[-PER:][:1], 1)[0, 0]) == len(vectors) - PER


def _library(tmp_path, n_sig: int, monkeypatch) -> SignatureLibrary:
    monkeypatch.setenv("MESHSCAN_ANN_MIN_ROWS", "1000")
    vectors, thresholds, rows, _ = synthetic(n_sig, seed=11)
    lib = SignatureLibrary.create(tmp_path / "lib")
    lib.signatures = [
        Signature(id=f"ms-{i:016x}", category="barrel", source="test", added="2026-01-01", geometry_hash=f"{i:064x}")
        for i in range(n_sig)
    ]
    lib.vectors, lib.rows, lib.thresholds = vectors, rows, thresholds
    lib.save()
    return lib


def test_saved_library_reopens_memory_mapped_with_its_index(tmp_path, monkeypatch) -> None:
    lib = _library(tmp_path, 1000, monkeypatch)
    manifest = json.loads((tmp_path / "lib" / "manifest.json").read_text())
    assert manifest["ann"]["rows"] == 5000 and (tmp_path / "lib" / ANN_FILE).is_file()
    again = SignatureLibrary.load(tmp_path / "lib")
    assert isinstance(again.vectors, np.memmap) and not again.vectors.flags.writeable
    with pytest.raises(ValueError):
        again.thresholds[0] = 1.0  # read-only: a loaded library cannot be changed in place
    queries = near_queries(lib.vectors, np.arange(0, 5000, 37), seed=2)
    index = Matcher.build(again).descriptors
    assert index.ann is not None and index.ann.rows == 5000
    assert index.ann.mapped_from == tmp_path / "lib" / ANN_FILE  # the codes are read in place
    assert hit_keys(index, queries) == hit_keys(Matcher.build(lib).descriptors, queries)


def test_a_mapped_index_saved_elsewhere_holds_its_codes(tmp_path, monkeypatch) -> None:
    """FAISS writes a memory-mapped index as a reference to the file it maps: saving one must
    write the codes themselves, or the copy breaks when the original goes."""
    _library(tmp_path, 1000, monkeypatch)
    lib = SignatureLibrary.load(tmp_path / "lib")
    assert Matcher.build(lib).descriptors.ann.mapped_from is not None
    lib.save(tmp_path / "copy")
    expected = hit_keys(Matcher.build(lib).descriptors, near_queries(lib.vectors, np.arange(0, 5000, 41), seed=3))
    import shutil

    shutil.rmtree(tmp_path / "lib")
    copy = SignatureLibrary.load(tmp_path / "copy")
    index = Matcher.build(copy).descriptors
    assert index.ann is not None and index.ann.index.ntotal == 5000
    assert hit_keys(index, near_queries(copy.vectors, np.arange(0, 5000, 41), seed=3)) == expected


def test_index_file_not_matching_the_manifest_is_rebuilt_not_trusted(tmp_path, monkeypatch) -> None:
    _library(tmp_path, 1000, monkeypatch)
    path = tmp_path / "lib" / ANN_FILE
    # an index of other vectors (all rows at one point) in the file's place: were it trusted,
    # its shortlist would miss every match
    other = ann.AnnShortlist.build(np.zeros((5000, WIDTH), dtype=np.float32))
    other.save(path)
    again = SignatureLibrary.load(tmp_path / "lib")
    index = Matcher.build(again).descriptors
    assert index.ann is not None and index.ann.index is not other.index
    probe = np.asarray(again.vectors[1234], dtype=np.float64)[None, :]
    hits = index.query(probe, k=1, radius=0.08)
    assert (hits[0].signature, hits[0].distance) == (1234 // PER, 0.0)


def test_added_signature_is_matchable_immediately_and_after_save(tmp_path, monkeypatch) -> None:
    _library(tmp_path, 1000, monkeypatch)
    lib = SignatureLibrary.load(tmp_path / "lib")
    new = np.full((1, WIDTH), 0.123, dtype=np.float32)
    sig = Signature(id="ms-new", category="barrel", source="test", added="2026-01-02", geometry_hash="f" * 64)
    assert lib.add(sig, new, [-1], np.array([0.05], dtype=np.float32))
    index = Matcher.build(lib).descriptors
    assert index.ann.mapped_from is not None
    hits = index.query(new.astype(np.float64), k=1, radius=0.08)
    assert hits[0].signature == 1000  # before any save: the exact delta beside the stored shortlist
    lib.save()
    manifest = json.loads((tmp_path / "lib" / "manifest.json").read_text())
    assert manifest["ann"]["rows"] == 5001  # appended to the stored index, no rebuild
    reopened = Matcher.build(SignatureLibrary.load(tmp_path / "lib")).descriptors
    assert reopened.ann.rows == 5001
    assert reopened.query(new.astype(np.float64), k=1, radius=0.08)[0].signature == 1000


def test_small_library_stays_exact(tmp_path) -> None:
    vectors, thresholds, rows, _ = synthetic(20, seed=1)
    lib = SignatureLibrary.create(tmp_path / "small")
    lib.signatures = [
        Signature(id=f"s{i}", category="barrel", source="t", added="2026", geometry_hash=f"{i:064x}") for i in range(20)
    ]
    lib.vectors, lib.rows, lib.thresholds = vectors, rows, thresholds
    lib.save()
    assert "ann" not in json.loads((tmp_path / "small" / "manifest.json").read_text())
    assert Matcher.build(SignatureLibrary.load(tmp_path / "small")).descriptors.ann is None


def test_neighbours_through_the_shortlist_equal_the_exact_ones() -> None:
    """The matcher's ambiguity test asks who else is near a hit; with an ANN shortlist it must
    see the same rows, whatever their own thresholds, as an exact scan."""
    exact, approx, queries = exact_and_approx(seed=11)
    want = exact.neighbours(queries, radius=0.1)
    got = approx.neighbours(queries, radius=0.1)
    assert sum(len(r) for r, _ in want) > 2 * len(queries)  # several rows around each query
    for (wr, wd), (gr, gd) in zip(want, got, strict=True):
        assert wr.tolist() == gr.tolist()
        assert np.allclose(wd, gd)
        assert (wd <= 0.1).all()


def test_a_stored_index_replaced_under_a_mapped_one_is_rebuilt_at_save(tmp_path, monkeypatch) -> None:
    """Another writer's index in the file's place while this process maps the old one: the
    save does not append to rows it cannot vouch for, it rebuilds from the library's vectors."""
    _library(tmp_path, 1000, monkeypatch)
    lib = SignatureLibrary.load(tmp_path / "lib")
    assert Matcher.build(lib).descriptors.ann.mapped_from is not None
    # as many rows as the one it replaces: only which file it is tells them apart
    ann.AnnShortlist.build(np.zeros((5000, WIDTH), dtype=np.float32)).save(tmp_path / "lib" / ANN_FILE)
    new = np.full((1, WIDTH), 0.123, dtype=np.float32)
    sig = Signature(id="ms-new", category="barrel", source="test", added="2026-01-02", geometry_hash="f" * 64)
    assert lib.add(sig, new, [-1], np.array([0.05], dtype=np.float32))
    lib.save()
    reopened = SignatureLibrary.load(tmp_path / "lib")
    index = Matcher.build(reopened).descriptors
    assert index.ann.rows == 5001
    probe = np.asarray(reopened.vectors[1234], dtype=np.float64)[None, :]
    assert index.query(probe, k=1, radius=0.08)[0].signature == 1234 // PER  # the rebuilt index, not the impostor
    assert index.query(new.astype(np.float64), k=1, radius=0.08)[0].signature == 1000
