"""A real inotify queue overflow against a real `meshscan watch`: the file whose events the
kernel dropped is scanned at once, by the reconciliation the overflow triggers, not at the next
periodic one (an hour away here).

The overflow is produced, not simulated: the daemon is stopped (SIGSTOP) so its observer
cannot read, more create/delete events than the kernel queues for one inotify instance
(``/proc/sys/fs/inotify/max_queued_events``, 16384 by default) are made in the watched folder,
a model file is written after them (its events are lost), and the daemon continues (SIGCONT).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.integration.test_watch_daemon import DEMO, Daemon, daemons, verdict_lines, wait_for  # noqa: F401 - fixture

QUEUE_LIMIT = Path("/proc/sys/fs/inotify/max_queued_events")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")


def overflow_inotify(folder: Path, max_queued: int) -> None:
    """At least ``max_queued + 1`` events in ``folder``: each create/close/delete cycle of one
    name queues two or three (never merged: consecutive events differ)."""
    burst = folder / "burst.tmp"
    for _ in range(max_queued // 2 + 1000):
        os.close(os.open(burst, os.O_CREAT | os.O_WRONLY, 0o644))
        os.unlink(burst)


def test_a_real_overflow_reconciles_at_once(tmp_path: Path, daemons: list) -> None:  # noqa: F811 - fixture
    max_queued = int(QUEUE_LIMIT.read_text())
    up, state, log = tmp_path / "up", tmp_path / "s.sqlite", tmp_path / "v.jsonl"
    up.mkdir()
    d = Daemon(tmp_path, str(up), "--state", str(state), "--log", str(log), "--no-model", "--jobs", "1",
               "--settle", "0.5", "--reconcile-every", "3600")  # fmt: skip
    daemons.append(d.start())
    d.wait_started()
    time.sleep(1.0)  # the start-up reconciliation is over: the next periodic one is an hour away

    os.kill(d.proc.pid, signal.SIGSTOP)
    try:
        overflow_inotify(up, max_queued)
        shutil.copy(DEMO / "benign-pipe-s1-002.stl", up / "late.stl")  # its events are dropped
    finally:
        os.kill(d.proc.pid, signal.SIGCONT)

    wait_for(lambda: any(r["path"].endswith("late.stl") for r in verdict_lines(log)), 30,
             "the verdict of the file whose events were lost", d.proc)  # fmt: skip
    assert d.stop() == 0
    logs = d.logs()
    overflow = [x["ts"] for x in logs if x["level"] == "warning" and "overflow" in x["msg"].lower()]
    assert overflow, "watchdog did not report the overflow"
    # the alarm runs before watchdog's own handler writes the warning: order by time, not by line
    assert any(x["msg"] == "reconciled" and x["queued"] >= 1 and x["ts"] >= overflow[0] for x in logs), logs
    assert [Path(r["path"]).name for r in verdict_lines(log)] == ["late.stl"]
    assert "Traceback" not in d.stderr()
