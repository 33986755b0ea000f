"""bench/evasion.py --within N: the bench proxies enrolled into N generated proxy signatures, so
recall is measured in a crowded library (the crowding test's other side); and the parallel
enrolment of such libraries, which resumes from the chunks a stopped run saved."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

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


def test_a_parallel_enrolment_resumes_from_its_saved_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    demo = sorted((REPO / "fixtures" / "demo").glob("proxy-*.stl"))[:3]
    files = [(path, "barrel") for path in demo for _ in range(6)]  # 18 files (a parallel run needs 8 x jobs)
    monkeypatch.setattr(evasion, "CHUNK_FILES", 4)
    fresh, fresh_ids = evasion._library(tmp_path / "fresh", files, "bench-many", jobs=2)
    # a run stopped after its first chunk: that chunk is on disk, marked done
    first = tmp_path / "resumed.chunks" / "chunk00000"
    evasion._enrol_chunk(first, files[:4], "bench-many")
    calls = tmp_path / "calls"  # the chunks enrol in forked processes: they count on disk
    calls.mkdir()
    real_enrol_all = evasion._enrol_all

    def counting(folder: Path, chosen: list, source: str) -> list:
        (calls / folder.name).write_text(str(len(chosen)))
        return real_enrol_all(folder, chosen, source)

    monkeypatch.setattr(evasion, "_enrol_all", counting)
    resumed, resumed_ids = evasion._library(tmp_path / "resumed", files, "bench-many", jobs=2)
    enrolled = {p.name: int(p.read_text()) for p in calls.iterdir()}
    assert "chunk00000" not in enrolled and sum(enrolled.values()) == len(files) - 4  # not enrolled again
    assert resumed_ids == fresh_ids and len(resumed_ids) == len(files)
    assert [s.id for s in resumed.signatures] == [s.id for s in fresh.signatures]
    assert not (tmp_path / "resumed.chunks").exists()  # removed once the library is saved
