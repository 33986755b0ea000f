"""``meshscan survey``: the real reservoir sampler over a real listing and the real interval
code cover a known prevalence at their nominal rate; the same seed gives the same sample;
the command scans its sample like ``scan`` and records it in --db."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest

from scanner.batch import Upload, iter_uploads
from scanner.inspect import file_sha256
from scanner.library import SignatureLibrary, shipped_library_path
from scanner.pipeline import ScanContext, scan_one
from scanner.report.survey import run_survey
from scanner.verdict import Verdict
from tests.conftest import REPO

DEMO = REPO / "fixtures" / "demo"
CLI = [sys.executable, "-m", "scanner.cli"]
POPULATION, FLAGGED, SAMPLE, REPETITIONS = 600, 60, 60, 100
PROXY = DEMO / "proxy-barrel-s1-000.stl"  # enrolled in the shipped library: flagged
BENIGN = [DEMO / "benign-pipe-s1-000.obj", DEMO / "benign-toy-s1-000.stl", DEMO / "benign-block-s1-002.stl"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """600 uploads in 12 folders, 60 of them (10%) at random places a copy of a flagged proxy,
    the rest copies of benign files: hard links, so the corpus is cheap to build."""
    root = tmp_path_factory.mktemp("survey") / "corpus"
    rng = np.random.default_rng(12345)
    flagged = set(rng.choice(POPULATION, FLAGGED, replace=False).tolist())
    for i in range(POPULATION):
        folder = root / f"u{i % 12:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        src = PROXY if i in flagged else BENIGN[i % len(BENIGN)]
        os.link(src, folder / f"{i:04d}{src.suffix}")
    return root


class MemoScan:
    """The real ``scan_one``, once per distinct content (keyed by sha256): the corpus is
    copies of four files, so 100 surveys cost four scans."""

    def __init__(self) -> None:
        self.context = ScanContext(library=SignatureLibrary.load(shipped_library_path()))
        self.by_sha: dict[str, list[Verdict]] = {}

    def __call__(self, sample: list[Upload]) -> Iterable[tuple[Upload, list[Verdict]]]:
        for upload in sample:
            sha = file_sha256(upload.path)
            if sha not in self.by_sha:
                self.by_sha[sha] = scan_one(upload.path, self.context)
            yield upload, self.by_sha[sha]


def test_intervals_cover_the_known_prevalence(corpus: Path) -> None:
    scan = MemoScan()
    covered_p = covered_total = 0
    estimates, samples = [], set()
    for seed in range(REPETITIONS):
        result = run_survey(iter_uploads([str(corpus)]), SAMPLE, seed, scan)
        assert result.population == POPULATION and result.sample_size == SAMPLE
        est = result.estimates()
        p, total = est["prevalence"]["flag"], est["projected_totals"]["flag"]
        covered_p += p["ci95"][0] <= FLAGGED / POPULATION <= p["ci95"][1]
        covered_total += total["ci95"][0] <= FLAGGED <= total["ci95"][1]
        estimates.append(p["estimate"])
        samples.add(tuple(result.paths))
    assert len(scan.by_sha) == 4  # every sampled file went through the real scan (memoised)
    assert len(samples) == REPETITIONS  # a different sample per seed
    assert covered_p >= 93, covered_p
    assert covered_total >= 93, covered_total
    # unbiased: the mean of 100 estimates is within 3 standard errors of the truth
    assert abs(np.mean(estimates) - FLAGGED / POPULATION) < 0.012


def test_same_seed_same_sample_over_fsspec_urls(corpus: Path) -> None:
    """The listing may be any fsspec URL; the same seed gives the same sample."""
    url = "file://" + str(corpus)
    scan = MemoScan()
    a = run_survey(iter_uploads([url]), 20, 7, scan)
    b = run_survey(iter_uploads([url]), 20, 7, scan)
    c = run_survey(iter_uploads([url]), 20, 8, scan)
    assert a.paths == b.paths and a.outcomes == b.outcomes and a.paths != c.paths
    assert a.population == POPULATION and all(p.startswith("file://") for p in a.paths)
    local = run_survey(iter_uploads([str(corpus)]), 20, 7, scan)
    assert [p.removeprefix("file://") for p in a.paths] == local.paths  # same listing order, same sample


def test_survey_command(corpus: Path, tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    for p in sorted(corpus.glob("u0[0-1]/*"))[:40]:
        os.link(p, small / p.name)
    db = tmp_path / "sample.sqlite"
    cmd = [*CLI, "survey", str(small), "--sample", "8", "--seed", "3", "--no-model", "--jobs", "2", "--json"]
    first = subprocess.run([*cmd, "--db", str(db), "--include-paths"], capture_output=True, text=True, timeout=240)
    assert first.returncode == 0, first.stderr
    doc = json.loads(first.stdout)
    assert doc["population"] == 40 and doc["sample_size"] == 8 and doc["seed"] == 3
    assert sum(doc["outcomes"].values()) == 8
    flag = doc["prevalence"]["flag"]
    assert flag["k"] == doc["outcomes"]["flag"] and flag["n"] == 8 and flag["method"] == "wilson-fpc"
    assert flag["ci95"][0] <= flag["estimate"] <= flag["ci95"][1]
    total = doc["projected_totals"]["flag"]
    assert total["estimate"] == pytest.approx(40 * flag["k"] / 8)
    with sqlite3.connect(db) as conn:
        recorded = dict(conn.execute("SELECT path, verdict FROM results").fetchall())
    sampled = {s["path"]: s["outcome"] for s in doc["sample"]}
    assert recorded == sampled  # the sample's verdicts, recorded like 'scan --db'
    out = tmp_path / "survey.json"
    again = subprocess.run([*cmd[:-1], "--out", str(out)], capture_output=True, text=True, timeout=240)  # a table
    assert again.returncode == 0, again.stderr
    doc2 = json.loads(out.read_text())
    assert "sample" not in doc2 and str(small) not in again.stdout + out.read_text()  # no paths unless asked
    assert doc2["outcomes"] == doc["outcomes"] and doc2["prevalence"] == doc["prevalence"]  # same seed, same sample
    assert "Sampled 8 of 40 files" in again.stdout and "projected" in again.stdout
    missing = subprocess.run(
        [*CLI, "survey", str(tmp_path / "nope"), "--sample", "3", "--seed", "1"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert missing.returncode == 3 and "[not-found]" in missing.stderr and "Traceback" not in missing.stderr
