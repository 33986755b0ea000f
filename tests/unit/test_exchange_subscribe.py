"""Subscriptions: an update applies a publisher's bank cleanly (added, removed, disabled, each
reported), never lets a rollback, a bad bundle or a crash leave anything but the old or the new
library, and keeps publishers' banks - and allowlists - apart."""

from __future__ import annotations

import os
import time
from pathlib import Path

import fsspec
import pytest

from scanner.enrol import enrol
from scanner.exchange import errors as why
from scanner.exchange import subscribe
from scanner.exchange.bundle import make_bundle
from scanner.exchange.errors import Refused
from scanner.exchange.keys import keygen, load_private, load_public
from scanner.exchange.subscribe import read_state, set_disabled, update
from scanner.library import AllowEntry, SignatureLibrary
from tests.conftest import REPO

DEMO = REPO / "fixtures" / "demo"
BARREL = DEMO / "proxy-barrel-s1-001.stl"
ACCESSORY = DEMO / "proxy-accessory-s1-002.stl"
FRAME = DEMO / "proxy-frame_or_receiver-s1-001.stl"


@pytest.fixture(scope="module")
def enrolled() -> dict[str, SignatureLibrary]:
    """One single-signature library per proxy (enrolment is the slow part: done once)."""
    out = {}
    for name, path, category in (("barrel", BARREL, "barrel"), ("accessory", ACCESSORY, "accessory"),
                                 ("frame", FRAME, "frame_or_receiver")):  # fmt: skip
        lib = SignatureLibrary.create(name=name)
        assert enrol(lib, path, category, "case")[0].status == "added"
        out[name] = lib
    return out


def combined(enrolled: dict[str, SignatureLibrary], *names: str) -> SignatureLibrary:
    lib = SignatureLibrary.create(name="publisher")
    for name in names:
        lib.merge(enrolled[name])
    return lib


@pytest.fixture
def pki(tmp_path: Path) -> dict:
    a_key, a_pub, _ = keygen(tmp_path / "keys", "a")
    b_key, b_pub, _ = keygen(tmp_path / "keys", "b")
    return {"a": load_private(a_key), "A": load_public(a_pub), "b": load_private(b_key), "B": load_public(b_pub)}


def write(tmp_path: Path, name: str, data: bytes) -> str:
    (tmp_path / name).write_bytes(data)
    return str(tmp_path / name)


def ids(path: Path) -> list[str]:
    return sorted(s.id for s in SignatureLibrary.load(path).signatures)


def test_update_round_trip_with_removal_and_rollback(tmp_path: Path, enrolled: dict, pki: dict) -> None:
    sub = tmp_path / "sub"
    v1 = make_bundle(combined(enrolled, "barrel", "accessory"), pki["a"], "authority")
    first = update(write(tmp_path, "v1", v1), sub, [pki["A"]])
    barrel, accessory = enrolled["barrel"].signatures[0], enrolled["accessory"].signatures[0]
    assert first.status == "updated" and first.added == {"barrel": [barrel.id], "accessory": [accessory.id]}
    assert ids(sub) == sorted([barrel.id, accessory.id]) and sub.is_symlink()
    assert SignatureLibrary.load(sub).signatures[0].source.startswith("bank authority (ed25519:")
    assert update(str(tmp_path / "v1"), sub, [pki["A"]]).status == "current"

    v2 = make_bundle(combined(enrolled, "accessory", "frame"), pki["a"], "authority", previous=v1)
    second = update(write(tmp_path, "v2", v2), sub, [pki["A"]])
    frame = enrolled["frame"].signatures[0]
    assert second.removed == {"barrel": [barrel.id]} and second.added == {"frame_or_receiver": [frame.id]}
    assert second.kept == [accessory.id] and ids(sub) == sorted([accessory.id, frame.id])

    with pytest.raises(Refused) as exc:
        update(str(tmp_path / "v1"), sub, [pki["A"]])
    assert exc.value.reason == why.ROLLBACK
    assert ids(sub) == sorted([accessory.id, frame.id])
    events = read_state(sub.resolve())["events"]
    assert [(e["action"], e["to"]) for e in events] == [("update", 1), ("update", 2)]


