"""A library reopened memory-mapped, re-saved with its ANN shortlist and scanned through it
gives the demo files the same verdicts as the shipped library scanned exactly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytest.importorskip("faiss", reason="meshscan[ann] (faiss-cpu) not installed")


def scan(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scanner.cli", "scan", str(REPO / "fixtures"), "--format", "jsonl", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def verdicts(proc: subprocess.CompletedProcess) -> dict[str, tuple]:
    out = {}
    for line in proc.stdout.splitlines():
        r = json.loads(line)
        out[Path(r["path"]).name] = (
            r["verdict"],
            r["category"],
            [(m["signature_id"], m["distance"]) for m in r["matches"]],
        )
    return out


def test_memory_mapped_library_with_ann_gives_the_same_verdicts(tmp_path: Path) -> None:
    from scanner.library import ANN_FILE, SignatureLibrary

    lib_dir = tmp_path / "lib"
    shutil.copytree(REPO / "signatures", lib_dir)
    shipped = scan()
    SignatureLibrary.load(lib_dir).save()  # the shipped format-1 library, converted (no ANN: 582 rows)
    assert not (lib_dir / ANN_FILE).exists()
    before = scan("--library", str(lib_dir))
    assert before.returncode == 1 and "6 flagged" in before.stderr, before.stderr
    assert verdicts(before) == verdicts(shipped)  # format 2 gives the format-1 library's verdicts
    os.environ["MESHSCAN_ANN_MIN_ROWS"] = "1"  # the demo library's 582 rows through the ANN path
    try:
        lib = SignatureLibrary.load(lib_dir)
        version = lib.library_version
        assert not lib.vectors.flags.writeable  # memory-mapped read-only
        lib.save()
    finally:
        del os.environ["MESHSCAN_ANN_MIN_ROWS"]
    manifest = json.loads((lib_dir / "manifest.json").read_text())
    assert manifest["ann"]["rows"] == len(lib.vectors) and (lib_dir / ANN_FILE).is_file()
    assert manifest["library_version"] == version  # the index is derived data, not content

    after = scan("--library", str(lib_dir), env={"MESHSCAN_ANN_MIN_ROWS": "1"})
    assert after.returncode == 1 and "6 flagged" in after.stderr, after.stderr
    assert verdicts(after) == verdicts(before)
    assert before.stderr.splitlines()[-1] == after.stderr.splitlines()[-1]  # the same counts line
