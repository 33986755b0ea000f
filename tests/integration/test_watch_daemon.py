"""`meshscan watch` as a real process on real files: events, settling, quarantine, --once,
signals, command and webhook actions (a real HTTP server on 127.0.0.1).

Helpers here are shared with test_watch_crash.py."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO

DEMO = REPO / "fixtures" / "demo"
MESHSCAN = [sys.executable, "-m", "scanner.cli"]
PROXIES = sorted(DEMO.glob("proxy-*-s1-000.*"))
"""The fixtures the test library enrols: their byte-for-byte copies are flagged."""


def build_exact_library(out: Path) -> Path:
    """A library of PROXIES matching exact copies only (per-row thresholds of 0).

    Built with the scanner of this checkout, so it follows any descriptor change; exact
    matching keeps the daemon tests about the daemon, not about near-duplicate tuning."""
    from scanner.enrol import signature_id
    from scanner.features import describe
    from scanner.inspect import file_sha256
    from scanner.library import Signature, SignatureLibrary
    from scanner.loading import iter_meshes

    lib = SignatureLibrary.create(out, name="watch tests")
    for path in PROXIES:
        for result in iter_meshes(path):
            desc = describe(result.mesh)
            vectors, bodies = desc.rows()
            sig = Signature(id=signature_id(desc.geometry_hash), category=path.name.split("-")[1], source="tests",
                            added="2026-01-01T00:00:00+00:00", name=path.name, sha256=file_sha256(path),
                            geometry_hash=desc.geometry_hash)  # fmt: skip
            lib.add(sig, vectors, bodies, np.zeros(len(bodies), dtype=np.float32))
    lib.save()
    return out


@pytest.fixture(scope="session")
def watch_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_exact_library(tmp_path_factory.mktemp("watchlib") / "lib")


def wait_for(cond: Callable[[], object], timeout: float, what: str, proc: subprocess.Popen | None = None) -> object:
    """Poll ``cond`` until truthy; fail saying ``what`` (and the daemon's stderr) at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"daemon exited ({proc.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def query(state: Path, sql: str, args: tuple = ()) -> list[tuple]:
    if not state.exists():
        return []
    conn = sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, args).fetchall()
    except sqlite3.OperationalError:  # tables not created yet
        return []
    finally:
        conn.close()