@pytest.mark.parametrize("reason", [why.BAD_SIGNATURE, why.UNTRUSTED_KEY, why.MALFORMED, why.TOO_LARGE])
def test_bad_bundles_leave_the_library_alone(tmp_path: Path, enrolled: dict, pki: dict, reason: str) -> None:
    sub = tmp_path / "sub"
    v1 = make_bundle(enrolled["barrel"], pki["a"], "authority")
    update(write(tmp_path, "v1", v1), sub, [pki["A"]])
    before = os.readlink(sub)
    v2 = make_bundle(enrolled["accessory"], pki["a"], "authority", previous=v1)
    bad = {
        why.BAD_SIGNATURE: v2.replace(b"accessory", b"barrel", 1),
        why.UNTRUSTED_KEY: make_bundle(enrolled["accessory"], pki["b"], "authority", sequence=2),
        why.MALFORMED: v2[: len(v2) - 500],  # truncated download
        why.TOO_LARGE: v2,
    }[reason]
    with pytest.raises(Refused) as exc:
        update(write(tmp_path, "bad", bad), sub, [pki["A"]], max_bytes=1000 if reason == why.TOO_LARGE else 1 << 30)
    assert exc.value.reason == reason
    assert os.readlink(sub) == before and ids(sub) == [enrolled["barrel"].signatures[0].id]


