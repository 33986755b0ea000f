"""Shared libraries cannot silence each other: an allowlist entry never equals an enrolled
signature's hash (refused at allow, at merge), an enrolled signature drops an allowlist entry
with its hash (the signature wins), and a merge imports a partner's allowlist only when asked,
reporting everything it did per kind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scanner.enrol import enrol
from scanner.inspect import file_sha256
from scanner.library import AllowEntry, AllowlistConflict, SignatureLibrary, open_any
from tests.conftest import REPO

DEMO = REPO / "fixtures" / "demo"
BARREL = DEMO / "proxy-barrel-s1-001.stl"
ACCESSORY = DEMO / "proxy-accessory-s1-002.stl"
BENIGN = DEMO / "benign-pipe-s1-000.obj"
NOW = "2026-01-01T00:00:00+00:00"


def geometry_hash(path: Path) -> str:
    import scanner

    return scanner.load(path).geometry_hash


@pytest.fixture
def lib(tmp_path: Path) -> SignatureLibrary:
    lib = SignatureLibrary.create(tmp_path / "lib", name="ours")
    assert enrol(lib, BARREL, "barrel", "case-1")[0].status == "added"
    return lib


@pytest.mark.parametrize("by", ["sha256", "geometry_hash"])
def test_allow_refuses_an_entry_equal_to_a_signature_naming_it(lib: SignatureLibrary, by: str) -> None:
    sig = lib.signatures[0]
    entry = AllowEntry(sha256=sig.sha256 if by == "sha256" else "0" * 64,
                       geometry_hash=sig.geometry_hash if by == "geometry_hash" else None, added=NOW)  # fmt: skip
    with pytest.raises(AllowlistConflict) as exc:
        lib.allow(entry)
    message = str(exc.value)
    assert sig.id in message and "barrel" in message and sig.name in message
    assert ("same sha256" if by == "sha256" else "same geometry hash") in message
    assert exc.value.signatures == [sig] and lib.allowlist == []


def test_allow_accepts_other_files_once(lib: SignatureLibrary) -> None:
    entry = AllowEntry(sha256=file_sha256(BENIGN), geometry_hash=geometry_hash(BENIGN), added=NOW)
    assert lib.allow(entry) is True
    assert lib.allow(AllowEntry(**vars(entry))) is False
    assert len(lib.allowlist) == 1


def test_enrolling_an_allowlisted_file_drops_the_entry_the_signature_wins(lib: SignatureLibrary) -> None:
    benign = AllowEntry(sha256=file_sha256(BENIGN), geometry_hash=geometry_hash(BENIGN), added=NOW, note="pipe")
    by_hash = AllowEntry(sha256=None, geometry_hash=geometry_hash(ACCESSORY), added=NOW, note="said benign")
    by_sha = AllowEntry(sha256=file_sha256(ACCESSORY), geometry_hash=None, added=NOW)
    for entry in (benign, by_hash, by_sha):
        lib.allow(entry)
    (result,) = enrol(lib, ACCESSORY, "accessory", "case-2")
    assert result.status == "added"
    assert result.dropped_allow == [by_hash, by_sha]
    assert lib.allowlist == [benign]
    assert lib.allowed(file_sha256(ACCESSORY), geometry_hash(ACCESSORY)) is None


def test_a_duplicate_enrolment_drops_nothing(lib: SignatureLibrary) -> None:
    (result,) = enrol(lib, BARREL, "barrel", "again")
    assert result.status == "duplicate" and result.dropped_allow == []


def partner_export(tmp_path: Path, ours: SignatureLibrary) -> Path:
    """A partner library: one new signature (the accessory), one we hold (the barrel), and an
    allowlist holding a benign file, our barrel's geometry hash (which would silence our
    signature), its own accessory's sha256, and an entry we already have."""
    partner = SignatureLibrary.create(tmp_path / "partner", name="partner")
    enrol(partner, ACCESSORY, "accessory", "partner-case")
    enrol(partner, BARREL, "barrel", "partner-case")
    doc = partner.export_json()
    doc["allowlist"] = [
        {"sha256": file_sha256(BENIGN), "geometry_hash": geometry_hash(BENIGN), "added": NOW, "note": "pipe", "by": ""},
        {"sha256": None, "geometry_hash": ours.signatures[0].geometry_hash, "added": NOW, "note": "x", "by": "eve"},
        {"sha256": file_sha256(ACCESSORY), "geometry_hash": None, "added": NOW, "note": "", "by": "eve"},
        {"sha256": "ab" * 32, "geometry_hash": None, "added": NOW, "note": "known", "by": ""},
    ]
    path = tmp_path / "partner.json"
    path.write_text(json.dumps(doc))
    return path


def test_merge_leaves_the_allowlist_out_unless_asked_and_counts_it(lib: SignatureLibrary, tmp_path: Path) -> None:
    export = partner_export(tmp_path, lib)
    report = lib.merge(open_any(export))
    assert len(report.signatures_added) == 1 and report.signatures_duplicate == [lib.signatures[0].id]
    assert report.allow_offered == 4 and not report.allow_imported and lib.allowlist == []
    assert report.lines()[1] == "allowlist: 4 entries not imported (pass --with-allowlist to import them)"


def test_merge_with_allowlist_adds_skips_and_refuses_naming_conflicts(lib: SignatureLibrary, tmp_path: Path) -> None:
    export = partner_export(tmp_path, lib)
    lib.allow(AllowEntry(sha256="ab" * 32, geometry_hash=None, added=NOW, note="known"))
    report = lib.merge(open_any(export), with_allowlist=True)
    barrel, accessory = lib.signatures[0], lib.signatures[1]
    assert accessory.category == "accessory" and report.signatures_added == [accessory.id]
    assert [a.note for a in report.allow_added] == ["pipe"]
    assert [a.note for a in report.allow_duplicate] == ["known"]
    refused = {why.split(" would silence enrolled signature ")[1].split(" ")[0] for _, why in report.allow_refused}
    assert refused == {barrel.id, accessory.id} and report.conflicts == 2
    assert {(a.sha256, a.geometry_hash) for a in lib.allowlist} == {
        ("ab" * 32, None),
        (file_sha256(BENIGN), geometry_hash(BENIGN)),
    }
    text = "\n".join(report.lines())
    assert "allowlist: 1 added, 1 already present, 2 refused" in text
    assert text.count("conflict: allowlist entry") == 2 and barrel.id in text and accessory.id in text
    doc = report.to_dict()
    assert len(doc["allowlist"]["refused"]) == 2 and doc["signatures"]["added"] == [accessory.id]


def test_merged_signature_drops_a_local_entry_with_its_hash(lib: SignatureLibrary, tmp_path: Path) -> None:
    local = AllowEntry(sha256=None, geometry_hash=geometry_hash(ACCESSORY), added=NOW, note="ours")
    lib.allow(local)
    report = lib.merge(open_any(partner_export(tmp_path, lib)))
    (sig_id,) = report.signatures_added
    assert report.allow_dropped == [(local, sig_id)] and lib.allowlist == []
    assert any(sig_id in line and "dropped" in line for line in report.lines())


def test_saved_merge_keeps_no_conflicting_entry(lib: SignatureLibrary, tmp_path: Path) -> None:
    lib.merge(open_any(partner_export(tmp_path, lib)), with_allowlist=True)
    lib.save()
    loaded = SignatureLibrary.load(lib.path)
    for entry in loaded.allowlist:
        assert loaded.allow_conflicts(entry) == []
