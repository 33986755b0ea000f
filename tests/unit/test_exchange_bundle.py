"""Signed bundles: a subscriber verifies before it reads, refuses every kind of bad bundle with
its own reason code, and gets back every record - plane-cut piece rows included - bit for bit."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from scanner.enrol import enrol
from scanner.exchange import errors as why
from scanner.exchange.bundle import DOMAIN, make_bundle, open_bundle, sign_bundle
from scanner.exchange.errors import Refused
from scanner.exchange.keys import keygen, load_private, load_public
from scanner.features.pieces import PIECE_ROW_BASE
from scanner.features.version import DESCRIPTOR_VERSION
from scanner.library import AllowEntry, SignatureLibrary
from tests.conftest import REPO

DEMO = REPO / "fixtures" / "demo"
BARREL = DEMO / "proxy-barrel-s1-001.stl"
ACCESSORY = DEMO / "proxy-accessory-s1-002.stl"


@pytest.fixture(scope="module")
def lib() -> SignatureLibrary:
    lib = SignatureLibrary.create(name="authority")
    enrol(lib, BARREL, "barrel", "case-4711", note="seized from uploader bob")
    enrol(lib, ACCESSORY, "accessory", "case-4712")
    lib.allowlist.append(AllowEntry(sha256="0" * 64, geometry_hash=None, added="2026-01-01", note="pipe", by="alice"))
    return lib


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("keys")
    key, pub, _ = keygen(root, "authority")
    other_key, other_pub, _ = keygen(root, "other")
    return {"key": key, "pub": pub, "other_key": other_key, "other_pub": other_pub}


def test_round_trip_is_exact_piece_rows_included(lib: SignatureLibrary, keys: dict[str, Path]) -> None:
    data = make_bundle(lib, load_private(keys["key"]), "authority")
    bundle = open_bundle(data, [load_public(keys["pub"])])
    got = bundle.library
    assert bundle.sequence == 1 and bundle.descriptor_version == DESCRIPTOR_VERSION == got.descriptor_version
    assert [s.id for s in got.signatures] == [s.id for s in lib.signatures]
    assert (lib.rows[:, 1] <= PIECE_ROW_BASE).sum() > 0  # the proxies carry plane-cut piece rows
    np.testing.assert_array_equal(got.rows, lib.rows)
    np.testing.assert_array_equal(got.vectors, lib.vectors)
    np.testing.assert_array_equal(got.thresholds, lib.thresholds)
    assert got.vectors.dtype == np.float32


def test_no_names_sources_or_notes_unless_asked(lib: SignatureLibrary, keys: dict[str, Path]) -> None:
    private, trusted = load_private(keys["key"]), [load_public(keys["pub"])]
    text = make_bundle(lib, private, "authority").decode()
    for secret in ("proxy-barrel", "case-4711", "uploader bob", "alice", "pipe"):
        assert secret not in text
    kept = open_bundle(make_bundle(lib, private, "authority", include_names=True), trusted).library
    assert kept.signatures[0].source == "case-4711" and kept.signatures[0].name == BARREL.name


def _tamper(data: bytes, edit) -> bytes:  # noqa: ANN001
    doc = json.loads(data)
    edit(doc)
    return json.dumps(doc).encode()


def test_refusals_each_have_their_reason(lib: SignatureLibrary, keys: dict[str, Path]) -> None:
    private = load_private(keys["key"])
    trusted = [load_public(keys["pub"])]
    data = make_bundle(lib, private, "authority")
    flipped = _tamper(data, lambda d: d.update(payload=d["payload"].replace('"barrel"', '"accessory"', 1)))
    cases = {
        why.UNSIGNED: _tamper(data, lambda d: d.update(signature=None)),
        why.BAD_SIGNATURE: flipped,
        why.UNTRUSTED_KEY: make_bundle(lib, load_private(keys["other_key"]), "impostor"),
        why.MALFORMED: data[: len(data) // 2],  # a truncated download
        why.FORMAT_VERSION: _tamper(data, lambda d: d.update(format_version=99)),
        why.TOO_LARGE: data,
    }
    for reason, bad in cases.items():
        with pytest.raises(Refused) as exc:
            open_bundle(bad, trusted, max_bytes=100 if reason == why.TOO_LARGE else 1 << 30)
        assert exc.value.reason == reason, (reason, str(exc.value))
        assert f"[{reason}]" in str(exc.value)


def test_signature_is_checked_before_the_payload_is_parsed(keys: dict[str, Path]) -> None:
    """A payload that is not even JSON is refused for its signature, not parsed."""
    doc = {"format": "meshscan-bundle", "format_version": 1, "payload": "{not json",
           "signature": {"algorithm": "ed25519", "key": load_public(keys["pub"]).fingerprint,
                         "value": base64.b64encode(b"x" * 64).decode()}}  # fmt: skip
    with pytest.raises(Refused) as exc:
        open_bundle(json.dumps(doc).encode(), [load_public(keys["pub"])])
    assert exc.value.reason == why.BAD_SIGNATURE


def test_another_descriptor_version_is_refused(lib: SignatureLibrary, keys: dict[str, Path]) -> None:
    private = load_private(keys["key"])
    data = make_bundle(lib, private, "authority")
    payload = json.loads(json.loads(data)["payload"])
    payload["descriptor_version"] = "ms1:old"
    with pytest.raises(Refused) as exc:
        open_bundle(sign_bundle(payload, private), [load_public(keys["pub"])])
    assert exc.value.reason == why.DESCRIPTOR_VERSION and "ms1:old" in str(exc.value)


def test_signature_is_domain_separated(lib: SignatureLibrary, keys: dict[str, Path]) -> None:
    doc = json.loads(make_bundle(lib, load_private(keys["key"]), "authority"))
    raw = base64.b64decode(doc["signature"]["value"])
    public = load_public(keys["pub"])
    assert public.verify(raw, DOMAIN + doc["payload"].encode())
    assert not public.verify(raw, doc["payload"].encode())


def test_previous_gives_next_version_and_tombstones(lib: SignatureLibrary, keys: dict[str, Path]) -> None:
    private, trusted = load_private(keys["key"]), [load_public(keys["pub"])]
    v1 = make_bundle(lib, private, "authority")
    smaller = SignatureLibrary.create(name="authority")
    enrol(smaller, ACCESSORY, "accessory", "case-4712")
    v2 = open_bundle(make_bundle(smaller, private, "authority", previous=v1), trusted)
    assert v2.sequence == 2 and v2.previous == {"sequence": 1, "sha256": open_bundle(v1, trusted).sha256}
    assert [t["id"] for t in v2.tombstones] == [lib.signatures[0].id]
    with pytest.raises(Refused) as exc:
        make_bundle(smaller, private, "authority", sequence=1, previous=v1)
    assert exc.value.reason == why.ROLLBACK


def test_keygen_never_overwrites_and_bad_keys_are_refused(tmp_path: Path, keys: dict[str, Path]) -> None:
    keygen(tmp_path, "k")
    with pytest.raises(Refused) as exc:
        keygen(tmp_path, "k")
    assert exc.value.reason == why.BAD_KEY
    assert (tmp_path / "k.key").stat().st_mode & 0o077 == 0
    with pytest.raises(Refused) as exc:
        load_public(keys["key"])  # a private key given as a public one
    assert exc.value.reason == why.BAD_KEY