class Daemon:
    """`meshscan watch` in its own process group (so a kill can take its workers too)."""

    def __init__(self, tmp: Path, *args: str, name: str = "daemon") -> None:
        self.args = [*MESHSCAN, "watch", *args]
        self.tmp, self.name, self.runs = tmp, name, 0
        self.proc: subprocess.Popen | None = None

    def start(self) -> Daemon:
        self.runs += 1
        self.err_path = self.tmp / f"{self.name}-{self.runs}.err"
        self.out_path = self.tmp / f"{self.name}-{self.runs}.out"
        with open(self.err_path, "wb") as err, open(self.out_path, "wb") as out:
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=err, start_new_session=True, cwd=self.tmp)
        return self

    def logs(self, msg: str | None = None) -> list[dict]:
        lines = [json.loads(x) for x in self.err_path.read_text().splitlines() if x.startswith("{")]
        return [x for x in lines if msg is None or x.get("msg") == msg]

    def wait_started(self, timeout: float = 60) -> None:
        wait_for(lambda: self.logs("watching"), timeout, "the daemon to start", self.proc)

    def kill9(self) -> None:
        """SIGKILL the daemon (not its workers: they must notice and exit by themselves)."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        pgid = self.proc.pid
        try:
            wait_for(lambda: not _group_alive(pgid), 15, "orphaned scan workers to exit")
        finally:
            if _group_alive(pgid):
                os.killpg(pgid, signal.SIGKILL)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, as systemd does; returns the exit code."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def stderr(self) -> str:
        return self.err_path.read_text()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # zombies of an already-reaped leader do not count: look for live members
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


@pytest.fixture
def daemons():
    """Every daemon started by a test is stopped at its end, whatever happens."""
    started: list[Daemon] = []
    yield started
    for d in started:
        if d.proc is not None and d.proc.poll() is None:
            os.killpg(d.proc.pid, signal.SIGKILL)
            d.proc.wait(10)


def write_slowly(path: Path, data: bytes, chunks: int, pause: float) -> None:
    with open(path, "wb") as fh:
        step = max(1, len(data) // chunks)
        for i in range(0, len(data), step):
            fh.write(data[i : i + step])
            fh.flush()
            time.sleep(pause)


def sha(path_or_bytes: Path | bytes) -> str:
    import hashlib

    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    return hashlib.sha256(data).hexdigest()


def verdict_lines(log: Path) -> list[dict]:
    return [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []


# ---------------------------------------------------------------------------------------------- tests


def test_daemon_scans_complete_files_once_quarantines_flagged_and_drains_on_sigterm(
    tmp_path: Path, watch_library: Path, daemons: list
) -> None:
    up, q, state, log = tmp_path / "up", tmp_path / "q", tmp_path / "state.sqlite", tmp_path / "verdicts.jsonl"
    up.mkdir()
    (up / "old.stl").write_bytes((DEMO / "benign-pipe-s1-002.stl").read_bytes())  # there before the daemon
    d = Daemon(tmp_path, str(up), "--quarantine", str(q), "--state", str(state), "--log", str(log),
               "--library", str(watch_library), "--no-model", "--jobs", "2", "--settle", "1")  # fmt: skip
    daemons.append(d.start())
    d.wait_started()
    wait_for(lambda: any(r["path"].endswith("old.stl") for r in verdict_lines(log)), 30, "the old file's verdict")
    second = subprocess.run([*MESHSCAN, "watch", str(up), "--once", "--state", str(state), "--no-model"],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert second.returncode == 3 and "another meshscan watch is using" in second.stderr  # one daemon per state

    proxy = PROXIES[0].read_bytes()
    (up / "user1" / "deep").mkdir(parents=True)
    (up / "user1" / "deep" / "part.stl").write_bytes(proxy)  # written in one go into a brand-new folder
    slow_data = (DEMO / "benign-toy-s1-000.stl").read_bytes()
    writer = threading.Thread(target=write_slowly, args=(up / "slow.stl", slow_data, 8, 0.15))
    writer.start()  # written for 1.2 s: must be scanned once, whole
    tmp_name = up / ".upload.stl.part"
    tmp_name.write_bytes(PROXIES[1].read_bytes())
    os.rename(tmp_name, up / "renamed.stl")  # temp + rename: scanned once, under its final name
    (up / "gone.bin").write_bytes(b"short-lived")
    os.unlink(up / "gone.bin")
    writer.join()

    def settled() -> bool:
        names = {Path(r["path"]).name for r in verdict_lines(log)}
        done = query(state, "SELECT COUNT(*) FROM watch_actions WHERE state = 'done'")
        return {"slow.stl", "part.stl", "renamed.stl"} <= names and done and done[0][0] == 2

    wait_for(settled, 30, "verdicts for the new files and two quarantines", d.proc)
    (up / "slow.stl").write_bytes(slow_data + b"\n")  # changed after its scan: scanned again
    wait_for(lambda: sum(Path(r["path"]).name == "slow.stl" for r in verdict_lines(log)) == 2, 30, "a rescan")
    assert d.stop() == 0
    assert "Traceback" not in d.stderr()

    lines = verdict_lines(log)
    by_name: dict[str, list[dict]] = {}
    for r in lines:
        by_name.setdefault(r["path"].removeprefix(str(up) + "/"), []).append(r)
    assert sorted(by_name) == ["old.stl", "renamed.stl", "slow.stl", "user1/deep/part.stl"]
    assert [r["sha256"] for r in by_name["slow.stl"]] == [sha(slow_data), sha(slow_data + b"\n")]
    assert all(len(v) == 1 for k, v in by_name.items() if k != "slow.stl")
    assert by_name["user1/deep/part.stl"][0]["verdict"] == "flag"
    assert by_name["renamed.stl"][0]["verdict"] == "flag"
    # quarantined: moved (not copied), relative path kept, sidecar with the verdict
    assert not (up / "user1" / "deep" / "part.stl").exists() and not (up / "renamed.stl").exists()
    assert sha(q / "user1" / "deep" / "part.stl") == sha(proxy)
    sidecar = json.loads((q / "user1" / "deep" / "part.stl.meshscan.json").read_text())
    assert sidecar["verdicts"][0]["verdict"] == "flag" and sidecar["original_path"] == str(up / "user1/deep/part.stl")
    assert sorted(p.name for p in q.rglob("*") if p.is_file()) == [
        "part.stl", "part.stl.meshscan.json", "renamed.stl", "renamed.stl.meshscan.json"]  # fmt: skip
    # the state DB is a results DB: one row per path, as `scan --db` writes
    rows = query(state, "SELECT path, verdict, sha256 FROM results ORDER BY path")
    assert len(rows) == 4 and {r[0] for r in rows} == {r["path"] for r in lines}
    states = dict(query(state, "SELECT path, state FROM watch_files"))
    assert states[str(up / "renamed.stl")] == "quarantined" and states[str(up / "old.stl")] == "scanned"


def test_once_scans_what_is_missing_and_a_restart_repeats_nothing(tmp_path: Path, watch_library: Path) -> None:
    up, q, state, log = tmp_path / "up", tmp_path / "q", tmp_path / "s.sqlite", tmp_path / "v.jsonl"
    (up / "a").mkdir(parents=True)
    shutil.copy(PROXIES[2], up / "a" / "p.stl")
    shutil.copy(DEMO / "benign-handle-s1-000.stl", up / "h.stl")
    (up / "a" / "upload.stl.part").write_bytes(PROXIES[0].read_bytes()[:300])  # still uploading
    old = time.time() - 60
    for p in up.rglob("*"):
        os.utime(p, (old, old))
    args = [*MESHSCAN, "watch", str(up), "--once", "--quarantine", str(q), "--state", str(state), "--log", str(log),
            "--library", str(watch_library), "--no-model", "--jobs", "1"]  # fmt: skip
    first = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert first.returncode == 1, first.stderr  # something flagged
    assert sorted(Path(r["path"]).name for r in verdict_lines(log)) == ["h.stl", "p.stl"]
    assert (q / "a" / "p.stl").exists() and (up / "a" / "upload.stl.part").exists()
    again = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert len(verdict_lines(log)) == 2  # nothing scanned twice, nothing quarantined twice
    assert len(list(q.rglob("p.stl*"))) == 2  # the file and its sidecar
    # the same file uploaded again, with the same size and mtime (rsync -t, cp -p): a new upload
    shutil.copy2(q / "a" / "p.stl", up / "a" / "p.stl")
    third = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert third.returncode == 1, third.stderr
    assert [Path(r["path"]).name for r in verdict_lines(log)] == ["h.stl", "p.stl", "p.stl"]
    assert (q / "a" / "p.stl.1").read_bytes() == PROXIES[2].read_bytes() and not (up / "a" / "p.stl").exists()
    # a temporary name is no hiding place: abandoned (unchanged for --stale-partial), it is scanned
    stale = subprocess.run([*args, "--stale-partial", "30"], capture_output=True, text=True, timeout=120)
    assert stale.returncode == 2, stale.stderr  # a truncated mesh: unscannable
    assert [Path(r["path"]).name for r in verdict_lines(log)][-1] == "upload.stl.part"


def test_usage_errors_are_clear(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*MESHSCAN, "watch", *args], capture_output=True, text=True, timeout=60)

    (tmp_path / "up").mkdir()
    p = run(str(tmp_path / "up"), "--action", "quarantine")
    assert p.returncode == 3 and "--quarantine DIR" in p.stderr  # usage errors are fatal (3)
    p = run(str(tmp_path / "up"), "--action", "webhook:file:///etc/passwd")
    assert p.returncode == 3 and "http://" in p.stderr
    p = run(str(tmp_path / "missing"))
    assert p.returncode == 3 and "not a folder" in p.stderr
    p = run(str(tmp_path / "up"), "--quarantine", str(tmp_path))
    assert p.returncode == 3 and "inside the quarantine folder" in p.stderr
    assert all("Traceback" not in x for x in (p.stderr,))


# ---------------------------------------------------------------------------------------------- webhook


class Receiver:
    """A webhook endpoint on 127.0.0.1 answering 503 to its first ``fail_first`` requests."""

    def __init__(self, fail_first: int) -> None:
        self.requests: list[tuple[str, dict, int]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    status = 503 if len(outer.requests) < fail_first else 200
                    outer.requests.append((self.headers["Idempotency-Key"], body, status))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def delivered(self) -> dict[str, dict]:
        with self.lock:
            return {k: b for k, b, s in self.requests if s == 200}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_webhook_survives_a_failing_endpoint_and_loses_nothing(
    tmp_path: Path, watch_library: Path, daemons: list
) -> None:
    up, state = tmp_path / "up", tmp_path / "s.sqlite"
    up.mkdir()
    receiver = Receiver(fail_first=3)
    try:
        d = Daemon(tmp_path, str(up), "--action", f"webhook:{receiver.url}", "--state", str(state),
                   "--log", str(tmp_path / "v.jsonl"), "--library", str(watch_library), "--no-model", "--jobs", "1",
                   "--settle", "0.5")  # fmt: skip
        daemons.append(d.start())
        d.wait_started()
        for i, p in enumerate(PROXIES[:3]):
            (up / f"f{i}{p.suffix}").write_bytes(p.read_bytes())
        (up / "benign.stl").write_bytes((DEMO / "benign-pipe-s1-002.stl").read_bytes())
        delivered = wait_for(lambda: len(receiver.delivered()) == 3 and receiver.delivered(), 60,
                             "three deliveries", d.proc)  # fmt: skip
        assert d.stop() == 0
    finally:
        receiver.close()
    assert len(receiver.requests) >= 6  # three refused, then every one delivered
    assert {Path(b["path"]).name for b in delivered.values()} == {f"f{i}{p.suffix}" for i, p in enumerate(PROXIES[:3])}
    for ident, body in delivered.items():
        assert body["id"] == ident and body["verdict"] == "flag" and body["verdicts"][0]["matches"]
    # retries carried the same id, and nothing was delivered twice
    assert {k for k, _, s in receiver.requests if s == 503} <= set(delivered)
    assert sum(s == 200 for _, _, s in receiver.requests) == 3
    assert query(state, "SELECT COUNT(*) FROM webhook_outbox WHERE state = 'delivered'") == [(3,)]
    assert any(x["msg"] == "webhook failed" for x in d.logs())


# ---------------------------------------------------------------------------------------------- command


def test_command_action_gets_the_verdict_on_stdin_and_a_failing_command_loses_no_verdict(
    tmp_path: Path, watch_library: Path
) -> None:
    up, state, log = tmp_path / "up", tmp_path / "s.sqlite", tmp_path / "v.jsonl"
    up.mkdir()
    shutil.copy(PROXIES[0], up / "one.stl")
    shutil.copy(PROXIES[3], up / ("two" + PROXIES[3].suffix))
    old = time.time() - 60
    for p in up.iterdir():
        os.utime(p, (old, old))
    seen = tmp_path / "seen"
    seen.mkdir()
    script = tmp_path / "hook.py"
    script.write_text(
        "import json, os, sys\n"
        "doc = json.load(sys.stdin)\n"
        f"open(os.path.join({str(seen)!r}, os.environ['MESHSCAN_ACTION_ID']), 'w').write(json.dumps(doc))\n"
        "sys.exit(3 if doc['path'].endswith('one.stl') else 0)\n"
    )
    args = [*MESHSCAN, "watch", str(up), "--once", "--state", str(state), "--log", str(log), "--jobs", "1",
            "--library", str(watch_library), "--no-model",
            "--action", f"command:{sys.executable} {script}"]  # fmt: skip
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stderr
    docs = [json.loads(p.read_text()) for p in seen.iterdir()]
    assert sorted(Path(d["path"]).name for d in docs) == ["one.stl", "two" + PROXIES[3].suffix]
    assert all(d["verdict"] == "flag" and d["verdicts"][0]["verdict"] == "flag" for d in docs)
    assert len(verdict_lines(log)) == 2  # both verdicts recorded, the failing command notwithstanding
    rows = dict(query(state, "SELECT path, state FROM watch_actions"))
    assert rows[str(up / "one.stl")] == "pending"  # retried later (backoff), not lost
    assert rows[str(up / ("two" + PROXIES[3].suffix))] == "done"
    assert query(state, "SELECT error FROM watch_actions WHERE path = ?", (str(up / "one.stl"),))[0][0].startswith(
        "exit code 3"
    )


# ---------------------------------------------------------------------------------------------- operations


def big_stl(path: Path, triangles: int) -> None:
    rng = np.random.default_rng(1)
    rec = np.zeros(triangles, dtype=[("n", "<f4", 3), ("v", "<f4", 9), ("a", "<u2")])
    rec["v"] = rng.random((triangles, 9), dtype=np.float32)
    path.write_bytes(b"\0" * 80 + np.uint32(triangles).tobytes() + rec.tobytes())


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigterm_lets_a_running_scan_finish_and_metrics_are_served(
    tmp_path: Path, watch_library: Path, daemons: list
) -> None:
    import urllib.request

    up, state, log = tmp_path / "up", tmp_path / "s.sqlite", tmp_path / "v.jsonl"
    up.mkdir()
    port = free_port()
    d = Daemon(tmp_path, str(up), "--state", str(state), "--log", str(log), "--library", str(watch_library),
               "--no-model", "--jobs", "1", "--metrics-port", str(port), "-v")  # fmt: skip
    daemons.append(d.start())
    d.wait_started()
    shutil.copy(PROXIES[0], up / ("flagged" + PROXIES[0].suffix))
    wait_for(lambda: len(verdict_lines(log)) == 1, 30, "the first verdict", d.proc)
    # the metrics count a scan just after its verdict line is committed: wait for that
    wait_for(lambda: d.logs("scanned"), 10, "the scan's metrics", d.proc)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        metrics = response.read().decode()
    assert 'meshscan_watch_files_scanned_total{verdict="flag"} 1.0' in metrics
    assert "meshscan_watch_files_flagged_total 1.0" in metrics
    assert "meshscan_watch_latency_seconds_count 1.0" in metrics and "meshscan_watch_queue_depth" in metrics

    big_stl(up / "big.stl", 700_000)  # seconds to describe
    wait_for(lambda: any(x.get("path", "").endswith("big.stl") for x in d.logs("scanning")), 30, "its scan", d.proc)
    assert d.stop() == 0  # SIGTERM while the worker is busy
    scanned = [x for x in d.logs("scanned") if x["path"].endswith("big.stl")]
    assert len(scanned) == 1 and [Path(r["path"]).name for r in verdict_lines(log)][-1] == "big.stl"
    assert d.logs("stopped")


def test_watch_gives_the_verdicts_scan_gives(tmp_path: Path) -> None:
    """Same scan_one, same context (shipped library and model, same settings): same records."""
    up = tmp_path / "up"
    up.mkdir()
    names = [PROXIES[0].name, "benign-pipe-s1-000.obj", "benign-toy-s1-001.stl", "benign-bracket-s1-000.3mf"]
    for name in names:
        shutil.copy(DEMO / name, up / name)
    old = time.time() - 60
    for p in up.iterdir():
        os.utime(p, (old, old))
    scan = subprocess.run([*MESHSCAN, "scan", str(up), "--format", "jsonl", "--jobs", "1"], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert scan.returncode in (0, 1), scan.stderr
    log = tmp_path / "v.jsonl"
    watch = subprocess.run([*MESHSCAN, "watch", str(up), "--once", "--state", str(tmp_path / "s.sqlite"),
                            "--log", str(log), "--jobs", "1"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert watch.returncode == scan.returncode, watch.stderr

    def comparable(r: dict) -> tuple:
        r = {k: v for k, v in r.items() if k != "scanned_at"}
        return (Path(r.pop("path")).name, json.dumps(r, sort_keys=True))

    from_scan = sorted(comparable(json.loads(x)) for x in scan.stdout.splitlines())
    assert sorted(comparable(r) for r in verdict_lines(log)) == from_scan and len(from_scan) == len(names)


def test_quarantine_state_and_log_inside_the_watched_folder_are_not_scanned(
    tmp_path: Path, watch_library: Path
) -> None:
    up = tmp_path / "up"
    up.mkdir()
    shutil.copy(PROXIES[0], up / ("p" + PROXIES[0].suffix))
    old = time.time() - 60
    os.utime(up / ("p" + PROXIES[0].suffix), (old, old))
    args = [*MESHSCAN, "watch", str(up), "--once", "--quarantine", str(up / "quarantine"), "--state",
            str(up / "state.sqlite"), "--log", str(up / "verdicts.log"), "--library", str(watch_library),
            "--no-model", "--jobs", "1"]  # fmt: skip
    for expected_code in (1, 0):  # flagged and moved; then nothing new: not its quarantined copy, DB or log
        proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
        assert proc.returncode == expected_code, proc.stderr
    assert [Path(r["path"]).name for r in verdict_lines(up / "verdicts.log")] == ["p" + PROXIES[0].suffix]
    assert (up / "quarantine" / ("p" + PROXIES[0].suffix)).exists()
