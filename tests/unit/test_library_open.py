"""Library format 2: opening parses no record, exact lookups answer from sorted columns, and
integrity holds without hashing large files at every open (verification stamps)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from scanner import library_integrity
from scanner.library import AllowEntry, LibraryError, Signature, SignatureLibrary
from scanner.library_columns import LazyRecords
from scanner.matching import Matcher
from tests.conftest import REPO

WIDTH = 76


def synthetic(n: int, disabled: tuple[int, ...] = ()) -> SignatureLibrary:
    """n signatures of one row each (random vectors), every third sharing a sha256 with the
    next, so a lookup must return several positions in library order."""
    lib = SignatureLibrary.create(name="t")
    lib.signatures = [
        Signature(
            id=f"ms-{i:04d}",
            category="barrel",
            source="test",
            added="2026-01-01",
            sha256=f"sha-{i - i % 3 if i % 3 < 2 else i}",
            geometry_hash=f"geo-{i}",
            disabled={"by": "r", "why": "w", "at": "t"} if i in disabled else None,
        )  # fmt: skip
        for i in range(n)
    ]
    lib.allowlist = [
        AllowEntry(sha256="allow-a", geometry_hash=None, added="x", note="first"),
        AllowEntry(sha256=None, geometry_hash="allow-g", added="x", note="geo"),
        AllowEntry(sha256="allow-a", geometry_hash="other", added="x", note="second"),
    ]
    lib.vectors = np.random.default_rng(0).random((n, WIDTH), dtype=np.float32)
    lib.rows = np.column_stack([np.arange(n), np.full(n, -1)]).astype(np.int64)
    lib.thresholds = np.full(n, 0.05, dtype=np.float32)
    return lib


@pytest.fixture
def saved(tmp_path: Path) -> SignatureLibrary:
    lib = synthetic(30, disabled=(4,))
    lib.save(tmp_path / "lib")
    return lib


def test_open_parses_no_record_and_lookups_match_the_in_memory_library(saved: SignatureLibrary) -> None:
    opened = SignatureLibrary.load(saved.path)
    assert isinstance(opened.signatures, LazyRecords) and len(opened) == 30
    stored, memory = Matcher.build(opened), Matcher.build(saved)
    assert opened.signatures._cache == {}  # nothing parsed to open and build the matcher
    for i in range(30):
        s = saved.signatures[i]
        assert stored.sha256.query(s.sha256) == memory.sha256.query(s.sha256)
        assert stored.geometry.query(s.geometry_hash) == memory.geometry.query(s.geometry_hash)
    assert stored.sha256.query("sha-0") == [0, 1] and stored.geometry.query("geo-4") == []  # 4 is disabled
    assert stored.sha256.query("sha-") == [] and stored.sha256.query(None) == []
    for sha, geo in (("allow-a", None), (None, "allow-g"), (None, "other"), ("nope", "allow-g"), ("nope", None)):
        a, b = stored.allowed(sha, geo), memory.allowed(sha, geo)
        assert (a and a.note) == (b and b.note)
        assert opened.allowed(sha, geo) == saved.allowed(sha, geo)
    assert stored.allowed("allow-a", None).note == "first"
    assert opened.active() == saved.active() and opened.active()[4] is False
    match = stored.exact("sha-11", None, 0.0)
    assert [m.signature_id for m in match] == ["ms-0011"] and set(opened.signatures._cache) == {11}


def test_near_duplicate_matches_are_the_same_after_a_round_trip(saved: SignatureLibrary) -> None:
    opened = Matcher.build(SignatureLibrary.load(saved.path))
    memory = Matcher.build(saved)
    q = saved.vectors[[3, 4, 5]] + 0.001
    assert opened.near(q, [-1, 0, 1], 5, 0.08) == memory.near(q, [-1, 0, 1], 5, 0.08)
    assert {m.signature_id for m in opened.near(q, [-1, 0, 1], 5, 0.08)} == {"ms-0003", "ms-0005"}


def test_changes_to_an_opened_library_are_saved(saved: SignatureLibrary, tmp_path: Path) -> None:
    lib = SignatureLibrary.load(saved.path)
    assert lib.disable("ms-0007", "rev", "appeal") and not lib.disable("ms-0007", "rev", "again")
    assert lib.remove(["ms-0001", "ms-0002", "nope"]) == ["ms-0001", "ms-0002"]
    extra = Signature(id="ms-new", category="accessory", source="t", added="x", sha256="sha-new", geometry_hash="g")
    assert lib.add(extra, np.ones((2, WIDTH), np.float32), [-1, 0], np.full(2, 0.1, np.float32))
    assert not lib.add(extra, np.ones((1, WIDTH), np.float32), [-1], np.full(1, 0.1, np.float32))  # duplicate
    lib.save(tmp_path / "copy")
    back = SignatureLibrary.load(tmp_path / "copy")
    ids = [s.id for s in back.signatures]
    assert len(back) == 29 and "ms-0001" not in ids and ids[-1] == "ms-new"
    assert back.signatures[ids.index("ms-0007")].disabled["why"] == "appeal"
    assert [i for i, a in enumerate(back.active()) if not a] == [ids.index("ms-0004"), ids.index("ms-0007")]
    assert back.find(geometry_hash="geo-10") == [ids.index("ms-0010")] and back.find(sha256="sha-new") == [28]
    assert back.rows[-2:, 0].tolist() == [28, 28] and back.rows[:, 0].max() == 28
    np.testing.assert_array_equal(back.vectors[ids.index("ms-0010")], saved.vectors[10])
    assert SignatureLibrary.verify(tmp_path / "copy") == []


def test_allowlist_conflicts_and_duplicates_use_the_columns(saved: SignatureLibrary) -> None:
    lib = SignatureLibrary.load(saved.path)
    with pytest.raises(LibraryError, match="ms-0012"):
        lib.allow(AllowEntry(sha256=None, geometry_hash="geo-12", added="x"))
    assert not lib.allow(AllowEntry(sha256="allow-a", geometry_hash=None, added="y"))  # already there
    assert lib.allow(AllowEntry(sha256="new", geometry_hash=None, added="y"))
    enrolled = Signature(id="ms-x", category="barrel", source="t", added="x", sha256="allow-a", geometry_hash="gx")
    result = lib.add_signature(enrolled, np.ones((1, WIDTH), np.float32), [-1], np.full(1, 0.1, np.float32))
    assert [a.note for a in result.dropped_allow] == ["first", "second"]
    assert [a.sha256 for a in lib.allowlist] == [None, "new"]


def test_a_format_1_library_is_refused_with_the_re_enrolment_message(tmp_path: Path) -> None:
    """Format 1 predates patch codes: the library holds no geometry to compute them from, so it
    is refused saying how to re-enrol, not opened without local matching."""
    root = tmp_path / "v1"
    root.mkdir()
    for name in ("signatures.json", "allowlist.json"):
        (root / name).write_text("[]")
    manifest = {"format": "meshscan-signatures", "format_version": 1, "descriptor_version": "x", "files": {}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    for check in (True, False):
        with pytest.raises(LibraryError, match="re-enrol the original files"):
            SignatureLibrary.load(root, check_version=check)
    assert any("re-enrol" in p for p in SignatureLibrary.verify(root))


def test_shipped_library_is_format_2_with_patches() -> None:
    shipped = REPO / "signatures"
    manifest = json.loads((shipped / "manifest.json").read_text())
    assert manifest["format_version"] == 2 and manifest["patch_version"]
    lib = SignatureLibrary.load(shipped)
    assert len(lib.patch_codes) and set(np.unique(lib.patch_sigs)) == set(range(len(lib)))


def test_a_hash_with_a_nul_is_refused_at_save(tmp_path: Path) -> None:
    lib = synthetic(2)
    lib.signatures[1].geometry_hash = "geo-1\0"
    with pytest.raises(LibraryError, match="NUL"):
        lib.save(tmp_path / "lib")
    lib.signatures[1].geometry_hash = "geo-1"
    lib.save(tmp_path / "lib")
    opened = SignatureLibrary.load(tmp_path / "lib")
    assert opened.find(geometry_hash="geo-1\0") == [] and opened.find(geometry_hash="geo-1") == [1]


@pytest.fixture
def stamped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A saved library whose every file counts as large (stamped) and is old enough to stamp
    at once, opened once so its stamps are written."""
    monkeypatch.setattr(library_integrity, "HASH_ALWAYS_BELOW", 0)
    monkeypatch.setattr(library_integrity, "RACY_SECONDS", 0.0)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    synthetic(30).save(tmp_path / "lib")
    time.sleep(0.05)  # past the files' timestamp tick
    SignatureLibrary.load(tmp_path / "lib")
    assert (tmp_path / "lib" / library_integrity.STAMP_FILE).is_file()
    time.sleep(0.05)
    return tmp_path / "lib"


