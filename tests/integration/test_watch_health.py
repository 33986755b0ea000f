"""Issue 15 items 1 (canary), 5 (health check) and 6 (polled folders) against a real
`meshscan watch`: ``/healthz`` and ``meshscan watch-health`` follow a watched folder's loss and
return; a polled folder scans each file once and alarms when it disappears; a watch that stops
delivering events is caught by the listing cross-check and re-armed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.integration.test_watch_daemon import (  # noqa: F401 - daemons, watch_library: fixtures
    DEMO,
    MESHSCAN,
    PROXIES,
    Daemon,
    daemons,
    free_port,
    verdict_lines,
    wait_for,
    watch_library,
)
from tests.integration.test_watch_roots import metric

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")


def healthz(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def watch_health(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*MESHSCAN, "watch-health", *args], capture_output=True, text=True, timeout=60)


def names(log: Path) -> list[str]:
    return sorted(Path(r["path"]).name for r in verdict_lines(log))


def test_healthz_and_watch_health_follow_a_lost_and_recreated_folder(
    tmp_path: Path,
    daemons: list,  # noqa: F811 - a fixture
) -> None:
    up, state, log, port = tmp_path / "up", tmp_path / "s.sqlite", tmp_path / "v.jsonl", free_port()
    up.mkdir()
    config = tmp_path / "watch.toml"
    config.write_text(f'[watch]\ndirs = ["{up}"]\nstate = "{state}"\nlog = "{log}"\nmetrics_port = {port}\n'
                      'no_model = true\njobs = 1\n')  # fmt: skip
    d = Daemon(tmp_path, "--config", str(config))
    daemons.append(d.start())
    d.wait_started()
    wait_for(lambda: healthz(port)[0] == 200, 15, "/healthz 200", d.proc)
    assert healthz(port)[1]["reasons"] == []
    ok = watch_health("--config", str(config))  # the daemon's own settings file
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["healthy"] is True

    shutil.rmtree(up)
    wait_for(lambda: healthz(port)[0] == 503, 10, "/healthz 503", d.proc)
    status, body = healthz(port)
    assert body["healthy"] is False
    assert body["reasons"] == [{"reason": "root_down", "root": str(up),
                                "detail": "watched folder gone; files put there are not seen"}]  # fmt: skip
    bad = watch_health("--metrics-port", str(port))
    assert bad.returncode == 1 and str(up) in bad.stdout
    assert d.logs("unhealthy")[0]["level"] == "error"

    up.mkdir()
    wait_for(lambda: healthz(port)[0] == 200, 10, "/healthz 200 again", d.proc)
    assert watch_health("--config", str(config)).returncode == 0
    shutil.copy(DEMO / "benign-pipe-s1-002.stl", up / "after.stl")
    wait_for(lambda: names(log) == ["after.stl"], 30, "the verdict in the recreated folder", d.proc)
    # /metrics still served beside /healthz; the count follows the verdict line's commit
    wait_for(lambda: metric(port, "meshscan_watch_files_scanned_total") == 1, 10, "the scan's metrics", d.proc)
    assert d.stop() == 0
    gone = watch_health("--config", str(config))  # no daemon: unhealthy, not a traceback
    assert gone.returncode == 1 and "no_answer" in gone.stdout and "Traceback" not in gone.stderr


def test_a_polled_folder_scans_once_and_alarms_when_it_goes(
    tmp_path: Path,
    watch_library: Path,  # noqa: F811 - a fixture
    daemons: list,  # noqa: F811 - a fixture
) -> None:
    up, q, state, log, port = tmp_path / "up", tmp_path / "q", tmp_path / "s.sqlite", tmp_path / "v.jsonl", free_port()
    up.mkdir()
    d = Daemon(tmp_path, str(up), "--poll", "0.5", "--quarantine", str(q), "--state", str(state), "--log", str(log),
               "--library", str(watch_library), "--no-model", "--jobs", "1", "--settle", "1",
               "--reconcile-every", "3600", "--metrics-port", str(port))  # fmt: skip
    daemons.append(d.start())
    d.wait_started()
    assert d.logs("polling folder")[0]["root"] == str(up)
    shutil.copy(DEMO / "benign-pipe-s1-002.stl", up / "first.stl")
    wait_for(lambda: names(log) == ["first.stl"], 30, "the polled file's verdict", d.proc)
    # seen by polling (the next listing is an hour away): no close event, its stat's quiet period decided
    first = wait_for(lambda: d.logs("scanned"), 30, "the scan's log line (written after the verdict)", d.proc)
    assert [x["how"] for x in first] == ["quiet"]

    shutil.rmtree(up)
    wait_for(lambda: d.logs("watched folder gone"), 10, "the root-down alarm", d.proc)
    assert d.logs("watched folder gone")[0]["level"] == "error"
    wait_for(lambda: healthz(port)[0] == 503, 10, "/healthz 503", d.proc)

    up.mkdir()
    wait_for(lambda: d.logs("watched folder back"), 10, "the re-arm", d.proc)
    shutil.copy(PROXIES[0], up / "flagged.stl")  # maybe before the new poller's first listing: found anyway
    wait_for(lambda: names(log) == ["first.stl", "flagged.stl"], 30, "the recreated folder's file", d.proc)
    wait_for(lambda: d.logs("quarantined"), 30, "the quarantine", d.proc)
    time.sleep(2.0)  # a second poll or more: nothing is scanned twice
    assert d.stop() == 0
    assert names(log) == ["first.stl", "flagged.stl"]
    assert [Path(x["path"]).name for x in d.logs("quarantined")] == ["flagged.stl"]
    assert "Traceback" not in d.stderr()


def test_a_deaf_watch_is_caught_by_the_listing_and_rearmed(
    tmp_path: Path,
    daemons: list,  # noqa: F811 - a fixture
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MESHSCAN_WATCH_TEST_HOOKS", "1")
    up, state, log, port = tmp_path / "up", tmp_path / "s.sqlite", tmp_path / "v.jsonl", free_port()
    up.mkdir()
    d = Daemon(tmp_path, str(up), "--state", str(state), "--log", str(log), "--no-model", "--jobs", "1",
               "--reconcile-every", "3", "--metrics-port", str(port))  # fmt: skip
    daemons.append(d.start())
    d.wait_started()
    shutil.copy(DEMO / "benign-pipe-s1-002.stl", up / "heard.stl")
    wait_for(lambda: names(log) == ["heard.stl"], 30, "an event-driven verdict", d.proc)
    time.sleep(7.0)  # listings with a healthy watch (past the grace period): no false alarm
    assert d.logs("events missed: the folder's watch is not delivering; watching it again") == []

    os.kill(d.proc.pid, signal.SIGUSR2)  # the watch stops delivering (it still runs)
    time.sleep(2.0)
    shutil.copy(DEMO / "benign-toy-s1-000.stl", up / "unheard.stl")
    missed = "events missed: the folder's watch is not delivering; watching it again"
    wait_for(lambda: d.logs(missed), 40, "the canary's alarm", d.proc)
    alarm = d.logs(missed)[0]
    assert alarm["level"] == "error" and alarm["root"] == str(up) and alarm["files"] == 1
    assert metric(port, f'meshscan_watch_events_missed_total{{root="{up}"}}') == 1
    wait_for(lambda: names(log) == ["heard.stl", "unheard.stl"], 30, "the unannounced file's verdict", d.proc)

    time.sleep(2.0)  # the re-armed watch starts in the observer's own thread
    shutil.copy(DEMO / "benign-toy-s1-000.stl", up / "heard-again.stl")  # re-armed: announced again
    # the verdict file is written before the "scanned" log line: wait for the line itself
    again = wait_for(lambda: [x for x in d.logs("scanned") if x["path"].endswith("heard-again.stl")], 30,
                     "an event-driven verdict after the re-arm", d.proc)  # fmt: skip
    assert [x["how"] for x in again] == ["closed"]
    assert d.stop() == 0
    assert names(log) == ["heard-again.stl", "heard.stl", "unheard.stl"]
    assert len(d.logs(missed)) == 1


def test_a_stuck_quarantine_is_unhealthy_until_it_is_fixed(
    tmp_path: Path,
    watch_library: Path,  # noqa: F811 - a fixture
    daemons: list,  # noqa: F811 - a fixture
) -> None:
    from tests.integration.test_watch_action_failures import unwritable

    up, q, state, log, port = tmp_path / "up", tmp_path / "q", tmp_path / "s.sqlite", tmp_path / "v.jsonl", free_port()
    up.mkdir()
    q.mkdir()
    d = Daemon(tmp_path, str(up), "--quarantine", str(q), "--state", str(state), "--log", str(log),
               "--library", str(watch_library), "--no-model", "--jobs", "1", "--actions-stuck-after", "2",
               "--metrics-port", str(port))  # fmt: skip
    daemons.append(d.start())
    d.wait_started()
    wait_for(lambda: healthz(port)[0] == 200, 15, "/healthz 200", d.proc)
    with unwritable(q):
        shutil.copy(PROXIES[0], up / "flagged.stl")
        wait_for(lambda: healthz(port)[0] == 503, 30, "/healthz 503 for the stuck quarantine", d.proc)
        [reason] = healthz(port)[1]["reasons"]
        assert reason["reason"] == "actions_stuck" and reason["kind"] == "quarantine" and reason["pending"] == 1
    wait_for(lambda: d.logs("quarantined"), 30, "the retried quarantine", d.proc)
    wait_for(lambda: healthz(port)[0] == 200, 10, "/healthz 200 once it is done", d.proc)
    assert d.stop() == 0
