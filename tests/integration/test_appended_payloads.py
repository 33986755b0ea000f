"""A known part hidden after data a reader stops at must not come out ``clear``: a ``clear``
claims the whole upload was read (DESIGN.md, "Adversary model"). Each upload here is a small
benign payload with an enrolled demo proxy appended raw after it, scanned by the real command
with the shipped demo library.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import subprocess
import sys
from pathlib import Path

import trimesh

from fixtures.gcode_evasions import relabelled, tiny_breaks, with_decoy
from fixtures.slicer import SliceOptions, slice_to_gcode
from tests.conftest import REPO

DEMO = REPO / "fixtures" / "demo"
PROXY_STL = DEMO / "proxy-barrel-s1-000.stl"
BENIGN_STL = DEMO / "benign-cup-s1-000.stl"


def scan(*paths: Path) -> list[dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "scanner.cli", "scan", *map(str, paths), "--no-model", "--format", "jsonl"],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )  # fmt: skip
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_a_proxy_appended_after_a_compressed_stream_is_not_clear(tmp_path: Path) -> None:
    proxy = PROXY_STL.read_bytes()
    benign = BENIGN_STL.read_bytes()
    files = []
    for name, compress in (("a.stl.xz", lzma.compress), ("b.stl.bz2", bz2.compress), ("c.stl.gz", gzip.compress)):
        path = tmp_path / name
        path.write_bytes(compress(benign) + proxy)
        files.append(path)
    records = scan(*files)
    assert len(records) == len(files)
    for r in records:
        assert r["verdict"] == "unscannable" and r["reason"] == "corrupt", r


def test_the_compressed_proxy_alone_flags(tmp_path: Path) -> None:
    """The control: the same proxy, compressed without a tail, is read and flags."""
    proxy = PROXY_STL.read_bytes()
    files = []
    for name, compress in (("a.stl.xz", lzma.compress), ("b.stl.bz2", bz2.compress)):
        path = tmp_path / name
        path.write_bytes(compress(proxy) + b"\0" * 4)
        files.append(path)
    assert [r["verdict"] for r in scan(*files)] == ["flag", "flag"]


def test_a_proxy_appended_after_a_binary_stl_is_not_clear(tmp_path: Path) -> None:
    """``benign.stl + proxy.stl``: the benign file's count covers only its own triangles."""
    path = tmp_path / "cup.stl"
    path.write_bytes(BENIGN_STL.read_bytes() + PROXY_STL.read_bytes())
    [r] = scan(path)
    assert r["verdict"] == "unscannable" and r["reason"] == "corrupt", r


def test_sliced_proxies_hidden_from_the_gcode_reader_still_flag(tmp_path: Path) -> None:
    """G-code of enrolled proxies with every wall loop broken by 0.00001 mm non-extruding
    moves, or with the outer walls relabelled as a skirt beside a decoy square labelled as the
    outer wall: the part is still rebuilt and flags."""
    files = []
    for path in sorted(DEMO.glob("proxy-*-000.*"))[:3]:
        tm = trimesh.load(path, force="mesh")
        tm.apply_transform(trimesh.transformations.rotation_matrix(0.7, [0, 0, 1]))
        tm.apply_translation(-tm.bounds[0] + [20.0, 20.0, 0.0])
        text = slice_to_gcode(tm.vertices, tm.faces, SliceOptions(layer_height=0.2)).decode()
        at = (float(tm.bounds[1][0]) + 30.0, 20.0)
        for name, hostile in (
            ("tiny", with_decoy(tiny_breaks(text), at=at)),
            ("relabelled", with_decoy(relabelled(text), at=at)),
        ):
            out = tmp_path / f"{path.stem}-{name}.gcode"
            out.write_text(hostile)
            files.append(out)
    records = scan(*files)
    assert len(records) == len(files)
    missed = [(Path(r["path"]).name, r["verdict"], r.get("explanation")) for r in records if r["verdict"] != "flag"]
    assert not missed, missed