def count_hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = library_integrity.sha256_path
    monkeypatch.setattr(library_integrity, "sha256_path", lambda p: calls.append(Path(p).name) or real(p))
    return calls


def test_stamped_files_are_not_hashed_again(stamped: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_hashes(monkeypatch)
    SignatureLibrary.load(stamped)
    assert calls == []
    assert SignatureLibrary.verify(stamped) == [] and "descriptors.npy" in calls  # verify hashes everything


@pytest.mark.parametrize("name", ["descriptors.npy", "signatures.json", "signatures.sha256.keys.npy", "rows.npy"])
def test_a_file_changed_in_place_after_its_stamp_is_refused(stamped: Path, name: str) -> None:
    path = stamped / name
    data = bytearray(path.read_bytes())
    data[-2] ^= 0x01  # same size, same inode: only the ctime tells
    with open(path, "r+b") as fh:
        fh.write(bytes(data))
    with pytest.raises(LibraryError, match=f"{name} does not match its checksum"):
        SignatureLibrary.load(stamped)


def test_a_copied_library_is_hashed_again(stamped: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(stamped, copy)  # the stamp file comes along, but not the inodes
    calls = count_hashes(monkeypatch)
    SignatureLibrary.load(copy)
    assert "descriptors.npy" in calls


def test_verify_catches_what_a_forged_stamp_hides(stamped: Path) -> None:
    """Someone who rewrites a file and its stamp (write access to the folder) gets past an
    open, as they could by rewriting the manifest; ``signatures verify`` hashes regardless."""
    path = stamped / "thresholds.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x40
    path.write_bytes(bytes(data))
    stamps = json.loads((stamped / library_integrity.STAMP_FILE).read_text())
    st = path.stat()
    stamps["files"]["thresholds.npy"][:5] = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]
    (stamped / library_integrity.STAMP_FILE).write_text(json.dumps(stamps))
    assert any("thresholds.npy does not match its checksum" in p for p in SignatureLibrary.verify(stamped))


def test_lookup_columns_that_disagree_with_the_records_fail_verify(tmp_path: Path) -> None:
    import hashlib

    root = tmp_path / "lib"
    synthetic(10).save(root)
    keys = np.load(root / "signatures.geometry.keys.npy")
    keys[0], keys[1] = keys[1], keys[0]  # still sorted? no: and now lying about two records
    np.save(root / "signatures.geometry.keys.npy", keys, allow_pickle=False)
    manifest = json.loads((root / "manifest.json").read_text())
    name = "signatures.geometry.keys.npy"
    manifest["files"][name] = hashlib.sha256((root / name).read_bytes()).hexdigest()
    (root / "manifest.json").write_text(json.dumps(manifest))
    problems = SignatureLibrary.verify(root)
    assert any("disagree" in p for p in problems) and any("not sorted" in p for p in problems)


def test_a_lookup_pointing_past_the_records_is_refused(tmp_path: Path) -> None:
    import hashlib

    root = tmp_path / "lib"
    synthetic(10).save(root)
    pos = np.load(root / "signatures.sha256.pos.npy")
    pos[3] = 99
    np.save(root / "signatures.sha256.pos.npy", pos, allow_pickle=False)
    manifest = json.loads((root / "manifest.json").read_text())
    name = "signatures.sha256.pos.npy"
    manifest["files"][name] = hashlib.sha256((root / name).read_bytes()).hexdigest()
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(LibraryError, match="lookup pointing at missing records"):
        SignatureLibrary.load(root)
