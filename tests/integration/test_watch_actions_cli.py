"""`meshscan watch --actions STATE [--retry ID|--all]` on the state database of real `watch`
runs whose quarantine folder could not be written: the failing quarantine is listed, retried
here (failing again, then succeeding once the folder is fixed), or handed to a running daemon,
which performs it at once rather than at its backed-off next attempt."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.test_watch_action_failures import BIG, action_states, unwritable
from tests.integration.test_watch_daemon import (  # noqa: F401 - daemons, watch_library: fixtures
    MESHSCAN,
    Daemon,
    daemons,
    query,
    sha,
    wait_for,
    watch_library,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux file-system semantics")


def actions(state: Path, *extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([*MESHSCAN, "watch", "--actions", str(state), *extra], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert "Traceback" not in proc.stderr
    return proc


def listed(state: Path) -> list[dict]:
    proc = actions(state)
    assert proc.returncode == (1 if proc.stdout else 0), proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_list_and_retry_a_failed_quarantine_from_a_once_run(tmp_path: Path, watch_library: Path) -> None:  # noqa: F811
    up, q, state = tmp_path / "up", tmp_path / "q", tmp_path / "s.sqlite"
    up.mkdir()
    q.mkdir()
    shutil.copy(BIG, up / "p.stl")
    run = [*MESHSCAN, "watch", str(up), "--once", "--quarantine", str(q), "--state", str(state), "--log",
           str(tmp_path / "v.jsonl"), "--library", str(watch_library), "--no-model", "--jobs", "1",
           "--settle", "0"]  # fmt: skip
    with unwritable(q):
        once = subprocess.run([*run, "--quarantine-check", "warn"], capture_output=True, text=True, timeout=120)
        assert once.returncode == 1, once.stderr  # flagged (wins over the failed action)
        assert action_states(state) == {"p.stl": "pending"}

        [row] = listed(state)
        assert row["kind"] == "quarantine" and row["path"] == str(up / "p.stl") and row["state"] == "pending"
        assert row["attempts"] == 1 and row["error"] and row["due_in_s"] > 0  # backed off

        unknown = actions(state, "--retry", "0000nothere")
        assert unknown.returncode == 2 and "[unknown-id]" in unknown.stderr
        both = actions(state, "--retry", row["id"], "--all")
        assert both.returncode == 3 and "not both" in both.stderr

        again = actions(state, "--retry", row["id"][:8])  # still unwritable: performed here, fails again
        assert again.returncode == 2, again.stderr
        assert json.loads(again.stderr.splitlines()[0])["state"] == "pending"
        [row2] = listed(state)
        assert row2["attempts"] == 2 and (up / "p.stl").exists()

    fixed = actions(state, "--all")  # no daemon holds the state: performed here, once
    assert fixed.returncode == 0, fixed.stderr
    assert json.loads(fixed.stdout)["state"] == "done"
    assert action_states(state) == {"p.stl": "done"} and not (up / "p.stl").exists() and sha(q / "p.stl") == sha(BIG)
    assert query(state, "SELECT state FROM watch_files")[0][0] == "quarantined"
    assert listed(state) == []
    assert actions(state).returncode == 0

    rerun = subprocess.run(run, capture_output=True, text=True, timeout=120)  # nothing left for the next run
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(p.name for p in q.rglob("*") if p.is_file()) == ["p.stl", "p.stl.meshscan.json"]


def test_retry_hands_the_action_to_the_running_daemon(
    tmp_path: Path,
    watch_library: Path,  # noqa: F811 - a fixture
    daemons: list,  # noqa: F811 - a fixture
) -> None:
    up, q, state = tmp_path / "up", tmp_path / "q", tmp_path / "s.sqlite"
    up.mkdir()
    q.mkdir()
    args = ("--quarantine", str(q), "--state", str(state), "--log", str(tmp_path / "v.jsonl"), "--library",
            str(watch_library), "--no-model", "--jobs", "1", "--settle", "0.5",
            "--quarantine-check", "warn")  # fmt: skip
    shutil.copy(BIG, up / "p.stl")
    with unwritable(q):
        once = subprocess.run([*MESHSCAN, "watch", str(up), "--once", *args], capture_output=True, text=True,
                              timeout=120)  # fmt: skip
        assert once.returncode == 1, once.stderr
        for _ in range(5):  # failing retries back the next attempt off: 2 s x 2^attempts
            assert actions(state, "--all").returncode == 2
        d = Daemon(tmp_path, str(up), *args)
        daemons.append(d.start())
        d.wait_started()  # it retries at start-up, fails, and plans the next attempt minutes away
        wait_for(lambda: listed(state)[0]["attempts"] == 7, 30, "the daemon's start-up retry", d.proc)
        assert listed(state)[0]["due_in_s"] > 100

        held = actions(state, "--all")  # the daemon holds the state: it is told, and does not act here
        assert held.returncode == 0 and f"pid {d.proc.pid}" in held.stdout, held.stderr
        wait_for(lambda: listed(state)[0]["attempts"] == 8, 30, "the daemon's retry on request", d.proc)
        assert (up / "p.stl").exists()

    started = time.monotonic()
    assert actions(state, "--all").returncode == 0
    wait_for(lambda: action_states(state) == {"p.stl": "done"}, 30, "the daemon's quarantine", d.proc)
    assert time.monotonic() - started < 30  # not the 4+ minutes its backoff had planned
    assert d.stop() == 0 and "Traceback" not in d.stderr()
    assert [Path(x["path"]).name for x in d.logs("quarantined")] == ["p.stl"]
    assert sha(q / "p.stl") == sha(BIG) and not (up / "p.stl").exists()
