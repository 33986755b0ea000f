"""A watched folder deleted and recreated under a real `meshscan watch`: the loss is an error
line, ``meshscan_watch_root_up`` 0 and no systemd watchdog ping; the folder's return re-arms
inotify at once (files are seen by their events, not by the hourly reconciliation); latency is
measured from a file's completion, not from when the daemon noticed it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.integration.test_watch_daemon import (  # noqa: F401 - daemons, watch_library: fixtures
    DEMO,
    PROXIES,
    Daemon,
    daemons,
    free_port,
    query,
    sha,
    verdict_lines,
    wait_for,
    watch_library,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")


class NotifySocket:
    """Where systemd would listen for sd_notify datagrams (``$NOTIFY_SOCKET``)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        self.messages: list[str] = []

    def read(self) -> list[str]:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return self.messages

    def pings_after(self, n: int) -> int:
        return self.read()[n:].count("WATCHDOG=1")


def metric(port: int, name: str) -> float | None:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name)]
    return values[0] if values else None


def test_a_deleted_and_recreated_root_is_alarmed_and_rearmed(
    tmp_path: Path,
    watch_library: Path,  # noqa: F811 - a fixture
    daemons: list,  # noqa: F811 - a fixture
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    up, q, state, log = tmp_path / "up", tmp_path / "q", tmp_path / "s.sqlite", tmp_path / "v.jsonl"
    up.mkdir()
    sd = NotifySocket(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", sd.path)
    port = free_port()
    d = Daemon(tmp_path, str(up), "--quarantine", str(q), "--state", str(state), "--log", str(log),
               "--library", str(watch_library), "--no-model", "--jobs", "1", "--reconcile-every", "3600",
               "--metrics-port", str(port))  # fmt: skip
    daemons.append(d.start())
    d.wait_started()
    wait_for(lambda: "READY=1" in sd.read() and sd.pings_after(0), 15, "READY and a watchdog ping", d.proc)
    root_up = f'meshscan_watch_root_up{{root="{up}"}}'
    assert metric(port, root_up) == 1 and metric(port, "meshscan_watch_roots_watched") == 1
    assert metric(port, "meshscan_watch_last_reconcile_timestamp_seconds") > time.time() - 60
    shutil.copy(DEMO / "benign-pipe-s1-002.stl", up / "before.stl")
    wait_for(lambda: verdict_lines(log), 30, "the first verdict", d.proc)

    shutil.rmtree(up)
    wait_for(lambda: d.logs("watched folder gone"), 10, "the alarm", d.proc)
    assert d.logs("watched folder gone")[0]["level"] == "error"
    wait_for(lambda: metric(port, root_up) == 0, 10, "root_up 0", d.proc)
    seen = len(sd.read())
    time.sleep(2.5)
    assert sd.pings_after(seen) == 0  # blind: no watchdog ping while the folder is gone

    up.mkdir()
    shutil.copy(PROXIES[0], up / "flagged.stl")  # possibly before the watch is re-armed: the reconcile finds it
    wait_for(lambda: d.logs("watched folder back"), 10, "the re-arm", d.proc)
    wait_for(lambda: any(r["path"].endswith("flagged.stl") for r in verdict_lines(log)), 15,
             "the verdict of a file put in the recreated folder (not at the hourly reconcile)", d.proc)  # fmt: skip
    time.sleep(0.5)
    shutil.copy(DEMO / "benign-toy-s1-000.stl", up / "after.stl")  # after the re-arm: announced by inotify
    wait_for(lambda: any(r["path"].endswith("after.stl") for r in verdict_lines(log)), 15, "an event-driven scan")
    after = wait_for(lambda: [x for x in d.logs("scanned") if x["path"].endswith("after.stl")], 15,
                     "the scan's log line (written after the verdict)", d.proc)  # fmt: skip
    assert [x["how"] for x in after] == ["closed"]
    wait_for(lambda: metric(port, root_up) == 1, 10, "root_up 1", d.proc)
    seen = len(sd.read())
    wait_for(lambda: sd.pings_after(seen), 10, "watchdog pings again", d.proc)
    wait_for(lambda: query(state, "SELECT state FROM watch_actions") == [("done",)], 30, "the quarantine", d.proc)

    assert d.stop() == 0
    assert "STOPPING=1" in sd.read()
    assert "Traceback" not in d.stderr()
    assert sorted(Path(r["path"]).name for r in verdict_lines(log)) == ["after.stl", "before.stl", "flagged.stl"]
    assert [Path(x["path"]).name for x in d.logs("quarantined")] == ["flagged.stl"]
    assert sha(q / "flagged.stl") == sha(PROXIES[0])


def test_latency_is_measured_from_the_files_completion(
    tmp_path: Path,
    daemons: list,  # noqa: F811 - a fixture
) -> None:
    up, state, log = tmp_path / "up", tmp_path / "s.sqlite", tmp_path / "v.jsonl"
    up.mkdir()
    d = Daemon(tmp_path, str(up), "--state", str(state), "--log", str(log), "--no-model", "--jobs", "1",
               "--quiet", "0.2")  # fmt: skip
    daemons.append(d.start())
    d.wait_started()
    os.kill(d.proc.pid, signal.SIGSTOP)  # a daemon that is not looking: the file waits unnoticed
    try:
        shutil.copy(DEMO / "benign-pipe-s1-002.stl", up / "waited.stl")
        time.sleep(3.0)
    finally:
        os.kill(d.proc.pid, signal.SIGCONT)
    wait_for(lambda: d.logs("scanned"), 30, "the verdict", d.proc)
    assert d.logs("scanned")[0]["latency_ms"] >= 3000  # not the ~0.2 s since it was noticed
    assert d.stop() == 0
