"""The python-threatexchange extension: meshscan's signal types pass the checks of the
library's own signal-type test helper (name, examples, validate and compare cases, written out
here as the helper is not shipped in the wheel), and through the threatexchange API and its CLI
a proxy's rotated copy matches a banked signature while a benign file does not; a proxy fused
to a plate, which no descriptor row finds, matches through the patch signal as a scan finds it."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh

pytest.importorskip("threatexchange", reason="the [threatexchange] extra is not installed")

from threatexchange.exchanges.fetch_state import FetchedSignalMetadata  # noqa: E402
from threatexchange.extensions.manifest import ThreatExchangeExtensionManifest  # noqa: E402

from scanner.exchange import signals  # noqa: E402
from scanner.exchange.tx import MeshContent, MeshDescriptorSignal, MeshGeometryHashSignal, MeshPatchesSignal  # noqa: E402
from scanner.features.version import DESCRIPTOR_SIZE  # noqa: E402
from scanner.library import SignatureLibrary, shipped_library_path  # noqa: E402
from tests.conftest import REPO  # noqa: E402
from tests.integration._local_copies import local_copy  # noqa: E402

DEMO = REPO / "fixtures" / "demo"
PROXY = DEMO / "proxy-barrel-s1-000.stl"
BENIGN = DEMO / "benign-pipe-s1-000.obj"


@pytest.fixture(scope="module")
def rotated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    mesh = trimesh.load(PROXY)
    mesh.apply_transform(trimesh.transformations.rotation_matrix(0.9, [0.3, 1.0, 0.2]))
    out = tmp_path_factory.mktemp("rot") / "rotated.stl"
    mesh.export(out)
    return out


@pytest.mark.parametrize("signal_type", [MeshGeometryHashSignal, MeshDescriptorSignal, MeshPatchesSignal])
def test_signal_type_basics(signal_type: type) -> None:
    assert signal_type.get_content_types() == [MeshContent]
    examples = signal_type.get_examples()
    assert examples
    for example in examples:
        assert signal_type.validate_signal_str(example) == example
        assert signal_type.compare_hash(example, example).match


def test_names_are_stable() -> None:
    assert MeshGeometryHashSignal.get_name() == signals.GEOMETRY_SIGNAL == "mesh_geometry_hash"
    assert MeshDescriptorSignal.get_name() == signals.DESCRIPTOR_SIGNAL == "mesh_descriptor"
    assert MeshPatchesSignal.get_name() == signals.PATCH_SIGNAL == "mesh_patches"
    assert MeshContent.get_name() == "mesh"
    manifest = ThreatExchangeExtensionManifest.load_from_module_name("scanner.exchange.tx")
    assert set(manifest.signal_types) == {MeshGeometryHashSignal, MeshDescriptorSignal, MeshPatchesSignal}


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("A" * 64, True),
        ("a" * 63, False),
        ("g" * 64, False),
        ("", False),
    ],
)
def test_validate_geometry_hash(text: str, valid: bool) -> None:
    if valid:
        assert MeshGeometryHashSignal.validate_signal_str(text) == text.lower()
    else:
        with pytest.raises(ValueError):
            MeshGeometryHashSignal.validate_signal_str(text)


def test_validate_descriptor() -> None:
    good = signals.DescriptorSignal(np.ones(DESCRIPTOR_SIZE), 0.05).encode()
    assert MeshDescriptorSignal.validate_signal_str(good) == good
    version, threshold, body = good.split(";")
    for bad in (f"ms1:old;{threshold};{body}", f"{version};{threshold};{body[:-8]}", f"{version};-1;{body}", "x"):
        with pytest.raises(ValueError):
            MeshDescriptorSignal.validate_signal_str(bad)


def test_compare_uses_the_banked_threshold() -> None:
    base = np.zeros(DESCRIPTOR_SIZE)
    near = base.copy()
    near[0] = 0.05
    banked_tight = signals.DescriptorSignal(base, 0.01).encode()
    banked_wide = signals.DescriptorSignal(base, 0.06).encode()
    query = signals.DescriptorSignal(near).encode()
    assert not MeshDescriptorSignal.compare_hash(banked_tight, query).match
    result = MeshDescriptorSignal.compare_hash(banked_wide, query)
    assert result.match and result.distance.distance == pytest.approx(0.05)


def test_rotated_proxy_matches_through_the_index_and_benign_does_not(rotated: Path) -> None:
    lib = SignatureLibrary.load(shipped_library_path())
    entries = [(value, (sid, FetchedSignalMetadata())) for sid, kind, value in signals.library_signals(lib)
               if kind == signals.DESCRIPTOR_SIGNAL]  # fmt: skip
    index = MeshDescriptorSignal.get_index_cls().build(entries)
    buf = io.BytesIO()
    index.serialize(buf)
    assert b"pickle" not in buf.getvalue() and buf.getvalue().startswith(b"{")
    index = MeshDescriptorSignal.get_index_cls().deserialize(io.BytesIO(buf.getvalue()))
    hits = index.query(MeshDescriptorSignal.hash_from_file(rotated))
    expected = MeshGeometryHashSignal.hash_from_file(PROXY)
    assert [m.metadata[0] for m in hits][:1] == ["ms-" + expected[:16]]
    assert isinstance(hits[0].metadata[1], FetchedSignalMetadata)
    assert index.query(MeshDescriptorSignal.hash_from_file(BENIGN)) == []
    assert MeshGeometryHashSignal.hash_from_file(rotated) != expected  # only the descriptor survives rotation


@pytest.fixture(scope="module")
def fused(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return local_copy(tmp_path_factory.mktemp("fused") / "fused.stl")


def test_fused_proxy_matches_through_the_patch_index_as_a_scan_finds_it(fused: Path) -> None:
    import scanner

    lib = SignatureLibrary.load(shipped_library_path())
    banked = [(value, sid) for sid, kind, value in signals.library_signals(lib) if kind == signals.PATCH_SIGNAL]
    assert len(banked) == len(lib.signatures)
    index = MeshPatchesSignal.get_index_cls().build(banked)
    buf = io.BytesIO()
    index.serialize(buf)
    index = MeshPatchesSignal.get_index_cls().deserialize(io.BytesIO(buf.getvalue()))
    query = MeshPatchesSignal.hash_from_file(fused)
    hits = index.query(query)
    (record,) = scanner.Scanner(model=None).scan(fused)
    assert record.verdict == "flag" and record.matches[0].kind == "local"
    assert [h.metadata for h in hits] == [m.signature_id for m in record.matches]
    assert [h.similarity_info.distance for h in hits] == pytest.approx([m.distance for m in record.matches], abs=1e-4)
    # the descriptor and the geometry hash find nothing: only the patch signal does
    assert (
        MeshDescriptorSignal.get_index_cls()
        .build([(v, sid) for sid, kind, v in signals.library_signals(lib) if kind == signals.DESCRIPTOR_SIGNAL])
        .query(MeshDescriptorSignal.hash_from_file(fused))
        == []
    )
    barrel = dict((sid, v) for sid, kind, v in signals.library_signals(lib) if kind == signals.PATCH_SIGNAL)
    result = MeshPatchesSignal.compare_hash(barrel[record.matches[0].signature_id], query)
    assert result.match and result.distance.distance == pytest.approx(record.matches[0].distance, abs=1e-4)
    assert index.query(MeshPatchesSignal.hash_from_file(BENIGN)) == []


def test_patch_signal_of_another_version_or_malformed_is_refused(fused: Path) -> None:
    query = MeshPatchesSignal.hash_from_file(fused)
    version, rest = query.split(";", 1)
    with pytest.raises(signals.SignalError) as err:
        MeshPatchesSignal.validate_signal_str("pc1;" + rest)
    assert err.value.reason == signals.PATCH_VERSION_MISMATCH and "'pc1'" in str(err.value)
    codes, sizes, shares, distinct = rest.split(";")
    for bad in (f"{version};{codes};{sizes[:-4]};;{distinct}", f"{version};{codes}!;{sizes};;{distinct}",
                f"{version};{codes};{sizes};;1", f"{version};{codes};{sizes}", "x"):  # fmt: skip
        with pytest.raises(ValueError) as err:
            MeshPatchesSignal.validate_signal_str(bad)
        assert err.value.reason == signals.MALFORMED_PATCHES  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="shares"):  # an upload's signal is no banked sketch
        MeshPatchesSignal.get_index_cls().build([(query, "x")])


def test_unreadable_file_hashes_to_empty(tmp_path: Path) -> None:
    junk = tmp_path / "junk.stl"
    junk.write_bytes(b"not a mesh")
    assert MeshDescriptorSignal.hash_from_file(junk) == "" and MeshGeometryHashSignal.hash_from_file(junk) == ""
    assert MeshPatchesSignal.hash_from_file(junk) == ""


def test_threatexchange_cli_hashes_and_matches(tmp_path: Path, rotated: Path, fused: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path), "PYTHONPATH": str(REPO)}
    tx = [sys.executable, "-m", "threatexchange"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*tx, *args], env=env, capture_output=True, text=True, timeout=240, check=False)

    assert run("config", "extensions", "add", "scanner.exchange.tx").returncode == 0
    hashed = run("hash", "mesh", str(PROXY)).stdout.split("\n")
    assert any(line.startswith("mesh_geometry_hash ") for line in hashed)
    assert any(line.startswith("mesh_patches ") for line in hashed)
    signal_file = tmp_path / "signals.txt"
    ms = subprocess.run([sys.executable, "-m", "scanner.cli", "signatures", "export-signals", "--library",
                         str(shipped_library_path()), "--out", str(signal_file)], env=env, capture_output=True,
                        text=True, timeout=120, check=False)  # fmt: skip
    assert ms.returncode == 0, ms.stderr
    collab = run("config", "collab", "edit", "local_file", "--create", "--filename", str(signal_file), "demo")
    assert collab.returncode == 0, collab.stderr
    assert run("fetch").returncode == 0
    match = run("match", "mesh", str(rotated))
    assert match.returncode == 0 and "mesh_descriptor" in match.stdout and "(demo)" in match.stdout, match.stderr
    assert run("match", "mesh", str(BENIGN)).stdout.strip() == ""
    match = run("match", "mesh", str(fused))  # only the patch signal finds a copy fused to a plate
    assert match.returncode == 0 and "mesh_patches" in match.stdout and "mesh_descriptor" not in match.stdout


def test_the_index_applies_the_scans_second_stage(tmp_path: Path) -> None:
    """A plain cube's descriptor, banked with a wide threshold, is within it of a plain cube
    upload (the first stage, ``compare_hash``, matches), but the index - like a scan - refuses a
    hit whose upload row is a plain solid."""
    cube = tmp_path / "cube.stl"
    trimesh.creation.box(extents=(3, 3, 3)).export(cube)
    other = tmp_path / "other-cube.stl"
    trimesh.creation.box(extents=(7, 7, 7)).export(other)
    banked = signals.DescriptorSignal(signals.DescriptorSignal.decode(MeshDescriptorSignal.hash_from_file(cube)).vector,
                                      0.05).encode()  # fmt: skip
    query = MeshDescriptorSignal.hash_from_file(other)
    assert MeshDescriptorSignal.compare_hash(banked, query).match
    index = MeshDescriptorSignal.get_index_cls().build([(banked, ("ms-cube", FetchedSignalMetadata()))])
    assert index.query(query) == []


def test_the_index_refuses_a_query_about_as_near_two_banked_designs(tmp_path: Path) -> None:
    """The scan's other second-stage test: a query halfway between two different banked designs
    (a proxy and the proxy stretched 1.25x, both banked with wide thresholds) matches neither,
    while with only one of them banked, or both under one entry, it matches."""
    proxy = sorted(DEMO.glob("proxy-*.stl"))[1]
    stretched = trimesh.load(proxy, force="mesh")
    stretched.apply_scale([1.0, 1.0, 1.25])
    stretched.export(tmp_path / "other.stl")
    a, b = (
        signals.DescriptorSignal.decode(MeshDescriptorSignal.hash_from_file(p)).vector
        for p in (proxy, tmp_path / "other.stl")
    )
    query = signals.DescriptorSignal((a + b) / 2).encode()
    bank = [signals.DescriptorSignal(v, 1.0).encode() for v in (a, b)]
    meta = FetchedSignalMetadata()
    both = MeshDescriptorSignal.get_index_cls().build([(bank[0], ("ms-a", meta)), (bank[1], ("ms-b", meta))])
    assert both.query(query) == []
    one = MeshDescriptorSignal.get_index_cls().build([(bank[0], ("ms-a", meta))])
    assert len(one.query(query)) == 1
    same = MeshDescriptorSignal.get_index_cls().build([(bank[0], ("ms-a", meta)), (bank[1], ("ms-a", meta))])
    assert len(same.query(query)) == 2