@pytest.mark.parametrize("where", ["staging", "swap"])
def test_a_crash_leaves_the_old_library_and_the_next_update_recovers(
    tmp_path: Path, enrolled: dict, pki: dict, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    sub = tmp_path / "sub"
    v1 = make_bundle(enrolled["barrel"], pki["a"], "authority")
    update(write(tmp_path, "v1", v1), sub, [pki["A"]])
    v2 = write(tmp_path, "v2", make_bundle(enrolled["accessory"], pki["a"], "authority", previous=v1))

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt("power cut")

    if where == "staging":
        monkeypatch.setattr(SignatureLibrary, "verify", crash)  # after the new files are written
    else:
        monkeypatch.setattr(subscribe.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        update(v2, sub, [pki["A"]])
    monkeypatch.undo()
    assert SignatureLibrary.verify(sub) == [] and ids(sub) == [enrolled["barrel"].signatures[0].id]
    assert update(v2, sub, [pki["A"]]).status == "updated"
    assert ids(sub) == [enrolled["accessory"].signatures[0].id]
    versions = subscribe.versions_dir(sub)
    assert not [p for p in versions.iterdir() if p.name.startswith(".")], "staging leftovers are cleared"
    assert len(list(versions.iterdir())) <= subscribe.KEEP_VERSIONS


def test_banks_are_kept_apart(tmp_path: Path, enrolled: dict, pki: dict) -> None:
    """Publisher B dropping (and tombstoning) a signature that A also holds removes nothing A
    holds; B's duplicate of A's signature is reported as held by A."""
    sub = tmp_path / "sub"
    barrel = enrolled["barrel"].signatures[0].id
    update(write(tmp_path, "a1", make_bundle(enrolled["barrel"], pki["a"], "A")), sub, [pki["A"], pki["B"]])
    b1 = make_bundle(combined(enrolled, "barrel", "frame"), pki["b"], "B")
    report = update(write(tmp_path, "b1", b1), sub, [pki["A"], pki["B"]])
    assert report.duplicate == [(barrel, f"A ({pki['A'].fingerprint})")]
    b2 = make_bundle(enrolled["accessory"], pki["b"], "B", previous=b1)
    report = update(write(tmp_path, "b2", b2), sub, [pki["A"], pki["B"]])
    assert report.removed == {"frame_or_receiver": [enrolled["frame"].signatures[0].id]}
    # B's tombstone for the barrel it dropped is reported, and A's copy stays
    assert report.tombstone_ignored == [(barrel, f"A ({pki['A'].fingerprint})")] and barrel in ids(sub)
    banks = read_state(sub.resolve())["banks"]
    assert banks[pki["A"].fingerprint]["signatures"] == [barrel]


def test_allowlists_only_from_trusted_publishers_and_never_over_a_signature(
    tmp_path: Path, enrolled: dict, pki: dict
) -> None:
    sub = tmp_path / "sub"
    update(write(tmp_path, "a1", make_bundle(enrolled["barrel"], pki["a"], "A")), sub, [pki["A"], pki["B"]])
    partner = combined(enrolled, "accessory")
    barrel_hash = enrolled["barrel"].signatures[0].geometry_hash
    partner.allowlist = [AllowEntry(sha256="1" * 64, geometry_hash=None, added="2026-01-01"),
                         AllowEntry(sha256=None, geometry_hash=barrel_hash, added="2026-01-01")]  # fmt: skip
    b1 = write(tmp_path, "b1", make_bundle(partner, pki["b"], "B"))
    untrusted = update(b1, sub, [pki["A"], pki["B"]])
    assert untrusted.allow_offered == 2 and not untrusted.allow_added
    assert SignatureLibrary.load(sub).allowlist == []
    b2 = write(tmp_path, "b2", make_bundle(partner, pki["b"], "B", sequence=2))
    trusted = update(b2, sub, [pki["A"], pki["B"]], trust_allowlist=[pki["B"]])
    assert [a.sha256 for a in trusted.allow_added] == ["1" * 64]
    (refused, message), = trusted.allow_refused  # fmt: skip
    assert refused.geometry_hash == barrel_hash and enrolled["barrel"].signatures[0].id in message
    assert [a.sha256 for a in SignatureLibrary.load(sub).allowlist] == ["1" * 64]


def test_disabled_signatures_stay_out_through_updates(tmp_path: Path, enrolled: dict, pki: dict) -> None:
    sub = tmp_path / "sub"
    v1 = make_bundle(combined(enrolled, "barrel", "accessory"), pki["a"], "A")
    update(write(tmp_path, "v1", v1), sub, [pki["A"]])
    barrel = enrolled["barrel"].signatures[0].id
    assert set_disabled(sub, [barrel], "carol", "false positives on pipes") == [barrel]
    assert barrel not in ids(sub)
    report = update(write(tmp_path, "v2", make_bundle(combined(enrolled, "barrel", "accessory"), pki["a"], "A",
                                                      previous=v1)), sub, [pki["A"]])  # fmt: skip
    assert report.disabled == {"barrel": [barrel]} and barrel not in ids(sub)
    state = read_state(sub.resolve())
    assert state["disabled"][barrel]["by"] == "carol" and state["events"][-2]["action"] == "disable"
    assert set_disabled(sub, [barrel], "carol", "fixed", enable=True) == [barrel]
    v3 = make_bundle(combined(enrolled, "barrel", "accessory"), pki["a"], "A", sequence=3)
    assert update(write(tmp_path, "v3", v3), sub, [pki["A"]]).added == {"barrel": [barrel]}


def test_a_hand_made_library_is_not_swapped(tmp_path: Path, enrolled: dict, pki: dict) -> None:
    enrolled["barrel"].save(tmp_path / "mine")
    with pytest.raises(Refused) as exc:
        update(write(tmp_path, "v1", make_bundle(enrolled["accessory"], pki["a"], "A")), tmp_path / "mine", [pki["A"]])
    assert exc.value.reason == why.UNMANAGED_LIBRARY


def test_an_fsspec_url_is_a_source(tmp_path: Path, enrolled: dict, pki: dict) -> None:
    with fsspec.open("memory://meshscan-test/authority.bundle", "wb") as fh:
        fh.write(make_bundle(enrolled["barrel"], pki["a"], "A"))
    assert update("memory://meshscan-test/authority.bundle", tmp_path / "sub", [pki["A"]]).status == "updated"
    with pytest.raises(Refused) as exc:
        update("memory://meshscan-test/missing.bundle", tmp_path / "sub", [pki["A"]])
    assert exc.value.reason == why.FETCH_FAILED


def test_a_change_waits_for_the_lock_then_is_refused_busy(
    tmp_path: Path, enrolled: dict, pki: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = tmp_path / "sub"
    bundle = write(tmp_path, "v1", make_bundle(combined(enrolled, "barrel"), pki["a"], "authority"))
    update(bundle, sub, [pki["A"]])
    monkeypatch.setattr(subscribe, "LOCK_WAIT_SECONDS", 0.3)
    other = write(tmp_path, "b1", make_bundle(combined(enrolled, "accessory"), pki["b"], "other"))
    with subscribe.locked(sub):  # another run holds the library
        for change in (lambda: update(other, sub, [pki["B"]]), lambda: set_disabled(sub, ["x"], "me", "test")):
            started = time.monotonic()
            with pytest.raises(Refused) as exc:
                change()
            assert exc.value.reason == why.BUSY and "still running" in str(exc.value)
            assert time.monotonic() - started >= 0.3
    assert [b["publisher"] for b in read_state(sub.resolve())["banks"].values()] == ["authority"]
    assert update(other, sub, [pki["B"]]).status == "updated"  # the lock is free again
