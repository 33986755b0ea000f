"""Actions in isolation: the webhook outbox against a real server on 127.0.0.1, commands under a
timeout, and the inotify-overflow alarm."""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from scanner.sinks.webhook import Outbox, RetryPolicy, check_url, enqueue, post
from scanner.watch.actions import CommandRunner
from scanner.watch.intake import OverflowAlarm


@pytest.fixture
def server():
    """Answers 500 to its first two requests, then 204; records (key, body, status)."""
    got: list[tuple[str, dict, int]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            status = 500 if len(got) < 2 else 204
            got.append((self.headers["Idempotency-Key"], body, status))
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_port}/hook", got
    srv.shutdown()
    srv.server_close()
    thread.join()


def test_outbox_retries_with_backoff_until_delivered(tmp_path: Path, server) -> None:  # noqa: ANN001
    url, got = server
    db = tmp_path / "s.sqlite"
    outbox = Outbox(db, RetryPolicy(first=0.05, cap=0.2, timeout=5), max_pending=2)
    enqueue(outbox.conn, "id-1", url, json.dumps({"id": "id-1", "verdict": "flag"}), time.time())
    enqueue(outbox.conn, "id-1", url, json.dumps({"id": "id-1", "verdict": "flag"}), time.time())  # ignored
    outbox.conn.commit()
    assert outbox.pending() == 1 and not outbox.full()
    deadline = time.monotonic() + 20
    delivered = 0
    while not delivered:
        assert time.monotonic() < deadline, got
        delivered = outbox.deliver_due()
        time.sleep(0.02)
    assert [s for _, _, s in got] == [500, 500, 204]
    assert {k for k, _, _ in got} == {"id-1"} and got[-1][1]["verdict"] == "flag"
    conn = sqlite3.connect(db)
    row = conn.execute("SELECT state, attempts, last_error FROM webhook_outbox").fetchone()
    conn.close()
    assert row == ("delivered", 3, None)
    for i in range(2):
        enqueue(outbox.conn, f"more-{i}", url, "{}", time.time() + 3600)
    outbox.conn.commit()
    assert outbox.full()  # bounded: the daemon pauses intake rather than drop anything
    outbox.close()


def test_unreachable_endpoint_is_an_error_not_an_exception() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    err = post(f"http://127.0.0.1:{port}/", "{}", "k", timeout=2)
    assert err is not None and "refused" in err.lower()
    with pytest.raises(ValueError):
        check_url("file:///etc/passwd")


def test_backoff_grows_and_is_capped() -> None:
    p = RetryPolicy(first=1, cap=30)
    assert all(0.5 <= p.delay(0) <= 1 for _ in range(20))
    assert all(4 <= p.delay(3) <= 8 for _ in range(20))
    assert all(15 <= p.delay(50) <= 30 for _ in range(20))


def test_command_gets_stdin_and_env_and_is_killed_past_its_timeout(tmp_path: Path) -> None:
    doc = json.dumps({"id": "abc", "path": "/up/x.stl", "verdict": "flag", "verdicts": []})
    out = tmp_path / "out.json"
    script = tmp_path / "hook.py"
    script.write_text(
        "import json, os, sys\n"
        f"open({str(out)!r}, 'w').write(json.dumps([json.load(sys.stdin), os.environ['MESHSCAN_ACTION_ID'],"
        " os.environ['MESHSCAN_VERDICT']]))\n"
    )
    ok = CommandRunner(timeout=30).run(f"{sys.executable} {script}", doc, "abc")
    assert ok.ok and json.loads(out.read_text()) == [json.loads(doc), "abc", "flag"]
    started = time.monotonic()
    slow = CommandRunner(timeout=0.5).run(f"{sys.executable} -c 'import time; time.sleep(30)'", doc, "abc")
    assert not slow.ok and "timed out" in slow.detail and time.monotonic() - started < 10
    bad = CommandRunner(timeout=30).run(f"{sys.executable} -c 'import sys; sys.exit(\"boom\")'", doc, "abc")
    assert not bad.ok and bad.detail == "exit code 1: boom"
    missing = CommandRunner(timeout=30).run("/nonexistent/hook", doc, "abc")
    assert not missing.ok and "cannot run" in missing.detail


def test_inotify_overflow_asks_for_a_reconciliation() -> None:
    calls = []
    alarm = OverflowAlarm(lambda: calls.append(1))
    alarm.install()
    try:
        logging.getLogger("watchdog.observers.inotify_c").warning(
            "Inotify queue overflowed; filesystem events were lost"
        )
        logging.getLogger("watchdog.observers.inotify_c").warning("something else")
    finally:
        alarm.remove()
    assert calls == [1]
