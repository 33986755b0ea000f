"""Two ``signatures update`` runs on one library at once (two cron jobs): the library's lock
makes them apply one after the other, so both publishers' bundles end up in the library, no
run sees the other's half-written folder, and nobody gets a traceback."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from scanner.exchange.subscribe import locked, read_state
from tests.conftest import REPO
from tests.integration._publishing import Publisher

pytestmark = pytest.mark.timeout(300)

DEMO = REPO / "fixtures" / "demo"


def start_update(publisher: Publisher, bundle: Path, subscribed: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "scanner.cli", "signatures", "update", str(bundle), "--library", str(subscribed),
         "--trust", str(publisher.public_key)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    out, err = proc.communicate(timeout=240)
    assert "Traceback" not in out + err, err
    return proc.returncode, out + err


def held(subscribed: Path) -> dict[str, int]:
    """Publisher name -> bundle version held, from the library the symlink points at now."""
    state = read_state(subscribed.resolve())
    return {bank["publisher"]: bank["sequence"] for bank in state["banks"].values()}


def test_overlapping_updates_apply_both_bundles(tmp_path: Path) -> None:
    first = Publisher(tmp_path / "first", name="First authority")
    second = Publisher(tmp_path / "second", name="Second authority")
    first.enrol(DEMO / "proxy-barrel-s1-000.stl", "barrel")
    second.enrol(DEMO / "proxy-accessory-s1-002.stl", "accessory")
    subscribed = tmp_path / "subscribed"

    # started together: whichever takes the lock second starts from the first one's library
    runs = [start_update(first, first.publish(), subscribed), start_update(second, second.publish(), subscribed)]
    results = [finish(p) for p in runs]
    assert all(code == 0 for code, _ in results), results
    assert held(subscribed) == {"First authority": 1, "Second authority": 1}

    # a run that finds the lock taken waits for it, then applies its bundle on top
    first.enrol(DEMO / "proxy-frame_or_receiver-s1-001.stl", "frame_or_receiver")
    second.enrol(DEMO / "proxy-barrel-s1-001.stl", "barrel")
    bundles = first.publish(), second.publish()
    with locked(subscribed):
        runs = [start_update(first, bundles[0], subscribed), start_update(second, bundles[1], subscribed)]
        time.sleep(3)
        assert [p.poll() for p in runs] == [None, None], "both wait for the lock"
        assert held(subscribed) == {"First authority": 1, "Second authority": 1}
    results = [finish(p) for p in runs]
    assert all(code == 0 for code, _ in results), results
    assert held(subscribed) == {"First authority": 2, "Second authority": 2}
    versions = subscribed.parent / ".subscribed.versions"
    assert not [p for p in versions.iterdir() if p.name.startswith(".staging-")]
