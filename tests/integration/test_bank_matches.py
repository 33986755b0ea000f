"""Matches say whose signature matched: a signature subscribed from a publisher's signed bank
carries the publisher (name and key fingerprint) into every match record, and the flag
explanation names the publisher; a locally enrolled signature's match and sentence are as they
always were. Runs the real commands: keygen, add, export --sign, update, scan."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh

from tests.conftest import REPO

DEMO = REPO / "fixtures" / "demo"
BARREL = DEMO / "proxy-barrel-s1-001.stl"
PUBLISHER = "Example (authority) body"
"""A name with parentheses: the publisher is read back from the source text unambiguously."""


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scanner.cli", *args], capture_output=True, text=True, timeout=300, cwd=cwd,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": "/tmp"}, check=False,
    )  # fmt: skip


def records(proc: subprocess.CompletedProcess[str]) -> dict[str, dict]:
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return {Path(r["path"]).name: r for r in rows}


@pytest.fixture(scope="module")
def libraries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A publisher's local library (one barrel proxy) and a platform's subscription to it."""
    tmp = tmp_path_factory.mktemp("banks")
    keys, local, sub = tmp / "keys", tmp / "authority-lib", tmp / "subscribed"
    keygen = run("signatures", "keygen", "--out", str(keys), "--name", "authority")
    assert keygen.returncode == 0, keygen.stderr
    assert run("signatures", "init", "--library", str(local), "--name", "authority").returncode == 0
    added = run("signatures", "add", str(BARREL), "--library", str(local), "--category", "barrel", "--source", "c1")
    assert added.returncode == 0, added.stderr
    bundle = tmp / "authority-1.bundle"
    exported = run("signatures", "export", "--library", str(local), "--sign", str(keys / "authority.key"),
                   "--publisher", PUBLISHER, "--out", str(bundle))  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    updated = run("signatures", "update", str(bundle), "--library", str(sub), "--trust", str(keys / "authority.pub"))
    assert updated.returncode == 0, updated.stdout + updated.stderr
    fingerprint = re.search(r"ed25519:[0-9a-f]{16}", keygen.stdout + keygen.stderr)
    assert fingerprint is not None
    uploads = tmp / "uploads"
    uploads.mkdir()
    (uploads / "copy.stl").write_bytes(BARREL.read_bytes())
    mesh = trimesh.load(BARREL, force="mesh")
    mesh.apply_transform(trimesh.transformations.random_rotation_matrix(np.random.default_rng(5).random(3)))
    mesh.apply_scale(2.3)
    mesh.export(uploads / "rotated.obj")
    return {"local": local, "subscribed": sub, "uploads": uploads, "key": Path(fingerprint.group(0))}


def scan(library: Path, uploads: Path) -> dict[str, dict]:
    proc = run("scan", str(uploads), "--library", str(library), "--format", "jsonl")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    return records(proc)


def test_banked_matches_name_their_publisher(libraries: dict[str, Path]) -> None:
    banked = scan(libraries["subscribed"], libraries["uploads"])
    key = str(libraries["key"])
    for name, kind in (("copy.stl", "sha256"), ("rotated.obj", "near-duplicate")):
        record = banked[name]
        assert record["verdict"] == "flag"
        match = record["matches"][0]
        assert match["kind"] == kind
        assert match["publisher"] == PUBLISHER and match["publisher_key"] == key
        assert f"known file {match['signature_id']} (published by {PUBLISHER})" in record["explanation"]


def test_local_matches_and_sentences_are_unchanged(libraries: dict[str, Path]) -> None:
    banked = scan(libraries["subscribed"], libraries["uploads"])
    local = scan(libraries["local"], libraries["uploads"])
    for name in ("copy.stl", "rotated.obj"):
        match = local[name]["matches"][0]
        assert match["publisher"] is None and match["publisher_key"] is None
        assert "published by" not in local[name]["explanation"]
        # the same evidence from the bank reads the same, but for whose signature it is
        assert banked[name]["explanation"].replace(f" (published by {PUBLISHER})", "") == local[name]["explanation"]
        assert {k: v for k, v in banked[name]["matches"][0].items() if not k.startswith("publisher")} == {
            k: v for k, v in match.items() if not k.startswith("publisher")
        }


def test_list_shows_each_publisher_and_its_key_fingerprint(libraries: dict[str, Path]) -> None:
    key = str(libraries["key"])
    listed = run("signatures", "list", "--library", str(libraries["subscribed"]), "--json")
    assert listed.returncode == 0, listed.stderr
    (sig,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert sig["publisher"] == PUBLISHER and sig["publisher_key"] == key
    table = run("signatures", "list", "--library", str(libraries["subscribed"]))
    assert table.returncode == 0, table.stderr
    assert "subscribed publishers" in table.stdout
    banks = table.stdout.split("subscribed publishers", 1)[1]
    assert key in banks and "Example" in banks  # a name may fold; a key never does
    local = run("signatures", "list", "--library", str(libraries["local"]), "--json")
    (mine,) = [json.loads(line) for line in local.stdout.splitlines()]
    assert mine["publisher"] is None and mine["publisher_key"] is None
    assert "subscribed publishers" not in run("signatures", "list", "--library", str(libraries["local"])).stdout
