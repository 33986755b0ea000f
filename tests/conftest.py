"""Shared test helpers: where the public corpus is."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

DEMO_PROXIES_CLEARED = frozenset({"proxy-frame_or_receiver-s1-002.stl"})
"""Unseen demo proxies the shipped demo model clears (README quick start): since the benign
look-alike kinds of ordinary mechanical parts (clips, brackets, mounts, cable-chain links) are
in its training set, this abstract box with a rectangular opening scores 0.39, below the
review threshold 0.67 - the price of not sending real brackets and panel clips to review."""


def corpus_root() -> Path | None:
    env = os.environ.get("MESHSCAN_CORPUS")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "corpus")
    for c in candidates:
        if (c / "public" / "MANIFEST.tsv").is_file():
            return c
    return None


@pytest.fixture(scope="session")
def corpus() -> Path:
    root = corpus_root()
    if root is None:
        pytest.skip("public corpus not found (set MESHSCAN_CORPUS or place it at ../shared/corpus)")
    return root / "public"


@pytest.fixture(autouse=True)
def no_leaked_child_processes():
    """Fail a test that leaves worker processes behind (as watchdog's conftest does for threads)."""
    import multiprocessing

    yield
    leaked = multiprocessing.active_children()
    for child in leaked:
        child.kill()
    assert not leaked, f"test leaked child processes: {leaked}"
