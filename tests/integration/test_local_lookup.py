"""Hash at the edge, look up elsewhere, for copies only local patch matching finds: a demo proxy
fused to a plate, or split into four pieces placed apart (turned and rescaled too) - and for a
stretched copy, which only the whitened row finds. Their signals carry the upload's distinct
patch codes and whitened row, so the lookup flags them with the matches a scan of the file
gives; signals of an older meshscan (neither) are still read and say what they cannot find;
patch codes of another version are refused with a reason code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import scanner
from scanner.exchange.signals import (
    MALFORMED_PATCHES,
    MAX_SIGNAL_PATCHES,
    PATCH_VERSION_MISMATCH,
    PatchSignal,
    SignalError,
)
from scanner.features.patches import PatchCodes
from tests.integration._local_copies import PROXY, local_copy
from tests.integration.test_stretched_copies import stretched_file


@pytest.fixture(scope="module")
def matcher_only() -> scanner.Scanner:
    return scanner.Scanner(model=None)


@pytest.fixture(scope="module")
def copies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("local-lookup")
    out = {edit: local_copy(root / f"{edit}.stl", edit) for edit in ("fused", "spaced4")}
    out["stretched"] = Path(stretched_file(root, PROXY.name, 1.2))
    return out


def wire(signals: scanner.Signals) -> dict:
    """The signals as an edge service sends them: JSON."""
    return json.loads(json.dumps(signals.to_dict()))


@pytest.mark.parametrize(("edit", "kind"), [("fused", "local"), ("spaced4", "local"), ("stretched", "stretched")])
def test_lookup_of_an_edited_copy_flags_with_the_matches_of_its_scan(
    matcher_only: scanner.Scanner, copies: dict[str, Path], edit: str, kind: str
) -> None:
    (scanned,) = matcher_only.scan(copies[edit])
    assert scanned.verdict == "flag" and scanned.matches[0].kind == kind, scanned.explanation
    (signals,) = matcher_only.hash(copies[edit])
    sent = wire(signals)
    assert sent["patches"].startswith(PatchSignal.decode(sent["patches"]).version + ";")
    received = scanner.Signals.from_dict(sent)
    assert matcher_only.lookup(received) == scanned.matches
    assert received.notes() == []


def older(signals: scanner.Signals) -> dict:
    """What a meshscan before patch codes and whitened rows sent."""
    sent = wire(signals)
    del sent["patches"], sent["affine"]
    return sent


@pytest.mark.parametrize("edit", ["fused", "stretched"])
def test_signals_of_an_older_meshscan_are_read_and_say_what_they_cannot_find(
    matcher_only: scanner.Scanner, copies: dict[str, Path], edit: str
) -> None:
    signals = scanner.Signals.from_dict(older(matcher_only.hash(copies[edit])[0]))
    assert matcher_only.lookup(signals) == []
    notes = {n["kind"]: n for n in signals.notes()}
    assert notes["local"]["reason"] == scanner.api.NO_PATCH_CODES
    assert "cut, fused, split or decoyed" in notes["local"]["detail"]
    assert notes["stretched"]["reason"] == scanner.api.NO_AFFINE_ROW and len(notes) == 2
    # an old payload of an exact copy still matches as it always did
    proxy = older(matcher_only.hash(PROXY)[0])
    assert [m.kind for m in matcher_only.lookup(scanner.Signals.from_dict(proxy))] == ["sha256"]


def test_patch_codes_of_another_version_are_refused_before_any_matching(
    matcher_only: scanner.Scanner, copies: dict[str, Path]
) -> None:
    sent = wire(matcher_only.hash(copies["fused"])[0])
    sent["patches"] = "pc1;" + sent["patches"].split(";", 1)[1]
    with pytest.raises(SignalError) as err:
        matcher_only.lookup(scanner.Signals.from_dict(sent))
    assert err.value.reason == PATCH_VERSION_MISMATCH and "'pc1'" in str(err.value)
    sent["patches"] = "not a patch signal"
    with pytest.raises(SignalError) as err:
        matcher_only.lookup(scanner.Signals.from_dict(sent))
    assert err.value.reason == MALFORMED_PATCHES


def test_an_upload_signal_keeps_the_smallest_codes_of_each_kind_and_says_it_was_capped() -> None:
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 2**63, 5000, dtype=np.uint64) * np.uint64(2) + (np.arange(5000) % 2).astype(np.uint64)
    sizes = rng.integers(0, 3, 5000).astype(np.int16)
    full = PatchSignal.of_upload(PatchCodes(np.concatenate([codes, codes]), np.concatenate([sizes, sizes]),
                                            np.ones(10000)))  # fmt: skip
    assert len(full) == full.distinct == len(np.unique(codes)) and not full.sampled
    capped = PatchSignal.of_upload(PatchCodes(codes, sizes, np.ones(5000)), cap=100)
    assert capped.sampled and capped.distinct == len(full) and len(capped) == 200
    for kind in (0, 1):
        mine = np.sort(codes[codes % 2 == kind])
        assert np.array_equal(capped.codes[capped.codes % 2 == kind], mine[:100])
    again = PatchSignal.decode(capped.encode())
    assert np.array_equal(again.codes, capped.codes) and np.array_equal(again.sizes, capped.sizes)
    assert again.distinct == capped.distinct and again.shares is None
    wire_signals = scanner.Signals("0" * 64, "1" * 64, "d", [[0.0]], [-1], patches=capped.encode(), affine=[0.0])
    (note,) = wire_signals.notes()
    assert note["reason"] == scanner.api.PATCHES_SAMPLED and str(capped.distinct) in note["detail"]
    too_many = PatchSignal(np.arange(2 * MAX_SIGNAL_PATCHES + 1, dtype=np.uint64),
                           np.zeros(2 * MAX_SIGNAL_PATCHES + 1, np.int16), distinct=None)  # fmt: skip
    with pytest.raises(SignalError, match="at most"):
        PatchSignal.decode(too_many.encode())


@pytest.mark.parametrize(
    "key",
    ["rotation [random rigid motion]", "zero-area padding [1 per triangle]", "duplicated triangles [every triangle x2]",
     "decoy bodies [8 larger]", "shelled copy [outer + inverted inner]"],
)  # fmt: skip
def test_lookup_gives_the_matches_of_a_scan_for_other_evasions(
    matcher_only: scanner.Scanner, tmp_path: Path, key: str
) -> None:
    """The signals are computed from the mesh as a scan reads it (the geometry hash of the mesh
    as read, descriptor rows of its cleaned surface), so padding and duplicates that a scan
    cleans away leave the lookup's matches the scan's too."""
    from fixtures.evasions import EVASIONS

    (evasion,) = [e for e in EVASIONS if e.key == key]
    path = evasion.apply(scanner.load(PROXY), seed=1, stem="proxy").write(tmp_path)
    (scanned,) = matcher_only.scan(path)
    (signals,) = matcher_only.hash(path)
    assert scanned.verdict == "flag"
    assert matcher_only.lookup(scanner.Signals.from_dict(wire(signals))) == scanned.matches
