"""bench/evasion.py --within N: the bench proxies enrolled into N generated proxy signatures, so
recall is measured in a crowded library (the crowding test's other side)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scanner.enrol import enrol
from scanner.library import SignatureLibrary

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import evasion  # noqa: E402


def test_within_merges_the_bench_library_into_generated_proxies(tmp_path: Path) -> None:
    own = SignatureLibrary.create(tmp_path / "own", name="bench")
    (added,) = enrol(own, sorted((REPO / "fixtures" / "demo").glob("proxy-*.stl"))[0], "barrel", "bench-proxy")
    args = argparse.Namespace(within=3, library_cache=tmp_path / "cache", seed=0, enrol_jobs=1)
    (tmp_path / "cache").mkdir()
    merged = evasion._crowded(own, args, tmp_path)
    sources = sorted(s.source for s in merged.signatures)
    assert sources == ["bench-many"] * 3 + ["bench-proxy"]
    assert added.signature_id in {s.id for s in merged.signatures}
    # the generated library is cached: a second run of the same code loads it instead
    cached = list((tmp_path / "cache").iterdir())
    assert len(cached) == 1 and (cached[0] / "manifest.json").exists()
    again = evasion._crowded(own, args, tmp_path / "again")
    assert sorted(s.id for s in again.signatures) == sorted(s.id for s in merged.signatures)
