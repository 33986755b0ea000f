"""The shipped demo model on real benign meshes, through the real `meshscan scan` command: every
mesh of the public corpus (archive members too) is benign, so each `review` is a false review,
and there must be no more of them than the README's classifier section documents."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scanner.report.stats import wilson_interval

DOCUMENTED_REVIEWS = 2
"""README, "Classifier and review threshold": 2 of the 135 meshes of the public corpus sent to
review by the shipped model retrained for the density-weighted descriptor (1.5%, Wilson 95%
0.4% - 5.2%; 1 of 135 with the model before it)."""
DOCUMENTED_UPPER = 0.052


@pytest.mark.timeout(600)
def test_shipped_model_false_review_on_the_public_corpus(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "corpus.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "scanner.cli", "scan", str(corpus), "--format", "jsonl", "--out", str(out),
         "--jobs", "1"],
        capture_output=True, text=True, timeout=580,
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr  # 1: something sent to review; never a crash (3)
    results = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    scored = [r for r in results if r["verdict"] in ("clear", "review", "flag")]
    assert len(scored) >= 130, f"the corpus should give ~135 scored meshes, got {len(scored)}"
    assert any(r["member"] for r in scored), "archive members are scored one by one"
    assert all(r["review_score"] is not None for r in scored if r["verdict"] != "flag")
    reviewed = [f"{Path(r['path']).name}::{r['member'] or ''} {r['review_score']:.2f}" for r in scored
                if r["verdict"] == "review"]  # fmt: skip
    assert len(reviewed) <= DOCUMENTED_REVIEWS, f"more false reviews than documented: {reviewed}"
    assert wilson_interval(len(reviewed), len(scored))[1] <= DOCUMENTED_UPPER + 0.002
